//! Ingest: turns what clients push into validated [`MetricSample`]s.
//!
//! Validation walks the JSON value by hand (rather than through serde's
//! derive) so that every error names the exact place: the sample index, its
//! timestamp and the feature. A batch is all or nothing: the first error
//! rejects it and nothing is stored.
//!
//! [`cloudwatch`] pulls the same samples from CloudWatch.

pub mod cloudwatch;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::{
    FEATURE_BOUNDS, FEATURE_NAMES, MAX_CAPACITY, MetricSample, N_MEASURED, TARGET, feature_index,
    is_calendar, rfc3339,
};

/// A refused request body. `field` is a JSON path into the body.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_index: Option<usize>,
    /// The sample's timestamp as RFC 3339, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            sample_index: None,
            timestamp: None,
            feature: None,
        }
    }
}

/// Limits applied to one pushed batch.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Most samples in one request.
    pub max_batch: usize,
    /// How far past the server clock a timestamp may be (clock skew).
    pub max_future_seconds: i64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_batch: 10_000,
            max_future_seconds: 3_600,
        }
    }
}

/// Parse and validate `{"samples": [...]}`. `extra_keys` lists other
/// top-level keys the caller accepts (for the stateless forecast body).
pub fn parse_batch(
    body: &Value,
    limits: &IngestLimits,
    now: i64,
    extra_keys: &[&str],
) -> Result<Vec<MetricSample>, ValidationError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ValidationError::new("$", "the body must be a JSON object"))?;
    for key in obj.keys() {
        if key != "samples" && !extra_keys.contains(&key.as_str()) {
            return Err(ValidationError::new(key.clone(), "unknown field"));
        }
    }
    let samples = obj
        .get("samples")
        .ok_or_else(|| ValidationError::new("samples", "missing field"))?
        .as_array()
        .ok_or_else(|| ValidationError::new("samples", "must be an array"))?;
    if samples.is_empty() {
        return Err(ValidationError::new("samples", "the batch is empty"));
    }
    if samples.len() > limits.max_batch {
        return Err(ValidationError::new(
            "samples",
            format!(
                "the batch has {} samples; the limit is {}",
                samples.len(),
                limits.max_batch
            ),
        ));
    }
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| parse_sample(i, s, limits, now))
        .collect()
}

fn parse_sample(
    index: usize,
    value: &Value,
    limits: &IngestLimits,
    now: i64,
) -> Result<MetricSample, ValidationError> {
    let at = |field: &str, message: String| ValidationError {
        field: format!("samples[{index}]{field}"),
        message,
        sample_index: Some(index),
        timestamp: None,
        feature: None,
    };
    let obj = value
        .as_object()
        .ok_or_else(|| at("", "each sample must be a JSON object".into()))?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "timestamp" | "features" | "capacity") {
            return Err(at(&format!(".{key}"), "unknown field".into()));
        }
    }
    let ts_value = obj
        .get("timestamp")
        .ok_or_else(|| at(".timestamp", "missing field".into()))?;
    let timestamp = parse_timestamp(ts_value).map_err(|m| at(".timestamp", m))?;
    if timestamp > now + limits.max_future_seconds {
        return Err(at(
            ".timestamp",
            format!(
                "{} is more than {} s ahead of the server clock ({})",
                rfc3339(timestamp),
                limits.max_future_seconds,
                rfc3339(now)
            ),
        ));
    }
    // From here on, errors also carry the timestamp.
    let at = |field: &str, message: String, feature: Option<&str>| ValidationError {
        timestamp: Some(rfc3339(timestamp)),
        feature: feature.map(str::to_owned),
        ..at(field, message)
    };
    let features: &Map<String, Value> = obj
        .get("features")
        .ok_or_else(|| at(".features", "missing field".into(), None))?
        .as_object()
        .ok_or_else(|| at(".features", "must be a JSON object".into(), None))?;
    let mut values = [None; N_MEASURED];
    for (name, v) in features {
        let field = format!(".features.{name}");
        let Some(i) = feature_index(name) else {
            return Err(at(
                &field,
                format!(
                    "unknown feature {name:?}; the measured features are: {}",
                    FEATURE_NAMES[..N_MEASURED].join(", ")
                ),
                Some(name),
            ));
        };
        if is_calendar(i) {
            return Err(at(
                &field,
                "calendar features are computed from the timestamp; do not send them".into(),
                Some(name),
            ));
        }
        if v.is_null() {
            continue; // explicit null = absent
        }
        let x = v.as_f64().ok_or_else(|| {
            at(
                &field,
                format!("must be a number, got {}", json_type(v)),
                Some(name),
            )
        })?;
        let (lo, hi) = FEATURE_BOUNDS[i];
        if !(lo..=hi).contains(&x) {
            return Err(at(
                &field,
                format!("{x} is outside the physical bounds [{lo}, {hi}]"),
                Some(name),
            ));
        }
        values[i] = Some(x as f32);
    }
    if values[TARGET].is_none() {
        let name = FEATURE_NAMES[TARGET];
        return Err(at(
            &format!(".features.{name}"),
            "is required in every sample".into(),
            Some(name),
        ));
    }
    let capacity = match obj.get("capacity") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let c = v.as_f64().ok_or_else(|| {
                at(
                    ".capacity",
                    format!("must be a number, got {}", json_type(v)),
                    None,
                )
            })?;
            if !(0.0..=MAX_CAPACITY).contains(&c) {
                return Err(at(
                    ".capacity",
                    format!("{c} is outside [0, {MAX_CAPACITY}]"),
                    None,
                ));
            }
            Some(c as f32)
        }
    };
    Ok(MetricSample {
        timestamp,
        values,
        capacity,
    })
}

