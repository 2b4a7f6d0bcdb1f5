//! Chance-constrained planning for an SLA target (the OptScaler /
//! RobustScaler idea): provision for the quantile of the load that meets
//! the target over the launch delay, calibrated on the group's own recent
//! forecast errors.
//!
//! A launch made now is ready two steps later and a scale-in applies at
//! once, so the decision at step t must cover the load of steps t, t+1
//! and t+2: it provisions `max_k needed(q_k)`, where `q_k` is the load at
//! lead k that the group's errors say is exceeded with probability
//! `1 - target`:
//!
//! - **Calibrated errors.** For each lead the tracker keeps the group's
//!   last [`WINDOW`] errors of the forecast median, as a share of the
//!   group's mean load (a one-day moving mean), so the rule is the same
//!   for a group at 2 instances and at 200: nothing depends on the
//!   absolute level. `q_k = p50_k + mean * e_k` with `e_k` the quantile of
//!   those shares at the adjusted level below.
//! - **The achieved SLA feeds back.** Covering each lead at the target
//!   is not the same as meeting it per step (the plan takes the largest
//!   of three leads, capacity comes in whole instances, guardrails add
//!   their own), so the level read follows the group's realised service
//!   level with the adaptive conformal update (Gibbs and Candès 2021):
//!   `level += rate (violated - (1 - target))` each step, starting at the
//!   target. Over any long run the share of violating steps then
//!   converges to `1 - target`, whatever the forecaster gets wrong. Past
//!   the largest error the level adds headroom in proportion.
//!
//! Until a lead has [`MIN_ERRORS`] errors the plan provisions the median
//! plus [`COLD_HEADROOM`].

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{MAX_CAPACITY, MIN_CAPACITY, Observation, Policy, needed, within_sla};
use crate::forecast::baseline::quantile;

/// Leads covered: the launch delay (2 steps) and the step now.
pub const LEADS: usize = 3;
/// Errors kept per lead: one day of 5-minute steps.
pub const WINDOW: usize = 288;
/// Errors a lead needs before its quantile is read.
pub const MIN_ERRORS: usize = 48;
/// Headroom over the median before there are errors to read.
pub const COLD_HEADROOM: f64 = 0.5;
/// Default step of the offset per unit of miss (share of the median).
pub const DEFAULT_RATE: f64 = 0.005;
/// How far past the largest error the adjusted level may go, and the
/// headroom (share of the norm) each unit of it adds: a level of 1.01
/// provisions the largest error seen plus 10 % of the mean load.
const MAX_EXCESS: f64 = 0.1;
const EXCESS_SHARE: f64 = 10.0;
/// Lowest and highest target accepted.
pub const MIN_TARGET: f64 = 0.5;
pub const MAX_TARGET: f64 = 0.999;
/// The target when none is given.
pub const DEFAULT_TARGET: f64 = 0.99;

/// Why a target is refused, for the error naming the field.
pub fn check_target(target: f64) -> Result<f64, String> {
    // Tolerate the rounding of a percentage divided by 100.
    if target.is_finite() && (MIN_TARGET - 1e-9..=MAX_TARGET + 1e-9).contains(&target) {
        Ok(target.clamp(MIN_TARGET, MAX_TARGET))
    } else {
        Err(format!(
            "{target} is outside the supported SLA targets {MIN_TARGET}..{MAX_TARGET} (a share \
             of 5-minute steps, e.g. 0.99)"
        ))
    }
}

/// One group's calibration state: errors per lead, the offset and the
/// forecasts still waiting for their actuals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaTracker {
    target: f64,
    rate: f64,
    offset: f64,
    /// Errors of the median as a share of it, per lead, newest last.
    errors: [VecDeque<f32>; LEADS],
    /// Medians and their norms of the last decisions, newest last: the
    /// forecast made at step s is `made[len - 1 - (t - 1 - s)]`.
    made: VecDeque<[[f32; 2]; LEADS]>,
    /// Slow mean of the load, the floor of the norm.
    level: f64,
    steps: u64,
    violations: u64,
}

impl SlaTracker {
    pub fn new(target: f64, rate: f64) -> Self {
        Self {
            target,
            rate,
            offset: 0.0,
            errors: Default::default(),
            made: VecDeque::with_capacity(LEADS + 1),
            level: f64::NAN,
            steps: 0,
            violations: 0,
        }
    }

    pub fn target(&self) -> f64 {
        self.target
    }

