//! The HTTP API end to end: in-process for the request matrix, a real
//! server on a port for restarts.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::test::{self, TestRequest};
use chrono::DateTime;
use forescale::data::{DatasetSource, load};
use forescale::http::create_app;
use serde_json::{Value, json};

use crate::support::{Fixture, Kind, RunningServer, shared_data};

/// The first `n` samples of a real Bitbrains VM, as an ingest body.
fn trace_body(n: usize) -> (Value, i64) {
    let src = DatasetSource::parse("bitbrains-rnd", &shared_data()).unwrap();
    let (series, _) = load(&src).unwrap();
    let vm = &series[0];
    let samples: Vec<Value> = vm.samples[..n]
        .iter()
        .map(|s| {
            let mut f = serde_json::Map::new();
            for (j, v) in s.values.iter().enumerate() {
                if let Some(v) = v {
                    f.insert(forescale::domain::FEATURE_NAMES[j].into(), json!(v));
                }
            }
            json!({"timestamp": s.timestamp, "features": f})
        })
        .collect();
    (json!({ "samples": samples }), vm.samples[n - 1].timestamp)
}

fn post_json(uri: &str, body: &Value) -> TestRequest {
    TestRequest::post()
        .uri(uri)
        .insert_header(ContentType::json())
        .set_payload(body.to_string())
}

fn ts(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

#[actix_web::test]
async fn ingest_a_real_trace_then_forecast() {
    let f = Fixture::new(Kind::Memory, "e2e");
    let app = test::init_service(create_app(f.state().await)).await;

    let resp = test::call_service(&app, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let (body, last) = trace_body(600);
    let resp = test::call_service(
        &app,
        post_json("/v1/groups/vm-027/samples", &body).to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v, json!({"accepted": 600}));

    for model in ["naive", "snaive", "ets", "mstl"] {
        let req = TestRequest::get()
            .uri(&format!(
                "/v1/groups/vm-027/forecast?model={model}&horizon=12"
            ))
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status(), StatusCode::OK, "{model}");
        let v: Value = test::read_body_json(resp).await;
        assert_eq!(v["group"], "vm-027");
        assert_eq!(v["model"], model);
        assert_eq!(v["step_seconds"], 300);
        let points = v["points"].as_array().unwrap();
        assert_eq!(points.len(), 12);
        let bucket_end = last.div_euclid(300) * 300;
        for (k, p) in points.iter().enumerate() {
            let t = ts(p["timestamp"].as_str().unwrap());
            assert_eq!(
                t,
                bucket_end + (k as i64 + 1) * 300,
                "on the grid, after the last sample"
            );
            let (a, b, c) = (
                p["p10"].as_f64().unwrap(),
                p["p50"].as_f64().unwrap(),
                p["p90"].as_f64().unwrap(),
            );
            assert!(a <= b && b <= c && a >= 0.0, "{p}");
        }
    }

    let resp = test::call_service(&app, TestRequest::get().uri("/v1/groups").to_request()).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["groups"][0]["group"], "vm-027");
    assert_eq!(v["groups"][0]["samples"], 600);

    let resp = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(
        text.contains("forescale_samples_accepted_total 600"),
        "{text}"
    );
    assert!(text.contains("forescale_forecasts_total{model=\"snaive\"} 1"));
    assert!(text.contains("route=\"/v1/groups/{group}/samples\""));
    assert!(text.contains("forescale_groups 1"));
}

