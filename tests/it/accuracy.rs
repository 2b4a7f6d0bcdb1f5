//! `GET /v1/groups/{group}/accuracy`: the ledger brought up to date from
//! pushed samples of a real VM, every candidate scored, the choice made by
//! the rule, and the ledger kept across a restart.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use chrono::DateTime;
use forescale::accuracy::LedgerConfig;
use forescale::app::AppState;
use forescale::app::accuracy::{LedgerBook, OnDegraded, default_candidates};
use forescale::data::{DatasetSource, load};
use forescale::forecast::ModelRegistry;
use forescale::http::create_app;
use serde_json::{Value, json};

use crate::support::{Fixture, Kind, redis_url, shared_data, unique_prefix};

/// Two days of a real Bitbrains VM's CPU, as an ingest body; the newest
/// timestamp.
fn two_days() -> (Value, i64) {
    let src = DatasetSource::parse("bitbrains-rnd", &shared_data()).unwrap();
    let (series, _) = load(&src).unwrap();
    let vm = &series[1];
    let samples: Vec<Value> = vm.samples[..576]
        .iter()
        .map(|s| json!({"timestamp": s.timestamp, "features": {"cpu_usage_pct": s.values[0]}}))
        .collect();
    (json!({ "samples": samples }), vm.samples[575].timestamp)
}

/// The fixture's state with these ledgers, `auto` the default model (as
/// the service's default is).
async fn with_ledgers(f: &Fixture, ledgers: LedgerBook) -> web::Data<AppState> {
    web::Data::new(AppState {
        ledgers,
        default_model: "auto".into(),
        ..f.app_state().await
    })
}

/// POST `body` (JSON) to `uri`: the status.
macro_rules! post {
    ($app:expr, $uri:expr, $body:expr) => {{
        let req = TestRequest::post()
            .uri($uri)
            .insert_header(ContentType::json())
            .set_payload($body.to_string())
            .to_request();
        test::call_service($app, req).await.status()
    }};
}

/// GET `uri`: status and JSON body.
macro_rules! get {
    ($app:expr, $uri:expr) => {{
        let resp = test::call_service($app, TestRequest::get().uri($uri).to_request()).await;
        let status = resp.status();
        let v: Value = test::read_body_json(resp).await;
        (status, v)
    }};
}

