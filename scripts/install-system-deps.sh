#!/usr/bin/env bash
# Installs what recloop needs from Debian's packages when missing:
#   runtime: libgomp1 (OpenMP, for implicit's matrix factorization)
#   (no argument): the runtime's, plus postgresql and redis-server (the tests start their own)
#     and prometheus (for promtool: the tests check docs/alerts.yml and /metrics with it)
#     and chromium (the dashboard's browser tests drive it with Playwright)
#   bench: all of those, plus wrk (the benchmarks' load generator; no test needs it)
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1 ' || missing+=(libgomp1)
if [ "${1:-}" != "runtime" ]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
if [ "${1:-}" = "bench" ]; then
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "warning: ${missing[*]} missing and no root; tests needing them will be skipped" >&2
    exit 0
fi
echo "installing ${missing[*]} from Debian's packages"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
