//! Reliability under faults, with real parts:
//! - Redis (a `redis-server` of the test's own, on its own port, with an
//!   append-only file) killed under load and started again: the service
//!   keeps answering recommendations from its in-process copies, `/readyz`
//!   says `degraded`, pushes are refused (503, nothing half-written), and
//!   everything acknowledged before the crash is there after it returns.
//! - The AWS API emulator behind a fault-injecting proxy (throttling
//!   errors, and answers lost after moto applied the write): the actuator
//!   retries, the group ends with exactly the planned actions, once each,
//!   and every write is in the audit log.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use forescale::actuator::{Actuator, AuditLog, PlanSettings, PlanStep, WritePolicy};
use forescale::aws::AwsSettings;
use forescale::cache::EmbeddingCache;
use forescale::forecast::ModelRegistry;
use forescale::store::{Backend, StoreConfig, WindowStore};
use serde_json::{Value, json};

use crate::actuator::{create_group, moto_url};
use crate::support::{Fixture, Kind, RunningServer, unique_prefix};

/// A redis-server of the test's own: AOF on, fsync on every write.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.up();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start (again) on the same port and data directory.
    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/ensure-redis.sh installs it)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("own redis-server did not come up on port {}", self.port);
    }

    /// Kill -9: a crash, not a shutdown.
    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.crash();
    }
}

fn history(n: i64, end: i64) -> Value {
    let samples: Vec<Value> = (0..n)
        .map(|k| {
            let ts = end - (n - 1 - k) * 300;
            json!({"timestamp": ts, "features": {"cpu_usage_pct": 40.0 + (k % 12) as f64}, "capacity": 8})
        })
        .collect();
    json!({ "samples": samples })
}

