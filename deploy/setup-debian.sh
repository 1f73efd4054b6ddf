#!/usr/bin/env bash
# Installs what building and testing Airlock needs on Debian 12 (Swift itself is assumed).
# Safe to run repeatedly; retries apt, which sometimes fails once when another apt runs.
set -euo pipefail
packages=(libsystemd-dev libpam0g-dev pkg-config systemd)
if [ "${AIRLOCK_SETUP_TESTS:-1}" = 1 ]; then
    # The systemd integration test boots a real systemd in a container.
    packages+=(systemd-container debootstrap)
    # The WS-Man gateway tests drive airlock-wsman with pywinrm and pypsrp from a venv,
    # and make a certificate for its HTTPS listener with openssl.
    packages+=(python3-venv openssl)
fi

# The Python WinRM clients the gateway tests run (Tests/Gateway/*.py), in a venv at the
# place the tests look: /var/cache/airlock/wsman-venv as root, otherwise
# ${XDG_CACHE_HOME:-$HOME/.cache}/airlock/wsman-venv. Skipped when those versions are in.
setup_python_clients() {
    [ "${AIRLOCK_SETUP_TESTS:-1}" = 1 ] || return 0
    local venv
    if [ "$(id -u)" -eq 0 ]; then venv=/var/cache/airlock/wsman-venv
    else venv="${XDG_CACHE_HOME:-$HOME/.cache}/airlock/wsman-venv"; fi
    local check='import importlib.metadata as m; assert m.version("pywinrm") == "0.5.0" and m.version("pypsrp") == "0.9.1"'
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
        echo "setup: pywinrm 0.5.0 and pypsrp 0.9.1 are installed in $venv"
        return 0
    fi
    mkdir -p "$(dirname "$venv")"
    /usr/bin/python3 -m venv --clear "$venv"
    for attempt in 1 2 3; do
        if "$venv/bin/python" -m pip install -q pywinrm==0.5.0 pypsrp==0.9.1; then
            "$venv/bin/python" -c "$check"
            echo "setup: installed pywinrm 0.5.0 and pypsrp 0.9.1 in $venv"
            return 0
        fi
        echo "setup: pip install failed (attempt $attempt); retrying" >&2
        sleep 3
    done
    echo "setup: could not install pywinrm and pypsrp into $venv" >&2
    return 1
}
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: everything is installed (${packages[*]})"
    setup_python_clients
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
for attempt in 1 2 3; do
    if $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        echo "setup: installed ${missing[*]}"
        setup_python_clients
        exit 0
    fi
    echo "setup: apt-get failed (attempt $attempt); repairing and retrying" >&2
    $SUDO apt-get --fix-broken install -y -qq || true
    sleep 3
done
echo "setup: could not install ${missing[*]}" >&2
exit 1
