# %% [markdown]
# # BiLSTM-attention forecaster: PyTorch reference and parity fixture
#
# The network of `src/forecast/bilstm_attention.rs`, written independently
# in PyTorch with the stock `nn.LSTM`, so that the candle model (and the
# fast inference path in `src/forecast/fast.rs`) can be checked against a
# second implementation. It exports tiny fixtures (weights, an input, the
# expected output) into `tests/fixtures/parity/`; the Rust test
# `forecast::bilstm_attention::tests::matches_the_pytorch_reference`
# loads them and must agree to 1e-4. CI uses only the committed fixtures.
#
# Run (a notebook in percent format: plain Python, or open it with jupytext):
#
# ```sh
# python3 -m venv ~/.cache/forescale-torch
# ~/.cache/forescale-torch/bin/pip install torch numpy safetensors
# ~/.cache/forescale-torch/bin/python notebooks/bilstm_attention_reference.py
# ```
#
# (PyPI's torch is the CUDA build, several GB with its nvidia wheels; it
# runs on CPU here.) Regenerating the fixtures gives the same bytes: every
# number comes from `torch.manual_seed`.

# %%
import json
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "parity"
SCALE_FLOOR = 0.02  # bilstm_attention.rs: SCALE_FLOOR


# %% [markdown]
# ## The network
# Names equal the candle model's weight names (`state_dict` keys).

# %%
class TemporalAttention(nn.Module):
    def __init__(self, dim, attn):
        super().__init__()
        self.proj = nn.Linear(dim, attn)
        self.score = nn.Linear(attn, 1, bias=False)

    def forward(self, h):  # h [B, L, D]
        e = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        beta = torch.softmax(e, dim=1)
        return (beta.unsqueeze(-1) * h).sum(1), beta


class BiLstmAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        f, hid = cfg["input_dim"], cfg["hidden"]
        d = hid * (2 if cfg["bidirectional"] else 1)
        self.feature_attn = nn.Linear(f, f)
        self.lstm = nn.LSTM(
            f,
            hid,
            num_layers=cfg["layers"],
            batch_first=True,
            bidirectional=cfg["bidirectional"],
            dropout=cfg["dropout"],
        )
        self.temporal_attn = TemporalAttention(d, cfg["attention_dim"])
        self.head = nn.Linear(2 * d, 3 * cfg["horizon"])

    def window_scale(self, x):
        if not self.cfg.get("window_scale", False) or x.shape[1] < 2:
            return torch.ones(x.shape[0], 1)
        cpu = x[:, :, 0]
        return (cpu[:, 1:] - cpu[:, :-1]).abs().mean(1, keepdim=True) + SCALE_FLOOR

    def forward(self, x):  # x [B, L, 23], normalised
        b, l, f = x.shape
        alpha = torch.softmax(self.feature_attn(x), dim=-1)
        h, _ = self.lstm(x * alpha * f)
        ctx, _ = self.temporal_attn(h)
        z = torch.cat([ctx, h[:, -1]], dim=1)
        o = self.head(z).reshape(b, self.cfg["horizon"], 3)
        s = self.window_scale(x).unsqueeze(2)
        last = x[:, -1, 0].reshape(b, 1, 1)
        p50 = last + s * o[..., 1:2]
        lo = p50 - s * F.softplus(o[..., 0:1])
        hi = p50 + s * F.softplus(o[..., 2:3])
        return torch.cat([lo, p50, hi], dim=2)


# %% [markdown]
# ## Fixtures
# Small networks (hidden 8) so the files stay a few kB; every code path of
# the full model is exercised: two layers, both directions, both heads.

# %%
def export(name, bidirectional, window_scale, seed):
    torch.manual_seed(seed)
    cfg = dict(
        input_dim=23,
        hidden=8,
        layers=2,
        bidirectional=bidirectional,
        attention_dim=6,
        lookback=7,
        horizon=4,
        dropout=0.3,
        window_scale=window_scale,
    )
    net = BiLstmAttention(cfg).eval()
    x = torch.randn(5, cfg["lookback"], cfg["input_dim"])
    with torch.no_grad():
        y = net(x)
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(d / "model.safetensors"))
    save_file({"input": x.contiguous(), "output": y.contiguous()}, str(d / "io.safetensors"))
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"{d.relative_to(ROOT)}: {sum(p.numel() for p in net.parameters())} parameters, output {tuple(y.shape)}")
    return y


if __name__ == "__main__":
    torch.set_num_threads(1)
    export("bilstm", bidirectional=True, window_scale=True, seed=1)
    export("lstm", bidirectional=False, window_scale=True, seed=2)
    export("bilstm-unscaled", bidirectional=True, window_scale=False, seed=3)