    /// Share of observed steps within the SLA (None before any).
    pub fn achieved(&self) -> Option<f64> {
        (self.steps > 0).then(|| 1.0 - self.violations as f64 / self.steps as f64)
    }

    /// Learn from the last step: its load `y` and whether it met the SLA.
    /// Forecasts made at the three decisions before it are scored.
    pub fn observe(&mut self, y: f64, violated: bool) {
        if !y.is_finite() {
            return;
        }
        self.level = if self.level.is_nan() {
            y
        } else {
            self.level + (y - self.level) / 288.0
        };
        self.steps += 1;
        self.violations += u64::from(violated);
        let miss = f64::from(u8::from(violated));
        self.offset = (self.offset + self.rate * (miss - (1.0 - self.target)))
            .clamp(-self.target, 1.0 + MAX_EXCESS - self.target);
        // made[0] is the newest decision (lead 0 for this load), made[1]
        // the one before (lead 1), ...
        for (k, f) in self.made.iter().enumerate().take(LEADS) {
            let [p50, norm] = f[k];
            if p50.is_finite() && norm > 0.0 {
                let e = &mut self.errors[k];
                if e.len() == WINDOW {
                    e.pop_front();
                }
                e.push_back(((y as f32) - p50) / norm);
            }
        }
    }

    fn norm(&self, p50: f64) -> f64 {
        if self.level.is_finite() {
            self.level.max(1e-6)
        } else {
            p50.max(1e-6)
        }
    }

    /// The load at lead `k` to provision for, given the median `p50`.
    pub fn quantile(&self, k: usize, p50: f64) -> f64 {
        let p50 = p50.max(0.0);
        let norm = self.norm(p50);
        let e = &self.errors[k.min(LEADS - 1)];
        let share = if e.len() < MIN_ERRORS {
            COLD_HEADROOM
        } else {
            let mut v: Vec<f32> = e.iter().copied().collect();
            let level = self.target + self.offset;
            f64::from(quantile(&mut v, level.min(1.0)).unwrap_or(0.0))
                + EXCESS_SHARE * (level - 1.0).max(0.0)
        };
        (p50 + norm * share).max(0.0)
    }

    /// Remember the median forecasts of steps t, t+1, t+2 made now (fewer
    /// are read as the last repeated; NaN: none made), to score them when
    /// their actuals arrive.
    pub fn record(&mut self, p50: &[f64]) {
        let mut f = [[f32::NAN; 2]; LEADS];
        for (k, slot) in f.iter_mut().enumerate() {
            match p50.get(k).or(p50.last()) {
                Some(&m) if m.is_finite() => {
                    let m = m.max(0.0);
                    *slot = [m as f32, self.norm(m) as f32];
                }
                _ => {}
            }
        }
        self.made.push_front(f);
        self.made.truncate(LEADS);
    }

    /// Capacity for the median forecasts of steps t, t+1, t+2 (fewer are
    /// read as the last repeated), and the load it is sized for; the
    /// forecasts are remembered for scoring.
    pub fn plan(&mut self, p50: &[f64]) -> (u32, f64) {
        let mut peak = 0.0f64;
        for k in 0..LEADS {
            if let Some(&m) = p50.get(k).or(p50.last()) {
                peak = peak.max(self.quantile(k, m.max(0.0)));
            }
        }
        self.record(p50);
        (needed(peak).clamp(MIN_CAPACITY, MAX_CAPACITY), peak)
    }

    /// The quantile level of the errors read now (the target moved by the
    /// service level achieved; above 1: past the largest error).
    pub fn level(&self) -> f64 {
        self.target + self.offset
    }
}

/// The planner as a [`Policy`] for the simulator: reads the forecast
/// median and the replay's SLA outcome of the last step.
#[derive(Debug, Clone)]
pub struct SlaPlanner {
    pub forecaster: String,
    tracker: SlaTracker,
    /// The load the last decision was sized for.
    last: Option<f64>,
}

/// Steps of history the service replays to calibrate a group: a day to
/// fill the error window and a day for the level to settle.
pub const HISTORY: usize = 2 * WINDOW;

impl SlaPlanner {
    pub fn new(forecaster: &str, target: f64, rate: f64) -> Self {
        Self {
            forecaster: forecaster.to_owned(),
            tracker: SlaTracker::new(target, rate),
            last: None,
        }
    }

