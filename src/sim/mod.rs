//! The digital twin of POLICY_EVAL.md: replays a demand trace against a
//! scaling policy and scores cost and service level.
//!
//! Group model (one step = 5 minutes):
//! - each instance serves 1 unit of load; a policy returns the desired
//!   total (ready + pending), clamped to [`MIN_CAPACITY`, `MAX_CAPACITY`];
//! - the decision for step t is taken at its start and sees the load up
//!   to t-1 (and forecasts made from it);
//! - a launch is pending in steps t and t+1 and ready from t+2; a scale-in
//!   applies to step t and removes pending launches first (newest first),
//!   then ready instances;
//! - every instance that exists in a step costs [`COST_PER_STEP`].
//!
//! Replay starts at the validation segment with ceil(d / 0.9) ready (of the
//! step before) and nothing pending; scores count test steps only.
//!
//! A replay is a loop of integer updates: a month of 5-minute steps takes
//! well under a millisecond per policy (`cargo bench --bench sim`).

pub mod forecasts;
pub mod policies;
pub mod report;
pub mod traces;

use serde::Serialize;

pub use forecasts::{ForecastTable, SimForecaster};
pub use policies::{Policy, PolicyKind};
pub use traces::Trace;

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

/// POLICY_EVAL.md's scores of one replay (test segment).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scores {
    pub trace: String,
    pub policy: String,
    pub steps: usize,
    /// Share of steps within the SLA, percent.
    pub sla_pct: f64,
    pub violating_steps_per_hour: f64,
    pub violation_episodes_per_hour: f64,
    pub overload_volume: f64,
    pub cost_usd: f64,
    /// Filled in against the oracle's replay of the same trace.
    pub cost_vs_oracle: f64,
    /// Mean of min(1, d / ready), percent.
    pub utilisation_pct: f64,
    pub capacity_changes: usize,
}

/// A replay: its scores and, per replayed step, the ready and total
/// capacity (for plots).
#[derive(Debug, Clone)]
pub struct Run {
    pub scores: Scores,
    /// First replayed step (the validation start).
    pub from: usize,
    pub ready: Vec<u32>,
    pub total: Vec<u32>,
}

/// POLICY_EVAL.md's oracle: ready capacity is exactly ceil(d / 0.9) (at
/// least [`MIN_CAPACITY`]) at every step, each increase launched two steps
/// ahead and paid for while pending. It knows the future, and it scales in
/// ready instances while launches are pending, which a policy's single
/// desired total cannot express; so it is replayed as a schedule rather
/// than through [`Policy`].
pub fn simulate_oracle(trace: &Trace) -> Run {
    let d = &trace.load;
    let last = d.len() - 1;
    let need = |t: usize| needed(d[t.min(last)]).clamp(MIN_CAPACITY, MAX_CAPACITY);
    let from = trace.split.train_end.max(1);
    // Launches made at step s become ready at s + 2.
    let launch = |s: usize| need(s + 2).saturating_sub(need(s + 1));
    let mut acc = Acc::default();
    let (mut run_ready, mut run_total) = (Vec::new(), Vec::new());
    for (t, &dt) in d.iter().enumerate().skip(from) {
        let ready = need(t);
        let exists = ready + launch(t - 1) + launch(t);
        let before = need(t - 1) + launch(t.saturating_sub(2));
        let changed = launch(t) > 0 || ready < before;
        acc.step(dt, ready, exists, changed, t >= trace.split.val_end);
        run_ready.push(ready);
        run_total.push(exists);
    }
    acc.run(trace, "oracle".into(), from, run_ready, run_total)
}

/// Running sums of the scores over the test steps.
#[derive(Debug, Default)]
struct Acc {
    steps: usize,
    ok: usize,
    episodes: usize,
    overload: f64,
    units: u64,
    util: f64,
    changes: usize,
    prev_ok: bool,
    started: bool,
}

impl Acc {
    /// One replayed step; only test steps count, but the SLA state of the
    /// step before the test segment decides whether its first violation is
    /// an onset.
    fn step(&mut self, d: f64, ready: u32, exists: u32, changed: bool, scored: bool) {
        let in_sla = within_sla(d, ready);
        if scored {
            let prev_ok = !self.started || self.prev_ok;
            self.steps += 1;
            self.ok += usize::from(in_sla);
            self.episodes += usize::from(!in_sla && prev_ok);
            self.overload += (d - SLA_UTILISATION * f64::from(ready)).max(0.0);
            self.units += u64::from(exists);
            self.util += (d / f64::from(ready.max(1))).min(1.0);
            self.changes += usize::from(changed);
        }
        self.started = true;
        self.prev_ok = in_sla;
    }

