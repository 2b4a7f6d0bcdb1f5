//! Fast inference for the network of `bilstm_attention.rs`: the same
//! arithmetic, without a tensor per op.
//!
//! - Windows go through in blocks of [`BLOCK`]: every matmul of the network
//!   is then one small GEMM with the block's rows, so each weight loaded
//!   from cache serves many windows. Per LSTM step the gates of the block
//!   are one pass (`gates`: each tile of the four fused gates starts
//!   from the bias and takes the input and the recurrent products in
//!   registers, then is stored once): the working set of a step (weights
//!   of one layer and direction, the block's sequences) stays in L2. A
//!   lone window instead projects the inputs of all its steps in one GEMM
//!   before the recurrence. A block's buffers are time-major (step t of
//!   window w in row t * B + w), so the rows a step reads are contiguous;
//!   window-major they were L * D floats (6 KB) apart and fell into a
//!   few L1 sets.
//! - The GEMM, the gate pass and the nonlinearities are `crate::simd`'s
//!   kernels, at the widest SIMD the CPU has (chosen at run time); an
//!   LSTM cell forms its new c and h as one fraction each, two divisions
//!   instead of five.
//! - Buffers are allocated once per call and no step copies: gates
//!   accumulate where they are and h is written straight into the layer
//!   output. Large batches are shared among threads block by block, so a
//!   core slowed by a neighbour on a shared host does not hold up the
//!   others.
//!
//! Tests hold it equal to the candle model (1e-4) on random weights and on
//! the shipped models. Speed: `cargo bench --bench forecast`; the figures,
//! per host and against the CPU's FMA peak, are in `benches/README.md`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use candle_core::Tensor;
use pulp::{Arch, Simd, WithSimd};

use super::bilstm_attention::{Config, SCALE_FLOOR};
pub use crate::simd::{GEMM_PAD, gemm, simd_lanes};
use crate::simd::{
    Mat, PAD, avx2, axpy, gates, gemm_mat, linear, pad_to, padded, sigmoid_s, tanh_in_place,
    tanh_nd, tanh_s,
};

/// Windows per block.
pub const BLOCK: usize = 16;

/// One direction of one LSTM layer, laid out for row-wise accumulation.
#[derive(Debug, Clone)]
struct Dir {
    /// [in][4H]
    w_ih_t: Mat,
    /// [H][4H]
    w_hh_t: Mat,
    /// b_ih + b_hh, [4H]
    bias: Vec<f32>,
    reverse: bool,
}

/// The network's weights in the layout the loops want.
#[derive(Debug, Clone)]
pub struct FastNet {
    cfg: Config,
    /// Feature attention, [F][F' + PAD] (F' = F padded), column j = the
    /// weights of output j.
    fa_w_t: Mat,
    /// [F'], zero-padded
    fa_b: Vec<f32>,
    /// [layer][direction]
    layers: Vec<Vec<Dir>>,
    /// [D][A'] (A' = A padded)
    att_w_t: Mat,
    /// [A'], zero-padded
    att_b: Vec<f32>,
    /// [A'], zero-padded
    att_v: Vec<f32>,
    /// [2D][3H'] (3H' = 3H padded)
    head_w_t: Mat,
    /// [3H'], zero-padded
    head_b: Vec<f32>,
    /// SIMD width (f32 lanes) the weights are packed for and the network
    /// runs at: the CPU's widest ([`simd_lanes`]) unless a narrower one
    /// was asked for ([`FastNet::from_tensors_at`]).
    lanes: usize,
}

/// Buffers for one block of windows.
#[derive(Debug)]
struct Scratch {
    /// Feature-attended input, [L*B][F] (time-major, as all [L*B] below).
    xt: Vec<f32>,
    /// Feature-attention logits, [B*L][F'].
    logits: Vec<f32>,
    /// Layer outputs, [L*B][D], alternating between layers.
    seq: [Vec<f32>; 2],
    /// Input projections, [L*B][4H]; step t's gates accumulate in place.
    xp: Vec<f32>,
    /// Cell state, [B][H].
    c: Vec<f32>,
    /// Temporal attention hidden layer, [L*B][A'].
    att: Vec<f32>,
    e: Vec<f32>,
    /// Encoder outputs, [B][2D].
    z: Vec<f32>,
    /// Head outputs, [B][3H'].
    o: Vec<f32>,
    last: Vec<f32>,
    scale: Vec<f32>,
}

