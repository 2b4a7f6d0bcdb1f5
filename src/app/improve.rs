//! The background retrain of `serve --retrain-every-hours`: every period,
//! the groups' recent history in the service's own store -> a candidate
//! policy trained and judged in the simulator (`crate::train::retrain`) ->
//! on promotion, a new version in the policy folder and the service's
//! live policy swapped, from the next decision on. Off by default.
//!
//! A group with too little history is skipped; a round with none is
//! logged and skipped. A failed round is logged and counted; the live
//! policy stays. Every round's decision is in `promotions.jsonl`.

use std::sync::Arc;
use std::time::Duration;

use super::{AppState, Shutdown};
use crate::sim::Trace;
use crate::train::retrain::{self, Decision, PolicyDir, RetrainOptions};

/// Settings of the background retrain.
#[derive(Debug, Clone)]
pub struct ImproveSettings {
    pub every: Duration,
    pub policy_dir: PolicyDir,
    pub options: RetrainOptions,
    /// Only the newest this many days of each group's samples.
    pub recent_days: f64,
}

/// What one round did.
#[derive(Debug)]
pub enum Round {
    /// No group had enough history.
    Skipped(String),
    Decided(Box<Decision>),
}

/// The histories of every stored group with enough of it.
pub async fn histories(
    state: &AppState,
    opts: &RetrainOptions,
    recent_days: f64,
) -> anyhow::Result<(Vec<Trace>, Vec<String>)> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for g in state.store.groups().await? {
        let samples = state.store.samples_since(&g.group, 0).await?;
        let pts = retrain::recent(retrain::load_points(&samples), recent_days);
        match retrain::history_trace(g.group.as_str(), pts, opts) {
            Ok(t) => out.push(t),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    Ok((out, skipped))
}

/// One round: retrain on the store's groups; on promotion, serve the new
/// version.
pub async fn round(state: &AppState, settings: &ImproveSettings) -> anyhow::Result<Round> {
    let (hist, skipped) = histories(state, &settings.options, settings.recent_days).await?;
    for s in &skipped {
        tracing::info!(reason = %s, "retrain: group skipped");
    }
    if hist.is_empty() {
        return Ok(Round::Skipped(format!(
            "no group has the {} steps of history a retrain needs",
            retrain::min_history_steps(&settings.options)
        )));
    }
    let dir = settings.policy_dir.clone();
    let opts = settings.options.clone();
    let models = state.models.clone();
    let d = tokio::task::spawn_blocking(move || {
        retrain::retrain_dir(
            &dir,
            &hist,
            &models,
            &opts,
            false,
            serde_json::json!({"by": "serve --retrain-every-hours"}),
            None,
            |_, _, _| {},
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("retrain task: {e}"))??;
    if let Some(v) = d.promoted_version {
        let p = crate::policy::rl::RlPolicy::load(&settings.policy_dir.path)?;
        anyhow::ensure!(
            p.config.version == v,
            "promoted version {v}, but the folder now holds version {}",
            p.config.version
        );
        state.policy.set(p);
    }
    Ok(Round::Decided(Box::new(d)))
}

/// Run rounds until `shutdown`, the first one period after start. A round
/// under way finishes first (a promotion is never cut in half).
pub fn spawn(
    state: Arc<AppState>,
    settings: ImproveSettings,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.every);
        // A round longer than the period delays the next; rounds never
        // queue up.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => break,
            }
            let outcome = match round(&state, &settings).await {
                Ok(Round::Skipped(why)) => {
                    tracing::info!(reason = %why, "retrain: round skipped");
                    "skipped"
                }
                Ok(Round::Decided(d)) => {
                    tracing::info!(
                        promoted = d.promoted,
                        current_version = d.current_version,
                        new_version = ?d.promoted_version,
                        current_objective = d.current.objective,
                        candidate_objective = d.candidate.objective,
                        groups = d.traces.len(),
                        reason = %d.reason,
                        "retrain: decided"
                    );
                    if d.promoted { "promoted" } else { "kept" }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "retrain: round failed; the live policy stays");
                    "failed"
                }
            };
            state.metrics.retrain_round(outcome);
        }
        tracing::info!("background retrain stopped");
    })
}
