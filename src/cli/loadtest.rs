//! `forescale loadtest`: the open-loop load generator.
//!
//! Requests are sent at a constant arrival rate whatever the service does:
//! request i is due at `start + i / rate`, and its latency is measured from
//! that due time to the end of its response. A slow answer therefore does
//! not slow the arrivals down (a closed loop would wait and hide the
//! queueing), and time spent waiting to be sent counts as latency.
//! Latencies go into HDR histograms (1 us .. 60 s, 3 significant digits).
//!
//! Scenarios (`--scenarios`, default all):
//! - `ingest`: one-sample pushes spread over `--groups` groups;
//! - `recommend-hit`: recommendations over groups whose encoder outputs
//!   are cached (every group asked once before measuring);
//! - `recommend-miss`: the same against a service started with the
//!   embedding cache off (`--cache-capacity 0`), so every request runs the
//!   encoder;
//! - `mixed`: 20 % pushes that rewrite a group's newest sample (so that
//!   group's next recommendation misses the cache), 80 % recommendations;
//! - `many-groups`: `--many-groups` (5,000) groups: recommendations spread
//!   over all of them, then decision cycles over the whole fleet
//!   (`GET /v1/recommendations`), cold (all misses) and warm (all hits).
//!
//! By default each scenario gets its own service (this binary's `serve`,
//! in-process store in a temporary directory, the shipped models) on a
//! free loopback port, so one command measures everything; `--url` points
//! it at a running service instead (then `recommend-miss` is skipped: it
//! needs a service started without a cache).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// A running service; default: start one per scenario.
    #[arg(long, env = "FORESCALE_URL")]
    pub url: Option<String>,
    /// Scenarios, comma-separated: ingest, recommend-hit, recommend-miss,
    /// mixed, many-groups.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest,recommend-hit,recommend-miss,mixed,many-groups"
    )]
    pub scenarios: Vec<String>,
    /// Arrival rate, requests per second.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Measured time per scenario, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Groups in the ingest, recommend and mixed scenarios.
    #[arg(long, default_value_t = 50)]
    pub groups: usize,
    /// Groups in the many-groups scenario.
    #[arg(long, default_value_t = 5_000)]
    pub many_groups: usize,
    /// Samples of history seeded per group (5-minute steps; the SLA
    /// planner reads up to 576).
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(i64).range(1..=4032))]
    pub history_steps: i64,
    /// Fleet decision cycles run in the many-groups scenario (each cold and
    /// warm).
    #[arg(long, default_value_t = 3)]
    pub cycles: usize,
    /// Bearer token for pushes (when the service requires one).
    #[arg(long, env = "FORESCALE_LOADTEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Models for the services this command starts.
    #[command(flatten)]
    pub registry: super::ModelsArgs,
    /// Where results.json and results.md go.
    #[arg(long, default_value = "loadtest/results")]
    pub out: PathBuf,
    /// Requests in flight at most; arrivals beyond it are counted as
    /// errors ("overload") rather than queued in the generator.
    #[arg(long, default_value_t = 2_000)]
    pub max_in_flight: usize,
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    /// What was measured (e.g. "GET recommendation").
    pub request: String,
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Anything else worth saying (cache hits, cycle breakdown).
    pub note: String,
}

const STEP: i64 = 300;

fn histogram() -> Histogram<u64> {
    #[allow(clippy::unwrap_used)] // fixed, valid bounds
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

/// Latencies and errors of one measured run.
struct Recorder {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            hist: histogram(),
            errors: 0,
            first_error: None,
        }
    }
    fn record(&mut self, d: Duration, ok: Result<(), String>) {
        let us = (d.as_micros() as u64).clamp(1, 60_000_000);
        self.hist.saturating_record(us);
        if let Err(e) = ok {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(e);
            }
        }
    }
    fn result(
        &self,
        scenario: &str,
        request: &str,
        rate: f64,
        wall: f64,
        note: String,
    ) -> ScenarioResult {
        let q = |p: f64| self.hist.value_at_quantile(p) as f64 / 1e3;
        let mut note = note;
        if let Some(e) = &self.first_error {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!("first error: {e}"));
        }
        ScenarioResult {
            scenario: scenario.into(),
            request: request.into(),
            target_rate: rate,
            achieved_rate: (self.hist.len() as f64 / wall * 10.0).round() / 10.0,
            requests: self.hist.len(),
            errors: self.errors,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: self.hist.max() as f64 / 1e3,
            note,
        }
    }
}

/// What one arrival does.
#[derive(Debug, Clone)]
enum Op {
    Recommend(String),
    Push { group: String, ts: i64, value: f64 },
}

