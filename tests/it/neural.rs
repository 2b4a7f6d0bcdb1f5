//! A tiny network trained by the project's own `train` command on real
//! data, loaded by the service and served: the whole path, small enough
//! for CI.

use actix_web::test::{self, TestRequest};
use actix_web::web;
use std::time::Duration;

use forescale::cache::EmbeddingCache;
use forescale::forecast::ModelRegistry;
use forescale::http::create_app;
use serde_json::{Value, json};

use crate::support::{Fixture, Kind, shared_data};

/// The Prometheus text of an app.
macro_rules! metrics {
    ($app:expr) => {{
        let req = TestRequest::get().uri("/metrics").to_request();
        String::from_utf8(
            test::read_body(test::call_service($app, req).await)
                .await
                .to_vec(),
        )
        .unwrap()
    }};
}

/// `forescale train` of a tiny bilstm on NAB's traces into `out`.
async fn train_tiny(out: &std::path::Path, extra: &[&str]) {
    let root = shared_data();
    let mut argv = vec![
        "forescale",
        "train",
        "--dataset",
        "nab-aws-cloudwatch",
        "--data-root",
        root.to_str().unwrap(),
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--windows-per-epoch",
        "512",
        "--batch",
        "64",
        "--out",
        out.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    forescale::cli::run(clap::Parser::try_parse_from(argv).unwrap())
        .await
        .unwrap();
}

#[actix_web::test]
async fn train_a_tiny_model_then_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bilstm");
    train_tiny(&out, &[]).await;
    for f in [
        "config.json",
        "model.safetensors",
        "README.md",
        "eval/metrics.csv",
        "eval/plots/calibration.svg",
        "eval/plots/attention-bilstm.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("| bilstm |") && card.contains("| naive |"),
        "{card}"
    );
    // The card template, its sections in order.
    let mut at = 0;
    for h in [
        "## Intended use",
        "## Model",
        "## Data",
        "## How it was trained",
        "## Scores (test segments)",
        "## Limits",
        "## How to reproduce",
    ] {
        let i = card[at..]
            .find(h)
            .unwrap_or_else(|| panic!("{h} missing or out of order"));
        at += i + h.len();
    }

    // The service loads it from a models folder and serves it by name.
    let registry = ModelRegistry::load_dir(dir.path()).unwrap();
    assert_eq!(
        registry.names(),
        ["naive", "snaive", "ets", "mstl", "bilstm"]
    );
    let f = Fixture::new(Kind::Memory, "neural");
    let mut state = f.app_state().await;
    state.models = registry;
    state.default_model = "bilstm".into();
    let app = test::init_service(create_app(web::Data::new(state))).await;

    let samples: Vec<Value> = (0..30)
        .map(|i| json!({"timestamp": 1_700_000_000 + i * 300, "features": {"cpu_usage_pct": 20 + (i % 4) * 5}}))
        .collect();
    let req = TestRequest::post()
        .uri("/v1/groups/g/samples")
        .set_json(json!({ "samples": samples }))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    let req = TestRequest::get().uri("/v1/groups/g/forecast").to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 200);
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["model"], "bilstm");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 12);
    for p in points {
        let (a, b, c) = (
            p["p10"].as_f64().unwrap(),
            p["p50"].as_f64().unwrap(),
            p["p90"].as_f64().unwrap(),
        );
        assert!(0.0 <= a && a <= b && b <= c, "{p}");
    }
    // Explained: attention over the look-back, rows summing to 1.
    let req = TestRequest::get()
        .uri("/v1/groups/g/forecast?explain=true")
        .to_request();
    let v: Value = test::read_body_json(test::call_service(&app, req).await).await;
    let ex = &v["explanation"];
    assert_eq!(ex["features"].as_array().unwrap().len(), 23);
    let steps = ex["step_weights"].as_array().unwrap();
    assert_eq!(steps.len(), 12);
    let total: f64 = steps.iter().map(|x| x.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-3, "{total}");
    for row in ex["feature_weights"].as_array().unwrap() {
        let s: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((s - 1.0).abs() < 1e-3, "{s}");
    }
    assert_eq!(ex["steps"][11], v["history_end"]);
    // A baseline has nothing to explain: a clear 400.
    let req = TestRequest::get()
        .uri("/v1/groups/g/forecast?model=naive&explain=true")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);

    // Beyond the network's horizon: a clear 400.
    let req = TestRequest::get()
        .uri("/v1/groups/g/forecast?horizon=24")
        .to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 400);

    // The embedding cache: the first forecast above missed and ran the
    // encoder, the explained one ran it again (explanations are not
    // cached); a repeat is a hit that does not; new data is a miss again.
    let text = metrics!(&app);
    assert!(
        text.contains("forescale_encoder_runs_total{model=\"bilstm\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("forescale_embedding_cache_lookups_total{result=\"miss\"} 1\n"));
    let req = TestRequest::get().uri("/v1/groups/g/forecast").to_request();
    let again: Value = test::read_body_json(test::call_service(&app, req).await).await;
    assert_eq!(again["points"], v["points"]);
    let text = metrics!(&app);
    assert!(
        text.contains("forescale_encoder_runs_total{model=\"bilstm\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("forescale_embedding_cache_lookups_total{result=\"hit_memory\"} 1\n"));
    let more = json!({"samples": [{"timestamp": 1_700_000_000 + 30 * 300, "features": {"cpu_usage_pct": 90}}]});
    let req = TestRequest::post()
        .uri("/v1/groups/g/samples")
        .set_json(more)
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    let req = TestRequest::get().uri("/v1/groups/g/forecast").to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    let text = metrics!(&app);
    assert!(
        text.contains("forescale_encoder_runs_total{model=\"bilstm\"} 3\n"),
        "{text}"
    );

    // Two replicas sharing Redis: what one encoded, the other reads.
    let fr = Fixture::new(Kind::Redis, "emb-cache");
    let forescale::store::Backend::Redis { url, prefix } = fr.backend.clone() else {
        unreachable!()
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut st = fr.app_state().await;
        st.models = ModelRegistry::load_dir(dir.path()).unwrap();
        st.default_model = "bilstm".into();
        st.cache = EmbeddingCache::with_redis(100, Duration::from_secs(600), &url, &prefix)
            .await
            .unwrap();
        replicas.push(test::init_service(create_app(web::Data::new(st))).await);
    }
    let req = TestRequest::post()
        .uri("/v1/groups/g/samples")
        .set_json(json!({ "samples": samples }))
        .to_request();
    assert_eq!(test::call_service(&replicas[0], req).await.status(), 200);
    let mut answers = Vec::new();
    for r in &replicas {
        let req = TestRequest::get().uri("/v1/groups/g/forecast").to_request();
        let v: Value = test::read_body_json(test::call_service(r, req).await).await;
        answers.push(v["points"].clone());
    }
    assert_eq!(answers[0], answers[1]);
    let second = metrics!(&replicas[1]);
    assert!(
        second.contains("forescale_embedding_cache_lookups_total{result=\"hit_redis\"} 1\n"),
        "{second}"
    );
    assert!(
        !second.contains("forescale_encoder_runs_total{model="),
        "{second}"
    );
}

/// The shipped models: the fast path equals the candle network on real
/// windows (the random-weight unit test covers the arithmetic; this covers
/// the weights as loaded from `models/`).
#[test]
fn shipped_models_fast_path_equals_candle() {
    use candle_core::{Device, Tensor};
    use forescale::data::{DatasetSource, load, prepare};
    use forescale::forecast::NeuralModel;

    let (raw, _) =
        load(&DatasetSource::parse("nab-aws-cloudwatch", &shared_data()).unwrap()).unwrap();
    let series = prepare(&raw, 300);
    for name in ["bilstm", "lstm"] {
        let m = NeuralModel::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models")
                .join(name),
        )
        .unwrap();
        let l = m.lookback();
        let mut xs = Vec::new();
        for s in &series {
            for t in (l..s.window.rows.len()).step_by(997).take(3) {
                xs.extend(m.input(&s.window.rows[..t]).values);
            }
        }
        let n = xs.len() / (l * 23);
        let x = Tensor::from_vec(xs.clone(), (n, l, 23), &Device::Cpu).unwrap();
        let (net, fast) = m.recurrent().unwrap();
        let want = net
            .forward(&x, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = fast.forward(&xs, 2);
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name}: largest difference {worst}");
    }
}

