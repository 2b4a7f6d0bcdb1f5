//! One decision cycle over a fleet (`forescale::app::decision::decide`, what
//! `GET /v1/recommendations` runs): windows read from the in-process
//! store, the shipped BiLSTM's forecasts, the shipped PPO policy and the
//! guardrails, for 5,000 and 10,000 groups.
//!
//! - `cold`: no embedding cached (every window runs the encoder, as one
//!   batch on both cores): the cycle right after new samples arrived;
//! - `warm`: every embedding cached (head + policy only): a cycle between
//!   new samples;
//! - `warm_auto`: as `warm` with `model=auto` (the service's default)
//!   before any group has evidence: bilstm serves, after a look at each
//!   group's choice.
//!
//! `cargo bench --bench decision`

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::path::Path;
use std::time::Duration;

use actix_web::web;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use forescale::app::AppState;
use forescale::app::decision::{DecisionSettings, GroupRequest, decide};
use forescale::app::forecast::ModelSpec;
use forescale::cache::EmbeddingCache;
use forescale::domain::{MetricSample, N_MEASURED, ScalingGroup};
use forescale::forecast::ModelRegistry;
use forescale::ingest::IngestLimits;
use forescale::metrics::Metrics;
use forescale::store::{Backend, StoreConfig, WindowStore};

const END: i64 = 1_780_000_200;

async fn fleet(n: usize, cache_capacity: usize) -> (web::Data<AppState>, Vec<GroupRequest>) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let store = WindowStore::open(&Backend::Memory { data_dir: None }, StoreConfig::default())
        .await
        .unwrap();
    let mut requests = Vec::with_capacity(n);
    for g in 0..n {
        let group = ScalingGroup::parse(&format!("bench-{g:05}")).unwrap();
        let samples: Vec<MetricSample> = (0..48)
            .map(|k| {
                let mut values = [None; N_MEASURED];
                values[0] = Some(40.0 + ((g + k) % 24) as f32);
                MetricSample {
                    timestamp: END - (47 - k as i64) * 300,
                    values,
                    capacity: Some(10.0),
                }
            })
            .collect();
        store.append(&group, samples).await.unwrap();
        requests.push(GroupRequest {
            group,
            capacity: None,
            guardrails: None,
        });
    }
    let registry = ModelRegistry::load_dir(&models).unwrap();
    let state = AppState {
        ledgers: forescale::app::accuracy::LedgerBook::in_memory(&registry),
        store,
        metrics: Metrics::default(),
        ingest: IngestLimits::default(),
        max_body_bytes: 1 << 20,
        default_model: "bilstm".into(),
        models: registry,
        cache: EmbeddingCache::new(cache_capacity, Duration::from_secs(3_600)),
        actuator: None,
        tokens: None,
        policy: forescale::policy::rl::LivePolicy::new(
            forescale::policy::rl::RlPolicy::load(&models.join("policy")).ok(),
        ),
        group_settings: Default::default(),
    };
    (web::Data::new(state), requests)
}

fn cycle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = DecisionSettings::default();
    let mut g = c.benchmark_group("decision_cycle");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for n in [5_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        // `auto` before any group has evidence: bilstm serves every group,
        // plus a choice lookup per group.
        for (label, capacity, auto) in [
            ("cold", 0usize, false),
            ("warm", 2 * n, false),
            ("warm_auto", 2 * n, true),
        ] {
            let (state, requests) = rt.block_on(fleet(n, capacity));
            let spec = match auto {
                true => ModelSpec::Auto,
                false => ModelSpec::Fixed(state.models.get("bilstm").unwrap()),
            };
            // Fill the cache (warm) / check everything decides (both).
            let (out, _) = rt.block_on(decide(&state, &spec, requests.clone(), &settings, END));
            assert!(out.iter().all(|r| r.is_ok()));
            g.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| rt.block_on(decide(&state, &spec, requests.clone(), &settings, END)))
            });
        }
    }
    g.finish();
}

/// The policy stage for one group: the decision now and the 12-step plan
/// (13 actor passes) plus guardrails.
fn one_group(c: &mut Criterion) {
    use forescale::policy::recommend::{Decider, Situation, recommend};
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let Ok(policy) = forescale::policy::rl::RlPolicy::load(&models.join("policy")) else {
        return;
    };
    let history: Vec<f64> = (0..24).map(|k| 4.0 + (k % 7) as f64 / 3.0).collect();
    let forecast: Vec<[f32; 3]> = (0..12)
        .map(|k| {
            [
                4.0 + k as f32 / 10.0,
                5.0 + k as f32 / 10.0,
                6.0 + k as f32 / 10.0,
            ]
        })
        .collect();
    let settings = DecisionSettings::default();
    let s = Situation {
        over_sla: &[],
        history: &history,
        forecast: &forecast,
        capacity_now: 10,
        stale: false,
        guardrails: &settings.guardrails,
    };
    let rl = Decider::Rl(policy.clone());
    c.bench_function("recommend_one_group_rl", |b| b.iter(|| recommend(&rl, &s)));
    let x = [0.5f32; forescale::policy::rl::N_STATE];
    c.bench_function("actor_logits", |b| b.iter(|| policy.actor.logits(&x)));
}

criterion_group!(benches, one_group, cycle);
criterion_main!(benches);
