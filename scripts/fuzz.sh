#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_targets/) for a bounded time.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default: 20 s per target, every target. Installs cargo-fuzz when it is
# missing. The toolchain is stable, so the build uses RUSTC_BOOTSTRAP=1 for
# the -Z flags cargo-fuzz passes to rustc. Each target starts from its seed
# corpus in fuzz/corpus/<target>/ (read only: new inputs go to a scratch
# directory). Exits non-zero when any target crashes, panics, times out on
# one input or runs out of memory; the input is saved under
# fuzz/artifacts/<target>/ and named in the output.
#
# Environment: FUZZ_SANITIZER (default none: the code under test has no
# unsafe blocks, and without ASan a run executes about twice the inputs; set
# it to address to use ASan), FUZZ_JOBS (parallel jobs per target, default 1),
# FUZZ_KEEP_CORPUS=1 keeps the scratch corpus in fuzz/corpus-work/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
shift || true
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: seconds per target must be a positive whole number, not \"$secs\"" >&2
    exit 2
fi
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
all_targets=$(cargo fuzz list --fuzz-dir fuzz)
if [ "$#" -gt 0 ]; then
    targets="$*"
    for t in $targets; do
        if ! grep -qx "$t" <<<"$all_targets"; then
            echo "fuzz.sh: unknown target \"$t\" (known: $(echo $all_targets))" >&2
            exit 2
        fi
    done
else
    targets="$all_targets"
fi

echo "== cargo fuzz build (sanitizer: $sanitizer)"
cargo fuzz build --fuzz-dir fuzz -s "$sanitizer"

work="fuzz/corpus-work"
mkdir -p "$work"
failed=()
summary=()
for t in $targets; do
    echo "== fuzzing $t for ${secs}s"
    scratch="$work/$t"
    mkdir -p "$scratch" "fuzz/corpus/$t"
    log="$work/$t.log"
    parallel=()
    if [ "$jobs" -gt 1 ]; then
        parallel=(-jobs="$jobs" -workers="$jobs")
    fi
    set +e
    cargo fuzz run --fuzz-dir fuzz -s "$sanitizer" "$t" "$scratch" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 "${parallel[@]}" >"$log" 2>&1
    rc=$?
    set -e
    # With -jobs the per-job output is in fuzz-N.log files in the current dir.
    if [ "$jobs" -gt 1 ]; then
        cat fuzz-*.log >>"$log" 2>/dev/null || true
        rm -f fuzz-*.log
    fi
    execs=$(grep -h '^stat::number_of_executed_units:' "$log" | awk '{s += $2} END {print s + 0}')
    if [ "$rc" -ne 0 ] || grep -qE '^(==[0-9]+== ?ERROR|SUMMARY: libFuzzer)|panicked at' "$log"; then
        failed+=("$t")
        summary+=("$t: FAILED after $execs executions (exit $rc)")
        echo "!! $t failed; last lines of $log:" >&2
        tail -n 40 "$log" >&2
    else
        summary+=("$t: $execs executions, no crash")
    fi
done

echo "== fuzz summary (${secs}s per target)"
printf '  %s\n' "${summary[@]}"
if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]; then
    rm -rf "$work"
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crashing targets: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
