//! `forescale replay`: stream a trace into a running service, in time order,
//! at N x real time (or as fast as the service takes it). It is the README
//! demo and the ingest throughput probe: it prints samples/s at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use indicatif::ProgressBar;

use super::DatasetArgs;
use crate::data::{self, Series};
use crate::domain::{FEATURE_NAMES, MetricSample, ScalingGroup};
use crate::forecast::quantile;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Base URL of the service.
    #[arg(long, env = "FORESCALE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Series to replay (repeat the flag); default: the first --max-series.
    #[arg(
        long = "series",
        env = "FORESCALE_REPLAY_SERIES",
        value_delimiter = ','
    )]
    pub series: Vec<String>,
    /// How many series to replay when --series is not given.
    #[arg(long, env = "FORESCALE_REPLAY_MAX_SERIES", default_value_t = 1)]
    pub max_series: usize,
    /// Group name prefix; each series goes to group `<prefix><series id>`.
    #[arg(long, env = "FORESCALE_REPLAY_GROUP_PREFIX", default_value = "")]
    pub group_prefix: String,
    /// Speed-up over real time (288 = a day of 5-minute samples in 5 min);
    /// 0 = as fast as the service accepts.
    #[arg(long, env = "FORESCALE_REPLAY_SPEED", default_value_t = 0.0)]
    pub speed: f64,
    /// Samples per request.
    #[arg(long, env = "FORESCALE_REPLAY_BATCH", default_value_t = 288)]
    pub batch: usize,
    /// Requests in flight at once.
    #[arg(long, env = "FORESCALE_REPLAY_CONCURRENCY", default_value_t = 1)]
    pub concurrency: usize,
    /// Shift timestamps by whole weeks so the trace ends near now (keeps
    /// time of day and weekday).
    #[arg(long, env = "FORESCALE_REPLAY_SHIFT_TO_NOW")]
    pub shift_to_now: bool,
    /// Also write the selected series as long CSV here (for inspection).
    #[arg(long, env = "FORESCALE_REPLAY_SAVE")]
    pub save: Option<PathBuf>,
}

/// A group name made from a series id: invalid characters become '-'.
/// A gap after which a new batch starts: the service takes a batch whole
/// or refuses it, and refuses one whose oldest sample is older than its
/// retention before the newest (the Google tasks have gaps of two weeks).
const SPLIT_GAP_SECONDS: i64 = 86_400;

/// `samples` (in time order) in batches of at most `size`, never across a
/// gap longer than [`SPLIT_GAP_SECONDS`].
fn batches(samples: &[MetricSample], size: usize) -> Vec<&[MetricSample]> {
    samples
        .chunk_by(|a, b| b.timestamp - a.timestamp <= SPLIT_GAP_SECONDS)
        .flat_map(|run| run.chunks(size.max(1)))
        .collect()
}

pub fn group_name(prefix: &str, id: &str) -> anyhow::Result<ScalingGroup> {
    let clean: String = format!("{prefix}{id}")
        .chars()
        .map(|c| {
            if matches!(c, '!'..='~') && c != ':' {
                c
            } else {
                '-'
            }
        })
        .take(255)
        .collect();
    Ok(ScalingGroup::parse(&clean)?)
}

