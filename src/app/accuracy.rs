//! The accuracy ledger of each stored group ([`GroupLedger`]): brought up
//! to date from the group's samples, step by step, as the offline replay
//! does: at each grid step, score what has arrived, choose, and record
//! every candidate's forecast made from the rows before it. A group seen
//! for the first time starts a day back; the ledger is kept in memory and,
//! with the in-process store, in the data folder (one file a group,
//! replaced atomically), so it survives a restart.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::ConnectionManager;

use crate::accuracy::{Choice, GroupLedger, LedgerConfig};
use crate::domain::{HORIZON, ScalingGroup};
use crate::forecast::{DAY_STEPS, Forecaster, ModelRegistry};

use super::forecast::{AUTO, ModelSpec, WindowForecast, forecast_group, serve};
use super::{AppError, AppState, Shutdown};
use crate::accuracy::Calibrator;
use crate::metrics::GroupAccuracy;

/// Steps replayed at most when a ledger is brought up to date: a day.
pub const CATCH_UP_STEPS: usize = DAY_STEPS;
/// Fewest rows of history before the first forecast is recorded.
const MIN_HISTORY: usize = 12;
/// The candidates when none are configured.
pub const DEFAULT_CANDIDATES: [&str; 4] = ["bilstm", "mstl", "naive", "snaive"];

/// The default candidates that `models` can serve, in order.
pub fn default_candidates(models: &ModelRegistry) -> Vec<String> {
    DEFAULT_CANDIDATES
        .iter()
        .filter(|n| models.get(n).is_some())
        .map(|n| (*n).to_owned())
        .collect()
}

/// Where ledgers are kept beyond the process.
enum Keep {
    Memory,
    Dir(PathBuf),
    /// The connection and the key prefix.
    Redis(ConnectionManager, String),
}

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            Self::Redis(_, prefix) => f.debug_tuple("Redis").field(prefix).finish(),
        }
    }
}

/// Groups whose ledgers are behind their samples. Marking does nothing
/// until a worker runs ([`spawn_worker`]).
#[derive(Debug, Default)]
struct Dirty {
    groups: parking_lot::Mutex<BTreeSet<ScalingGroup>>,
    notify: tokio::sync::Notify,
    on: AtomicBool,
}

/// What planning does with a group whose served forecast is degraded
/// (worse than naive over the last day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDegraded {
    /// Plan from this model instead (and say so in the plan's reason).
    Fallback(String),
    /// Plan from the chosen model all the same (the plan's reason says
    /// it is degraded).
    Keep,
    /// Make no plan: the control loop writes nothing for the group until
    /// its forecast recovers.
    Hold,
}

impl Default for OnDegraded {
    fn default() -> Self {
        Self::Fallback("naive".into())
    }
}

/// How long a replica trusts its copy of a choice kept in Redis (another
/// replica's worker may have changed it).
const CHOICE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// First bytes of a stored ledger: the format and its version.
const LEDGER_MAGIC: &[u8] = b"FSLEDGR1";

/// A choice as read (`None`: no ledger yet), and when.
type Memo = (std::time::Instant, Option<Arc<Choice>>);

/// Every group's ledger, and where they are kept.
#[derive(Debug)]
pub struct LedgerBook {
    candidates: Vec<String>,
    config: LedgerConfig,
    keep: Keep,
    ledgers: tokio::sync::Mutex<HashMap<ScalingGroup, GroupLedger>>,
    /// Each group's [`Choice`] as last read or written, and when: what the
    /// request path reads, without the whole ledger.
    choices: parking_lot::RwLock<HashMap<ScalingGroup, Memo>>,
    /// One replay at a time (the worker and a request may both ask).
    replaying: tokio::sync::Mutex<()>,
    on_degraded: OnDegraded,
    dirty: Dirty,
}

