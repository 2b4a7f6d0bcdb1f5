//! SIMD kernels shared by the forecaster's fast path
//! (`forecast::fast`) and the policy's actor (`policy::rl`): a GEMM
//! (register tiles of C, B packed in column strips, runtime dispatch
//! through `pulp` to AVX-512, AVX2 + FMA or plain loops), the fused LSTM
//! gate pass, and a rational tanh.
//!
//! Weight matrices are kept twice (`Mat`): row-major with a stride that
//! is not a power of two (a power-of-two stride maps a column strip of
//! every row to the same few L1 sets) and packed in contiguous column
//! strips for blocks of rows. `tanh` is Eigen's rational approximation
//! (clamped at +-7.9, max error 3e-7); sigmoid(x) = (1 + tanh(x / 2)) / 2.

use pulp::{Arch, Simd, WithSimd};

/// Matrix widths are padded to a multiple of this, so every row splits
/// into whole SIMD vectors (16 lanes covers AVX-512).
pub(crate) const PAD: usize = 16;

pub(crate) fn padded(n: usize) -> usize {
    n.div_ceil(PAD) * PAD
}

/// Row stride of a weight matrix `n` wide: padded, plus one more
/// [`PAD`]. A power-of-two stride (256 floats = 1 KB for the gates) maps
/// the same column strip of every row to a few L1 sets, and the GEMM,
/// which walks a strip down all rows, then misses L1 on nearly every
/// load; an odd number of cache lines spreads the rows over all sets.
pub(crate) fn stride(n: usize) -> usize {
    padded(n) + PAD
}

/// The column strips of the GEMM, in vectors: (first, width), widths 3
/// then one of 2 or 1 for the rest.
pub(crate) fn strips(nv: usize) -> impl Iterator<Item = (usize, usize)> {
    let (n3, rem) = (nv / 3, nv % 3);
    (0..n3)
        .map(|s| (3 * s, 3))
        .chain((rem > 0).then_some((3 * n3, rem)))
}

/// SIMD lanes of f32 on this CPU (what [`Arch::new`] dispatches to, and
/// the width [`crate::forecast::fast::FastNet::from_tensors`] packs for).
pub fn simd_lanes() -> usize {
    struct L;
    impl WithSimd for L {
        type Output = usize;
        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) -> usize {
            S::F32_LANES
        }
    }
    Arch::new().dispatch(L)
}

/// AVX2 + FMA, where the CPU has it.
pub(crate) fn avx2() -> Option<impl Simd> {
    #[cfg(target_arch = "x86_64")]
    return pulp::x86::V3::try_new();
    #[cfg(not(target_arch = "x86_64"))]
    return None::<pulp::Scalar>;
}

/// A weight matrix B [k][n] of C += A B, in two layouts: row-major with
/// row stride [`stride`]`(n)` (what one row of A, a lone window, reads)
/// and packed in the column strips of [`strips`] for this CPU's SIMD
/// width, each strip a contiguous [k][width] panel (what blocks of rows
/// read).
#[derive(Debug, Clone)]
pub(crate) struct Mat {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) rows: Vec<f32>,
    pub(crate) packed: Vec<f32>,
    pub(crate) lanes: usize,
}

impl Mat {
    /// From the row-major [out][in] weight of a linear layer (B = its
    /// transpose, k = in, n = out padded), packed for SIMD vectors of
    /// `lanes` f32.
    pub(crate) fn from_linear(w: &[f32], out: usize, inp: usize, lanes: usize) -> Self {
        let rows = transpose_padded(w, out, inp);
        let (k, n, ld) = (inp, padded(out), stride(out));
        let mut packed = Vec::with_capacity(k * n);
        for (jv, width) in strips(n / lanes) {
            for kk in 0..k {
                let at = kk * ld + jv * lanes;
                packed.extend_from_slice(&rows[at..at + width * lanes]);
            }
        }
        Self {
            k,
            n,
            rows,
            packed,
            lanes,
        }
    }
}

