//! The window store: acknowledged samples per scaling group, and windows on
//! the step grid built from them.
//!
//! Two backends behind one type ([`WindowStore`]): in-process (the default,
//! persisted to an fsync'd log under a data directory) and Redis. Both keep
//! raw samples keyed by (group, timestamp) and grid on read, so the grid
//! settings can change without touching stored data.
//!
//! Policy, the same for both backends:
//! - **Duplicates**: a sample with the timestamp (to the second) of one
//!   already stored replaces it. Re-sending a batch is therefore idempotent.
//! - **Out of order**: accepted anywhere inside the retention window.
//! - **Retention**: samples older than `newest - retention` are pruned; a
//!   sample that would already be older than that is refused (422), never
//!   silently dropped.

pub mod grid;
pub use grid::grid;
mod memory;
mod redis;

use std::path::PathBuf;

use serde::Serialize;

pub use grid::{GridSpec, MetricWindow, RowState, WindowRow};
pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::domain::{MetricSample, ScalingGroup, rfc3339};

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Grid step in seconds.
    pub step: i64,
    /// How long samples are kept, relative to a group's newest sample.
    pub retention_seconds: i64,
    /// Longest run of empty steps interpolated in a window.
    pub max_gap_steps: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            step: 300,
            retention_seconds: 14 * 86_400,
            max_gap_steps: 3,
        }
    }
}

impl StoreConfig {
    pub fn grid_spec(&self) -> GridSpec {
        GridSpec {
            step: self.step,
            max_gap_steps: Some(self.max_gap_steps),
        }
    }
}

/// Where the samples live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In process; persisted under the directory when one is given.
    Memory {
        data_dir: Option<PathBuf>,
    },
    Redis {
        url: String,
        prefix: String,
    },
}

/// What the store knows of one group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GroupSummary {
    #[schema(value_type = String)]
    pub group: ScalingGroup,
    /// Samples currently kept (after retention and de-duplication).
    pub samples: u64,
    /// Oldest kept sample, RFC 3339.
    pub first_timestamp: String,
    /// Newest kept sample, RFC 3339.
    pub last_timestamp: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "sample {index} at {} is older than the retention window (cutoff {}, {} s before the group's newest sample)",
        rfc3339(*timestamp), rfc3339(*cutoff), retention
    )]
    TooOld {
        index: usize,
        timestamp: i64,
        cutoff: i64,
        retention: i64,
    },
    #[error("the data directory failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis failed: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The store. An enum rather than a trait object: there are two backends.
