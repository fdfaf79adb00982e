#!/usr/bin/env bash
# test_cli.sh — the `kvtier` program: help, version, info (self-check), errors and exit codes.
# ctest: labels=unit (registered at the end of CMakeLists.txt)
# usage: test_cli.sh PATH_TO_KVTIER SCRATCH_DIR
set -uo pipefail

kvtier=$1 scratch=$2
fails=0
out=$scratch/cli.out err=$scratch/cli.err
mkdir -p "$scratch"

# expect CODE PATTERN -- ARGS...: run kvtier ARGS, want exit CODE and PATTERN (grep -E) in
# stdout+stderr.
expect() {
    local code=$1 pat=$2 rc
    shift 3
    "$kvtier" "$@" >"$out" 2>"$err"
    rc=$?
    if [[ $rc != "$code" ]] || ! grep -qE -- "$pat" "$out" "$err"; then
        echo "FAIL: kvtier $* -> exit $rc (want $code), output must match /$pat/:" >&2
        sed 's/^/  | /' "$out" "$err" >&2
        fails=$((fails + 1))
    else
        echo "ok: kvtier $* -> $rc"
    fi
}

expect 0 '^usage: kvtier <command>' -- --help
expect 0 '^usage: kvtier <command>' -- help
expect 2 '^usage: kvtier <command>' --
expect 0 '^usage: kvtier info' -- help info
expect 0 '^usage: kvtier info' -- info --help
expect 0 '^usage: kvtier version' -- version --help
expect 0 '^kvtier [0-9]+\.[0-9]+\.[0-9]+ \(commit [^,]+, CUDA (built in|not built in)\)$' -- version
expect 0 '"version": "[0-9.]+", "commit": ".+", "cuda": (true|false)' -- version --json
expect 2 "unknown command 'frobnicate'.*kvtier --help" -- frobnicate
expect 2 "unknown option '--frob'" -- --frob
# serve and analyze: their own help when built in, else a clear "not built" (exit 2).
for cmd in serve analyze; do
    if grep -q "^  $cmd " <<<"$("$kvtier" --help)"; then
        expect 0 '[Uu]sage' -- help "$cmd"
        expect 0 '[Uu]sage' -- "$cmd" --help
    else
        expect 2 "'$cmd' is not built into this program" -- "$cmd"
        expect 2 "'$cmd' is not built into this program" -- help "$cmd"
    fi
done
expect 2 "unknown option '--bogus'.*kvtier info --help" -- info --bogus
expect 2 "--dram-bytes '12Q' is not a size" -- info --dram-bytes 12Q
expect 2 "--dram-bytes '0' is not a size" -- info --dram-bytes 0
expect 2 "--dram-bytes needs a value" -- info --dram-bytes
expect 2 "--slot-bytes 100: .*multiple of 64" -- info --slot-bytes 100
expect 1 "holds no slot of 128\\.00 MiB; make --slot-bytes at most --dram-bytes" -- info --dram-bytes 64M --slot-bytes 128M
expect 1 "not a directory: create it" -- info --data-dir "$scratch/no-such-dir"

# The self-check, in text and JSON, with default and explicit slot sizes (DRAM only).
expect 0 '^self-check passed$' -- info --dram-bytes 64M
expect 0 '^  dram +on +64\.00 MiB +2\.00 MiB +32 ' -- info --dram-bytes 64M
expect 0 '^  dram +on +64\.00 MiB +1\.00 MiB +64 ' -- info --dram-bytes=64M --slot-bytes=1M
expect 0 '"passed": true' -- info --dram-bytes 16MiB --json
expect 0 '^  dram +64\.00 MiB +[0-9.]+ +[0-9.-]+ +[0-9.]+ [um]?s ' -- info --dram-bytes 64M # cost model
expect 0 '"cost_model": \[' -- info --dram-bytes 16M --json
expect 1 'has 4\.00 MiB free; the self-check needs 8\.00 MiB \(4 blocks\): raise --dram-bytes' -- info --dram-bytes 4M
expect 2 '--nvme-bytes and --disk-bytes need --data-dir' -- info --disk-bytes 1G
expect 0 '^self-check passed$' -- info # embedded defaults (1 GiB)

# Persistent: write-through, flush, warm restart, read back from disk (then nvme), verified.
# Twice on the same folder: the first run leaves nothing behind that disturbs the second.
data=$scratch/data
rm -rf "$data" && mkdir -p "$data"
expect 0 'read after restart +ok .*read from disk' -- info --dram-bytes 64M --disk-bytes 256M --data-dir "$data"
expect 0 "^  data dir +$data " -- info --dram-bytes 64M --disk-bytes 256M --data-dir "$data"
expect 0 'read after restart +ok .*read from nvme' -- info --dram-bytes 64M --nvme-bytes 64M --disk-bytes 256M --data-dir "$data"
expect 0 '"persistent": true' -- info --dram-bytes 64M --disk-bytes 256M --data-dir "$data" --json

if ((fails)); then
    echo "test_cli: $fails check(s) failed" >&2
    exit 1
fi
echo "test_cli: ok"