#[actix_web::test]
async fn accuracy_scores_every_candidate_and_survives_a_restart() {
    let f = Fixture::new(Kind::Memory, "accuracy");
    let dir = tempfile::tempdir().unwrap();
    let book = || {
        LedgerBook::new(
            default_candidates(&ModelRegistry::default()),
            LedgerConfig::default(),
            Some(dir.path().join("ledgers")),
        )
        .unwrap()
    };
    let state = with_ledgers(&f, book()).await;
    let app = test::init_service(create_app(state)).await;
    let (body, newest) = two_days();
    assert_eq!(post!(&app, "/v1/groups/vm/samples", body), StatusCode::OK);

    let (status, v) = get!(&app, "/v1/groups/vm/accuracy");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["group"], "vm");
    assert_eq!(v["observed_until"], json!(newest - newest.rem_euclid(300)));
    let models = v["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    // Without trained models in this fixture: the statistical model and the baselines.
    assert_eq!(names, ["mstl", "naive", "snaive"]);
    let mut best = f64::INFINITY;
    for m in models {
        // A day of origins replayed, 12 steps each: about 3,300 points.
        let day = &m["last_day"];
        let points = day["points"].as_u64().unwrap();
        assert!((3_000..=3_456).contains(&points), "{m}");
        let cov = day["coverage"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&cov));
        assert_eq!(m["per_step_week"].as_array().unwrap().len(), 12);
        assert!(m["calibration_updates"][0].as_u64().unwrap() > 250, "{m}");
        best = best.min(day["wql"].as_f64().unwrap());
    }
    // The rule: the served model is within the margin of the best, unless a
    // switch is waiting out its dwell.
    let served = v["served_model"].as_str().unwrap();
    let served_wql = models.iter().find(|m| m["model"] == served).unwrap()["last_day"]["wql"]
        .as_f64()
        .unwrap();
    let reason = v["reason"].as_str().unwrap();
    assert!(["best", "switched", "dwell"].contains(&reason), "{v}");
    if reason == "best" {
        assert!(served_wql * 0.95 <= best, "{v}");
    }
    if v["switches"].as_u64().unwrap() > 0 {
        assert_eq!(v["last_switch"]["to"].as_str(), Some(served));
    }

    // Forecasts by the choice: the served model's newest forecast,
    // calibrated, for the steps after the newest bucket.
    let (status, fc) = get!(&app, "/v1/groups/vm/forecast?model=auto");
    assert_eq!(status, StatusCode::OK, "{fc}");
    assert_eq!(
        (fc["model"].as_str(), fc["served_model"].as_str()),
        (Some("auto"), Some(served))
    );
    assert_eq!(fc["reason"], v["reason"]);
    let points = fc["points"].as_array().unwrap();
    assert_eq!(points.len(), 12);
    for p in points {
        let q = ["p10", "p50", "p90"].map(|k| p[k].as_f64().unwrap());
        assert!(q[0] <= q[1] && q[1] <= q[2], "{p}");
    }
    let first = DateTime::parse_from_rfc3339(points[0]["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(first.timestamp(), newest - newest.rem_euclid(300) + 300);
    // Any calibrated level, from the same trackers.
    let (status, fq) = get!(
        &app,
        "/v1/groups/vm/forecast?model=auto&quantiles=0.05,0.99"
    );
    assert_eq!(status, StatusCode::OK, "{fq}");
    for p in fq["points"].as_array().unwrap() {
        let q = p["quantiles"].as_array().unwrap();
        assert_eq!(
            (q[0]["level"].as_f64(), q[1]["level"].as_f64()),
            (Some(0.05), Some(0.99))
        );
        let (q05, q99) = (
            q[0]["value"].as_f64().unwrap(),
            q[1]["value"].as_f64().unwrap(),
        );
        assert!(q05 <= p["p10"].as_f64().unwrap() + 1e-3, "{p}");
        assert!(q99 >= p["p90"].as_f64().unwrap() - 1e-3, "{p}");
    }
    for bad in [
        "0.999",
        "abc",
        "0.1,,0.2",
        "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95",
    ] {
        let (status, e) = get!(
            &app,
            &format!("/v1/groups/vm/forecast?model=auto&quantiles={bad}")
        );
        assert_eq!(
            (status, e["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("quantiles")),
            "{bad}: {e}"
        );
    }
    let (status, e) = get!(&app, "/v1/groups/vm/forecast?model=naive&quantiles=0.9");
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("quantiles"))
    );
    let (status, e) = get!(&app, "/v1/groups/vm/forecast?model=auto&horizon=24");
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("horizon"))
    );
    let (status, e) = get!(&app, "/v1/groups/vm/forecast?model=auto&explain=true");
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("explain"))
    );

    // Past forecasts against actuals: the served forecasts one step ahead
    // over the last day, in time order, scored.
    let (status, h) = get!(&app, "/v1/groups/vm/forecast/history");
    assert_eq!(status, StatusCode::OK, "{h}");
    let pts = h["points"].as_array().unwrap();
    assert!((250..=288).contains(&pts.len()), "{}", pts.len());
    assert_eq!(h["scores"]["points"].as_u64(), Some(pts.len() as u64));
    let mut prev = 0;
    for p in pts {
        let t = DateTime::parse_from_rfc3339(p["timestamp"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert!(t > prev, "{p}");
        prev = t;
        assert!(names.contains(&p["model"].as_str().unwrap()), "{p}");
        assert!(p["p10"].as_f64() <= p["p50"].as_f64() && p["p50"].as_f64() <= p["p90"].as_f64());
    }
    assert_eq!(prev, newest - newest.rem_euclid(300));
    // The horizon's lead, over a given range.
    let (status, h12) = get!(
        &app,
        &format!(
            "/v1/groups/vm/forecast/history?lead=12&start={}&end={}",
            prev - 3_600,
            prev
        )
    );
    assert_eq!(status, StatusCode::OK, "{h12}");
    assert_eq!(h12["points"].as_array().unwrap().len(), 13, "{h12}");
    for (query, field) in [
        ("lead=5", "lead"),
        ("start=yesterday", "start"),
        ("end=2026-13-01T00:00:00Z", "end"),
        (
            "start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
            "start",
        ),
        ("start=2026-01-01T00:00:00Z&end=2026-01-04T00:00:00Z", "end"),
        ("start=-5&end=0", "start"),
    ] {
        let (status, e) = get!(&app, &format!("/v1/groups/vm/forecast/history?{query}"));
        assert_eq!(
            (status, e["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{query}: {e}"
        );
    }
    let (status, _) = get!(&app, "/v1/groups/nobody/forecast/history");
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nothing new: asking again changes nothing.
    let (_, again) = get!(&app, "/v1/groups/vm/accuracy");
    assert_eq!(again, v);

    // Unknown group, bad name.
    let (status, e) = get!(&app, "/v1/groups/nobody/accuracy");
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("group_not_found"))
    );
    let (status, e) = get!(&app, "/v1/groups/a:b/accuracy");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["field"], "group");

    // A restart: a new state on the same folders reads the ledger back.
    drop(app);
    let state = with_ledgers(&f, book()).await;
    let app = test::init_service(create_app(state)).await;
    let (status, after) = get!(&app, "/v1/groups/vm/accuracy");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, v);

    // A damaged ledger is rebuilt from the samples (the same replay, so
    // the same answer), never an error.
    drop(app);
    let file = dir.path().join("ledgers").join("vm.ledger");
    assert!(file.is_file());
    std::fs::write(&file, b"FSLEDGR1 damaged").unwrap();
    let state = with_ledgers(&f, book()).await;
    let app = test::init_service(create_app(state)).await;
    let (status, rebuilt) = get!(&app, "/v1/groups/vm/accuracy");
    assert_eq!(status, StatusCode::OK, "{rebuilt}");
    assert_eq!(rebuilt, v);
}

