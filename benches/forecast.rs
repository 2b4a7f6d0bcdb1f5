//! Forecast latency of the shipped networks on real windows
//! (bitbrains-rnd test segments), on the fast inference path that serving
//! and evaluation use:
//! - `batch/1`: one window, one thread (what a forecast request runs);
//!   `candle_batch_1`: the candle network on the same window (candle's
//!   default threading), for comparison;
//! - `head_only_cache_hit`: the head alone (an embedding-cache hit);
//! - `batch/5000`: 5,000 windows in one call, split across all cores;
//!   `batch_5000_one_thread`: the same on one thread.
//! - `tft_vs_bilstm_<T>_threads`: the TFT (candle; what `?model=tft` runs)
//!   next to the BiLSTM (fast path and candle), batch 1 and 5,000, every
//!   model held to the same thread count T = `RAYON_NUM_THREADS` (candle's
//!   setting; all cores when unset). `scripts/bench-tft.sh` runs it at 1
//!   and 2 threads and prints the TFT / BiLSTM ratios.
//!
//! - `fma_peak_<C>_cores`: this CPU's multiply-add peak at the fast
//!   path's SIMD width (throughput in multiply-adds per second), the
//!   ceiling the network's own multiply-adds (printed per window) are
//!   measured against.
//!
//! `cargo bench --bench forecast`

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::path::Path;

use candle_core::Device;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use forescale::data::{DatasetSource, load, prepare};
use forescale::features::ModelInput;
use forescale::forecast::NeuralModel;
use forescale::forecast::fast::simd_lanes;
use pulp::{Arch, Simd, WithSimd};

fn windows(model: &NeuralModel, n: usize) -> Vec<ModelInput> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let (raw, _) = load(&DatasetSource::parse("bitbrains-rnd", &root).unwrap()).unwrap();
    let series = prepare(&raw, 300);
    let mut out = Vec::with_capacity(n);
    'outer: loop {
        for s in &series {
            let mut t = s.split.val_end;
            while t < s.window.rows.len() {
                out.push(model.input(&s.window.rows[..t]));
                if out.len() == n {
                    break 'outer;
                }
                t += 12;
            }
        }
    }
    out
}

/// This CPU's FMA peak, the ceiling of the fast path: 12 independent
/// accumulators (enough to cover the FMA latency) at the SIMD width the
/// fast path runs at, on one thread and on every core. Throughput in
/// multiply-adds.
struct FmaChain(u64);

impl WithSimd for FmaChain {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f32 {
        let mut acc = [simd.splat_f32s(0.5); 12];
        let (x, y) = (simd.splat_f32s(0.999), simd.splat_f32s(1e-4));
        for _ in 0..self.0 {
            for a in acc.iter_mut() {
                *a = simd.mul_add_e_f32s(*a, x, y);
            }
        }
        acc.iter().map(|a| simd.reduce_sum_f32s(*a)).sum()
    }
}

fn fma_peak(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let iters = 1_000_000u64;
    let per_thread = iters * 12 * simd_lanes() as u64;
    let arch = Arch::new();
    let mut g = c.benchmark_group(format!("fma_peak_{cores}_cores"));
    g.throughput(Throughput::Elements(per_thread));
    g.bench_function("one_thread", |b| {
        b.iter(|| arch.dispatch(FmaChain(std::hint::black_box(iters))))
    });
    g.throughput(Throughput::Elements(per_thread * cores as u64));
    g.bench_function("all_cores", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..cores)
                    .map(|_| s.spawn(|| arch.dispatch(FmaChain(std::hint::black_box(iters)))))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<f32>()
            })
        })
    });
    g.finish();
}

