//! Accuracy: what each candidate model forecast for a group, scored as the
//! actuals arrive; the model a group is served by (`auto`); its quantiles
//! calibrated to the group's own errors. Between forecast and policy: it
//! reads forecasts and actuals, and hands the policy calibrated quantiles.
//!
//! One [`GroupLedger`] per group, a plain value (serde), so the service can
//! keep it where it keeps samples and the offline replay
//! (`forescale evaluate --models auto`) runs the very same rule:
//!
//! 1. [`GroupLedger::observe`] scores every pending forecast step whose
//!    time has come (each candidate's calibrated p10 / p50 / p90) into
//!    hourly buckets (the last day) and daily buckets per horizon step
//!    (the last week), and teaches each candidate's [`Calibrator`];
//! 2. [`GroupLedger::choose`] serves the candidate with the lowest WQL
//!    over the last day once there is evidence, with hysteresis;
//! 3. [`GroupLedger::record`] stores the candidates' new forecasts and
//!    returns the served one, calibrated.

pub mod calibration;
pub mod score;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

pub use calibration::Calibrator;
pub use score::{Ring, Tally};

use crate::forecast::QuantileForecast;

const HOUR: i64 = 3_600;
/// A day in seconds: the choice's window, and the rings' day.
pub const DAY: i64 = 24 * HOUR;

/// The selection and calibration rule. Chosen before any replay was
/// scored (docs/accuracy.md says why each value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LedgerConfig {
    /// The window scores are compared over, seconds.
    pub window: i64,
    /// Hours of the window in which a model must have scored points before
    /// it can be chosen (and before the served model can be replaced).
    pub min_hours: usize,
    /// A challenger must beat the served model's WQL by this share.
    pub margin: f64,
    /// Seconds a choice stands before it may change again.
    pub dwell: i64,
    /// Step of the quantile trackers.
    pub rate: f32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            window: DAY,
            min_hours: 6,
            margin: 0.05,
            dwell: 6 * HOUR,
            rate: calibration::DEFAULT_RATE,
        }
    }
}

/// A forecast waiting for its actuals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    /// Time of the first forecast step.
    start: i64,
    step: i64,
    raw: QuantileForecast,
    calibrated: QuantileForecast,
    /// Steps already scored.
    scored: Vec<bool>,
    /// This forecast was the one served (its steps go to the history).
    #[serde(default)]
    served: bool,
}

/// How far back [`GroupLedger::history`] reaches, seconds.
pub const HISTORY_SPAN: i64 = 2 * DAY;

/// An hour's points: a new point lands in the newest small bucket, so
/// adding one to a ledger just read never copies the whole history.
impl score::Merge for Vec<PastPoint> {
    fn merge(&mut self, o: &Self) {
        self.extend_from_slice(o);
    }
}

/// A served forecast against its actual, at one lead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PastPoint {
    /// Time of the actual (the forecast step).
    pub ts: i64,
    /// Steps ahead the forecast was made: 1, or the horizon.
    pub lead: u8,
    /// Index of the candidate that served it.
    pub model: u8,
    /// Calibrated p10, p50, p90, then the actual; CPU %, to 0.01.
    pub v: [f32; 4],
}

/// One candidate's record for a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelTrack {
    pub name: String,
    pub calibrator: Calibrator,
    pending: VecDeque<Pending>,
    /// Scores over all steps, hourly buckets of the last day.
    hourly: Ring<Tally>,
    /// Scores per horizon step, daily buckets of the last week.
    daily: Ring<Vec<Tally>>,
}

impl ModelTrack {
    fn new(name: &str, horizon: usize, rate: f32) -> Self {
        Self {
            name: name.to_owned(),
            calibrator: Calibrator::new(horizon, rate),
            pending: VecDeque::new(),
            hourly: Ring::new(HOUR, 24),
            daily: Ring::new(DAY, 8),
        }
    }

    /// Scores over the `span` seconds up to `now`, and the hours of it
    /// that hold points.
    pub fn window(&self, now: i64, span: i64) -> (Tally, usize) {
        if span <= DAY {
            self.hourly.window(now, span, Tally::default())
        } else {
            let (per_step, days) = self.daily.window(now, span, Vec::new());
            let mut t = Tally::default();
            for s in &per_step {
                t.add(s);
            }
            (t, days * 24)
        }
    }

    /// Scores per horizon step over the `span` seconds (whole days) up to
    /// `now`.
    pub fn per_step(&self, now: i64, span: i64) -> Vec<Tally> {
        self.daily.window(now, span.max(DAY), Vec::new()).0
    }
}

