//! The accuracy ledger's own cost (`forescale::accuracy::GroupLedger`),
//! without the candidates' forecasts: one step for a fleet of groups,
//! each observing its newest actual, choosing its model and recording
//! four candidates' 12-step forecasts. Ledgers are warmed with a week of
//! 5-minute steps first, so every ring is full. Also prints the size of
//! one warmed ledger stored (postcard, as the service keeps it) and as
//! JSON, and what writing and reading it costs.
//!
//! `candidates_one_step`: what one step of a ledger costs with the real
//! candidates (the shipped bilstm, mstl, naive, snaive), each forecasting
//! from a week of a real Bitbrains VM, one thread; and each alone.
//!
//! `cargo bench --bench accuracy`

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use forescale::accuracy::{GroupLedger, LedgerConfig};
use forescale::data::{DatasetSource, load, prepare};
use forescale::domain::HORIZON;
use forescale::forecast::{Forecaster, ModelRegistry, QuantileForecast};
use std::path::Path;

const STEP: i64 = 300;
const CANDIDATES: [&str; 4] = ["bilstm", "mstl", "naive", "snaive"];

fn cpu_at(g: usize, t: i64) -> f32 {
    40.0 + 20.0 * ((t as f32 / 3_600.0) + g as f32).sin()
}

/// Four candidates' forecasts from the value `y`, each a little off.
fn forecasts(y: f32) -> Vec<Option<QuantileForecast>> {
    (0..CANDIDATES.len())
        .map(|i| {
            let p50 = y + i as f32 - 1.5;
            Some(QuantileForecast {
                p10: vec![p50 - 3.0; HORIZON],
                p50: vec![p50; HORIZON],
                p90: vec![p50 + 3.0; HORIZON],
            })
        })
        .collect()
}

/// One step of one group's ledger at time `t`.
fn step(l: &mut GroupLedger, g: usize, t: i64) {
    let y = cpu_at(g, t - STEP);
    l.observe(t - STEP, y);
    l.choose(t - STEP);
    l.record(t, STEP, forecasts(y));
}

/// `n` ledgers after a week of steps; the time of the next step.
fn warmed(n: usize) -> (Vec<GroupLedger>, i64) {
    let week = 7 * 288;
    let mut ledgers: Vec<GroupLedger> = (0..n)
        .map(|_| GroupLedger::new(&CANDIDATES, HORIZON, LedgerConfig::default()))
        .collect();
    for k in 1..=week {
        for (g, l) in ledgers.iter_mut().enumerate() {
            step(l, g, k * STEP);
        }
    }
    (ledgers, (week + 1) * STEP)
}

fn candidates(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = ModelRegistry::load_dir(&root.join("models")).unwrap();
    let (raw, _) =
        load(&DatasetSource::parse("bitbrains-rnd", &root.join("../shared/data")).unwrap())
            .unwrap();
    let series = prepare(&raw[..1], 300);
    let rows = &series[0].window.rows;
    let t = rows.len() - 1;
    let history = &rows[t.saturating_sub(7 * 288 + 288)..t];
    let all: Vec<Forecaster> = CANDIDATES.iter().map(|n| models.get(n).unwrap()).collect();
    let mut g = c.benchmark_group("candidates_one_step");
    g.sample_size(20);
    g.bench_function("all_four", |b| {
        b.iter(|| {
            all.iter()
                .map(|m| m.forecast(history, HORIZON).ok())
                .collect::<Vec<_>>()
        });
    });
    for m in &all {
        g.bench_function(m.name(), |b| {
            b.iter(|| m.forecast(history, HORIZON).unwrap())
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let (one, _) = warmed(1);
    let json = serde_json::to_vec(&one[0]).unwrap();
    let bin = postcard::to_allocvec(&one[0]).unwrap();
    eprintln!(
        "one warmed ledger ({} candidates): {} bytes stored (postcard), {} bytes of JSON",
        CANDIDATES.len(),
        bin.len(),
        json.len()
    );

    let n = 5_000;
    let (fleet, t) = warmed(n);
    let mut g = c.benchmark_group("ledger_step");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    g.bench_function("5000_groups", |b| {
        b.iter_batched_ref(
            || fleet.clone(),
            |ledgers| {
                for (i, l) in ledgers.iter_mut().enumerate() {
                    step(l, i, t);
                }
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
    let mut g = c.benchmark_group("ledger_json");
    g.bench_function("one_group_to_json", |b| {
        b.iter(|| serde_json::to_vec(&one[0]).unwrap());
    });
    g.bench_function("one_group_from_json", |b| {
        b.iter(|| serde_json::from_slice::<GroupLedger>(&json).unwrap());
    });
    g.finish();
    // The stored form.
    let mut g = c.benchmark_group("ledger_stored");
    g.bench_function("one_group_encode", |b| {
        b.iter(|| postcard::to_allocvec(&one[0]).unwrap());
    });
    g.bench_function("one_group_decode", |b| {
        b.iter(|| postcard::from_bytes::<GroupLedger>(&bin).unwrap());
    });
    g.finish();
}

criterion_group!(benches, bench, candidates);
criterion_main!(benches);
