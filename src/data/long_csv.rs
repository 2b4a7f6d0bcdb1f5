//! The generic long CSV, the one format every dataset command accepts.
//!
//! ```text
//! series_id,timestamp,cpu_usage_pct,mem_used_pct,...,capacity
//! vm_027,1375308176,0.85,5.8,...,
//! vm_027,2013-08-01T00:03:00Z,0.83,,...,
//! ```
//! - `series_id` and `timestamp` come first; then any of the 20 measured
//!   feature names of docs/features.md, in any order; `cpu_usage_pct` is
//!   required. An optional `capacity` column carries in-service capacity.
//! - One row per sample; timestamp in Unix seconds or RFC 3339.
//! - An empty cell is an absent value. Rows may come in any order; series
//!   keep the order of their first row.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::{DataError, LoadReport, Series, bounded_sample};
use crate::domain::{FEATURE_NAMES, N_MEASURED, TARGET, feature_index, is_calendar};
use crate::ingest::parse_timestamp;

enum Column {
    Feature(usize),
    Capacity,
}

pub fn read_long_csv(path: &Path, report: &mut LoadReport) -> Result<Vec<Series>, DataError> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| DataError::parse(path, 1, e.to_string()))?;
    let headers = rdr
        .headers()
        .map_err(|e| DataError::parse(path, 1, e.to_string()))?
        .clone();
    if headers.get(0) != Some("series_id") || headers.get(1) != Some("timestamp") {
        return Err(DataError::parse(
            path,
            1,
            "the header must start with series_id,timestamp",
        ));
    }
    let mut columns = Vec::new();
    for name in headers.iter().skip(2) {
        let col = match feature_index(name) {
            Some(i) if !is_calendar(i) => Column::Feature(i),
            Some(_) => {
                return Err(DataError::parse(
                    path,
                    1,
                    format!("{name} is computed from the timestamp; drop the column"),
                ));
            }
            None if name == "capacity" => Column::Capacity,
            None => {
                return Err(DataError::parse(
                    path,
                    1,
                    format!(
                        "unknown column {name:?}; columns after timestamp are feature names ({}) or capacity",
                        FEATURE_NAMES[..N_MEASURED].join(", ")
                    ),
                ));
            }
        };
        columns.push(col);
    }
    if !columns.iter().any(|c| matches!(c, Column::Feature(TARGET))) {
        return Err(DataError::parse(
            path,
            1,
            "the header must have a cpu_usage_pct column",
        ));
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            DataError::parse(path, line, e.to_string())
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let id = rec.get(0).unwrap_or_default();
        if id.is_empty() {
            return Err(DataError::parse(path, line, "series_id is empty"));
        }
        let ts_text = rec.get(1).unwrap_or_default();
        let ts_value = match ts_text.parse::<i64>() {
            Ok(i) => serde_json::Value::from(i),
            Err(_) => serde_json::Value::from(ts_text),
        };
        let ts = parse_timestamp(&ts_value)
            .map_err(|m| DataError::parse(path, line, format!("timestamp: {m}")))?;
        let mut raw = [None; N_MEASURED];
        let mut capacity = None;
        for (col, cell) in columns.iter().zip(rec.iter().skip(2)) {
            if cell.is_empty() {
                continue;
            }
            let x: f64 = cell
                .parse()
                .map_err(|_| DataError::parse(path, line, format!("{cell:?} is not a number")))?;
            match col {
                Column::Feature(i) => raw[*i] = Some(x),
                Column::Capacity => capacity = Some(x),
            }
        }
        let Some(sample) = bounded_sample(ts, raw, capacity, report) else {
            continue;
        };
        let k = *index.entry(id.to_owned()).or_insert_with(|| {
            out.push(Series {
                id: id.to_owned(),
                samples: Vec::new(),
            });
            out.len() - 1
        });
        out[k].samples.push(sample);
    }
    for s in &mut out {
        s.samples.sort_by_key(|x| x.timestamp);
    }
    Ok(out)
}

/// Write series as long CSV, with only the columns some sample uses.
pub fn write_long_csv(series: &[Series], out: impl Write) -> Result<(), csv::Error> {
    let mut used = [false; N_MEASURED];
    let mut has_capacity = false;
    for s in series.iter().flat_map(|s| &s.samples) {
        for (j, v) in s.values.iter().enumerate() {
            used[j] |= v.is_some();
        }
        has_capacity |= s.capacity.is_some();
    }
    used[TARGET] = true;
    let cols: Vec<usize> = (0..N_MEASURED).filter(|j| used[*j]).collect();
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["series_id", "timestamp"];
    header.extend(cols.iter().map(|j| FEATURE_NAMES[*j]));
    if has_capacity {
        header.push("capacity");
    }
    w.write_record(&header)?;
    let mut rec: Vec<String> = Vec::with_capacity(header.len());
    let fmt = |v: Option<f32>| v.map(|x| x.to_string()).unwrap_or_default();
    for s in series {
        for x in &s.samples {
            rec.clear();
            rec.push(s.id.clone());
            rec.push(x.timestamp.to_string());
            rec.extend(cols.iter().map(|j| fmt(x.values[*j])));
            if has_capacity {
                rec.push(fmt(x.capacity));
            }
            w.write_record(&rec)?;
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_errors_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(
            &p,
            "series_id,timestamp,cpu_usage_pct,mem_used_pct,capacity\n\
             a,600,1.5,,2\n\
             b,1970-01-01T00:05:00Z,3,40,\n\
             a,300,2.5,10,\n",
        )
        .unwrap();
        let mut rep = LoadReport::default();
        let s = read_long_csv(&p, &mut rep).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].id, "a");
        assert_eq!(s[0].samples[0].timestamp, 300); // sorted
        assert_eq!(s[0].samples[1].capacity, Some(2.0));
        assert_eq!(s[1].samples[0].values[4], Some(40.0));

        let mut buf = Vec::new();
        write_long_csv(&s, &mut buf).unwrap();
        std::fs::write(&p, &buf).unwrap();
        let again = read_long_csv(&p, &mut rep).unwrap();
        assert_eq!(again, s);

        std::fs::write(&p, "series_id,timestamp,cpu_usage_pct\na,0,x\n").unwrap();
        let e = read_long_csv(&p, &mut rep).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not a number"), "{e}");
        std::fs::write(&p, "series_id,timestamp,gpu\n").unwrap();
        let e = read_long_csv(&p, &mut rep).unwrap_err().to_string();
        assert!(e.contains("unknown column"), "{e}");
    }
}
