#!/usr/bin/env bash
# Make sure the AWS API emulator (moto in server mode, from PyPI) answers
# at 127.0.0.1:${FORESCALE_MOTO_PORT:-5000}: installs moto into a venv
# (default ~/.cache/forescale-moto, outside the clone) on first use and
# starts moto_server if nothing answers. Prints nothing else on stdout.
#
#   scripts/ensure-moto.sh            # install if needed, start if needed
#   scripts/ensure-moto.sh --stop     # stop the server this script started
set -euo pipefail
port="${FORESCALE_MOTO_PORT:-5000}"
venv="${FORESCALE_MOTO_VENV:-$HOME/.cache/forescale-moto}"
# moto 5.2.5 answered every Auto Scaling and CloudWatch call the project
# makes (see Cargo.toml for the matching SDK versions).
moto_version="${FORESCALE_MOTO_VERSION:-5.2.5}"
pidfile="${TMPDIR:-/tmp}/forescale-moto-$port.pid"
log="${TMPDIR:-/tmp}/forescale-moto-$port.log"

up() { curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; }

if [ "${1:-}" = "--stop" ]; then
  if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
  exit 0
fi

if up; then
  echo "moto: already running on 127.0.0.1:$port"
  exit 0
fi
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "moto: installing moto[server]==$moto_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
fi
echo "moto: starting on 127.0.0.1:$port (log $log)"
nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 100); do
  if up; then echo "moto: up"; exit 0; fi
  sleep 0.1
done
echo "moto: did not come up; see $log" >&2
exit 1