impl Scratch {
    fn new(cfg: &Config, block: usize) -> Self {
        let (l, f, h, d) = (cfg.lookback, cfg.input_dim, cfg.hidden, cfg.lstm_out());
        let rows = block * l;
        Self {
            xt: vec![0.0; rows * f],
            logits: vec![0.0; rows * padded(f)],
            seq: [vec![0.0; rows * d], vec![0.0; rows * d]],
            xp: vec![0.0; rows * 4 * h],
            c: vec![0.0; block * h],
            att: vec![0.0; rows * padded(cfg.attention_dim)],
            e: vec![0.0; l],
            z: vec![0.0; block * 2 * d],
            o: vec![0.0; block * padded(3 * cfg.horizon)],
            last: vec![0.0; block],
            scale: vec![0.0; block],
        }
    }
}

fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

fn softmax(v: &mut [f32]) {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    for x in v.iter_mut() {
        *x /= s;
    }
}

/// One LSTM step for `b` rows: the gates (i, f, g, o) of row w at
/// `g[w * ldg..][..4H]`, its cell state at `c[w * H..][..H]`, its new
/// hidden state written to `h[w * ldh..][..H]`.
///
/// Each gate is a fraction n / d of the rational tanh (sigmoid(x) =
/// (d + n) / 2d at x / 2), and the new c and h are each formed as one
/// fraction: two divisions per lane instead of five (division is the
/// slowest vector instruction here).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_cell<S: Simd>(
    simd: S,
    g: &[f32],
    ldg: usize,
    c: &mut [f32],
    h: &mut [f32],
    ldh: usize,
    b: usize,
    hid: usize,
) {
    let half = simd.splat_f32s(0.5);
    for (w, c) in c.chunks_exact_mut(hid).take(b).enumerate() {
        let g = &g[w * ldg..w * ldg + 4 * hid];
        let h = &mut h[w * ldh..w * ldh + hid];
        let (gi, rest) = g.split_at(hid);
        let (gf, rest) = rest.split_at(hid);
        let (gg, go) = rest.split_at(hid);
        let (vi, ti) = S::as_simd_f32s(gi);
        let (vf, tf) = S::as_simd_f32s(gf);
        let (vg, tg) = S::as_simd_f32s(gg);
        let (vo, to) = S::as_simd_f32s(go);
        let (vc, tc) = S::as_mut_simd_f32s(c);
        let (vh, th) = S::as_mut_simd_f32s(h);
        for (((((i, f), gg), o), c), h) in vi
            .iter()
            .zip(vf)
            .zip(vg)
            .zip(vo)
            .zip(vc.iter_mut())
            .zip(vh.iter_mut())
        {
            // Input and candidate first, then forget, then output: fewer
            // values live at once (the four fractions at once spilled).
            let (ni, di) = tanh_nd(simd, simd.mul_f32s(half, *i));
            let (ng, dg) = tanh_nd(simd, *gg);
            let di_dg = simd.mul_f32s(di, dg);
            let add = simd.mul_f32s(simd.add_f32s(di, ni), ng);
            let (nf, df) = tanh_nd(simd, simd.mul_f32s(half, *f));
            // c' = (df + nf) / 2df * c + (di + ni) / 2di * ng / dg
            let keep = simd.mul_f32s(simd.add_f32s(df, nf), simd.mul_f32s(*c, di_dg));
            let num = simd.mul_add_e_f32s(add, df, keep);
            let cn = simd.div_f32s(simd.mul_f32s(half, num), simd.mul_f32s(df, di_dg));
            *c = cn;
            // h = (do + no) / 2do * nc / dc
            let (no, d_o) = tanh_nd(simd, simd.mul_f32s(half, *o));
            let (nc, dc) = tanh_nd(simd, cn);
            *h = simd.div_f32s(
                simd.mul_f32s(half, simd.mul_f32s(simd.add_f32s(d_o, no), nc)),
                simd.mul_f32s(d_o, dc),
            );
        }
        for (((((i, f), gg), o), c), h) in ti
            .iter()
            .zip(tf)
            .zip(tg)
            .zip(to)
            .zip(tc.iter_mut())
            .zip(th.iter_mut())
        {
            *c = sigmoid_s(*f) * *c + sigmoid_s(*i) * tanh_s(*gg);
            *h = sigmoid_s(*o) * tanh_s(*c);
        }
    }
}