impl Mat {
    /// Row stride of the row-major layout.
    pub(crate) fn ld(&self) -> usize {
        stride(self.n)
    }
}

/// C[m][n] (row stride `ldc`) += A[m][k] (row stride `lda`) x B.
#[inline(always)]
pub(crate) fn gemm_mat<S: Simd>(
    simd: S,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &Mat,
    c: &mut [f32],
    ldc: usize,
) {
    let packed = (b.lanes == S::F32_LANES).then_some(&b.packed[..]);
    gemm_acc(simd, a, lda, m, b.k, &b.rows, b.ld(), b.n, c, ldc, packed);
}

/// A linear layer on m rows: C[m][n] (row stride n) = bias + A W.
#[inline(always)]
pub(crate) fn linear<S: Simd>(
    simd: S,
    a: &[f32],
    lda: usize,
    m: usize,
    w: &Mat,
    bias: &[f32],
    c: &mut [f32],
) {
    for row in c[..m * w.n].chunks_exact_mut(w.n) {
        row.copy_from_slice(bias);
    }
    gemm_mat(simd, a, lda, m, w, c, w.n);
}

/// Row-major [rows][cols] -> [cols][stride(rows)], zero-filled.
pub(crate) fn transpose_padded(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let rp = stride(rows);
    let mut t = vec![0.0; cols * rp];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rp + r] = w[r * cols + c];
        }
    }
    t
}

pub(crate) fn pad_to(mut v: Vec<f32>, n: usize) -> Vec<f32> {
    v.resize(n, 0.0);
    v
}

// Eigen's rational tanh (generic_fast_tanh_float): odd numerator,
// even denominator, valid on [-7.9053, 7.9053] where tanh is 1 in f32.
pub(crate) const TANH_CLAMP: f32 = 7.905_311;
pub(crate) const TANH_A: [f32; 7] = [
    4.893_524_6e-3,
    6.372_619_3e-4,
    1.485_722_4e-5,
    5.122_297e-8,
    -8.604_672e-11,
    2.000_188e-13,
    -2.760_768_5e-16,
];
pub(crate) const TANH_B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];

/// Scalar tanh with the same approximation as the vector one.
#[inline(always)]
pub(crate) fn tanh_s(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let mut p = TANH_A[6];
    for a in TANH_A[..6].iter().rev() {
        p = p * x2 + a;
    }
    let mut q = TANH_B[3];
    for b in TANH_B[..3].iter().rev() {
        q = q * x2 + b;
    }
    x * p / q
}

#[inline(always)]
pub(crate) fn sigmoid_s(x: f32) -> f32 {
    0.5 + 0.5 * tanh_s(0.5 * x)
}

/// The rational tanh as (numerator, denominator), the denominator
/// positive (at least 4.9e-3).
#[inline(always)]
pub(crate) fn tanh_nd<S: Simd>(simd: S, x: S::f32s) -> (S::f32s, S::f32s) {
    let x = simd.min_f32s(
        simd.max_f32s(x, simd.splat_f32s(-TANH_CLAMP)),
        simd.splat_f32s(TANH_CLAMP),
    );
    let x2 = simd.mul_f32s(x, x);
    let mut p = simd.splat_f32s(TANH_A[6]);
    for a in TANH_A[..6].iter().rev() {
        p = simd.mul_add_e_f32s(p, x2, simd.splat_f32s(*a));
    }
    let mut q = simd.splat_f32s(TANH_B[3]);
    for b in TANH_B[..3].iter().rev() {
        q = simd.mul_add_e_f32s(q, x2, simd.splat_f32s(*b));
    }
    (simd.mul_f32s(x, p), q)
}

#[inline(always)]
pub(crate) fn tanh_v<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let (n, d) = tanh_nd(simd, x);
    simd.div_f32s(n, d)
}

/// Matrix widths [`gemm`] takes are multiples of this.
pub const GEMM_PAD: usize = PAD;