/// Every bad request: a 4xx with a JSON error naming the field, and the
/// store unchanged.
#[actix_web::test]
async fn bad_input_is_a_4xx_json_error_and_changes_nothing() {
    let f = Fixture::new(Kind::Memory, "bad");
    let app = test::init_service(create_app(f.state().await)).await;
    const BASE: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z
    let ok = json!({"samples": [{"timestamp": BASE, "features": {"cpu_usage_pct": 5}}]});
    let resp = test::call_service(&app, post_json("/v1/groups/g/samples", &ok).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let sample =
        |features: Value| json!({"samples": [{"timestamp": BASE + 300, "features": features}]});
    let mut all24 = serde_json::Map::new();
    for name in forescale::domain::FEATURE_NAMES {
        all24.insert(name.into(), json!(0.5));
    }
    all24.insert("gpu_usage_pct".into(), json!(1));
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"timestamp": BASE + i, "features": {"cpu_usage_pct": 1}}))
        .collect();
    let huge = "x".repeat(5 << 20);

    // (description, request, status, field)
    let cases: Vec<(&str, TestRequest, u16, &str)> = vec![
        (
            "wrong type",
            post_json(
                "/v1/groups/g/samples",
                &sample(json!({"cpu_usage_pct": "high"})),
            ),
            422,
            "samples[0].features.cpu_usage_pct",
        ),
        (
            "bool",
            post_json(
                "/v1/groups/g/samples",
                &sample(json!({"cpu_usage_pct": true})),
            ),
            422,
            "samples[0].features.cpu_usage_pct",
        ),
        (
            "negative rate",
            post_json(
                "/v1/groups/g/samples",
                &sample(json!({"cpu_usage_pct": 1, "disk_iops": -2})),
            ),
            422,
            "samples[0].features.disk_iops",
        ),
        (
            "percent far above 100",
            post_json(
                "/v1/groups/g/samples",
                &sample(json!({"cpu_usage_pct": 1000})),
            ),
            422,
            "samples[0].features.cpu_usage_pct",
        ),
        (
            "unknown feature",
            post_json(
                "/v1/groups/g/samples",
                &sample(json!({"cpu_usage_pct": 1, "gpu": 3})),
            ),
            422,
            "samples[0].features.gpu",
        ),
        (
            "24 features",
            post_json("/v1/groups/g/samples", &sample(Value::Object(all24))),
            422,
            "samples[0].features.day_of_week",
        ),
        (
            "cpu missing",
            post_json("/v1/groups/g/samples", &sample(json!({"mem_used_pct": 3}))),
            422,
            "samples[0].features.cpu_usage_pct",
        ),
        (
            "empty batch",
            post_json("/v1/groups/g/samples", &json!({"samples": []})),
            422,
            "samples",
        ),
        (
            "over the batch limit",
            post_json("/v1/groups/g/samples", &json!({"samples": many})),
            422,
            "samples",
        ),
        (
            "older than retention",
            post_json(
                "/v1/groups/g/samples",
                &json!({"samples": [{"timestamp": 1, "features": {"cpu_usage_pct": 1}}]}),
            ),
            422,
            "samples[0].timestamp",
        ),
        (
            "bad timestamp",
            post_json(
                "/v1/groups/g/samples",
                &json!({"samples": [{"timestamp": "noon", "features": {"cpu_usage_pct": 1}}]}),
            ),
            422,
            "samples[0].timestamp",
        ),
        (
            "not an object",
            post_json("/v1/groups/g/samples", &json!([1, 2])),
            422,
            "$",
        ),
        (
            "bad group name",
            post_json("/v1/groups/a:b/samples", &ok),
            400,
            "group",
        ),
        (
            "group name too long",
            post_json(&format!("/v1/groups/{}/samples", "x".repeat(256)), &ok),
            400,
            "group",
        ),
        (
            "NaN",
            TestRequest::post()
                .uri("/v1/groups/g/samples")
                .insert_header(ContentType::json())
                .set_payload(r#"{"samples":[{"timestamp":0,"features":{"cpu_usage_pct":NaN}}]}"#),
            400,
            "body",
        ),
        (
            "non-JSON",
            TestRequest::post()
                .uri("/v1/groups/g/samples")
                .insert_header(ContentType::json())
                .set_payload("hello"),
            400,
            "body",
        ),
        (
            "empty body",
            TestRequest::post()
                .uri("/v1/groups/g/samples")
                .insert_header(ContentType::json()),
            400,
            "body",
        ),
        (
            "oversized body",
            TestRequest::post()
                .uri("/v1/groups/g/samples")
                .insert_header(ContentType::json())
                .set_payload(huge),
            413,
            "body",
        ),
        (
            "wrong content type",
            TestRequest::post()
                .uri("/v1/groups/g/samples")
                .insert_header(ContentType::plaintext())
                .set_payload(ok.to_string()),
            415,
            "Content-Type",
        ),
        (
            "no content type",
            TestRequest::post()
                .uri("/v1/groups/g/samples")
                .set_payload(ok.to_string()),
            415,
            "Content-Type",
        ),
        (
            "wrong method",
            TestRequest::delete().uri("/v1/groups/g/samples"),
            405,
            "",
        ),
        (
            "unknown route",
            TestRequest::get().uri("/v2/nothing"),
            404,
            "",
        ),
        (
            "unknown model",
            TestRequest::get().uri("/v1/groups/g/forecast?model=oracle"),
            400,
            "model",
        ),
        (
            "horizon zero",
            TestRequest::get().uri("/v1/groups/g/forecast?horizon=0"),
            400,
            "horizon",
        ),
        (
            "horizon too long",
            TestRequest::get().uri("/v1/groups/g/forecast?horizon=100000"),
            400,
            "horizon",
        ),
        (
            "horizon overflows",
            TestRequest::get().uri("/v1/groups/g/forecast?horizon=99999999999999999999999"),
            400,
            "query",
        ),
        (
            "horizon not a number",
            TestRequest::get().uri("/v1/groups/g/forecast?horizon=soon"),
            400,
            "query",
        ),
        (
            "unknown group",
            TestRequest::get().uri("/v1/groups/nobody/forecast"),
            404,
            "group",
        ),
        (
            "explain on a statistical model",
            TestRequest::get().uri("/v1/groups/g/forecast?model=ets&explain=true"),
            400,
            "explain",
        ),
        (
            "too little history for snaive",
            TestRequest::get().uri("/v1/groups/g/forecast?model=snaive"),
            422,
            "samples",
        ),
        (
            "stateless: bad step",
            post_json(
                "/v1/forecast",
                &json!({"step_seconds": 1, "samples": [{"timestamp": 0, "features": {"cpu_usage_pct": 1}}]}),
            ),
            422,
            "step_seconds",
        ),
        (
            "stateless: span too long",
            post_json(
                "/v1/forecast",
                &json!({"step_seconds": 60, "samples": [
                    {"timestamp": 0, "features": {"cpu_usage_pct": 1}},
                    {"timestamp": BASE, "features": {"cpu_usage_pct": 1}},
                ]}),
            ),
            422,
            "samples",
        ),
        (
            "stateless: unknown key",
            post_json("/v1/forecast", &json!({"window": [], "samples": []})),
            422,
            "window",
        ),
        (
            "stateless: model not a string",
            post_json(
                "/v1/forecast",
                &json!({"model": 3, "samples": [{"timestamp": 0, "features": {"cpu_usage_pct": 1}}]}),
            ),
            422,
            "model",
        ),
    ];
    for (what, req, status, field) in cases {
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let body: Value = test::read_body_json(resp).await;
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{what}: {body}"
        );
        if !field.is_empty() {
            assert_eq!(body["field"], field, "{what}: {body}");
        }
    }
    // The first error names the sample index and timestamp too.
    let resp = test::call_service(
        &app,
        post_json(
            "/v1/groups/g/samples",
            &sample(json!({"cpu_usage_pct": 1, "disk_iops": -2})),
        )
        .to_request(),
    )
    .await;
    let body: Value = test::read_body_json(resp).await;
    assert_eq!(body["sample_index"], 0);
    assert_eq!(body["timestamp"], "2023-11-14T22:18:20Z");
    assert_eq!(body["feature"], "disk_iops");

    // Nothing of the refused batches was stored.
    let resp = test::call_service(&app, TestRequest::get().uri("/v1/groups").to_request()).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["groups"].as_array().unwrap().len(), 1);
    assert_eq!(v["groups"][0]["samples"], 1);
}