/// The whole network on one block of `b` windows.
struct BlockForward<'a> {
    net: &'a FastNet,
    /// [b][L][F], normalised.
    x: &'a [f32],
    b: usize,
    s: &'a mut Scratch,
}

impl WithSimd for BlockForward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { net, x, b, s } = self;
        let cfg = &net.cfg;
        let (l, f, hid, d) = (cfg.lookback, cfg.input_dim, cfg.hidden, cfg.lstm_out());
        let rows = b * l;
        let g4 = 4 * hid;
        // Feature attention: logits of every row in one GEMM, then a
        // softmax over the F features of each row.
        let fp = net.fa_b.len();
        // From xt on rows are time-major, (t, w) at t * b + w: the
        // block's rows of one step are then contiguous. Window-major, they
        // were L * D floats apart (6 KB for the second layer), which put
        // the rows of a step in a few L1 sets and evicted each other.
        linear(simd, x, f, rows, &net.fa_w_t, &net.fa_b, &mut s.logits);
        for r in 0..rows {
            let logits = &mut s.logits[r * fp..r * fp + f];
            softmax(logits);
            let tm = (r % l) * b + r / l;
            for ((o, a), xv) in s.xt[tm * f..(tm + 1) * f]
                .iter_mut()
                .zip(logits.iter())
                .zip(&x[r * f..(r + 1) * f])
            {
                *o = a * xv * f as f32;
            }
        }
        // LSTM layers: layer 0 reads xt, layer k writes seq[k % 2].
        for (k, layer) in net.layers.iter().enumerate() {
            let [s0, s1] = &mut s.seq;
            let (input, in_dim, out): (&[f32], usize, &mut [f32]) = match k {
                0 => (&s.xt, f, s0),
                k if k % 2 == 1 => (s0, d, s1),
                _ => (s1, d, s0),
            };
            for (di, dir) in layer.iter().enumerate() {
                // A block of windows computes each step's gates in one
                // pass (bias, input, recurrent: the working set of a
                // step fits in L2); a lone window projects all its steps
                // at once, so each weight row loaded serves every step.
                let per_step = b >= 4;
                if !per_step {
                    linear(simd, input, in_dim, rows, &dir.w_ih_t, &dir.bias, &mut s.xp);
                }
                // Gates accumulate in place and h goes straight to the
                // layer output, strided by window: no copies.
                s.c[..b * hid].fill(0.0);
                let mut prev: Option<usize> = None;
                for step in 0..l {
                    let t = if dir.reverse { l - 1 - step } else { step };
                    let (g, ldg) = if per_step {
                        gates(
                            simd,
                            &input[t * b * in_dim..],
                            in_dim,
                            &dir.w_ih_t,
                            prev.map(|tp| (&out[tp * b * d + di * hid..], d)),
                            &dir.w_hh_t,
                            &dir.bias,
                            b,
                            &mut s.xp,
                        );
                        (0, g4)
                    } else {
                        if let Some(tp) = prev {
                            gemm_mat(
                                simd,
                                &out[tp * b * d + di * hid..],
                                d,
                                b,
                                &dir.w_hh_t,
                                &mut s.xp[t * b * g4..],
                                g4,
                            );
                        }
                        (t * b * g4, g4)
                    };
                    lstm_cell(
                        simd,
                        &s.xp[g..],
                        ldg,
                        &mut s.c[..b * hid],
                        &mut out[t * b * d + di * hid..],
                        d,
                        b,
                        hid,
                    );
                    prev = Some(t);
                }
            }
        }
        let seq: &[f32] = &s.seq[(net.layers.len() + 1) % 2];
        // Temporal attention.
        let ap = net.att_b.len();
        linear(simd, seq, d, rows, &net.att_w_t, &net.att_b, &mut s.att);
        tanh_in_place(simd, &mut s.att[..rows * ap]);
        for w in 0..b {
            for t in 0..l {
                let a = &s.att[(t * b + w) * ap..(t * b + w + 1) * ap];
                s.e[t] = a.iter().zip(&net.att_v).map(|(a, v)| a * v).sum();
            }
            softmax(&mut s.e);
            let z = &mut s.z[w * 2 * d..(w + 1) * 2 * d];
            z[..d].fill(0.0);
            for t in 0..l {
                axpy(
                    simd,
                    s.e[t],
                    &seq[(t * b + w) * d..(t * b + w + 1) * d],
                    &mut z[..d],
                );
            }
            z[d..].copy_from_slice(&seq[((l - 1) * b + w) * d..((l - 1) * b + w + 1) * d]);
            let xw = &x[w * l * f..(w + 1) * l * f];
            s.last[w] = xw[(l - 1) * f];
            s.scale[w] = net.scale(xw);
        }
        // Head.
        linear(simd, &s.z, 2 * d, b, &net.head_w_t, &net.head_b, &mut s.o);
    }
}

