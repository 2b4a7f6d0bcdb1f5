//! Replay speed of the simulator: one policy over one trace of the main
//! set (bb-aug-svc1, about 8,600 steps of 5 minutes = 30 days; the replay
//! covers validation + test, the score covers test), per reference policy.
//! The predictive policy reads a precomputed seasonal-naive table, as
//! every replay does.
//!
//! `cargo bench --bench sim`

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forescale::sim::{self, PolicyKind, SimForecaster};

fn replay(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let trace = sim::traces::load_named(&root, "bb-aug-svc1").unwrap();
    let from = trace.split.train_end;
    let table = SimForecaster::SeasonalNaive
        .table(&trace, from, sim::SIM_HORIZON)
        .unwrap();
    let mut g = c.benchmark_group("sim_bb-aug-svc1");
    g.throughput(Throughput::Elements((trace.load.len() - from) as u64));
    g.bench_function("oracle", |b| b.iter(|| sim::simulate_oracle(&trace)));
    for name in ["threshold", "target-tracking", "predictive"] {
        let kind = PolicyKind::by_name(name).unwrap();
        let mut p = kind.build("snaive").unwrap();
        let t = kind.needs_forecast().then_some(&table);
        g.bench_function(name, |b| b.iter(|| sim::simulate(&trace, p.as_mut(), t)));
    }
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
