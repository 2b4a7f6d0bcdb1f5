//! The one seeded generator of training: initial weights, window order,
//! dropout masks and PPO's sampling all draw from it, so a run is
//! reproducible from its seed.

use candle_core::Tensor;

use crate::forecast::bilstm_attention::MaskSource;

/// SplitMix64: small, fast, and enough for shuffles, masks and inits.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

impl MaskSource for SplitMix64 {
    fn mask(&mut self, shape: &[usize], p: f32, like: &Tensor) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let keep = 1.0 / (1.0 - p);
        let v: Vec<f32> = (0..n)
            .map(|_| if self.next_f32() < p { 0.0 } else { keep })
            .collect();
        Tensor::from_vec(v, shape, like.device())
    }
}
