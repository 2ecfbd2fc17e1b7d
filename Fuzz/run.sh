#!/usr/bin/env bash
# Builds and runs the wire-protocol fuzzers. Exits non-zero on any crash, leak, timeout or OOM.
#
#   bash Fuzz/run.sh                       # 1,000,000 inputs per target (a few minutes)
#   FUZZ_RUNS=20000 bash Fuzz/run.sh       # CI smoke run (seconds, plus the build)
#
# Environment:
#   FUZZ_RUNS          inputs per target (default 1000000)
#   FUZZ_ENGINE        auto (default: libFuzzer if swiftc can link it, else the mutation driver),
#                      libfuzzer, or mutation
#   FUZZ_BUILD_DIR     scratch directory (default Fuzz/.build-fuzz, git-ignored)
#   FUZZ_DETECT_LEAKS  1 (default) or 0 to let libFuzzer ignore leaks
#   FUZZ_PARALLEL      1 (default) runs the two targets at the same time, 0 one after the other
#   FUZZ_EXTRA_ARGS    extra libFuzzer flags, e.g. "-max_total_time=600 -seed=1"
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
RUNS="${FUZZ_RUNS:-1000000}"
ENGINE="${FUZZ_ENGINE:-auto}"
BUILD="${FUZZ_BUILD_DIR:-$FUZZ_DIR/.build-fuzz}"
DETECT_LEAKS="${FUZZ_DETECT_LEAKS:-1}"
PARALLEL="${FUZZ_PARALLEL:-1}"
read -r -a EXTRA_ARGS <<< "${FUZZ_EXTRA_ARGS:-}"
CRASHES="$FUZZ_DIR/crashes"
SWIFTC="${SWIFTC:-swiftc}"

mkdir -p "$BUILD/logs" "$CRASHES"

# The Wire sources use only the standard library and Foundation. PayloadCoding.swift (JSON
# codec switch) is not needed by the decoders under test.
WIRE=()
for file in "$ROOT"/Sources/Multiprocessing/Wire/*.swift; do
    [[ "$(basename "$file")" == PayloadCoding.swift ]] || WIRE+=("$file")
done
HARNESS=("$FUZZ_DIR/FrameFuzzer.swift" "$FUZZ_DIR/PayloadFuzzer.swift" "$FUZZ_DIR/FuzzSeeds.swift")

# swiftc drops noisy ld.gold warnings about ASan's local symbols; keep real errors.
compile() {
    local log="$BUILD/logs/build-$1.log"
    shift
    if "$SWIFTC" "$@" >"$log" 2>&1; then
        return 0
    fi
    grep -v "Cannot export local symbol" "$log" >&2 || true
    return 1
}

echo "== building seed generator and seeds"
compile seedgen -Onone -parse-as-library -module-name FuzzSeedGen "${WIRE[@]}" "${HARNESS[@]}" \
    "$FUZZ_DIR/SeedGenerator.swift" -o "$BUILD/seedgen"
# Deterministic hashing keeps the dictionary seeds byte-identical from run to run.
SWIFT_DETERMINISTIC_HASHING=1 "$BUILD/seedgen" "$FUZZ_DIR/corpus" >/dev/null

if [[ "$ENGINE" == auto || "$ENGINE" == libfuzzer ]]; then
    echo "== building libFuzzer targets (-sanitize=fuzzer,address)"
    if compile frame -sanitize=fuzzer,address -parse-as-library -O -module-name FrameFuzz -D FUZZ_FRAME_ENTRY \
            "${WIRE[@]}" "${HARNESS[@]}" -o "$BUILD/frame-fuzzer" &&
       compile payload -sanitize=fuzzer,address -parse-as-library -O -module-name PayloadFuzz -D FUZZ_PAYLOAD_ENTRY \
            "${WIRE[@]}" "${HARNESS[@]}" -o "$BUILD/payload-fuzzer"; then
        ENGINE=libfuzzer
    elif [[ "$ENGINE" == libfuzzer ]]; then
        echo "error: could not build the libFuzzer targets (see $BUILD/logs)" >&2
        exit 1
    else
        echo "   libFuzzer not available; falling back to the mutation driver"
        ENGINE=mutation
    fi
fi

declare -A STATUS EXECS
START=$SECONDS

run_libfuzzer() {  # target
    local target=$1
    mkdir -p "$BUILD/corpus-$target"
    # New inputs go to the scratch corpus; the committed seeds are only read.
    "$BUILD/$target-fuzzer" \
        -runs="$RUNS" -rss_limit_mb=2048 -timeout=5 -malloc_limit_mb=512 \
        -detect_leaks="$DETECT_LEAKS" -print_final_stats=1 -print_pcs=0 \
        -artifact_prefix="$CRASHES/$target-" "${EXTRA_ARGS[@]}" \
        "$BUILD/corpus-$target" "$FUZZ_DIR/corpus/${target}s" \
        >"$BUILD/logs/$target.log" 2>&1
}

run_mutation() {  # target
    local target=$1
    # ASan (when the driver was built with it) reports any allocation over 512 MiB.
    ASAN_OPTIONS="max_allocation_size_mb=512:allocator_may_return_null=0:detect_leaks=$DETECT_LEAKS" \
        "$BUILD/mutation-driver" "$RUNS" --target "${target}s" --crash-dir "$CRASHES" \
        >"$BUILD/logs/$target.log" 2>&1
}

if [[ "$ENGINE" == mutation ]]; then
    echo "== building the mutation driver"
    compile mutation -sanitize=address -parse-as-library -O -module-name MutationFuzz \
            "${WIRE[@]}" "${HARNESS[@]}" "$FUZZ_DIR/MutationDriver.swift" -o "$BUILD/mutation-driver" ||
        compile mutation -parse-as-library -O -module-name MutationFuzz \
            "${WIRE[@]}" "${HARNESS[@]}" "$FUZZ_DIR/MutationDriver.swift" -o "$BUILD/mutation-driver"
fi

echo "== fuzzing with $ENGINE, $RUNS inputs per target (logs in $BUILD/logs)"
declare -A PIDS
for target in frame payload; do
    if [[ "$PARALLEL" == 1 ]]; then
        "run_$ENGINE" "$target" & PIDS[$target]=$!
    else
        if "run_$ENGINE" "$target"; then STATUS[$target]=0; else STATUS[$target]=$?; fi
    fi
done
if [[ "$PARALLEL" == 1 ]]; then
    for target in frame payload; do
        if wait "${PIDS[$target]}"; then STATUS[$target]=0; else STATUS[$target]=$?; fi
    done
fi

FAILED=0
echo "== results ($((SECONDS - START)) s)"
for target in frame payload; do
    log="$BUILD/logs/$target.log"
    if [[ "$ENGINE" == libfuzzer ]]; then
        EXECS[$target]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    else
        EXECS[$target]=$(sed -n 's/^.*: ran \([0-9]*\) inputs.*$/\1/p' "$log" | tail -n 1)
    fi
    if [[ "${STATUS[$target]}" != 0 ]]; then
        FAILED=1
        echo "FAIL $target: exit status ${STATUS[$target]}; log: $log" >&2
        grep -E "ERROR:|==ERROR|SUMMARY|Test unit written|deadly signal|timeout|out-of-memory|malloc\(|Fatal error|MutationDriver:" "$log" | head -n 20 >&2 || true
    fi
    printf '%-8s %s executions%s\n' "$target" "${EXECS[$target]:-?}" \
        "$([[ "${STATUS[$target]}" == 0 ]] && echo ", ok" || echo ", FAILED")"
done
exit "$FAILED"
