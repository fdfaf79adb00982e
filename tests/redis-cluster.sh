#!/usr/bin/env bash
# redis-cluster.sh — start or stop a throwaway Redis Cluster on loopback ports (tests, benches).
#
#   redis-cluster.sh start N_MASTERS REPLICAS BASE_PORT DIR
#       N_MASTERS × (1 + REPLICAS) redis-server processes on 127.0.0.1:BASE_PORT.. (the bus
#       on port + 10000), one subdirectory per node under DIR (config, log, pid file),
#       joined with `redis-cli --cluster create`; returns once every node reports
#       cluster_state:ok and every replica's link to its master is up. Prints the ports.
#   redis-cluster.sh stop DIR
#       SIGTERM every node whose pid file is under DIR (SIGKILL after 3 s), then removes DIR.
#
# The settings that matter for a cache (docs/remote.md explains them):
#   cluster-node-timeout 1000             a dead master is failed over in ~2-4 s
#   cluster-require-full-coverage no      the other shards keep serving while one is down
#   cluster-replica-validity-factor 0     any replica may take over, however long it lagged
#   save "" / appendonly no               no persistence: the cluster is a cache
# Environment: KVT_REDIS_SERVER, KVT_REDIS_CLI override the programs; KVT_REDIS_MAXMEMORY sets
# maxmemory per node (with allkeys-lru) when given; KVT_REDIS_OWNER_PID=<pid> starts a watchdog
# that stops the cluster when that process exits, however it exits (a test that aborts under
# a sanitizer or is SIGKILLed by a ctest timeout leaves no servers behind).
# Exit codes: 0 ok, 1 failure (everything started is stopped again), 2 usage, 77 no redis-server.
set -u
SERVER=${KVT_REDIS_SERVER:-redis-server}
CLI=${KVT_REDIS_CLI:-redis-cli}

usage() { echo "usage: $0 start N_MASTERS REPLICAS BASE_PORT DIR | stop DIR" >&2; exit 2; }

stop_dir() {
    local dir=$1 pids=() p
    [ -d "$dir" ] || return 0
    for f in "$dir"/*/redis.pid; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null) || continue
        [[ "$p" =~ ^[0-9]+$ ]] || continue
        kill -TERM "$p" 2>/dev/null && pids+=("$p")
    done
    for _ in $(seq 30); do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$dir"
}

wait_for() { # seconds, command...: poll every 0.1 s
    local limit=$(( $1 * 10 )); shift
    for _ in $(seq "$limit"); do "$@" && return 0; sleep 0.1; done
    return 1
}

cluster_ok() { # every node: state ok, all slots assigned, every node known
    local port
    for port in "${PORTS[@]}"; do
        local info
        info=$("$CLI" -p "$port" cluster info 2>/dev/null) || return 1
        grep -q '^cluster_state:ok' <<<"$info" || return 1
        grep -q '^cluster_slots_assigned:16384' <<<"$info" || return 1
        grep -q "^cluster_known_nodes:${#PORTS[@]}" <<<"$info" || return 1
    done
}

replicas_up() {
    local port
    for port in "${PORTS[@]}"; do
        local info
        info=$("$CLI" -p "$port" info replication 2>/dev/null) || return 1
        if grep -q '^role:slave' <<<"$info"; then
            grep -q '^master_link_status:up' <<<"$info" || return 1
        fi
    done
}

case "${1:-}" in
start)
    [ $# -eq 5 ] || usage
    masters=$2 replicas=$3 base=$4 dir=$5
    command -v "$SERVER" >/dev/null && command -v "$CLI" >/dev/null || {
        echo "redis-cluster.sh: $SERVER or $CLI not installed" >&2; exit 77; }
    total=$(( masters * (1 + replicas) ))
    [ "$masters" -ge 3 ] || { echo "redis-cluster.sh: Redis Cluster needs >= 3 masters" >&2; exit 2; }
    mkdir -p "$dir" || exit 1
    PORTS=()
    for i in $(seq 0 $(( total - 1 ))); do
        port=$(( base + i )); PORTS+=("$port")
        mkdir -p "$dir/$port"
        extra=()
        if [ -n "${KVT_REDIS_MAXMEMORY:-}" ]; then
            extra=(--maxmemory "$KVT_REDIS_MAXMEMORY" --maxmemory-policy allkeys-lru)
        fi
        "$SERVER" --port "$port" --bind 127.0.0.1 --protected-mode no \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 1000 --cluster-require-full-coverage no \
            --cluster-replica-validity-factor 0 --cluster-allow-reads-when-down no \
            --save "" --appendonly no --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
            --dir "$dir/$port" --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
            --daemonize yes "${extra[@]}" >/dev/null || { stop_dir "$dir"; exit 1; }
    done
    for port in "${PORTS[@]}"; do
        wait_for 10 sh -c "\"$CLI\" -p $port ping 2>/dev/null | grep -q PONG" || {
            echo "redis-cluster.sh: node $port did not start (see $dir/$port/redis.log)" >&2
            stop_dir "$dir"; exit 1; }
    done
    addrs=(); for port in "${PORTS[@]}"; do addrs+=("127.0.0.1:$port"); done
    "$CLI" --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes \
        >"$dir/create.log" 2>&1 || {
        echo "redis-cluster.sh: cluster create failed (see $dir/create.log)" >&2
        stop_dir "$dir"; exit 1; }
    wait_for 30 cluster_ok || { echo "redis-cluster.sh: cluster never reached state ok" >&2; stop_dir "$dir"; exit 1; }
    wait_for 30 replicas_up || { echo "redis-cluster.sh: replicas never synced" >&2; stop_dir "$dir"; exit 1; }
    if [ -n "${KVT_REDIS_OWNER_PID:-}" ]; then
        owner=$KVT_REDIS_OWNER_PID
        setsid bash -c "while kill -0 $owner 2>/dev/null && [ -d '$dir' ]; do sleep 0.5; done; '$0' stop '$dir'" \
            </dev/null >/dev/null 2>&1 &
    fi
    echo "${PORTS[*]}"
    ;;
stop)
    [ $# -eq 2 ] || usage
    stop_dir "$2"
    ;;
*)
    usage
    ;;
esac
