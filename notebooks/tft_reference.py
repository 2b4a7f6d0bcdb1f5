# %% [markdown]
# # Temporal Fusion Transformer: PyTorch reference and parity fixture
#
# The network of `src/forecast/tft.rs`, written independently in PyTorch
# with stock modules (`nn.LSTM`, `nn.LayerNorm`, `F.glu`, `F.elu`,
# `torch.softmax`), so that the candle model can be checked against a second
# implementation. Module names follow pytorch-forecasting's
# `TemporalFusionTransformer` (`prescalers`, `encoder_variable_selection`,
# `lstm_encoder`, `multihead_attn.q_layers`, `pos_wise_ff`, ...), so
# `state_dict` keys equal the candle weight names one to one.
#
# Exports a tiny fixture (weights, inputs, expected output and attention)
# into `tests/fixtures/parity/tft/`; the Rust test
# `forecast::tft::tests::matches_the_pytorch_reference` loads it and must
# agree to 1e-4. CI uses only the committed fixture.
#
# Run (a notebook in percent format: plain Python, or open it with jupytext):
#
# ```sh
# python3 -m venv ~/.cache/forescale-torch
# ~/.cache/forescale-torch/bin/pip install torch numpy safetensors
# ~/.cache/forescale-torch/bin/python notebooks/tft_reference.py
# ```
#
# (PyPI's torch is the CUDA build, several GB with its nvidia wheels; it
# runs on CPU here.) Every number comes from `torch.manual_seed`.

# %%
import json
import pathlib
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "parity" / "tft"
SCALE_FLOOR = 0.02  # bilstm_attention.rs: SCALE_FLOOR
# The 23 feature names, in model order, read from src/domain.rs.
_domain = (ROOT / "src" / "domain.rs").read_text()
FEATURES = re.findall(
    r'"([a-z0-9_]+)"', _domain.split("pub const FEATURE_NAMES")[1].split("];")[0]
)
assert len(FEATURES) == 23, FEATURES


# %% [markdown]
# ## Building blocks (Lim et al. 2021, section 4)

# %%
class GLU(nn.Module):
    def __init__(self, inp, out, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inp, 2 * out)

    def forward(self, x):
        return F.glu(self.fc(self.dropout(x)), dim=-1)


class AddNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, skip):
        return self.norm(x + skip)


class GateAddNorm(nn.Module):
    def __init__(self, inp, out, dropout):
        super().__init__()
        self.glu = GLU(inp, out, dropout)
        self.add_norm = AddNorm(out)

    def forward(self, x, skip):
        return self.add_norm(self.glu(x), skip)


