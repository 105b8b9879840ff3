#!/usr/bin/env bash
# Install the system tools the test suite needs and pip cannot provide: promtool (Debian's
# `prometheus` package), which checks and unit-tests the Helm chart's alert rules, and
# Debian's chromium + chromium-driver, which drive the public verification page in a real
# headless browser (tests/test_web_verify_browser.py), and Debian's postgresql, whose
# initdb/pg_ctl the PostgreSQL store tests start as a throwaway loopback cluster
# (relay/testing/pgcluster.py; Debian keeps them in /usr/lib/postgresql/<version>/bin).
# Idempotent, quiet and instant when everything is present; `make test` calls it first.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
have_pg() {
    command -v initdb >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_pg || missing+=(postgresql)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-deps: need ${missing[*]} but apt-get is not available;" \
        "install them by other means" >&2
    exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "ensure-system-deps: need root (or sudo) to apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

echo "ensure-system-deps: installing ${missing[*]} (promtool, headless chromium, postgresql)" >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Only the promtool binary is used. (Where policy-rc.d allows it, Debian also starts the
# packaged Prometheus server; nothing here needs or uses it.)
if ! { $sudo apt-get update -qq && \
       $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-system-deps: apt-get install ${missing[*]} failed" >&2
    exit 1
fi
have_pg || {
    echo "ensure-system-deps: postgresql installed but no initdb was found" >&2
    exit 1
}
for tool in promtool chromium chromedriver; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "ensure-system-deps: ${missing[*]} installed but $tool is not on PATH" >&2
        exit 1
    }
done