    /// The planner for a group in the service, calibrated on its past
    /// steps: `history` is the load per step (NaN where missing) and
    /// `over_sla` whether each step's utilisation was over 90 %. The
    /// forecast is the last value, as in the simulator's `sla-naive`;
    /// only forecasts are recorded here (no quantile is read), so a
    /// replay of [`HISTORY`] steps costs microseconds.
    pub fn warmed(target: f64, history: &[f64], over_sla: &[bool]) -> Self {
        let mut p = Self::new("naive", target, DEFAULT_RATE);
        let from = history.len().saturating_sub(HISTORY).max(1);
        for t in from..history.len() {
            let y = history[t - 1];
            p.tracker
                .observe(y, over_sla.get(t - 1).copied().unwrap_or(false));
            p.tracker.record(&[y]);
        }
        p
    }

    /// The level of the errors the next decision reads.
    pub fn level(&self) -> f64 {
        self.tracker.level()
    }

    /// Share of the observed steps within the SLA.
    pub fn achieved(&self) -> Option<f64> {
        self.tracker.achieved()
    }
}

impl Policy for SlaPlanner {
    fn name(&self) -> String {
        format!(
            "sla-{}@{}",
            self.forecaster,
            super::reference::pct(self.tracker.target)
        )
    }

    fn reset(&mut self) {
        self.tracker = SlaTracker::new(self.tracker.target, self.tracker.rate);
        self.last = None;
    }

    fn decide(&mut self, obs: &Observation) -> u32 {
        if obs.t > 0 && !obs.history.is_empty() {
            let y = obs.last_load();
            self.tracker.observe(y, !within_sla(y, obs.last_ready));
        }
        let last = obs.last_load();
        let p50: Vec<f64> = match obs.forecast {
            // The naive planner's errors are the last value's, whatever
            // forecast the caller holds.
            Some(f) if self.forecaster != "naive" => {
                f.iter().take(LEADS).map(|q| f64::from(q[1])).collect()
            }
            _ => vec![last; LEADS],
        };
        let (want, peak) = self.tracker.plan(&p50);
        self.last = Some(peak);
        want
    }

    fn explain(&self) -> Option<String> {
        self.last.map(|peak| {
            format!(
                "p{} of the load over the launch delay ({peak:.2} instances at 90 %)",
                super::reference::pct(self.tracker.target)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_outside_the_supported_range_are_refused() {
        for ok in [0.5, 0.95, 0.99, 0.999] {
            assert_eq!(check_target(ok), Ok(ok));
        }
        for bad in [1.0, 0.49, f64::NAN, 99.0, -0.9] {
            assert!(check_target(bad).is_err(), "{bad}");
        }
    }

    /// A deterministic noisy load: level 10 with multiplicative noise.
    fn load(n: usize) -> Vec<f64> {
        let mut s: u64 = 7;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let u = ((s >> 11) as f64) / (1u64 << 53) as f64;
                10.0 * (0.7 + 0.6 * u)
            })
            .collect()
    }

    /// Replays the tracker on a load with a naive forecast and exact
    /// launch delays; returns the achieved share of steps within SLA over
    /// the second half.
    fn achieved(target: f64, scale: f64) -> f64 {
        let d: Vec<f64> = load(6000).into_iter().map(|v| v * scale).collect();
        let mut t = SlaTracker::new(target, DEFAULT_RATE);
        // Desired totals by step; ready at s = desired at s-2, lowered by
        // later scale-ins.
        let mut desired: Vec<u32> = vec![needed(d[0]); 2];
        let mut ready = vec![needed(d[0]); 2];
        let (mut ok, mut n) = (0, 0);
        for s in 2..d.len() {
            t.observe(d[s - 1], !within_sla(d[s - 1], ready[s - 1]));
            let (want, _) = t.plan(&[d[s - 1]; 3]);
            desired.push(want);
            let r = desired[s - 2].min(desired[s - 1]).min(want);
            ready.push(r);
            if s >= 3000 {
                n += 1;
                ok += usize::from(within_sla(d[s], r));
            }
        }
        ok as f64 / n as f64
    }

    #[test]
    fn the_achieved_sla_follows_the_target_at_any_scale() {
        for target in [0.95, 0.99] {
            let a = achieved(target, 1.0);
            assert!((a - target).abs() < 0.01, "target {target}: {a}");
            // Five times the load: the same service level.
            let b = achieved(target, 5.0);
            assert!((b - target).abs() < 0.01, "target {target} x5: {b}");
        }
    }
}
