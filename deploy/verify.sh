#!/usr/bin/env bash
# Checks the systemd files in deploy/ on a machine where Airlock is not installed:
#   1. `systemd-analyze verify` on airlockd.service and airlockd.socket: syntax, unknown
#      settings, dependencies. verify wants ExecStart's binary to exist, so it runs on a
#      temporary copy whose ExecStart points at a placeholder executable.
#   2. `systemd-analyze security --offline=yes`: the service's exposure must be <= 3.0
#      (AIRLOCK_MAX_EXPOSURE overrides), and the unit's header comment must state it.
#   3. sysusers.d and tmpfiles.d entries apply cleanly to an empty root.
#   4. The example configuration files are JSON5-shaped objects (python3, when present).
# Prints "N passed, M failed"; exits non-zero when anything failed.
set -uo pipefail

deploy=$(cd "$(dirname "$0")" && pwd)
max_exposure=${AIRLOCK_MAX_EXPOSURE:-3.0}
work=$(mktemp -d /tmp/airlock-verify.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/     /'; failed=$((failed + 1)); }

if ! command -v systemd-analyze >/dev/null; then
    echo "verify.sh: systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
fi

# 1. verify, on a copy with a placeholder ExecStart binary.
mkdir -p "$work/units" "$work/bin"
printf '#!/bin/sh\nexit 0\n' >"$work/bin/airlockd"
chmod 755 "$work/bin/airlockd"
cp "$work/bin/airlockd" "$work/bin/airlock-wsman"
sed "s|^ExecStart=/usr/bin/airlock-wsman |ExecStart=$work/bin/airlock-wsman |" "$deploy/airlock-wsman.service" >"$work/units/airlock-wsman.service"
cp "$deploy/airlockd.socket" "$work/units/"
sed "s|^ExecStart=/usr/bin/airlockd |ExecStart=$work/bin/airlockd |" "$deploy/airlockd.service" >"$work/units/airlockd.service"
if ! grep -q "^ExecStart=$work/bin/airlockd " "$work/units/airlockd.service"; then
    fail "verify: ExecStart=/usr/bin/airlockd not found in airlockd.service"
else
    # verify prints nothing for a clean unit; any line is a finding (unknown setting, bad value...).
    output=$(cd "$work/units" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$work/units/airlockd.socket" "$work/units/airlockd.service" "$work/units/airlock-wsman.service" 2>&1)
    status=$?
    if [ $status -eq 0 ] && [ -z "$output" ]; then
        pass "systemd-analyze verify airlockd.socket airlockd.service airlock-wsman.service"
    else
        fail "systemd-analyze verify (exit $status)" "$output"
    fi
fi

# 2. security exposure.
output=$(SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=yes --no-pager "$deploy/airlockd.service" 2>&1)
exposure=$(printf '%s\n' "$output" | sed -n 's/.*Overall exposure level for airlockd.service: \([0-9.]*\).*/\1/p')
if [ -z "$exposure" ]; then
    fail "systemd-analyze security: no exposure level" "$output"
elif awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }'; then
    pass "security exposure $exposure <= $max_exposure"
    if grep -q "Overall exposure level for airlockd.service: $exposure " "$deploy/airlockd.service"; then
        pass "airlockd.service header states exposure $exposure"
    else
        fail "airlockd.service header does not state the current exposure $exposure"
    fi
else
    fail "security exposure $exposure > $max_exposure" "$(printf '%s\n' "$output" | grep '✗')"
fi

# 3. sysusers.d and tmpfiles.d on an empty root.
mkdir -p "$work/root/etc"
if output=$(systemd-sysusers --root="$work/root" "$deploy/sysusers.d/airlock.conf" 2>&1) \
    && grep -q '^airlock:' "$work/root/etc/group" && grep -q '^airlock-worker:' "$work/root/etc/passwd"; then
    pass "sysusers.d/airlock.conf creates group airlock and user airlock-worker"
else
    fail "sysusers.d/airlock.conf" "$output"
fi
# Not root: the entries' owners cannot be applied, so check a copy without them.
tmpfiles=$deploy/tmpfiles.d/airlock.conf
if [ "$(id -u)" -ne 0 ]; then
    awk '/^[[:space:]]*(#|$)/ { print; next } { $4 = "-"; $5 = "-"; print }' "$tmpfiles" >"$work/tmpfiles.conf"
    tmpfiles=$work/tmpfiles.conf
fi
if output=$(systemd-tmpfiles --root="$work/root" --create "$tmpfiles" 2>&1) \
    && [ -d "$work/root/var/lib/airlock/plugins" ] && [ -d "$work/root/etc/airlock/plugins.d" ]; then
    pass "tmpfiles.d/airlock.conf creates /var/lib/airlock/plugins and /etc/airlock/plugins.d"
else
    fail "tmpfiles.d/airlock.conf" "$output"
fi

# 4. The example configuration: strip comments and trailing commas, then parse as JSON.
if command -v python3 >/dev/null; then
    for file in "$deploy/airlockd.json" "$deploy"/plugins.d/*.json; do
        name=${file#"$deploy"/}
        if output=$(python3 - "$file" 2>&1 <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
# Drop // comments outside strings, then trailing commas before } or ].
out, in_string, i = [], False, 0
while i < len(text):
    c = text[i]
    if in_string:
        out.append(c)
        if c == '\\':
            out.append(text[i + 1]); i += 1
        elif c == '"':
            in_string = False
    elif c == '"':
        in_string = True; out.append(c)
    elif text.startswith('//', i):
        while i < len(text) and text[i] != '\n': i += 1
        continue
    else:
        out.append(c)
    i += 1
value = json.loads(re.sub(r',(\s*[}\]])', r'\1', ''.join(out)))
assert isinstance(value, dict), 'not an object'
plugins = value.get('Plugins', [value] if 'Name' in value else [])
for p in plugins:
    assert p['Name'] and p['Filename'].startswith('/'), 'plug-in without Name or absolute Filename'
PY
        ); then
            pass "$name parses"
        else
            fail "$name" "$output"
        fi
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
