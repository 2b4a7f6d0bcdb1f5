//! Loaders for the shared traces (`../shared/data`, see its README for
//! provenance and units). Mappings to docs/features.md:
//!
//! - `bitbrains-rnd`: one series per VM (`vm_027`). cpu_usage_pct;
//!   mem_used_pct = mem_usage / mem_capacity * 100; disk_{read,write}_mbps =
//!   KB/s / 1024; net_{in,out}_mbps = KB/s * 8 * 1024 / 10^6.
//! - `azure-v1-cpu`: one series per VM and statistic (`avg-vm_1633748`,
//!   `max-vm_...`); cpu_usage_pct only. The source has relative time only:
//!   step i is placed at Unix time i * 300 (calendar features are therefore
//!   not real).
//! - `nab-aws-cloudwatch`: the CPU series only (EC2, RDS and the two Auto
//!   Scaling group files), cpu_usage_pct, timestamps read as UTC. The
//!   network, disk, ELB and latency files have no CPU and are skipped.
//! - `google2019-job-tasks`: one series per task (`job113_task088`).
//!   cpu_usage_pct = avg_cpu_usage / cpu_limit * 100, mem_used_pct =
//!   avg_memory_usage / memory_limit * 100; `-1` (missing histogram) rows
//!   are dropped. Trace time t is placed at 2019-05-01T07:00Z + (t - 600) s
//!   (Google's documented origin).
//! - `datacenter-aggregates`: `dc-google2019-avgcpu` (avg_cpu * 100,
//!   avg_mem * 100; row i at 2019-05-01T07:00Z + i * 300) and
//!   `dc-azure2019-sumcpu` (cpu_usage, a sum of VM CPU readings with no
//!   capacity, expressed as % of its maximum over the train segment, the
//!   first 70 % of rows; relative time from Unix 0).

use std::path::{Path, PathBuf};

use super::{DataError, LoadReport, Series, bounded_sample};
use crate::domain::{N_MEASURED, TARGET, feature_index};

/// One of the shared traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDataset {
    BitbrainsRnd,
    AzureV1Cpu,
    NabAwsCloudwatch,
    Google2019JobTasks,
    DatacenterAggregates,
}

/// 2019-05-01T07:00:00Z, Google cluster-data 2019's t = 600 s.
const GOOGLE_2019_ORIGIN: i64 = 1_556_694_000;

fn f(name: &str) -> usize {
    feature_index(name).unwrap_or(TARGET)
}

impl SharedDataset {
    pub const NAMES: [&'static str; 5] = [
        "bitbrains-rnd",
        "azure-v1-cpu",
        "nab-aws-cloudwatch",
        "google2019-job-tasks",
        "datacenter-aggregates",
    ];
    const ALL: [Self; 5] = [
        Self::BitbrainsRnd,
        Self::AzureV1Cpu,
        Self::NabAwsCloudwatch,
        Self::Google2019JobTasks,
        Self::DatacenterAggregates,
    ];

    pub fn by_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|d| *d == self).unwrap_or(0)]
    }

    pub fn load(self, root: &Path, report: &mut LoadReport) -> Result<Vec<Series>, DataError> {
        let dir = root.join(self.name());
        if !dir.is_dir() {
            return Err(DataError::io(
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "dataset folder not found (set --data-root or FORESCALE_DATA_ROOT)",
                ),
            ));
        }
        match self {
            Self::BitbrainsRnd => bitbrains(&dir, report),
            Self::AzureV1Cpu => azure_v1(&dir, report),
            Self::NabAwsCloudwatch => nab(&dir, report),
            Self::Google2019JobTasks => google_tasks(&dir, report),
            Self::DatacenterAggregates => aggregates(&dir, report),
        }
    }
}

/// Files in `dir` whose name matches, sorted.
fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, DataError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    out.sort();
    Ok(out)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// Read a CSV with headers into (line, column lookup) rows of f64.
struct Table {
    headers: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
    path: PathBuf,
}

