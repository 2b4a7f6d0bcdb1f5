//! Ingest throughput: validation, and durable appends to each backend, in
//! samples per second; plus reading a forecast window back.
//!
//! `cargo bench --bench ingest` (Redis at FORESCALE_BENCH_REDIS_URL,
//! default redis://127.0.0.1:6379/; the Redis group is skipped with a
//! message when none answers).

#![allow(clippy::unwrap_used)] // a benchmark fails loudly by design

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use forescale::domain::{FEATURE_BOUNDS, FEATURE_NAMES, MetricSample, N_MEASURED, ScalingGroup};
use forescale::ingest::{IngestLimits, parse_batch};
use forescale::store::{Backend, StoreConfig, WindowStore};
use serde_json::{Value, json};

const BATCH: usize = 288;

/// A realistic sample: every measured feature present, inside its bounds.
fn sample(ts: i64, i: usize) -> MetricSample {
    let mut values = [None; N_MEASURED];
    for (j, v) in values.iter_mut().enumerate() {
        let (lo, hi) = FEATURE_BOUNDS[j];
        let frac = ((i * 7 + j * 13) % 90) as f64 / 100.0;
        *v = Some((lo.max(0.0) + (hi - lo.max(0.0)).min(100.0) * frac) as f32);
    }
    MetricSample {
        timestamp: ts,
        values,
        capacity: Some(4.0),
    }
}

fn body(n: usize) -> Value {
    let samples: Vec<Value> = (0..n)
        .map(|i| {
            let s = sample(1_700_000_000 + i as i64 * 300, i);
            let f: serde_json::Map<String, Value> = s
                .values
                .iter()
                .enumerate()
                .map(|(j, v)| (FEATURE_NAMES[j].to_owned(), json!(v)))
                .collect();
            json!({"timestamp": s.timestamp, "features": f, "capacity": 4})
        })
        .collect();
    json!({ "samples": samples })
}

fn validation(c: &mut Criterion) {
    let b = body(BATCH);
    let text = b.to_string();
    let mut g = c.benchmark_group("ingest_validate");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("parse_json_and_validate_288", |bench| {
        bench.iter(|| {
            let v: Value = serde_json::from_str(black_box(&text)).unwrap();
            parse_batch(&v, &IngestLimits::default(), 1_800_000_000, &[]).unwrap()
        })
    });
    g.finish();
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redis_url = std::env::var("FORESCALE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let prefix = format!("forescale-bench-{}", std::process::id());
    let mut backends = vec![(
        "memory_fsync",
        Backend::Memory {
            data_dir: Some(dir.path().to_owned()),
        },
    )];
    backends.push((
        "redis",
        Backend::Redis {
            url: redis_url,
            prefix: prefix.clone(),
        },
    ));
    let group = ScalingGroup::parse("bench").unwrap();
    let mut g = c.benchmark_group("store");
    for (name, backend) in backends {
        let store = match rt.block_on(async {
            let s = WindowStore::open(&backend, StoreConfig::default()).await?;
            s.ping().await?;
            Ok::<_, forescale::store::StoreError>(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                continue;
            }
        };
        // Steady state: a full retention window already stored.
        let mut t = 1_700_000_000i64;
        let fill: Vec<MetricSample> = (0..4032).map(|i| sample(t + i * 300, i as usize)).collect();
        rt.block_on(store.append(&group, fill)).unwrap();
        t += 4032 * 300;
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("append_288", name), &store, |b, store| {
            b.iter(|| {
                let batch: Vec<MetricSample> =
                    (0..BATCH).map(|i| sample(t + i as i64 * 300, i)).collect();
                t += BATCH as i64 * 300;
                rt.block_on(store.append(&group, batch)).unwrap()
            })
        });
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("window_2028", name), &store, |b, store| {
            b.iter(|| rt.block_on(store.window(&group, 2028)).unwrap())
        });
    }
    g.finish();
    // Leave nothing behind in Redis.
    if let Ok(client) = redis::Client::open("redis://127.0.0.1:6379/")
        && let Ok(mut con) = client.get_connection()
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

criterion_group!(benches, validation, stores);
criterion_main!(benches);
