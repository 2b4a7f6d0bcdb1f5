#!/usr/bin/env bash
# The SLA planner's report (docs/sla-planner.md): every reference policy,
# the swept families (target tracking over its target, the forecast-
# quantile rule over its headroom), the trained policy and the SLA planner
# at targets 95, 99 and 99.9 %, on the test segments of the main and
# transfer sets. Writes docs/sla-planner/<set>/{report.md,summary.csv,
# scores.csv,frontier.svg}.
#
#   scripts/sla-report.sh [data-root] [forescale binary]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/data}
bin=${2:-}
if [[ -z "$bin" ]]; then
  cargo build --release -q
  bin="${CARGO_TARGET_DIR:-target}/release/forescale"
fi
policies="oracle,threshold,target-tracking,predictive,predictive-bilstm,rl+guardrails"
for u in 30 35 40 45 55 60 70; do policies+=",target-tracking@$u"; done
for h in 0 10 25 50 75 100 150; do policies+=",provision-p90-bilstm@$h"; done
for f in naive bilstm; do
  for t in 95 99 99.9; do policies+=",sla-$f@$t,sla-$f@$t+guardrails"; done
done
for set in main transfer; do
  out=docs/sla-planner/$set
  "$bin" simulate --trace "$set" --data-root "$root" --policy "$policies" --out "$out"
  # The per-trace plots stay out of the repository (31 files).
  find "$out" -name '*.svg' ! -name frontier.svg -delete
done
