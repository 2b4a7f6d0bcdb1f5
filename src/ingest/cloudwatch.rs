//! Pull a group's metrics from CloudWatch (`GetMetricData`) and turn them
//! into samples, mapped as docs/features.md says.
//!
//! - One query per (namespace, metric, statistic) below, dimension
//!   `AutoScalingGroupName`; all pages are read (`NextToken`).
//! - The window is aligned to the period, ends at the last *complete*
//!   period, and re-reads [`LATE_PERIODS`] periods before the last one
//!   read, because CloudWatch fills periods in late. The store replaces a
//!   sample with the same timestamp, so re-reading is idempotent.
//! - A feature with no datapoint for a period is absent (`None`), never
//!   invented; a period with no datapoint at all gives no sample.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

use crate::domain::{MetricSample, N_MEASURED, ScalingGroup, feature_index};

/// Periods re-read on every pull (late data).
pub const LATE_PERIODS: i64 = 3;

/// How a CloudWatch statistic becomes a feature value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Convert {
    /// As reported.
    Same,
    /// Multiply.
    Scale(f64),
    /// Sum over the period -> per second, times a factor.
    PerSecond(f64),
}

/// One CloudWatch query and the feature it feeds.
#[derive(Debug, Clone, Copy)]
struct Source {
    id: &'static str,
    namespace: &'static str,
    metric: &'static str,
    stat: &'static str,
    feature: &'static str,
    convert: Convert,
}

/// docs/features.md's CloudWatch column. Two sources feeding one feature
/// (disk ops) are added.
const SOURCES: [Source; 10] = [
    Source {
        id: "cpu",
        namespace: "AWS/EC2",
        metric: "CPUUtilization",
        stat: "Average",
        feature: "cpu_usage_pct",
        convert: Convert::Same,
    },
    Source {
        id: "mem",
        namespace: "CWAgent",
        metric: "mem_used_percent",
        stat: "Average",
        feature: "mem_used_pct",
        convert: Convert::Same,
    },
    Source {
        id: "swap",
        namespace: "CWAgent",
        metric: "swap_used",
        stat: "Average",
        feature: "swap_used_gb",
        convert: Convert::Scale(1e-9),
    },
    Source {
        id: "drb",
        namespace: "AWS/EC2",
        metric: "DiskReadBytes",
        stat: "Sum",
        feature: "disk_read_mbps",
        convert: Convert::PerSecond(1e-6),
    },
    Source {
        id: "dwb",
        namespace: "AWS/EC2",
        metric: "DiskWriteBytes",
        stat: "Sum",
        feature: "disk_write_mbps",
        convert: Convert::PerSecond(1e-6),
    },
    Source {
        id: "dro",
        namespace: "AWS/EC2",
        metric: "DiskReadOps",
        stat: "Sum",
        feature: "disk_iops",
        convert: Convert::PerSecond(1.0),
    },
    Source {
        id: "dwo",
        namespace: "AWS/EC2",
        metric: "DiskWriteOps",
        stat: "Sum",
        feature: "disk_iops",
        convert: Convert::PerSecond(1.0),
    },
    Source {
        id: "nin",
        namespace: "AWS/EC2",
        metric: "NetworkIn",
        stat: "Sum",
        feature: "net_in_mbps",
        convert: Convert::PerSecond(8e-6),
    },
    Source {
        id: "nout",
        namespace: "AWS/EC2",
        metric: "NetworkOut",
        stat: "Sum",
        feature: "net_out_mbps",
        convert: Convert::PerSecond(8e-6),
    },
    Source {
        id: "cap",
        namespace: "AWS/AutoScaling",
        metric: "GroupInServiceInstances",
        stat: "Average",
        feature: "",
        convert: Convert::Same,
    },
];

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
#[error("CloudWatch GetMetricData for {group} failed: {message}")]
pub struct PullError {
    pub group: String,
    pub message: String,
}

/// The window to read at `now`: from the newest stored period (or
/// `lookback_periods` back when the group has no data yet), re-reading
/// [`LATE_PERIODS`], to the end of the last complete period. `None` when
/// nothing is due.
pub fn pull_window(
    period: i64,
    newest_stored: Option<i64>,
    lookback_periods: i64,
    now: i64,
) -> Option<(i64, i64)> {
    let p = period.max(60);
    let end = now.div_euclid(p) * p;
    let start = match newest_stored {
        Some(t) => t.div_euclid(p) * p - LATE_PERIODS * p,
        None => end - lookback_periods * p,
    };
    (start < end).then_some((start, end))
}

