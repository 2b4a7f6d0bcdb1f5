# %% [markdown]
# # How sure is a median-MASE comparison?
#
# EVAL.md (docs/forecast-evaluation.md)'s headline point metric, median MASE, is the median over series
# of test MAE / train seasonal-naive scale. On bitbrains-rnd that is a
# median of 80 numbers, so it moves with which series happen to sit in
# the middle. This script compares two models' forecast dumps series by
# series and resamples the series (paired bootstrap: the same resampled
# series for both models) to put an interval on the difference of their
# median MASEs.
#
# Standard library only. Run from the project root:
#
# ```sh
# forescale evaluate --dataset bitbrains-rnd --models bilstm,lstm \
#     --out reports/eval --dump-forecasts reports/eval/dump.csv
# python3 notebooks/mase_bootstrap.py reports/eval/dump.bilstm.csv reports/eval/dump.lstm.csv
# ```
#
# The scale is computed here as EVAL.md defines it (5-minute grid, bucket
# means, linear interpolation of empty buckets, train = the first
# floor(70 %) of the steps, mean |y[t] - y[t-288]|); the script checks
# itself by printing each model's median MASE, which must equal the
# `mase_median` of `forescale evaluate`'s metrics.csv.

# %%
import argparse
import csv
import glob
import math
import os
import random
from collections import defaultdict


def grid(path, step=300):
    """cpu_usage_pct of one bitbrains-rnd file on the EVAL.md grid."""
    buckets = defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f):
            buckets[int(r["timestamp"]) // step * step].append(float(r["cpu_usage_pct"]))
    keys = sorted(buckets)
    n = (keys[-1] - keys[0]) // step + 1
    y = [None] * n
    for k, v in buckets.items():
        y[(k - keys[0]) // step] = sum(v) / len(v)
    known = [i for i in range(n) if y[i] is not None]
    for a, c in zip(known, known[1:]):
        for i in range(a + 1, c):
            y[i] = y[a] + (y[c] - y[a]) * (i - a) / (c - a)
    return y


def scales(data_dir, season=288):
    out = {}
    for p in sorted(glob.glob(os.path.join(data_dir, "vm_*.csv"))):
        y = grid(p)
        train = y[: math.floor(0.7 * len(y))]
        d = [abs(train[t] - train[t - season]) for t in range(season, len(train))]
        out[os.path.basename(p)[:-4]] = sum(d) / len(d) if d else 0.0
    return out


def mase_by_series(dump, scale):
    err, n = defaultdict(float), defaultdict(int)
    with open(dump) as f:
        for r in csv.DictReader(f):
            err[r["series_id"]] += abs(float(r["y"]) - float(r["q50"]))
            n[r["series_id"]] += 1
    return {s: err[s] / n[s] / scale[s] for s in err if scale.get(s, 0) > 0}


def median(v):
    v = sorted(v)
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


# %%
def main():
    ap = argparse.ArgumentParser(
        description="Paired bootstrap over series of the median-MASE difference of two forecast dumps."
    )
    ap.add_argument("first", help="dump of the first model (--dump-forecasts)")
    ap.add_argument("second", help="dump of the second model")
    ap.add_argument("--data-dir", default="../shared/data/bitbrains-rnd")
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    scale = scales(args.data_dir)
    a = mase_by_series(args.first, scale)
    b = mase_by_series(args.second, scale)
    ids = sorted(set(a) & set(b))
    if not ids:
        raise SystemExit("no series in common with a non-zero scale")
    na, nb = (os.path.basename(p) for p in (args.first, args.second))
    print(f"{len(ids)} series")
    print(f"median MASE: {na} {median([a[i] for i in ids]):.4f}, {nb} {median([b[i] for i in ids]):.4f}")
    lower = sum(a[i] < b[i] for i in ids)
    print(f"series where {na} is lower: {lower} of {len(ids)}")

    rng = random.Random(args.seed)
    diffs = []
    for _ in range(args.resamples):
        s = [rng.choice(ids) for _ in ids]
        diffs.append(median([a[i] for i in s]) - median([b[i] for i in s]))
    diffs.sort()
    lo = diffs[int(0.025 * len(diffs))]
    hi = diffs[int(0.975 * len(diffs)) - 1]
    share = sum(d < 0 for d in diffs) / len(diffs)
    print(
        f"median MASE {na} - {nb}: 95 % paired-bootstrap interval over series "
        f"[{lo:+.4f}, {hi:+.4f}]; {na} lower in {share:.1%} of {len(diffs)} resamples"
    )


if __name__ == "__main__":
    main()