#[actix_web::test]
async fn stateless_forecast_and_docs() {
    let f = Fixture::new(Kind::Memory, "stateless");
    let app = test::init_service(create_app(f.state().await)).await;
    let samples: Vec<Value> = (0..50)
        .map(|i| json!({"timestamp": format!("2024-01-01T{:02}:{:02}:00Z", i * 5 / 60, i * 5 % 60), "features": {"cpu_usage_pct": 10 + i % 5}}))
        .collect();
    let body = json!({"model": "naive", "horizon": 6, "samples": samples});
    let resp = test::call_service(&app, post_json("/v1/forecast", &body).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = test::read_body_json(resp).await;
    assert!(v.get("group").is_none());
    assert_eq!(v["points"].as_array().unwrap().len(), 6);
    assert_eq!(v["history_end"], "2024-01-01T04:05:00Z");
    assert_eq!(v["points"][0]["timestamp"], "2024-01-01T04:10:00Z");
    assert_eq!(v["points"][0]["p50"], 14.0);
    // Stateless means stateless.
    let resp = test::call_service(&app, TestRequest::get().uri("/v1/groups").to_request()).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["groups"], json!([]));

    let resp = test::call_service(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = test::call_service(&app, TestRequest::get().uri("/docs/").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(html.contains("swagger"), "offline docs page");
}

async fn restart_keeps_acknowledged_samples(kind: Kind) {
    let f = Fixture::new(kind, "http-restart");
    let server = RunningServer::start(f.state().await).await;
    let client = reqwest::Client::new();
    let (body, _) = trace_body(300);
    let resp = client
        .post(format!("{}/v1/groups/vm-027/samples", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;

    let server = RunningServer::start(f.state().await).await;
    let v: Value = client
        .get(format!("{}/v1/groups", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["groups"][0]["samples"], 300, "{v}");
    let resp = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

#[actix_web::test]
async fn restart_keeps_acknowledged_samples_memory() {
    restart_keeps_acknowledged_samples(Kind::Memory).await;
}

#[actix_web::test]
async fn restart_keeps_acknowledged_samples_redis() {
    restart_keeps_acknowledged_samples(Kind::Redis).await;
}

#[actix_web::test]
async fn writes_need_a_bearer_token_when_tokens_are_set() {
    let f = Fixture::new(Kind::Memory, "auth");
    let mut state = f.app_state().await;
    state.tokens =
        forescale::app::auth::ApiTokens::new(["s3cret-token-0123456789".to_owned()]).unwrap();
    let app = test::init_service(create_app(actix_web::web::Data::new(state))).await;
    let body = json!({"samples": [{"timestamp": 1_700_000_000, "features": {"cpu_usage_pct": 5}}]});
    for (header, msg) in [
        (None, "needs Authorization"),
        (Some("Bearer wrong-token-0123456789"), "not valid"),
    ] {
        let mut req = post_json("/v1/groups/web/samples", &body);
        if let Some(h) = header {
            req = req.insert_header(("Authorization", h));
        }
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers().get("WWW-Authenticate").unwrap(), "Bearer");
        let v: Value = test::read_body_json(resp).await;
        assert_eq!(v["field"], "Authorization");
        assert!(v["message"].as_str().unwrap().contains(msg), "{v}");
        assert!(
            !v.to_string().contains("wrong-token"),
            "tokens are never echoed"
        );
    }
    // Nothing was stored by the refused requests.
    let resp = test::call_service(&app, TestRequest::get().uri("/v1/groups").to_request()).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["groups"], json!([]));
    let req = post_json("/v1/groups/web/samples", &body)
        .insert_header(("Authorization", "Bearer s3cret-token-0123456789"));
    let resp = test::call_service(&app, req.to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Reads stay open.
    let resp = test::call_service(
        &app,
        TestRequest::get()
            .uri("/v1/groups/web/forecast?model=naive")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// `n` samples ending at the current step: CPU rising from 40 % to 70 %
/// on `capacity` instances (no capacity field when None).
fn rising_body(n: usize, capacity: Option<u32>) -> Value {
    let end = chrono::Utc::now().timestamp() / 300 * 300;
    let samples: Vec<Value> = (0..n)
        .map(|i| {
            let cpu = 40.0 + 30.0 * i as f64 / (n - 1) as f64;
            let mut s = json!({
                "timestamp": end - (n - 1 - i) as i64 * 300,
                "features": {"cpu_usage_pct": cpu}
            });
            if let Some(c) = capacity {
                s["capacity"] = json!(c);
            }
            s
        })
        .collect();
    json!({ "samples": samples })
}

/// Two days of a swinging load at `capacity` instances (the same CPU %
/// whatever the capacity), some steps over the SLA's 90 %.
fn swinging_body(n: usize, capacity: u32) -> Value {
    let end = chrono::Utc::now().timestamp() / 300 * 300;
    let samples: Vec<Value> = (0..n)
        .map(|i| {
            let jitter = ((i * 7919) % 23) as f64 - 11.0;
            let cpu = (55.0 + 25.0 * (i as f64 / 20.0).sin() + jitter).clamp(1.0, 100.0);
            json!({
                "timestamp": end - (n - 1 - i) as i64 * 300,
                "features": {"cpu_usage_pct": cpu},
                "capacity": capacity
            })
        })
        .collect();
    json!({ "samples": samples })
}

/// The SLA planner (the service's default policy): it provisions for the
/// group's target, says which quantile it read and what the group
/// achieved; the same CPU at twice the capacity is planned at twice the
/// size (no absolute level decides); a target it does not support is a
/// 400 naming `sla_target`, single and fleet.
#[actix_web::test]
async fn sla_planner_provisions_for_the_target_and_refuses_unsupported_ones() {
    let f = Fixture::new(Kind::Memory, "sla");
    let state = actix_web::web::Data::new(forescale::app::AppState {
        policy: forescale::policy::rl::LivePolicy::default(),
        ..f.app_state().await
    });
    let app = test::init_service(create_app(state)).await;
    for (g, cap) in [("small", 10), ("large", 20)] {
        let resp = test::call_service(
            &app,
            post_json(&format!("/v1/groups/{g}/samples"), &swinging_body(600, cap)).to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let get = |uri: &str| TestRequest::get().uri(uri).to_request();
    let rec = |v: &Value| v["explanation"]["proposed_capacity"].as_u64().unwrap();

    let resp = test::call_service(&app, get("/v1/groups/small/recommendation")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["policy"], "sla", "{v}");
    let e = &v["explanation"];
    assert_eq!(e["sla_target"], 0.99, "{v}");
    let q = e["provisioned_quantile"].as_f64().unwrap();
    assert!((0.0..=1.1).contains(&q), "{v}");
    let achieved = e["achieved_sla"].as_f64().unwrap();
    assert!(
        achieved > 0.5 && achieved < 1.0,
        "some steps are over 90 %: {v}"
    );
    assert!(e["reason"].as_str().unwrap().starts_with("p99 "), "{v}");
    let at99 = rec(&v);
    // Load now is CPU x 10 instances; the plan holds more than that.
    assert!(at99 >= 1, "{v}");

    let resp =
        test::call_service(&app, get("/v1/groups/small/recommendation?sla_target=0.6")).await;
    let low: Value = test::read_body_json(resp).await;
    assert_eq!(low["explanation"]["sla_target"], 0.6);
    let resp = test::call_service(
        &app,
        get("/v1/groups/small/recommendation?sla_target=0.999"),
    )
    .await;
    let high: Value = test::read_body_json(resp).await;
    assert!(
        rec(&low) <= at99 && at99 <= rec(&high),
        "60 %: {}, 99 %: {at99}, 99.9 %: {}",
        rec(&low),
        rec(&high)
    );

    // Twice the capacity at the same CPU: twice the load, twice the plan.
    let resp = test::call_service(&app, get("/v1/groups/large/recommendation")).await;
    let large: Value = test::read_body_json(resp).await;
    let diff = rec(&large) as i64 - 2 * at99 as i64;
    assert!(diff.abs() <= 2, "10 instances: {at99}, 20: {}", rec(&large));

    for uri in [
        "/v1/groups/small/recommendation?sla_target=1",
        "/v1/groups/small/recommendation?sla_target=0.3",
        "/v1/groups/small/recommendation?sla_target=99",
        "/v1/recommendations?sla_target=1.0",
    ] {
        let resp = test::call_service(&app, get(uri)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        let e: Value = test::read_body_json(resp).await;
        assert_eq!(e["field"], "sla_target", "{uri}: {e}");
    }
    // The fleet cycle plans with the same planner.
    let resp = test::call_service(&app, get("/v1/recommendations?sla_target=0.95")).await;
    let fleet: Value = test::read_body_json(resp).await;
    let recs = fleet["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{fleet}");
    assert!(
        recs.iter()
            .all(|r| r["policy"] == "sla" && r["explanation"]["sla_target"] == 0.95)
    );
}

#[actix_web::test]
async fn recommendation_plans_capacity_and_names_bad_settings() {
    let f = Fixture::new(Kind::Memory, "rec");
    let app = test::init_service(create_app(f.state().await)).await;
    for (g, cap) in [("web", Some(10)), ("nocap", None)] {
        let resp = test::call_service(
            &app,
            post_json(&format!("/v1/groups/{g}/samples"), &rising_body(30, cap)).to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let get = |uri: &str| TestRequest::get().uri(uri).to_request();

    let resp = test::call_service(&app, get("/v1/groups/web/recommendation")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = test::read_body_json(resp).await;
    // No trained policy in this state: predictive scaling on the naive
    // forecast. Load now 70 % x 10 = 7 instances; at 50 % -> 14.
    assert_eq!(v["policy"], "predictive", "{v}");
    assert_eq!(v["model"], "naive");
    assert_eq!(v["capacity_now"], 10);
    assert_eq!(v["desired_capacity"], 14, "{v}");
    assert_eq!(v["explanation"]["proposed_capacity"], 14);
    assert_eq!(v["explanation"]["stale_data"], false);
    assert_eq!(v["explanation"]["guardrails_fired"], json!([]));
    let plan = v["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 12);
    assert!(plan.iter().all(|p| p["desired_capacity"] == 14), "{v}");
    assert_eq!(
        ts(plan[0]["timestamp"].as_str().unwrap()) - ts(v["history_end"].as_str().unwrap()),
        300
    );

    // The group's max is a guardrail, and it says so.
    let resp = test::call_service(&app, get("/v1/groups/web/recommendation?max=12")).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["desired_capacity"], 12, "{v}");
    assert_eq!(v["explanation"]["guardrails_fired"], json!(["max"]));

    // Bad settings: 400 naming the parameter; no capacity known: 400.
    for (uri, field) in [
        ("/v1/groups/web/recommendation?capacity=0", "capacity"),
        ("/v1/groups/web/recommendation?min=5&max=3", "min"),
        ("/v1/groups/web/recommendation?max=0", "max"),
        ("/v1/groups/web/recommendation?model=magic", "model"),
        ("/v1/groups/nocap/recommendation", "capacity"),
    ] {
        let resp = test::call_service(&app, get(uri)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        let v: Value = test::read_body_json(resp).await;
        assert_eq!(v["field"], field, "{uri}: {v}");
    }
    let resp = test::call_service(&app, get("/v1/groups/nocap/recommendation?capacity=4")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = test::call_service(&app, get("/v1/groups/ghost/recommendation?capacity=4")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(
        text.contains("forescale_recommendations_total{policy=\"predictive\"} 3"),
        "{text}"
    );
}

/// The fleet cycle (`GET /v1/recommendations`) with the shipped BiLSTM and
/// policy: enough groups for the batched encoder and the parallel policy
/// stage; every answer equals the single-group one; cache misses are
/// encoded once, then hit; groups that cannot be decided are listed with
/// the code a single request gets.
#[actix_web::test]
async fn fleet_cycle_batches_and_matches_single_group_answers() {
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let f = Fixture::new(Kind::Memory, "fleet");
    let state = actix_web::web::Data::new(forescale::app::AppState {
        models: forescale::forecast::ModelRegistry::load_dir(&models).unwrap(),
        default_model: "bilstm".into(),
        policy: forescale::policy::rl::LivePolicy::new(Some(
            forescale::policy::rl::RlPolicy::load(&models.join("policy")).unwrap(),
        ))
        .serving_rl(true),
        ..f.app_state().await
    });
    let app = test::init_service(create_app(state)).await;
    let n = 300;
    for i in 0..n {
        let body = rising_body(30 + i % 7, (i != 7).then_some(4 + (i % 5) as u32));
        let resp = test::call_service(
            &app,
            post_json(&format!("/v1/groups/g{i:03}/samples"), &body).to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let get = |uri: &str| TestRequest::get().uri(uri).to_request();
    let resp = test::call_service(&app, get("/v1/recommendations?max=50")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["stats"]["groups"], n);
    assert_eq!(v["stats"]["decided"], n - 1, "{}", v["stats"]);
    assert_eq!(v["stats"]["encoded"], n - 1);
    assert_eq!(v["stats"]["cache_hits"], 0);
    assert_eq!(
        v["errors"],
        json!([{"group": "g007", "error": "bad_parameter", "message": v["errors"][0]["message"]}])
    );
    let recs = v["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), n - 1);
    for r in recs.iter().step_by(37) {
        assert_eq!(r["policy"], "rl");
        let g = r["group"].as_str().unwrap();
        let resp =
            test::call_service(&app, get(&format!("/v1/groups/{g}/recommendation?max=50"))).await;
        let one: Value = test::read_body_json(resp).await;
        assert_eq!(one["desired_capacity"], r["desired_capacity"], "{g}");
        assert_eq!(one["plan"], r["plan"], "{g}");
        assert_eq!(one["explanation"], r["explanation"], "{g}");
    }
    // Again: every embedding is cached now.
    let resp = test::call_service(&app, get("/v1/recommendations?max=50")).await;
    let again: Value = test::read_body_json(resp).await;
    assert_eq!(again["stats"]["cache_hits"], n - 1, "{}", again["stats"]);
    assert_eq!(again["stats"]["encoded"], 0);
    assert_eq!(again["recommendations"], v["recommendations"]);
    // A named subset, and bad input named.
    let resp = test::call_service(&app, get("/v1/recommendations?groups=g001,ghost")).await;
    let sub: Value = test::read_body_json(resp).await;
    assert_eq!(sub["recommendations"].as_array().unwrap().len(), 1);
    assert_eq!(sub["errors"][0]["group"], "ghost");
    assert_eq!(sub["errors"][0]["error"], "group_not_found");
    for (uri, field) in [
        ("/v1/recommendations?groups=a:b", "groups"),
        ("/v1/recommendations?min=9&max=3", "min"),
        ("/v1/recommendations?model=magic", "model"),
    ] {
        let resp = test::call_service(&app, get(uri)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        let e: Value = test::read_body_json(resp).await;
        assert_eq!(e["field"], field, "{uri}: {e}");
    }
}

/// A group's own guardrails (`--group-settings`) apply to its
/// recommendations, single and fleet; the query's min/max override them;
/// `GET /v1/groups/{g}/settings` shows what applies.
#[actix_web::test]
async fn configured_group_settings_bound_its_recommendations() {
    let f = Fixture::new(Kind::Memory, "gset");
    let settings = forescale::policy::guardrails::parse_group_settings(
        r#"{"web": {"min": 2, "max": 12, "max_step_up": 1}}"#,
    )
    .unwrap();
    let state = actix_web::web::Data::new(forescale::app::AppState {
        group_settings: std::sync::Arc::new(settings),
        ..f.app_state().await
    });
    let app = test::init_service(create_app(state)).await;
    for g in ["web", "api"] {
        let resp = test::call_service(
            &app,
            post_json(
                &format!("/v1/groups/{g}/samples"),
                &rising_body(30, Some(10)),
            )
            .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let get = |uri: &str| TestRequest::get().uri(uri).to_request();
    // Predictive wants 14 (see above); web may add one instance per
    // decision and plans at most 12; api has the defaults.
    let resp = test::call_service(&app, get("/v1/groups/web/recommendation")).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["desired_capacity"], 11, "{v}");
    assert_eq!(v["explanation"]["guardrails_fired"], json!(["max_step_up"]));
    assert!(
        v["plan"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["desired_capacity"].as_u64() <= Some(12))
    );
    let resp = test::call_service(&app, get("/v1/groups/api/recommendation")).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["desired_capacity"], 14, "{v}");
    // The fleet cycle gives each group its own.
    let resp = test::call_service(&app, get("/v1/recommendations")).await;
    let v: Value = test::read_body_json(resp).await;
    let by: std::collections::HashMap<String, u64> = v["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap().to_owned(),
                r["desired_capacity"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!((by["web"], by["api"]), (11, 14), "{v}");
    // The query's max overrides the file's; a query min above the
    // configured max is a 400 naming min.
    let resp = test::call_service(&app, get("/v1/groups/web/recommendation?max=10")).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["desired_capacity"], 10, "{v}");
    for (uri, field) in [
        ("/v1/groups/web/recommendation?min=13", "min"),
        ("/v1/recommendations?min=13", "min"),
        ("/v1/groups/a:b/settings", "group"),
    ] {
        let resp = test::call_service(&app, get(uri)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        let v: Value = test::read_body_json(resp).await;
        assert_eq!(v["field"], field, "{uri}: {v}");
    }
    let resp = test::call_service(&app, get("/v1/groups/web/settings")).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(v["configured"], true);
    assert_eq!(v["guardrails"]["max_step_up"], 1);
    assert_eq!(v["guardrails"]["scale_in_cooldown_steps"], 3);
    let resp = test::call_service(&app, get("/v1/groups/other/settings")).await;
    let v: Value = test::read_body_json(resp).await;
    assert_eq!(
        (v["configured"].clone(), v["guardrails"]["max"].clone()),
        (json!(false), json!(100))
    );
}
