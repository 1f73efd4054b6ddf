#!/usr/bin/env bash
# Integration test under a real systemd 252: boots Debian bookworm in systemd-nspawn,
# installs the units from deploy/ and Airlock's binaries, and checks what issue 6 asks:
# socket activation, READY=1 and STATUS=, a plug-in running, journald's structured fields,
# watchdog restart, workers in a delegated child cgroup, reload and stop. With the real
# airlockd it also runs the WS-Man gateway under deploy/airlock-wsman.service: READY=1,
# PAM Basic authentication of a system user, a WinRM Create/Command/Receive/Delete through
# Tests/systemd/wsman-probe.py (the container's python3), the identity the gateway asserts
# to the socket-activated airlockd, and stop.
#
#   Tests/systemd/nspawn-test.sh [BUILD-DIR]
#
# BUILD-DIR (default .build/debug) holds what `swift build` made. When it has airlockd,
# airlock-worker and airlockctl, they are tested (mode "airlockd"). Otherwise, while
# airlockd does not exist yet, airlock-systemd-probe runs as a stand-in airlockd under the
# same units with Tests/systemd/sandbox-probe.c as its worker (mode "stand-in"): this
# proves the units, their hardening, notification, watchdog, cgroups and journald fields.
# AIRLOCK_NSPAWN_MODE=stand-in forces the stand-in.
#
# Swift binaries linked against the Swift runtime's shared libraries get those copied in;
# `swift build --static-swift-stdlib` avoids that.
#
# Needs root. Installs systemd-container and debootstrap when missing. The root file system
# is built once (about a minute, 276 MB) into AIRLOCK_NSPAWN_ROOTFS (default
# /var/cache/airlock/nspawn-rootfs) from the Debian mirror apt uses for bookworm
# (AIRLOCK_DEBIAN_MIRROR overrides) and reused; every boot starts from it clean
# (--volatile=overlay), so the cache is never modified. One run at a time per machine: a
# second run waits on the lock AIRLOCK_NSPAWN_LOCK (default
# /run/lock/airlock-nspawn-test.lock). Prints "N passed, M failed"; exit status 0 when all
# passed, 1 when a check failed, 2 when the test could not run.
#
# `swift test` runs it (Tests/AirlockServiceTests/SystemdContainerTests.swift) against the
# products next to the test bundle.
set -uo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # debootstrap and ldconfig live there

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$repo/.build/debug}
build=$(cd "$build" 2>/dev/null && pwd) || { echo "nspawn-test: no build folder $1" >&2; exit 2; }
rootfs=${AIRLOCK_NSPAWN_ROOTFS:-/var/cache/airlock/nspawn-rootfs}
machine=airlock-test-$$
passed=0
failed=0
nspawn_pid=
leader=
stage=

log() { echo "== $*"; }
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL $1"
    if [ $# -gt 1 ] && [ -n "$2" ]; then printf '%s\n' "$2" | tail -n 25 | sed 's/^/     /'; fi
    failed=$((failed + 1))
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0 || exit 1
}

cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null   # clean poweroff of the container
        for _ in $(seq 1 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            echo "nspawn-test: container did not power off in 10 s; killing it" >&2
            kill -KILL "$nspawn_pid" 2>/dev/null
        fi
        wait "$nspawn_pid" 2>/dev/null
    fi
    [ -n "$stage" ] && rm -rf "$stage"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -ne 0 ]; then
    echo "nspawn-test: needs root (systemd-nspawn)" >&2
    exit 2
fi

# One run at a time on a machine: runs share the root file system cache (and its first
# build), and the container shares the host network. A second run waits for the first.
lock=${AIRLOCK_NSPAWN_LOCK:-/run/lock/airlock-nspawn-test.lock}
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
if ! flock -n 9; then
    log "waiting for another nspawn-test run (lock $lock)"
    flock -w 1800 9 || { echo "nspawn-test: $lock still held after 30 minutes" >&2; exit 2; }
fi

# MARK: Tools and root file system

if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing systemd-container debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    for attempt in 1 2 3; do
        apt-get install -y -qq systemd-container debootstrap >/dev/null && break
        apt-get update -qq; apt-get --fix-broken install -y -qq >/dev/null; sleep 2
    done
    command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null || { echo "nspawn-test: cannot install systemd-container debootstrap" >&2; exit 2; }
