//! The commands end to end: import -> evaluate on the generic long CSV ->
//! replay into a running server.

use clap::Parser;
use forescale::cli::{Cli, run};
use serde_json::Value;

use crate::support::{Fixture, Kind, RunningServer, shared_data};

async fn forescale(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["forescale"];
    argv.extend_from_slice(args);
    run(Cli::try_parse_from(argv)?).await
}

fn metrics_csv(dir: &std::path::Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    r.records().map(Result::unwrap).collect()
}

#[actix_web::test]
async fn import_evaluate_and_replay_the_generic_csv() {
    let dir = tempfile::tempdir().unwrap();
    let root = shared_data();
    let root = root.to_str().unwrap();
    let csv_path = dir.path().join("nab.csv");
    let csv_path = csv_path.to_str().unwrap();

    forescale(&[
        "import",
        "--dataset",
        "nab-aws-cloudwatch",
        "--data-root",
        root,
        "--out",
        csv_path,
    ])
    .await
    .unwrap();
    let text = std::fs::read_to_string(csv_path).unwrap();
    assert!(
        text.starts_with("series_id,timestamp,cpu_usage_pct\n"),
        "{}",
        &text[..80]
    );
    assert!(text.contains("\ngrok_asg_anomaly,"));

    // Scoring the shared dataset and its long-CSV conversion gives the
    // same numbers: the conversion loses nothing the protocol uses.
    let by_name = dir.path().join("by-name");
    let by_csv = dir.path().join("by-csv");
    // The second run also dumps every forecast point, into folders that
    // do not exist yet (made as --out is).
    let dump = dir.path().join("dumps/nested/points.csv");
    for (dataset, out, extra) in [
        ("nab-aws-cloudwatch", &by_name, vec![]),
        (
            csv_path,
            &by_csv,
            vec!["--dump-forecasts", dump.to_str().unwrap()],
        ),
    ] {
        let mut args = vec![
            "evaluate",
            "--dataset",
            dataset,
            "--data-root",
            root,
            "--models",
            "naive,snaive",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        forescale(&args).await.unwrap();
    }
    let (a, b) = (metrics_csv(&by_name), metrics_csv(&by_csv));
    assert_eq!(a.len(), 2);
    assert_eq!(&a[0][0], "naive");
    assert_eq!(&a[1][0], "snaive");
    for (ra, rb) in a.iter().zip(&b) {
        for col in 0..8 {
            assert_eq!(ra[col], rb[col], "column {col}");
        }
        let mae: f64 = ra[4].parse().unwrap();
        assert!(mae.is_finite() && mae > 0.0);
    }
    // One dump per model, one row per scored point, consistent with the
    // report: the mean |y - q50| of the rows is the model's MAE.
    for (model, row) in ["naive", "snaive"].iter().zip(&b) {
        let path = dir.path().join(format!("dumps/nested/points.{model}.csv"));
        let mut r = csv::Reader::from_path(&path).unwrap();
        assert_eq!(
            r.headers().unwrap(),
            vec!["series_id", "origin_index", "h", "y", "q10", "q50", "q90"]
        );
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        let points: usize = row[3].parse().unwrap();
        assert_eq!(rows.len(), points, "{model}");
        let num = |r: &csv::StringRecord, i: usize| r[i].parse::<f64>().unwrap();
        let mae = rows
            .iter()
            .map(|r| (num(r, 3) - num(r, 5)).abs())
            .sum::<f64>()
            / points as f64;
        let want: f64 = row[4].parse().unwrap();
        assert!((mae - want).abs() < 1e-3 * want, "{model}: {mae} vs {want}");
        assert!(
            rows.iter()
                .all(|r| (1..=12).contains(&r[2].parse::<u32>().unwrap()))
        );
    }
    let report = std::fs::read_to_string(by_csv.join("report.md")).unwrap();
    assert!(report.contains("| naive |") && report.contains("median MASE"));

    // Replay one series into a running service; every sample arrives.
    let f = Fixture::new(Kind::Memory, "replay");
    let server = RunningServer::start(f.state().await).await;
    forescale(&[
        "replay",
        "--dataset",
        csv_path,
        "--url",
        &server.base,
        "--series",
        "ec2_cpu_utilization_825cc2",
        "--group-prefix",
        "demo-",
        "--batch",
        "500",
        "--concurrency",
        "2",
    ])
    .await
    .unwrap();
    // This series spans 14 days and 5 minutes: the default 14-day retention
    // keeps all but its first sample.
    let stamps: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ec2_cpu_utilization_825cc2,"))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect();
    let newest = *stamps.iter().max().unwrap();
    let expected = stamps
        .iter()
        .filter(|t| **t >= newest - 14 * 86_400)
        .count();
    assert_eq!(expected, stamps.len() - 1);
    let v: Value = reqwest::get(format!("{}/v1/groups", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["groups"][0]["group"], "demo-ec2_cpu_utilization_825cc2");
    assert_eq!(v["groups"][0]["samples"].as_u64(), Some(expected as u64));
    server.stop().await;
}

#[actix_web::test]
async fn unknown_dataset_and_model_are_clear_errors() {
    let e = forescale(&["evaluate", "--dataset", "no-such-thing"])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("neither a dataset name"), "{e}");
    let root = shared_data();
    let e = forescale(&[
        "evaluate",
        "--data-root",
        root.to_str().unwrap(),
        "--models",
        "prophet",
    ])
    .await
    .unwrap_err();
    assert!(e.to_string().contains("unknown model"), "{e}");

    // train: a bad option is refused before any data is read (the data
    // root here does not exist) and nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    for (flag, value) in [
        ("--epochs", "0"),
        ("--lookback", "0"),
        ("--batch", "0"),
        ("--hidden", "6"),
        ("--lr", "0"),
        ("--max-minutes", "0"),
        ("--name", "ets"),
        ("--name", "Bad:Name"),
        ("--exclude-dataset", "azure-v1-cpu"),
    ] {
        let e = forescale(&[
            "train",
            "--model",
            "lstm",
            "--data-root",
            dir.path().join("no-data").to_str().unwrap(),
            flag,
            value,
            "--out",
            out.to_str().unwrap(),
        ])
        .await
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(flag), "{flag} {value}: {e}");
        assert!(!out.exists(), "{flag} {value} wrote {}", out.display());
    }
}

