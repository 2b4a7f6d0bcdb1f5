//! The use-case layer: what the service does, between the pipeline stages
//! and the edges (HTTP, command line).
//!
//! - [`AppState`]: what every use case shares; [`config`] builds it from
//!   the service's configuration (the composition root).
//! - [`forecast`]: a cached forecast of a window or a stored group.
//! - [`accuracy`]: each group's accuracy ledger, brought up to date from
//!   its samples.
//! - [`decision`]: a decision cycle for one group or a fleet.
//! - [`control`]: the control loop (pull -> store -> forecast -> plan ->
//!   actuator), one tick at a time.
//! - [`improve`]: the background retrain of the scaling policy.
//!
//! Errors are [`AppError`]; the HTTP layer maps them to statuses. The
//! background loops take a [`Shutdown`] and stop between ticks.

pub mod accuracy;
pub mod auth;
pub mod config;
pub mod control;
pub mod decision;
mod error;
pub mod forecast;
pub mod improve;

use std::collections::HashMap;
use std::sync::Arc;

pub use config::ServiceConfig;
pub use error::AppError;

use crate::actuator::Actuator;
use crate::cache::EmbeddingCache;
use crate::domain::ScalingGroup;
use crate::forecast::ModelRegistry;
use crate::ingest::IngestLimits;
use crate::metrics::Metrics;
use crate::policy::GuardrailSettings;
use crate::policy::rl::LivePolicy;
use crate::store::WindowStore;

/// Everything a use case may use.
#[derive(Debug)]
pub struct AppState {
    pub store: WindowStore,
    pub metrics: Metrics,
    pub ingest: IngestLimits,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Model used when a forecast request names none.
    pub default_model: String,
    /// The baselines and the trained models loaded at start.
    pub models: ModelRegistry,
    /// Encoder outputs of recent windows.
    pub cache: EmbeddingCache,
    /// The scheduled-action writer, when groups are managed.
    pub actuator: Option<Arc<Actuator>>,
    /// Tokens that writes need; `None` = open.
    pub tokens: Option<auth::ApiTokens>,
    /// The trained scaling policy (`models/policy`); recommendations fall
    /// back to AWS-style predictive scaling without it.
    pub policy: LivePolicy,
    /// Guardrail settings per group (`--group-settings`); a group not
    /// named gets the defaults.
    pub group_settings: Arc<HashMap<ScalingGroup, GuardrailSettings>>,
    /// Every group's accuracy ledger.
    pub ledgers: accuracy::LedgerBook,
}

impl AppState {
    /// The group's guardrails: its settings, or the defaults.
    pub fn guardrails(&self, group: &ScalingGroup) -> GuardrailSettings {
        self.group_settings.get(group).cloned().unwrap_or_default()
    }
}

/// Tells background loops to stop: [`Shutdown::signal`] once, and every
/// clone's [`Shutdown::wait`] returns.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<tokio::sync::watch::Sender<bool>>,
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        Self {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Shutdown {
    /// Ask every loop holding a clone to stop.
    pub fn signal(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_signalled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Returns once [`Shutdown::signal`] was called (at once if it was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone: nobody can signal any more,
        // which for a loop is the same as being told to stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
