#!/usr/bin/env bash
# Make sure a Redis answers at 127.0.0.1:6379: use the one running, else
# start one (installing redis-server from Debian's packages if missing).
set -euo pipefail
port="${FORESCALE_REDIS_PORT:-6379}"

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

if command -v redis-cli >/dev/null && ping; then
  echo "redis: already running on 127.0.0.1:$port"
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "redis: installing redis-server"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
echo "redis: starting on 127.0.0.1:$port"
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --logfile "${TMPDIR:-/tmp}/forescale-redis-$port.log"
for _ in $(seq 1 50); do
  if ping; then echo "redis: up"; exit 0; fi
  sleep 0.1
done
echo "redis: did not come up; see ${TMPDIR:-/tmp}/forescale-redis-$port.log" >&2
exit 1
