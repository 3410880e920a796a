#!/usr/bin/env bash
# The demo client in headless Chromium: two users chat and call each other
# through a real server. Installs what it needs (Debian's chromium, npm's
# playwright-core); skips, saying why, only where Chromium cannot be had.
# Screenshots go to target/browser-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '==> %s\n' "$*"; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    say "installing chromium"
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; }; then
        echo "browser test skipped: chromium could not be installed on this machine"
        exit 0
    fi
fi
if ! command -v npm >/dev/null 2>&1; then
    say "installing node and npm"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi
(cd tests/browser && npm install --no-audit --no-fund --silent)

cargo build --quiet --bin switchboard
data=$(mktemp -d)
port=$(( 20000 + RANDOM % 30000 ))
./target/debug/switchboard serve --listen "127.0.0.1:$port" --data-dir "$data" --dev --log-format json 2>"$data/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

say "browser test: two users chat and call"
CHROMIUM="$chromium" node tests/browser/chat_and_call.mjs "http://127.0.0.1:$port" target/browser-artifacts
