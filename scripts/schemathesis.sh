#!/usr/bin/env bash
# Bad input at scale: schemathesis (from PyPI, into a venv, default
# ~/.cache/forescale-schemathesis) generates requests from
# openapi/openapi.json, valid and invalid, against the service built from
# this tree (API tokens on, in-process store in a temporary directory, the
# shipped models). Fails on any 5xx, any response that breaks the schema,
# any status code or content type the document does not list.
#
#   scripts/schemathesis.sh                 # bounded: 25 examples per operation and phase, 120 s
#   FORESCALE_ST_MAX_EXAMPLES=200 FORESCALE_ST_MAX_TIME=1200 scripts/schemathesis.sh
#
# Uses the binary at $FORESCALE_BIN, else builds the dev-profile one.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forescale-target}"
venv="${FORESCALE_SCHEMATHESIS_VENV:-$HOME/.cache/forescale-schemathesis}"
version="${FORESCALE_SCHEMATHESIS_VERSION:-4.32.5}"
max_examples="${FORESCALE_ST_MAX_EXAMPLES:-25}"
max_time="${FORESCALE_ST_MAX_TIME:-120}"

if [ ! -x "$venv/bin/st" ]; then
  echo "schemathesis: installing schemathesis==$version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi

bin="${FORESCALE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --locked --bin forescale
  bin="$CARGO_TARGET_DIR/debug/forescale"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
token="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
log="$data/service.log"
FORESCALE_API_TOKENS="$token" RUST_LOG=warn \
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data/store" --models-dir models \
  >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"; then break; fi
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" || { cat "$log"; exit 1; }

# One group with history, so the stored-group operations are reached with
# a name that exists as well as with generated ones.
python3 - "$port" "$token" <<'EOF'
import json, math, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
end = int(time.time()) // 300 * 300
samples = [{"timestamp": end - k * 300,
            "features": {"cpu_usage_pct": 50 + 20 * math.sin(k / 10)},
            "capacity": 4} for k in range(48)]
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/groups/example/samples",
                             data=json.dumps({"samples": samples}).encode(),
                             headers={"Content-Type": "application/json",
                                      "Authorization": f"Bearer {token}"})
urllib.request.urlopen(req).read()
EOF

echo "schemathesis: openapi/openapi.json against 127.0.0.1:$port ($max_examples examples per operation, at most ${max_time}s)"
status=0
"$venv/bin/st" run openapi/openapi.json \
  --url "http://127.0.0.1:$port" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --header "Authorization: Bearer $token" \
  --max-examples "$max_examples" \
  --max-time "$max_time" \
  --seed 20261123 \
  --generation-database none \
  --request-timeout 30 \
  --workers 2 \
  --no-color \
  --warnings off || status=$?
if grep -q "panicked" "$log"; then
  echo "schemathesis: the service panicked:" >&2
  grep -A5 "panicked" "$log" >&2
  exit 1
fi
exit $status