/// `C[m][n] += A[m][k]` (row stride `lda`) x `B[k][n]`, `n` a multiple of
/// [`GEMM_PAD`], in the widest SIMD the CPU has. Each element of C is
/// accumulated over k in order, whatever m is, so one row and a batch of
/// rows give bit-identical results. (The policy's actor uses it.)
#[allow(clippy::too_many_arguments)]
pub fn gemm(a: &[f32], lda: usize, m: usize, k: usize, b: &[f32], n: usize, c: &mut [f32]) {
    struct G<'a> {
        a: &'a [f32],
        lda: usize,
        m: usize,
        k: usize,
        b: &'a [f32],
        n: usize,
        c: &'a mut [f32],
    }
    impl WithSimd for G<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            gemm_acc(
                simd, self.a, self.lda, self.m, self.k, self.b, self.n, self.n, self.c, self.n,
                None,
            )
        }
    }
    assert!(
        n.is_multiple_of(PAD),
        "gemm: n = {n} is not a multiple of {PAD}"
    );
    Arch::new().dispatch(G {
        a,
        lda,
        m,
        k,
        b,
        n,
        c,
    });
}

/// acc[r][q] += sum over kk of A[i0 + r][kk] x B[kk][jb0 + q], kk in
/// order: `MR` rows x `NR` vectors over all of K.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn mac<S: Simd, const MR: usize, const NR: usize>(
    simd: S,
    acc: &mut [[S::f32s; NR]; MR],
    a: &[f32],
    lda: usize,
    i0: usize,
    k: usize,
    bv: &[S::f32s],
    ldbv: usize,
    jb0: usize,
) {
    let rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * lda..(i0 + r) * lda + k]);
    if ldbv == NR && jb0 == 0 {
        // B is a contiguous [k][NR] panel (always so when packed): walked
        // in whole rows of `NR` vectors, the loop carries no bounds check
        // or index arithmetic besides the counter, so the FMAs dominate
        // the instruction stream (`take(k)` tells the compiler that kk
        // stays below the rows' length k). Same order of accumulation.
        for (kk, b) in bv[..k * NR].chunks_exact(NR).enumerate().take(k) {
            fma_step(simd, acc, &rows, kk, b);
        }
    } else {
        for kk in 0..k {
            fma_step(
                simd,
                acc,
                &rows,
                kk,
                &bv[kk * ldbv + jb0..kk * ldbv + jb0 + NR],
            );
        }
    }
}

/// One k step of [`mac`]: acc[r][q] += A[r][kk] x b[q].
#[inline(always)]
pub(crate) fn fma_step<S: Simd, const MR: usize, const NR: usize>(
    simd: S,
    acc: &mut [[S::f32s; NR]; MR],
    rows: &[&[f32]; MR],
    kk: usize,
    b: &[S::f32s],
) {
    for r in 0..MR {
        let av = simd.splat_f32s(rows[r][kk]);
        for q in 0..NR {
            acc[r][q] = simd.mul_add_e_f32s(av, b[q], acc[r][q]);
        }
    }
}

/// `MR` rows x `NR` vectors of C += A B over all of K.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn micro<S: Simd, const MR: usize, const NR: usize>(
    simd: S,
    a: &[f32],
    lda: usize,
    i0: usize,
    k: usize,
    bv: &[S::f32s],
    ldbv: usize,
    jb0: usize,
    ldcv: usize,
    jv0: usize,
    cv: &mut [S::f32s],
) {
    let mut acc = [[simd.splat_f32s(0.0); NR]; MR];
    for (r, acc_r) in acc.iter_mut().enumerate() {
        acc_r.copy_from_slice(&cv[(i0 + r) * ldcv + jv0..(i0 + r) * ldcv + jv0 + NR]);
    }
    mac(simd, &mut acc, a, lda, i0, k, bv, ldbv, jb0);
    for (r, acc_r) in acc.iter().enumerate() {
        cv[(i0 + r) * ldcv + jv0..(i0 + r) * ldcv + jv0 + NR].copy_from_slice(acc_r);
    }
}

