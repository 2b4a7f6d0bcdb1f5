//! The policy stage: forecasts and the group's state in, a desired
//! capacity out. `reference` holds the protocol's reference policies,
//! `guardrails` the limits applied after any policy.
//!
//! Units are instances and steps (5 minutes): each instance serves one
//! unit of load, and ready capacity must keep utilisation at or under
//! [`SLA_UTILISATION`] (POLICY_EVAL.md (docs/policy-evaluation.md)).

pub mod guardrails;
pub mod recommend;
pub mod reference;
pub mod rl;
pub mod sla;
pub mod versions;

pub use guardrails::{GroupState, Guard, Guarded, GuardrailSettings, Guardrails};
pub use reference::{Policy, PolicyKind};

pub const MIN_CAPACITY: u32 = 1;
pub const MAX_CAPACITY: u32 = 100;
/// 0.384 USD per instance-hour.
pub const COST_PER_STEP: f64 = 0.032;
/// Steps per hour.
pub const STEPS_PER_HOUR: f64 = 12.0;
/// Ready capacity must keep utilisation at or under this.
pub const SLA_UTILISATION: f64 = 0.9;

/// Instances needed to serve `d` within the SLA.
pub fn needed(d: f64) -> u32 {
    ((d / SLA_UTILISATION) - 1e-9).ceil().max(0.0) as u32
}

/// Whether ready capacity serves load `d` within the SLA.
pub fn within_sla(d: f64, ready: u32) -> bool {
    d <= SLA_UTILISATION * f64::from(ready) + 1e-9
}

/// What a policy sees at the start of step `t`.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub t: usize,
    /// Unix time of step t.
    pub timestamp: i64,
    /// Load of steps 0..t (the newest is t-1).
    pub history: &'a [f64],
    /// Ready instances now.
    pub ready: u32,
    /// Launches still warming up.
    pub pending: u32,
    /// Ready instances during step t-1.
    pub last_ready: u32,
    /// Quantiles (p10, p50, p90) for steps t, t+1, ..., made from the
    /// load up to t-1; None when the policy runs without a forecaster.
    pub forecast: Option<&'a [[f32; 3]]>,
}

impl Observation<'_> {
    pub fn total(&self) -> u32 {
        self.ready + self.pending
    }

    /// Load of the last step (0 before any).
    pub fn last_load(&self) -> f64 {
        self.history.last().copied().unwrap_or(0.0)
    }
}
