#!/usr/bin/env bash
# device_check.sh — build gpu/'s tests and benchmarks from gpu/ files only (so that other
# modules' half-written files cannot break the run) and run them on the GPU machine:
#   source .device-debs/device-env.sh; gpu/device_check.sh [build|test|sanitize|bench|bench_attn|all]...
# (also memcheck_attn, racecheck_mma_decode: one sanitizer on test_gpu_attn; launch:
# bench_gpu_attn --launch, a single call's time taken apart)
# Logs go to $OUT (or /tmp/kvt-gpu-out). Compiles for sm_90 (machine code) + compute_90 PTX.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/kvt-gpu-out}
B=${KVT_GPU_BUILD:-/tmp/kvt-gpu-build}
mkdir -p "$OUT" "$B"
CUDA_INC=$(dirname "$(command -v nvcc)")/../include
NV="nvcc -O3 -std=c++17 -lineinfo -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -I include -I . -I tests -I bench -DKVT_HAVE_CUDA=1"
CC="gcc -O2 -std=c11 -ffunction-sections -fdata-sections -D_GNU_SOURCE -I include -I . -I $CUDA_INC"

build() {
  local t0=$SECONDS
  if ! $CC -c util/util.c -o $B/util.o 2>$B/util.err; then
    echo "util/util.c did not compile; using a malloc shim" >&2
    printf '#include <stdlib.h>\nvoid *util_malloc(size_t n){return malloc(n);}\nvoid *util_calloc(size_t a,size_t b){return calloc(a,b);}\nvoid util_free(void *p){free(p);}\n' > $B/shim.c
    $CC -c $B/shim.c -o $B/util.o || return 1
  fi
  $CC -c gpu/attn_ref.c -o $B/attn_ref.o && $CC -c gpu/host_cuda.c -o $B/host_cuda.o &&
  $CC -c tests/testutil.c -o $B/testutil.o && $CC -c bench/benchutil.c -o $B/benchutil.o || return 1
  $NV -Xptxas -v -c gpu/attn.cu -o $B/attn.o > $OUT/ptxas_attn.txt 2>&1 &
  local a=$!
  $NV -Xptxas -v -c gpu/attn_mma.cu -o $B/attn_mma.o > $OUT/ptxas_attn_mma.txt 2>&1 &
  local am=$!
  $NV -c gpu/pool.cu -o $B/pool.o || return 1
  for f in tests/test_gpu_attn tests/test_gpu_pool bench/bench_gpu_xfer bench/bench_gpu_attn; do
    $NV -c $f.cu -o $B/$(basename $f).o &
  done
  wait $a || { cat $OUT/ptxas_attn.txt; return 1; }
  wait $am || { cat $OUT/ptxas_attn_mma.txt; return 1; }
  wait
  local LIB="$B/attn.o $B/attn_mma.o $B/pool.o $B/attn_ref.o $B/host_cuda.o $B/util.o"
  $CC -c tests/test_gpu_ref.c -I tests -o $B/test_gpu_ref.o || return 1
  for t in test_gpu_attn test_gpu_pool test_gpu_ref; do
    $NV -Xlinker --gc-sections $B/$t.o $B/testutil.o $LIB -o $B/$t || return 1
  done
  for t in bench_gpu_xfer bench_gpu_attn; do
    $NV -Xlinker --gc-sections $B/$t.o $B/benchutil.o $LIB -o $B/$t || return 1
  done
  echo "build: $((SECONDS - t0)) s"
}

tests() {
  local rc=0
  for t in test_gpu_ref test_gpu_pool test_gpu_attn; do
    echo "== $t"; timeout 300 $B/$t 2>&1 | tee $OUT/$t.log; [ ${PIPESTATUS[0]} = 0 ] || { echo "$t FAILED"; rc=1; }
  done
  return $rc
}

sanitize() {
  local rc=0 cs=compute-sanitizer
  command -v $cs >/dev/null || cs=$(dirname "$(command -v nvcc)")/compute-sanitizer
  for tool in memcheck racecheck; do
    for t in test_gpu_attn test_gpu_pool; do
      [ $tool = racecheck ] && [ $t = test_gpu_pool ] && continue
      echo "== $cs --tool $tool $t (KVT_GPU_QUICK=1)"
      KVT_GPU_QUICK=1 timeout 420 $cs --tool $tool --error-exitcode 9 $B/$t > $OUT/san_${tool}_$t.log 2>&1
      local r=$?; tail -3 $OUT/san_${tool}_$t.log; echo "exit $r"; [ $r = 0 ] || rc=1
    done
  done
  return $rc
}

# one sanitizer tool on test_gpu_attn's quick set; extra environment in $2 (e.g.
# KVT_GPU_MMA_DECODE=1: the tensor-core decode runs alone, racecheck in ~1/4 of the time)
san_attn() {
  local cs=compute-sanitizer
  command -v $cs >/dev/null || cs=$(dirname "$(command -v nvcc)")/compute-sanitizer
  echo "== $cs --tool $1 test_gpu_attn (KVT_GPU_QUICK=1 ${2:-})"
  env KVT_GPU_QUICK=1 ${2:-} timeout 420 $cs --tool $1 --error-exitcode 9 $B/test_gpu_attn \
    > $OUT/san_$1_attn.log 2>&1
  local r=$?; tail -3 $OUT/san_$1_attn.log; echo "exit $r"; return $r
}

bench() {
  echo "== bench_gpu_xfer"; timeout 200 $B/bench_gpu_xfer 2>&1 | tee $OUT/bench_gpu_xfer.txt
  bench_attn
}

bench_attn() {
  echo "== bench_gpu_attn"; timeout 200 $B/bench_gpu_attn 2>&1 | tee $OUT/bench_gpu_attn.txt
  for a in "--bt 256" "--hq 64" "--hq 8"; do
    echo "== bench_gpu_attn $a"; timeout 200 $B/bench_gpu_attn $a 2>&1 | tee -a $OUT/bench_gpu_attn_var.txt
  done
  echo "== bench_gpu_attn_torch.py"
  PYTHONUNBUFFERED=1 timeout 200 python3 bench/bench_gpu_attn_torch.py 2>&1 | tee $OUT/bench_gpu_attn_torch.txt
}

[ $# = 0 ] && set -- all
for step in "$@"; do
  case $step in
    build) build || exit 1 ;;
    test) tests ;;
    sanitize) sanitize ;;
    bench) bench ;;
    bench_attn) bench_attn ;;
    memcheck_attn) san_attn memcheck ;;
    racecheck_mma_decode) san_attn racecheck KVT_GPU_MMA_DECODE=1 ;;
    launch) echo "== bench_gpu_attn --launch"; timeout 200 $B/bench_gpu_attn --launch 2>&1 | tee $OUT/bench_gpu_attn_launch.txt ;;
    all) build || exit 1; nvidia-smi -L; tests; sanitize; bench ;;
  esac
done
