#!/usr/bin/env bash
# Makes sure everything the test suite and the demo need is installed:
#   - redis-server and redis-cli (the tests spawn throw-away redis-server
#     processes on free loopback ports; they never use a system service or 6379),
#   - a C linker, pkg-config and OpenSSL headers (needed by `--all-features`,
#     whose `tls-native-tls` feature builds openssl-sys),
#   - jq (.ci/run's rust-version step reads `cargo metadata` with it),
#   - a Rust toolchain (checked only: install it with rustup).
# Idempotent and silent when everything is already there.
# Honours REDMUTEX_REDIS_SERVER (path to a redis-server binary) like the tests.
set -euo pipefail

missing=()

if [[ -n "${REDMUTEX_REDIS_SERVER:-}" ]]; then
    if [[ ! -x "$REDMUTEX_REDIS_SERVER" ]] && ! command -v "$REDMUTEX_REDIS_SERVER" >/dev/null 2>&1; then
        echo "error: REDMUTEX_REDIS_SERVER=$REDMUTEX_REDIS_SERVER is not an executable" >&2
        exit 1
    fi
    # redis-cli is only used by scripts/demo.sh; install it if absent.
    command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
elif ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    missing+=(redis-server)
fi
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ! pkg-config --exists openssl 2>/dev/null; then
    missing+=(libssl-dev)
fi
command -v jq >/dev/null 2>&1 || missing+=(jq)

if ((${#missing[@]} > 0)); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing ${missing[*]} and this is not a Debian/Ubuntu system (no apt-get)." >&2
        echo "Install redis-server (7.x), a C compiler, pkg-config, the OpenSSL headers and jq with your package manager," >&2
        echo "or point REDMUTEX_REDIS_SERVER at a redis-server binary." >&2
        exit 1
    fi
    sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "error: missing ${missing[*]}; run as root or install sudo:" >&2
            echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "install-redis.sh: installing ${missing[*]}" >&2
    # If the package starts a system redis on 6379, that is harmless: tests never use it.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -z "${REDMUTEX_REDIS_SERVER:-}" ]] && ! command -v redis-server >/dev/null 2>&1; then
    echo "error: redis-server still not on PATH after installation" >&2
    exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install a Rust toolchain with rustup:" >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y" >&2
    echo "  . \"\$HOME/.cargo/env\"" >&2
    exit 1
fi