#[derive(Debug, Clone)]
pub enum WindowStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl WindowStore {
    /// Open a backend: replays the data directory, or connects to Redis.
    pub async fn open(backend: &Backend, cfg: StoreConfig) -> Result<Self, StoreError> {
        Ok(match backend {
            Backend::Memory { data_dir } => {
                let dir = data_dir.clone();
                let store =
                    tokio::task::spawn_blocking(move || MemoryStore::open(dir.as_deref(), cfg))
                        .await
                        .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
                Self::Memory(store)
            }
            Backend::Redis { url, prefix } => {
                Self::Redis(RedisStore::open(url, prefix, cfg).await?)
            }
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    pub fn config(&self) -> &StoreConfig {
        match self {
            Self::Memory(s) => s.config(),
            Self::Redis(s) => s.config(),
        }
    }

    /// Store a validated batch, all or nothing. Returns the count accepted.
    pub async fn append(
        &self,
        group: &ScalingGroup,
        samples: Vec<MetricSample>,
    ) -> Result<usize, StoreError> {
        if samples.is_empty() {
            return Ok(0);
        }
        match self {
            Self::Memory(s) => s.append(group, samples).await,
            Self::Redis(s) => s.append(group, samples).await,
        }
    }

    /// Every group with its counts, sorted by name.
    pub async fn groups(&self) -> Result<Vec<GroupSummary>, StoreError> {
        let mut g = match self {
            Self::Memory(s) => s.groups(),
            Self::Redis(s) => s.groups().await?,
        };
        g.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(g)
    }

    /// Samples of a group with timestamp >= `since`, oldest first.
    pub async fn samples_since(
        &self,
        group: &ScalingGroup,
        since: i64,
    ) -> Result<Vec<MetricSample>, StoreError> {
        match self {
            Self::Memory(s) => Ok(s.samples_since(group, since)),
            Self::Redis(s) => s.samples_since(group, since).await,
        }
    }

    /// Newest sample timestamp of a group, `None` for an unknown group.
    pub async fn newest(&self, group: &ScalingGroup) -> Result<Option<i64>, StoreError> {
        Ok(self.span(group).await?.map(|(_, newest)| newest))
    }

    /// Oldest and newest sample timestamps of a group.
    pub async fn span(&self, group: &ScalingGroup) -> Result<Option<(i64, i64)>, StoreError> {
        match self {
            Self::Memory(s) => Ok(s.span(group)),
            Self::Redis(s) => s.span(group).await,
        }
    }

    /// The last `steps` grid rows of a group, ending at its newest sample's
    /// bucket; `None` for an unknown group. Rows inside a long gap are
    /// `Missing`; steps before the group's first sample are not invented,
    /// so the window is shorter than asked while history is short.
    ///
    /// With Redis unreachable, the last window this process read for the
    /// group (same length) is answered instead, and counted in
    /// [`WindowStore::fallback_reads`]: decisions go on from what was last
    /// seen while pushes are refused.
    pub async fn window(
        &self,
        group: &ScalingGroup,
        steps: usize,
    ) -> Result<Option<MetricWindow>, StoreError> {
        let r = self.window_fresh(group, steps).await;
        if let Self::Redis(s) = self {
            match &r {
                Ok(Some(w)) => s.last.put(group, steps, w),
                Err(StoreError::Redis(e)) => {
                    if let Some(w) = s.last.get(group, steps) {
                        tracing::warn!(group = %group, error = %e, "store: redis unreachable; answering the last window read");
                        return Ok(Some(w));
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Reads answered from the in-process copy while Redis was down.
    pub fn fallback_reads(&self) -> u64 {
        match self {
            Self::Memory(_) => 0,
            Self::Redis(s) => s.last.fallbacks(),
        }
    }

    async fn window_fresh(
        &self,
        group: &ScalingGroup,
        steps: usize,
    ) -> Result<Option<MetricWindow>, StoreError> {
        let Some((oldest, newest)) = self.span(group).await? else {
            return Ok(None);
        };
        let cfg = self.config();
        let end = grid::bucket(newest, cfg.step);
        let since = end - (steps.max(1) as i64 - 1) * cfg.step;
        let start = since.max(grid::bucket(oldest, cfg.step));
        // Read a little before the window so a short gap across its start
        // is interpolated exactly as it would be inside it.
        let lead = (cfg.max_gap_steps as i64 + 1) * cfg.step;
        let samples = self.samples_since(group, start - lead).await?;
        let mut w = grid::grid(&samples, cfg.grid_spec());
        w.rows.retain(|r| r.timestamp >= start);
        let first = w.rows.first().map_or(end + cfg.step, |r| r.timestamp);
        let pad: Vec<WindowRow> = (0..(first - start) / cfg.step)
            .map(|k| WindowRow::missing(start + k * cfg.step))
            .collect();
        w.rows.splice(0..0, pad);
        Ok(Some(w))
    }

    /// Is the backend reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(s) => s.ping().await,
        }
    }
}

/// Windows kept in process for reads while Redis is down.
const LAST_WINDOWS: usize = 20_000;

/// The last window read per (group, length), bounded.
#[derive(Debug)]
pub struct LastWindows {
    map: parking_lot::Mutex<std::collections::HashMap<(ScalingGroup, usize), MetricWindow>>,
    capacity: usize,
    fallbacks: std::sync::atomic::AtomicU64,
}

impl LastWindows {
    fn new(capacity: usize) -> Self {
        Self {
            map: parking_lot::Mutex::new(std::collections::HashMap::new()),
            capacity,
            fallbacks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn put(&self, group: &ScalingGroup, steps: usize, w: &MetricWindow) {
        let mut m = self.map.lock();
        let key = (group.clone(), steps);
        if !m.contains_key(&key) && m.len() >= self.capacity {
            // Full: drop an arbitrary entry (any window is as good a
            // fallback as another).
            if let Some(k) = m.keys().next().cloned() {
                m.remove(&k);
            }
        }
        m.insert(key, w.clone());
    }

    fn get(&self, group: &ScalingGroup, steps: usize) -> Option<MetricWindow> {
        let w = self.map.lock().get(&(group.clone(), steps)).cloned();
        if w.is_some() {
            self.fallbacks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        w
    }

    fn fallbacks(&self) -> u64 {
        self.fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The retention cutoff after a batch, refusing samples already past it.
fn check_retention(
    newest_stored: Option<i64>,
    samples: &[MetricSample],
    retention: i64,
) -> Result<i64, StoreError> {
    let batch_max = samples
        .iter()
        .map(|s| s.timestamp)
        .max()
        .unwrap_or(i64::MIN);
    let newest = newest_stored.map_or(batch_max, |n| n.max(batch_max));
    let cutoff = newest - retention;
    if let Some((index, s)) = samples
        .iter()
        .enumerate()
        .find(|(_, s)| s.timestamp < cutoff)
    {
        return Err(StoreError::TooOld {
            index,
            timestamp: s.timestamp,
            cutoff,
            retention,
        });
    }
    Ok(cutoff)
}