/// Why the served model is the one it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reason {
    /// Not enough scored points yet: the global default serves.
    NoEvidence,
    /// The served model has the best recent score (or no challenger beat
    /// it by the margin).
    Best,
    /// Switched within the dwell time (`GroupLedger::last_switch` says
    /// from what and on which scores).
    Switched,
    /// A challenger is better, but the last switch is too recent.
    Dwell,
}

impl Reason {
    /// The reason as a stable, lower-case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoEvidence => "no_evidence",
            Self::Best => "best",
            Self::Switched => "switched",
            Self::Dwell => "dwell",
        }
    }
}

/// A change of the served model and the scores that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    pub at: i64,
    pub from: String,
    pub to: String,
    /// WQL over the window of the model replaced, and of its successor.
    pub from_wql: f64,
    pub to_wql: f64,
}

/// What serving a group needs of its ledger, small enough to read on
/// every request: the served model, why, whether it is degraded, and its
/// calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub served: String,
    pub reason: Reason,
    /// See [`GroupLedger::degraded`], as of `as_of`.
    pub degraded: bool,
    /// The served model's calibration for the group.
    pub calibrator: Calibrator,
    /// Newest actual the choice has seen.
    pub as_of: Option<i64>,
}

fn new_history() -> Ring<Vec<PastPoint>> {
    Ring::new(HOUR, (HISTORY_SPAN / HOUR) as usize)
}

/// Every candidate's record for one group and the current choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupLedger {
    pub config: LedgerConfig,
    /// The candidates; the first is the global default.
    pub models: Vec<ModelTrack>,
    /// Index of the served model.
    pub served: usize,
    pub reason: Reason,
    pub switches: u32,
    pub last_switch: Option<Switch>,
    /// Newest actual seen.
    pub observed_until: Option<i64>,
    /// First step of the newest forecast recorded.
    #[serde(default)]
    pub last_origin: Option<i64>,
    /// The served forecasts one step and the whole horizon ahead against
    /// their actuals, in hourly buckets over the last [`HISTORY_SPAN`].
    #[serde(default = "new_history")]
    pub history: Ring<Vec<PastPoint>>,
}

impl GroupLedger {
    /// A ledger for `candidates` (the first one serves until there is
    /// evidence), forecasting `horizon` steps.
    pub fn new(candidates: &[&str], horizon: usize, config: LedgerConfig) -> Self {
        Self {
            config,
            models: candidates
                .iter()
                .map(|n| ModelTrack::new(n, horizon, config.rate))
                .collect(),
            served: 0,
            reason: Reason::NoEvidence,
            switches: 0,
            last_switch: None,
            observed_until: None,
            last_origin: None,
            history: new_history(),
        }
    }

    pub fn served_name(&self) -> &str {
        &self.models[self.served].name
    }

    pub fn model(&self, name: &str) -> Option<&ModelTrack> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The actual `y` at time `ts`: scores and teaches every pending step
    /// due at `ts`; forecasts whose steps are all past are dropped.
    pub fn observe(&mut self, ts: i64, y: f32) {
        if !y.is_finite() {
            return;
        }
        self.observed_until = Some(self.observed_until.map_or(ts, |t| t.max(ts)));
        let cents = |x: f32| (x * 100.0).round() / 100.0;
        for (i, m) in self.models.iter_mut().enumerate() {
            for p in &mut m.pending {
                let off = ts - p.start;
                if off < 0 || off % p.step != 0 {
                    continue;
                }
                let h = (off / p.step) as usize;
                if h >= p.scored.len() || p.scored[h] {
                    continue;
                }
                p.scored[h] = true;
                let c = &p.calibrated;
                let last = p.scored.len().saturating_sub(1);
                if p.served && (h == 0 || h == last) {
                    let point = PastPoint {
                        ts,
                        lead: (h + 1).min(usize::from(u8::MAX)) as u8,
                        model: i.min(usize::from(u8::MAX)) as u8,
                        v: [c.p10[h], c.p50[h], c.p90[h], y].map(cents),
                    };
                    self.history.add(ts, &vec![point]);
                }
                let t = Tally::point(y, [c.p10[h], c.p50[h], c.p90[h]]);
                m.hourly.add(ts, &t);
                let mut per_step = vec![Tally::default(); p.scored.len()];
                per_step[h] = t;
                m.daily.add(ts, &per_step);
                m.calibrator.update(&p.raw, h, y);
            }
            m.pending
                .retain(|p| p.start + p.step * (p.scored.len() as i64 - 1) > ts);
        }
    }

    /// Each candidate's WQL over the window ending at `now`, where it has
    /// the evidence the rule asks for.
    pub fn recent_wql(&self, now: i64) -> Vec<Option<f64>> {
        self.models
            .iter()
            .map(|m| {
                let (t, hours) = m.window(now, self.config.window);
                if hours >= self.config.min_hours {
                    t.wql()
                } else {
                    None
                }
            })
            .collect()
    }