impl LedgerBook {
    /// A book for `candidates` (the first serves until there is evidence),
    /// kept in `dir` when given (created if missing).
    pub fn new(
        candidates: Vec<String>,
        config: LedgerConfig,
        dir: Option<PathBuf>,
    ) -> std::io::Result<Self> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
        }
        Ok(Self {
            candidates,
            config,
            keep: dir.map_or(Keep::Memory, Keep::Dir),
            ledgers: tokio::sync::Mutex::new(HashMap::new()),
            choices: Default::default(),
            replaying: tokio::sync::Mutex::new(()),
            on_degraded: OnDegraded::default(),
            dirty: Dirty::default(),
        })
    }

    /// Kept in Redis at `url`, keys under `prefix`: one copy every
    /// replica reads.
    pub async fn with_redis(
        candidates: Vec<String>,
        config: LedgerConfig,
        url: &str,
        prefix: &str,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        Ok(Self {
            candidates,
            config,
            keep: Keep::Redis(conn, prefix.to_owned()),
            ledgers: tokio::sync::Mutex::new(HashMap::new()),
            choices: Default::default(),
            replaying: tokio::sync::Mutex::new(()),
            on_degraded: OnDegraded::default(),
            dirty: Dirty::default(),
        })
    }

    /// In memory only, with the default candidates that `models` has.
    pub fn in_memory(models: &ModelRegistry) -> Self {
        Self {
            candidates: default_candidates(models),
            config: LedgerConfig::default(),
            keep: Keep::Memory,
            ledgers: tokio::sync::Mutex::new(HashMap::new()),
            choices: Default::default(),
            replaying: tokio::sync::Mutex::new(()),
            on_degraded: OnDegraded::default(),
            dirty: Dirty::default(),
        }
    }

    pub fn candidates(&self) -> &[String] {
        &self.candidates
    }

    /// Plan degraded groups as `on` says.
    pub fn with_on_degraded(mut self, on: OnDegraded) -> Self {
        self.on_degraded = on;
        self
    }

    pub fn on_degraded(&self) -> &OnDegraded {
        &self.on_degraded
    }

    /// The global default: the first candidate, served until a group has
    /// evidence.
    pub fn default_candidate(&self) -> &str {
        self.candidates.first().map_or("naive", String::as_str)
    }

    /// `group`'s current choice, `None` before its ledger has one. Read
    /// on every `auto` request: from the process's copy (refreshed from
    /// Redis after 30 s). A failed read serves the last copy,
    /// or none: a forecast never fails for want of a choice.
    pub async fn choice(&self, group: &ScalingGroup) -> Option<Arc<Choice>> {
        let memo = self.choices.read().get(group).cloned();
        let fresh = |at: std::time::Instant| match self.keep {
            Keep::Redis(..) => at.elapsed() < CHOICE_TTL,
            Keep::Memory | Keep::Dir(_) => true,
        };
        if let Some((at, c)) = &memo
            && fresh(*at)
        {
            return c.clone();
        }
        let read = match &self.keep {
            Keep::Redis(conn, prefix) => {
                let r = redis_get(conn, &format!("{prefix}:choice:{group}")).await;
                r.map_err(|e| e.to_string()).and_then(|b| {
                    b.map(|b| serde_json::from_slice::<Choice>(&b).map_err(|e| e.to_string()))
                        .transpose()
                })
            }
            Keep::Memory | Keep::Dir(_) => self
                .get(group)
                .await
                .map(|l| l.map(|l| l.choice()))
                .map_err(|e| e.to_string()),
        };
        match read {
            Ok(c) => {
                let c = c.map(Arc::new);
                self.choices
                    .write()
                    .insert(group.clone(), (std::time::Instant::now(), c.clone()));
                c
            }
            Err(e) => {
                tracing::warn!(group = %group, error = %e, "ledger: could not read the choice; serving the last known");
                memo.and_then(|(_, c)| c)
            }
        }
    }

    /// New samples arrived for `group`: a running worker will bring its
    /// ledger up to date.
    pub fn mark(&self, group: &ScalingGroup) {
        if self.dirty.on.load(Ordering::Relaxed) {
            self.dirty.groups.lock().insert(group.clone());
            self.dirty.notify.notify_one();
        }
    }

    fn file(dir: &std::path::Path, group: &ScalingGroup) -> PathBuf {
        // Group names are printable ASCII without ':'; '/' is the one
        // character a file name cannot hold.
        let name = group.as_str().replace('/', "%2F");
        dir.join(format!("{name}.ledger"))
    }

    /// The stored form: [`LEDGER_MAGIC`] then postcard (compact binary;
    /// about a third of the JSON).
    fn encode(ledger: &GroupLedger) -> Result<Vec<u8>, AppError> {
        let mut out = LEDGER_MAGIC.to_vec();
        postcard::to_io(ledger, &mut out).map_err(|e| AppError::Internal(e.to_string()))?;
        Ok(out)
    }

    /// Read a stored ledger. One that cannot be read (an older format, a
    /// damaged file) is dropped with a warning: a ledger is derived from
    /// the samples, so it is rebuilt (a day back) rather than failing the
    /// group.
    fn decode(bytes: &[u8], from: &str) -> Option<GroupLedger> {
        let r = match bytes.strip_prefix(LEDGER_MAGIC) {
            Some(body) => postcard::from_bytes(body).map_err(|e| e.to_string()),
            None => Err("not a ledger of this version".to_owned()),
        };
        r.map_err(|e| tracing::warn!(from, error = %e, "ledger: unreadable; rebuilding it"))
            .ok()
    }

    async fn get(&self, group: &ScalingGroup) -> Result<Option<GroupLedger>, AppError> {
        match &self.keep {
            // Redis holds the one copy replicas share; the process's copy is
            // only a fallback while Redis is away.
            Keep::Redis(conn, prefix) => {
                let key = format!("{prefix}:ledger:{group}");
                match redis_get(conn, &key).await {
                    Ok(Some(bytes)) => return Ok(Self::decode(&bytes, &key)),
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        tracing::warn!(error = %e, group = %group, "ledger: redis failed; using the process's copy")
                    }
                }
            }
            Keep::Dir(_) | Keep::Memory => {}
        }
        if let Some(l) = self.ledgers.lock().await.get(group) {
            return Ok(Some(l.clone()));
        }
        let Keep::Dir(dir) = &self.keep else {
            return Ok(None);
        };
        let path = Self::file(dir, group);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Self::decode(&bytes, &path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AppError::Internal(format!(
                "reading {}: {e}",
                path.display()
            ))),
        }
    }

    async fn put(&self, group: &ScalingGroup, ledger: GroupLedger) -> Result<(), AppError> {
        let encode = || Self::encode(&ledger);
        let choice = Arc::new(ledger.choice());
        match &self.keep {
            Keep::Memory => {}
            Keep::Dir(dir) => {
                let path = Self::file(dir, group);
                let bytes = encode()?;
                let tmp = path.with_extension("ledger.tmp");
                let write = async {
                    tokio::fs::write(&tmp, &bytes).await?;
                    tokio::fs::File::open(&tmp).await?.sync_all().await?;
                    tokio::fs::rename(&tmp, &path).await
                };
                write
                    .await
                    .map_err(|e| AppError::Internal(format!("writing {}: {e}", path.display())))?;
            }
            // A ledger is derived from stored samples: a failed write loses
            // no data, so it is logged and the process's copy serves.
            Keep::Redis(conn, prefix) => {
                let choice_json = serde_json::to_vec(choice.as_ref())
                    .map_err(|e| AppError::Internal(e.to_string()))?;
                let r: redis::RedisResult<()> = redis::pipe()
                    .cmd("SET")
                    .arg(format!("{prefix}:ledger:{group}"))
                    .arg(encode()?)
                    .ignore()
                    .cmd("SET")
                    .arg(format!("{prefix}:choice:{group}"))
                    .arg(choice_json)
                    .ignore()
                    .query_async(&mut conn.clone())
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, group = %group, "ledger: redis write failed");
                }
            }
        }
        self.choices
            .write()
            .insert(group.clone(), (std::time::Instant::now(), Some(choice)));
        self.ledgers.lock().await.insert(group.clone(), ledger);
        Ok(())
    }
}

