#!/usr/bin/env bash
# Runs a command (a test or bench run) and fails if anything it started outlives it:
#   - a redis-server or redis-sentinel (the harness starts them; each test must kill its own),
#   - any other process it started (worker processes, the redmutex CLI, shells),
#   - a directory of the harness (redmutex-test-*, redmutex-tls-*) left in the temp dir.
# Usage: scripts/no-leftovers.sh COMMAND [ARGS...]   (exit status: the command's, else 1 on a
# leftover, else 0). Leftovers are listed, then killed, so the machine stays clean.
#
# Telling ours apart from everybody else's (other checkouts may run their suites on the same
# machine at the same time): the command runs with TMPDIR set to a fresh directory. The
# harness creates every node's directory in std::env::temp_dir() (named
# redmutex-test-<pid>-...) and starts each redis-server and sentinel in it, so:
#   - a process whose working directory lies in that TMPDIR is ours. This is how redis
#     processes are recognised: redis-server rewrites its argv and environment for its process
#     title, so neither /proc/<pid>/cmdline nor environ can tell;
#   - a process whose environment holds that TMPDIR descends from the command.
# A leftover redis is usually an orphan (parent pid 1: the test process exited without killing
# it, e.g. a node kept in a static that is never dropped); the listing says so. The redis
# processes running before the command are recorded too: a new orphaned redis-server with a
# harness directory that is NOT in our TMPDIR is reported as a warning only (it belongs to
# another run on this machine, or to a harness that stopped honouring TMPDIR).
set -euo pipefail

if (($# == 0)); then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 64
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/redmutex-ci.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# pid of every redis process (redis-server, redis-sentinel, or a sentinel run as
# `redis-server --sentinel`, whose comm is redis-server or redis-sentinel).
redis_pids() {
    local d comm
    for d in /proc/[0-9]*; do
        comm=$(cat "$d/comm" 2>/dev/null) || continue
        case $comm in redis-server | redis-sentinel) echo "${d#/proc/}" ;; esac
    done
}

# One line per live (not zombie) process that is ours: "pid ppid comm cwd".
ours() {
    local d pid stat state ppid comm cwd env
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        stat=$(cat "$d/stat" 2>/dev/null) || continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        read -r state ppid _ <<<"${stat##*) }"
        [[ $state == Z ]] && continue
        comm=$(cat "$d/comm" 2>/dev/null) || continue
        cwd=$(readlink "$d/cwd" 2>/dev/null) || cwd="?"
        # (No `tr | grep -q` pipeline: with pipefail, grep's early exit would fail it.)
        env=$({ tr '\0' '\n' <"$d/environ"; } 2>/dev/null) || env=""
        if [[ $cwd == "$tmp"/* || $'\n'$env$'\n' == *$'\n'"TMPDIR=$tmp"$'\n'* ]]; then
            echo "$pid $ppid $comm $cwd"
        fi
    done
}

before=$(redis_pids | sort)

status=0
env TMPDIR="$tmp" "$@" || status=$?

# Everything the suite starts is SIGKILLed and reaped before the test process exits; allow
# one second for a kill still in flight, no more.
leftovers=""
for _ in $(seq 10); do
    leftovers=$(ours)
    [[ -z $leftovers ]] && break
    sleep 0.1
done

failed=0
if [[ -n $leftovers ]]; then
    failed=1
    echo >&2
    echo "error: processes started by \`$*\` outlived it:" >&2
    while read -r pid ppid comm cwd; do
        orphan=""
        [[ $ppid == 1 ]] && orphan=" (orphan: parent is pid 1)"
        echo "  pid $pid $comm, cwd $cwd$orphan" >&2
    done <<<"$leftovers"
    while read -r pid _; do
        kill -CONT "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    done <<<"$leftovers"
    echo "  (killed)" >&2
fi

dirs=$(find "$tmp" -mindepth 1 -maxdepth 1 -name 'redmutex-*' 2>/dev/null || true)
if [[ -n $dirs ]]; then
    failed=1
    echo >&2
    echo "error: \`$*\` left harness directories behind:" >&2
    sed 's/^/  /' <<<"$dirs" >&2
fi

# Not ours by TMPDIR: warn only (see the header).
while read -r pid; do
    [[ -z $pid ]] && continue
    ppid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null) || continue
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
    if [[ $ppid == 1 && $cwd == */redmutex-test-* && $cwd != "$tmp"/* ]]; then
        echo "warning: orphaned redis pid $pid in $cwd appeared during the run," \
            "outside this run's TMPDIR (another run on this machine?)" >&2
    fi
done < <(comm -13 <(echo "$before") <(redis_pids | sort))

if ((status != 0)); then
    exit "$status"
fi
exit "$failed"
