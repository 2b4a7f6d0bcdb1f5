//! The audit log of the actuator: every write (and every write that
//! forecast-only mode held back), with its reason and outcome.
//!
//! Kept in memory (the newest [`KEEP_PER_GROUP`] per group) for
//! `GET /v1/groups/{group}/actions`, and appended as one JSON line per
//! entry, fsync'd, to `actuator-audit.jsonl` in the data dir when one is
//! set; start-up reads that file back, so the audit survives restarts.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::ActionSpec;
use crate::domain::ScalingGroup;

/// Entries kept in memory per group.
pub const KEEP_PER_GROUP: usize = 500;

/// One audited write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: i64,
    pub group: String,
    /// `put`, `delete`, or `dry_run` (forecast-only: computed, not written).
    pub kind: String,
    pub put: Vec<AuditAction>,
    pub delete: Vec<String>,
    pub reason: String,
    pub outcome: String,
}

/// An action as recorded in the audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditAction {
    pub name: String,
    pub start: i64,
    pub desired_capacity: Option<u32>,
    pub min_size: Option<u32>,
}

impl AuditEntry {
    pub fn new(
        group: &ScalingGroup,
        kind: &str,
        put: Vec<ActionSpec>,
        delete: Vec<String>,
        reason: &str,
        outcome: &str,
    ) -> Self {
        Self {
            at: chrono::Utc::now().timestamp(),
            group: group.to_string(),
            kind: kind.to_owned(),
            put: put
                .into_iter()
                .map(|a| AuditAction {
                    name: a.name,
                    start: a.start,
                    desired_capacity: a.desired_capacity,
                    min_size: a.min_size,
                })
                .collect(),
            delete,
            reason: reason.to_owned(),
            outcome: outcome.to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_group: BTreeMap<String, VecDeque<AuditEntry>>,
    file: Option<File>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct AuditLog {
    inner: Mutex<Inner>,
    path: Option<PathBuf>,
}

impl AuditLog {
    /// In memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Backed by `dir/actuator-audit.jsonl` (created if missing; existing
    /// entries are read back; a torn last line is skipped).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("actuator-audit.jsonl");
        let mut by_group: BTreeMap<String, VecDeque<AuditEntry>> = BTreeMap::new();
        if path.exists() {
            for line in BufReader::new(File::open(&path)?).lines() {
                let line = line?;
                if let Ok(e) = serde_json::from_str::<AuditEntry>(&line) {
                    push(by_group.entry(e.group.clone()).or_default(), e);
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                by_group,
                file: Some(file),
            }),
            path: Some(path),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Record an entry (and persist it when file-backed). A failing disk is
    /// logged, never fatal: the write it describes has already happened.
    pub fn record(&self, entry: AuditEntry) {
        let mut inner = self.inner.lock();
        if let Some(f) = inner.file.as_mut() {
            let line = serde_json::to_string(&entry).unwrap_or_default();
            if let Err(e) = writeln!(f, "{line}").and_then(|()| f.sync_data()) {
                tracing::error!(error = %e, "actuator audit: could not persist an entry");
            }
        }
        push(
            inner.by_group.entry(entry.group.clone()).or_default(),
            entry,
        );
    }

    /// The group's entries, newest first.
    pub fn for_group(&self, group: &str, limit: usize) -> Vec<AuditEntry> {
        let inner = self.inner.lock();
        inner
            .by_group
            .get(group)
            .map(|q| q.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default()
    }
}

fn push(q: &mut VecDeque<AuditEntry>, e: AuditEntry) {
    if q.len() == KEEP_PER_GROUP {
        q.pop_front();
    }
    q.push_back(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = ScalingGroup::parse("web").expect("name");
        {
            let log = AuditLog::open(dir.path()).expect("open");
            log.record(AuditEntry::new(
                &g,
                "put",
                Vec::new(),
                vec!["a".into()],
                "r1",
                "ok",
            ));
            log.record(AuditEntry::new(
                &g,
                "delete",
                Vec::new(),
                vec!["b".into()],
                "r2",
                "ok",
            ));
        }
        let log = AuditLog::open(dir.path()).expect("reopen");
        let got = log.for_group("web", 10);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].reason, "r2");
        assert_eq!(got[1].delete, vec!["a".to_owned()]);
        assert!(log.for_group("other", 10).is_empty());
    }
}
