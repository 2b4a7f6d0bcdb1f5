//! Domain types shared by every stage: the scaling-group name, the 23
//! features of docs/features.md with their physical bounds, and one metric sample.
//!
//! Everything here validates at the edge, so code further down the pipeline
//! can trust what it holds.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Number of model input features (20 measured + 3 calendar).
pub const N_FEATURES: usize = 23;
/// Number of measured features, the ones a client (or CloudWatch) supplies.
pub const N_MEASURED: usize = 20;
/// Index of the forecast target, `cpu_usage_pct`.
pub const TARGET: usize = 0;

/// Feature names in model order (the order is part of the model format).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "cpu_usage_pct",
    "cpu_freq_ghz",
    "cpu_temp_c",
    "cpu_core_std_pct",
    "mem_used_pct",
    "cache_miss_kps",
    "swap_used_gb",
    "page_faults_ps",
    "disk_read_mbps",
    "disk_write_mbps",
    "disk_iops",
    "disk_latency_ms",
    "net_in_mbps",
    "net_out_mbps",
    "packet_loss_pct",
    "tcp_errors_ps",
    "power_w",
    "ctx_switches_ps",
    "interrupts_ps",
    "load_avg_1m",
    "hour_of_day",
    "day_of_week",
    "minute_of_hour",
];

/// Inclusive physical bounds of each measured feature. Percentages may run a
/// little over 100 (Bitbrains reports up to 105.7 % of provisioned CPU), but
/// not "far above"; rates are never negative.
pub const FEATURE_BOUNDS: [(f64, f64); N_MEASURED] = [
    (0.0, 150.0),   // cpu_usage_pct
    (0.0, 10.0),    // cpu_freq_ghz
    (-50.0, 150.0), // cpu_temp_c
    (0.0, 100.0),   // cpu_core_std_pct
    (0.0, 150.0),   // mem_used_pct
    (0.0, 1e9),     // cache_miss_kps
    (0.0, 1e6),     // swap_used_gb
    (0.0, 1e10),    // page_faults_ps
    (0.0, 1e6),     // disk_read_mbps
    (0.0, 1e6),     // disk_write_mbps
    (0.0, 1e9),     // disk_iops
    (0.0, 1e6),     // disk_latency_ms
    (0.0, 1e7),     // net_in_mbps
    (0.0, 1e7),     // net_out_mbps
    (0.0, 100.0),   // packet_loss_pct
    (0.0, 1e9),     // tcp_errors_ps
    (0.0, 1e7),     // power_w
    (0.0, 1e10),    // ctx_switches_ps
    (0.0, 1e10),    // interrupts_ps
    (0.0, 1e6),     // load_avg_1m
];

/// Upper bound of a group's in-service capacity (instances or weighted units).
pub const MAX_CAPACITY: f64 = 1e6;

/// Steps forecast and planned ahead unless asked otherwise: one hour of
/// 5-minute steps, the trained models' horizon.
pub const HORIZON: usize = 12;

/// A utilisation: a fraction of capacity (0.6 is 60 %). The one type for
/// targets and thresholds, so a percent never meets a fraction.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Utilisation(f64);

impl Utilisation {
    /// The simulator's reference target (POLICY_EVAL.md): 50 %.
    pub const REFERENCE: Self = Self(0.5);
    /// The control loop's default forecast-at-target plan: 60 %.
    pub const DEFAULT_TARGET: Self = Self(0.6);

    /// From a percentage in (0, 100].
    pub fn from_percent(p: f64) -> Result<Self, String> {
        if p > 0.0 && p <= 100.0 {
            Ok(Self(p / 100.0))
        } else {
            Err(format!(
                "a utilisation must be a percentage in (0, 100]; got {p}"
            ))
        }
    }

    pub fn fraction(self) -> f64 {
        self.0
    }

    pub fn percent(self) -> f64 {
        self.0 * 100.0
    }
}

/// Index of a feature name, or `None` when the name is not one of the 23.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURE_NAMES.iter().position(|n| *n == name)
}

/// True for the three features the service derives from the timestamp.
pub fn is_calendar(index: usize) -> bool {
    (N_MEASURED..N_FEATURES).contains(&index)
}

/// Why a scaling-group name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupNameError {
    #[error("group name is empty")]
    Empty,
    #[error("group name is {0} characters long; the maximum is 255")]
    TooLong(usize),
    #[error(
        "group name contains {0:?}; allowed are printable ASCII characters 33 to 126 except ':'"
    )]
    BadCharacter(char),
}

/// The name of an AWS Auto Scaling group, validated as AWS does: 1 to 255
/// printable ASCII characters (33-126) and no colon. That also makes the name
/// safe inside Redis keys, which use ':' as the separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ScalingGroup(String);

impl ScalingGroup {
    pub fn parse(name: &str) -> Result<Self, GroupNameError> {
        if name.is_empty() {
            return Err(GroupNameError::Empty);
        }
        if let Some(c) = name.chars().find(|c| !matches!(*c, '!'..='~') || *c == ':') {
            return Err(GroupNameError::BadCharacter(c));
        }
        if name.len() > 255 {
            return Err(GroupNameError::TooLong(name.len()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScalingGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ScalingGroup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One observation of a group at one instant: the measured features (absent
/// ones are `None`, never invented) and optionally the in-service capacity.
///
/// Serialised compactly (it is what the stores persist): `t` Unix seconds,
/// `v` the 20 measured values in model order with `null` for absent, `c`
/// capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    #[serde(rename = "t")]
    pub timestamp: i64,
    #[serde(rename = "v")]
    pub values: [Option<f32>; N_MEASURED],
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f32>,
}

impl MetricSample {
    /// A sample carrying only the target feature.
    pub fn cpu_only(timestamp: i64, cpu_usage_pct: f32) -> Self {
        let mut values = [None; N_MEASURED];
        values[TARGET] = Some(cpu_usage_pct);
        Self {
            timestamp,
            values,
            capacity: None,
        }
    }
}

/// Format Unix seconds as RFC 3339 UTC (`2013-08-01T00:00:00Z`).
pub fn rfc3339(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_aws_rules() {
        assert!(ScalingGroup::parse("web-asg_1.prod/eu").is_ok());
        assert_eq!(ScalingGroup::parse(""), Err(GroupNameError::Empty));
        assert_eq!(
            ScalingGroup::parse("a:b"),
            Err(GroupNameError::BadCharacter(':'))
        );
        assert_eq!(
            ScalingGroup::parse("a b"),
            Err(GroupNameError::BadCharacter(' '))
        );
        assert_eq!(
            ScalingGroup::parse("é"),
            Err(GroupNameError::BadCharacter('é'))
        );
        assert_eq!(
            ScalingGroup::parse(&"x".repeat(256)),
            Err(GroupNameError::TooLong(256))
        );
        assert!(ScalingGroup::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn feature_table_is_consistent() {
        assert_eq!(feature_index("cpu_usage_pct"), Some(TARGET));
        assert_eq!(feature_index("minute_of_hour"), Some(22));
        assert_eq!(feature_index("nope"), None);
        assert!(is_calendar(20) && !is_calendar(19));
        for (lo, hi) in FEATURE_BOUNDS {
            assert!(lo < hi);
        }
    }

    #[test]
    fn sample_serialises_compactly_and_round_trips() {
        let s = MetricSample::cpu_only(1_375_308_176, 12.5);
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.starts_with(r#"{"t":1375308176,"v":[12.5,null"#),
            "{json}"
        );
        let back: MetricSample = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