    fn run(
        self,
        trace: &Trace,
        policy: String,
        from: usize,
        ready: Vec<u32>,
        total: Vec<u32>,
    ) -> Run {
        let steps = self.steps;
        let hours = steps as f64 / STEPS_PER_HOUR;
        let n = steps.max(1) as f64;
        Run {
            scores: Scores {
                trace: trace.id.clone(),
                policy,
                steps,
                sla_pct: 100.0 * self.ok as f64 / n,
                violating_steps_per_hour: (steps - self.ok) as f64 / hours,
                violation_episodes_per_hour: self.episodes as f64 / hours,
                overload_volume: self.overload,
                cost_usd: self.units as f64 * COST_PER_STEP,
                cost_vs_oracle: f64::NAN,
                utilisation_pct: 100.0 * self.util / n,
                capacity_changes: self.changes,
            },
            from,
            ready,
            total,
        }
    }
}

/// Replay `trace` from its validation start against `policy`.
pub fn simulate(trace: &Trace, policy: &mut dyn Policy, forecasts: Option<&ForecastTable>) -> Run {
    let d = &trace.load;
    let from = trace.split.train_end.max(1);
    let test_from = trace.split.val_end;
    policy.reset(trace);
    let mut ready = needed(d[from - 1]).clamp(MIN_CAPACITY, MAX_CAPACITY);
    let mut pending_old = 0u32; // launched at t-1, pending in t
    let mut last_ready = ready;
    let mut run_ready = Vec::with_capacity(d.len() - from);
    let mut run_total = Vec::with_capacity(d.len() - from);
    let mut acc = Acc::default();
    for t in from..d.len() {
        let obs = Observation {
            t,
            timestamp: trace.timestamp(t),
            history: &d[..t],
            ready,
            pending: pending_old,
            last_ready,
            forecast: forecasts.and_then(|f| f.at(t)),
        };
        let total = obs.total();
        let want = policy.decide(&obs).clamp(MIN_CAPACITY, MAX_CAPACITY);
        let mut launched = 0;
        if want > total {
            launched = want - total;
        } else if want < total {
            let mut remove = total - want;
            let from_pending = remove.min(pending_old);
            pending_old -= from_pending;
            remove -= from_pending;
            ready -= remove;
        }
        let exists = ready + pending_old + launched;
        acc.step(d[t], ready, exists, want != total, t >= test_from);
        run_ready.push(ready);
        run_total.push(exists);
        last_ready = ready;
        ready += pending_old;
        pending_old = launched;
    }
    acc.run(trace, policy.name(), from, run_ready, run_total)
}

/// A policy to score: a reference policy and, for a predictive one, the
/// forecaster it reads.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub kind: PolicyKind,
    pub forecaster: Option<SimForecaster>,
}

impl PolicySpec {
    /// `oracle`, `threshold`, `target-tracking`, `predictive` (seasonal
    /// naive forecasts, as POLICY_EVAL.md's reference) or
    /// `predictive-<forecaster>` (`naive`, `snaive`, or a trained model
    /// `neural` resolves).
    pub fn parse(
        name: &str,
        neural: impl Fn(&str) -> Option<SimForecaster>,
    ) -> Result<Self, String> {
        let (kind, fc) = match name.split_once('-') {
            Some(("predictive", f)) => (PolicyKind::Predictive, f),
            _ => (
                PolicyKind::by_name(name).ok_or_else(|| {
                    format!(
                        "unknown policy {name:?}; known: {}, predictive-<naive|snaive|model>",
                        PolicyKind::NAMES.join(", ")
                    )
                })?,
                "snaive",
            ),
        };
        let forecaster = if kind.needs_forecast() {
            Some(match fc {
                "naive" => SimForecaster::Naive,
                "snaive" => SimForecaster::SeasonalNaive,
                m => neural(m).ok_or_else(|| format!("policy {name:?}: no trained model {m:?}"))?,
            })
        } else {
            None
        };
        Ok(Self { kind, forecaster })
    }
}

/// Forecast horizon the simulator asks for (the predictive policies read
/// three steps).
pub const SIM_HORIZON: usize = 3;

