#!/usr/bin/env bash
# Installs what building and testing Airlock needs on Debian 12 (Swift itself is assumed).
# Safe to run repeatedly; retries apt, which sometimes fails once when another apt runs.
set -euo pipefail
packages=(libsystemd-dev pkg-config systemd)
if [ "${AIRLOCK_SETUP_TESTS:-1}" = 1 ]; then
    # The systemd integration test boots a real systemd in a container.
    packages+=(systemd-container debootstrap)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: everything is installed (${packages[*]})"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
for attempt in 1 2 3; do
    if $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        echo "setup: installed ${missing[*]}"
        exit 0
    fi
    echo "setup: apt-get failed (attempt $attempt); repairing and retrying" >&2
    $SUDO apt-get --fix-broken install -y -qq || true
    sleep 3
done
echo "setup: could not install ${missing[*]}" >&2
exit 1
