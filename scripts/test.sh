#!/usr/bin/env bash
# The one test command: installs prerequisites if needed, then runs the whole
# suite (unit, integration and doc tests) against real, throw-away
# redis-server processes. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test it harness::     (one module of the integration tests)
#   scripts/test.sh -- --nocapture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-redis.sh

# The integration tests spawn many redis-servers; keep parallelism moderate.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

exec cargo test --all-features "$@"
