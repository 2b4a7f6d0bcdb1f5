# %% [markdown]
# # forescale: forecast analysis, attention, policy comparison
#
# A notebook in percent format (run it as a script, or open it in Jupyter
# with jupytext). It reads what the project's own commands produce and
# writes PNG figures to `reports/notebooks/`:
#
# 1. **Forecast analysis** from `forescale evaluate --dump-forecasts`
#    (bitbrains-rnd test segments, EVAL.md (docs/forecast-evaluation.md)): fan charts of a few series,
#    MAE and p10-p90 coverage by horizon step, per model.
# 2. **Attention heatmap** of the shipped BiLSTM (features x steps, the
#    paper's Fig. 2) for a real window: a service is started on a free
#    port, the window pushed, and `GET /v1/groups/{g}/forecast?explain=true`
#    read.
# 3. **Policy comparison** from `models/policy/eval-main/scores.csv`
#    (`forescale simulate`, POLICY_EVAL.md (docs/policy-evaluation.md) test segments): cost vs SLA per
#    policy and trace.
#
# One command (installs pandas + matplotlib into a venv, builds the
# release binary, runs the evaluation if its dump is missing):
#
#     scripts/notebooks.sh
#
# Environment: FORESCALE_BIN (the binary), FORESCALE_DUMP (the forecast
# dump CSV), FORESCALE_DATA_ROOT (default ../shared/data).

# %%
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "reports" / "notebooks"
OUT.mkdir(parents=True, exist_ok=True)
BIN = Path(os.environ.get("FORESCALE_BIN", Path.home() / ".cache/forescale-target/release/forescale"))
DUMP = Path(os.environ.get("FORESCALE_DUMP", ROOT / "reports" / "notebooks" / "forecasts-bilstm.csv"))
DATA_ROOT = os.environ.get("FORESCALE_DATA_ROOT", str(ROOT.parent / "shared" / "data"))

# %% [markdown]
# ## 1. Forecast analysis

# %%
def dump_for(model: str) -> Path:
    path = DUMP.with_name(f"forecasts-{model}.csv") if model != "bilstm" else DUMP
    if not path.exists():
        print(f"running forescale evaluate for {model} (writes {path})", flush=True)
        subprocess.run(
            [str(BIN), "evaluate", "--models", model, "--data-root", DATA_ROOT,
             "--out", str(OUT / f"eval-{model}"), "--dump-forecasts", str(path)],
            check=True, cwd=ROOT,
        )
    return path


frames = []
for model in ["bilstm", "naive"]:
    d = pd.read_csv(dump_for(model))
    d["model"] = model
    frames.append(d)
fc = pd.concat(frames, ignore_index=True)
fc["abs_err"] = (fc["y"] - fc["q50"]).abs()
fc["covered"] = (fc["y"] >= fc["q10"]) & (fc["y"] <= fc["q90"])
by_h = fc.groupby(["model", "h"]).agg(mae=("abs_err", "mean"), coverage=("covered", "mean")).reset_index()
print(by_h.pivot(index="h", columns="model", values=["mae", "coverage"]).round(3).to_string())

fig, ax = plt.subplots(1, 2, figsize=(11, 4))
for model, g in by_h.groupby("model"):
    ax[0].plot(g["h"], g["mae"], marker="o", label=model)
    ax[1].plot(g["h"], 100 * g["coverage"], marker="o", label=model)
ax[0].set(xlabel="steps ahead (5 min)", ylabel="MAE (CPU %)", title="MAE by horizon, test segments")
ax[1].axhspan(75, 85, color="0.9", label="75-85 % target")
ax[1].set(xlabel="steps ahead (5 min)", ylabel="p10-p90 coverage (%)", title="Coverage by horizon")
for a in ax:
    a.legend()
    a.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(OUT / "horizon.png", dpi=120)

# %%
# Fan charts: one-step-ahead and 12-step-ahead forecasts of three series.
bil = fc[fc["model"] == "bilstm"]
series = list(bil["series_id"].drop_duplicates()[:3])
fig, axes = plt.subplots(len(series), 1, figsize=(11, 3 * len(series)), sharex=False)
for a, sid in zip(np.atleast_1d(axes), series):
    s = bil[bil["series_id"] == sid]
    for h, colour in [(1, "tab:blue"), (12, "tab:orange")]:
        k = s[s["h"] == h].copy()
        k["t"] = k["origin_index"] + h - 1
        k = k.sort_values("t").iloc[:288]
        a.fill_between(k["t"], k["q10"], k["q90"], alpha=0.25, color=colour, label=f"p10-p90, {h} step(s) ahead")
        a.plot(k["t"], k["q50"], color=colour, lw=1, label=f"p50, {h} step(s) ahead")
    truth = s[s["h"] == 1].assign(t=lambda k: k["origin_index"]).sort_values("t").iloc[:288]
    a.plot(truth["t"], truth["y"], color="black", lw=1, label="actual")
    a.set(title=f"series {sid}", ylabel="CPU %")
    a.grid(alpha=0.3)