async fn redis_get(conn: &ConnectionManager, key: &str) -> redis::RedisResult<Option<Vec<u8>>> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
}

/// Keep every ledger up to date in the background: after each accepted
/// batch, the group's ledger advances (one group at a time, so it takes at
/// most one core), and its gauges in `/metrics` with it. Stops between
/// groups on `shutdown`.
pub fn spawn_worker(state: Arc<AppState>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    state.ledgers.dirty.on.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        loop {
            let batch = std::mem::take(&mut *state.ledgers.dirty.groups.lock());
            if batch.is_empty() {
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = state.ledgers.dirty.notify.notified() => continue,
                }
            }
            for group in batch {
                if shutdown.is_signalled() {
                    return;
                }
                if let Err(e) = catch_up(&state, &group).await {
                    tracing::warn!(group = %group, error = %e, "ledger: could not bring it up to date");
                }
            }
        }
    })
}

/// Bring `group`'s ledger up to date with its stored samples and return
/// it ([`AppError::GroupNotFound`] when the group has no samples).
pub async fn catch_up(state: &AppState, group: &ScalingGroup) -> Result<GroupLedger, AppError> {
    let book = &state.ledgers;
    let _one = book.replaying.lock().await;
    let models: Vec<Forecaster> =
        book.candidates
            .iter()
            .map(|n| {
                state.models.get(n).ok_or_else(|| {
                    AppError::model(format!("accuracy candidate {n:?} is not loaded"))
                })
            })
            .collect::<Result<_, _>>()?;
    let lookback = models
        .iter()
        .map(|m| m.lookback(HORIZON))
        .max()
        .unwrap_or(0)
        + CATCH_UP_STEPS;
    let window = state
        .store
        .window(group, lookback)
        .await?
        .ok_or_else(|| AppError::GroupNotFound(group.to_string()))?;
    let names: Vec<&str> = book.candidates.iter().map(String::as_str).collect();
    let ledger = book
        .get(group)
        .await?
        .unwrap_or_else(|| GroupLedger::new(&names, HORIZON, book.config));
    let switches_before = ledger.switches;
    let ledger = tokio::task::spawn_blocking(move || replay(ledger, &models, &window))
        .await
        .map_err(|e| AppError::Internal(format!("ledger task: {e}")))?;
    book.put(group, ledger.clone()).await?;
    state.metrics.group_accuracy(
        group.as_str(),
        gauges(&ledger),
        u64::from(ledger.switches.saturating_sub(switches_before)),
    );
    if let Some(s) = ledger
        .last_switch
        .as_ref()
        .filter(|_| ledger.switches > switches_before)
    {
        tracing::info!(group = %group, from = %s.from, to = %s.to, from_wql = s.from_wql, to_wql = s.to_wql, "served model switched");
    }
    Ok(ledger)
}

