//! Continuous improvement end to end: `forescale retrain` on a real
//! CloudWatch trace, on groups read from the service's store (both
//! backends), and the background round of `serve --retrain-every-hours`.
//! Policies here are tiny (2 PPO iterations on seasonal-naive forecasts).

use clap::Parser;
use forescale::cli::{Cli, run};
use forescale::domain::{MetricSample, ScalingGroup};
use forescale::train::retrain::{PolicyDir, RetrainOptions};
use serde_json::Value;

use crate::support::{Fixture, Kind, shared_data, train_tiny_policy};

async fn forescale(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["forescale"];
    argv.extend_from_slice(args);
    run(Cli::try_parse_from(argv)?).await
}

/// One of NAB's EC2 CPU series (14 days of 5-minute CloudWatch data, not
/// in the policy's training set).
fn nab_file() -> std::path::PathBuf {
    shared_data().join("nab-aws-cloudwatch/realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv")
}

/// A tiny trained policy (reading seasonal-naive forecasts) in
/// `<models>/policy`.
async fn tiny_policy(models: &std::path::Path) -> std::path::PathBuf {
    let dir = models.join("policy");
    train_tiny_policy(models, "snaive", None, &dir)
        .await
        .unwrap();
    dir
}

fn json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn retrain_args<'a>(models: &'a str, policy: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "retrain",
        "--models-dir",
        models,
        "--policy-dir",
        policy,
        "--iterations",
        "2",
        "--envs-per-trace",
        "2",
        "--out",
        out,
    ]
}

/// The history of the NAB series as a group's samples (CPU % with a
/// capacity of 4 instances).
fn nab_samples() -> Vec<MetricSample> {
    let mut r = csv::Reader::from_path(nab_file()).unwrap();
    r.records()
        .map(|row| {
            let row = row.unwrap();
            let t = chrono::NaiveDateTime::parse_from_str(&row[0], "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp();
            let mut s = MetricSample::cpu_only(t, row[1].parse().unwrap());
            s.capacity = Some(4.0);
            s
        })
        .collect()
}

#[actix_web::test]
async fn a_retrain_is_judged_on_the_replay_logged_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path();
    let policy = tiny_policy(models).await;
    let (m, p) = (models.to_str().unwrap(), policy.to_str().unwrap());
    let out = dir.path().join("decision.json");
    let nab = nab_file();
    let plots = dir.path().join("plots");
    let mut args = retrain_args(m, p, out.to_str().unwrap());
    args.extend(["--trace", nab.to_str().unwrap()]);
    forescale(&[args.as_slice(), &["--plots", plots.to_str().unwrap()]].concat())
        .await
        .unwrap();
    let svg = std::fs::read_to_string(plots.join("ec2_cpu_utilization_825cc2.svg")).unwrap();
    for label in [
        "live v1 + guardrails",
        "candidate + guardrails",
        "target tracking",
    ] {
        assert!(svg.contains(label), "{label}");
    }

    let d = json(&out);
    assert_eq!(d["current_version"], 1, "{d}");
    assert_eq!(d["traces"][0], "ec2_cpu_utilization_825cc2");
    // 4,032 steps: fit 2,419, select 806, replay the newest 807.
    assert_eq!(d["per_trace"][0]["steps"], 807, "{d}");
    for k in ["current", "candidate", "target_tracking"] {
        let o = d[k]["objective"].as_f64().unwrap();
        assert!(o.is_finite() && o >= 1.0, "{k}: {d}");
    }
    // Promoted exactly when a trained checkpoint beat the live policy on
    // the replay, and the folder says which.
    let gain =
        d["current"]["objective"].as_f64().unwrap() - d["candidate"]["objective"].as_f64().unwrap();
    let promoted = d["promoted"].as_bool().unwrap();
    assert_eq!(
        promoted,
        d["best_iteration"].as_u64().unwrap() > 0 && gain > 0.0,
        "{d}"
    );
    let pd = PolicyDir::new(&policy);
    let (live, _) = pd.load().unwrap();
    if promoted {
        assert_eq!(d["promoted_version"], 2);
        assert_eq!((live.config.version, live.config.parent), (2, Some(1)));
        let old = forescale::policy::rl::RlPolicy::load(&pd.version_dir(1)).unwrap();
        assert_eq!(old.config.version, 1);
        let t = json(&policy.join("training.json"));
        assert_eq!(t["retrained_from"], 1, "{t}");
    } else {
        assert!(d["promoted_version"].is_null());
        assert_eq!(live.config.version, 1);
        assert!(!pd.version_dir(1).exists());
    }
    let before = live.config.version;

    // A dry run decides and logs, and never writes a version.
    args.push("--dry-run");
    forescale(&args).await.unwrap();
    let d2 = json(&out);
    assert_eq!(d2["promoted"], false);
    assert_eq!(d2["current_version"], before);
    assert_eq!(pd.load().unwrap().0.config.version, before);
    let log = pd.decisions().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["promoted"], promoted);

    // Bad settings and short or missing histories name the problem.
    for (extra, says) in [
        (vec!["--fit-pct", "90"], "--fit-pct"),
        (vec!["--min-gain=-1"], "min gain"),
        (vec!["--recent-days", "2"], "at least 1440 steps"),
        (vec!["--lr", "0"], "--lr"),
    ] {
        let mut a = retrain_args(m, p, out.to_str().unwrap());
        a.extend(["--trace", nab.to_str().unwrap()]);
        a.extend(extra);
        let e = forescale(&a).await.unwrap_err();
        assert!(format!("{e:#}").contains(says), "{says}: {e:#}");
    }
    let e = forescale(&retrain_args(m, p, out.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("give --trace"), "{e:#}");
    let empty = dir.path().join("empty");
    let mut a = retrain_args(m, p, out.to_str().unwrap());
    a.extend(["--groups", "all", "--data-dir", empty.to_str().unwrap()]);
    let e = forescale(&a).await.unwrap_err();
    assert!(format!("{e:#}").contains("no samples.log"), "{e:#}");
    let mut a = retrain_args(m, "/nonexistent/policy", out.to_str().unwrap());
    a.extend(["--trace", nab.to_str().unwrap()]);
    let e = forescale(&a).await.unwrap_err();
    assert!(format!("{e:#}").contains("--policy-dir"), "{e:#}");
    assert_eq!(pd.decisions().unwrap().len(), 2, "failed runs log nothing");
}

