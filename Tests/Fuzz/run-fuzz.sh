#!/usr/bin/env bash
# Fuzzes the wire-protocol decoders (Sources/AirlockProtocol) with libFuzzer + ASan.
#
#   Tests/Fuzz/run-fuzz.sh [SECONDS] [LIBFUZZER_ARGS...]     # default 60 s; CI runs 60
#
# Builds Sources/AirlockProtocol/*.swift, Tests/AirlockProtocolTests/CodecProperties.swift
# and Tests/Fuzz/FuzzTarget.swift with `swiftc -sanitize=fuzzer,address` into a temporary
# directory (the SwiftPM build is untouched), seeds the corpus with every vector of
# proto/vectors plus all valid frames as one stream, and runs for SECONDS. Exit status 0
# = no finding; otherwise libFuzzer's status, with the crashing input kept and the
# command to reproduce it printed.
#
# Environment:
#   AIRLOCK_FUZZ_CORPUS=DIR   keep the generated corpus in DIR across runs (default: temporary)
#   AIRLOCK_FUZZ_KEEP=1       keep the temporary directory (binary, seeds, logs) on success
#   AIRLOCK_FUZZ_OPT=-Onone   optimization level for the fuzz build (default -O; checks stay on)
#
# A longer run (documented in Tests/Fuzz/README.md):
#   AIRLOCK_FUZZ_CORPUS=$HOME/.cache/airlock-fuzz Tests/Fuzz/run-fuzz.sh 3600 -jobs=2 -workers=2
set -euo pipefail

seconds=${1:-60}
if [[ $# -gt 0 ]]; then shift; fi
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS] [LIBFUZZER_ARGS...]" >&2
    exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/airlock-fuzz.XXXXXX")
keep=${AIRLOCK_FUZZ_KEEP:-0}
cleanup() {
    if [[ $keep == 0 ]]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

echo "building the fuzz target in $work ..."
swiftc -swift-version 6 -parse-as-library -module-name AirlockProtocolFuzz \
    "${AIRLOCK_FUZZ_OPT:--O}" -g -sanitize=fuzzer,address \
    "$root"/Sources/AirlockProtocol/*.swift \
    "$root/Tests/AirlockProtocolTests/CodecProperties.swift" \
    "$root/Tests/Fuzz/FuzzTarget.swift" \
    -o "$work/fuzz-codec"

# Seeds: one file per vector (valid and invalid), and every valid frame as one stream.
mkdir -p "$work/seeds" "$work/artifacts"
perl -e '
    my ($out, @files) = @ARGV;
    my $all = "";
    for my $file (@files) {
        open(my $in, "<", $file) or die "$file: $!";
        my ($name, $hex) = (undef, "");
        my $flush = sub {
            return unless defined $name;
            my $bytes = pack("H*", $hex);
            open(my $f, ">:raw", "$out/$name") or die; print $f $bytes; close $f;
            $all .= $bytes if $file =~ /frames\.txt$/;
        };
        while (my $line = <$in>) {
            if ($line =~ /^\s*\[([^\]\s]+)/) { $flush->(); ($name, $hex) = ($1, ""); next; }
            $line =~ s/#.*//; $line =~ s/\s+//g;
            $hex .= $line if defined $name;
        }
        $flush->();
    }
    open(my $f, ">:raw", "$out/all-valid-frames") or die; print $f $all; close $f;
' "$work/seeds" "$root/proto/vectors/frames.txt" "$root/proto/vectors/invalid.txt"
echo "$(ls "$work/seeds" | wc -l) seed inputs from proto/vectors"

corpus=${AIRLOCK_FUZZ_CORPUS:-$work/corpus}
mkdir -p "$corpus"

# A crashing Swift process would otherwise run swift-backtrace, which can hang under ASan.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

status=0
"$work/fuzz-codec" \
    -max_total_time="$seconds" -max_len=70000 -rss_limit_mb=2048 -timeout=10 \
    -dict="$root/Tests/Fuzz/protocol.dict" -artifact_prefix="$work/artifacts/" \
    -print_final_stats=1 "$@" "$corpus" "$work/seeds" 2>&1 | tee "$work/fuzz.log" || status=${PIPESTATUS[0]}

if [[ $status != 0 ]]; then
    keep=1
    echo
    echo "FUZZER FINDING (exit status $status). Inputs kept in $work/artifacts:"
    ls -l "$work/artifacts"
    echo "reproduce: SWIFT_BACKTRACE=enable=no $work/fuzz-codec $work/artifacts/<file>"
    echo "then add the input to proto/vectors/invalid.txt (or a test) and fix the codec."
    exit "$status"
fi
echo "no finding in ${seconds}s"
