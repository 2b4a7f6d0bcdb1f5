//! A capacity recommendation for one group: the policy's decision now
//! (after guardrails) and a plan for the next steps, with an explanation.

use serde::Serialize;

use super::guardrails::{GroupState, Guard, GuardrailSettings, Guardrails};
use super::reference::Predictive;
use super::rl::RlPolicy;
use super::sla::SlaPlanner;
use super::{Observation, Policy};

/// Which policy decides.
#[derive(Debug, Clone)]
pub enum Decider {
    /// The chance-constrained planner for the group's SLA target
    /// ([`super::sla`]), the default.
    Sla,
    /// The trained policy.
    Rl(RlPolicy),
    /// AWS-style predictive: forecast p50 at 50 %, never under target
    /// tracking (when no trained policy is shipped).
    Predictive,
}

impl Decider {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sla => "sla",
            Self::Rl(_) => "rl",
            Self::Predictive => "predictive",
        }
    }

    /// The trained policy's version (None for predictive scaling).
    pub fn version(&self) -> Option<u32> {
        match self {
            Self::Rl(p) => Some(p.config.version),
            Self::Sla | Self::Predictive => None,
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
    /// The group's guardrails (its configured settings, or the cycle's),
    /// with its SLA target.
    pub guardrails: &'a GuardrailSettings,
    /// Per past step (aligned with `history`): utilisation was over the
    /// SLA's 90 %.
    pub over_sla: &'a [bool],
}

/// What the SLA planner provisioned for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SlaExplanation {
    /// The group's target: the share of steps with utilisation at or
    /// under 90 %.
    pub target: f64,
    /// The quantile of the group's recent forecast errors provisioned
    /// for (the target, moved by the service level achieved).
    pub quantile: f64,
    /// Share of the recent steps (up to two days) within the SLA (None
    /// without data).
    pub achieved_recent: Option<f64>,
}

/// What to run now and next.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub policy: &'static str,
    /// Version of the trained policy that decided (None for predictive).
    pub policy_version: Option<u32>,
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
    /// With the SLA planner: its target and the quantile provisioned for.
    pub sla: Option<SlaExplanation>,
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
pub fn recommend(decider: &Decider, s: &Situation) -> Recommendation {
    let settings = s.guardrails;
    let mut sla = None;
    let mut policy: Box<dyn Policy> = match decider {
        Decider::Sla => {
            let p = SlaPlanner::warmed(settings.sla_target, s.history, s.over_sla);
            sla = Some(SlaExplanation {
                target: settings.sla_target,
                quantile: p.level(),
                achieved_recent: p.achieved(),
            });
            Box::new(p)
        }
        Decider::Rl(p) => Box::new(p.clone()),
        Decider::Predictive => Box::new(Predictive::default()),
    };
    let now = observation(s.history, s.forecast, s.capacity_now, s.capacity_now);
    let proposed = policy.decide(&now);
    // Read now, before the plan below makes more decisions.
    let reason = policy.explain().unwrap_or_else(|| {
        "forecast p50 of the next 3 steps at 50 %, at least target tracking".into()
    });
    let (desired_now, fired) = guard_now(s, proposed, settings);
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
        policy_version: decider.version(),
        proposed_now: proposed,
        desired_now,
        reason,
        guardrails_fired: fired,
        expected_utilisation: next / f64::from(desired_now.max(1)),
        plan,
        sla,
    }
}

/// The guardrails on the decision now: the group as it runs, its newest
/// load unless the data is stale.
fn guard_now(s: &Situation, proposed: u32, settings: &GuardrailSettings) -> (u32, Vec<Guard>) {
    let last = s.history.last().copied().filter(|d| d.is_finite());
    Guardrails::new(settings.clone()).apply(
        proposed,
        GroupState {
            total: s.capacity_now,
            last_ready: s.capacity_now,
            last_load: if s.stale { None } else { last },
        },
    )
}