    /// Decide the served model at `now` from the scores so far.
    pub fn choose(&mut self, now: i64) {
        let wql = self.recent_wql(now);
        let Some(current) = wql[self.served] else {
            if self.switches == 0 {
                self.reason = Reason::NoEvidence;
            }
            return;
        };
        let best = wql
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.map(|w| (i, w)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((best, best_wql)) = best else { return };
        if best == self.served || best_wql >= current * (1.0 - self.config.margin) {
            // A recent switch keeps its reason until it has stood.
            if !self.recently_switched(now) {
                self.reason = Reason::Best;
            }
            return;
        }
        if self.recently_switched(now) {
            self.reason = Reason::Dwell;
            return;
        }
        self.last_switch = Some(Switch {
            at: now,
            from: self.models[self.served].name.clone(),
            to: self.models[best].name.clone(),
            from_wql: current,
            to_wql: best_wql,
        });
        self.reason = Reason::Switched;
        self.served = best;
        self.switches += 1;
    }

    fn recently_switched(&self, now: i64) -> bool {
        self.last_switch
            .as_ref()
            .is_some_and(|s| now - s.at < self.config.dwell)
    }

    /// Store each candidate's raw forecast made at `now` (first step at
    /// `start`, one step every `step` seconds), in candidate order, and
    /// return the served model's, calibrated. A candidate that could not
    /// forecast passes `None`; if that is the served model, the first
    /// candidate with a forecast serves this once.
    pub fn record(
        &mut self,
        start: i64,
        step: i64,
        forecasts: Vec<Option<QuantileForecast>>,
    ) -> Option<(usize, QuantileForecast)> {
        self.last_origin = Some(self.last_origin.map_or(start, |o| o.max(start)));
        let mut made: Vec<Option<QuantileForecast>> = Vec::with_capacity(self.models.len());
        for (m, fc) in self.models.iter_mut().zip(forecasts) {
            let Some(raw) = fc else {
                made.push(None);
                continue;
            };
            let calibrated = m.calibrator.apply(&raw);
            made.push(Some(calibrated.clone()));
            m.pending.push_back(Pending {
                start,
                step,
                scored: vec![false; calibrated.horizon()],
                raw,
                calibrated,
                served: false,
            });
        }
        let pick = if made.get(self.served).is_some_and(Option::is_some) {
            self.served
        } else {
            made.iter().position(Option::is_some)?
        };
        if let Some(p) = self.models[pick].pending.back_mut() {
            p.served = true;
        }
        made.swap_remove(pick).map(|fc| (pick, fc))
    }

    /// The newest forecast recorded (first step at `last_origin`), of the
    /// served model, calibrated; another candidate's if the served model
    /// could not forecast then. With the candidate's index and the step.
    pub fn latest(&self) -> Option<(usize, &QuantileForecast, i64)> {
        self.latest_pending()
            .map(|(i, p)| (i, &p.calibrated, p.step))
    }

    /// The calibrated quantile `level` of the newest forecast (as
    /// [`GroupLedger::latest`]) at each of its steps.
    pub fn latest_quantile(&self, level: f64) -> Option<Vec<f32>> {
        let (i, p) = self.latest_pending()?;
        let c = &self.models[i].calibrator;
        Some(
            (0..p.raw.horizon())
                .map(|h| c.quantile(&p.raw, h, level))
                .collect(),
        )
    }

    fn latest_pending(&self) -> Option<(usize, &Pending)> {
        let origin = self.last_origin?;
        let of = |i: usize| {
            self.models[i]
                .pending
                .iter()
                .rev()
                .find(|p| p.start == origin)
                .map(|p| (i, p))
        };
        of(self.served).or_else(|| (0..self.models.len()).find_map(of))
    }

    /// The choice as of the newest actual.
    pub fn choice(&self) -> Choice {
        let m = &self.models[self.served];
        Choice {
            served: m.name.clone(),
            reason: self.reason.clone(),
            degraded: self.degraded(self.observed_until.unwrap_or_default()),
            calibrator: m.calibrator.clone(),
            as_of: self.observed_until,
        }
    }

    /// True when the served model's WQL over the window is above naive's
    /// (both with evidence): planning on it is worse than doing nothing
    /// clever.
    pub fn degraded(&self, now: i64) -> bool {
        let wql = self.recent_wql(now);
        let naive = self.models.iter().position(|m| m.name == "naive");
        match (wql[self.served], naive.and_then(|i| wql[i])) {
            (Some(s), Some(n)) => s > n,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