/// Unix seconds (an integer, or a number whose fraction is dropped) or an
/// RFC 3339 string (sub-second part dropped).
pub fn parse_timestamp(v: &Value) -> Result<i64, String> {
    let ts = match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if !f.is_finite() || f.abs() > 1e13 {
                    return Err(format!("{n} is not a usable Unix time in seconds"));
                }
                f.floor() as i64
            }
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))?
            .timestamp(),
        other => {
            return Err(format!(
                "must be an RFC 3339 string or Unix seconds, got {}",
                json_type(other)
            ));
        }
    };
    if ts < 0 {
        return Err(format!("{ts} is before 1970-01-01"));
    }
    Ok(ts)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn parse(v: Value) -> Result<Vec<MetricSample>, ValidationError> {
        parse_batch(&v, &IngestLimits::default(), NOW, &[])
    }

    #[test]
    fn accepts_both_timestamp_forms_and_absent_features() {
        let s = parse(json!({"samples": [
            {"timestamp": "2013-08-01T00:00:00Z", "features": {"cpu_usage_pct": 1.5, "mem_used_pct": null}},
            {"timestamp": 1375315500.7, "features": {"cpu_usage_pct": 2}, "capacity": 4},
        ]}))
        .unwrap();
        assert_eq!(s[0].timestamp, 1_375_315_200);
        assert_eq!(s[0].values[4], None);
        assert_eq!(s[1].timestamp, 1_375_315_500);
        assert_eq!(s[1].capacity, Some(4.0));
    }

    #[test]
    fn errors_name_index_timestamp_and_feature() {
        let e = parse(json!({"samples": [
            {"timestamp": 0, "features": {"cpu_usage_pct": 1}},
            {"timestamp": 300, "features": {"cpu_usage_pct": 1, "disk_iops": -3}},
        ]}))
        .unwrap_err();
        assert_eq!(e.field, "samples[1].features.disk_iops");
        assert_eq!(e.sample_index, Some(1));
        assert_eq!(e.timestamp.as_deref(), Some("1970-01-01T00:05:00Z"));
        assert_eq!(e.feature.as_deref(), Some("disk_iops"));
    }

    #[test]
    fn rejects_what_it_should() {
        let bad = [
            json!([]),
            json!({"samples": []}),
            json!({"samples": [], "x": 1}),
            json!({"samples": [{"timestamp": 0, "features": {}}]}),
            json!({"samples": [{"timestamp": 0, "features": {"cpu_usage_pct": "1"}}]}),
            json!({"samples": [{"timestamp": 0, "features": {"cpu_usage_pct": 1, "gpu": 1}}]}),
            json!({"samples": [{"timestamp": 0, "features": {"cpu_usage_pct": 1, "hour_of_day": 1}}]}),
            json!({"samples": [{"timestamp": 0, "features": {"cpu_usage_pct": 400}}]}),
            json!({"samples": [{"timestamp": -5, "features": {"cpu_usage_pct": 1}}]}),
            json!({"samples": [{"timestamp": "yesterday", "features": {"cpu_usage_pct": 1}}]}),
            json!({"samples": [{"timestamp": NOW + 7200, "features": {"cpu_usage_pct": 1}}]}),
            json!({"samples": [{"timestamp": 0, "features": {"cpu_usage_pct": 1}, "capacity": -1}]}),
            json!({"samples": [{"timestamp": 0, "features": {"cpu_usage_pct": 1}, "extra": 1}]}),
        ];
        for b in bad {
            assert!(parse(b.clone()).is_err(), "accepted {b}");
        }
    }

    #[test]
    fn batch_limit_is_enforced() {
        let one = json!({"timestamp": 0, "features": {"cpu_usage_pct": 1}});
        let body = json!({"samples": vec![one; 3]});
        let limits = IngestLimits {
            max_batch: 2,
            ..IngestLimits::default()
        };
        let e = parse_batch(&body, &limits, NOW, &[]).unwrap_err();
        assert!(e.message.contains("limit is 2"), "{e}");
    }
}
