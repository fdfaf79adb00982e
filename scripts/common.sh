# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# scripts/common.sh — shared by scripts/test and scripts/start (sourced, not run).
#
# Debian 12 set-up: which packages the build and the tests need and why, installing the
# missing ones, and the CMake configuration of the main build (build/), which both scripts
# share so that `scripts/start` installs exactly what `scripts/test` tested.

# Packages, one per line with the reason. KVT_PACKAGES build and run kvtier (scripts/start);
# the test suite (scripts/test) needs KVT_TEST_PACKAGES too.
KVT_PACKAGES=(
    build-essential   # gcc 12, make, libc headers, binutils
    cmake             # the build (3.25 on Debian 12)
    pkg-config        # finds the libraries below; kvtier.pc for users of libkvtier
    git               # the commit stamped into `kvtier version` and benchmark headers
    libxxhash-dev     # XXH3: block keys and checksums
    liburing-dev      # io_uring: batched O_DIRECT reads and writes of the nvme/disk tiers
    liblz4-dev        # LZ4: compressed records of the disk tier
    librocksdb-dev    # RocksDB C API: the persistent block catalog (a restart is warm)
    libhiredis-dev    # hiredis: the remote tier's Redis client
    libmicrohttpd-dev # `kvtier serve`: the Prometheus /metrics endpoint
    libinih-dev       # `kvtier serve`: its INI configuration file
    libjansson-dev    # `kvtier analyze`: JSON traces and reports
)
KVT_TEST_PACKAGES=(
    libasan8          # AddressSanitizer runtime for the sanitizer build (gcc 12)
    libubsan1         # UndefinedBehaviorSanitizer runtime for the sanitizer build
    redis-server      # throwaway Redis Cluster nodes for the remote tier's tests
    redis-tools       # redis-cli: against `kvtier serve`, and to form those clusters
    python3-redis     # redis-py against `kvtier serve`
    python3-numpy     # the Python package (python/) and its tests
    python3-torch     # the Python package's torch I/O tests (CPU)
    fio               # bench_io's roofline peer (the smoke test runs it briefly)
    clang             # the libFuzzer target of the service's protocol parser
    libclang-rt-14-dev # libFuzzer and sanitizer runtimes for clang
)

kvt_say()  { printf '\n== %s\n' "$*"; }
kvt_die()  { printf '\n%s: error: %s\n' "${KVT_PROG:-kvtier}" "$*" >&2; exit 1; }

# Install those of the given packages that are missing: `apt-get update` once, then one
# `apt-get install`. Nothing is touched (and root is not needed) when all are installed.
# Sets KVT_INSTALLED to the packages it installed.
kvt_ensure_packages() {
    local missing=() p
    KVT_INSTALLED=()
    if ! command -v dpkg-query >/dev/null 2>&1; then
        kvt_die "dpkg-query not found: these scripts set up Debian 12. On another system install" \
                "the equivalents of: $* and build with cmake (see README.md)."
    fi
    for p in "$@"; do
        if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]]; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        echo "packages: all $# present ($*)"
        return 0
    fi
    echo "packages missing: ${missing[*]}"
    if ((EUID != 0)); then
        kvt_die "installing packages needs root. Run as root (sudo bash $KVT_SELF), or install" \
                "them yourself: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update ||
        kvt_die "apt-get update failed (network? apt sources? another apt running?); fix it and re-run"
    apt-get install -y --no-install-recommends "${missing[@]}" ||
        kvt_die "apt-get install ${missing[*]} failed; fix the error above and re-run"
    KVT_INSTALLED=("${missing[@]}")
}

# The short commit of the checkout, or "unknown" (tarball, or git refuses the directory).
kvt_git_commit() {
    git -c safe.directory="$KVT_ROOT" -C "$KVT_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown
}

# CMake arguments for the CUDA compiler: nvcc is auto-detected from PATH, but the toolkit's
# usual home /usr/local/cuda/bin is often not on PATH (root's PATH, CI), so name it.
kvt_cuda_args() {
    if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
        echo "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc"
    fi
}

# Configure and build one build folder: kvt_build <dir> <cmake -D args...>
# Re-running reuses the folder: CMake re-reads its cache, make rebuilds what changed.
kvt_build() {
    local dir=$1
    shift
    cmake -S "$KVT_ROOT" -B "$KVT_ROOT/$dir" "$@" -DKVT_GIT_COMMIT="$(kvt_git_commit)" ||
        { echo "$KVT_PROG: configuring $dir/ failed (see the CMake output above)" >&2; return 1; }
    cmake --build "$KVT_ROOT/$dir" --parallel "$(nproc)" ||
        { echo "$KVT_PROG: building $dir/ failed (see the compiler output above)" >&2; return 1; }
}

# The main build (build/): Release, warnings as errors, CUDA when a toolkit is found.
# scripts/test runs the suite on it; scripts/start installs it.
kvt_main_build_args() {
    # shellcheck disable=SC2046
    echo -DCMAKE_BUILD_TYPE=Release -DKVT_WERROR=ON -DKVT_SANITIZE=OFF -DKVT_CUDA=ON $(kvt_cuda_args)
}
