//! Shared fixtures: stores on both backends, the in-process app, a real
//! server on an ephemeral port.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::dev::ServerHandle;
use actix_web::web;
use forescale::app::AppState;
use forescale::http;
use forescale::ingest::IngestLimits;
use forescale::metrics::Metrics;
use forescale::store::{Backend, StoreConfig, WindowStore};

pub fn redis_url() -> String {
    std::env::var("FORESCALE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// The shared traces: `FORESCALE_DATA_ROOT` when set, else `../shared/data`
/// beside the project root.
pub fn shared_data() -> PathBuf {
    std::env::var_os("FORESCALE_DATA_ROOT").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")),
        PathBuf::from,
    )
}

/// A key prefix no other test (or run) uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "forescale-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Which backend a fixture opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Redis,
}

/// A store location that can be opened again (to test restarts).
pub struct Fixture {
    pub backend: Backend,
    pub cfg: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn new(kind: Kind, name: &str) -> Self {
        Self::with_config(kind, name, StoreConfig::default())
    }

    pub fn with_config(kind: Kind, name: &str, cfg: StoreConfig) -> Self {
        match kind {
            Kind::Memory => {
                let dir = tempfile::tempdir().expect("tempdir");
                Self {
                    backend: Backend::Memory {
                        data_dir: Some(dir.path().to_owned()),
                    },
                    cfg,
                    _dir: Some(dir),
                }
            }
            Kind::Redis => Self {
                backend: Backend::Redis {
                    url: redis_url(),
                    prefix: unique_prefix(name),
                },
                cfg,
                _dir: None,
            },
        }
    }

    pub async fn open(&self) -> WindowStore {
        WindowStore::open(&self.backend, self.cfg.clone())
            .await
            .expect("open store (is Redis running? scripts/test.sh starts one)")
    }

    pub async fn state(&self) -> web::Data<AppState> {
        web::Data::new(self.app_state().await)
    }

    pub async fn app_state(&self) -> AppState {
        AppState {
            store: self.open().await,
            metrics: Metrics::default(),
            ingest: IngestLimits::default(),
            max_body_bytes: 4 << 20,
            default_model: "naive".into(),
            models: forescale::forecast::ModelRegistry::default(),
            cache: forescale::cache::EmbeddingCache::new(
                1_000,
                std::time::Duration::from_secs(600),
            ),
            actuator: None,
            tokens: None,
            // The trained policy's path (predictive without one); the SLA
            // planner's tests ask for it with `serving_rl(false)`.
            policy: forescale::policy::rl::LivePolicy::default().serving_rl(true),
            group_settings: Default::default(),
            ledgers: forescale::app::accuracy::LedgerBook::in_memory(&Default::default()),
        }
    }
}

impl Drop for Fixture {
    /// Leave no test keys behind in Redis.
    fn drop(&mut self) {
        let Backend::Redis { url, prefix } = &self.backend else {
            return;
        };
        let Ok(mut con) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

/// A real HTTP server on 127.0.0.1:<ephemeral>.
pub struct RunningServer {
    pub base: String,
    handle: ServerHandle,
}

impl RunningServer {
    pub async fn start(state: web::Data<AppState>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = http::serve(listener, state).expect("serve");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self { base, handle }
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// `forescale train --model policy` on bb-aug-svc1's train segment with
/// seasonal-naive or naive forecasts, 2 PPO iterations: a tiny policy in
/// `out`, warm-started from `init` when given.
pub async fn train_tiny_policy(
    models: &std::path::Path,
    forecaster: &str,
    init: Option<&std::path::Path>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let root = shared_data();
    let mut argv = vec![
        "forescale",
        "train",
        "--model",
        "policy",
        "--policy-traces",
        "bb-aug-svc1",
        "--policy-forecaster",
        forecaster,
        "--policy-iterations",
        "2",
        "--data-root",
        root.to_str().expect("utf-8 path"),
        "--models-dir",
        models.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    if let Some(init) = init {
        argv.extend(["--policy-init", init.to_str().expect("utf-8 path")]);
    }
    use clap::Parser;
    forescale::cli::run(forescale::cli::Cli::try_parse_from(argv)?).await
}