fi

# The Debian mirror apt uses for bookworm itself (not bookworm-security, -updates or a
# third-party suite): the first URI of a deb822 stanza (*.sources) whose Types has "deb" and
# whose Suites has "bookworm", or of a one-line "deb [options] URI bookworm ..." entry.
# AIRLOCK_DEBIAN_MIRROR overrides; deb.debian.org when apt names none.
debian_mirror() {
    local uri
    uri=${AIRLOCK_DEBIAN_MIRROR:-}
    [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
        function flush() { if (deb && suite && first == "") first = uris; deb = suite = 0; uris = "" }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
        tolower($1) == "uris:" { uris = $2 }
        END { flush(); print first }')
    [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]]\+bookworm[[:space:]].*/\2/p' |
        head -n 1)
    echo "${uri:-http://deb.debian.org/debian}"
}

if [ ! -x "$rootfs/lib/systemd/systemd" ] || [ ! -x "$rootfs/usr/bin/python3" ]; then
    mirror=$(debian_mirror)
    log "building the root file system in $rootfs from $mirror (about a minute)"
    mkdir -p "$(dirname "$rootfs")"
    rm -rf "$rootfs.tmp"
    if ! debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,python3-minimal,procps,iproute2 \
        bookworm "$rootfs.tmp" "$mirror" >"/tmp/airlock-debootstrap.log" 2>&1; then
        tail -n 20 /tmp/airlock-debootstrap.log >&2
        rm -rf "$rootfs.tmp"
        echo "nspawn-test: debootstrap failed (log: /tmp/airlock-debootstrap.log)" >&2
        exit 2
    fi
    mv "$rootfs.tmp" "$rootfs"   # only a complete root file system gets the final name
fi

# MARK: Stage what goes into the container

stage=$(mktemp -d /tmp/airlock-nspawn-stage.XXXXXX)
mkdir -p "$stage/bin" "$stage/libexec" "$stage/plugins" "$stage/lib" "$stage/units" "$stage/etc/plugins.d"

mode=stand-in
if [ "${AIRLOCK_NSPAWN_MODE:-}" != stand-in ] &&
    [ -x "$build/airlockd" ] && [ -x "$build/airlock-worker" ] && [ -x "$build/airlockctl" ]; then
    mode=airlockd
fi
# The WS-Man gateway is tested with the real airlockd only (it needs ASSERT_IDENTITY).
wsman=no
[ "$mode" = airlockd ] && [ -x "$build/airlock-wsman" ] && wsman=yes
log "mode: $mode (binaries from $build)"

if [ "$mode" = airlockd ]; then
    cp "$build/airlockd" "$build/airlockctl" "$stage/bin/"
    cp "$build/airlock-worker" "$stage/libexec/"
    cp "$build"/libairlock-plugin-*.so "$stage/plugins/" 2>/dev/null
    # The WS-Man gateway (FoundationXML: libxml2 and ICU come along with the ldd loop below).
    if [ -x "$build/airlock-wsman" ]; then
        cp "$build/airlock-wsman" "$stage/bin/"
        cp "$repo/deploy/airlock-wsman.service" "$stage/units/"
        mkdir -p "$stage/etc/pam.d"
        cp "$repo/deploy/pam.d/airlock-wsman" "$stage/etc/pam.d/"
        cp "$repo/Tests/systemd/wsman-probe.py" "$stage/"
    fi
else
    if [ ! -x "$build/airlock-systemd-probe" ]; then
        echo "nspawn-test: $build/airlock-systemd-probe missing: swift build --product airlock-systemd-probe" >&2
        exit 2
    fi
    cp "$build/airlock-systemd-probe" "$stage/libexec/"
    cc -O2 -o "$stage/libexec/sandbox-probe" "$repo/Tests/systemd/sandbox-probe.c" || { echo "nspawn-test: cannot compile sandbox-probe.c" >&2; exit 2; }
fi
# The probe is also the test's own socket client in both modes.
[ -x "$build/airlock-systemd-probe" ] && cp "$build/airlock-systemd-probe" "$stage/libexec/"

# Shared libraries the container lacks (the Swift runtime of a non-static build).
for binary in "$stage"/bin/* "$stage"/libexec/* "$stage"/plugins/*; do
    [ -f "$binary" ] || continue
    ldd "$binary" 2>/dev/null | sed -n 's/.*=> \(\/\S*\).*/\1/p' | while read -r library; do
        [ -e "$rootfs$library" ] || cp -n "$library" "$stage/lib/"
    done
