#!/usr/bin/env bash
# Latency of the TFT against the BiLSTM, every model held to the same
# thread count: runs the criterion group `tft_vs_bilstm` of
# benches/forecast.rs once per thread setting (default: 1 and every core),
# then prints the medians and the TFT / BiLSTM ratios as Markdown and
# writes them to models/tft/latency.md.
#
#   scripts/bench-tft.sh            # 1 thread, then all cores
#   scripts/bench-tft.sh 1          # one setting
#
# Needs ../shared/data (the benchmark's windows are real test windows).
# Takes about 10 minutes here after the bench build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/forescale-target}"
settings=("$@")
[ ${#settings[@]} -gt 0 ] || settings=(1 "$(nproc)")
for t in "${settings[@]}"; do
  echo "==> RAYON_NUM_THREADS=$t cargo bench --bench forecast -- tft_vs_bilstm_${t}_threads" >&2
  RAYON_NUM_THREADS=$t cargo bench --locked --bench forecast -- "tft_vs_bilstm_${t}_threads"
done
python3 - "$CARGO_TARGET_DIR/criterion" "${settings[@]}" <<'EOF' | tee models/tft/latency.md
import json, os, platform, subprocess, sys, datetime
root, settings = sys.argv[1], sys.argv[2:]

def median_ms(group, fn, n):
    p = os.path.join(root, group, fn, str(n), "new", "estimates.json")
    with open(p) as f:
        return json.load(f)["median"]["point_estimate"] / 1e6

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
print("# TFT vs BiLSTM latency (criterion medians)\n")
print(f"`scripts/bench-tft.sh` on {datetime.date.today()}, commit {rev}, {os.cpu_count()} x {cpu}.")
print("Every model of a row runs with the same thread count (`RAYON_NUM_THREADS`;")
print("the fast path gets the same number; one window always runs on one thread).")
print("`bilstm fast` is the path serving uses; `bilstm candle` is the same network")
print("op by op in candle, as the TFT runs. 5,000 windows go through candle in")
print("chunks of 1,000.\n")
print("| threads | batch | bilstm fast (ms) | bilstm candle (ms) | tft (ms) | tft / bilstm fast | tft / bilstm candle |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for t in settings:
    g = f"tft_vs_bilstm_{t}_threads"
    for n in (1, 5000):
        fast, cand, tft = (median_ms(g, m, n) for m in ("bilstm_fast", "bilstm_candle", "tft"))
        print(f"| {t} | {n:,} | {fast:.3f} | {cand:.3f} | {tft:.3f} | {tft / fast:.1f}x | {tft / cand:.1f}x |")
EOF
