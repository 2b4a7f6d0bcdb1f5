//! Demand traces of POLICY_EVAL.md (docs/policy-evaluation.md), built from the shared data.
//!
//! Every source series is put on the EVAL.md (docs/forecast-evaluation.md) grid (bucket =
//! floor(t / 300) * 300, mean per bucket, empty buckets interpolated
//! between neighbours inside the series), then combined:
//!
//! - `bb-aug-svc1..8`: Bitbrains VM files sorted by id, in blocks of ten;
//!   load = sum of `cpu_usage_pct * cpu_capacity_mhz / 100` over the span
//!   all ten cover.
//! - `google-job113-sum9`: sum of `avg_cpu_usage` over the nine tasks; a
//!   task outside its own span adds 0 (`-1`, a missing histogram, is no
//!   sample).
//! - `dc-google2019-avgcpu`, `dc-azure2019-sumcpu`: the aggregates' `avg_cpu`
//!   and `cpu_usage`, row i = step i.
//! - `nab-grok_asg_anomaly`, `nab-asg_misconfiguration`: the two Auto
//!   Scaling group CPU series of NAB.
//!
//! Load in instance units: d = x / max(x) * 20 over the whole trace.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use crate::data::Split;

/// Grid step, seconds.
pub const STEP: i64 = 300;
/// Peak load of every trace, in instances.
pub const PEAK: f64 = 20.0;

/// The main set, in report order.
pub const MAIN_SET: [&str; 13] = [
    "bb-aug-svc1",
    "bb-aug-svc2",
    "bb-aug-svc3",
    "bb-aug-svc4",
    "bb-aug-svc5",
    "bb-aug-svc6",
    "bb-aug-svc7",
    "bb-aug-svc8",
    "google-job113-sum9",
    "dc-google2019-avgcpu",
    "dc-azure2019-sumcpu",
    "nab-grok_asg_anomaly",
    "nab-asg_misconfiguration",
];

/// The transfer set of POLICY_EVAL.md v2: no policy trains on these
/// sources (NAB's EC2 instances and Azure v1's VMs).
pub const TRANSFER_SET: [&str; 18] = [
    "nab-ec2-24ae8d",
    "nab-ec2-53ea38",
    "nab-ec2-5f5533",
    "nab-ec2-77c1ca",
    "nab-ec2-825cc2",
    "nab-ec2-ac20cd",
    "nab-ec2-c6585a",
    "nab-ec2-fe7f93",
    "az-svc1",
    "az-svc2",
    "az-svc3",
    "az-svc4",
    "az-svc5",
    "az-svc6",
    "az-svc7",
    "az-svc8",
    "az-svc9",
    "az-svc10",
];

/// One demand trace on the 5-minute grid.
#[derive(Debug, Clone)]
pub struct Trace {
    pub id: String,
    /// Timestamp of step 0 (Unix seconds; relative time for the sources
    /// that have none).
    pub start: i64,
    /// Load per step, in instances (peak 20).
    pub load: Vec<f64>,
    pub split: Split,
}

impl Trace {
    /// A trace from raw (timestamp, value) points: gridded, scaled to
    /// peak 20 and split.
    pub fn from_points(id: &str, points: Vec<(i64, f64)>) -> anyhow::Result<Self> {
        let (start, x) = grid_points(points).ok_or_else(|| anyhow!("{id}: no finite values"))?;
        Self::from_grid(id, start, x)
    }

    fn from_grid(id: &str, start: i64, x: Vec<f64>) -> anyhow::Result<Self> {
        let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if max.is_nan() || max <= 0.0 {
            bail!("{id}: the load is never positive");
        }
        if x.len() < 100 {
            bail!("{id}: {} steps; a trace needs at least 100", x.len());
        }
        let load = x
            .iter()
            .map(|v| v.max(0.0) / max * PEAK)
            .collect::<Vec<_>>();
        Ok(Self {
            id: id.to_owned(),
            start,
            split: Split::of_len(load.len()),
            load,
        })
    }

    pub fn timestamp(&self, t: usize) -> i64 {
        self.start + t as i64 * STEP
    }
}

