//! In-process backend: a map per group, made durable by an append-only log.
//!
//! Every accepted batch is written to `<data_dir>/samples.log` as one JSON
//! line and fsync'd *before* the request is acknowledged, so a crash or a
//! restart loses nothing that was acknowledged. On start the log is replayed
//! (a torn last line, from a crash mid-write, was never acknowledged and is
//! dropped with a warning) and compacted to one line per group. The log is
//! compacted again whenever it has grown to twice its compacted size.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::{GroupSummary, StoreConfig, StoreError, check_retention};
use crate::domain::{MetricSample, ScalingGroup, rfc3339};

type Series = BTreeMap<i64, MetricSample>;

#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: StoreConfig,
    state: RwLock<HashMap<ScalingGroup, Series>>,
    /// Also serialises writers, so log order equals apply order.
    log: Mutex<Option<Log>>,
}

#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: File,
    bytes: u64,
    compact_at: u64,
}

#[derive(Deserialize)]
struct LogLine {
    g: ScalingGroup,
    s: Vec<MetricSample>,
}

#[derive(Serialize)]
struct LogLineRef<'a> {
    g: &'a ScalingGroup,
    s: &'a [MetricSample],
}

fn encode_line(g: &ScalingGroup, s: &[MetricSample]) -> Result<Vec<u8>, StoreError> {
    let mut line =
        serde_json::to_vec(&LogLineRef { g, s }).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

/// Smallest size at which the log is compacted.
const MIN_COMPACT_BYTES: u64 = 64 << 20;

impl MemoryStore {
    /// Open (and replay) the store; `None` keeps nothing on disk.
    pub fn open(dir: Option<&Path>, cfg: StoreConfig) -> Result<Self, StoreError> {
        let mut state = HashMap::new();
        let log = match dir {
            None => None,
            Some(dir) => {
                fs::create_dir_all(dir)?;
                let path = dir.join("samples.log");
                if path.exists() {
                    replay(&path, &mut state, cfg.retention_seconds)?;
                }
                Some(compact(&path, &state)?)
            }
        };
        if let Some(l) = &log {
            let n: usize = state.values().map(BTreeMap::len).sum();
            tracing::info!(path = %l.path.display(), groups = state.len(), samples = n, "replayed sample log");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                state: RwLock::new(state),
                log: Mutex::new(log),
            }),
        })
    }

    /// The samples of a data directory, read without touching it (no
    /// compaction, no log kept open): for tools such as `forescale
    /// retrain` that read a running service's store beside it. A torn
    /// last line, a batch being written, is skipped as at start-up.
    pub fn open_read_only(dir: &Path, cfg: StoreConfig) -> Result<Self, StoreError> {
        let mut state = HashMap::new();
        let path = dir.join("samples.log");
        if !path.exists() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no sample log", path.display()),
            )));
        }
        replay(&path, &mut state, cfg.retention_seconds)?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                state: RwLock::new(state),
                log: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    pub async fn append(
        &self,
        group: &ScalingGroup,
        samples: Vec<MetricSample>,
    ) -> Result<usize, StoreError> {
        let inner = Arc::clone(&self.inner);
        let group = group.clone();
        // The fsync blocks: keep it off the async workers.
        tokio::task::spawn_blocking(move || inner.append(&group, samples))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }

    pub fn groups(&self) -> Vec<GroupSummary> {
        let state = self.inner.state.read();
        state
            .iter()
            .filter_map(|(g, s)| {
                let (first, _) = s.first_key_value()?;
                let (last, _) = s.last_key_value()?;
                Some(GroupSummary {
                    group: g.clone(),
                    samples: s.len() as u64,
                    first_timestamp: rfc3339(*first),
                    last_timestamp: rfc3339(*last),
                })
            })
            .collect()
    }

    pub fn samples_since(&self, group: &ScalingGroup, since: i64) -> Vec<MetricSample> {
        let state = self.inner.state.read();
        state
            .get(group)
            .map(|s| s.range(since..).map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }

    pub fn span(&self, group: &ScalingGroup) -> Option<(i64, i64)> {
        let state = self.inner.state.read();
        let s = state.get(group)?;
        Some((*s.first_key_value()?.0, *s.last_key_value()?.0))
    }
}

