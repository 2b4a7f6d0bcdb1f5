//! The reference policies of POLICY_EVAL.md (docs/policy-evaluation.md).

use super::{MAX_CAPACITY, MIN_CAPACITY, Observation};
use crate::domain::Utilisation;

/// A scaling policy: the desired total capacity (ready + pending) for the
/// step about to start.
pub trait Policy {
    fn name(&self) -> String;
    /// Forget any state (before a replay).
    fn reset(&mut self);
    fn decide(&mut self, obs: &Observation) -> u32;
    /// What the last decision provisioned for, when the policy can say.
    fn explain(&self) -> Option<String> {
        None
    }
}

/// The reference policies by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Oracle,
    Threshold,
    TargetTracking,
    Predictive,
    /// Keep the current total: with guardrails after it, a reactive
    /// policy that scales out on emergencies only and never scales in.
    Hold,
}

impl PolicyKind {
    pub const NAMES: [&'static str; 5] = [
        "oracle",
        "threshold",
        "target-tracking",
        "predictive",
        "hold",
    ];

    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "oracle" => Self::Oracle,
            "threshold" | "tas" => Self::Threshold,
            "target-tracking" | "tt" => Self::TargetTracking,
            "predictive" => Self::Predictive,
            "hold" => Self::Hold,
            _ => return None,
        })
    }

    /// Whether the policy reads forecasts.
    pub fn needs_forecast(self) -> bool {
        self == Self::Predictive
    }

    /// The policy; `forecaster` names the forecasts a predictive policy
    /// reads (it becomes part of its name). None for the oracle, which is
    /// replayed as a schedule (`crate::sim::simulate_oracle`).
    pub fn build(self, forecaster: &str) -> Option<Box<dyn Policy + Send>> {
        Some(match self {
            Self::Oracle => return None,
            Self::Threshold => Box::new(Threshold::default()),
            Self::TargetTracking => Box::new(TargetTracking::default()),
            Self::Predictive => Box::new(Predictive {
                forecaster: forecaster.to_owned(),
                target: None,
            }),
            Self::Hold => Box::new(Hold),
        })
    }
}

/// Keeps the current total (what the learned policy's "hold" action does).
#[derive(Debug, Default, Clone, Copy)]
pub struct Hold;

impl Policy for Hold {
    fn name(&self) -> String {
        "hold".into()
    }

    fn reset(&mut self) {}

    fn decide(&mut self, obs: &Observation) -> u32 {
        obs.total()
    }
}

/// Threshold auto-scaling (TAS): +1 when the last step's utilisation is
/// over 70 %, -1 when under 30 %; the decision after an action is skipped
/// (a 5-minute cooldown).
#[derive(Debug, Default)]
pub struct Threshold {
    cooldown: bool,
}

impl Policy for Threshold {
    fn name(&self) -> String {
        "threshold".into()
    }

    fn reset(&mut self) {
        self.cooldown = false;
    }

    fn decide(&mut self, obs: &Observation) -> u32 {
        let total = obs.total();
        if self.cooldown {
            self.cooldown = false;
            return total;
        }
        let u = obs.last_load() / f64::from(obs.last_ready.max(1));
        let want = if u > 0.7 {
            total + 1
        } else if u < 0.3 {
            total.saturating_sub(1)
        } else {
            total
        }
        .clamp(MIN_CAPACITY, MAX_CAPACITY);
        self.cooldown = want != total;
        want
    }
}

/// Target tracking: ceil(c * u / target) of the last step (at the
/// reference 50 %, ceil(2 d[t-1])); scale-in by at most max(1, 10 % of the
/// total) a step.
#[derive(Debug, Clone, Copy)]
pub struct TargetTracking {
    /// POLICY_EVAL.md's reference is [`Utilisation::REFERENCE`] (50 %).
    pub target: Utilisation,
}

impl Default for TargetTracking {
    fn default() -> Self {
        Self {
            target: Utilisation::REFERENCE,
        }
    }
}

impl TargetTracking {
    /// The reference policy's desire (50 %).
    pub fn desired(obs: &Observation) -> u32 {
        Self::default().desired_at(obs)
    }

    pub fn desired_at(&self, obs: &Observation) -> u32 {
        let want = (obs.last_load() / self.target.fraction() - 1e-9)
            .ceil()
            .max(0.0) as u32;
        limit_scale_in(want, obs.total())
    }
}

/// Scale-in by at most max(1, 10 % of the total) a step.
fn limit_scale_in(want: u32, total: u32) -> u32 {
    if want < total {
        want.max(total - (total / 10).max(1))
    } else {
        want
    }
}

impl Policy for TargetTracking {
    fn name(&self) -> String {
        if self.target == Utilisation::REFERENCE {
            "target-tracking".into()
        } else {
            format!("target-tracking@{}", pct(self.target.fraction()))
        }
    }

    fn reset(&mut self) {}

    fn decide(&mut self, obs: &Observation) -> u32 {
        self.desired_at(obs)
    }
}