/// Pulls metrics of Auto Scaling groups from CloudWatch.
#[derive(Debug, Clone)]
pub struct CloudWatchPuller {
    client: Client,
    /// Period in seconds (the store's grid step).
    pub period: i64,
}

impl CloudWatchPuller {
    pub fn new(sdk: &aws_config::SdkConfig, period: i64) -> Self {
        Self {
            client: Client::new(sdk),
            period: period.max(60),
        }
    }

    /// The window to read at `now` ([`pull_window`] with this period).
    pub fn window(
        &self,
        newest_stored: Option<i64>,
        lookback_periods: i64,
        now: i64,
    ) -> Option<(i64, i64)> {
        pull_window(self.period, newest_stored, lookback_periods, now)
    }

    /// Samples of `group` for periods in `[start, end)`, oldest first.
    pub async fn pull(
        &self,
        group: &ScalingGroup,
        start: i64,
        end: i64,
    ) -> Result<Vec<MetricSample>, PullError> {
        let dim = Dimension::builder()
            .name("AutoScalingGroupName")
            .value(group.as_str())
            .build();
        let mut req = self
            .client
            .get_metric_data()
            .start_time(AwsDateTime::from_secs(start))
            .end_time(AwsDateTime::from_secs(end));
        for s in &SOURCES {
            let metric = Metric::builder()
                .namespace(s.namespace)
                .metric_name(s.metric)
                .dimensions(dim.clone())
                .build();
            let stat = MetricStat::builder()
                .metric(metric)
                .period(self.period as i32)
                .stat(s.stat)
                .build();
            req = req.metric_data_queries(
                MetricDataQuery::builder()
                    .id(s.id)
                    .metric_stat(stat)
                    .return_data(true)
                    .build(),
            );
        }
        let err = |e: String| PullError {
            group: group.to_string(),
            message: e,
        };
        let mut pages = req.into_paginator().send();
        // timestamp -> (values, capacity)
        let mut rows: BTreeMap<i64, ([Option<f64>; N_MEASURED], Option<f64>)> = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| err(aws_sdk_cloudwatch::error::DisplayErrorContext(&e).to_string()))?;
            for r in page.metric_data_results() {
                let Some(src) = SOURCES.iter().find(|s| Some(s.id) == r.id()) else {
                    continue;
                };
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    let ts = t.secs().div_euclid(self.period) * self.period;
                    if ts < start || ts >= end || !v.is_finite() {
                        continue;
                    }
                    let row = rows.entry(ts).or_insert(([None; N_MEASURED], None));
                    let value = match src.convert {
                        Convert::Same => *v,
                        Convert::Scale(k) => v * k,
                        Convert::PerSecond(k) => v * k / self.period as f64,
                    };
                    match feature_index(src.feature) {
                        Some(i) => {
                            // Two sources may feed one feature (disk ops).
                            row.0[i] = Some(row.0[i].unwrap_or(0.0) + value);
                        }
                        None => row.1 = Some(value),
                    }
                }
            }
        }
        Ok(rows
            .into_iter()
            .map(|(t, (values, cap))| MetricSample {
                timestamp: t,
                values: values.map(|v| v.map(|x| x as f32)),
                capacity: cap.map(|c| c as f32),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_maps_to_a_feature_or_capacity() {
        for s in &SOURCES {
            assert!(
                s.feature.is_empty() || feature_index(s.feature).is_some(),
                "{}",
                s.feature
            );
            assert!(s.id.starts_with(|c: char| c.is_ascii_lowercase()));
        }
    }

    #[test]
    fn the_window_is_aligned_and_rereads_late_periods() {
        let now = 1_700_000_123;
        let end = now / 300 * 300;
        assert_eq!(pull_window(300, None, 12, now), Some((end - 3600, end)));
        assert_eq!(
            pull_window(300, Some(end - 300), 12, now),
            Some((end - 4 * 300, end))
        );
        assert_eq!(pull_window(300, Some(end + 3 * 300 + 10), 12, now), None);
    }
}