class GRN(nn.Module):
    """Gated residual network; a linear skip when the widths differ."""

    def __init__(self, inp, hidden, out, dropout):
        super().__init__()
        self.fc1 = nn.Linear(inp, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.gate_norm = GateAddNorm(hidden, out, dropout)
        self.skip_layer = nn.Linear(inp, out) if inp != out else None

    def forward(self, x):
        skip = self.skip_layer(x) if self.skip_layer is not None else x
        return self.gate_norm(self.fc2(F.elu(self.fc1(x))), skip)


class VariableSelection(nn.Module):
    def __init__(self, names, c, d, dropout):
        super().__init__()
        self.names = names
        n = len(names)
        self.flattened_grn = GRN(n * c, min(n, d), n, dropout)
        self.single_variable_grns = nn.ModuleDict(
            {name: GRN(c, min(c, d), d, dropout) for name in names}
        )

    def forward(self, emb):  # list of [B, T, c]
        w = torch.softmax(self.flattened_grn(torch.cat(emb, dim=-1)), dim=-1)
        v = torch.stack(
            [self.single_variable_grns[n](e) for n, e in zip(self.names, emb)], dim=-1
        )  # [B, T, d, n]
        return (v * w.unsqueeze(-2)).sum(-1), w


class InterpretableAttention(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.d_k = d // heads
        self.q_layers = nn.ModuleList([nn.Linear(d, self.d_k) for _ in range(heads)])
        self.k_layers = nn.ModuleList([nn.Linear(d, self.d_k) for _ in range(heads)])
        self.v_layer = nn.Linear(d, self.d_k)
        self.w_h = nn.Linear(self.d_k, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, q_in, kv, mask):
        v = self.v_layer(kv)
        heads, attns = [], []
        for ql, kl in zip(self.q_layers, self.k_layers):
            s = ql(q_in) @ kl(kv).transpose(1, 2) / self.d_k**0.5
            a = torch.softmax(s.masked_fill(mask, -1e9), dim=-1)
            heads.append(self.dropout(a) @ v)
            attns.append(a)
        out = self.w_h(torch.stack(heads, dim=2).mean(2))
        return self.dropout(out), torch.stack(attns, dim=1).mean(1)


# %% [markdown]
# ## The network

# %%
class TFT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, d, p = cfg["hidden_continuous"], cfg["hidden"], cfg["dropout"]
        names = FEATURES[: cfg["input_dim"]]
        self.known = names[cfg["input_dim"] - cfg["known_dim"]:]
        self.names = names
        self.prescalers = nn.ModuleDict({n: nn.Linear(1, c) for n in names})
        self.encoder_variable_selection = VariableSelection(names, c, d, p)
        self.decoder_variable_selection = VariableSelection(self.known, c, d, p)
        self.lstm_encoder = nn.LSTM(d, d, batch_first=True)
        self.lstm_decoder = nn.LSTM(d, d, batch_first=True)
        self.post_lstm_gate_encoder = GateAddNorm(d, d, p)
        self.static_enrichment = GRN(d, d, d, p)
        self.multihead_attn = InterpretableAttention(d, cfg["heads"], p)
        self.post_attn_gate_norm = GateAddNorm(d, d, p)
        self.pos_wise_ff = GRN(d, d, d, p)
        self.pre_output_gate_norm = GateAddNorm(d, d, p)
        self.output_layer = nn.Linear(d, 3)

    def window_scale(self, x):
        if not self.cfg["window_scale"] or x.shape[1] < 2:
            return torch.ones(x.shape[0], 1)
        cpu = x[:, :, 0]
        return (cpu[:, 1:] - cpu[:, :-1]).abs().mean(1, keepdim=True) + SCALE_FLOOR

    def forward(self, x, future):  # x [B, L, 23], future [B, H, 3], normalised
        b, l, _ = x.shape
        h = future.shape[1]
        past = [self.prescalers[n](x[..., j : j + 1]) for j, n in enumerate(self.names)]
        fut = [self.prescalers[n](future[..., k : k + 1]) for k, n in enumerate(self.known)]
        past_sel, past_w = self.encoder_variable_selection(past)
        fut_sel, fut_w = self.decoder_variable_selection(fut)
        enc, state = self.lstm_encoder(past_sel)
        dec, _ = self.lstm_decoder(fut_sel, state)
        phi = self.post_lstm_gate_encoder(
            torch.cat([enc, dec], dim=1), torch.cat([past_sel, fut_sel], dim=1)
        )
        enriched = self.static_enrichment(phi)
        q = enriched[:, l:]
        # forecast step j sees positions 0 .. l + j
        pos = torch.arange(l + h)
        mask = pos.unsqueeze(0) > (l + torch.arange(h)).unsqueeze(1)
        att, attention = self.multihead_attn(q, enriched, mask)
        a = self.post_attn_gate_norm(att, q)
        o = self.pre_output_gate_norm(self.pos_wise_ff(a), phi[:, l:])
        raw = self.output_layer(o)
        s = self.window_scale(x).unsqueeze(2)
        last = x[:, -1, 0].reshape(b, 1, 1)
        p50 = last + s * raw[..., 1:2]
        lo = p50 - s * F.softplus(raw[..., 0:1])
        hi = p50 + s * F.softplus(raw[..., 2:3])
        return torch.cat([lo, p50, hi], dim=2), past_w, fut_w, attention


# %% [markdown]
# ## Fixture
# A small network (d = 8, 2 heads, embeddings of 4) so the file stays small;
# every code path of the full model runs: 23 past variables, 3 known ones,
# the encoder-decoder hand-over, the causal mask, the scaled head.

# %%
def export(seed=11):
    torch.manual_seed(seed)
    cfg = dict(
        input_dim=23,
        known_dim=3,
        hidden=8,
        hidden_continuous=4,
        heads=2,
        lookback=6,
        horizon=4,
        dropout=0.1,
        window_scale=True,
    )
    net = TFT(cfg).eval()
    # Non-trivial layer norms (PyTorch starts them at 1 and 0).
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(5, cfg["lookback"], cfg["input_dim"])
    future = torch.randn(5, cfg["horizon"], cfg["known_dim"])
    with torch.no_grad():
        y, past_w, fut_w, attention = net(x, future)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        str(OUT / "model.safetensors"),
    )
    save_file(
        {
            "input": x.contiguous(),
            "future": future.contiguous(),
            "output": y.contiguous(),
            "past_weights": past_w.contiguous(),
            "future_weights": fut_w.contiguous(),
            "attention": attention.contiguous(),
        },
        str(OUT / "io.safetensors"),
    )
    (OUT / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    n = sum(p.numel() for p in net.parameters())
    print(f"{OUT.relative_to(ROOT)}: {n} parameters, output {tuple(y.shape)}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    export()
