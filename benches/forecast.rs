//! Forecast latency of the shipped networks on real windows
//! (bitbrains-rnd test segments), on the fast inference path: one window
//! (batch 1; also the candle network, for comparison), 5,000 windows in one
//! call (split across cores) and in chunks of 1,000, and the head alone
//! (what an embedding-cache hit runs).
//!
//! `cargo bench --bench forecast` (threads: candle's default, all cores);
//! `RAYON_NUM_THREADS=1 cargo bench --bench forecast` for one thread.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use forescale::data::{DatasetSource, load, prepare};
use forescale::features::ModelInput;
use forescale::forecast::NeuralModel;

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

fn latency(c: &mut Criterion) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    for name in ["bilstm", "lstm"] {
        let m = NeuralModel::load(&models.join(name)).unwrap();
        let inputs = windows(&m, 5_000);
        let mut g = c.benchmark_group(format!("forecast_{name}_threads_{threads}"));
        g.sample_size(20);
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
            b.iter(|| m.net.forward(&x1, None).unwrap())
        });
        let emb = m.encode_input(&inputs[0]).unwrap();
        g.bench_function("head_only_cache_hit", |b| {
            b.iter(|| m.forecast_from(&emb, 12).unwrap())
        });
        g.sample_size(10);
        g.throughput(Throughput::Elements(5_000));
        g.bench_function(BenchmarkId::new("batch", 5_000), |b| {
            b.iter(|| m.forecast_batch(&inputs).unwrap())
        });
        g.bench_function("batch_5000_in_chunks_of_1000", |b| {
            b.iter(|| {
                inputs
                    .chunks(1_000)
                    .map(|c| m.forecast_batch(c).unwrap().len())
                    .sum::<usize>()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, latency);
criterion_main!(benches);