/// What `/metrics` shows of a ledger: over the last day, the served
/// model's WQL against naive's and its coverage.
fn gauges(l: &GroupLedger) -> GroupAccuracy {
    let now = l.observed_until.unwrap_or_default();
    let day = |m: &crate::accuracy::ModelTrack| m.window(now, crate::accuracy::DAY).0;
    let served = day(&l.models[l.served]);
    let naive = l.model("naive").map(day);
    GroupAccuracy {
        served: l.served_name().to_owned(),
        wql_ratio: served
            .wql()
            .zip(naive.and_then(|n| n.wql()))
            .filter(|(_, n)| *n > 0.0)
            .map(|(s, n)| s / n),
        coverage: served.coverage(),
        degraded: l.degraded(now),
        switches: 0,
    }
}

/// `auto`'s forecast of a stored group: the model its ledger chose
/// (the global default before there is evidence), run now, its p10 and
/// p90 calibrated to the group's errors. The ledger is only read: the
/// worker (or `/accuracy`) advances it, so this costs what the served
/// model's own forecast costs.
pub async fn forecast_auto(
    state: &AppState,
    group: &ScalingGroup,
    horizon: usize,
    levels: &[f64],
) -> Result<AutoForecast, AppError> {
    if horizon > HORIZON {
        return Err(AppError::bad(
            "horizon",
            format!("model auto forecasts at most {HORIZON} steps, got {horizon}"),
        ));
    }
    let served = serve(state, &ModelSpec::Auto, group, false).await?;
    let (mut f, _) = forecast_group(state, group, served.model.clone(), horizon, false).await?;
    let raw = f.forecast;
    // Without evidence, the model's own band read as a normal one.
    let fresh;
    let calibrator = match &served.calibrator {
        Some(c) => c,
        None => {
            fresh = Calibrator::new(raw.horizon(), 0.0);
            &fresh
        }
    };
    let quantiles = levels
        .iter()
        .map(|l| {
            let q = (0..raw.horizon())
                .map(|h| calibrator.quantile(&raw, h, *l))
                .collect();
            (*l, q)
        })
        .collect();
    let name = std::mem::replace(&mut f.model, AUTO.into());
    f.forecast = served.calibrate(raw);
    Ok(AutoForecast {
        forecast: f,
        served: name,
        reason: served.reason.unwrap_or_default(),
        degraded: served.degraded,
        quantiles,
    })
}

