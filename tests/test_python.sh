#!/usr/bin/env bash
# test_python.sh — the Python package's tests (python/tests/test_*.py, stdlib unittest) under
# ctest. They import the package from the source tree (PYTHONPATH=python) and load the
# library the build produced ($KVTIER_LIB, set by CMake to $<TARGET_FILE:kvtier>).
#
# usage: tests/test_python.sh [SANITIZE(0|1)]
# Exit: 0 pass, 1 fail, 77 skipped (python3-numpy or python3-torch missing; sanitizer build,
# whose library cannot be loaded into an uninstrumented python3 without LD_PRELOAD tricks).
# Python: $PYTHON, else Debian's /usr/bin/python3 (which sees python3-numpy/-torch), else python3.
# Tests needing transformers (not packaged by Debian 12) or CUDA skip themselves.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-0}" = 1 ] || [ "${1:-}" = ON ] || [ "${1:-}" = TRUE ]; then
    echo "test_python: skipped: sanitizer build (libasan must come first in an uninstrumented python3)"
    exit 77
fi
py=${PYTHON:-}
[ -z "$py" ] && [ -x /usr/bin/python3 ] && py=/usr/bin/python3
[ -z "$py" ] && py=$(command -v python3 || true)
if [ -z "$py" ]; then echo "test_python: skipped: no python3"; exit 77; fi
for m in numpy torch; do
    if ! "$py" -c "import $m" 2>/dev/null; then
        echo "test_python: skipped: $py cannot import $m (apt-get install python3-numpy python3-torch)"
        exit 77
    fi
done
if [ -z "${KVTIER_LIB:-}" ]; then
    echo "test_python: KVTIER_LIB is not set (ctest sets it to the built libkvtier.so)" >&2
    exit 1
fi
# Data directories of the tier tests: on the build's disk (O_DIRECT; /tmp may be tmpfs).
[ -n "${KVT_TEST_DIR:-}" ] && mkdir -p "$KVT_TEST_DIR"
export PYTHONPATH="$here/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
# Small thread pools: CI has 2 cores and ctest runs tests in parallel.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cd "$here/python/tests" || exit 1
exec "$py" -m unittest discover -s . -p 'test_*.py' -v
