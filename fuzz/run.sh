#!/usr/bin/env bash
# Runs each fuzz target with AFL++ (cargo-afl) for a time or a number of executions,
# resuming a target's earlier run, then reports executions, crashes and hangs per target.
# Every crashing or hanging input is copied into fuzz/corpus/<target>/ (named crash-* or
# hang-*), where `cargo test` replays it from then on: fix it, keep the file.
# Usage: fuzz/run.sh <seconds|Nx> <target>...   (Nx: N executions, e.g. 10000000x)
set -euo pipefail
cd "$(dirname "$0")"
budget=$1
shift
out=../target/fuzz/out
mkdir -p "$out"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_AUTORESUME=1
status=0
for t in "$@"; do
    if [[ $budget == *x ]]; then limit=(-E "${budget%x}"); else limit=(-V "$budget"); fi
    cargo afl fuzz "${limit[@]}" -i "corpus/$t" -o "$out/$t" "../target/fuzz/release/$t" \
        > "$out/$t.log" 2>&1 || { echo "$t: afl-fuzz failed, see target/fuzz/out/$t.log"; status=1; continue; }
    stats="$out/$t/default/fuzzer_stats"
    execs=$(awk -F' *: *' '$1=="execs_done"{print $2}' "$stats")
    rate=$(awk -F' *: *' '$1=="execs_per_sec"{print $2}' "$stats")
    crashes=$(awk -F' *: *' '$1=="saved_crashes"{print $2}' "$stats")
    hangs=$(awk -F' *: *' '$1=="saved_hangs"{print $2}' "$stats")
    paths=$(awk -F' *: *' '$1=="corpus_count"{print $2}' "$stats")
    echo "$t: $execs executions in all ($rate/s now), corpus $paths, crashes $crashes, hangs $hangs"
    for kind in crashes hangs; do
        for f in "$out/$t/default/$kind"/id:*; do
            [ -f "$f" ] || continue
            name="corpus/$t/${kind%es}-$(sha1sum "$f" | cut -c1-12)"
            name=${name/crashe-/crash-}
            cp "$f" "$name"
            echo "  $kind: $f -> fuzz/$name"
            status=1
        done
    done
done
exit $status
