//! A capacity recommendation for one group: the policy's decision now
//! (after guardrails) and a plan for the next steps, with an explanation.

use serde::Serialize;

use super::guardrails::{GroupState, Guard, GuardrailSettings, Guardrails};
use super::reference::Predictive;
use super::rl::RlPolicy;
use super::{Observation, Policy};

/// Which policy decides.
#[derive(Debug, Clone)]
pub enum Decider {
    /// The trained policy.
    Rl(RlPolicy),
    /// AWS-style predictive: forecast p50 at 50 %, never under target
    /// tracking (when no trained policy is shipped).
    Predictive,
}

impl Decider {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Rl(_) => "rl",
            Self::Predictive => "predictive",
        }
    }
}

/// The inputs, in instance units: each instance serves 1 unit (100 %
/// CPU of one instance).
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// Load per past step, oldest first (NaN where missing).
    pub history: &'a [f64],
    /// p10, p50, p90 of the load for the next steps.
    pub forecast: &'a [[f32; 3]],
    /// Instances in service now.
    pub capacity_now: u32,
    /// The newest data is too old to scale in on.
    pub stale: bool,
}

/// What to run now and next.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub policy: &'static str,
    /// The policy's choice, before guardrails.
    pub proposed_now: u32,
    /// After guardrails.
    pub desired_now: u32,
    /// What the policy provisioned for (e.g. "p90 of the next 3 steps
    /// +10 %").
    pub reason: String,
    pub guardrails_fired: Vec<Guard>,
    /// Forecast p50 of the next step / desired_now.
    pub expected_utilisation: f64,
    /// Desired capacity for each forecast step.
    pub plan: Vec<u32>,
}

fn observation<'a>(
    history: &'a [f64],
    forecast: &'a [[f32; 3]],
    total: u32,
    capacity_now: u32,
) -> Observation<'a> {
    Observation {
        t: history.len(),
        timestamp: 0,
        history,
        ready: total,
        pending: 0,
        last_ready: capacity_now,
        forecast: Some(forecast),
    }
}

/// Decide now and plan ahead. The guardrails apply to the decision now;
/// the plan is clamped to min and max.
pub fn recommend(decider: &Decider, s: &Situation, settings: &GuardrailSettings) -> Recommendation {
    let mut policy: Box<dyn Policy> = match decider {
        Decider::Rl(p) => Box::new(p.clone()),
        Decider::Predictive => Box::new(Predictive::default()),
    };
    let last = s.history.last().copied().filter(|d| d.is_finite());
    let now = observation(s.history, s.forecast, s.capacity_now, s.capacity_now);
    let proposed = policy.decide(&now);
    // Read now, before the plan below makes more decisions.
    let reason = policy.explain().unwrap_or_else(|| {
        "forecast p50 of the next 3 steps at 50 %, at least target tracking".into()
    });
    let mut rails = Guardrails::new(settings.clone());
    let (desired_now, fired) = rails.apply(
        proposed,
        GroupState {
            total: s.capacity_now,
            last_ready: s.capacity_now,
            last_load: if s.stale { None } else { last },
        },
    );
    // The plan: the same policy on each later step's forecast, with the
    // forecast p50 standing in for the load not yet seen.
    let mut hist: Vec<f64> = s.history.to_vec();
    let mut total = desired_now;
    let mut plan = Vec::with_capacity(s.forecast.len());
    for k in 0..s.forecast.len() {
        let want = if k == 0 {
            desired_now
        } else {
            hist.push(f64::from(s.forecast[k - 1][1]));
            policy
                .decide(&observation(&hist, &s.forecast[k..], total, total))
                .clamp(settings.min, settings.max)
        };
        plan.push(want);
        total = want;
    }
    let next = s.forecast.first().map_or(0.0, |q| f64::from(q[1]));
    Recommendation {
        policy: decider.name(),
        proposed_now: proposed,
        desired_now,
        reason,
        guardrails_fired: fired,
        expected_utilisation: next / f64::from(desired_now.max(1)),
        plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictive_recommendation_plans_and_explains() {
        let hist = [4.0, 4.0, 5.0];
        let fc: Vec<[f32; 3]> = (0..6).map(|k| [4.0, 5.0 + k as f32, 8.0]).collect();
        let s = Situation {
            history: &hist,
            forecast: &fc,
            capacity_now: 10,
            stale: false,
        };
        let r = recommend(&Decider::Predictive, &s, &GuardrailSettings::default());
        // Max p50 over 3 steps = 7 at 50 % -> 14; target tracking 10.
        assert_eq!(r.proposed_now, 14);
        assert_eq!(r.desired_now, 14);
        assert!(r.guardrails_fired.is_empty());
        // Later steps: the rising p50 (6, 7, ... 10) at 50 %.
        assert_eq!(r.plan, vec![14, 16, 18, 20, 20, 20]);
        assert!((r.expected_utilisation - 5.0 / 14.0).abs() < 1e-9);
    }

    #[test]
    fn stale_data_never_scales_in() {
        let hist = [1.0];
        let fc = [[0.5, 0.5, 0.5]; 3];
        let s = Situation {
            history: &hist,
            forecast: &fc,
            capacity_now: 10,
            stale: true,
        };
        let r = recommend(&Decider::Predictive, &s, &GuardrailSettings::default());
        assert!(r.proposed_now < 10);
        assert_eq!(r.desired_now, 10);
        assert_eq!(r.guardrails_fired, vec![Guard::StaleData]);
    }
}
