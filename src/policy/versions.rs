//! The versioned policy folder: the live policy (`model.safetensors`,
//! `policy.json`, `training.json`) with every earlier version archived
//! under `versions/v<N>/`, and `promotions.jsonl`, the log of every
//! retrain decision and rollback. A promotion archives the live files,
//! then replaces each one atomically (fsync, rename, fsync the folder), so
//! a crash leaves either the old version or the new one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Device, Tensor};
use serde::Serialize;

use super::rl::{PolicyConfig, RlPolicy};

/// A versioned policy folder (see the module doc).
#[derive(Debug, Clone)]
pub struct PolicyDir {
    pub path: PathBuf,
}

/// Files of a policy version.
const FILES: [&str; 3] = ["model.safetensors", "policy.json", "training.json"];

impl PolicyDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The live policy and all its weights (actor and critic).
    pub fn load(&self) -> anyhow::Result<(RlPolicy, HashMap<String, Tensor>)> {
        let policy = RlPolicy::load(&self.path)?;
        let w = self.path.join("model.safetensors");
        let weights = candle_core::safetensors::load(&w, &Device::Cpu)
            .with_context(|| w.display().to_string())?;
        Ok((policy, weights))
    }

    /// Where version `v` is archived.
    pub fn version_dir(&self, v: u32) -> PathBuf {
        self.path.join("versions").join(format!("v{v}"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.path.join("promotions.jsonl")
    }

    /// Make `weights` the live policy as a new version whose parent is
    /// `from` (the live policy for a promotion, an archived one for a
    /// rollback): archive the live files under `versions/v<N>/`, then
    /// write the new ones. Returns the new version.
    pub fn promote(
        &self,
        weights: &HashMap<String, Tensor>,
        from: &PolicyConfig,
        training: &serde_json::Value,
    ) -> anyhow::Result<u32> {
        let live = RlPolicy::load(&self.path)?.config;
        let archive = self.version_dir(live.version);
        std::fs::create_dir_all(&archive).with_context(|| archive.display().to_string())?;
        for f in FILES {
            let from = self.path.join(f);
            if from.is_file() {
                std::fs::copy(&from, archive.join(f))
                    .with_context(|| format!("archiving {}", from.display()))?;
            }
        }
        let version = self.next_version(live.version)?;
        let config = PolicyConfig {
            version,
            parent: Some(from.version),
            ..from.clone()
        };
        let tmp = self.path.join(".model.safetensors.new");
        candle_core::safetensors::save(weights, &tmp)?;
        replace(&tmp, &self.path.join("model.safetensors"))?;
        write_replacing(
            &self.path.join("policy.json"),
            &serde_json::to_vec_pretty(&config)?,
        )?;
        write_replacing(
            &self.path.join("training.json"),
            &serde_json::to_vec_pretty(training)?,
        )?;
        Ok(version)
    }

    /// One above every version live or archived, so that a number is
    /// never given twice (a rollback makes a new version too).
    fn next_version(&self, live: u32) -> anyhow::Result<u32> {
        let mut top = live;
        let versions = self.path.join("versions");
        if versions.is_dir() {
            for e in std::fs::read_dir(&versions)? {
                let name = e?.file_name();
                if let Some(v) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix('v')?.parse().ok())
                {
                    top = top.max(v);
                }
            }
        }
        Ok(top + 1)
    }

    /// Serve archived version `to` again, as a new version (parent
    /// `to`); the live one is archived first. Logged.
    pub fn rollback(&self, to: u32) -> anyhow::Result<u32> {
        let (live, _) = self.load()?;
        let src = self.version_dir(to);
        let (old, weights) = PolicyDir::new(&src)
            .load()
            .with_context(|| format!("version {to} is not archived in {}", src.display()))?;
        let training = match std::fs::read(src.join("training.json")) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        };
        let v = self.promote(
            &weights,
            &old.config,
            &serde_json::json!({"rollback_of": to, "training": training}),
        )?;
        self.log_line(&serde_json::json!({
            "at": crate::domain::rfc3339(chrono::Utc::now().timestamp()),
            "rollback": {"from": live.config.version, "to": to, "new_version": v},
        }))?;
        Ok(v)
    }

    /// Append a decision to `promotions.jsonl` (fsync'd).
    pub fn log(&self, d: &impl Serialize) -> anyhow::Result<()> {
        self.log_line(d)
    }

    fn log_line(&self, d: &impl Serialize) -> anyhow::Result<()> {
        let path = self.log_path();
        let mut line = serde_json::to_vec(d)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| path.display().to_string())?;
        f.write_all(&line)?;
        f.sync_all()?;
        Ok(())
    }

    /// Every logged decision, oldest first.
    pub fn decisions(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let path = self.log_path();
        if !path.exists() {
            return Ok(Vec::new());
        }
        std::fs::read_to_string(&path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| path.display().to_string()))
            .collect()
    }
}

fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).with_context(|| tmp.display().to_string())?;
    replace(&tmp, path)
}

/// fsync `tmp`, then rename it over `path`.
fn replace(tmp: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, path)
        .with_context(|| format!("{} -> {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