impl Inner {
    fn append(
        &self,
        group: &ScalingGroup,
        samples: Vec<MetricSample>,
    ) -> Result<usize, StoreError> {
        let mut log = self.log.lock();
        let newest = {
            let state = self.state.read();
            state
                .get(group)
                .and_then(|s| s.last_key_value())
                .map(|(t, _)| *t)
        };
        let cutoff = check_retention(newest, &samples, self.cfg.retention_seconds)?;
        if let Some(log) = log.as_mut() {
            let line = encode_line(group, &samples)?;
            log.file.write_all(&line)?;
            log.file.sync_data()?;
            log.bytes += line.len() as u64;
        }
        let n = samples.len();
        apply(&mut self.state.write(), group, samples, cutoff);
        if let Some(log) = log.as_mut().filter(|l| l.bytes >= l.compact_at) {
            *log = compact(&log.path, &self.state.read())?;
        }
        Ok(n)
    }
}

fn apply(
    state: &mut HashMap<ScalingGroup, Series>,
    group: &ScalingGroup,
    samples: Vec<MetricSample>,
    cutoff: i64,
) {
    let series = state.entry(group.clone()).or_default();
    for s in samples {
        series.insert(s.timestamp, s);
    }
    // Retention: everything strictly older than the cutoff goes.
    let keep = series.split_off(&cutoff);
    *series = keep;
}

fn replay(
    path: &Path,
    state: &mut HashMap<ScalingGroup, Series>,
    retention: i64,
) -> Result<(), StoreError> {
    let reader = BufReader::new(File::open(path)?);
    let mut lines = reader.split(b'\n').enumerate().peekable();
    while let Some((no, line)) = lines.next() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<LogLine>(&line) {
            Ok(l) => {
                let newest = state
                    .get(&l.g)
                    .and_then(|s| s.last_key_value())
                    .map(|(t, _)| *t);
                let batch_max = l.s.iter().map(|s| s.timestamp).max().unwrap_or(i64::MIN);
                let cutoff = newest.map_or(batch_max, |n| n.max(batch_max)) - retention;
                apply(state, &l.g, l.s, cutoff);
            }
            Err(e) if lines.peek().is_none() => {
                tracing::warn!(line = no + 1, error = %e, "dropping a torn last line of the sample log (never acknowledged)");
            }
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "{} line {}: {e}",
                    path.display(),
                    no + 1
                )));
            }
        }
    }
    Ok(())
}

/// Rewrite the log as one line per group, atomically (write, fsync, rename).
fn compact(path: &Path, state: &HashMap<ScalingGroup, Series>) -> Result<Log, StoreError> {
    let tmp = path.with_extension("log.tmp");
    let mut bytes = 0u64;
    {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for (g, s) in state {
            let samples: Vec<MetricSample> = s.values().cloned().collect();
            let line = encode_line(g, &samples)?;
            out.write_all(&line)?;
            bytes += line.len() as u64;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        File::open(dir)?.sync_all()?;
    }
    let file = OpenOptions::new().append(true).open(path)?;
    Ok(Log {
        path: path.to_owned(),
        file,
        bytes,
        compact_at: (bytes * 2).max(MIN_COMPACT_BYTES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_last_line_is_dropped_but_earlier_lines_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.log");
        let g = ScalingGroup::parse("g").unwrap();
        let mut text = encode_line(&g, &[MetricSample::cpu_only(600, 1.0)]).unwrap();
        text.extend_from_slice(br#"{"g":"g","s":[{"t":9"#);
        fs::write(&path, text).unwrap();
        let store = MemoryStore::open(Some(dir.path()), StoreConfig::default()).unwrap();
        assert_eq!(store.samples_since(&g, 0).len(), 1);
        // Compaction rewrote the log without the torn line.
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn a_read_only_open_reads_the_log_and_leaves_it_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.log");
        let g = ScalingGroup::parse("g").unwrap();
        let mut text = encode_line(&g, &[MetricSample::cpu_only(600, 1.0)]).unwrap();
        text.extend(encode_line(&g, &[MetricSample::cpu_only(900, 2.0)]).unwrap());
        text.extend_from_slice(br#"{"g":"g","s":[{"t":9"#);
        fs::write(&path, &text).unwrap();
        let store = MemoryStore::open_read_only(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(store.samples_since(&g, 0).len(), 2);
        assert_eq!(fs::read(&path).unwrap(), text, "not compacted");
        let empty = tempfile::tempdir().unwrap();
        let e = MemoryStore::open_read_only(empty.path(), StoreConfig::default()).unwrap_err();
        assert!(e.to_string().contains("no sample log"), "{e}");
    }

    #[test]
    fn corrupt_middle_line_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("samples.log"), "garbage\n{}\n").unwrap();
        let err = MemoryStore::open(Some(dir.path()), StoreConfig::default()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }
}
