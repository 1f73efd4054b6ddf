#!/bin/sh
# install-sdk.sh [PREFIX]: installs the Airlock plug-in SDK.
#
#   PREFIX/include/airlock/wsman.h          the plug-in API header
#   PREFIX/lib/pkgconfig/airlock-plugin.pc  so that plug-ins build with
#       cc -shared -fPIC $(pkg-config --cflags airlock-plugin) plugin.c -o plugin.so
#
# PREFIX defaults to /usr/local. DESTDIR, when set, is prepended to every installed path
# (for packaging) but not to the paths written into the .pc file. AIRLOCK_VERSION sets
# the version recorded in the .pc file.
set -eu

prefix=${1:-/usr/local}
case $prefix in
    /*) ;;
    *) prefix=$(pwd)/$prefix ;;
esac
destdir=${DESTDIR:-}
version=${AIRLOCK_VERSION:-0.1.0}

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
header=$root/Sources/CWSMan/include/wsman.h
template=$here/airlock-plugin.pc.in
for file in "$header" "$template"; do
    if [ ! -f "$file" ]; then
        echo "install-sdk.sh: missing $file" >&2
        exit 1
    fi
done

install -d "$destdir$prefix/include/airlock" "$destdir$prefix/lib/pkgconfig"
install -m 0644 "$header" "$destdir$prefix/include/airlock/wsman.h"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$template" > "$destdir$prefix/lib/pkgconfig/airlock-plugin.pc"
chmod 0644 "$destdir$prefix/lib/pkgconfig/airlock-plugin.pc"
echo "installed $destdir$prefix/include/airlock/wsman.h and $destdir$prefix/lib/pkgconfig/airlock-plugin.pc"