/// Two days of a load that moves smoothly with no daily cycle.
fn drifting() -> Value {
    let t0 = 1_780_000_200 - 576 * 300;
    let samples: Vec<Value> = (0..576)
        .map(|i| {
            let x = i as f64;
            let cpu = 50.0 + 20.0 * (x / 37.0).sin() + 5.0 * (x / 11.0).sin();
            json!({"timestamp": t0 + i * 300, "features": {"cpu_usage_pct": cpu}})
        })
        .collect();
    json!({ "samples": samples })
}

/// A default candidate that is poor on the group (seasonal naive on a load
/// without a daily cycle) gives way within a day of samples; the
/// accuracy answer shows the scores behind the switch, `/metrics` counts
/// it, and the choice survives a restart.
#[actix_web::test]
async fn a_poor_default_is_replaced_within_a_day_and_the_switch_is_counted() {
    let f = Fixture::new(Kind::Memory, "accuracy-switch");
    let dir = tempfile::tempdir().unwrap();
    let book = || {
        LedgerBook::new(
            vec!["snaive".into(), "naive".into()],
            LedgerConfig::default(),
            Some(dir.path().join("ledgers")),
        )
        .unwrap()
    };
    let state = with_ledgers(&f, book()).await;
    let app = test::init_service(create_app(state)).await;
    let body = drifting();
    assert_eq!(post!(&app, "/v1/groups/flip/samples", body), StatusCode::OK);
    let (status, v) = get!(&app, "/v1/groups/flip/accuracy");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["served_model"], "naive", "{v}");
    let switches = v["switches"].as_u64().unwrap();
    assert_eq!(switches, 1, "{v}");
    let s = &v["last_switch"];
    assert_eq!(
        (s["from"].as_str(), s["to"].as_str()),
        (Some("snaive"), Some("naive"))
    );
    assert!(
        s["to_wql"].as_f64().unwrap() < 0.95 * s["from_wql"].as_f64().unwrap(),
        "{s}"
    );
    // The replay covered the last day; the switch came within it.
    let until = v["observed_until"].as_i64().unwrap();
    assert!(until - s["at"].as_i64().unwrap() < 86_400, "{v}");

    let resp = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(
        text.contains(&format!(
            "forescale_model_switches_total{{group=\"flip\"}} {switches}"
        )),
        "{text}"
    );
    assert!(text.contains("forescale_served_model{group=\"flip\",model=\"naive\"} 1"));
    assert!(text.contains("forescale_forecast_wql_ratio_to_naive{group=\"flip\"} 1"));

    // After a restart the ledger, and so the choice, is still there.
    drop(app);
    let state = with_ledgers(&f, book()).await;
    let app = test::init_service(create_app(state)).await;
    let (_, after) = get!(&app, "/v1/groups/flip/accuracy");
    assert_eq!(after, v);
}