np.atleast_1d(axes)[0].legend(fontsize=8, ncol=3)
fig.tight_layout()
fig.savefig(OUT / "fan_charts.png", dpi=120)

# %% [markdown]
# ## 2. Attention heatmap (shipped BiLSTM, a real window)

# %%
def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(url, body=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


port = free_port()
tmp = tempfile.mkdtemp()
proc = subprocess.Popen([str(BIN), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp,
                         "--models-dir", str(ROOT / "models")],
                        env={**os.environ, "RUST_LOG": "warn", "FORESCALE_API_TOKENS": ""},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            call(f"{base}/readyz")
            break
        except Exception:
            time.sleep(0.1)
    # The actual CPU of the first series around its busiest test step.
    s = bil[(bil["series_id"] == series[0]) & (bil["h"] == 1)].sort_values("origin_index")
    peak = int(s["y"].values.argmax())
    ys = s["y"].values[max(0, peak - 47): peak + 1]
    end = int(time.time()) // 300 * 300
    samples = [{"timestamp": end - (len(ys) - 1 - i) * 300, "features": {"cpu_usage_pct": float(v)}}
               for i, v in enumerate(ys)]
    call(f"{base}/v1/groups/notebook/samples", {"samples": samples})
    ex = call(f"{base}/v1/groups/notebook/forecast?explain=true")["explanation"]
finally:
    proc.terminate()
    proc.wait()

w = np.array(ex["feature_weights"]).T  # features x steps
fig, ax = plt.subplots(1, 2, figsize=(12, 6), gridspec_kw={"width_ratios": [4, 1]})
im = ax[0].imshow(w, aspect="auto", cmap="viridis")
ax[0].set_yticks(range(len(ex["features"])), ex["features"], fontsize=7)
ax[0].set_xticks(range(len(ex["steps"])), [t[11:16] for t in ex["steps"]], rotation=90, fontsize=7)
ax[0].set_title("feature attention (softmax over features, per step)")
fig.colorbar(im, ax=ax[0])
ax[1].barh(range(len(ex["step_weights"])), ex["step_weights"])
ax[1].invert_yaxis()
ax[1].set_title("temporal attention")
fig.tight_layout()
fig.savefig(OUT / "attention.png", dpi=120)

# %% [markdown]
# ## 3. Policy comparison (POLICY_EVAL.md, test segments)

# %%
scores = pd.read_csv(ROOT / "models" / "policy" / "eval-main" / "scores.csv")
summary = scores.groupby("policy").agg(cost_vs_oracle=("cost_vs_oracle", "mean"),
                                       sla_pct=("sla_pct", "mean")).sort_values("cost_vs_oracle")
print(summary.round(3).to_string())
# Left: every policy (the bare rl actor sits far below the rest); right:
# the policies near the 99 % line, labels staggered so they stay legible.
fig, axes = plt.subplots(1, 2, figsize=(13, 5))
near = summary[summary["sla_pct"] >= 95]
for ax, data in zip(axes, [summary, near]):
    for i, (policy, row) in enumerate(data.iterrows()):
        ax.scatter(row["cost_vs_oracle"], row["sla_pct"], s=60)
        dy = 8 - 14 * (i % 3) if ax is axes[1] else 3
        ax.annotate(policy, (row["cost_vs_oracle"], row["sla_pct"]), xytext=(6, dy),
                    textcoords="offset points", fontsize=9)
    ax.axhline(99, color="0.6", ls="--", lw=1)
    ax.set(xlabel="cost / oracle (mean of 13 traces)", ylabel="SLA compliance (%)")
    ax.grid(alpha=0.3)
axes[0].set_title("Scaling policies: cost vs SLA (test segments)")
axes[1].set_title("policies with SLA >= 95 % (zoom)")
fig.tight_layout()
fig.savefig(OUT / "policies.png", dpi=120)

print(f"figures in {OUT}", file=sys.stderr)
