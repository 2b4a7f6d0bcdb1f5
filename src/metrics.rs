//! Service metrics in the Prometheus text format. A small hand-written
//! registry: a few counters and one latency histogram per route are all the
//! service needs, and it keeps the dependency list short.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// (control-loop stage, succeeded)
type StageKey = (&'static str, bool);

#[derive(Debug, Default)]
pub struct Metrics {
    /// (route pattern, method, status) -> count
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route pattern -> latency
    latency: Mutex<BTreeMap<String, Histogram>>,
    samples_accepted: AtomicU64,
    batches_accepted: AtomicU64,
    batches_rejected: AtomicU64,
    /// model -> forecasts served
    forecasts: Mutex<BTreeMap<String, u64>>,
    /// policy -> recommendations served
    recommendations: Mutex<BTreeMap<&'static str, u64>>,
    /// result (hit_memory, hit_redis, miss) -> embedding cache lookups
    cache: Mutex<BTreeMap<&'static str, u64>>,
    /// model -> encoder runs (a cache hit does not run the encoder)
    encoder_runs: Mutex<BTreeMap<String, u64>>,
    /// (control-loop stage, ok) -> (runs, seconds)
    control: Mutex<BTreeMap<StageKey, (u64, f64)>>,
    /// outcome (promoted, kept, skipped, failed) -> background retrain rounds
    retrains: Mutex<BTreeMap<&'static str, u64>>,
    /// group -> its accuracy ledger's latest state
    accuracy: Mutex<BTreeMap<String, GroupAccuracy>>,
}

/// What `/metrics` shows of one group's accuracy ledger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupAccuracy {
    /// The model `auto` serves the group with.
    pub served: String,
    /// The served model's WQL over the last day / naive's.
    pub wql_ratio: Option<f64>,
    /// Share of the last day's actuals inside the served p10-p90.
    pub coverage: Option<f64>,
    pub degraded: bool,
    /// Changes of the served model since the service started.
    pub switches: u64,
}