/// EVAL.md grid of one series: (first bucket, value per bucket), empty
/// buckets linearly interpolated between their neighbours. None when no
/// point is finite.
pub fn grid_points(mut points: Vec<(i64, f64)>) -> Option<(i64, Vec<f64>)> {
    points.retain(|(_, v)| v.is_finite());
    if points.is_empty() {
        return None;
    }
    points.sort_by_key(|p| p.0);
    let b = |t: i64| t.div_euclid(STEP) * STEP;
    let first = b(points[0].0);
    let last = b(points[points.len() - 1].0);
    let n = ((last - first) / STEP) as usize + 1;
    let mut sum = vec![0.0; n];
    let mut count = vec![0u32; n];
    for (t, v) in points {
        let i = ((b(t) - first) / STEP) as usize;
        sum[i] += v;
        count[i] += 1;
    }
    let mut x: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| if *c > 0 { s / f64::from(*c) } else { f64::NAN })
        .collect();
    // Interpolate the gaps (the first and last buckets are observed).
    let mut prev = 0;
    for i in 1..n {
        if count[i] > 0 {
            let gap = i - prev;
            for j in prev + 1..i {
                let w = (j - prev) as f64 / gap as f64;
                x[j] = x[prev] + w * (x[i] - x[prev]);
            }
            prev = i;
        }
    }
    Some((first, x))
}

/// A CSV read into named columns.
struct Csv {
    headers: Vec<String>,
    rows: Vec<csv::StringRecord>,
    path: PathBuf,
}

impl Csv {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let mut r = csv::Reader::from_path(path).with_context(|| path.display().to_string())?;
        let headers = r
            .headers()
            .with_context(|| path.display().to_string())?
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = r
            .records()
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| path.display().to_string())?;
        Ok(Self {
            headers,
            rows,
            path: path.to_owned(),
        })
    }

    fn col(&self, name: &str) -> anyhow::Result<usize> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("{}: no column {name}", self.path.display()))
    }

    /// Column values as f64 (unparsable -> NaN, dropped by the grid).
    fn f64s(&self, name: &str) -> anyhow::Result<Vec<f64>> {
        let c = self.col(name)?;
        Ok(self
            .rows
            .iter()
            .map(|r| {
                r.get(c)
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(f64::NAN)
            })
            .collect())
    }
}

fn sorted_files(dir: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{} (set --data-root or FORESCALE_DATA_ROOT)", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    v.sort();
    Ok(v)
}

/// Sum gridded series over buckets; `common`: only the span all cover
/// (else the union, absent series adding 0).
fn sum_grids(grids: &[(i64, Vec<f64>)], common: bool) -> Option<(i64, Vec<f64>)> {
    let end = |g: &(i64, Vec<f64>)| g.0 + (g.1.len() as i64 - 1) * STEP;
    let (from, to) = if common {
        (
            grids.iter().map(|g| g.0).max()?,
            grids.iter().map(end).min()?,
        )
    } else {
        (
            grids.iter().map(|g| g.0).min()?,
            grids.iter().map(end).max()?,
        )
    };
    if to < from {
        return None;
    }
    let n = ((to - from) / STEP) as usize + 1;
    let mut x = vec![0.0; n];
    for (start, v) in grids {
        for (i, xv) in x.iter_mut().enumerate() {
            let t = from + i as i64 * STEP;
            let k = (t - start) / STEP;
            if t >= *start && (k as usize) < v.len() {
                *xv += v[k as usize];
            }
        }
    }
    Some((from, x))
}

fn bitbrains_service(root: &Path, k: usize) -> anyhow::Result<Trace> {
    let dir = root.join("bitbrains-rnd");
    let files = sorted_files(&dir, |n| n.starts_with("vm_") && n.ends_with(".csv"))?;
    let block = files
        .get((k - 1) * 10..k * 10)
        .ok_or_else(|| anyhow!("{}: fewer than {} VM files", dir.display(), k * 10))?;
    let mut grids = Vec::with_capacity(10);
    for f in block {
        let c = Csv::read(f)?;
        let ts = c.f64s("timestamp")?;
        let pct = c.f64s("cpu_usage_pct")?;
        let mhz = c.f64s("cpu_capacity_mhz")?;
        let pts = ts
            .iter()
            .zip(pct.iter().zip(&mhz))
            .map(|(t, (p, m))| (*t as i64, p * m / 100.0))
            .collect();
        grids.push(grid_points(pts).ok_or_else(|| anyhow!("{}: no values", f.display()))?);
    }
    let id = format!("bb-aug-svc{k}");
    let (start, x) = sum_grids(&grids, true).ok_or_else(|| anyhow!("{id}: no common span"))?;
    Trace::from_grid(&id, start, x)
}

/// Google's trace time t is 2019-05-01T07:00Z + (t - 600) s.
const GOOGLE_2019_ORIGIN: i64 = 1_556_694_000 - 600;