impl Table {
    fn read(path: &Path) -> Result<Self, DataError> {
        let mut rdr =
            csv::Reader::from_path(path).map_err(|e| DataError::parse(path, 1, e.to_string()))?;
        let headers = rdr
            .headers()
            .map_err(|e| DataError::parse(path, 1, e.to_string()))?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut rows = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| DataError::parse(path, 0, e.to_string()))?;
            let line = rec.position().map_or(0, |p| p.line());
            rows.push((line, rec.iter().map(str::to_owned).collect()));
        }
        Ok(Self {
            headers,
            rows,
            path: path.to_owned(),
        })
    }

    fn col(&self, name: &str) -> Result<usize, DataError> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::parse(&self.path, 1, format!("no column {name:?}")))
    }

    fn num(&self, line: u64, cell: &str) -> Result<f64, DataError> {
        cell.trim()
            .parse()
            .map_err(|_| DataError::parse(&self.path, line, format!("{cell:?} is not a number")))
    }
}

fn bitbrains(dir: &Path, report: &mut LoadReport) -> Result<Vec<Series>, DataError> {
    let mut out = Vec::new();
    for path in files(dir, |n| n.starts_with("vm_") && n.ends_with(".csv"))? {
        let t = Table::read(&path)?;
        let c = |n: &str| t.col(n);
        let (ts, cpu, memc, memu) = (
            c("timestamp")?,
            c("cpu_usage_pct")?,
            c("mem_capacity_kb")?,
            c("mem_usage_kb")?,
        );
        let (dr, dw, rx, tx) = (
            c("disk_read_kbps")?,
            c("disk_write_kbps")?,
            c("net_rx_kbps")?,
            c("net_tx_kbps")?,
        );
        let mut samples = Vec::with_capacity(t.rows.len());
        for (line, r) in &t.rows {
            let n = |i: usize| t.num(*line, &r[i]);
            let mut raw = [None; N_MEASURED];
            raw[TARGET] = Some(n(cpu)?);
            let cap = n(memc)?;
            if cap > 0.0 {
                raw[f("mem_used_pct")] = Some(n(memu)? / cap * 100.0);
            }
            raw[f("disk_read_mbps")] = Some(n(dr)? / 1024.0);
            raw[f("disk_write_mbps")] = Some(n(dw)? / 1024.0);
            raw[f("net_in_mbps")] = Some(n(rx)? * 8.0 * 1024.0 / 1e6);
            raw[f("net_out_mbps")] = Some(n(tx)? * 8.0 * 1024.0 / 1e6);
            samples.extend(bounded_sample(n(ts)? as i64, raw, None, report));
        }
        out.push(Series {
            id: stem(&path),
            samples,
        });
    }
    Ok(out)
}

fn cpu_series(
    id: String,
    points: impl Iterator<Item = (i64, f64)>,
    report: &mut LoadReport,
) -> Series {
    let samples = points
        .filter_map(|(ts, v)| {
            let mut raw = [None; N_MEASURED];
            raw[TARGET] = Some(v);
            bounded_sample(ts, raw, None, report)
        })
        .collect();
    Series { id, samples }
}

fn azure_v1(dir: &Path, report: &mut LoadReport) -> Result<Vec<Series>, DataError> {
    let mut out = Vec::new();
    for (stat, file) in [("avg", "cpu_avg_pct.csv"), ("max", "cpu_max_pct.csv")] {
        let t = Table::read(&dir.join(file))?;
        let step = t.col("step")?;
        for (k, name) in t.headers.iter().enumerate().filter(|(k, _)| *k != step) {
            let mut points = Vec::with_capacity(t.rows.len());
            for (line, r) in &t.rows {
                points.push((t.num(*line, &r[step])? as i64 * 300, t.num(*line, &r[k])?));
            }
            out.push(cpu_series(
                format!("{stat}-{name}"),
                points.into_iter(),
                report,
            ));
        }
    }
    Ok(out)
}

