#!/usr/bin/env bash
# Fuzzes the REST API against its own OpenAPI document with schemathesis
# (installed from PyPI into the user's site if missing): a real
# `switchboard serve` (the debug build `cargo test` made, or $1), a user's
# bearer token for the client API, then the server API's key for
# `/api/server/...`. Fails on any 5xx or any response that breaks the
# document's schemas. A fixed seed keeps the run the same every time;
# SWITCHBOARD_FUZZ_SEED picks another, SWITCHBOARD_FUZZ_EXAMPLES a larger
# budget (the default keeps the run to a couple of minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

bin=${1:-target/debug/switchboard}
version=4.32.5
seed=${SWITCHBOARD_FUZZ_SEED:-20261130}
examples=${SWITCHBOARD_FUZZ_EXAMPLES:-50}

st=$(command -v st || true)
if [ -z "$st" ] && [ -x "$HOME/.local/bin/st" ]; then
    st="$HOME/.local/bin/st"
fi
if [ -z "$st" ] || ! "$st" --version 2>/dev/null | grep -q "$version"; then
    say "installing schemathesis $version"
    python3 -m pip install --quiet --user --disable-pip-version-check "schemathesis==$version"
    st="$HOME/.local/bin/st"
fi

dir=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
key="api-fuzz-key-$RANDOM$RANDOM"
# Limits high enough that the fuzzer meets the handlers, not the rate limiter.
SWITCHBOARD_LOG_FORMAT=json "$bin" serve --dev --listen "127.0.0.1:$port" --data-dir "$dir/data" \
    --jwt-secret "api fuzz secret of at least 32 bytes" --server-api-key "$key" \
    --rate-api-per-hour 100000000 --rate-login-per-15min 100000 --rate-upload-per-hour 100000 \
    --rate-send-code-per-hour 100000 >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -fs "$base/health" >/dev/null 2>&1 && break
    sleep 0.1
done
token=$(curl -fs -X POST "$base/api/auth/register" -H 'content-type: application/json' \
    -d '{"phone":"13800000001","username":"fuzzer","password":"password123"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["access_token"])')

checks=not_a_server_error,response_schema_conformance
# One worker: hypothesis parses lambda sources with compile(), and CPython
# 3.11's AST constructor keeps its recursion depth in shared state, so two
# worker threads compiling at once fail now and then with "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905, fixed in 3.13).
# Logout would end the token the run uses; the server API has its own pass.
say "schemathesis: the client API, as a signed-in user (seed $seed, $examples examples per operation)"
"$st" run "$base/api/openapi.json" --url "$base" -H "Authorization: Bearer $token" \
    --checks "$checks" --max-examples "$examples" --seed "$seed" --workers 1 --no-color \
    --exclude-path /api/auth/logout --exclude-path-regex '^/api/server/'
say "schemathesis: the server API, with its key"
"$st" run "$base/api/openapi.json" --url "$base" -H "Authorization: apikey $key" \
    --checks "$checks" --max-examples "$examples" --seed "$seed" --workers 1 --no-color \
    --include-path-regex '^/api/server/'
if grep -q '"level":"ERROR"\|panicked' "$dir/server.log"; then
    echo "the server logged errors under the fuzzer:" >&2
    grep '"level":"ERROR"\|panicked' "$dir/server.log" | head -20 >&2
    exit 1
fi
