#!/usr/bin/env bash
# Checks that the library's modules import only modules below them (docs/design.md, "Modules").
# Every `crate::<module>` path written in code (not in comments) is checked against the rank
# table below; a module may name modules of a lower rank only (or its own children).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# module -> rank (higher = nearer the user)
declare -A rank=(
    [lib]=13
    [factory]=12
    [lock]=11 [rwlock]=11 [semaphore]=11 [multi]=11 [election]=11 [once]=11
    [handle]=10
    [guard]=9
    [kind]=8
    [local]=7
    [keeper]=6
    [protocol]=5
    [shared]=4
    [waker]=3 [notify]=3 [observe]=3
    [round]=2
    [node]=1
    [scripts]=0 [command]=0 [error]=0
)

status=0
for file in src/*.rs src/*/*.rs; do
    rel=${file#src/}
    module=${rel%%/*}
    module=${module%.rs}
    [[ -n "${rank[$module]:-}" ]] || { echo "check-layers: $file: module '$module' has no rank" >&2; status=1; continue; }
    # Code lines only: drop line comments and doc comments.
    used=$(sed -e 's://.*$::' "$file" | grep -oE 'crate::[a-z_]+' | sed 's/crate:://' | sort -u || true)
    for dep in $used; do
        [[ "$dep" == "$module" ]] && continue
        if [[ -z "${rank[$dep]:-}" ]]; then
            echo "check-layers: $file uses crate::$dep, which has no rank" >&2
            status=1
        elif (( rank[$dep] >= rank[$module] )); then
            echo "check-layers: $file ($module, rank ${rank[$module]}) imports crate::$dep (rank ${rank[$dep]}): not below it" >&2
            status=1
        fi
    done
done
if (( status == 0 )); then
    echo "check-layers: every module imports only modules below it"
fi
exit $status