done

cp "$repo/deploy/airlockd.service" "$repo/deploy/airlockd.socket" "$stage/units/"
cp "$repo/deploy/sysusers.d/airlock.conf" "$stage/sysusers.conf"
cp "$repo/deploy/tmpfiles.d/airlock.conf" "$stage/tmpfiles.conf"
cp "$repo/deploy/airlockd.json" "$stage/etc/"
cp "$repo"/deploy/plugins.d/*.json "$stage/etc/plugins.d/"

# Runs inside the container: puts everything where the units and the configuration expect it.
cat >"$stage/install.sh" <<'EOF'
#!/bin/sh
set -e
s=/airlock-stage
install -d /usr/libexec/airlock /usr/lib/airlock/plugins /etc/airlock/plugins.d
for f in "$s"/bin/*; do [ -e "$f" ] && install -m 0755 "$f" /usr/bin/; done
for f in "$s"/libexec/*; do [ -e "$f" ] && install -m 0755 "$f" /usr/libexec/airlock/; done
for f in "$s"/plugins/*; do [ -e "$f" ] && install -m 0644 "$f" /usr/lib/airlock/plugins/; done
if [ -n "$(ls "$s/lib")" ]; then
    install -d /usr/local/lib/airlock-runtime
    cp "$s"/lib/* /usr/local/lib/airlock-runtime/
    echo /usr/local/lib/airlock-runtime >/etc/ld.so.conf.d/airlock-runtime.conf
    ldconfig
fi
install -m 0644 "$s"/units/* /etc/systemd/system/
install -m 0644 "$s/sysusers.conf" /usr/lib/sysusers.d/airlock.conf
install -m 0644 "$s/tmpfiles.conf" /usr/lib/tmpfiles.d/airlock.conf
install -m 0644 "$s/etc/airlockd.json" /etc/airlock/airlockd.json
install -m 0644 "$s"/etc/plugins.d/* /etc/airlock/plugins.d/
if [ -d "$s/etc/pam.d" ]; then install -m 0644 "$s"/etc/pam.d/* /etc/pam.d/; fi
systemd-sysusers
systemd-tmpfiles --create /usr/lib/tmpfiles.d/airlock.conf
if [ "$1" = stand-in ]; then
    install -d /etc/systemd/system/airlockd.service.d
    cat >/etc/systemd/system/airlockd.service.d/stand-in.conf <<'UNIT'
[Service]
ExecStart=
ExecStart=/usr/libexec/airlock/airlock-systemd-probe standin /usr/libexec/airlock/sandbox-probe airlock-worker
UNIT
fi
systemctl daemon-reload
EOF
chmod 755 "$stage/install.sh"

# MARK: Boot

log "booting $rootfs as $machine"
# CAP_BPF/CAP_PERFMON and bpf(2): without them systemd silently skips IPAddressDeny=.
# nspawn's own seccomp filter (systemd 252) refuses Landlock with EPERM: allow it, as the
# workers use it.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 setsid systemd-nspawn -D "$rootfs" -b \
    --register=no --keep-unit --console=read-only -M "$machine" --volatile=overlay \
    --capability=CAP_BPF,CAP_PERFMON \
    --system-call-filter="bpf landlock_create_ruleset landlock_add_rule landlock_restrict_self" \
    --bind-ro="$stage:/airlock-stage" \
    >"$stage/console.log" 2>&1 </dev/null 9>&- &
# setsid forks when it already leads a process group: find nspawn by its unique machine name.
# Its first child may still be the short-lived helper that forks the container: the leader
# is the child running the container's systemd (on a loaded machine the helper can be seen
# first, and entering its namespaces after it exits fails).
leader=
for _ in $(seq 1 300); do
    nspawn_pid=$(pgrep -f -x "systemd-nspawn -D $rootfs .* -M $machine .*" | head -n 1)
    if [ -n "$nspawn_pid" ]; then
        for child in $(pgrep -P "$nspawn_pid"); do
            [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && leader=$child
        done
    fi
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { fail "container started" "$(cat "$stage/console.log")"; finish; }

ct() { nsenter -t "$leader" -a "$@"; }
# Polls a command (run in the container) until it succeeds, for at most $1 seconds.
ct_wait() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until ct "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}
prop() { ct systemctl show -P "$1" "$2" 2>/dev/null; }

state=
for _ in $(seq 1 150); do
    state=$(ct systemctl is-system-running 2>/dev/null)
    case "$state" in running | degraded) break ;; esac
    sleep 0.2
done
if [ "$state" = running ]; then
    pass "systemd boots to running"
else
    fail "systemd boots to running (state: ${state:-none})" "$(ct systemctl --failed --no-legend 2>&1)"
fi

# MARK: Install

if output=$(ct /airlock-stage/install.sh "$mode" 2>&1); then
    pass "install units, binaries, sysusers, tmpfiles, configuration"
else
    fail "install" "$output"
    finish
fi
if ct getent group airlock >/dev/null && ct getent passwd airlock-worker >/dev/null; then
    pass "sysusers: group airlock, user airlock-worker"
else
    fail "sysusers: group airlock, user airlock-worker"
fi
units="/etc/systemd/system/airlockd.socket /etc/systemd/system/airlockd.service"
if [ "$wsman" = yes ]; then
    units="$units /etc/systemd/system/airlock-wsman.service"
    if ct getent passwd airlock-wsman >/dev/null && ct test -x /usr/bin/airlock-wsman && ct test -f /etc/pam.d/airlock-wsman &&
        output=$(ct ldd /usr/bin/airlock-wsman 2>&1) && ! printf '%s' "$output" | grep -q 'not found'; then
        pass "airlock-wsman installed: binary (libxml2, ICU and the Swift runtime resolved), /etc/pam.d/airlock-wsman, sysusers user airlock-wsman"
    else
        fail "airlock-wsman installed (binary, its libraries, PAM file, sysusers user)" "$(ct getent passwd airlock-wsman 2>&1; ct ls -l /usr/bin/airlock-wsman /etc/pam.d/airlock-wsman 2>&1; printf '%s\n' "$output" | grep 'not found')"
    fi
elif [ "$mode" = airlockd ]; then
    fail "airlock-wsman is built in $build (swift build builds every product)"
fi
if output=$(ct systemd-analyze verify $units 2>&1) && [ -z "$output" ]; then
    pass "systemd-analyze verify of the installed units ($(echo $units | sed 's|/etc/systemd/system/||g'))"
else
    fail "systemd-analyze verify of the installed units" "$output"
fi

# MARK: Socket activation, READY=1, STATUS=

probe=/usr/libexec/airlock/airlock-systemd-probe
socket=/run/airlock/airlockd.sock
client_check() {
    if [ "$mode" = airlockd ]; then
        ct airlockctl status 2>&1
    else
        ct "$probe" connect "$socket" 2>&1
    fi
}

ct systemctl start airlockd.socket
if [ "$(prop ActiveState airlockd.socket)" = active ] && [ "$(prop ActiveState airlockd.service)" = inactive ] &&
    [ "$(ct stat -c '%a %G' "$socket" 2>/dev/null)" = "660 airlock" ]; then
    pass "airlockd.socket listens on $socket (0660, group airlock); airlockd.service not started yet"
else
    fail "airlockd.socket listening, service inactive" "$(ct systemctl status airlockd.socket airlockd.service 2>&1; ct ls -l /run/airlock 2>&1)"
fi

output=$(client_check)
status=$?
if [ $status -eq 0 ] && ct_wait 10 sh -c '[ "$(systemctl show -P ActiveState airlockd.service)" = active ]'; then
    pass "first connection activates airlockd.service (client answered: $(printf '%s' "$output" | head -n 1 | cut -c1-60))"
else
    fail "first connection activates airlockd.service" "$output
$(ct systemctl status --no-pager airlockd.service 2>&1)
$(ct journalctl -b -u airlockd --no-pager 2>&1 | tail -n 20)"
fi

main_pid=$(prop MainPID airlockd.service)
# STATUS= follows the clients and workers (the test's own client just left), so the text
# and `systemctl status` are compared until both are read between two updates.
status_shown() {
    status_text=$(prop StatusText airlockd.service)
    [ "$(prop SubState airlockd.service)" = running ] && [ -n "$status_text" ] &&
        ct systemctl status --no-pager airlockd.service 2>/dev/null | grep -q -F "Status: \"$status_text\""
}
status_text=
shown=no
for _ in $(seq 1 25); do
    if status_shown; then shown=yes; break; fi
    sleep 0.2
done
if [ $shown = yes ]; then
    pass "Type=notify service running via READY=1; systemctl status shows Status: \"$status_text\""
else
    fail "READY=1 and STATUS=" "$(ct systemctl status --no-pager airlockd.service 2>&1)"
fi

# MARK: A plug-in runs; journald fields; the worker sandbox under the unit

journal_json() { ct journalctl -b -u airlockd.service -o json --no-pager 2>/dev/null; }
if [ "$mode" = airlockd ]; then
    if output=$(ct airlockctl run --plugin echo -- hello 2>&1) && printf '%s' "$output" | grep -q hello; then
        pass "airlockctl run --plugin echo -- hello"
    else
        fail "airlockctl run --plugin echo -- hello" "$output
$(ct journalctl -b -u airlockd.service --no-pager -o cat 2>&1 | tail -n 15)"
    fi
else
    if ct_wait 10 sh -c 'journalctl -b -u airlockd.service -o cat | grep -q "sandbox done"'; then
        sandbox=$(ct journalctl -b -u airlockd.service -o cat --no-pager | grep '^sandbox ')
        if printf '%s\n' "$sandbox" | grep -q 'sandbox done failures=0' && ! printf '%s\n' "$sandbox" | grep -q FAILED; then
            pass "worker sandbox under the unit: run-as, 6 namespaces, id maps, mounts, fresh /proc, hostname, Landlock, seccomp"
        else
            fail "worker sandbox under the unit" "$sandbox"
        fi
        if printf '%s\n' "$sandbox" | grep -q 'sandbox write-execute refused'; then
            pass "MemoryDenyWriteExecute reaches the workers (W+X refused) and the Swift stand-in runs under it"
        else
            fail "MemoryDenyWriteExecute in workers" "$sandbox"
        fi
    else
        fail "the stand-in's worker ran" "$(ct journalctl -b -u airlockd.service --no-pager 2>&1 | tail -n 20)"
    fi
fi

if ct_wait 10 sh -c 'journalctl -b -u airlockd.service -o json | grep "\"PLUGIN\":\"echo\"" | grep -q "\"WORKER_PID\":\"[0-9]"'; then
    record=$(journal_json | grep '"PLUGIN":"echo"' | grep '"WORKER_PID"' | head -n 1)
    fields=$(printf '%s' "$record" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(" ".join(k+"="+str(r[k]) for k in ("SYSLOG_IDENTIFIER","PRIORITY","PLUGIN","WORKER_PID","CODE_FILE") if k in r))' 2>/dev/null)
    if printf '%s' "$record" | grep -q '"SYSLOG_IDENTIFIER":"airlockd"' && printf '%s' "$record" | grep -q '"CODE_LINE"'; then
        pass "journalctl -o json: structured fields ($fields)"
    else
        fail "journalctl -o json: SYSLOG_IDENTIFIER/CODE_LINE with PLUGIN" "$record"
    fi
else
    fail "journalctl -o json shows PLUGIN=echo with WORKER_PID=" "$(journal_json | tail -n 5)"
fi
if [ "$mode" = airlockd ]; then
    # A refused operation (no such plug-in) is logged with its OPERATION_ID and WSMAN_ERROR.
    output=$(ct airlockctl run --plugin no-such-plugin -- hello 2>&1)
    if ct_wait 10 sh -c 'journalctl -b -u airlockd.service -o json | grep "\"OPERATION_ID\":\"[0-9]" | grep -q "\"WSMAN_ERROR\":\"[A-Z_]"'; then
        record=$(journal_json | grep '"OPERATION_ID"' | grep '"WSMAN_ERROR"' | tail -n 1)
        fields=$(printf '%s' "$record" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(" ".join(k+"="+str(r[k]) for k in ("OPERATION_ID","WSMAN_ERROR") if k in r))' 2>/dev/null)
        pass "journalctl -o json: a refused operation has $fields"
    else
        fail "journalctl -o json shows OPERATION_ID= and WSMAN_ERROR= for a refused operation" "$output
$(journal_json | tail -n 5)"
    fi
fi

# MARK: Delegated cgroup

cgroup=/sys/fs/cgroup/system.slice/airlockd.service
if ct_wait 10 sh -c "cat $cgroup/workers/*/cgroup.procs 2>/dev/null | grep -q ." ; then
    workers=$(ct sh -c "for d in $cgroup/workers/*/; do echo \"\$d: \$(cat \$d/cgroup.procs | tr '\n' ' ')\"; done")
    pass "workers in the delegated cgroup ${workers//$'\n'/; }"