fn google_sum9(root: &Path) -> anyhow::Result<Trace> {
    let dir = root.join("google2019-job-tasks");
    let files = sorted_files(&dir, |n| {
        n.starts_with("job113_task") && n.ends_with(".csv")
    })?;
    if files.len() != 9 {
        bail!(
            "{}: expected 9 task files, found {}",
            dir.display(),
            files.len()
        );
    }
    let mut grids = Vec::with_capacity(9);
    for f in &files {
        let c = Csv::read(f)?;
        let pts = c
            .f64s("time_s")?
            .into_iter()
            .zip(c.f64s("avg_cpu_usage")?)
            .filter(|(_, v)| *v >= 0.0)
            .map(|(t, v)| (GOOGLE_2019_ORIGIN + t as i64, v))
            .collect();
        grids.push(grid_points(pts).ok_or_else(|| anyhow!("{}: no values", f.display()))?);
    }
    let (start, x) = sum_grids(&grids, false).ok_or_else(|| anyhow!("google: empty"))?;
    Trace::from_grid("google-job113-sum9", start, x)
}

fn row_series(id: &str, path: &Path, column: &str, start: i64) -> anyhow::Result<Trace> {
    let c = Csv::read(path)?;
    let pts = c
        .f64s(column)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| (start + i as i64 * STEP, v))
        .collect();
    Trace::from_points(id, pts)
}

fn nab(root: &Path, id: &str, file: &str) -> anyhow::Result<Trace> {
    let path = root.join("nab-aws-cloudwatch").join(file);
    let c = Csv::read(&path)?;
    let tc = c.col("timestamp")?;
    let v = c.f64s("value")?;
    let mut pts = Vec::with_capacity(v.len());
    for (r, v) in c.rows.iter().zip(v) {
        let s = r.get(tc).unwrap_or_default();
        let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .with_context(|| format!("{}: timestamp {s:?}", path.display()))?
            .and_utc()
            .timestamp();
        pts.push((t, v));
    }
    Trace::from_points(id, pts)
}

/// `az-svc<k>`: Azure v1's VM columns `10(k-1)+1 ..= 10k` (file order),
/// load = the sum of their CPU %, row i = step i.
fn azure_service(root: &Path, k: usize) -> anyhow::Result<Trace> {
    let path = root.join("azure-v1-cpu").join("cpu_avg_pct.csv");
    let c = Csv::read(&path)?;
    let vms: Vec<&String> = c.headers.iter().filter(|h| h.starts_with("vm_")).collect();
    let block = vms
        .get((k - 1) * 10..k * 10)
        .ok_or_else(|| anyhow!("{}: fewer than {} VM columns", path.display(), k * 10))?;
    let mut x = vec![0.0; c.rows.len()];
    for vm in block {
        for (xi, v) in x.iter_mut().zip(c.f64s(vm)?) {
            // A missing reading adds nothing (the grid would interpolate
            // one series; a sum has no single neighbour to use).
            if v.is_finite() {
                *xi += v;
            }
        }
    }
    Trace::from_grid(&format!("az-svc{k}"), 0, x)
}

/// One trace of the main or transfer set by name.
pub fn load_named(root: &Path, name: &str) -> anyhow::Result<Trace> {
    if let Some(k) = name.strip_prefix("az-svc") {
        let k: usize = k.parse().map_err(|_| anyhow!("unknown trace {name:?}"))?;
        if !(1..=10).contains(&k) {
            bail!("unknown trace {name:?} (az-svc1..10)");
        }
        return azure_service(root, k);
    }
    if let Some(id) = name.strip_prefix("nab-ec2-") {
        if !TRANSFER_SET.contains(&name) {
            bail!(
                "unknown trace {name:?}; NAB's EC2 traces are {}",
                TRANSFER_SET[..8].join(", ")
            );
        }
        return nab(
            root,
            name,
            &format!("realAWSCloudwatch/ec2_cpu_utilization_{id}.csv"),
        );
    }
    if let Some(k) = name.strip_prefix("bb-aug-svc") {
        let k: usize = k.parse().map_err(|_| anyhow!("unknown trace {name:?}"))?;
        if !(1..=8).contains(&k) {
            bail!("unknown trace {name:?} (bb-aug-svc1..8)");
        }
        return bitbrains_service(root, k);
    }
    let dc = root.join("datacenter-aggregates");
    match name {
        "google-job113-sum9" => google_sum9(root),
        "dc-google2019-avgcpu" => row_series(
            name,
            &dc.join("google2019_instance_usage_grouped_300_seconds_month.csv"),
            "avg_cpu",
            GOOGLE_2019_ORIGIN + 600,
        ),
        "dc-azure2019-sumcpu" => row_series(
            name,
            &dc.join("azure_v2_vm_cpu_readings_month_aggregated_cpu_mem.csv"),
            "cpu_usage",
            0,
        ),
        "nab-grok_asg_anomaly" => nab(root, name, "realAWSCloudwatch/grok_asg_anomaly.csv"),
        "nab-asg_misconfiguration" => nab(
            root,
            name,
            "realKnownCause/cpu_utilization_asg_misconfiguration.csv",
        ),
        _ => bail!(
            "unknown trace {name:?}; the main set is {}, the transfer set {}, or give a \
             CSV file with columns timestamp,value",
            MAIN_SET.join(", "),
            TRANSFER_SET.join(", ")
        ),
    }
}

