//! The control loop end to end against the emulator: metrics put into
//! emulated CloudWatch, one tick pulls them, forecasts, plans and writes
//! the expected scheduled action; replicas share a Redis write lease.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use aws_sdk_cloudwatch::primitives::DateTime as CwDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use forescale::actuator::{Actuator, AuditLog, PlanSettings, WritePolicy, action_name};
use forescale::app::control::{ControlLoop, ControlSettings, Lease};
use forescale::domain::ScalingGroup;
use forescale::ingest::cloudwatch::CloudWatchPuller;

use crate::actuator::{action_prefix, create_group, sdk};
use crate::support::{Fixture, Kind, redis_url, unique_prefix};

/// CPU at `cpu` % and 4 instances in service for the last `periods`
/// complete 5-minute periods.
async fn put_metrics(group: &ScalingGroup, cpu: f64, periods: i64) -> i64 {
    let cw = aws_sdk_cloudwatch::Client::new(&sdk().await);
    let end = chrono::Utc::now().timestamp() / 300 * 300;
    let dim = Dimension::builder()
        .name("AutoScalingGroupName")
        .value(group.as_str())
        .build();
    for (namespace, metric, value) in [
        ("AWS/EC2", "CPUUtilization", cpu),
        ("AWS/AutoScaling", "GroupInServiceInstances", 4.0),
    ] {
        let mut req = cw.put_metric_data().namespace(namespace);
        for k in 1..=periods {
            req = req.metric_data(
                MetricDatum::builder()
                    .metric_name(metric)
                    .dimensions(dim.clone())
                    .timestamp(CwDateTime::from_secs(end - k * 300 + 10))
                    .value(value)
                    .build(),
            );
        }
        req.send().await.expect("put metric data into the emulator");
    }
    end
}

async fn control(
    fixture: &Fixture,
    group: &ScalingGroup,
    write: bool,
    lease: Lease,
) -> ControlLoop {
    control_with(fixture, group, write, lease, Default::default()).await
}

async fn control_with(
    fixture: &Fixture,
    group: &ScalingGroup,
    write: bool,
    lease: Lease,
    group_settings: std::collections::HashMap<ScalingGroup, forescale::policy::GuardrailSettings>,
) -> ControlLoop {
    let sdk = sdk().await;
    let mut policy = WritePolicy::default();
    if write {
        policy.enabled.insert(group.to_string());
    }
    let actuator = Arc::new(Actuator::new(
        &sdk,
        PlanSettings {
            prefix: action_prefix(group),
            ..PlanSettings::default()
        },
        policy,
        AuditLog::in_memory(),
    ));
    let mut state = fixture.app_state().await;
    state.actuator = Some(actuator.clone());
    state.group_settings = Arc::new(group_settings);
    ControlLoop {
        state: Arc::new(state),
        puller: Some(CloudWatchPuller::new(&sdk, 300)),
        actuator,
        lease,
        settings: ControlSettings {
            groups: vec![group.clone()],
            interval: Duration::from_secs(300),
            ..ControlSettings::default()
        },
    }
}

/// The group's scheduled actions that carry this test's prefix.
async fn our_actions(
    ctl: &ControlLoop,
    g: &ScalingGroup,
) -> Vec<forescale::actuator::plan::ActionSpec> {
    ctl.actuator
        .existing(g)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.name.starts_with(&action_prefix(g)))
        .collect()
}

#[actix_web::test]
async fn one_tick_pulls_forecasts_and_writes_the_plan_once() {
    let g = create_group(&unique_prefix("ctl")).await;
    let end = put_metrics(&g, 80.0, 24).await;
    let fixture = Fixture::new(Kind::Memory, "ctl");
    let ctl = control(&fixture, &g, true, Lease::Local).await;
    let now = chrono::Utc::now().timestamp();

    let ticks = ctl.tick(now).await;
    let t = &ticks[0];
    assert_eq!(t.error, None);
    assert!(t.leased);
    assert_eq!(t.pulled, 24);
    assert_eq!(t.capacity_now, Some(4));
    // naive p50 = 80 % on 4 instances at a 60 % target: ceil(5.33) = 6.
    assert!(t.plan.iter().all(|s| s.capacity == 6), "{:?}", t.plan);
    let report = t.report.as_ref().unwrap();
    assert_eq!(report.write_calls, 1);
    let ours = our_actions(&ctl, &g).await;
    assert_eq!(ours.len(), 1, "{t:?}\n{ours:?}");
    assert_eq!(ours[0].name, action_name(&action_prefix(&g), end + 300));
    assert_eq!(ours[0].desired_capacity, Some(6));

    // The samples are in the store: the group's forecast endpoint works.
    assert!(ctl.state.store.newest(&g).await.unwrap().is_some());

    // A second tick with the same data writes nothing.
    let again = ctl.tick(chrono::Utc::now().timestamp()).await;
    let r = again[0].report.as_ref().unwrap();
    assert_eq!(r.write_calls, 0, "{:?}", again[0]);
    let metrics = ctl.state.metrics.render(&[]);
    assert!(
        metrics.contains("forescale_control_stage_total{stage=\"actuate\",outcome=\"ok\"} 2"),
        "{metrics}"
    );
}