/// One operand pair of [`gates`]: rows of A (row stride `lda`) times
/// the packed panels of B.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a, V> {
    pub(crate) a: &'a [f32],
    pub(crate) lda: usize,
    pub(crate) k: usize,
    pub(crate) packed: &'a [V],
}

impl<'a, V> Operand<'a, V> {
    /// The packed [k][width] panel of the strip at vector `jv`.
    #[inline(always)]
    pub(crate) fn panel(&self, jv: usize, width: usize) -> &'a [V] {
        &self.packed[self.k * jv..self.k * (jv + width)]
    }
}

/// `MR` rows x `NR` vectors of C = bias + A1 B1 (+ A2 B2), in that
/// order of accumulation, from the strip at vector `jv` of packed B.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn micro_gates<S: Simd, const MR: usize, const NR: usize>(
    simd: S,
    i0: usize,
    jv: usize,
    bias: &[S::f32s],
    x: Operand<'_, S::f32s>,
    h: Option<Operand<'_, S::f32s>>,
    ldcv: usize,
    cv: &mut [S::f32s],
) {
    let mut acc = [[simd.splat_f32s(0.0); NR]; MR];
    for acc_r in acc.iter_mut() {
        acc_r.copy_from_slice(&bias[jv..jv + NR]);
    }
    mac(simd, &mut acc, x.a, x.lda, i0, x.k, x.panel(jv, NR), NR, 0);
    if let Some(h) = h {
        mac(simd, &mut acc, h.a, h.lda, i0, h.k, h.panel(jv, NR), NR, 0);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        cv[(i0 + r) * ldcv + jv..(i0 + r) * ldcv + jv + NR].copy_from_slice(acc_r);
    }
}

/// The gates of one LSTM step for `m` rows, in one pass over C:
/// C[m][4H] (rows contiguous, as [`linear`] writes them) = bias + X W_ih
/// (+ H W_hh when `h` is given). Each tile of C is set from the bias and both products are
/// accumulated in registers before it is stored once; the order of
/// accumulation is that of [`linear`] then [`gemm_mat`], so the result
/// is the same to the bit. Falls back to those two when the weights are
/// not packed for this SIMD width.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gates<S: Simd>(
    simd: S,
    x: &[f32],
    ldx: usize,
    w_ih: &Mat,
    h: Option<(&[f32], usize)>,
    w_hh: &Mat,
    bias: &[f32],
    m: usize,
    c: &mut [f32],
) {
    let n = w_ih.n;
    if w_ih.lanes != S::F32_LANES || w_hh.lanes != S::F32_LANES {
        linear(simd, x, ldx, m, w_ih, bias, c);
        if let Some((h, ldh)) = h {
            gemm_mat(simd, h, ldh, m, w_hh, c, n);
        }
        return;
    }
    let ldcv = n / S::F32_LANES;
    let bias = S::as_simd_f32s(&bias[..n]).0;
    let cv = S::as_mut_simd_f32s(&mut c[..m * n]).0;
    let xo = Operand {
        a: x,
        lda: ldx,
        k: w_ih.k,
        packed: S::as_simd_f32s(&w_ih.packed).0,
    };
    let ho = h.map(|(a, lda)| Operand {
        a,
        lda,
        k: w_hh.k,
        packed: S::as_simd_f32s(&w_hh.packed).0,
    });
    let m4 = m - m % 4;
    for (jv, w) in strips(ldcv) {
        for i in (0..m4).step_by(4) {
            match w {
                3 => micro_gates::<S, 4, 3>(simd, i, jv, bias, xo, ho, ldcv, cv),
                2 => micro_gates::<S, 4, 2>(simd, i, jv, bias, xo, ho, ldcv, cv),
                _ => micro_gates::<S, 4, 1>(simd, i, jv, bias, xo, ho, ldcv, cv),
            }
        }
        for i in m4..m {
            match w {
                3 => micro_gates::<S, 1, 3>(simd, i, jv, bias, xo, ho, ldcv, cv),
                2 => micro_gates::<S, 1, 2>(simd, i, jv, bias, xo, ho, ldcv, cv),
                _ => micro_gates::<S, 1, 1>(simd, i, jv, bias, xo, ho, ldcv, cv),
            }
        }
    }
}

