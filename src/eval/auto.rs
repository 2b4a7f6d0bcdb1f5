//! `auto` offline: the service's per-group model choice and calibration
//! ([`crate::accuracy::GroupLedger`]) replayed over each series. At every
//! origin the ledger first scores what it has seen (only rows before the
//! origin), then chooses, then records every candidate's forecast and
//! serves the chosen one, calibrated. The replay starts at the
//! validation segment so that the first test origin already has evidence;
//! only test origins are scored.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::accuracy::{GroupLedger, LedgerConfig};
use crate::data::GriddedSeries;
use crate::forecast::{ForecastError, Forecaster, QuantileForecast};

/// The candidates and the rule of an `auto` evaluation.
#[derive(Debug, Clone)]
pub struct AutoSpec {
    /// The first is the global default.
    pub candidates: Vec<Forecaster>,
    pub config: LedgerConfig,
}

/// Which model served the scored origins, and how often choices changed.
#[derive(Debug, Clone, Default)]
pub struct AutoSummary {
    /// Scored origins served by each candidate.
    pub served: BTreeMap<String, usize>,
    pub switches: u32,
    /// Series whose choice changed at least once.
    pub series_switched: usize,
    pub series: usize,
}

impl AutoSummary {
    /// One line: the share of origins per model and the switches.
    pub fn line(&self) -> String {
        let total: usize = self.served.values().sum();
        let mut s = String::from("served ");
        let mut parts: Vec<(&String, &usize)> = self.served.iter().collect();
        parts.sort_by(|a, b| b.1.cmp(a.1));
        for (i, (m, n)) in parts.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                s,
                "{sep}{m} {:.1} %",
                **n as f64 * 100.0 / total.max(1) as f64
            );
        }
        let _ = write!(
            s,
            " of {total} scored origins; {} switches, on {} of {} series",
            self.switches, self.series_switched, self.series
        );
        s
    }
}

/// The replay of one series at a time, fed origins in increasing order.
#[derive(Debug)]
pub struct AutoReplay<'a> {
    spec: &'a AutoSpec,
    horizon: usize,
    current: Option<Current>,
    pub summary: AutoSummary,
}

#[derive(Debug)]
struct Current {
    series: usize,
    ledger: GroupLedger,
    /// Next origin to replay.
    next: usize,
    /// First row not yet observed.
    seen: usize,
}

impl<'a> AutoReplay<'a> {
    pub fn new(spec: &'a AutoSpec, horizon: usize) -> Self {
        Self {
            spec,
            horizon,
            current: None,
            summary: AutoSummary::default(),
        }
    }

    fn close(&mut self) {
        if let Some(c) = self.current.take() {
            self.summary.switches += c.ledger.switches;
            self.summary.series_switched += usize::from(c.ledger.switches > 0);
            self.summary.series += 1;
        }
    }

    /// The summary once every series is done.
    pub fn finish(mut self) -> AutoSummary {
        self.close();
        self.summary
    }

    /// `auto`'s forecast at origin `t` of series `si`.
    pub fn forecast(
        &mut self,
        si: usize,
        s: &GriddedSeries,
        t: usize,
    ) -> Result<QuantileForecast, ForecastError> {
        if self.current.as_ref().is_none_or(|c| c.series != si) {
            self.close();
            // The first origin of the replay: on the test origins' grid, at
            // or after the start of the validation segment.
            let back = t.saturating_sub(s.split.train_end) / self.horizon;
            let names: Vec<&str> = self.spec.candidates.iter().map(Forecaster::name).collect();
            self.current = Some(Current {
                series: si,
                ledger: GroupLedger::new(&names, self.horizon, self.spec.config),
                next: t - back * self.horizon,
                seen: t - back * self.horizon,
            });
        }
        loop {
            let origin = self.current.as_ref().map_or(t, |c| c.next);
            let served = self.step(s, origin);
            if let Some(c) = self.current.as_mut() {
                c.next = origin + self.horizon;
            }
            if origin >= t {
                let (i, fc) = served
                    .ok_or_else(|| ForecastError::Model("no candidate could forecast".into()))?;
                let name = self.spec.candidates[i].name().to_owned();
                *self.summary.served.entry(name).or_default() += 1;
                return Ok(fc);
            }
        }
    }

    /// Observe rows up to `t`, choose, record the candidates' forecasts.
    fn step(&mut self, s: &GriddedSeries, t: usize) -> Option<(usize, QuantileForecast)> {
        let c = self.current.as_mut()?;
        let rows = &s.window.rows;
        for r in &rows[c.seen..t] {
            c.ledger.observe(r.timestamp, r.target());
        }
        c.seen = t;
        c.ledger.choose(rows[t - 1].timestamp);
        let fcs = self
            .spec
            .candidates
            .iter()
            .map(|m| m.forecast(&rows[..t], self.horizon).ok())
            .collect();
        c.ledger.record(rows[t].timestamp, s.window.step, fcs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Series, prepare};
    use crate::domain::MetricSample;
    use crate::eval::{EvalOptions, evaluate, evaluate_with};

    #[test]
    fn auto_serves_the_better_candidate_from_evidence_before_the_test() {
        // A ramp: naive is off by h / 4 at step h, seasonal naive by 72.
        let samples = (0..3000)
            .map(|i| MetricSample::cpu_only(i as i64 * 300, i as f32 * 0.25))
            .collect();
        let series = prepare(
            &[Series {
                id: "ramp".into(),
                samples,
            }],
            300,
        );
        let spec = AutoSpec {
            candidates: vec![
                Forecaster::by_name("snaive").unwrap(),
                Forecaster::by_name("naive").unwrap(),
            ],
            config: LedgerConfig::default(),
        };
        let opts = EvalOptions::default();
        let mut replay = AutoReplay::new(&spec, opts.horizon);
        let auto = evaluate_with(
            "auto",
            &series,
            opts,
            |si, s, t| replay.forecast(si, s, t),
            || (),
            &mut [],
        )
        .unwrap();
        let summary = replay.finish();
        let naive = evaluate(&spec.candidates[1], &series, opts, || (), &mut []).unwrap();
        // The validation segment (450 steps) gave naive the evidence: every
        // test origin is served by it, with its median.
        assert_eq!(summary.served.get("naive"), Some(&auto.origins));
        assert_eq!(summary.switches, 1);
        assert_eq!(auto.points, naive.points);
        assert!(
            (auto.mae - naive.mae).abs() < 1e-9,
            "{} vs {}",
            auto.mae,
            naive.mae
        );
        assert!(
            summary.line().starts_with("served naive 100.0 %"),
            "{}",
            summary.line()
        );
    }
}