fn latency(c: &mut Criterion) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for name in ["bilstm", "lstm"] {
        let m = NeuralModel::load(&models.join(name)).unwrap();
        let (net, fast) = m.recurrent().unwrap();
        let inputs = windows(&m, 5_000);
        // Against fma_peak: 5,000 windows at the FMA peak would take
        // 5,000 x this / (peak multiply-adds per second).
        eprintln!(
            "{name}: {} multiply-adds per window",
            net.cfg.multiply_adds()
        );
        let mut g = c.benchmark_group(format!("forecast_{name}_{cores}_cores"));
        g.sample_size(100); // EVAL.md: median of at least 100 runs
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("batch", 1), |b| {
            b.iter(|| m.forecast_batch(&inputs[..1]).unwrap())
        });
        // The candle op-by-op network on the same window, for comparison.
        let l = m.lookback();
        let x1 = candle_core::Tensor::from_vec(
            inputs[0].values.clone(),
            (1, l, 23),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        g.bench_function("candle_batch_1", |b| {
            b.iter(|| net.forward(&x1, None).unwrap())
        });
        let emb = m.encode_input(&inputs[0]).unwrap();
        g.bench_function("head_only_cache_hit", |b| {
            b.iter(|| m.forecast_from(&emb, 12).unwrap())
        });
        g.sample_size(100);
        g.throughput(Throughput::Elements(5_000));
        g.bench_function(BenchmarkId::new("batch", 5_000), |b| {
            b.iter(|| m.forecast_batch(&inputs).unwrap())
        });
        let flat: Vec<f32> = inputs.iter().flat_map(|x| x.values.clone()).collect();
        g.bench_function("batch_5000_one_thread", |b| {
            b.iter(|| fast.forward(&flat, 1))
        });
        g.finish();
    }
}

/// The thread count every model of the comparison gets: candle reads
/// `RAYON_NUM_THREADS` on every call, the fast path is handed the same.
fn bench_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn tft_vs_bilstm(c: &mut Criterion) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let threads = bench_threads();
    let bilstm = NeuralModel::load(&models.join("bilstm")).unwrap();
    let tft = NeuralModel::load(&models.join("tft")).unwrap();
    let (net, fast) = bilstm.recurrent().unwrap();
    let b_in = windows(&bilstm, 5_000);
    let t_in = windows(&tft, 5_000);
    let l = bilstm.lookback();
    let flat: Vec<f32> = b_in.iter().flat_map(|x| x.values.clone()).collect();
    // The candle BiLSTM in chunks of 1,000 windows, as the TFT runs.
    let chunks: Vec<candle_core::Tensor> = flat
        .chunks(1_000 * l * 23)
        .map(|c| {
            candle_core::Tensor::from_vec(c.to_vec(), (c.len() / (l * 23), l, 23), &Device::Cpu)
                .unwrap()
        })
        .collect();
    let x1 =
        candle_core::Tensor::from_vec(b_in[0].values.clone(), (1, l, 23), &Device::Cpu).unwrap();
    let mut g = c.benchmark_group(format!("tft_vs_bilstm_{threads}_threads"));
    g.sample_size(100);
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("bilstm_fast", 1), |b| {
        b.iter(|| fast.forward(&b_in[0].values, threads))
    });
    g.bench_function(BenchmarkId::new("bilstm_candle", 1), |b| {
        b.iter(|| net.forward(&x1, None).unwrap())
    });
    g.bench_function(BenchmarkId::new("tft", 1), |b| {
        b.iter(|| tft.forecast_batch(&t_in[..1]).unwrap())
    });
    g.sample_size(10);
    g.throughput(Throughput::Elements(5_000));
    g.bench_function(BenchmarkId::new("bilstm_fast", 5_000), |b| {
        b.iter(|| fast.forward(&flat, threads))
    });
    g.bench_function(BenchmarkId::new("bilstm_candle", 5_000), |b| {
        b.iter(|| {
            for x in &chunks {
                net.forward(x, None).unwrap();
            }
        })
    });
    g.bench_function(BenchmarkId::new("tft", 5_000), |b| {
        b.iter(|| tft.forecast_batch(&t_in).unwrap())
    });
    g.finish();
}

criterion_group!(benches, fma_peak, latency, tft_vs_bilstm);
criterion_main!(benches);