/// A trace from a CSV file with columns `timestamp` (Unix seconds,
/// RFC 3339, or `YYYY-MM-DD HH:MM:SS` in UTC as NAB and CloudWatch
/// exports write it) and `value` (load in any unit). A row whose
/// timestamp parses as none of these is an error naming it.
pub fn load_file(path: &Path) -> anyhow::Result<Trace> {
    let c = Csv::read(path)?;
    let tc = c.col("timestamp")?;
    let mut pts = Vec::with_capacity(c.rows.len());
    for (i, (r, v)) in c.rows.iter().zip(c.f64s("value")?).enumerate() {
        let s = r.get(tc).unwrap_or_default().trim();
        let t = parse_timestamp(s).ok_or_else(|| {
            anyhow!(
                "{}: row {}: timestamp {s:?} is not Unix seconds, RFC 3339 or \
                 YYYY-MM-DD HH:MM:SS",
                path.display(),
                i + 2
            )
        })?;
        pts.push((t, v));
    }
    let id = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("trace")
        .to_owned();
    Trace::from_points(&id, pts)
}

/// Unix seconds, RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC).
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<f64>() {
        return t.is_finite().then_some(t as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// `main` (the 13 traces), `transfer` (the 18 of v2), a trace name, or a
/// CSV file.
pub fn load_spec(root: &Path, spec: &str) -> anyhow::Result<Vec<Trace>> {
    match spec {
        "main" => return MAIN_SET.iter().map(|n| load_named(root, n)).collect(),
        "transfer" => return TRANSFER_SET.iter().map(|n| load_named(root, n)).collect(),
        _ => {}
    }
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(vec![load_file(p)?]);
    }
    Ok(vec![load_named(root, spec)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_means_buckets_and_interpolates_gaps() {
        let (start, x) = grid_points(vec![(610, 1.0), (650, 3.0), (1500, 8.0)]).unwrap();
        assert_eq!(start, 600);
        assert_eq!(x, vec![2.0, 4.0, 6.0, 8.0]);
        assert!(grid_points(vec![(0, f64::NAN)]).is_none());
    }

    #[test]
    fn a_trace_file_takes_unix_or_date_time_stamps_and_names_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.csv");
        let mut text = String::from("timestamp,value\n");
        for i in 0..150 {
            if i % 2 == 0 {
                text.push_str(&format!("{},{}\n", 1_400_000_100 + i * 300, i % 5));
            } else {
                let t = chrono::DateTime::from_timestamp(1_400_000_100 + i * 300, 0).unwrap();
                text.push_str(&format!("{},{}\n", t.format("%Y-%m-%d %H:%M:%S"), i % 5));
            }
        }
        std::fs::write(&p, &text).unwrap();
        let t = load_file(&p).unwrap();
        assert_eq!((t.id.as_str(), t.load.len()), ("g", 150));
        assert_eq!(t.start, 1_400_000_100 / 300 * 300);
        text.push_str("yesterday,3\n");
        std::fs::write(&p, &text).unwrap();
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains("row 152") && e.contains("yesterday"), "{e}");
    }

    #[test]
    fn sums_over_common_span_or_union() {
        let a = (0, vec![1.0, 1.0, 1.0]);
        let b = (300, vec![2.0, 2.0, 2.0]);
        assert_eq!(
            sum_grids(&[a.clone(), b.clone()], true),
            Some((300, vec![3.0, 3.0]))
        );
        assert_eq!(
            sum_grids(&[a, b], false),
            Some((0, vec![1.0, 3.0, 3.0, 2.0]))
        );
    }
}
