#!/usr/bin/env bash
# test_redis_cli — redis-cli (redis-tools) against kvtier-serve over TCP and the Unix
# socket: AUTH (password, user + password), SET/GET/MGET, EXPIRE/TTL, DEL, INFO, RESP3;
# the configuration's <tier>_read/write_bandwidth keys in INFO kvtier (the cost model's view).
# usage: test_redis_cli.sh path/to/kvtier-serve        exit 0 pass, 1 fail, 77 skip
set -u
BIN=${1:?usage: test_redis_cli.sh path/to/kvtier-serve}
command -v redis-cli >/dev/null || { echo "SKIP: redis-cli (redis-tools) not installed"; exit 77; }
base=${KVT_TEST_DIR:-/tmp}
mkdir -p "$base"
dir=$(mktemp -d "$base/kvs-cli-XXXXXX")
((${#dir} > 80)) && { rm -rf "$dir"; dir=$(mktemp -d /tmp/kvs-cli-XXXXXX); }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sock=$dir/kvtier.sock
cat >"$dir/kvtier.conf" <<CONF
[server]
port = $port
unixsocket = $sock
data_dir = $dir/data
# as `kvtier probe --write-config` writes them: the cost model's bandwidths (INFO kvtier)
disk_read_bandwidth = 123456789
dram_write_bandwidth = 20000000000
[tenant:default]
password = pw0
[tenant:worker]
password = pw1
CONF
"$BIN" --config "$dir/kvtier.conf" >"$dir/server.log" 2>&1 &
pid=$!
fails=0
cleanup() {
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    local rc=$?
    if ((rc != 0 || fails != 0)); then echo "---- server log"; cat "$dir/server.log"; fi
    rm -rf "$dir"
    ((rc == 0)) || { echo "FAIL: server exit status $rc"; exit 1; }
}
trap cleanup EXIT
ok() { echo "ok - $1"; }
no() { echo "FAIL - $1"; fails=$((fails + 1)); }
expect() { # expect "description" "wanted output" command...
    local what=$1 want=$2 got
    shift 2
    got=$("$@" 2>&1)
    if [[ "$got" == "$want" ]]; then ok "$what"; else no "$what: wanted [$want], got [$got]"; fi
}
for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done

C=(redis-cli --no-auth-warning -p "$port")
expect "no AUTH: NOAUTH" "NOAUTH Authentication required." "${C[@]}" GET x
got=$("${C[@]}" -a nope PING 2>&1)
[[ "$got" == "AUTH failed: WRONGPASS"* ]] && ok "wrong password: WRONGPASS" || no "wrong password: [$got]"
A=("${C[@]}" -a pw0)
expect "AUTH <password> + PING" "PONG" "${A[@]}" PING
expect "SET" "OK" "${A[@]}" SET greeting "hello world"
expect "GET" "hello world" "${A[@]}" GET greeting
expect "MSET" "OK" "${A[@]}" MSET k1 v1 k2 v2
expect "MGET" $'v1\n\nv2' "${A[@]}" MGET k1 missing k2
expect "EXPIRE" "1" "${A[@]}" EXPIRE k1 100
expect "TTL" "100" "${A[@]}" TTL k1
expect "TTL of a key without expiry" "-1" "${A[@]}" TTL k2
expect "PEXPIRE + lazy expiry" "1" "${A[@]}" PEXPIRE k2 50
sleep 0.2
expect "expired key is gone" "" "${A[@]}" GET k2
expect "DEL" "1" "${A[@]}" DEL greeting
expect "DBSIZE" "1" "${A[@]}" DBSIZE
info=$("${A[@]}" INFO)
[[ "$info" == *"redis_version:"* && "$info" == *"# Keyspace"* && "$info" == *"db0:keys=1"* ]] &&
    ok "INFO in Redis's format" || no "INFO: $info"
expect "INFO section" "tiers:dram,disk" bash -c "${A[*]} INFO kvtier | tr -d '\r' | grep ^tiers:"
expect "INFO: the configured bandwidths reach the cost model" \
    $'dram_write_bandwidth:20000000000\ndisk_read_bandwidth:123456789' \
    bash -c "${A[*]} INFO kvtier | tr -d '\r' | grep -E '^(dram_write|disk_read)_bandwidth:'"
# user + password, and the users' data are separate tenants
W=(redis-cli --no-auth-warning -p "$port" --user worker --pass pw1)
expect "AUTH user password" "OK" "${W[@]}" SET k1 "worker's"
expect "tenants are separate (worker)" "worker's" "${W[@]}" GET k1
expect "tenants are separate (default)" "v1" "${A[@]}" GET k1
# Unix socket
expect "Unix socket" "v1" redis-cli --no-auth-warning -s "$sock" -a pw0 GET k1
# RESP3
got=$("${A[@]}" -3 HELLO 3 | tr '\n' ' ')
[[ "$got" == *"proto 3 "* ]] && ok "RESP3 via redis-cli -3 (HELLO 3)" || no "RESP3: [$got]"
expect "RESP3 GET" "v1" "${A[@]}" -3 GET k1
# a value from stdin (-x), binary, 1 MiB
head -c 1048576 /dev/urandom >"$dir/blob"
expect "SET -x of a 1 MiB binary value" "OK" bash -c "${A[*]} -x SET blob < '$dir/blob'"
"${A[@]}" --raw GET blob | head -c 1048576 | cmp -s - "$dir/blob" && ok "GET of the 1 MiB value is identical" ||
    no "1 MiB value differs"
# pipe mode (mass insertion)
for i in $(seq 1000); do printf 'SET pipe:%d %d\r\n' "$i" "$i"; done | "${A[@]}" --pipe >"$dir/pipe.out" 2>&1
grep -q "errors: 0, replies: 1000" "$dir/pipe.out" && ok "redis-cli --pipe: 1000 replies, 0 errors" ||
    no "pipe: $(cat "$dir/pipe.out")"
expect "pipe data" "777" "${A[@]}" GET pipe:777
((fails == 0)) && echo PASS || echo "FAIL: $fails"
exit $((fails != 0))