async fn ready_status(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[actix_web::test]
async fn redis_crash_under_load_degrades_then_recovers_without_loss() {
    let mut redis = OwnRedis::start();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let state = web::Data::new(forescale::app::AppState {
        store: WindowStore::open(
            &Backend::Redis {
                url: redis.url(),
                prefix: "fault".into(),
            },
            StoreConfig::default(),
        )
        .await
        .unwrap(),
        cache: EmbeddingCache::with_redis(1_000, Duration::from_secs(600), &redis.url(), "fault")
            .await
            .unwrap(),
        models: ModelRegistry::load_dir(&models).unwrap(),
        default_model: "bilstm".into(),
        ..Fixture::new(Kind::Memory, "fault").app_state().await
    });
    let server = RunningServer::start(state.clone()).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let end = chrono::Utc::now().timestamp() / 300 * 300;
    let groups = ["fault-a", "fault-b", "fault-c"];
    for g in groups {
        let r = client
            .post(format!("{base}/v1/groups/{g}/samples"))
            .json(&history(48, end - 300))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r = client
            .get(format!("{base}/v1/groups/{g}/recommendation"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    assert_eq!(ready_status(&client, &base).await.1["status"], "ready");

    // Load: recommendations for every group until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, client, base) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            client.clone(),
            base.clone(),
        );
        actix_web::rt::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let g = groups[i % groups.len()];
                i += 1;
                let r = client
                    .get(format!("{base}/v1/groups/{g}/recommendation"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;

    redis.crash();
    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    let (code, body) = ready_status(&client, &base).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("store unreachable"),
        "{body}"
    );
    // A push while Redis is down is refused as a whole, with a JSON body.
    let r = client
        .post(format!("{base}/v1/groups/fault-a/samples"))
        .json(&history(1, end))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].is_string() && e["message"].is_string(), "{e}");
    let during = ok.load(Ordering::Relaxed);

    redis.up();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = ready_status(&client, &base).await;
        if body["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < until, "not ready again: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} recommendations failed while Redis was down ({} answered)",
        failed.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed)
    );
    assert!(during > 10, "too little load during the outage: {during}");
    assert!(state.store.fallback_reads() > 0);

    // Everything acknowledged before the crash is back; pushes work again.
    let r = client
        .post(format!("{base}/v1/groups/fault-a/samples"))
        .json(&history(1, end))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let v: Value = client
        .get(format!("{base}/v1/groups"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counts: Vec<(String, u64)> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["samples"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("fault-a".to_owned(), 49),
            ("fault-b".to_owned(), 48),
            ("fault-c".to_owned(), 48)
        ]
    );
    server.stop().await;
}

/// What the proxy does to the requests it sees.
#[derive(Clone, Copy)]
enum Fault {
    /// Every other request: 400 Throttling, not forwarded.
    Throttle,
    /// Every third request: forwarded (moto applies it), then answered 500
    /// as if the answer was lost.
    LoseAnswer,
}

struct Proxy {
    base: String,
    faults: Arc<AtomicUsize>,
    handle: actix_web::dev::ServerHandle,
}

async fn fault_proxy(fault: Fault) -> Proxy {
    let seen = Arc::new(AtomicUsize::new(0));
    let faults = Arc::new(AtomicUsize::new(0));
    let upstream = moto_url();
    let client = reqwest::Client::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let f2 = faults.clone();
    let server = actix_web::HttpServer::new(move || {
        let (seen, faults, upstream, client) =
            (seen.clone(), f2.clone(), upstream.clone(), client.clone());
        actix_web::App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (seen, faults, upstream, client) = (
                seen.clone(),
                faults.clone(),
                upstream.clone(),
                client.clone(),
            );
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if matches!(fault, Fault::Throttle) && n % 2 == 0 {
                    faults.fetch_add(1, Ordering::SeqCst);
                    return HttpResponse::BadRequest().content_type("text/xml").body(
                        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                         <Message>Rate exceeded</Message></Error>\
                         <RequestId>fault-proxy</RequestId></ErrorResponse>",
                    );
                }
                let mut fwd = client.request(
                    reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap(),
                    format!("{upstream}{}", req.uri()),
                );
                for (k, v) in req.headers() {
                    if k != "host" && k != "content-length" {
                        fwd = fwd.header(k.as_str(), v.as_bytes());
                    }
                }
                let r = fwd.body(body.to_vec()).send().await.unwrap();
                let status = r.status().as_u16();
                let ct = r
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap_or("text/xml").to_owned())
                    .unwrap_or_else(|| "text/xml".into());
                let bytes = r.bytes().await.unwrap();
                if matches!(fault, Fault::LoseAnswer) && n % 3 == 1 {
                    faults.fetch_add(1, Ordering::SeqCst);
                    return HttpResponse::InternalServerError().content_type("text/xml").body(
                        "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code>\
                         <Message>answer lost</Message></Error>\
                         <RequestId>fault-proxy</RequestId></ErrorResponse>",
                    );
                }
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                    .content_type(ct)
                    .body(bytes)
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Proxy {
        base,
        faults,
        handle,
    }
}

async fn actuator_faults(fault: Fault, name: &str) {
    let g = create_group(&unique_prefix(name)).await;
    let proxy = fault_proxy(fault).await;
    let mut settings = AwsSettings::emulator(&proxy.base);
    settings.max_attempts = 6;
    let sdk = settings.load().await;
    let mut policy = WritePolicy::default();
    policy.enabled.insert(g.to_string());
    let act = Actuator::new(
        &sdk,
        PlanSettings {
            prefix: crate::actuator::action_prefix(&g),
            ..PlanSettings::default()
        },
        policy,
        AuditLog::in_memory(),
    );
    let now = chrono::Utc::now().timestamp();
    let first = (now / 300 + 3) * 300;
    let plan: Vec<PlanStep> = [2u32, 4, 6, 6, 3]
        .iter()
        .enumerate()
        .map(|(i, c)| PlanStep {
            at: first + 300 * i as i64,
            capacity: *c,
        })
        .collect();
    let report = act.apply(&g, &plan, "fault test", now).await.unwrap();
    assert!(report.wrote && report.failed.is_empty(), "{report:?}");
    assert!(
        proxy.faults.load(Ordering::SeqCst) > 0,
        "the proxy injected no fault"
    );
    // Exactly the plan's changes, once each (read straight from moto).
    let direct = crate::actuator::actuator(&g, false).await;
    let mut got: Vec<(i64, Option<u32>)> = direct
        .existing(&g)
        .await
        .unwrap()
        .iter()
        .map(|a| (a.start, a.desired_capacity))
        .collect();
    got.sort();
    let want: Vec<(i64, Option<u32>)> = report
        .diff
        .put
        .iter()
        .map(|a| (a.start, a.desired_capacity))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let names: std::collections::HashSet<String> = direct
        .existing(&g)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names.len(), want.len(), "a name written twice");
    // Every write is logged.
    let audit = act.audit.for_group(g.as_str(), 100);
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == "put")
            .map(|e| e.put.len())
            .sum::<usize>(),
        want.len(),
        "{audit:?}"
    );
    // Applying the same plan again, still through the faults, writes nothing.
    let again = act.apply(&g, &plan, "fault test", now).await.unwrap();
    assert_eq!(again.write_calls, 0, "{again:?}");
    proxy.handle.stop(true).await;
}

#[actix_web::test]
async fn actuator_retries_throttling_and_writes_each_action_once() {
    actuator_faults(Fault::Throttle, "asg-throttle").await;
}

#[actix_web::test]
async fn actuator_survives_lost_answers_without_duplicates() {
    actuator_faults(Fault::LoseAnswer, "asg-lost").await;
}
