#!/usr/bin/env bash
# The one demo command: runs examples/threads.rs (threads contending for one
# distributed lock) against three Redis nodes.
#
# With REDMUTEX_NODES unset, starts three throw-away redis-servers on free
# loopback ports (in a temp dir) and stops them on exit. They are durable (an
# AOF fsynced on every write), so they vote at once: a node without durable
# persistence that started less than the longest TTL ago (60 s by default)
# does not count toward acquisitions (the restart quarantine).
# With REDMUTEX_NODES set (node URLs separated by spaces or ';'), uses those as given.
# Extra arguments are passed to the example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-redis.sh

redis_server="${REDMUTEX_REDIS_SERVER:-redis-server}"
pids=()
tmp=""

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$tmp" ]]; then
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints a loopback TCP port that is free right now.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
        return
    fi
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 30000))
        # A refused connection means nothing listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "demo.sh: no free port found" >&2
    return 1
}

# Starts one redis-server; prints its port. Retries on a port race.
start_node() {
    local n=$1 port dir pid
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        dir="$tmp/node$n-$port"
        mkdir -p "$dir"
        "$redis_server" --port "$port" --bind 127.0.0.1 --save "" \
            --appendonly yes --appendfsync always \
            --dir "$dir" --logfile "$dir/redis.log" --daemonize no \
            </dev/null >/dev/null 2>&1 &
        pid=$!
        # Up to 10 s for PING, unless the process dies (e.g. port taken).
        for _ in $(seq 1 200); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break
            fi
            if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; then
                pids+=("$pid")
                started_port=$port
                return 0
            fi
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "demo.sh: redis-server on port $port failed; log:" >&2
        tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
    done
    echo "demo.sh: could not start redis-server" >&2
    return 1
}

if [[ -z "${REDMUTEX_NODES:-}" ]]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/redmutex-demo.XXXXXX")
    urls=()
    for n in 1 2 3; do
        started_port=""
        start_node "$n"
        urls+=("redis://127.0.0.1:$started_port")
    done
    REDMUTEX_NODES="${urls[*]}"
    echo "demo.sh: started 3 local redis-server nodes: $REDMUTEX_NODES" >&2
    echo "demo.sh: they fsync every write (appendonly yes, appendfsync always), so they vote" \
        "at once; fresh nodes without it would sit out their first 60 s (restart quarantine," \
        "see docs/operations.md)" >&2
fi
export REDMUTEX_NODES

if [[ ! -f examples/threads.rs ]]; then
    echo "demo.sh: examples/threads.rs does not exist yet" >&2
    exit 1
fi

cargo run --quiet --example threads -- "$@"