/// `auto`'s answer for a group.
#[derive(Debug, Clone)]
pub struct AutoForecast {
    /// The served model's forecast, p10 / p90 calibrated.
    pub forecast: WindowForecast,
    /// The candidate that served.
    pub served: String,
    pub reason: &'static str,
    /// The served model has been worse than naive over the last day.
    pub degraded: bool,
    /// Each level asked for, and its calibrated quantile at every step.
    pub quantiles: Vec<(f64, Vec<f32>)>,
}

/// Most extra quantile levels one request may ask for.
pub const MAX_LEVELS: usize = 9;

/// Parse `0.05,0.95,0.99`: each level within [0.01, 0.99], at most
/// [`MAX_LEVELS`]; errors name the field `quantiles`.
pub fn parse_levels(text: &str) -> Result<Vec<f64>, AppError> {
    use crate::accuracy::calibration::{MAX_LEVEL, MIN_LEVEL};
    let levels: Vec<f64> = text
        .split(',')
        .map(|t| {
            let t = t.trim();
            t.parse::<f64>()
                .ok()
                .filter(|l| (MIN_LEVEL..=MAX_LEVEL).contains(l))
                .ok_or_else(|| {
                    AppError::bad(
                        "quantiles",
                        format!("{t:?} is not a level between {MIN_LEVEL} and {MAX_LEVEL}"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    if levels.len() > MAX_LEVELS {
        return Err(AppError::bad(
            "quantiles",
            format!("at most {MAX_LEVELS} levels, got {}", levels.len()),
        ));
    }
    Ok(levels)
}

/// Replay the grid steps of `window` the ledger has not seen (at most
/// [`CATCH_UP_STEPS`] of them, and the next step after the window).
fn replay(
    mut ledger: GroupLedger,
    models: &[Forecaster],
    window: &crate::store::MetricWindow,
) -> GroupLedger {
    let rows = &window.rows;
    let Some(end) = window.end() else {
        return ledger;
    };
    let start_of = |t: usize| rows.get(t).map_or(end + window.step, |r| r.timestamp);
    let first = rows.len().saturating_sub(CATCH_UP_STEPS).max(MIN_HISTORY);
    // First row not yet observed (rows are in time order).
    let mut unseen =
        rows.partition_point(|r| ledger.observed_until.is_some_and(|o| r.timestamp <= o));
    for t in first..=rows.len() {
        let start = start_of(t);
        if ledger.last_origin.is_some_and(|o| start <= o) {
            continue;
        }
        for r in rows.get(unseen..t).unwrap_or_default() {
            ledger.observe(r.timestamp, r.target());
        }
        unseen = unseen.max(t);
        ledger.choose(rows[t - 1].timestamp);
        let fcs = models
            .iter()
            .map(|m| m.forecast(&rows[..t], HORIZON).ok())
            .collect();
        ledger.record(start, window.step, fcs);
    }
    ledger
}