pub(crate) fn pct(x: f64) -> String {
    let p = x * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// Provision for a forecast quantile: capacity for the largest p10, p50 or
/// p90 of steps t..t+2 with a headroom, at the SLA utilisation (90 %),
/// scale-in by at most max(1, 10 % of the total) a step. One fixed action
/// of the learned policy (`crate::policy::rl::ACTIONS`), kept for every
/// step: the family the learned policy chooses from, swept to show the
/// cost / service-level trade-off. Without a forecast it reads the last
/// load.
#[derive(Debug, Clone)]
pub struct Provision {
    /// 0 = p10, 1 = p50, 2 = p90.
    pub quantile: usize,
    /// Fraction added, e.g. 0.25.
    pub headroom: f64,
    pub forecaster: String,
}

impl Policy for Provision {
    fn name(&self) -> String {
        format!(
            "provision-p{}-{}@{}",
            [10, 50, 90][self.quantile],
            self.forecaster,
            pct(self.headroom)
        )
    }

    fn reset(&mut self) {}

    fn decide(&mut self, obs: &Observation) -> u32 {
        let want = super::rl::provision_for(obs, self.quantile, self.headroom);
        limit_scale_in(want, obs.total()).clamp(MIN_CAPACITY, MAX_CAPACITY)
    }
}

/// As AWS predictive scaling: capacity for the largest forecast p50 of
/// steps t..t+2 at a 50 % target, and never less than target tracking
/// (so it never scales in on a forecast alone). Without a forecast it is
/// target tracking.
#[derive(Debug, Default)]
pub struct Predictive {
    /// The forecaster's name, for the report.
    pub forecaster: String,
    /// Target utilisation; `None`: the reference 50 %.
    pub target: Option<Utilisation>,
}

impl Policy for Predictive {
    fn name(&self) -> String {
        let base = if self.forecaster.is_empty() {
            "predictive".into()
        } else {
            format!("predictive-{}", self.forecaster)
        };
        match self.target {
            Some(t) if t != Utilisation::REFERENCE => format!("{base}@{}", pct(t.fraction())),
            _ => base,
        }
    }

    fn reset(&mut self) {}

    fn decide(&mut self, obs: &Observation) -> u32 {
        let target = self.target.unwrap_or(Utilisation::REFERENCE);
        let tt = TargetTracking { target }.desired_at(obs);
        let Some(fc) = obs.forecast else {
            return tt;
        };
        let peak = fc
            .iter()
            .take(3)
            .map(|q| f64::from(q[1]))
            .fold(0.0, f64::max);
        tt.max((peak / target.fraction() - 1e-9).ceil().max(0.0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(history: &'a [f64], ready: u32, pending: u32) -> Observation<'a> {
        Observation {
            t: history.len(),
            timestamp: 0,
            history,
            ready,
            pending,
            last_ready: ready,
            forecast: None,
        }
    }

    #[test]
    fn target_tracking_scales_in_slowly() {
        assert_eq!(TargetTracking::default().decide(&obs(&[5.0], 2, 0)), 10);
        assert_eq!(TargetTracking::default().decide(&obs(&[5.0], 10, 0)), 10);
        // Wants 2 from 30: at most max(1, 3) a step.
        assert_eq!(TargetTracking::default().decide(&obs(&[1.0], 30, 0)), 27);
        assert_eq!(TargetTracking::default().decide(&obs(&[0.1], 5, 0)), 4);
    }

    #[test]
    fn target_tracking_at_other_targets_and_provision_for_a_quantile() {
        // 4 units of load at 40 %: 10 instances.
        let mut tt = TargetTracking {
            target: Utilisation::from_percent(40.0).expect("valid"),
        };
        assert_eq!(tt.decide(&obs(&[4.0], 2, 0)), 10);
        assert_eq!(tt.name(), "target-tracking@40");
        assert_eq!(TargetTracking::default().name(), "target-tracking");
        let fc = [[1.0, 2.0, 4.5], [1.0, 2.0, 3.0], [1.0, 2.0, 2.0]];
        let mut o = obs(&[2.0], 3, 0);
        o.forecast = Some(&fc);
        let mut p = Provision {
            quantile: 2,
            headroom: 0.2,
            forecaster: "bilstm".into(),
        };
        // 4.5 * 1.2 / 0.9 = 6.
        assert_eq!(p.decide(&o), 6);
        assert_eq!(p.name(), "provision-p90-bilstm@20");
        // p10 with no headroom wants 2 from 30: scale-in by 3 at most.
        p.quantile = 0;
        p.headroom = 0.0;
        let mut o = obs(&[2.0], 30, 0);
        o.forecast = Some(&fc);
        assert_eq!(p.decide(&o), 27);
    }

    #[test]
    fn threshold_steps_by_one_then_waits() {
        let mut p = Threshold::default();
        assert_eq!(p.decide(&obs(&[8.0], 10, 0)), 11);
        assert_eq!(p.decide(&obs(&[8.0], 10, 1)), 11, "cooldown");
        assert_eq!(p.decide(&obs(&[8.0], 11, 0)), 12);
        let mut p = Threshold::default();
        assert_eq!(p.decide(&obs(&[2.0], 10, 0)), 9);
        assert_eq!(p.decide(&obs(&[5.0], 10, 0)), 10, "cooldown");
        assert_eq!(p.decide(&obs(&[5.0], 10, 0)), 10, "within the band");
    }

    #[test]
    fn predictive_takes_the_larger_of_forecast_and_target_tracking() {
        let fc = [
            [0.0, 3.0, 0.0],
            [0.0, 6.2, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 50.0, 0.0],
        ];
        let mut o = obs(&[2.0], 4, 0);
        o.forecast = Some(&fc);
        // max p50 over 3 steps 6.2 -> 13 at 50 %; TT wants 4.
        assert_eq!(Predictive::default().decide(&o), 13);
        let fc = [[0.0, 0.5, 0.0]; 3];
        o.forecast = Some(&fc);
        assert_eq!(
            Predictive::default().decide(&o),
            4,
            "never under target tracking"
        );
    }
}