impl FastNet {
    /// Build from the named tensors of a `model.safetensors`, for the
    /// widest SIMD this CPU has.
    pub fn from_tensors(cfg: &Config, t: &HashMap<String, Tensor>) -> candle_core::Result<Self> {
        Self::from_tensors_at(cfg, t, simd_lanes())
    }

    /// As [`FastNet::from_tensors`], run at a SIMD width of `lanes` f32
    /// where the CPU has it: 8 runs the AVX2 path on an AVX-512 CPU (what
    /// the tests use to hold both paths to the candle model on one host);
    /// any other width runs the CPU's widest.
    fn from_tensors_at(
        cfg: &Config,
        t: &HashMap<String, Tensor>,
        lanes: usize,
    ) -> candle_core::Result<Self> {
        let lanes = if lanes == 8 && avx2().is_some() {
            8
        } else {
            simd_lanes()
        };
        let get = |name: &str| -> candle_core::Result<Vec<f32>> {
            t.get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing weight {name}")))?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let (f, h, d, a) = (cfg.input_dim, cfg.hidden, cfg.lstm_out(), cfg.attention_dim);
        if (4 * h) % PAD != 0 {
            return Err(candle_core::Error::Msg(format!(
                "the fast path needs 4 x hidden to be a multiple of {PAD}, got hidden {h}"
            )));
        }
        let mut layers = Vec::with_capacity(cfg.layers);
        for k in 0..cfg.layers {
            let in_dim = if k == 0 { f } else { d };
            let dirs = if cfg.bidirectional { 2 } else { 1 };
            let mut v = Vec::with_capacity(dirs);
            for r in 0..dirs {
                let sfx = if r == 1 { "_reverse" } else { "" };
                let b_ih = get(&format!("lstm.bias_ih_l{k}{sfx}"))?;
                let b_hh = get(&format!("lstm.bias_hh_l{k}{sfx}"))?;
                v.push(Dir {
                    w_ih_t: Mat::from_linear(
                        &get(&format!("lstm.weight_ih_l{k}{sfx}"))?,
                        4 * h,
                        in_dim,
                        lanes,
                    ),
                    w_hh_t: Mat::from_linear(
                        &get(&format!("lstm.weight_hh_l{k}{sfx}"))?,
                        4 * h,
                        h,
                        lanes,
                    ),
                    bias: b_ih.iter().zip(&b_hh).map(|(x, y)| x + y).collect(),
                    reverse: r == 1,
                });
            }
            layers.push(v);
        }
        let ap = padded(a);
        let hp = padded(3 * cfg.horizon);
        Ok(Self {
            cfg: cfg.clone(),
            fa_w_t: Mat::from_linear(&get("feature_attn.weight")?, f, f, lanes),
            fa_b: pad_to(get("feature_attn.bias")?, padded(f)),
            layers,
            att_w_t: Mat::from_linear(&get("temporal_attn.proj.weight")?, a, d, lanes),
            att_b: pad_to(get("temporal_attn.proj.bias")?, ap),
            att_v: pad_to(get("temporal_attn.score.weight")?, ap),
            head_w_t: Mat::from_linear(&get("head.weight")?, 3 * cfg.horizon, 2 * d, lanes),
            head_b: pad_to(get("head.bias")?, hp),
            lanes,
        })
    }

    /// The head's unit for window x (see `Config::window_scale`).
    fn scale(&self, x: &[f32]) -> f32 {
        let (l, f) = (self.cfg.lookback, self.cfg.input_dim);
        if !self.cfg.window_scale || l < 2 {
            return 1.0;
        }
        let d: f32 = (1..l).map(|t| (x[t * f] - x[(t - 1) * f]).abs()).sum();
        d / (l - 1) as f32 + SCALE_FLOOR
    }

    /// Raw head outputs (a, m, b per step) -> normalised quantiles [H][3].
    fn quantiles(&self, o: &[f32], last_cpu: f32, scale: f32, out: &mut [f32]) {
        quantiles(&o[..3 * self.cfg.horizon], last_cpu, scale, out);
    }

    /// The head on one embedding: z, last CPU and scale -> normalised
    /// quantiles `[H][3]` (what an embedding-cache hit runs).
    pub fn head(&self, z: &[f32], last_cpu: f32, scale: f32, out: &mut [f32]) {
        let mut o = self.head_b.clone();
        for (i, zv) in z.iter().enumerate() {
            for (ov, w) in o
                .iter_mut()
                .zip(&self.head_w_t.rows[i * self.head_w_t.ld()..])
            {
                *ov += zv * w;
            }
        }
        self.quantiles(&o, last_cpu, scale, out);
    }

    fn block(&self, x: &[f32], s: &mut Scratch) -> usize {
        let b = x.len() / (self.cfg.lookback * self.cfg.input_dim);
        let op = BlockForward { net: self, x, b, s };
        // Packed for AVX2: run AVX2 (on an AVX2 CPU that is what dispatch
        // would choose anyway).
        match avx2().filter(|_| self.lanes == 8) {
            Some(v3) => v3.vectorize(op),
            None => Arch::new().dispatch(op),
        }
        b
    }

    /// Encoder output of one window: (z, last normalised CPU, scale).
    pub fn embed(&self, x: &[f32]) -> (Vec<f32>, f32, f32) {
        let mut s = Scratch::new(&self.cfg, 1);
        self.block(x, &mut s);
        (s.z, s.last[0], s.scale[0])
    }

    /// Normalised quantiles `[n][H][3]` for n windows `[n][L][F]`, on up to
    /// `threads` threads.
    pub fn forward(&self, xs: &[f32], threads: usize) -> Vec<f32> {
        let per = 3 * self.cfg.horizon;
        let hp = self.head_b.len();
        self.blocks(xs, threads, per, |s, w, o| {
            self.quantiles(&s.o[w * hp..(w + 1) * hp], s.last[w], s.scale[w], o);
        })
    }

    /// Encoder outputs of n windows `[n][L][F]`: per window the embedding
    /// followed by its last normalised CPU and scale, [n][Z + 2] (what
    /// [`FastNet::embed`] gives for one), on up to `threads` threads.
    pub fn embed_many(&self, xs: &[f32], threads: usize) -> Vec<f32> {
        let zd = self.head_w_t.k;
        self.blocks(xs, threads, zd + 2, |s, w, o| {
            o[..zd].copy_from_slice(&s.z[w * zd..(w + 1) * zd]);
            o[zd] = s.last[w];
            o[zd + 1] = s.scale[w];
        })
    }

    /// Run the encoder and head over n windows in blocks, `emit` writing
    /// `per` floats for window `w` of a block; whole blocks per thread.
    fn blocks(
        &self,
        xs: &[f32],
        threads: usize,
        per: usize,
        emit: impl Fn(&Scratch, usize, &mut [f32]) + Sync,
    ) -> Vec<f32> {
        let win = self.cfg.lookback * self.cfg.input_dim;
        let n = xs.len() / win;
        let mut out = vec![0.0; n * per];
        // Threads take blocks as they go rather than a fixed share: on a
        // shared host one core is often slower for a while, and a fixed
        // split would wait for it. One thread runs the same loop in place.
        let nb = n.clamp(1, BLOCK);
        let work = Mutex::new(xs.chunks(nb * win).zip(out.chunks_mut(nb * per)));
        let worker = || {
            let mut s = Scratch::new(&self.cfg, nb);
            loop {
                let next = work.lock().unwrap_or_else(PoisonError::into_inner).next();
                let Some((x, o)) = next else { break };
                let b = self.block(x, &mut s);
                for w in 0..b {
                    emit(&s, w, &mut o[w * per..(w + 1) * per]);
                }
            }
        };
        let threads = threads.clamp(1, n.div_ceil(BLOCK).max(1));
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(worker);
            }
            worker();
        });
        out
    }
}