struct Target {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
    /// The service this command started (killed on drop).
    child: Option<std::process::Child>,
    /// Samples of history seeded per group.
    history: i64,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sample(ts: i64, value: f64) -> serde_json::Value {
    serde_json::json!({
        "timestamp": ts,
        "features": {"cpu_usage_pct": value, "mem_used_pct": 40.0},
        "capacity": 10,
    })
}

/// A daily wave, per group phase-shifted, in 5..95 %.
fn wave(group: usize, ts: i64) -> f64 {
    let day = 86_400.0;
    let phase = (group % 24) as f64 / 24.0;
    (50.0 + 35.0 * (std::f64::consts::TAU * ((ts as f64 / day) + phase)).sin()).clamp(5.0, 95.0)
}

impl Target {
    async fn start(args: &LoadtestArgs, extra: &[&str]) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.max_in_flight)
            .timeout(Duration::from_secs(60))
            .build()?;
        if let Some(url) = &args.url {
            return Ok(Self {
                base: url.trim_end_matches('/').to_owned(),
                client,
                token: args.token.clone(),
                child: None,
                history: args.history_steps,
                _dir: None,
            });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let exe = std::env::current_exe()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--models-dir")
            .arg(&args.registry.models_dir)
            .args(extra)
            .env_remove("FORESCALE_REDIS_URL")
            .env_remove("FORESCALE_API_TOKENS")
            .env_remove("FORESCALE_API_TOKENS_FILE")
            .env_remove("FORESCALE_ASG_GROUPS")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        let child = cmd.spawn().context("starting the service")?;
        let t = Self {
            base: format!("http://127.0.0.1:{port}"),
            client,
            token: None,
            child: Some(child),
            history: args.history_steps,
            _dir: Some(dir),
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = t.client.get(format!("{}/readyz", t.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > until {
                bail!("the service did not become ready in 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(t)
    }

    async fn push(&self, group: &str, samples: Vec<serde_json::Value>) -> Result<(), String> {
        let mut req = self
            .client
            .post(format!("{}/v1/groups/{group}/samples", self.base))
            .json(&serde_json::json!({ "samples": samples }));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        check(r).await
    }

    async fn get(&self, path: &str) -> Result<String, String> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!(
                "{status}: {}",
                body.chars().take(200).collect::<String>()
            ))
        }
    }

    async fn run(&self, op: &Op) -> Result<(), String> {
        match op {
            Op::Recommend(g) => self
                .get(&format!("/v1/groups/{g}/recommendation"))
                .await
                .map(|_| ()),
            Op::Push { group, ts, value } => self.push(group, vec![sample(*ts, *value)]).await,
        }
    }

    /// `self.history` steps of history ending at `end` for every group.
    async fn seed(&self, groups: &[String], end: i64) -> anyhow::Result<()> {
        let started = Instant::now();
        let results: Vec<Result<(), String>> =
            futures_util::stream::iter(groups.iter().enumerate())
                .map(|(i, g)| {
                    let samples = (0..self.history)
                        .map(|k| {
                            let ts = end - (self.history - 1 - k) * STEP;
                            sample(ts, wave(i, ts))
                        })
                        .collect();
                    self.push(g, samples)
                })
                .buffer_unordered(8)
                .collect()
                .await;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            bail!("seeding history: {e}");
        }
        eprintln!(
            "  seeded {} groups x {} samples in {:.1} s",
            groups.len(),
            self.history,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

async fn check(r: reqwest::Response) -> Result<(), String> {
    let status = r.status();
    if status.is_success() {
        let _ = r.bytes().await;
        Ok(())
    } else {
        let body = r.text().await.unwrap_or_default();
        Err(format!(
            "{status}: {}",
            body.chars().take(200).collect::<String>()
        ))
    }
}

/// Send `ops(i)` at `rate` per second for `duration` seconds, open loop.
async fn open_loop(
    target: &Arc<Target>,
    rate: f64,
    duration: f64,
    max_in_flight: usize,
    ops: impl Fn(u64) -> Op,
) -> (Recorder, f64) {
    let rec = Arc::new(Mutex::new(Recorder::new()));
    let n = (rate * duration).round().max(1.0) as u64;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = start + gap.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let op = ops(i);
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            rec.lock().record(
                due.elapsed(),
                Err("overload: too many requests in flight".into()),
            );
            continue;
        };
        let (t, rec) = (target.clone(), rec.clone());
        tasks.spawn(async move {
            let r = t.run(&op).await;
            rec.lock().record(due.elapsed(), r);
            drop(permit);
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let wall = start.elapsed().as_secs_f64();
    let rec = Arc::try_unwrap(rec)
        .map(Mutex::into_inner)
        .unwrap_or_else(|a| {
            let r = a.lock();
            Recorder {
                hist: r.hist.clone(),
                errors: r.errors,
                first_error: r.first_error.clone(),
            }
        });
    (rec, wall)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn now_step() -> i64 {
    chrono::Utc::now().timestamp() / STEP * STEP
}

/// Cache hits in the service's /metrics.
async fn cache_counts(t: &Target) -> (f64, f64) {
    let Ok(text) = t.get("/metrics").await else {
        return (f64::NAN, f64::NAN);
    };
    let mut hits = 0.0;
    let mut misses = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("forescale_embedding_cache"))
    {
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if line.contains("miss") {
            misses += v;
        } else if line.contains("hit") {
            hits += v;
        }
    }
    (hits, misses)
}

async fn scenario(args: &LoadtestArgs, name: &str) -> anyhow::Result<Vec<ScenarioResult>> {
    let (rate, dur, cap) = (args.rate, args.duration, args.max_in_flight);
    match name {
        "ingest" => {
            let t = Arc::new(Target::start(args, &[]).await?);
            let groups = names("lt-ingest", args.groups);
            // Forward in time from two days ago, one step per push per group.
            let from = now_step() - 2 * 86_400;
            let g = groups.clone();
            let (rec, wall) = open_loop(&t, rate, dur, cap, move |i| {
                let k = (i as usize) % g.len();
                let ts = from + (i as i64 / g.len() as i64) * STEP;
                Op::Push {
                    group: g[k].clone(),
                    ts,
                    value: wave(k, ts),
                }
            })
            .await;
            Ok(vec![rec.result(
                name,
                "POST samples (1 sample)",
                rate,
                wall,
                format!("{} groups", groups.len()),
            )])
        }
        "recommend-hit" | "recommend-miss" => {
            let miss = name == "recommend-miss";
            if miss && args.url.is_some() {
                eprintln!(
                    "  skipped: needs a service started with --cache-capacity 0 (omit --url)"
                );
                return Ok(Vec::new());
            }
            let extra: &[&str] = if miss {
                &["--cache-capacity", "0"]
            } else {
                &[]
            };
            let t = Arc::new(Target::start(args, extra).await?);
            let groups = names("lt-rec", args.groups);
            t.seed(&groups, now_step()).await?;
            for g in &groups {
                t.get(&format!("/v1/groups/{g}/recommendation"))
                    .await
                    .map_err(|e| anyhow::anyhow!("warm-up recommendation for {g}: {e}"))?;
            }
            let before = cache_counts(&t).await;
            let g = groups.clone();
            let (rec, wall) = open_loop(&t, rate, dur, cap, move |i| {
                Op::Recommend(g[i as usize % g.len()].clone())
            })
            .await;
            let after = cache_counts(&t).await;
            let note = format!(
                "{} groups; cache hits {:.0}, misses {:.0}",
                groups.len(),
                after.0 - before.0,
                after.1 - before.1
            );
            Ok(vec![rec.result(
                name,
                "GET recommendation",
                rate,
                wall,
                note,
            )])
        }
        "mixed" => {
            let t = Arc::new(Target::start(args, &[]).await?);
            let groups = names("lt-mixed", args.groups);
            let end = now_step();
            t.seed(&groups, end).await?;
            let before = cache_counts(&t).await;
            let g = groups.clone();
            let (rec, wall) = open_loop(&t, rate, dur, cap, move |i| {
                let k = (i as usize * 7) % g.len();
                if i % 5 == 0 {
                    // Rewrite the newest sample: that group's next
                    // recommendation misses the cache.
                    Op::Push {
                        group: g[k].clone(),
                        ts: end,
                        value: wave(k, end) + (i % 13) as f64 / 10.0,
                    }
                } else {
                    Op::Recommend(g[k].clone())
                }
            })
            .await;
            let after = cache_counts(&t).await;
            let note = format!(
                "{} groups, 20 % pushes; cache hits {:.0}, misses {:.0}",
                groups.len(),
                after.0 - before.0,
                after.1 - before.1
            );
            Ok(vec![rec.result(
                name,
                "80 % GET recommendation, 20 % POST samples",
                rate,
                wall,
                note,
            )])
        }
        "many-groups" => {
            let t = Arc::new(Target::start(args, &[]).await?);
            let groups = names("lt-fleet", args.many_groups);
            let end = now_step();
            t.seed(&groups, end).await?;
            let mut out = Vec::new();
            // Decision cycles over the whole fleet: cold after fresh data,
            // then warm.
            let mut cold = Recorder::new();
            let mut warm = Recorder::new();
            let mut cold_stats = Vec::new();
            let mut warm_stats = Vec::new();
            for c in 0..args.cycles {
                if c > 0 {
                    // New newest samples for every group: the next cycle
                    // misses the cache everywhere.
                    let bump = c as f64;
                    let r: Vec<Result<(), String>> =
                        futures_util::stream::iter(groups.iter().enumerate())
                            .map(|(i, g)| t.push(g, vec![sample(end, wave(i, end) + bump)]))
                            .buffer_unordered(8)
                            .collect()
                            .await;
                    if let Some(Err(e)) = r.into_iter().find(|r| r.is_err()) {
                        bail!("refreshing samples: {e}");
                    }
                }
                for (rec, stats) in [(&mut cold, &mut cold_stats), (&mut warm, &mut warm_stats)] {
                    let s = Instant::now();
                    let r = t.get("/v1/recommendations").await;
                    let el = s.elapsed();
                    match r {
                        Ok(body) => {
                            let v: serde_json::Value = serde_json::from_str(&body)?;
                            let failed = v["stats"]["failed"].as_u64().unwrap_or(0);
                            rec.record(
                                el,
                                if failed == 0 {
                                    Ok(())
                                } else {
                                    Err(format!("{failed} groups without a decision"))
                                },
                            );
                            stats.push(v["stats"].clone());
                        }
                        Err(e) => rec.record(el, Err(e)),
                    }
                }
            }
            let describe = |stats: &[serde_json::Value]| {
                let mean = |k: &str| {
                    stats.iter().filter_map(|s| s[k].as_f64()).sum::<f64>()
                        / stats.len().max(1) as f64
                };
                format!(
                    "{} groups; in the service per cycle: read {:.1} ms, forecast {:.1} ms ({:.0} encoded, {:.0} cache hits), policy {:.1} ms, total {:.1} ms",
                    groups.len(),
                    mean("read_ms"),
                    mean("encode_ms"),
                    mean("encoded"),
                    mean("cache_hits"),
                    mean("decide_ms"),
                    mean("total_ms")
                )
            };
            out.push(cold.result(
                "fleet-cycle-cold",
                "GET /v1/recommendations (all groups, after new samples)",
                0.0,
                f64::NAN,
                describe(&cold_stats),
            ));
            out.push(warm.result(
                "fleet-cycle-warm",
                "GET /v1/recommendations (all groups, cached)",
                0.0,
                f64::NAN,
                describe(&warm_stats),
            ));
            // Single recommendations spread over the whole fleet (cached
            // by the cycles above).
            let g = groups.clone();
            let (rec, wall) = open_loop(&t, rate, dur, cap, move |i| {
                Op::Recommend(g[(i as usize * 7919) % g.len()].clone())
            })
            .await;
            out.push(rec.result(
                name,
                "GET recommendation",
                rate,
                wall,
                format!("{} groups", groups.len()),
            ));
            Ok(out)
        }
        other => bail!(
            "unknown scenario {other:?}; known: ingest, recommend-hit, recommend-miss, mixed, many-groups"
        ),
    }
}

fn fmt(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "-".into()
    }
}

/// The Markdown table.
pub fn markdown(results: &[ScenarioResult]) -> String {
    let mut s = String::from(
        "| scenario | request | rate target | achieved/s | requests | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.request,
            if r.target_rate > 0.0 {
                format!("{:.0}", r.target_rate)
            } else {
                "-".into()
            },
            fmt(r.achieved_rate),
            r.requests,
            r.errors,
            fmt(r.p50_ms),
            fmt(r.p90_ms),
            fmt(r.p99_ms),
            fmt(r.p999_ms),
            fmt(r.max_ms)
        ));
    }
    let notes: Vec<String> = results
        .iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| format!("- {}: {}", r.scenario, r.note))
        .collect();
    if !notes.is_empty() {
        s.push('\n');
        s.push_str(&notes.join("\n"));
        s.push('\n');
    }
    s
}

pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of requests per second");
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if args.groups == 0 || args.many_groups == 0 {
        bail!("--groups and --many-groups must be at least 1");
    }
    let mut all = Vec::new();
    for name in &args.scenarios {
        eprintln!(
            "scenario {name}: {} req/s for {} s",
            args.rate, args.duration
        );
        let r = scenario(&args, name).await?;
        for x in &r {
            eprintln!(
                "  {}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} requests, {} errors",
                x.scenario, x.p50_ms, x.p99_ms, x.max_ms, x.requests, x.errors
            );
        }
        all.extend(r);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let meta = serde_json::json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "rate": args.rate,
        "duration_seconds": args.duration,
        "groups": args.groups,
        "many_groups": args.many_groups,
        "service": args.url.clone().unwrap_or_else(|| "started by the harness (in-process store, shipped models)".into()),
        "results": all,
    });
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&meta)?,
    )?;
    let md = markdown(&all);
    std::fs::write(args.out.join("results.md"), &md)?;
    println!("{md}");
    eprintln!("wrote {}/results.json and results.md", args.out.display());
    Ok(())
}