fn body(samples: &[MetricSample]) -> serde_json::Value {
    let samples: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            let mut features = serde_json::Map::new();
            for (j, v) in s.values.iter().enumerate() {
                if let Some(v) = v {
                    features.insert(FEATURE_NAMES[j].to_owned(), (*v).into());
                }
            }
            let mut o = serde_json::json!({"timestamp": s.timestamp, "features": features});
            if let Some(c) = s.capacity {
                o["capacity"] = c.into();
            }
            o
        })
        .collect();
    serde_json::json!({ "samples": samples })
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    let source = args.data.source()?;
    let (all, _) = tokio::task::spawn_blocking(move || data::load(&source)).await??;
    let mut chosen: Vec<Series> = if args.series.is_empty() {
        all.into_iter().take(args.max_series).collect()
    } else {
        let mut out = Vec::new();
        for id in &args.series {
            let s = all
                .iter()
                .find(|s| &s.id == id)
                .with_context(|| format!("no series {id:?} in the dataset"))?;
            out.push(s.clone());
        }
        out
    };
    if args.shift_to_now {
        let last = chosen
            .iter()
            .filter_map(|s| s.samples.last())
            .map(|s| s.timestamp)
            .max()
            .unwrap_or(0);
        let week = 7 * 86_400;
        let shift = (chrono::Utc::now().timestamp() - last).div_euclid(week) * week;
        for s in &mut chosen {
            for x in &mut s.samples {
                x.timestamp += shift;
            }
        }
    }
    if let Some(path) = &args.save {
        data::write_long_csv(&chosen, std::fs::File::create(path)?)?;
    }
    // Jobs in time order across series: (group, samples).
    let mut jobs: Vec<(ScalingGroup, Vec<MetricSample>)> = Vec::new();
    for s in &chosen {
        let g = group_name(&args.group_prefix, &s.id)?;
        for chunk in batches(&s.samples, args.batch) {
            jobs.push((g.clone(), chunk.to_vec()));
        }
    }
    jobs.sort_by_key(|(_, c)| c.first().map_or(0, |s| s.timestamp));
    let total: usize = jobs.iter().map(|(_, c)| c.len()).sum();
    let t0 = jobs
        .first()
        .and_then(|(_, c)| c.first())
        .map_or(0, |s| s.timestamp);
    eprintln!(
        "replaying {} series, {total} samples in {} requests to {} ({})",
        chosen.len(),
        jobs.len(),
        args.url,
        if args.speed > 0.0 {
            format!("{}x real time", args.speed)
        } else {
            "as fast as possible".into()
        }
    );
    let client = reqwest::Client::new();
    let pb = ProgressBar::new(total as u64);
    let started = Instant::now();
    let base = args.url.trim_end_matches('/').to_owned();
    let speed = args.speed;
    let mut results = futures_util::stream::iter(jobs.into_iter().map(|(group, chunk)| {
        let client = client.clone();
        let url = format!("{base}/v1/groups/{group}/samples");
        async move {
            if speed > 0.0 {
                let due = Duration::from_secs_f64(
                    (chunk.last().map_or(t0, |s| s.timestamp) - t0) as f64 / speed,
                );
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            let sent = Instant::now();
            let resp = client.post(&url).json(&body(&chunk)).send().await;
            (chunk.len(), sent.elapsed(), resp)
        }
    }))
    .buffered(args.concurrency);
    let mut latencies = Vec::new();
    let mut sent = 0usize;
    while let Some((n, took, resp)) = results.next().await {
        let resp = resp.with_context(|| format!("sending to {base}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("the service refused a batch ({status}): {text}");
        }
        latencies.push(took.as_secs_f32() * 1e3);
        sent += n;
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let p50 = quantile(&mut latencies, 0.5).unwrap_or(f32::NAN);
    let p99 = quantile(&mut latencies, 0.99).unwrap_or(f32::NAN);
    println!(
        "replayed {sent} samples in {} requests in {secs:.2} s: {:.0} samples/s; request latency p50 {p50:.2} ms, p99 {p99:.2} ms",
        latencies.len(),
        sent as f64 / secs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_span_a_long_gap() {
        let at = |t: i64| MetricSample {
            timestamp: t,
            values: [None; crate::domain::N_MEASURED],
            capacity: None,
        };
        let day = SPLIT_GAP_SECONDS;
        let s: Vec<MetricSample> = [0, 300, 600, 900, 900 + 15 * day, 1_200 + 15 * day]
            .into_iter()
            .map(at)
            .collect();
        let sizes: Vec<usize> = batches(&s, 3).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [3, 1, 2]);
        assert_eq!(batches(&s, 3)[2][0].timestamp, 900 + 15 * day);
    }
}