/// C[m][n] (row stride `ldc`) += A[m][k] (row stride `lda`) x B[k][n]
/// (row stride `ldb`); n, ldb and ldc are multiples of [`PAD`], so rows
/// of B and C are whole vectors. `packed`, when given, is B in the
/// strip layout of [`Mat`] for this SIMD width.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_acc<S: Simd>(
    simd: S,
    a: &[f32],
    lda: usize,
    m: usize,
    k: usize,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    packed: Option<&[f32]>,
) {
    if m == 0 {
        return;
    }
    let nv = n / S::F32_LANES;
    let ldbv = ldb / S::F32_LANES;
    let ldcv = ldc / S::F32_LANES;
    let bv = S::as_simd_f32s(&b[..k * ldb]).0;
    let cv = S::as_mut_simd_f32s(&mut c[..(m - 1) * ldc + n]).0;
    // Four rows by three vectors: 12 accumulators (two FMA pipes of
    // latency 4 need 8 in flight; 12 leave slack), each broadcast used
    // three times and each weight vector four times. A packed B gives
    // each strip its own contiguous [k][width] panel: the kernel then
    // reads B sequentially, which the prefetcher follows, instead of one
    // short piece of every row.
    let packed = packed.map(|p| S::as_simd_f32s(p).0);
    let m4 = m - m % 4;
    for (jv, w) in strips(nv) {
        let (bs, ldbs, jb) = match packed {
            Some(p) => (&p[k * jv..k * (jv + w)], w, 0),
            None => (bv, ldbv, jv),
        };
        for i in (0..m4).step_by(4) {
            match w {
                3 => micro::<S, 4, 3>(simd, a, lda, i, k, bs, ldbs, jb, ldcv, jv, cv),
                2 => micro::<S, 4, 2>(simd, a, lda, i, k, bs, ldbs, jb, ldcv, jv, cv),
                _ => micro::<S, 4, 1>(simd, a, lda, i, k, bs, ldbs, jb, ldcv, jv, cv),
            }
        }
    }
    // Leftover rows (one window: all of them): eight independent
    // accumulators keep the FMA pipeline full.
    for i in m4..m {
        let mut jv = 0;
        while jv + 8 <= nv {
            micro::<S, 1, 8>(simd, a, lda, i, k, bv, ldbv, jv, ldcv, jv, cv);
            jv += 8;
        }
        while jv < nv {
            micro::<S, 1, 1>(simd, a, lda, i, k, bv, ldbv, jv, ldcv, jv, cv);
            jv += 1;
        }
    }
}

/// y += a x.
#[inline(always)]
pub(crate) fn axpy<S: Simd>(simd: S, a: f32, x: &[f32], y: &mut [f32]) {
    let av = simd.splat_f32s(a);
    let (xv, xt) = S::as_simd_f32s(x);
    let (yv, yt) = S::as_mut_simd_f32s(y);
    for (y, x) in yv.iter_mut().zip(xv) {
        *y = simd.mul_add_e_f32s(av, *x, *y);
    }
    for (y, x) in yt.iter_mut().zip(xt) {
        *y += a * x;
    }
}

#[inline(always)]
pub(crate) fn tanh_in_place<S: Simd>(simd: S, v: &mut [f32]) {
    let (head, tail) = S::as_mut_simd_f32s(v);
    for x in head {
        *x = tanh_v(simd, *x);
    }
    for x in tail {
        *x = tanh_s(*x);
    }
}