/// `forescale serve` as a process: SIGTERM stops the server, then the
/// control loop (here one managed group, forecast-only, against the
/// emulator) finishes its tick and stops; the process exits 0.
#[test]
fn serve_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let moto = std::env::var("FORESCALE_TEST_MOTO_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned());
    let mut child = Command::new(env!("CARGO_BIN_EXE_forescale"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--asg-groups",
            "stop-test-asg",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--models-dir")
        .arg(&models)
        .args(["--aws-endpoint-url", &moto, "--aws-region", "us-east-1"])
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    // Wait until the first control-loop tick is done: the loop is running.
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("control loop: tick done") {
            break;
        }
    }
    assert!(log.contains("forescale serving"), "{log}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for line in lines {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    let stopped = log.find("control loop stopped").expect(&log);
    let done = log.find("forescale stopped").expect(&log);
    assert!(stopped < done, "{log}");
}

/// `evaluate --suite v2`: every dataset of the suite, naive added when not
/// named, ratios to it, the geometric means and the charts.
#[actix_web::test]
async fn the_generalisation_suite_scores_every_dataset_against_naive() {
    let dir = tempfile::tempdir().unwrap();
    let root = shared_data();
    let out = dir.path().join("suite");
    forescale(&[
        "evaluate",
        "--suite",
        "v2",
        "--models",
        "snaive",
        "--data-root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let mut r = csv::Reader::from_path(out.join("suite.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 10, "2 models x 5 datasets");
    let datasets: std::collections::BTreeSet<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(datasets.len(), 5);
    for row in &rows {
        let (wql_ratio, mae_ratio): (f64, f64) = (row[8].parse().unwrap(), row[9].parse().unwrap());
        if &row[1] == "naive" {
            assert_eq!((wql_ratio, mae_ratio), (1.0, 1.0), "{row:?}");
        } else {
            assert!(wql_ratio > 0.0 && mae_ratio > 0.0, "{row:?}");
        }
        assert!(out.join(&row[0]).join("metrics.csv").is_file());
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| naive | 1.000 | 1.000 |"), "{report}");
    assert!(report.contains("## nab-aws-cloudwatch"));
    assert!(out.join("plots/ratios-wql.svg").is_file());
    assert!(out.join("plots/ratios-mae.svg").is_file());
}