/// The non-crossing quantile map shared by every network's head: raw (a, m,
/// b) per step -> p50 = last + s m, p10 = p50 - s softplus(a), p90 = p50 +
/// s softplus(b), normalised, into `out` [H * 3].
pub fn quantiles(raw: &[f32], last_cpu: f32, scale: f32, out: &mut [f32]) {
    for (o, r) in out.chunks_exact_mut(3).zip(raw.chunks_exact(3)) {
        let p50 = last_cpu + scale * r[1];
        o[0] = p50 - scale * softplus(r[0]);
        o[1] = p50;
        o[2] = p50 + scale * softplus(r[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::bilstm_attention::BiLstmAttention;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn rational_tanh_is_tanh() {
        let mut worst = 0.0f32;
        for i in -20_000..=20_000 {
            let x = i as f32 / 1_000.0;
            worst = worst.max((tanh_s(x) - x.tanh()).abs());
            worst = worst.max((sigmoid_s(x) - 1.0 / (1.0 + (-x).exp())).abs());
        }
        assert!(worst < 1e-6, "max error {worst}");
        // The vector version agrees with the scalar one.
        let xs: Vec<f32> = (-100..100).map(|i| i as f32 / 7.0).collect();
        let mut v = xs.clone();
        struct T<'a>(&'a mut [f32]);
        impl WithSimd for T<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, simd: S) {
                tanh_in_place(simd, self.0)
            }
        }
        Arch::new().dispatch(T(&mut v));
        for (x, y) in xs.iter().zip(&v) {
            assert!((tanh_s(*x) - y).abs() < 1e-6, "{x}: {y}");
        }
    }

    #[test]
    fn gemm_matches_the_definition() {
        for (m, k, n) in [
            (1, 5, 16),
            (3, 7, 48),
            (4, 64, 256),
            (13, 23, 32),
            (17, 9, 144),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32) - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32) / 4.0).collect();
            let c0: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
            let mut c = c0.clone();
            gemm(&a, k, m, k, &b, n, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let want =
                        c0[i * n + j] + (0..k).map(|q| a[i * k + q] * b[q * n + j]).sum::<f32>();
                    let got = c[i * n + j];
                    assert!(
                        (got - want).abs() < 1e-3,
                        "({m},{k},{n}) [{i},{j}] {got} vs {want}"
                    );
                }
            }
        }
    }

    /// One LSTM step's gates in one pass (bias, input and recurrent
    /// products in registers) give the bits of the separate linear layer
    /// and recurrent GEMM, with and without a previous h.
    #[test]
    fn fused_gates_equal_the_two_products() {
        struct G<'a> {
            x: &'a [f32],
            ldx: usize,
            h: Option<(&'a [f32], usize)>,
            w_ih: &'a Mat,
            w_hh: &'a Mat,
            bias: &'a [f32],
            m: usize,
            fused: bool,
            c: &'a mut [f32],
        }
        impl WithSimd for G<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, simd: S) {
                if self.fused {
                    gates(
                        simd, self.x, self.ldx, self.w_ih, self.h, self.w_hh, self.bias, self.m,
                        self.c,
                    );
                } else {
                    linear(simd, self.x, self.ldx, self.m, self.w_ih, self.bias, self.c);
                    if let Some((h, ldh)) = self.h {
                        gemm_mat(simd, h, ldh, self.m, self.w_hh, self.c, self.w_ih.n);
                    }
                }
            }
        }
        let (hid, g4) = (64, 256);
        for (m, inp) in [(16, 23), (7, 128), (1, 23), (5, 40)] {
            let w_ih: Vec<f32> = (0..g4 * inp)
                .map(|i| ((i * 5 % 11) as f32) / 7.0 - 0.7)
                .collect();
            let w_hh: Vec<f32> = (0..g4 * hid)
                .map(|i| ((i * 3 % 17) as f32) / 9.0 - 0.9)
                .collect();
            let bias: Vec<f32> = (0..g4).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
            // Rows strided as in the block path (a wider row than k).
            let (ldx, ldh) = (inp + 3, hid + 9);
            let x: Vec<f32> = (0..m * ldx)
                .map(|i| ((i * 7 % 13) as f32) / 3.0 - 2.0)
                .collect();
            let hs: Vec<f32> = (0..m * ldh)
                .map(|i| ((i * 11 % 19) as f32) / 19.0 - 0.5)
                .collect();
            let (wi, wh) = (
                Mat::from_linear(&w_ih, g4, inp, simd_lanes()),
                Mat::from_linear(&w_hh, g4, hid, simd_lanes()),
            );
            for with_h in [false, true] {
                let h = with_h.then_some((&hs[..], ldh));
                let mut out = [vec![f32::NAN; m * g4], vec![f32::NAN; m * g4]];
                for (fused, c) in [false, true].into_iter().zip(out.iter_mut()) {
                    Arch::new().dispatch(G {
                        x: &x,
                        ldx,
                        h,
                        w_ih: &wi,
                        w_hh: &wh,
                        bias: &bias,
                        m,
                        fused,
                        c,
                    });
                }
                assert_eq!(out[0], out[1], "m {m}, inp {inp}, h {with_h}");
                // And both are the definition.
                for i in 0..m {
                    for j in 0..g4 {
                        let mut want = bias[j];
                        want += (0..inp)
                            .map(|q| x[i * ldx + q] * w_ih[j * inp + q])
                            .sum::<f32>();
                        if with_h {
                            want += (0..hid)
                                .map(|q| hs[i * ldh + q] * w_hh[j * hid + q])
                                .sum::<f32>();
                        }
                        let got = out[1][i * g4 + j];
                        assert!((got - want).abs() < 1e-3, "[{i},{j}] {got} vs {want}");
                    }
                }
            }
        }
    }

    /// A weight matrix in both layouts: the packed strips (rows in
    /// fours) and the strided rows (the rest) give what a linear layer
    /// gives, bit for bit the same per row whatever the row count.
    #[test]
    fn packed_weights_give_the_linear_layer() {
        struct G<'a> {
            a: &'a [f32],
            w: &'a Mat,
            c: &'a mut [f32],
            m: usize,
        }
        impl WithSimd for G<'_> {
            type Output = ();
            fn with_simd<S: Simd>(self, simd: S) {
                gemm_mat(simd, self.a, self.w.k, self.m, self.w, self.c, self.w.n)
            }
        }
        for (m, inp, out) in [
            (1, 23, 256),
            (4, 23, 23),
            (7, 64, 256),
            (16, 128, 36),
            (9, 5, 40),
        ] {
            // Linear layer weight [out][inp].
            let w: Vec<f32> = (0..out * inp)
                .map(|i| ((i * 5 % 11) as f32) / 4.0 - 1.0)
                .collect();
            let a: Vec<f32> = (0..m * inp).map(|i| ((i * 7 % 13) as f32) - 6.0).collect();
            let mat = Mat::from_linear(&w, out, inp, simd_lanes());
            assert_eq!(mat.packed.len(), inp * padded(out));
            let np = padded(out);
            let mut c = vec![0.0; m * np];
            Arch::new().dispatch(G {
                a: &a,
                w: &mat,
                c: &mut c,
                m,
            });
            for i in 0..m {
                for j in 0..np {
                    let want: f32 = if j < out {
                        (0..inp).map(|q| a[i * inp + q] * w[j * inp + q]).sum()
                    } else {
                        0.0
                    };
                    let got = c[i * np + j];
                    assert!(
                        (got - want).abs() < 1e-3,
                        "({m},{inp},{out}) [{i},{j}] {got} vs {want}"
                    );
                }
                // Row i alone gives the same bits as row i of the batch.
                let mut one = vec![0.0; np];
                Arch::new().dispatch(G {
                    a: &a[i * inp..(i + 1) * inp],
                    w: &mat,
                    c: &mut one,
                    m: 1,
                });
                assert_eq!(one, c[i * np..(i + 1) * np], "({m},{inp},{out}) row {i}");
            }
        }
    }

    /// The fast path equals the candle model on random weights and inputs.
    #[test]
    fn equals_the_candle_model() {
        for (bidirectional, window_scale) in [(true, true), (false, true), (true, false)] {
            let mut cfg = Config::paper(5, bidirectional);
            cfg.hidden = 8;
            cfg.attention_dim = 6;
            cfg.horizon = 4;
            cfg.window_scale = window_scale;
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let net = BiLstmAttention::new(&cfg, vb).unwrap();
            let tensors: HashMap<String, Tensor> = varmap
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect();
            // More than one block, and a partial one whose rows are not a
            // multiple of the GEMM's four.
            let n = 2 * BLOCK + 7;
            let xs: Vec<f32> = (0..n * cfg.lookback * cfg.input_dim)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let x = Tensor::from_vec(xs.clone(), (n, cfg.lookback, cfg.input_dim), &Device::Cpu)
                .unwrap();
            let want = net
                .forward(&x, None)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            // The CPU's widest SIMD path, and the AVX2 one where that is
            // narrower (an AVX-512 host runs both).
            let mut widths = vec![simd_lanes()];
            if simd_lanes() != 8 && avx2().is_some() {
                widths.push(8);
            }
            for lanes in widths {
                let fast = FastNet::from_tensors_at(&cfg, &tensors, lanes).unwrap();
                assert_eq!(fast.lanes, lanes);
                for threads in [1, 3] {
                    let got = fast.forward(&xs, threads);
                    assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-4,
                            "{g} vs {w} (bi {bidirectional}, threads {threads})"
                        );
                    }
                }
                let one = fast.forward(&xs[..cfg.lookback * cfg.input_dim], 1);
                for (g, w) in one.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-4, "{g} vs {w} (one window)");
                }
                // A few windows: the path of a lone window, with several.
                let few = fast.forward(&xs[..3 * cfg.lookback * cfg.input_dim], 1);
                assert_eq!(few.len(), 3 * 3 * cfg.horizon);
                for (g, w) in few.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-4, "{g} vs {w} (three windows)");
                }
                let (z, last, scale) = fast.embed(&xs[..cfg.lookback * cfg.input_dim]);
                let e = net.encode(&x.narrow(0, 0, 1).unwrap(), None).unwrap();
                let wz = e.embedding.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(z.len(), wz.len());
                for (g, w) in z.iter().zip(&wz) {
                    assert!((g - w).abs() < 1e-4, "{g} vs {w}");
                }
                assert_eq!(last, xs[(cfg.lookback - 1) * cfg.input_dim]);
                let ws = e.scale.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
                assert!((scale - ws).abs() < 1e-6, "{scale} vs {ws}");
                let mut q = vec![0.0; 3 * cfg.horizon];
                fast.head(&z, last, scale, &mut q);
                for (g, w) in q.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-4, "{g} vs {w} (head)");
                }
                // Batched embeddings: window by window what `embed` gives.
                let win = cfg.lookback * cfg.input_dim;
                for threads in [1, 2] {
                    let many = fast.embed_many(&xs, threads);
                    let per = z.len() + 2;
                    assert_eq!(many.len(), n * per);
                    for (w, got) in many.chunks_exact(per).enumerate() {
                        let (z1, l1, s1) = fast.embed(&xs[w * win..(w + 1) * win]);
                        for (g, e) in got[..z1.len()].iter().zip(&z1) {
                            assert!((g - e).abs() < 1e-5, "window {w}: {g} vs {e}");
                        }
                        assert_eq!((got[z1.len()], got[z1.len() + 1]), (l1, s1));
                    }
                }
            }
        }
    }
}
