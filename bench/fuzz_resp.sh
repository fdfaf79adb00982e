#!/usr/bin/env bash
# fuzz_resp.sh — build server/fuzz_resp (clang, libFuzzer + ASan + UBSan) in a build
# directory of its own and fuzz the service's request path for N seconds, starting from
# the committed seed corpus (tests/server/corpus/resp; never written to: new inputs go to
# a work corpus under the build directory). Exit 0: no crash, leak, UB or bad reply;
# 77: clang or libFuzzer missing (apt-get install clang libclang-rt-14-dev).
#
# usage: bench/fuzz_resp.sh [--time SECONDS (600)] [--build-dir DIR (/tmp/kvt-fuzz-resp)]
#                           [--jobs N (1)] [-- extra libFuzzer flags]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=600 bdir=/tmp/kvt-fuzz-resp jobs=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --time) secs=$2; shift 2 ;;
    --build-dir) bdir=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--time S] [--build-dir DIR] [--jobs N] [-- libFuzzer flags]" >&2; exit 2 ;;
    esac
done
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "SKIP: $CC not found (apt-get install clang libclang-rt-14-dev)"; exit 77; }
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$probe/p.c"
"$CC" -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" 2>/dev/null ||
    { echo "SKIP: $CC cannot link -fsanitize=fuzzer,address (apt-get install libclang-rt-14-dev)"; exit 77; }

san="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if [[ ! -f "$bdir/CMakeCache.txt" ]]; then
    CC=$CC cmake -S "$root" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVT_FUZZ=ON \
        -DKVT_CUDA=OFF -DKVT_ANALYTICS=OFF -DCMAKE_C_FLAGS="$san" >"$bdir.configure.log" 2>&1 ||
        { cat "$bdir.configure.log"; exit 1; }
fi
cmake --build "$bdir" -j"$(nproc)" --target fuzz_resp >"$bdir.build.log" 2>&1 ||
    { tail -50 "$bdir.build.log"; exit 1; }

work=$bdir/corpus-work
mkdir -p "$work" "$bdir/artifacts"
seeds=$root/tests/server/corpus/resp
echo "# fuzz_resp: ${secs}s, seeds $(ls "$seeds" | wc -l) files, work corpus $work"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# -max_len 128K: past INLINE_MAX (64K) and the 64K max_value_bytes;
# -timeout 10: a hang (a parse loop that never ends) is a failure too
jobs_flag=()
[[ $jobs -gt 1 ]] && jobs_flag=(-jobs="$jobs" -workers="$jobs")
set +e
"$bdir/server/fuzz_resp" "$work" "$seeds" -max_total_time="$secs" -max_len=131072 \
    -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 ${jobs_flag[@]+"${jobs_flag[@]}"} \
    -artifact_prefix="$bdir/artifacts/" -dict="$root/tests/server/corpus/resp.dict" "$@" \
    2>&1 | tee "$bdir/fuzz.log" | grep -E "^#[0-9]+ +(INITED|DONE|pulse)|stat::|ERROR|SUMMARY|crash-|leak-|timeout-|fuzz_resp:" 
rc=${PIPESTATUS[0]}
set -e
echo "# exit $rc; log $bdir/fuzz.log; artifacts (crashes, leaks): $(ls "$bdir/artifacts" | wc -l)"
exit "$rc"
