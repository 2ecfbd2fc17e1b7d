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
#   FUZZ_DETECT_LEAKS  1 (default) or 0 to ignore leaks (then runs in chunks, see below)
#   FUZZ_CHUNK_RUNS    inputs per fuzzer process (default: all of them; 100000 when leaks
#                      are ignored, so leaked memory cannot reach the RSS limit)
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
# Inputs per fuzzer process; see run_libfuzzer.
CHUNK="${FUZZ_CHUNK_RUNS:-$([[ "$DETECT_LEAKS" == 1 ]] && echo "$RUNS" || echo 100000)}"
read -r -a EXTRA_ARGS <<< "${FUZZ_EXTRA_ARGS:-}"
CRASHES="$FUZZ_DIR/crashes"
SWIFTC="${SWIFTC:-swiftc}"

mkdir -p "$BUILD/logs" "$CRASHES"

# The framing layer (Wire/) and the payload codecs it builds on (PayloadCoding/) use only the
# standard library. They are copied first, so that edits made while the fuzzers build cannot
# break the build ("modified during the build").
rm -rf "$BUILD/src" && mkdir -p "$BUILD/src"
WIRE=()
for file in "$ROOT"/Sources/Multiprocessing/Wire/*.swift "$ROOT"/Sources/Multiprocessing/PayloadCoding/*.swift; do
    cp "$file" "$BUILD/src/"
    WIRE+=("$BUILD/src/$(basename "$file")")
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

if [[ "$ENGINE" == auto ]]; then
    # Does this toolchain link libFuzzer? (A failure to build the real targets is an error,
    # not a reason to fall back.)
    cat >"$BUILD/probe.swift" <<'SWIFT'
@_cdecl("LLVMFuzzerTestOneInput") public func probe(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { 0 }
SWIFT
    if compile probe -sanitize=fuzzer,address -parse-as-library "$BUILD/probe.swift" -o "$BUILD/probe" 2>/dev/null; then
        ENGINE=libfuzzer
    else
        echo "   swiftc cannot link libFuzzer here; using the mutation driver"
        ENGINE=mutation
    fi
fi

if [[ "$ENGINE" == libfuzzer ]]; then
    echo "== building libFuzzer targets (-sanitize=fuzzer,address)"
    compile frame -sanitize=fuzzer,address -parse-as-library -O -module-name FrameFuzz -D FUZZ_FRAME_ENTRY \
        "${WIRE[@]}" "${HARNESS[@]}" -o "$BUILD/frame-fuzzer" &
    FRAME_BUILD=$!
    compile payload -sanitize=fuzzer,address -parse-as-library -O -module-name PayloadFuzz -D FUZZ_PAYLOAD_ENTRY \
        "${WIRE[@]}" "${HARNESS[@]}" -o "$BUILD/payload-fuzzer" || { wait "$FRAME_BUILD" || true; exit 1; }
    wait "$FRAME_BUILD"
fi

declare -A STATUS EXECS
START=$SECONDS

run_libfuzzer() {  # target
    local target=$1 done=0 chunk runs executed
    mkdir -p "$BUILD/corpus-$target"
    : >"$BUILD/logs/$target.log"
    # Runs in chunks of CHUNK inputs, one process each, sharing the scratch corpus: with leak
    # detection off, leaked memory would otherwise pile up until the RSS limit.
    for ((chunk = 1; done < RUNS; chunk++)); do
        runs=$((RUNS - done < CHUNK ? RUNS - done : CHUNK))
        echo "---- chunk $chunk: $runs runs" >>"$BUILD/logs/$target.log"
        # New inputs go to the scratch corpus; the committed seeds are only read.
        ASAN_OPTIONS="detect_leaks=$DETECT_LEAKS" "$BUILD/$target-fuzzer" \
            -runs="$runs" -rss_limit_mb=2048 -timeout=5 -malloc_limit_mb=512 \
            -detect_leaks="$DETECT_LEAKS" -print_final_stats=1 -print_pcs=0 \
            -artifact_prefix="$CRASHES/$target-" "${EXTRA_ARGS[@]}" \
            "$BUILD/corpus-$target" "$FUZZ_DIR/corpus/${target}s" \
            >>"$BUILD/logs/$target.log" 2>&1 || return
        executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$BUILD/logs/$target.log" | tail -n 1)
        [[ "${executed:-0}" -gt 0 ]] || { echo "no executions in chunk $chunk" >>"$BUILD/logs/$target.log"; return 1; }
        done=$((done + executed))
        echo "stat::total_executed_units: $done" >>"$BUILD/logs/$target.log"
    done
}

run_mutation() {  # target
    local target=$1 done=0 runs executed
    : >"$BUILD/logs/$target.log"
    while ((done < RUNS)); do
        runs=$((RUNS - done < CHUNK ? RUNS - done : CHUNK))
        # ASan (when the driver was built with it) reports any allocation over 512 MiB.
        ASAN_OPTIONS="max_allocation_size_mb=512:allocator_may_return_null=0:detect_leaks=$DETECT_LEAKS" \
            "$BUILD/mutation-driver" "$runs" --first "$done" --target "${target}s" --crash-dir "$CRASHES" \
            >>"$BUILD/logs/$target.log" 2>&1 || return
        executed=$(sed -n 's/^.*: ran \([0-9]*\) inputs.*$/\1/p' "$BUILD/logs/$target.log" | tail -n 1)
        [[ "${executed:-0}" -gt 0 ]] || return 1
        done=$((done + executed))
        echo "stat::total_executed_units: $done" >>"$BUILD/logs/$target.log"
    done
}

if [[ "$ENGINE" == mutation ]]; then
    echo "== building the mutation driver"
    compile mutation -sanitize=address -parse-as-library -O -module-name MutationFuzz \
            "${WIRE[@]}" "${HARNESS[@]}" "$FUZZ_DIR/MutationDriver.swift" -o "$BUILD/mutation-driver" 2>/dev/null ||
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
    EXECS[$target]=$(sed -n 's/^stat::total_executed_units: *//p' "$log" | tail -n 1)
    if [[ "${STATUS[$target]}" != 0 ]]; then
        FAILED=1
        echo "FAIL $target: exit status ${STATUS[$target]}; log: $log" >&2
        grep -E "ERROR:|==ERROR|SUMMARY|Test unit written|deadly signal|timeout|out-of-memory|malloc\(|Fatal error|MutationDriver:" "$log" | head -n 20 >&2 || true
    fi
    printf '%-8s %s executions%s\n' "$target" "${EXECS[$target]:-(stopped early, see log)}" \
        "$([[ "${STATUS[$target]}" == 0 ]] && echo ", ok" || echo ", FAILED")"
done
exit "$FAILED"