else
    fail "workers in $cgroup/workers/*" "$(ct find "$cgroup" -name cgroup.procs -exec sh -c 'echo "$1: $(cat "$1" | tr "\n" " ")"' _ {} \; 2>&1)"
fi
if [ "$(ct cat "$cgroup/cgroup.procs" 2>/dev/null)" = "" ]; then
    pass "no process left in the unit's own cgroup (supervisor in a child cgroup)"
else
    fail "processes in the unit's own cgroup: $(ct cat "$cgroup/cgroup.procs" 2>&1 | tr '\n' ' ')"
fi

# MARK: Reload

echo_before=$(ct cat "$cgroup/workers/echo/cgroup.procs" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
if output=$(ct systemctl reload airlockd.service 2>&1) &&
    ct_wait 10 sh -c '[ "$(systemctl show -P SubState airlockd.service)" = running ]' &&
    [ "$(prop MainPID airlockd.service)" = "$main_pid" ]; then
    pass "systemctl reload: same main pid $main_pid, running again"
    # The configuration did not change: the echo worker (and its shells) must be untouched.
    echo_after=$(ct cat "$cgroup/workers/echo/cgroup.procs" 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
    if [ -n "$echo_before" ] && [ "$echo_after" = "$echo_before" ]; then
        pass "the reload keeps the unchanged plug-in's worker (processes $echo_before)"
    else
        fail "the reload keeps the unchanged plug-in's worker (before: $echo_before; after: $echo_after)"
    fi
else
    fail "systemctl reload" "$output
$(ct systemctl status --no-pager airlockd.service 2>&1)"
fi
# airlockd's own record (SYSLOG_IDENTIFIER=airlockd), not systemd's "Reloading...".
if [ "$mode" = airlockd ]; then reload_pattern='^reloaded (SIGHUP'; else reload_pattern='^reloading'; fi
if ct_wait 10 sh -c "journalctl -b -u airlockd.service -t airlockd -o cat | grep -q '$reload_pattern'"; then
    pass "airlockd logs the reload: $(ct journalctl -b -u airlockd.service -t airlockd -o cat --no-pager 2>/dev/null | grep "$reload_pattern" | tail -n 1 | cut -c1-90)"
else
    fail "airlockd logs the reload" "$(ct journalctl -b -u airlockd.service --no-pager 2>&1 | tail -n 10)"
fi

# MARK: Watchdog

# A short watchdog in a test drop-in, then SIGSTOP the main process: no more WATCHDOG=1.
ct sh -c 'mkdir -p /etc/systemd/system/airlockd.service.d && printf "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\n" >/etc/systemd/system/airlockd.service.d/watchdog-test.conf && systemctl daemon-reload'
ct systemctl restart airlockd.service
if ct_wait 15 sh -c '[ "$(systemctl show -P SubState airlockd.service)" = running ]'; then
    stopped_pid=$(prop MainPID airlockd.service)
    restarts_before=$(prop NRestarts airlockd.service)
    ct kill -STOP "$stopped_pid"
    if ct_wait 30 sh -c "[ \"\$(systemctl show -P NRestarts airlockd.service)\" -gt $restarts_before ] && [ \"\$(systemctl show -P SubState airlockd.service)\" = running ] && [ \"\$(systemctl show -P MainPID airlockd.service)\" != $stopped_pid ]"; then
        if ct journalctl -b -u airlockd.service --no-pager -o cat 2>/dev/null | grep -q -i 'watchdog timeout'; then
            pass "a stopped watchdog ping gets the service killed and restarted (Result=watchdog)"
        else
            fail "watchdog restart logged by systemd" "$(ct journalctl -b -u airlockd.service --no-pager 2>&1 | tail -n 15)"
        fi
    else
        fail "watchdog restart" "$(ct systemctl status --no-pager airlockd.service 2>&1)"
    fi
else
    fail "service running with WatchdogSec=2s" "$(ct systemctl status --no-pager airlockd.service 2>&1)"
fi
ct sh -c 'rm -f /etc/systemd/system/airlockd.service.d/watchdog-test.conf && systemctl daemon-reload'

# MARK: Stop

ct systemctl restart airlockd.service
ct_wait 15 sh -c '[ "$(systemctl show -P SubState airlockd.service)" = running ]'
ct_wait 10 sh -c "cat $cgroup/workers/*/cgroup.procs 2>/dev/null | grep -q ."
if [ "$mode" = airlockd ]; then worker_pattern=airlock-worker; else worker_pattern=sandbox-probe; fi
if output=$(ct systemctl stop airlockd.service 2>&1) && [ "$(prop ActiveState airlockd.service)" = inactive ]; then
    if ct pgrep -f "$worker_pattern" >/dev/null; then
        fail "stop leaves no worker" "$(ct ps -ef 2>&1 | grep "$worker_pattern")"
    elif ct test -d "$cgroup"; then
        fail "stop leaves no cgroup" "$(ct find "$cgroup" -name cgroup.procs -exec sh -c 'echo "$1: $(cat "$1" | tr "\n" " ")"' _ {} \; 2>&1)"
    else
        pass "systemctl stop: inactive, no $worker_pattern process left, the unit's cgroup is gone"
    fi
    result=$(prop Result airlockd.service)
    if [ "$result" = success ]; then
        pass "stop is clean (Result=success, STOPPING=1 then exit 0)"
    else
        fail "stop result: $result" "$(ct journalctl -b -u airlockd.service --no-pager 2>&1 | tail -n 10)"
    fi
else
    fail "systemctl stop" "$output"
fi
if ct test -S "$socket" && output=$(client_check) &&
    ct_wait 10 sh -c '[ "$(systemctl show -P ActiveState airlockd.service)" = active ]'; then
    pass "after a stop, the socket stays and the next connection starts airlockd again"
else
    fail "activation after stop" "$output"
fi
# MARK: The WS-Man gateway (airlock-wsman.service)

# Under its own unit: user airlock-wsman, PAM (pam_unix reading /etc/shadow through group
# shadow, under NoNewPrivileges=), the unit's hardening, and the identity it asserts for each
# user to airlockd (TrustedGateways), which the gateway's first connection socket-activates.
if [ "$wsman" = yes ]; then
    wsman_user=wsman-tester
    wsman_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    wsman_port=5985
    # The container shares the host's network: when something on the host already listens
    # on 5985, a drop-in moves only the listener, to a free port on 127.0.0.1.
    if [ -n "$(ct ss -Hltn 'sport = :5985' 2>/dev/null)" ]; then
        wsman_port=$(ct python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        ct sh -c "mkdir -p /etc/systemd/system/airlock-wsman.service.d && printf '[Service]\nExecStart=\nExecStart=/usr/bin/airlock-wsman --listen 127.0.0.1:$wsman_port --auth pam\n' >/etc/systemd/system/airlock-wsman.service.d/port-test.conf && systemctl daemon-reload"
        log "port 5985 is taken on the host: airlock-wsman listens on 127.0.0.1:$wsman_port (drop-in)"
    fi
    wsman_probe() { ct python3 /airlock-stage/wsman-probe.py "$@" 2>&1; }
    wsman_journal() { ct journalctl -b -u airlock-wsman.service --no-pager -o cat 2>&1 | tail -n 20; }

    # airlockd is stopped (its socket stays) so that the gateway's connection starts it.
    ct systemctl stop airlockd.service 2>/dev/null   # (its socket stays: no warning wanted)
    if output=$(ct useradd --no-create-home --shell /bin/sh "$wsman_user" 2>&1) &&
        output=$(printf '%s:%s\n' "$wsman_user" "$wsman_password" | ct chpasswd 2>&1) &&
        ct grep -q "^$wsman_user:\\\$" /etc/shadow; then
        pass "system user $wsman_user with a password (useradd, chpasswd)"
    else
        fail "system user $wsman_user with a password" "$output"
    fi

    # Type=notify: start returns once READY=1 came (or fails).
    if output=$(ct systemctl start airlock-wsman.service 2>&1) &&
        [ "$(prop ActiveState airlock-wsman.service)" = active ] && [ "$(prop SubState airlock-wsman.service)" = running ]; then
        wsman_status=$(prop StatusText airlock-wsman.service)
        if printf '%s' "$wsman_status" | grep -q "^listening on http://.*:$wsman_port/wsman" &&
            ct_wait 30 sh -c "journalctl -b -u airlock-wsman.service -o cat | grep -q '^airlock-wsman listening on http://.*:$wsman_port/wsman'"; then
            pass "airlock-wsman.service active via READY=1 as user $(ct ps -o user= -p "$(prop MainPID airlock-wsman.service)" 2>/dev/null); Status: \"$wsman_status\"; journal has the listening line"
        else
            fail "airlock-wsman.service STATUS= and listening line (StatusText: $wsman_status)" "$(wsman_journal)"
        fi
    else
        fail "airlock-wsman.service starts (Type=notify, READY=1)" "$output
$(ct systemctl status --no-pager airlock-wsman.service 2>&1)
$(wsman_journal)"
    fi

    output=$(wsman_probe status "$wsman_port")
    if printf '%s\n' "$output" | grep -q '^HTTP 401$' && printf '%s\n' "$output" | grep -q '^WWW-Authenticate: Basic'; then
        pass "POST /wsman without credentials: 401 with WWW-Authenticate: Basic"
    else
        fail "POST /wsman without credentials: 401" "$output
$(wsman_journal)"
    fi

    # pywinrm's run_cmd('echo', ['hi']) on one keep-alive connection.
    if output=$(wsman_probe run "$wsman_port" "$wsman_user" "$wsman_password" echo hi) &&
        printf '%s\n' "$output" | grep -q -x 'stdout=aGkK stderr= exit=0'; then
        pass "PAM Basic auth, Create (ShellId), Command echo hi, Receive until Done (stdout \"hi\\n\", exit 0), Delete: all 200"
    else
        fail "WS-Man Create/Command/Receive/Delete as $wsman_user" "$output
$(wsman_journal)
$(ct journalctl -b -u airlockd.service --no-pager -o cat 2>&1 | tail -n 10)"
    fi
    if [ "$(prop ActiveState airlockd.service)" = active ] &&
        ct_wait 30 sh -c "journalctl -b -u airlockd.service -t airlockd -o json | grep '\"MESSAGE\":\"identity asserted\"' | grep '\"GATEWAY\":\"airlock-wsman\"' | grep -q '\"USER\":\"$wsman_user\"'"; then
        pass "the gateway's connection started airlockd.service, which logs \"identity asserted\" (GATEWAY=airlock-wsman USER=$wsman_user)"
    else
        fail "airlockd socket-activated by the gateway and logging \"identity asserted\" for $wsman_user" "$(ct systemctl status --no-pager airlockd.service 2>&1 | head -n 5)
$(ct journalctl -b -u airlockd.service --no-pager -o cat 2>&1 | tail -n 10)"
    fi

    output=$(wsman_probe status "$wsman_port" "$wsman_user" "wrong-$wsman_password")
    if printf '%s\n' "$output" | grep -q '^HTTP 401$' && [ "$(prop ActiveState airlock-wsman.service)" = active ] &&
        ct_wait 30 sh -c "journalctl -b -u airlock-wsman.service -t airlock-wsman -o json | grep '\"MESSAGE\":\"authentication failed\"' | grep -q '\"USER\":\"$wsman_user\"'"; then
        pass "a wrong password: 401, logged as \"authentication failed\" (USER=$wsman_user); airlock-wsman.service stays active"
    else
        fail "a wrong password: 401 (service $(prop ActiveState airlock-wsman.service))" "$output
$(wsman_journal)"
    fi

    if output=$(ct systemctl stop airlock-wsman.service 2>&1) && [ "$(prop ActiveState airlock-wsman.service)" = inactive ] &&
        [ "$(prop Result airlock-wsman.service)" = success ]; then
        pass "systemctl stop airlock-wsman: inactive, Result=success"
    else
        fail "systemctl stop airlock-wsman (state $(prop ActiveState airlock-wsman.service), result $(prop Result airlock-wsman.service))" "$output
$(wsman_journal)"
    fi
fi

ct systemctl stop airlockd.service airlockd.socket

failed_units=$(ct systemctl --failed --no-legend 2>/dev/null)
if [ -z "$failed_units" ]; then pass "no failed units"; else fail "failed units" "$failed_units"; fi

finish