fn nab(dir: &Path, report: &mut LoadReport) -> Result<Vec<Series>, DataError> {
    let is_cpu = |n: &str| {
        n.ends_with(".csv")
            && (n.starts_with("ec2_cpu_utilization")
                || n.starts_with("rds_cpu_utilization")
                || n.starts_with("grok_asg_anomaly")
                || n.starts_with("cpu_utilization_asg"))
    };
    let mut paths = files(&dir.join("realAWSCloudwatch"), is_cpu)?;
    paths.extend(files(&dir.join("realKnownCause"), is_cpu)?);
    let mut out = Vec::new();
    for path in paths {
        let t = Table::read(&path)?;
        let (tc, vc) = (t.col("timestamp")?, t.col("value")?);
        let mut points = Vec::with_capacity(t.rows.len());
        for (line, r) in &t.rows {
            let ts = chrono::NaiveDateTime::parse_from_str(&r[tc], "%Y-%m-%d %H:%M:%S")
                .map_err(|e| DataError::parse(&path, *line, format!("timestamp: {e}")))?
                .and_utc()
                .timestamp();
            points.push((ts, t.num(*line, &r[vc])?));
        }
        points.sort_by_key(|p| p.0);
        out.push(cpu_series(stem(&path), points.into_iter(), report));
    }
    Ok(out)
}

fn google_tasks(dir: &Path, report: &mut LoadReport) -> Result<Vec<Series>, DataError> {
    let mut out = Vec::new();
    for path in files(dir, |n| n.starts_with("job") && n.ends_with(".csv"))? {
        let t = Table::read(&path)?;
        let (tc, cpu, lim, mem, mlim) = (
            t.col("time_s")?,
            t.col("avg_cpu_usage")?,
            t.col("cpu_limit")?,
            t.col("avg_memory_usage")?,
            t.col("memory_limit")?,
        );
        let mut samples = Vec::with_capacity(t.rows.len());
        for (line, r) in &t.rows {
            let n = |i: usize| t.num(*line, &r[i]);
            let (c, l) = (n(cpu)?, n(lim)?);
            if c < 0.0 || l <= 0.0 {
                report.dropped_samples += 1;
                continue;
            }
            let mut raw = [None; N_MEASURED];
            raw[TARGET] = Some(c / l * 100.0);
            let (m, ml) = (n(mem)?, n(mlim)?);
            if m >= 0.0 && ml > 0.0 {
                raw[f("mem_used_pct")] = Some(m / ml * 100.0);
            }
            let ts = GOOGLE_2019_ORIGIN + n(tc)? as i64 - 600;
            samples.extend(bounded_sample(ts, raw, None, report));
        }
        samples.sort_by_key(|s| s.timestamp);
        out.push(Series {
            id: stem(&path),
            samples,
        });
    }
    Ok(out)
}

fn aggregates(dir: &Path, report: &mut LoadReport) -> Result<Vec<Series>, DataError> {
    let mut out = Vec::new();
    let g = Table::read(&dir.join("google2019_instance_usage_grouped_300_seconds_month.csv"))?;
    let (cpu, mem) = (g.col("avg_cpu")?, g.col("avg_mem")?);
    let mut samples = Vec::with_capacity(g.rows.len());
    for (i, (line, r)) in g.rows.iter().enumerate() {
        let mut raw = [None; N_MEASURED];
        raw[TARGET] = Some(g.num(*line, &r[cpu])? * 100.0);
        raw[f("mem_used_pct")] = Some(g.num(*line, &r[mem])? * 100.0);
        samples.extend(bounded_sample(
            GOOGLE_2019_ORIGIN + i as i64 * 300,
            raw,
            None,
            report,
        ));
    }
    out.push(Series {
        id: "dc-google2019-avgcpu".into(),
        samples,
    });

    let a = Table::read(&dir.join("azure_v2_vm_cpu_readings_month_aggregated_cpu_mem.csv"))?;
    let (tc, cc) = (a.col("timestamp")?, a.col("cpu_usage")?);
    let mut points = Vec::with_capacity(a.rows.len());
    for (line, r) in &a.rows {
        points.push((a.num(*line, &r[tc])? as i64, a.num(*line, &r[cc])?));
    }
    let train = points.len() * 70 / 100;
    let peak = points[..train]
        .iter()
        .map(|p| p.1)
        .fold(f64::MIN, f64::max)
        .max(f64::MIN_POSITIVE);
    out.push(cpu_series(
        "dc-azure2019-sumcpu".into(),
        points.into_iter().map(|(t, v)| (t, v / peak * 100.0)),
        report,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in SharedDataset::NAMES {
            assert_eq!(SharedDataset::by_name(n).map(SharedDataset::name), Some(n));
        }
        assert_eq!(SharedDataset::by_name("x"), None);
    }
}