/// [`recommend`] for many groups at once, same answers: with the trained
/// policy, every group's decision of a plan step goes through the actor
/// as one batch (each weight read once per block of groups).
pub fn recommend_many(decider: &Decider, situations: &[Situation]) -> Vec<Recommendation> {
    let Decider::Rl(p) = decider else {
        return situations.iter().map(|s| recommend(decider, s)).collect();
    };
    let n = situations.len();
    // Now: the policy, then the guardrails.
    let obs: Vec<Observation> = situations
        .iter()
        .map(|s| observation(s.history, s.forecast, s.capacity_now, s.capacity_now))
        .collect();
    let states: Vec<_> = obs.iter().map(super::rl::state).collect();
    let actions = p.actor.greedy_many(&states);
    let mut out: Vec<Recommendation> = Vec::with_capacity(n);
    let mut hists: Vec<Vec<f64>> = Vec::with_capacity(n);
    for ((s, o), &a) in situations.iter().zip(&obs).zip(&actions) {
        let proposed = super::rl::desired(o, a);
        let (desired_now, fired) = guard_now(s, proposed, s.guardrails);
        let next = s.forecast.first().map_or(0.0, |q| f64::from(q[1]));
        let mut plan = Vec::with_capacity(s.forecast.len());
        if !s.forecast.is_empty() {
            plan.push(desired_now);
        }
        out.push(Recommendation {
            policy: decider.name(),
            policy_version: decider.version(),
            proposed_now: proposed,
            desired_now,
            reason: super::rl::describe(a),
            guardrails_fired: fired,
            expected_utilisation: next / f64::from(desired_now.max(1)),
            plan,
            sla: None,
        });
        hists.push(s.history.to_vec());
    }
    // Later steps: the forecast p50 stands in for the load not yet seen.
    let steps = situations
        .iter()
        .map(|s| s.forecast.len())
        .max()
        .unwrap_or(0);
    for k in 1..steps {
        let live: Vec<usize> = (0..n)
            .filter(|&i| k < situations[i].forecast.len())
            .collect();
        for &i in &live {
            hists[i].push(f64::from(situations[i].forecast[k - 1][1]));
        }
        let obs: Vec<Observation> = live
            .iter()
            .map(|&i| {
                let total = out[i].plan[k - 1];
                observation(&hists[i], &situations[i].forecast[k..], total, total)
            })
            .collect();
        let states: Vec<_> = obs.iter().map(super::rl::state).collect();
        let actions = p.actor.greedy_many(&states);
        let wants: Vec<u32> = obs
            .iter()
            .zip(&actions)
            .zip(&live)
            .map(|((o, &a), &i)| {
                let g = situations[i].guardrails;
                super::rl::desired(o, a).clamp(g.min, g.max)
            })
            .collect();
        for (&i, want) in live.iter().zip(wants) {
            out[i].plan.push(want);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictive_recommendation_plans_and_explains() {
        let hist = [4.0, 4.0, 5.0];
        let fc: Vec<[f32; 3]> = (0..6).map(|k| [4.0, 5.0 + k as f32, 8.0]).collect();
        let s = Situation {
            over_sla: &[],
            history: &hist,
            forecast: &fc,
            capacity_now: 10,
            stale: false,
            guardrails: &GuardrailSettings::default(),
        };
        let r = recommend(&Decider::Predictive, &s);
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
            over_sla: &[],
            history: &hist,
            forecast: &fc,
            capacity_now: 10,
            stale: true,
            guardrails: &GuardrailSettings::default(),
        };
        let r = recommend(&Decider::Predictive, &s);
        assert!(r.proposed_now < 10);
        assert_eq!(r.desired_now, 10);
        assert_eq!(r.guardrails_fired, vec![Guard::StaleData]);
    }

    /// The batched path answers exactly what one group at a time answers,
    /// with the shipped policy, over varied groups (sizes, trends, stale
    /// data, short and empty forecasts).
    #[test]
    fn recommend_many_equals_recommend_one_by_one() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/policy");
        let Ok(policy) = crate::policy::rl::RlPolicy::load(&dir) else {
            panic!("models/policy is shipped with the repository");
        };
        let n = 53;
        type Group = (Vec<f64>, Vec<[f32; 3]>, u32, bool);
        let inputs: Vec<Group> = (0..n)
            .map(|i| {
                let cap = 1 + (i * 7 % 40) as u32;
                let hist: Vec<f64> = (0..24)
                    .map(|k| f64::from(cap) * (0.3 + 0.6 * ((i + k) % 9) as f64 / 9.0))
                    .collect();
                let h = if i % 11 == 0 { 0 } else { 12 - i % 4 };
                let trend = (i % 5) as f32 / 4.0 - 0.5;
                let fc: Vec<[f32; 3]> = (0..h)
                    .map(|k| {
                        let m = cap as f32 * (0.6 + trend * k as f32 / 12.0);
                        [0.8 * m, m, 1.3 * m]
                    })
                    .collect();
                (hist, fc, cap, i % 13 == 0)
            })
            .collect();
        let settings = GuardrailSettings {
            max: 60,
            ..GuardrailSettings::default()
        };
        // Every third group has guardrails of its own (a tight max).
        let own = GuardrailSettings {
            min: 2,
            max: 9,
            ..GuardrailSettings::default()
        };
        let situations: Vec<Situation> = inputs
            .iter()
            .enumerate()
            .map(|(i, (h, f, c, st))| Situation {
                over_sla: &[],
                history: h,
                forecast: f,
                capacity_now: *c,
                stale: *st,
                guardrails: if i % 3 == 0 { &own } else { &settings },
            })
            .collect();
        let decider = Decider::Rl(policy.clone());
        let many = recommend_many(&decider, &situations);
        assert_eq!(many.len(), n);
        let mut changed = 0;
        for (s, m) in situations.iter().zip(&many) {
            let one = recommend(&decider, s);
            assert_eq!(
                serde_json::to_value(&one).unwrap(),
                serde_json::to_value(m).unwrap()
            );
            changed += usize::from(one.plan.windows(2).any(|w| w[0] != w[1]));
        }
        // The plans are not all flat (the comparison above means something).
        assert!(changed > 0);
        // A group's own limits hold now and in its whole plan, and the
        // shared ones elsewhere.
        for (i, m) in many.iter().enumerate() {
            let (lo, hi) = if i % 3 == 0 { (2, 9) } else { (1, 60) };
            assert!(
                m.plan
                    .iter()
                    .chain([&m.desired_now])
                    .all(|c| (lo..=hi).contains(c)),
                "group {i}: {m:?}"
            );
        }
        assert!(
            many.iter()
                .step_by(3)
                .any(|m| m.guardrails_fired.contains(&Guard::Max))
        );
        let states: Vec<_> = (0..40)
            .map(|i| std::array::from_fn(|j| ((i * 31 + j * 7) % 23) as f32 / 10.0 - 0.5))
            .collect();
        let batch = policy.actor.greedy_many(&states);
        for (x, a) in states.iter().zip(batch) {
            assert_eq!(policy.actor.greedy(x), a);
        }
    }
}