/// Replay every trace against every policy; forecasts are made once per
/// trace and forecaster. Returns the runs of each trace, oracle-relative
/// costs filled in when the oracle is among the policies. `progress`
/// hears about each trace as it finishes.
pub fn run_all(
    traces: &[Trace],
    specs: &[PolicySpec],
    mut progress: impl FnMut(&Trace, &[Run]),
) -> Result<Vec<Vec<Run>>, crate::forecast::ModelError> {
    let mut out = Vec::with_capacity(traces.len());
    for trace in traces {
        let from = trace.split.train_end.max(1);
        let mut tables: Vec<(String, ForecastTable)> = Vec::new();
        let mut runs = Vec::with_capacity(specs.len());
        for spec in specs {
            let table = match &spec.forecaster {
                Some(f) => {
                    let name = f.name();
                    if !tables.iter().any(|(n, _)| *n == name) {
                        tables.push((name.clone(), f.table(trace, from, SIM_HORIZON)?));
                    }
                    tables.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
                }
                None => None,
            };
            let fname = spec.forecaster.as_ref().map(SimForecaster::name);
            runs.push(
                match spec.kind.build(fname.as_deref().unwrap_or_default()) {
                    Some(mut policy) => simulate(trace, policy.as_mut(), table),
                    None => simulate_oracle(trace),
                },
            );
        }
        let mut scores: Vec<Scores> = runs.iter().map(|r| r.scores.clone()).collect();
        report::relate_to_oracle(&mut scores);
        for (r, s) in runs.iter_mut().zip(scores) {
            r.scores = s;
        }
        progress(trace, &runs);
        out.push(runs);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    fn trace(load: Vec<f64>) -> Trace {
        let n = load.len();
        Trace {
            id: "t".into(),
            start: 0,
            load,
            split: Split {
                train_end: 2,
                val_end: 2,
                len: n,
            },
        }
    }

    /// Replays a fixed list of desired totals.
    struct Script(Vec<u32>, usize);

    impl Policy for Script {
        fn name(&self) -> String {
            "script".into()
        }
        fn reset(&mut self, _: &Trace) {
            self.1 = 0;
        }
        fn decide(&mut self, _: &Observation) -> u32 {
            self.1 += 1;
            self.0[self.1 - 1]
        }
    }

    #[test]
    fn launches_are_ready_two_steps_later_and_scale_in_takes_pending_first() {
        // Step before replay: load 0.9 -> 1 ready.
        let t = trace(vec![0.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]);
        let mut p = Script(vec![3, 3, 3, 2, 1], 0);
        let r = simulate(&t, &mut p, None);
        // t=2: 1 ready + 2 launched; t=3: still pending; t=4: 3 ready.
        assert_eq!(r.ready, vec![1, 1, 3, 2, 1]);
        assert_eq!(r.total, vec![3, 3, 3, 2, 1]);
        assert_eq!(r.scores.capacity_changes, 3);
        let mut p = Script(vec![3, 2, 2, 2, 2], 0);
        let r = simulate(&t, &mut p, None);
        // t=3: scale-in by one removes one of the two pending launches.
        assert_eq!(r.ready, vec![1, 1, 2, 2, 2]);
        assert_eq!(r.total, vec![3, 2, 2, 2, 2]);
        assert!((r.scores.cost_usd - 11.0 * COST_PER_STEP).abs() < 1e-9);
    }

    #[test]
    fn the_oracle_keeps_exactly_the_need_ready_and_pays_for_warm_up() {
        let t = trace(vec![0.9, 0.9, 0.9, 0.9, 2.7, 0.9, 0.9]);
        let r = simulate_oracle(&t);
        // Need 1 1 1 1 3 1 1: two launched at step 2 for step 4.
        assert_eq!(r.ready, vec![1, 1, 3, 1, 1]);
        assert_eq!(r.total, vec![3, 3, 3, 1, 1]);
        assert_eq!(r.scores.sla_pct, 100.0);
        assert_eq!(r.scores.capacity_changes, 2);
    }

    #[test]
    fn scores_sla_episodes_and_overload() {
        let t = trace(vec![0.0, 0.9, 1.8, 1.8, 0.5, 1.8, 0.5]);
        let mut p = Script(vec![1; 5], 0);
        let r = simulate(&t, &mut p, None);
        // Violations at steps 2, 3, 5 (1.8 > 0.9): two episodes.
        assert!((r.scores.sla_pct - 40.0).abs() < 1e-9);
        assert!((r.scores.violation_episodes_per_hour - 2.0 / (5.0 / 12.0)).abs() < 1e-9);
        assert!((r.scores.overload_volume - 2.7).abs() < 1e-9);
        assert_eq!(r.scores.capacity_changes, 0);
        assert_eq!(needed(0.9), 1);
        assert_eq!(needed(0.91), 2);
        assert_eq!(needed(0.0), 0);
    }
}
