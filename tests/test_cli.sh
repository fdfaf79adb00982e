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

# probe: a small scratch file in a temp directory; the table, the drain time, the config.
expect 0 '^usage: kvtier probe' -- probe --help
expect 0 '^usage: kvtier probe' -- help probe
expect 2 'nothing to probe' -- probe
expect 2 "--size '12Q' is not a size" -- probe --nvme "$scratch" --size 12Q
expect 2 '--qd 0: 1\.\.4096' -- probe --nvme "$scratch" --qd 0
expect 2 '--block 1000: a multiple of 4 KiB' -- probe --nvme "$scratch" --block 1000
expect 1 'nvme: .*no-such-dir is not a directory' -- probe --nvme "$scratch/no-such-dir" --no-gpu
pdir=$scratch/probe
rm -rf "$pdir" && mkdir -p "$pdir/nvme" "$pdir/disk"
ini=$pdir/kv.ini
printf 'port = 7000\nnvme_read_bandwidth = 1\n[tenant:alice]\nquota_dram = 1M\n' >"$ini"
expect 0 '^nvme +[^ ]+/nvme +[0-9.]+ [KMGT]iB\* +[0-9]+\.[0-9]{3} +[0-9]+\.[0-9]{3} +[0-9.]+ (us|ms|s|min|h) +(O_DIRECT|buffered)' \
    -- probe --nvme "$pdir/nvme" --disk "$pdir/disk" --size 8MiB --block 1MiB --qd 4 --write-config "$ini"
grep -qE '^disk +[^ ]+/disk ' "$out" || { echo "FAIL: probe: no disk row" >&2; fails=$((fails + 1)); }
grep -qE '^host<->GPU link: ' "$out" || grep -qE '^dram ' "$out" ||
    { echo "FAIL: probe: no line about the host<->GPU link" >&2; fails=$((fails + 1)); }
# the keys replaced or added in the server part, once each, the rest kept, no scratch left
for k in nvme_read_bandwidth nvme_write_bandwidth disk_read_bandwidth disk_write_bandwidth; do
    [[ $(grep -cE "^$k = [1-9][0-9]*\$" "$ini") == 1 ]] ||
        { echo "FAIL: probe --write-config: $k not set once in $ini:" >&2; sed 's/^/  | /' "$ini" >&2; fails=$((fails + 1)); }
done
[[ $(sed -n 1p "$ini") == 'port = 7000' && $(grep -n '^\[tenant:alice\]' "$ini") == 6:* &&
   $(tail -1 "$ini") == 'quota_dram = 1M' ]] ||
    { echo "FAIL: probe --write-config changed other lines:" >&2; sed 's/^/  | /' "$ini" >&2; fails=$((fails + 1)); }
[[ -z $(find "$pdir/nvme" "$pdir/disk" -mindepth 1) && ! -e $ini.probe-tmp ]] ||
    { echo "FAIL: probe left files behind" >&2; fails=$((fails + 1)); }
# the probe reads the service's configuration: its tiers, their capacities
if grep -q "^  serve " <<<"$("$kvtier" --help)"; then
    printf 'data_dir = %s\nnvme_bytes = 3GiB\ndisk_bytes = 1GiB\n' "$pdir" >"$pdir/svc.ini"
    expect 0 '^nvme +[^ ]+/nvme +3\.00 GiB +[0-9.]+ +[0-9.]+ +[0-9.]+ (us|ms|s|min)' \
        -- probe --config "$pdir/svc.ini" --size 4MiB --block 1MiB --no-gpu
fi

if ((fails)); then
    echo "test_cli: $fails check(s) failed" >&2
    exit 1
fi
echo "test_cli: ok"