/// A tiny network trained with window inputs reads no absolute level:
/// forecasting a group whose load is five times larger, or whose memory
/// sits 60 points higher, gives five times the forecast, and the same
/// forecast. (The global-statistics model reads both levels.)
#[actix_web::test]
async fn window_inputs_make_forecasts_follow_the_scale_of_the_load() {
    use forescale::domain::{MetricSample, N_MEASURED};
    use forescale::forecast::NeuralModel;
    use forescale::store::{GridSpec, grid};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bilstm");
    train_tiny(&out, &["--window-inputs"]).await;
    let model = NeuralModel::load(&out).unwrap();
    assert!(model.file.norm.per_window);
    let window = |cpu_scale: f32, mem_shift: f32| {
        let samples: Vec<MetricSample> = (0..24)
            .map(|i| {
                let mut values = [None; N_MEASURED];
                values[0] = Some(cpu_scale * (12.0 + 4.0 * (i as f32 / 3.0).sin()));
                values[4] = Some(mem_shift + 20.0 + (i % 5) as f32);
                MetricSample {
                    timestamp: 1_700_000_000 + i * 300,
                    values,
                    capacity: None,
                }
            })
            .collect();
        grid(
            &samples,
            GridSpec {
                step: 300,
                max_gap_steps: Some(3),
            },
        )
    };
    let base = model.forecast(&window(1.0, 0.0).rows, 12).unwrap();
    let big = model.forecast(&window(5.0, 0.0).rows, 12).unwrap();
    let busy_mem = model.forecast(&window(1.0, 60.0).rows, 12).unwrap();
    for k in 0..12 {
        for (a, b) in [
            (base.p10[k], big.p10[k]),
            (base.p50[k], big.p50[k]),
            (base.p90[k], big.p90[k]),
        ] {
            assert!(
                (5.0 * a - b).abs() <= 1e-3 * b.abs() + 1e-2,
                "{k}: 5 x {a} vs {b}"
            );
        }
        assert!(
            (base.p50[k] - busy_mem.p50[k]).abs() < 1e-4,
            "{k}: memory level read"
        );
    }
}
