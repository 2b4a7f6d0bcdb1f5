//! The reference policies of POLICY_EVAL.md.

use super::{MAX_CAPACITY, MIN_CAPACITY, Observation};

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
}

impl PolicyKind {
    pub const NAMES: [&'static str; 4] = ["oracle", "threshold", "target-tracking", "predictive"];

    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "oracle" => Self::Oracle,
            "threshold" | "tas" => Self::Threshold,
            "target-tracking" | "tt" => Self::TargetTracking,
            "predictive" => Self::Predictive,
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
            Self::TargetTracking => Box::new(TargetTracking),
            Self::Predictive => Box::new(Predictive {
                forecaster: forecaster.to_owned(),
            }),
        })
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

/// Target tracking at 50 %: ceil(c * u / 50) of the last step (that is
/// ceil(2 d[t-1])); scale-in by at most max(1, 10 % of the total) a step.
#[derive(Debug, Default)]
pub struct TargetTracking;

impl TargetTracking {
    pub fn desired(obs: &Observation) -> u32 {
        let total = obs.total();
        let want = (2.0 * obs.last_load() - 1e-9).ceil().max(0.0) as u32;
        if want < total {
            want.max(total - (total / 10).max(1))
        } else {
            want
        }
    }
}

impl Policy for TargetTracking {
    fn name(&self) -> String {
        "target-tracking".into()
    }

    fn reset(&mut self) {}

    fn decide(&mut self, obs: &Observation) -> u32 {
        Self::desired(obs)
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
}

impl Policy for Predictive {
    fn name(&self) -> String {
        if self.forecaster.is_empty() {
            "predictive".into()
        } else {
            format!("predictive-{}", self.forecaster)
        }
    }

    fn reset(&mut self) {}

    fn decide(&mut self, obs: &Observation) -> u32 {
        let tt = TargetTracking::desired(obs);
        let Some(fc) = obs.forecast else {
            return tt;
        };
        let peak = fc
            .iter()
            .take(3)
            .map(|q| f64::from(q[1]))
            .fold(0.0, f64::max);
        tt.max((2.0 * peak - 1e-9).ceil().max(0.0) as u32)
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
        assert_eq!(TargetTracking.decide(&obs(&[5.0], 2, 0)), 10);
        assert_eq!(TargetTracking.decide(&obs(&[5.0], 10, 0)), 10);
        // Wants 2 from 30: at most max(1, 3) a step.
        assert_eq!(TargetTracking.decide(&obs(&[1.0], 30, 0)), 27);
        assert_eq!(TargetTracking.decide(&obs(&[0.1], 5, 0)), 4);
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
