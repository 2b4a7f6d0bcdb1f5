#!/usr/bin/env bash
# Every test of the project, on a fresh machine: installs and starts what
# the tests need (Redis; moto, the AWS API emulator, and schemathesis, from
# PyPI into venvs), then runs format, lint, the API docs (no warnings),
# the test suites (unit, and one integration binary with the fault
# tests) and schemathesis against the OpenAPI document. Nothing reaches
# AWS.
#
#   scripts/test.sh
#
# Compiled dependencies are kept in CARGO_TARGET_DIR (default
# ~/.cache/forescale-target, outside the clone) so repeated runs, and CI
# runs in fresh clones, reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forescale-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
start=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }

step "services"
scripts/ensure-redis.sh
export FORESCALE_TEST_REDIS_URL="${FORESCALE_TEST_REDIS_URL:-redis://127.0.0.1:6379/}"
scripts/ensure-moto.sh
export FORESCALE_TEST_MOTO_URL="${FORESCALE_TEST_MOTO_URL:-http://127.0.0.1:${FORESCALE_MOTO_PORT:-5000}}"
# The SDK's standard chain must never find real credentials in tests.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

if [ ! -d ../shared/data ]; then
  echo "warning: ../shared/data not found; dataset tests will fail" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

# The API docs build without warnings (broken links, a public doc naming
# a private item). Dependencies are only checked, as clippy left them.
step "cargo doc"
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --locked --no-deps

step "cargo test"
cargo test --locked

step "schemathesis (bad input at scale, against openapi/openapi.json)"
scripts/schemathesis.sh

step "done"