#[actix_web::test]
async fn a_retrain_reads_groups_from_either_store_without_changing_it() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path();
    let policy = tiny_policy(models).await;
    let (m, p) = (models.to_str().unwrap(), policy.to_str().unwrap());
    let out = dir.path().join("decision.json");
    let g = ScalingGroup::parse("web-asg").unwrap();
    let young = ScalingGroup::parse("new-asg").unwrap();
    for kind in [Kind::Memory, Kind::Redis] {
        let fx = Fixture::new(kind, "retrain");
        let store = fx.open().await;
        let samples = nab_samples();
        for chunk in samples.chunks(1_000) {
            store.append(&g, chunk.to_vec()).await.unwrap();
        }
        // A group with one day of history: too young, skipped by `all`.
        store.append(&young, samples[..288].to_vec()).await.unwrap();
        let (store_args, log_before): (Vec<String>, Option<Vec<u8>>) = match &fx.backend {
            forescale::store::Backend::Memory { data_dir: Some(d) } => (
                vec!["--data-dir".into(), d.to_str().unwrap().into()],
                Some(std::fs::read(d.join("samples.log")).unwrap()),
            ),
            forescale::store::Backend::Redis { url, prefix } => (
                vec![
                    "--redis-url".into(),
                    url.clone(),
                    "--redis-prefix".into(),
                    prefix.clone(),
                ],
                None,
            ),
            other => panic!("{other:?}"),
        };
        let mut args = retrain_args(m, p, out.to_str().unwrap());
        args.extend(["--groups", "all", "--dry-run"]);
        args.extend(store_args.iter().map(String::as_str));
        forescale(&args).await.unwrap();
        let d = json(&out);
        assert_eq!(d["traces"], serde_json::json!(["web-asg"]), "{kind:?}: {d}");
        assert_eq!(d["per_trace"][0]["steps"], 807, "{kind:?}: {d}");
        if let (Some(before), forescale::store::Backend::Memory { data_dir: Some(d) }) =
            (log_before, &fx.backend)
        {
            assert_eq!(
                std::fs::read(d.join("samples.log")).unwrap(),
                before,
                "the service's log is read, not rewritten"
            );
        }
        // A named group must have enough history.
        let mut a = retrain_args(m, p, out.to_str().unwrap());
        a.extend(["--groups", "new-asg"]);
        a.extend(store_args.iter().map(String::as_str));
        let e = forescale(&a).await.unwrap_err();
        assert!(format!("{e:#}").contains("at least 288"), "{kind:?}: {e:#}");
    }
}

#[actix_web::test]
async fn the_background_round_serves_what_the_folder_holds() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path()).await;
    let fx = Fixture::new(Kind::Memory, "improve");
    let state = fx.state().await;
    let settings = forescale::app::improve::ImproveSettings {
        every: std::time::Duration::from_secs(3600),
        policy_dir: PolicyDir::new(&policy),
        options: RetrainOptions {
            ppo: forescale::train::ppo::PpoOptions {
                iterations: 2,
                envs_per_trace: 2,
                ..RetrainOptions::default().ppo
            },
            ..RetrainOptions::default()
        },
        recent_days: 14.0,
    };
    state
        .policy
        .set(forescale::policy::rl::RlPolicy::load(&policy).unwrap());
    // No group with history yet: skipped.
    let r = forescale::app::improve::round(&state, &settings)
        .await
        .unwrap();
    assert!(
        matches!(&r, forescale::app::improve::Round::Skipped(s) if s.contains("1440")),
        "{r:?}"
    );
    let g = ScalingGroup::parse("web-asg").unwrap();
    // The series spans a few minutes over the 14-day retention: the
    // oldest samples would be refused in one batch.
    state
        .store
        .append(&g, nab_samples()[2..].to_vec())
        .await
        .unwrap();
    let r = forescale::app::improve::round(&state, &settings)
        .await
        .unwrap();
    let forescale::app::improve::Round::Decided(d) = r else {
        panic!("{r:?}")
    };
    assert_eq!(d.traces, vec!["web-asg".to_owned()]);
    let served = state.policy.get().unwrap().config.version;
    let on_disk = PolicyDir::new(&policy).load().unwrap().0.config.version;
    assert_eq!(served, on_disk);
    assert_eq!(served, d.promoted_version.unwrap_or(1), "{d:?}");
    assert_eq!(PolicyDir::new(&policy).decisions().unwrap().len(), 1);
}