impl Metrics {
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        let mut lat = self.latency.lock();
        let h = lat.entry(route.to_owned()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn batch_accepted(&self, samples: usize) {
        self.batches_accepted.fetch_add(1, Ordering::Relaxed);
        self.samples_accepted
            .fetch_add(samples as u64, Ordering::Relaxed);
    }

    pub fn batch_rejected(&self) {
        self.batches_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forecast_served(&self, model: &str) {
        *self.forecasts.lock().entry(model.to_owned()).or_default() += 1;
    }

    pub fn recommendation_served(&self, policy: &'static str) {
        *self.recommendations.lock().entry(policy).or_default() += 1;
    }

    pub fn cache_lookup(&self, result: &'static str) {
        *self.cache.lock().entry(result).or_default() += 1;
    }

    pub fn encoder_run(&self, model: &str) {
        *self
            .encoder_runs
            .lock()
            .entry(model.to_owned())
            .or_default() += 1;
    }

    /// One control-loop stage (ingest, forecast, actuate) for one group.
    pub fn control_stage(&self, stage: &'static str, ok: bool, seconds: f64) {
        let mut c = self.control.lock();
        let e = c.entry((stage, ok)).or_default();
        e.0 += 1;
        e.1 += seconds;
    }

    /// A group's ledger was brought up to date: its gauges, and `switches`
    /// more changes of its served model.
    pub fn group_accuracy(&self, group: &str, mut state: GroupAccuracy, switches: u64) {
        let mut all = self.accuracy.lock();
        state.switches = all.get(group).map_or(0, |g| g.switches) + switches;
        all.insert(group.to_owned(), state);
    }

    pub fn retrain_round(&self, outcome: &'static str) {
        *self.retrains.lock().entry(outcome).or_default() += 1;
    }

    /// Render everything, plus the gauges the caller knows.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP forescale_http_requests_total HTTP requests by route, method and status.\n# TYPE forescale_http_requests_total counter"
        );
        for ((route, method, status), n) in self.requests.lock().iter() {
            let _ = writeln!(
                w,
                "forescale_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            w,
            "# HELP forescale_http_request_duration_seconds HTTP request latency by route.\n# TYPE forescale_http_request_duration_seconds histogram"
        );
        for (route, h) in self.latency.lock().iter() {
            let r = escape(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    w,
                    "forescale_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                w,
                "forescale_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}\nforescale_http_request_duration_seconds_sum{{route=\"{r}\"}} {}\nforescale_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        for (name, help, v) in [
            (
                "forescale_samples_accepted_total",
                "Samples accepted by ingest.",
                self.samples_accepted.load(Ordering::Relaxed),
            ),
            (
                "forescale_batches_accepted_total",
                "Ingest batches accepted.",
                self.batches_accepted.load(Ordering::Relaxed),
            ),
            (
                "forescale_batches_rejected_total",
                "Ingest batches rejected (nothing stored).",
                self.batches_rejected.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let _ = writeln!(
            w,
            "# HELP forescale_forecasts_total Forecasts served by model.\n# TYPE forescale_forecasts_total counter"
        );
        for (model, n) in self.forecasts.lock().iter() {
            let _ = writeln!(w, "forescale_forecasts_total{{model=\"{model}\"}} {n}");
        }
        let _ = writeln!(
            w,
            "# HELP forescale_recommendations_total Capacity recommendations served by policy.\n# TYPE forescale_recommendations_total counter"
        );
        for (policy, n) in self.recommendations.lock().iter() {
            let _ = writeln!(
                w,
                "forescale_recommendations_total{{policy=\"{policy}\"}} {n}"
            );
        }
        let _ = writeln!(
            w,
            "# HELP forescale_embedding_cache_lookups_total Embedding cache lookups by result.\n# TYPE forescale_embedding_cache_lookups_total counter"
        );
        for (result, n) in self.cache.lock().iter() {
            let _ = writeln!(
                w,
                "forescale_embedding_cache_lookups_total{{result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(
            w,
            "# HELP forescale_encoder_runs_total Encoder passes by model (cache hits skip it).\n# TYPE forescale_encoder_runs_total counter"
        );
        for (model, n) in self.encoder_runs.lock().iter() {
            let _ = writeln!(w, "forescale_encoder_runs_total{{model=\"{model}\"}} {n}");
        }
        let _ = writeln!(
            w,
            "# HELP forescale_control_stage_total Control-loop stage runs by stage and outcome.\n# TYPE forescale_control_stage_total counter"
        );
        let control = self.control.lock();
        for ((stage, ok), (n, _)) in control.iter() {
            let outcome = if *ok { "ok" } else { "error" };
            let _ = writeln!(
                w,
                "forescale_control_stage_total{{stage=\"{stage}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            w,
            "# HELP forescale_control_stage_seconds_total Time spent in control-loop stages.\n# TYPE forescale_control_stage_seconds_total counter"
        );
        for ((stage, ok), (_, secs)) in control.iter() {
            let outcome = if *ok { "ok" } else { "error" };
            let _ = writeln!(
                w,
                "forescale_control_stage_seconds_total{{stage=\"{stage}\",outcome=\"{outcome}\"}} {secs}"
            );
        }
        drop(control);
        let _ = writeln!(
            w,
            "# HELP forescale_policy_retrains_total Background policy retrain rounds by outcome.\n# TYPE forescale_policy_retrains_total counter"
        );
        for (outcome, n) in self.retrains.lock().iter() {
            let _ = writeln!(
                w,
                "forescale_policy_retrains_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let accuracy = self.accuracy.lock();
        if !accuracy.is_empty() {
            let _ = writeln!(
                w,
                "# HELP forescale_model_switches_total Changes of the model auto serves a group with.\n# TYPE forescale_model_switches_total counter"
            );
            for (g, a) in accuracy.iter() {
                let _ = writeln!(
                    w,
                    "forescale_model_switches_total{{group=\"{}\"}} {}",
                    escape(g),
                    a.switches
                );
            }
            let _ = writeln!(
                w,
                "# HELP forescale_served_model The model auto serves each group with (1).\n# TYPE forescale_served_model gauge"
            );
            for (g, a) in accuracy.iter() {
                let _ = writeln!(
                    w,
                    "forescale_served_model{{group=\"{}\",model=\"{}\"}} 1",
                    escape(g),
                    escape(&a.served)
                );
            }
            let _ = writeln!(
                w,
                "# HELP forescale_forecast_wql_ratio_to_naive The served model's WQL over the last day over naive's.\n# TYPE forescale_forecast_wql_ratio_to_naive gauge"
            );
            for (g, a) in accuracy.iter() {
                if let Some(r) = a.wql_ratio {
                    let _ = writeln!(
                        w,
                        "forescale_forecast_wql_ratio_to_naive{{group=\"{}\"}} {r}",
                        escape(g)
                    );
                }
            }
            let _ = writeln!(
                w,
                "# HELP forescale_forecast_coverage Share of the last day's actuals inside the served p10-p90.\n# TYPE forescale_forecast_coverage gauge"
            );
            for (g, a) in accuracy.iter() {
                if let Some(c) = a.coverage {
                    let _ = writeln!(
                        w,
                        "forescale_forecast_coverage{{group=\"{}\"}} {c}",
                        escape(g)
                    );
                }
            }
            let _ = writeln!(
                w,
                "# HELP forescale_forecast_degraded 1 when the served model did worse than naive over the last day.\n# TYPE forescale_forecast_degraded gauge"
            );
            for (g, a) in accuracy.iter() {
                let _ = writeln!(
                    w,
                    "forescale_forecast_degraded{{group=\"{}\"}} {}",
                    escape(g),
                    u8::from(a.degraded)
                );
            }
        }
        drop(accuracy);
        for (name, help, v) in gauges {
            let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.observe_request("/v1/groups", "GET", 200, 0.003);
        m.batch_accepted(5);
        m.forecast_served("naive");
        let text = m.render(&[("forescale_groups", "Groups known.", 2.0)]);
        assert!(text.contains(
            "forescale_http_requests_total{route=\"/v1/groups\",method=\"GET\",status=\"200\"} 1"
        ));
        assert!(text.contains(
            "forescale_http_request_duration_seconds_bucket{route=\"/v1/groups\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "forescale_http_request_duration_seconds_bucket{route=\"/v1/groups\",le=\"0.001\"} 0"
        ));
        assert!(text.contains("forescale_samples_accepted_total 5"));
        assert!(text.contains("forescale_forecasts_total{model=\"naive\"} 1"));
        assert!(text.contains("forescale_groups 2"));
        assert!(!text.contains("forescale_served_model"));
    }

    #[test]
    fn renders_each_groups_accuracy_and_counts_switches() {
        let m = Metrics::default();
        let a = GroupAccuracy {
            served: "naive".into(),
            wql_ratio: Some(1.0),
            coverage: Some(0.8),
            degraded: false,
            switches: 0,
        };
        m.group_accuracy("web", a.clone(), 1);
        m.group_accuracy("web", a, 2);
        m.group_accuracy(
            "a\"b",
            GroupAccuracy {
                served: "mstl".into(),
                degraded: true,
                ..GroupAccuracy::default()
            },
            0,
        );
        let text = m.render(&[]);
        assert!(text.contains("forescale_model_switches_total{group=\"web\"} 3"));
        assert!(text.contains("forescale_served_model{group=\"web\",model=\"naive\"} 1"));
        assert!(text.contains("forescale_forecast_wql_ratio_to_naive{group=\"web\"} 1"));
        assert!(text.contains("forescale_forecast_coverage{group=\"web\"} 0.8"));
        assert!(text.contains("forescale_forecast_degraded{group=\"a\\\"b\"} 1"));
        // No score, no gauge.
        assert!(!text.contains("forescale_forecast_coverage{group=\"a"));
    }
}
