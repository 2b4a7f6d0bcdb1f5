#!/usr/bin/env bash
# Leave-one-dataset-out runs of a shipped network's recipe (EVAL.md v2):
# for each held-out dataset, train on the other training datasets
# (`--exclude-dataset`), then score the model and naive on the held-out
# dataset's test segments. nab-aws-cloudwatch is never trained on.
#
#   scripts/lodo.sh OUT                       # bitbrains-rnd, azure-v1-cpu, google2019-job-tasks
#   scripts/lodo.sh OUT azure-v1-cpu          # one held-out dataset
#   LODO_MODEL=lstm scripts/lodo.sh OUT       # the lstm's (or tft's) recipe
#
# Writes OUT/<dataset>/model (the trained folder, served as
# <model>-lodo-<dataset>), OUT/<dataset>/report (evaluate's report) and
# OUT/lodo.csv (dataset, model WQL, naive WQL, ratio). Needs ../shared/data
# and a release build; about 12 minutes a dataset on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/lodo.sh OUT [DATASET...]}
shift
held=("$@")
[ ${#held[@]} -gt 0 ] || held=(bitbrains-rnd azure-v1-cpu google2019-job-tasks)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forescale-target}"
cargo build --locked --release
bin="$CARGO_TARGET_DIR/release/forescale"
# The shipped recipes: models/<model>/README.md, "How to reproduce".
model=${LODO_MODEL:-bilstm}
train_set=bitbrains-rnd,azure-v1-cpu,google2019-job-tasks,datacenter-aggregates
case "$model" in
  bilstm | lstm) recipe=(--model "$model" --window-inputs --fit-end-pct 85 --epochs 25 --max-minutes 60) ;;
  tft) recipe=(--model tft --window-inputs --windows-per-epoch 8192 --epochs 18 --fit-end-pct 85 --max-minutes 60) ;;
  *) echo "LODO_MODEL must be bilstm, lstm or tft, got $model" >&2; exit 2 ;;
esac
mkdir -p "$out"
for d in "${held[@]}"; do
  name="$model-lodo-$d"
  echo "==> $d: train without it" >&2
  mkdir -p "$out/$d"
  "$bin" train "${recipe[@]}" --dataset "$train_set" --exclude-dataset "$d" \
    --name "$name" --out "$out/$d/model"
  echo "==> $d: score on its test segments" >&2
  "$bin" evaluate --dataset "$d" --models "$name,naive" --models-dir "$out/$d" \
    --out "$out/$d/report"
done
python3 - "$out" "$model" "${held[@]}" <<'EOF'
import csv, os, sys
out, model, held = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = [("dataset", "model_wql", "naive_wql", "wql_ratio", "model_mae", "naive_mae", "mae_ratio", "coverage_80")]
for d in held:
    with open(os.path.join(out, d, "report", "metrics.csv")) as f:
        m = {r["model"]: r for r in csv.DictReader(f)}
    a, n = m[f"{model}-lodo-{d}"], m["naive"]
    rows.append((d, a["wql"], n["wql"], f'{float(a["wql"]) / float(n["wql"]):.3f}',
                 a["mae"], n["mae"], f'{float(a["mae"]) / float(n["mae"]):.3f}', a["coverage"]))
with open(os.path.join(out, "lodo.csv"), "w", newline="") as f:
    csv.writer(f).writerows(rows)
for r in rows:
    print(",".join(r))
EOF
