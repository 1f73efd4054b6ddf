#!/usr/bin/env bash
# The Airlock demo: builds the package, starts airlockd with its built-in defaults (the
# example plug-ins echo and shell; no configuration to write) plus one deliberately
# hostile plug-in, and walks through what Airlock does. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${AIRLOCK_DEMO_CONFIGURATION:-debug}
echo "== building ($config)"
swift build -c "$config" 2>&1 | tail -n 1
bin=$(swift build -c "$config" --show-bin-path)
demo=$(mktemp -d /tmp/airlock-demo.XXXXXX)
chmod 0711 "$demo"   # workers run as another user (nobody) and must reach their state folder
export AIRLOCK_SOCKET="$demo/airlockd.sock"
cleanup() {
    [ -n "${daemon:-}" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

# Built-in defaults: with no --config the example plug-ins are registered. --plugin adds
# the hostile test plug-in, so we can show what happens when a plug-in crashes.
"$bin/airlockd" --socket "$AIRLOCK_SOCKET" --state-directory "$demo/state" \
    --plugin echo="$bin/libairlock-plugin-echo.so" --plugin shell="$bin/libairlock-plugin-shell.so" \
    --plugin hostile="$bin/libairlock-test-hostile.so" 2>"$demo/airlockd.log" &
daemon=$!
for _ in $(seq 100); do [ -S "$AIRLOCK_SOCKET" ] && break; sleep 0.05; done

ctl() { "$bin/airlockctl" "$@"; }

step "The registered plug-ins" "airlockctl plugins"
ctl plugins
step "The smallest plug-in, echo (its worker starts on first use)" "airlockctl run --plugin echo -- hello from a plug-in"
ctl run --plugin echo -- hello from a plug-in
step "A real shell plug-in, like WinRS: stdout, stderr and the exit code" "airlockctl run --plugin shell -- 'uname -srm; echo to-stderr >&2; exit 3'"
ctl run --plugin shell -- 'uname -srm; echo to-stderr >&2; exit 3' || echo "(exit code $?)"
step "stdin travels through Send" "printf 'quiet\\n' | airlockctl run --plugin shell -- tr a-z A-Z"
printf 'quiet\n' | ctl run --plugin shell -- tr a-z A-Z
step "Inside the sandbox: its own user, PID and network namespaces, a read-only system" "airlockctl run --plugin shell -- 'id; echo pid=\$\$; ls /proc | grep -c ^[0-9]; touch /usr/x'"
ctl run --plugin shell -- 'id; echo "pid of sh: $$; processes visible: $(ls /proc | grep -c "^[0-9]")"; touch /usr/airlock-test 2>&1 | head -1' || true
step "A plug-in that crashes costs only its own worker" "airlockctl run --plugin hostile -- segv"
ctl run --plugin hostile -- segv || echo "(airlockctl exit code $?: the client got a clear error)"
step "...and everyone else carries on" "airlockctl run --plugin echo -- still here"
ctl run --plugin echo -- still here
step "Status of the supervisor and every worker" "airlockctl status"
ctl status
printf '\n== stopping airlockd (workers get WSManPluginShutdown)\n'
kill -TERM "$daemon"; wait "$daemon" || true; daemon=
echo "done. The log of this run was in $demo/airlockd.log:"
tail -n 5 "$demo/airlockd.log" || true
