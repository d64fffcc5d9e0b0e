#!/usr/bin/env bash
# Redmutex against node-redlock in one run (docs/benchmarks.md, "Against the peers").
#
# Installs node-redlock (npm `redlock` 5.0.0-beta.2 on ioredis 5, benches/peers/package.json)
# under target/peers/node, then runs `cargo bench --bench peers`: five throw-away redis-servers
# on free loopback ports, and at 1, 3 and 5 of them the overlapped floor, redmutex's cycle and
# node-redlock's cycle (benches/peers/node-redlock.js), as it is (deciding at the quorum) and
# made to await every node's reply, in paired, rotated rounds.
# Arguments go to the bench: --quick, --rounds N, --secs S.
#
# Needs node and npm (Node.js 18 or later) and the npm registry; CI does not run this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench-peers.sh: $tool is not installed; install Node.js 18+ with npm (e.g. apt-get install nodejs npm) to measure node-redlock" >&2
        exit 1
    fi
done
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
    echo "bench-peers.sh: node $(node --version) is too old; node-redlock needs Node.js 18 or later" >&2
    exit 1
fi

bash scripts/install-redis.sh

peers_dir=target/peers/node
mkdir -p "$peers_dir"
if ! cmp -s benches/peers/package.json "$peers_dir/package.json" || [[ ! -d "$peers_dir/node_modules/redlock" ]]; then
    cp benches/peers/package.json "$peers_dir/package.json"
    if ! (cd "$peers_dir" && npm install --no-audit --no-fund --loglevel=error >npm-install.log 2>&1); then
        echo "bench-peers.sh: npm install of node-redlock failed (is the npm registry reachable?); see $peers_dir/npm-install.log" >&2
        exit 1
    fi
fi

version() {
    node -p "require('./$peers_dir/node_modules/$1/package.json').version"
}
echo "peers: node $(node --version), redlock $(version redlock), ioredis $(version ioredis), $(redis-server --version | cut -d' ' -f1-3), redmutex $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "load before: $(uptime)"

# The bench runs in a process group of its own (set -m), with its redis-servers and peers in it:
# an interrupted run takes the whole group with it.
bench_pgid=""
cleanup() {
    if [[ -n "$bench_pgid" ]]; then
        kill -KILL -- "-$bench_pgid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

set -m
peer="node $PWD/benches/peers/node-redlock.js"
REDMUTEX_PEERS="node-redlock=$peer;node-redlock-all=$peer --all-replies" \
    NODE_PATH="$PWD/$peers_dir/node_modules" \
    cargo bench --bench peers -- "$@" &
bench_pgid=$!
set +m
rc=0
wait "$bench_pgid" || rc=$?
if [[ "$rc" -eq 0 ]]; then
    # Ended normally: the bench killed its nodes and peers itself.
    bench_pgid=""
fi
echo "load after: $(uptime)"
exit "$rc"
