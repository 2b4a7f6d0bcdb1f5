# %% [markdown]
# # Window inputs: an independent reference and parity fixture
#
# The per-window scaling of `src/features.rs` (`normalise_rows`), written
# again from its definition in plain Python, so the Rust code can be
# checked against a second implementation. The network behind it is
# checked by `bilstm_attention_reference.py`; this covers what changed in
# front of it for models trained with `--window-inputs`:
#
# - the target (column 0) and every measured covariate (columns 0-19):
#   (x - mean of the window's present values) / (their population standard
#   deviation + a floor + 1e-3), where the floor is 2 % of |mean| for the
#   target and 10 % of the covariate's global standard deviation;
# - the calendar (columns 20-22): z-scored with the global statistics;
# - an absent value (None): 0 with mask 0.
#
# It writes `tests/fixtures/parity/window-inputs.json`; the Rust test
# `features::tests::window_inputs_match_the_reference` must agree to 1e-5.
# No dependencies: `python3 notebooks/window_inputs_reference.py`. The
# output is the same every run (a seeded generator).

# %%
import json
import math
import pathlib
import random

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "parity" / "window-inputs.json"
N_FEATURES, N_MEASURED, TARGET = 23, 20, 0
REL_FLOOR, COVARIATE_FLOOR, ABS_FLOOR = 0.02, 0.1, 1e-3


def normalise(raw, mean, std):
    steps = len(raw)
    values = [[0.0] * N_FEATURES for _ in range(steps)]
    mask = [[0.0] * N_FEATURES for _ in range(steps)]
    shift, unit = 0.0, 1.0
    for j in range(N_FEATURES):
        present = [(i, raw[i][j]) for i in range(steps) if raw[i][j] is not None]
        if j >= N_MEASURED:
            for i, x in present:
                values[i][j] = (x - mean[j]) / std[j]
                mask[i][j] = 1.0
            continue
        if not present:
            continue
        m = sum(x for _, x in present) / len(present)
        sd = math.sqrt(sum((x - m) ** 2 for _, x in present) / len(present))
        floor = REL_FLOOR * abs(m) if j == TARGET else COVARIATE_FLOOR * std[j]
        u = sd + floor + ABS_FLOOR
        for i, x in present:
            values[i][j] = (x - m) / u
            mask[i][j] = 1.0
        if j == TARGET:
            shift, unit = m, u
    return values, mask, shift, unit


# %%
def window(rng, steps):
    """A window with the cases that matter: a level far from any training
    mean, a constant covariate, a column never sent, scattered gaps."""
    raw = []
    for i in range(steps):
        row = []
        for j in range(N_FEATURES):
            if j == TARGET:
                x = 60.0 + 5.0 * rng.gauss(0, 1)
            elif j == 1:
                x = 91.5  # memory at 91.5 %, constant
            elif j == 2:
                x = None  # never sent
            elif j >= N_MEASURED:
                x = rng.random()
            else:
                x = rng.uniform(0, 1000) if rng.random() > 0.2 else None
            row.append(x)
        raw.append(row)
    return raw


if __name__ == "__main__":
    rng = random.Random(7)
    cases = []
    for steps in (7, 12):
        mean = [rng.uniform(-5, 50) for _ in range(N_FEATURES)]
        std = [rng.uniform(0.5, 20) for _ in range(N_FEATURES)]
        raw = window(rng, steps)
        values, mask, shift, unit = normalise(raw, mean, std)
        cases.append(
            {"raw": raw, "mean": mean, "std": std, "values": values, "mask": mask, "shift": shift, "unit": unit}
        )
    # A flat target (the unit is its floor alone).
    raw = window(rng, 12)
    for row in raw:
        row[TARGET] = 27.0
    mean = [0.0] * N_FEATURES
    std = [1.0] * N_FEATURES
    values, mask, shift, unit = normalise(raw, mean, std)
    cases.append({"raw": raw, "mean": mean, "std": std, "values": values, "mask": mask, "shift": shift, "unit": unit})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": cases}, indent=None) + "\n")
    print(f"wrote {OUT}")
