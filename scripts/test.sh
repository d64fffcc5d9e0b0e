#!/usr/bin/env bash
# The one test command: installs prerequisites if needed, then runs the whole
# suite (unit, integration and doc tests) against real, throw-away
# redis-server processes. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test it harness::     (one module of the integration tests)
#   scripts/test.sh -- --nocapture
#
# A failing test binary does not hide the others: every one runs (the library's
# unit tests, the CLI's, the `it` binary and the doc tests), the failed tests of
# all of them are listed again at the end, and the exit status is non-zero when
# anything failed. (`cargo test --no-fail-fast` runs every binary, but it still
# skips the doc tests once another binary failed: they are then run on their
# own.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-redis.sh

# The integration tests spawn many redis-servers; keep parallelism moderate.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

log=$(mktemp "${TMPDIR:-/tmp}/redmutex-test.XXXXXX")
trap 'rm -f "$log"' EXIT

# Whether the arguments pick test targets themselves (then cargo runs just those).
picks_targets=false
for arg in "$@"; do
    case $arg in
        --) break ;;
        --lib | --bin | --bin=* | --bins | --test | --test=* | --tests | --example | --example=* | \
            --examples | --bench | --bench=* | --benches | --all-targets | --doc)
            picks_targets=true
            ;;
    esac
done

status=0
cargo test --all-features --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
if ((status != 0)) && ! $picks_targets && ! grep -q '^ *Doc-tests ' "$log"; then
    echo
    echo "scripts/test.sh: a test binary failed and cargo skipped the doc tests; running them now"
    cargo test --all-features --doc "$@" 2>&1 | tee -a "$log" || true
fi
if ((status != 0)); then
    {
        echo
        echo "scripts/test.sh: FAILED (exit $status). The failed tests, from every test binary:"
        grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^/  /' ||
            echo "  (no failed test listed: see cargo's errors above)"
        grep -E '^error' "$log" | sed 's/^/  /' || true
    } >&2
fi
exit "$status"