/// With Redis, the ledger lives there: a second instance (a replica, or the
/// service after a restart) reads the same choice.
#[actix_web::test]
async fn with_redis_a_second_instance_reads_the_same_ledger() {
    let f = Fixture::new(Kind::Redis, "accuracy-redis");
    let prefix = unique_prefix("ledgers");
    let book = || async {
        LedgerBook::with_redis(
            vec!["snaive".into(), "naive".into()],
            LedgerConfig::default(),
            &redis_url(),
            &prefix,
        )
        .await
        .unwrap()
    };
    let state = with_ledgers(&f, book().await).await;
    let app = test::init_service(create_app(state)).await;
    assert_eq!(
        post!(&app, "/v1/groups/flip/samples", drifting()),
        StatusCode::OK
    );
    let (status, v) = get!(&app, "/v1/groups/flip/accuracy");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["served_model"].as_str(), v["switches"].as_u64()),
        (Some("naive"), Some(1))
    );

    let other = with_ledgers(&f, book().await).await;
    let other = test::init_service(create_app(other)).await;
    let (_, seen) = get!(&other, "/v1/groups/flip/accuracy");
    assert_eq!(seen, v);
}

/// With the background worker, a ledger follows the samples without any
/// request: the switch shows in `/metrics` after a push alone.
#[actix_web::test]
async fn the_worker_advances_ledgers_as_samples_arrive() {
    let f = Fixture::new(Kind::Memory, "accuracy-worker");
    let state = with_ledgers(
        &f,
        LedgerBook::new(
            vec!["snaive".into(), "naive".into()],
            LedgerConfig::default(),
            None,
        )
        .unwrap(),
    )
    .await;
    let shutdown = forescale::app::Shutdown::default();
    let worker =
        forescale::app::accuracy::spawn_worker(state.clone().into_inner(), shutdown.clone());
    let app = test::init_service(create_app(state)).await;
    assert_eq!(
        post!(&app, "/v1/groups/flip/samples", drifting()),
        StatusCode::OK
    );
    let wanted = "forescale_served_model{group=\"flip\",model=\"naive\"} 1";
    let mut text = String::new();
    for _ in 0..200 {
        let resp = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
        text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        if text.contains(wanted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(text.contains(wanted), "{text}");
    assert!(text.contains("forescale_model_switches_total{group=\"flip\"} 1"));
    shutdown.signal();
    worker.await.unwrap();
}

/// A group with too little history: the ledger has nothing to score yet
/// and `auto` answers 422 with the rows it has, never a 5xx.
#[actix_web::test]
async fn too_little_history_is_a_client_matter() {
    let f = Fixture::new(Kind::Memory, "accuracy-tiny");
    let app = test::init_service(create_app(f.state().await)).await;
    let t0 = 1_780_000_200;
    let samples: Vec<Value> = (0..5)
        .map(|i| json!({"timestamp": t0 + i * 300, "features": {"cpu_usage_pct": 10 + i}}))
        .collect();
    assert_eq!(
        post!(
            &app,
            "/v1/groups/tiny/samples",
            json!({ "samples": samples })
        ),
        StatusCode::OK
    );
    let (status, v) = get!(&app, "/v1/groups/tiny/accuracy");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["reason"], "no_evidence");
    assert_eq!(v["models"][0]["last_day"]["points"], 0);
    let (status, e) = get!(&app, "/v1/groups/tiny/forecast?model=auto");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"], "not_enough_history");
}

/// A group whose served model has been worse than naive over the last day
/// (seasonal naive on a load without a daily cycle, kept by a margin no
/// challenger can clear) is degraded: the forecast says so, and planning
/// does what `--on-degraded` says: by default the fallback (naive) plans,
/// with `keep` the chosen model plans all the same.
#[actix_web::test]
async fn a_degraded_group_is_planned_from_the_fallback() {
    let f = Fixture::new(Kind::Memory, "accuracy-degraded");
    let config = LedgerConfig {
        margin: 0.99,
        ..LedgerConfig::default()
    };
    let book = |on: OnDegraded| {
        LedgerBook::new(vec!["snaive".into(), "naive".into()], config, None)
            .unwrap()
            .with_on_degraded(on)
    };
    let body = drifting();

    let state = with_ledgers(&f, book(OnDegraded::default())).await;
    let app = test::init_service(create_app(state)).await;
    assert_eq!(post!(&app, "/v1/groups/sick/samples", body), StatusCode::OK);
    let (status, v) = get!(&app, "/v1/groups/sick/accuracy");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["served_model"].as_str(), v["degraded"].as_bool()),
        (Some("snaive"), Some(true)),
        "{v}"
    );
    // The forecast is the chosen model's, flagged.
    let (status, fc) = get!(&app, "/v1/groups/sick/forecast");
    assert_eq!(status, StatusCode::OK, "{fc}");
    assert_eq!(
        (fc["model"].as_str(), fc["served_model"].as_str()),
        (Some("auto"), Some("snaive"))
    );
    assert_eq!(fc["degraded"], true);
    // The plan is the fallback's.
    let (status, r) = get!(&app, "/v1/groups/sick/recommendation?capacity=4");
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["model"], "naive", "{r}");
    assert_eq!(r["explanation"]["model_reason"], "degraded_fallback");
    assert_eq!(r["explanation"]["forecast_degraded"], true);
    // A model named by the request is served as asked, without a verdict.
    let (_, named) = get!(
        &app,
        "/v1/groups/sick/recommendation?capacity=4&model=snaive"
    );
    assert_eq!(named["model"], "snaive", "{named}");
    assert!(
        named["explanation"].get("model_reason").is_none(),
        "{named}"
    );

    // `keep`: the chosen model plans, and the answer says it is degraded.
    let f2 = Fixture::new(Kind::Memory, "accuracy-degraded-keep");
    let state = with_ledgers(&f2, book(OnDegraded::Keep)).await;
    let app = test::init_service(create_app(state)).await;
    assert_eq!(
        post!(&app, "/v1/groups/sick/samples", drifting()),
        StatusCode::OK
    );
    let (status, _) = get!(&app, "/v1/groups/sick/accuracy");
    assert_eq!(status, StatusCode::OK);
    let (_, r) = get!(&app, "/v1/groups/sick/recommendation?capacity=4");
    assert_eq!(r["model"], "snaive", "{r}");
    assert_eq!(
        (
            r["explanation"]["model_reason"].as_str(),
            r["explanation"]["forecast_degraded"].as_bool()
        ),
        (Some("best"), Some(true)),
        "{r}"
    );
}