/// `--planner policy`: the decision stage plans (here AWS-style
/// predictive scaling, no trained policy in the test state) with the
/// group's configured guardrails, and the actuator writes that plan.
#[actix_web::test]
async fn the_policy_planner_writes_the_decision_stages_plan() {
    let g = create_group(&unique_prefix("ctl-pol")).await;
    let end = put_metrics(&g, 80.0, 24).await;
    let fixture = Fixture::new(Kind::Memory, "ctl-pol");
    let mut ctl = control(&fixture, &g, true, Lease::Local).await;
    ctl.settings.planner = forescale::app::control::Planner::Policy;
    let now = chrono::Utc::now().timestamp();
    let ticks = ctl.tick(now).await;
    let t = &ticks[0];
    assert_eq!(t.error, None, "{t:?}");
    // Load 0.8 x 4 = 3.2 instances; predictive at 50 %: ceil(6.4) = 7.
    assert_eq!(t.plan.len(), 12);
    assert!(t.plan.iter().all(|s| s.capacity == 7), "{:?}", t.plan);
    // The first step is the one after the newest data (as forecast at
    // target plans it).
    assert_eq!(t.plan[0].at, end);
    let ours = our_actions(&ctl, &g).await;
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].desired_capacity, Some(7));

    // The group's own max bounds the plan.
    let g2 = create_group(&unique_prefix("ctl-pol-max")).await;
    put_metrics(&g2, 80.0, 24).await;
    let fixture2 = Fixture::new(Kind::Memory, "ctl-pol-max");
    let settings = forescale::policy::guardrails::parse_group_settings(&format!(
        r#"{{"{g2}": {{"max": 5}}}}"#
    ))
    .unwrap();
    let mut ctl = control_with(&fixture2, &g2, false, Lease::Local, settings).await;
    ctl.settings.planner = forescale::app::control::Planner::Policy;
    let ticks = ctl.tick(chrono::Utc::now().timestamp()).await;
    assert_eq!(ticks[0].error, None, "{:?}", ticks[0]);
    assert!(
        ticks[0].plan.iter().all(|s| s.capacity == 5),
        "{:?}",
        ticks[0].plan
    );

    // The SLA planner (the service's default policy) plans for the
    // group's target from its settings. Two hours of history are too few
    // errors to read a quantile: the median +50 %, 3.2 x 1.5 = 4.8 -> 6.
    let g3 = create_group(&unique_prefix("ctl-sla")).await;
    put_metrics(&g3, 80.0, 24).await;
    let fixture3 = Fixture::new(Kind::Memory, "ctl-sla");
    let settings = forescale::policy::guardrails::parse_group_settings(&format!(
        r#"{{"{g3}": {{"sla_target": 0.999}}}}"#
    ))
    .unwrap();
    let mut ctl = control_with(&fixture3, &g3, true, Lease::Local, settings).await;
    ctl.settings.planner = forescale::app::control::Planner::Policy;
    Arc::get_mut(&mut ctl.state).expect("one owner").policy =
        forescale::policy::rl::LivePolicy::default();
    let ticks = ctl.tick(chrono::Utc::now().timestamp()).await;
    assert_eq!(ticks[0].error, None, "{:?}", ticks[0]);
    assert!(
        ticks[0].plan.iter().all(|s| s.capacity == 6),
        "{:?}",
        ticks[0].plan
    );
    let ours = our_actions(&ctl, &g3).await;
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].desired_capacity, Some(6));
}

#[actix_web::test]
async fn forecast_only_groups_get_no_write() {
    let g = create_group(&unique_prefix("ctl-dry")).await;
    put_metrics(&g, 80.0, 24).await;
    let fixture = Fixture::new(Kind::Memory, "ctl-dry");
    let ctl = control(&fixture, &g, false, Lease::Local).await;
    let ticks = ctl.tick(chrono::Utc::now().timestamp()).await;
    let r = ticks[0].report.as_ref().unwrap();
    assert!(!r.wrote);
    assert_eq!(r.diff.put.len(), 1);
    assert!(ctl.actuator.existing(&g).await.unwrap().is_empty());
}

#[actix_web::test]
async fn a_failing_group_does_not_stop_the_others() {
    let good = create_group(&unique_prefix("ctl-good")).await;
    put_metrics(&good, 30.0, 24).await;
    let missing = ScalingGroup::parse(&unique_prefix("ctl-missing")).unwrap();
    let fixture = Fixture::new(Kind::Memory, "ctl-two");
    let mut ctl = control(&fixture, &good, true, Lease::Local).await;
    ctl.settings.groups = vec![missing.clone(), good.clone()];
    let ticks = ctl.tick(chrono::Utc::now().timestamp()).await;
    assert!(ticks[0].error.is_some());
    assert_eq!(ticks[1].error, None, "{:?}", ticks[1]);
    assert_eq!(ticks[1].report.as_ref().unwrap().write_calls, 1);
}

