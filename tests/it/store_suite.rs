//! One suite, run against both backends (in-process log and real Redis).

use forescale::domain::{MetricSample, ScalingGroup};
use forescale::store::{RowState, StoreConfig, StoreError};

use crate::support::{Fixture, Kind};

fn g(name: &str) -> ScalingGroup {
    ScalingGroup::parse(name).unwrap()
}

fn s(ts: i64, cpu: f32) -> MetricSample {
    MetricSample::cpu_only(ts, cpu)
}

async fn append_then_read(kind: Kind) {
    let f = Fixture::new(kind, "append");
    let store = f.open().await;
    let mut full = s(600, 3.0);
    full.values[4] = Some(40.0);
    full.capacity = Some(4.0);
    let n = store
        .append(&g("web"), vec![s(0, 1.0), s(300, 2.0), full.clone()])
        .await
        .unwrap();
    assert_eq!(n, 3);
    let groups = store.groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].samples, 3);
    assert_eq!(groups[0].first_timestamp, "1970-01-01T00:00:00Z");
    assert_eq!(groups[0].last_timestamp, "1970-01-01T00:10:00Z");
    let back = store.samples_since(&g("web"), 300).await.unwrap();
    assert_eq!(back, vec![s(300, 2.0), full]);
    assert_eq!(store.newest(&g("web")).await.unwrap(), Some(600));
    assert_eq!(store.newest(&g("nobody")).await.unwrap(), None);
    assert!(store.window(&g("nobody"), 10).await.unwrap().is_none());
}

async fn duplicates_replace_and_out_of_order_is_sorted(kind: Kind) {
    let f = Fixture::new(kind, "dup");
    let store = f.open().await;
    store
        .append(&g("a"), vec![s(900, 1.0), s(300, 1.0)])
        .await
        .unwrap();
    store
        .append(&g("a"), vec![s(300, 7.0), s(600, 2.0)])
        .await
        .unwrap();
    let back = store.samples_since(&g("a"), 0).await.unwrap();
    assert_eq!(back, vec![s(300, 7.0), s(600, 2.0), s(900, 1.0)]);
    assert_eq!(store.groups().await.unwrap()[0].samples, 3);
}

async fn retention_refuses_whole_batch_and_prunes(kind: Kind) {
    let cfg = StoreConfig {
        retention_seconds: 3_600,
        ..StoreConfig::default()
    };
    let f = Fixture::with_config(kind, "retention", cfg);
    let store = f.open().await;
    store.append(&g("a"), vec![s(10_000, 1.0)]).await.unwrap();
    // One sample too old: the whole batch is refused, nothing stored.
    let err = store
        .append(&g("a"), vec![s(10_300, 2.0), s(5_000, 2.0)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooOld {
                index: 1,
                timestamp: 5_000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.samples_since(&g("a"), 0).await.unwrap().len(), 1);
    // A newer sample moves the window: the old one is pruned.
    store.append(&g("a"), vec![s(20_000, 3.0)]).await.unwrap();
    assert_eq!(
        store.samples_since(&g("a"), 0).await.unwrap(),
        vec![s(20_000, 3.0)]
    );
}

async fn window_is_on_the_grid(kind: Kind) {
    let f = Fixture::new(kind, "window");
    let store = f.open().await;
    // 0 and 150 share a bucket; 900 leaves a 2-step gap (interpolated);
    // 4800 leaves a 12-step gap (missing, longer than 3).
    let samples = vec![s(0, 10.0), s(150, 20.0), s(900, 30.0), s(4_800, 40.0)];
    store.append(&g("w"), samples).await.unwrap();
    let w = store.window(&g("w"), 100).await.unwrap().unwrap();
    assert_eq!(w.step, 300);
    assert_eq!(w.rows.len(), 17);
    assert_eq!(w.rows[0].target(), 15.0);
    assert_eq!(w.rows[1].state, RowState::Interpolated);
    assert_eq!(w.rows[1].target(), 20.0);
    assert_eq!(w.rows[4].state, RowState::Missing);
    assert_eq!(w.rows[16].target(), 40.0);
    // A window ending after a long gap has missing rows, not fewer rows.
    let last3 = store.window(&g("w"), 3).await.unwrap().unwrap();
    assert_eq!(last3.rows.len(), 3);
    assert_eq!(last3.rows[0].state, RowState::Missing);
    assert_eq!(last3.end(), Some(4_800));
    // A short gap across the window's start is interpolated as inside it.
    let w = store.window(&g("w"), 15).await.unwrap().unwrap();
    assert_eq!(w.rows[0].timestamp, 600);
    assert_eq!(w.rows[0].target(), 25.0);
}

async fn acknowledged_samples_survive_restart(kind: Kind) {
    let f = Fixture::new(kind, "restart");
    {
        let store = f.open().await;
        store
            .append(&g("a"), vec![s(0, 1.0), s(300, 2.0)])
            .await
            .unwrap();
        store.append(&g("b"), vec![s(0, 5.0)]).await.unwrap();
        store.append(&g("a"), vec![s(300, 9.0)]).await.unwrap();
    }
    let store = f.open().await;
    assert_eq!(
        store.samples_since(&g("a"), 0).await.unwrap(),
        vec![s(0, 1.0), s(300, 9.0)]
    );
    let names: Vec<String> = store
        .groups()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.group.to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    // And it keeps accepting after the restart.
    store.append(&g("a"), vec![s(600, 3.0)]).await.unwrap();
    let again = f.open().await;
    assert_eq!(again.samples_since(&g("a"), 0).await.unwrap().len(), 3);
}

async fn concurrent_appends_lose_nothing(kind: Kind) {
    let f = Fixture::new(kind, "concurrent");
    let store = f.open().await;
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let store = store.clone();
        tasks.push(actix_web::rt::spawn(async move {
            for b in 0..10i64 {
                let batch = (0..10)
                    .map(|i| s((t * 100 + b * 10 + i) * 300, 1.0))
                    .collect();
                store.append(&g("c"), batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.groups().await.unwrap()[0].samples, 800);
    assert_eq!(
        f.open()
            .await
            .samples_since(&g("c"), 0)
            .await
            .unwrap()
            .len(),
        800
    );
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[actix_web::test] async fn $name() { super::$name(super::Kind::Memory).await })*
        }
        mod redis {
            $(#[actix_web::test] async fn $name() { super::$name(super::Kind::Redis).await })*
        }
    };
}

both_backends!(
    append_then_read,
    duplicates_replace_and_out_of_order_is_sorted,
    retention_refuses_whole_batch_and_prunes,
    window_is_on_the_grid,
    acknowledged_samples_survive_restart,
    concurrent_appends_lose_nothing,
);