#[actix_web::test]
async fn two_replicas_never_both_write_a_group() {
    let g = create_group(&unique_prefix("ctl-lease")).await;
    put_metrics(&g, 80.0, 24).await;
    let prefix = unique_prefix("lease");
    let lease = |owner: &str| {
        let prefix = prefix.clone();
        let owner = owner.to_owned();
        async move {
            Lease::redis(&redis_url(), &prefix, &owner, Duration::from_secs(30))
                .await
                .expect("redis (scripts/test.sh starts one)")
        }
    };
    let fa = Fixture::new(Kind::Memory, "replica-a");
    let fb = Fixture::new(Kind::Memory, "replica-b");
    let a = control(&fa, &g, true, lease("replica-a").await).await;
    let b = control(&fb, &g, true, lease("replica-b").await).await;
    let now = chrono::Utc::now().timestamp();
    let (ta, tb) = futures_util::future::join(a.tick(now), b.tick(now)).await;
    assert_ne!(
        ta[0].leased, tb[0].leased,
        "exactly one replica holds the lease"
    );
    let writes =
        |t: &forescale::app::control::GroupTick| t.report.as_ref().map_or(0, |r| r.write_calls);
    assert_eq!(writes(&ta[0]) + writes(&tb[0]), 1);
    // The holder keeps it on the next tick; the other still may not write.
    let (ta2, tb2) = futures_util::future::join(a.tick(now), b.tick(now)).await;
    assert_eq!(ta2[0].leased, ta[0].leased);
    assert_eq!(tb2[0].leased, tb[0].leased);
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:lease:{g}"))
        .query(&mut con)
        .unwrap();
}

#[actix_web::test]
async fn the_audit_and_the_kill_switch_over_http() {
    use actix_web::test::{self, TestRequest};
    let g = create_group(&unique_prefix("ctl-http")).await;
    put_metrics(&g, 80.0, 24).await;
    let fixture = Fixture::new(Kind::Memory, "ctl-http");
    let ctl = control(&fixture, &g, true, Lease::Local).await;
    ctl.tick(chrono::Utc::now().timestamp()).await;
    let app = test::init_service(forescale::http::create_app(web::Data::from(
        ctl.state.clone(),
    )))
    .await;

    let uri = format!("/v1/groups/{g}/actions");
    let v: serde_json::Value =
        test::call_and_read_body_json(&app, TestRequest::get().uri(&uri).to_request()).await;
    assert_eq!(v["actuator_configured"], true);
    assert_eq!(v["writes_enabled"], true);
    assert_eq!(v["entries"][0]["kind"], "put");
    assert_eq!(v["entries"][0]["put"][0]["desired_capacity"], 6);
    assert!(
        v["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("target 60")
    );

    let bad = test::call_service(
        &app,
        TestRequest::get()
            .uri(&format!("{uri}?limit=0"))
            .to_request(),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = test::read_body_json(bad).await;
    assert_eq!(body["field"], "limit");

    let resp = test::call_service(
        &app,
        TestRequest::post()
            .uri("/v1/actuator/kill-switch")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value =
        test::call_and_read_body_json(&app, TestRequest::get().uri(&uri).to_request()).await;
    assert_eq!(v["kill_switch"], true);
    assert_eq!(v["writes_enabled"], false);
    // A changed plan is now held back.
    put_metrics(&g, 20.0, 2).await;
    let t = ctl.tick(chrono::Utc::now().timestamp()).await;
    let r = t[0].report.as_ref().unwrap();
    assert!(!r.wrote && !r.diff.is_empty(), "{:?}", t[0]);
    assert_eq!(r.write_calls, 0);
}

#[actix_web::test]
async fn the_running_loop_finishes_its_tick_and_stops_when_told() {
    let g = create_group(&unique_prefix("ctl-stop")).await;
    put_metrics(&g, 50.0, 12).await;
    let fixture = Fixture::new(Kind::Memory, "ctl-stop");
    let mut ctl = control(&fixture, &g, false, Lease::Local).await;
    // The first tick runs at once; the next would be an hour away.
    ctl.settings.interval = Duration::from_secs(3600);
    let ctl = Arc::new(ctl);
    let shutdown = forescale::app::Shutdown::default();
    let running = ctl.clone().spawn(shutdown.clone());
    let pulled = async {
        while ctl.state.store.newest(&g).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), pulled)
        .await
        .expect("the first tick pulls the group's metrics");
    assert!(!running.is_finished(), "the loop waits for its next tick");
    shutdown.signal();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the loop stops within its tick once told")
        .expect("the loop ends without a panic");
    assert!(shutdown.is_signalled());
}
