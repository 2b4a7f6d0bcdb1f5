//! The actuator against a real AWS API emulator (moto in server mode at
//! `FORESCALE_TEST_MOTO_URL`, default http://127.0.0.1:5000; started by
//! `scripts/test.sh`). Each test makes its own group, so tests never share
//! state.

use forescale::actuator::{
    ActionSpec, Actuator, AuditLog, PlanSettings, PlanStep, WritePolicy, action_name,
};
use forescale::aws::AwsSettings;
use forescale::domain::ScalingGroup;

use crate::support::unique_prefix;

pub fn moto_url() -> String {
    std::env::var("FORESCALE_TEST_MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".into())
}

pub async fn sdk() -> aws_config::SdkConfig {
    AwsSettings::emulator(&moto_url()).load().await
}

/// A new Auto Scaling group (min 0, max 20, no instances) in the emulator.
pub async fn create_group(name: &str) -> ScalingGroup {
    let asg = aws_sdk_autoscaling::Client::new(&sdk().await);
    asg.create_launch_configuration()
        .launch_configuration_name(format!("{name}-lc"))
        .image_id("ami-12345678")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("create launch configuration (is moto running? scripts/test.sh starts it)");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(format!("{name}-lc"))
        .min_size(0)
        .max_size(20)
        .desired_capacity(0)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("create group");
    ScalingGroup::parse(name).expect("name")
}

/// The action-name prefix of a test's actuator. moto 5.2.5 keys scheduled
/// actions by name alone, across groups (AWS keys them per group), so
/// tests running side by side must not share action names.
pub fn action_prefix(g: &ScalingGroup) -> String {
    format!("{g}-")
}

/// An actuator owning `action_prefix(g)`, writing for `g` when `write`.
pub async fn actuator(g: &ScalingGroup, write: bool) -> Actuator {
    let mut policy = WritePolicy::default();
    if write {
        policy.enabled.insert(g.to_string());
    }
    Actuator::new(
        &sdk().await,
        PlanSettings {
            prefix: action_prefix(g),
            ..PlanSettings::default()
        },
        policy,
        AuditLog::in_memory(),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Steps every 5 minutes from the next grid point on.
fn plan(now: i64, caps: &[u32]) -> Vec<PlanStep> {
    let first = (now / 300 + 3) * 300;
    caps.iter()
        .enumerate()
        .map(|(i, c)| PlanStep {
            at: first + 300 * i as i64,
            capacity: *c,
        })
        .collect()
}

fn ours(g: &ScalingGroup, actions: &[ActionSpec]) -> Vec<(String, Option<u32>)> {
    let prefix = action_prefix(g);
    let mut v: Vec<_> = actions
        .iter()
        .filter(|a| a.name.starts_with(&prefix))
        .map(|a| (a.name.clone(), a.desired_capacity))
        .collect();
    v.sort();
    v
}

#[actix_web::test]
async fn forecast_only_is_the_default_and_writes_nothing() {
    let g = create_group(&unique_prefix("asg-dry")).await;
    let act = actuator(&g, false).await;
    let t = now();
    let report = act
        .apply(&g, &plan(t, &[2, 4, 4, 6]), "test", t)
        .await
        .unwrap();
    assert!(!report.wrote);
    assert_eq!(report.write_calls, 0);
    assert_eq!(report.diff.put.len(), 3);
    assert!(act.existing(&g).await.unwrap().is_empty());
    let audit = act.audit.for_group(g.as_str(), 10);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].kind, "dry_run");
}

#[actix_web::test]
async fn reconciles_only_its_own_actions_and_is_idempotent() {
    let g = create_group(&unique_prefix("asg-rec")).await;
    let act = actuator(&g, true).await;
    let client = aws_sdk_autoscaling::Client::new(&sdk().await);
    // An action a person created: it must survive everything below.
    client
        .put_scheduled_update_group_action()
        .auto_scaling_group_name(g.as_str())
        .scheduled_action_name("nightly-by-a-person")
        .start_time(aws_sdk_autoscaling::primitives::DateTime::from_secs(
            now() + 86_400,
        ))
        .desired_capacity(1)
        .send()
        .await
        .unwrap();

    let t = now();
    let steps = plan(t, &[2, 4, 4, 6, 30]);
    let first = act.apply(&g, &steps, "test: first tick", t).await.unwrap();
    assert!(first.wrote);
    assert_eq!(first.write_calls, 1);
    assert!(first.failed.is_empty());
    let existing = act.existing(&g).await.unwrap();
    // Change points 2, 4, 6 and 30 clamped to the group's max of 20.
    let expected = vec![
        (action_name(&action_prefix(&g), steps[0].at), Some(2)),
        (action_name(&action_prefix(&g), steps[1].at), Some(4)),
        (action_name(&action_prefix(&g), steps[3].at), Some(6)),
        (action_name(&action_prefix(&g), steps[4].at), Some(20)),
    ];
    assert_eq!(ours(&g, &existing), expected);
    let first_action = existing.iter().find(|a| a.name == expected[0].0).unwrap();
    assert_eq!(first_action.start, steps[0].at - 300);

    // The same plan again: no write call at all.
    let again = act
        .apply(&g, &steps, "test: same plan", now())
        .await
        .unwrap();
    assert_eq!(again.write_calls, 0);
    assert!(again.diff.is_empty());

    // A changed plan: one update, one stale action of ours deleted.
    let changed = plan(t, &[2, 5, 5, 6]);
    let r = act
        .apply(&g, &changed, "test: changed", now())
        .await
        .unwrap();
    assert_eq!(r.diff.put.len(), 1);
    assert_eq!(r.diff.delete, vec![expected[3].0.clone()]);
    assert_eq!(r.write_calls, 2);
    let existing = act.existing(&g).await.unwrap();
    assert_eq!(
        ours(&g, &existing),
        vec![
            (expected[0].0.clone(), Some(2)),
            (expected[1].0.clone(), Some(5)),
            (expected[2].0.clone(), Some(6)),
        ]
    );
    assert!(existing.iter().any(|a| a.name == "nightly-by-a-person"));

    // Every write is in the audit log, newest first.
    let kinds: Vec<String> = act
        .audit
        .for_group(g.as_str(), 10)
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["delete", "put", "put"]);
}

#[actix_web::test]
async fn more_than_fifty_actions_go_in_several_batches() {
    let g = create_group(&unique_prefix("asg-big")).await;
    let act = actuator(&g, true).await;
    let t = now();
    let caps: Vec<u32> = (0..70).map(|i| 1 + (i % 2)).collect();
    let r = act
        .apply(&g, &plan(t, &caps), "test: big", t)
        .await
        .unwrap();
    assert_eq!(r.diff.put.len(), 70);
    assert_eq!(r.write_calls, 2);
    assert_eq!(ours(&g, &act.existing(&g).await.unwrap()).len(), 70);
}

#[actix_web::test]
async fn the_kill_switch_stops_writes() {
    let g = create_group(&unique_prefix("asg-kill")).await;
    let act = actuator(&g, true).await;
    act.policy
        .kill_switch
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let t = now();
    let r = act.apply(&g, &plan(t, &[3]), "test", t).await.unwrap();
    assert!(!r.wrote);
    assert!(act.existing(&g).await.unwrap().is_empty());
}

#[actix_web::test]
async fn an_unknown_group_is_a_clear_error() {
    let g = ScalingGroup::parse(&unique_prefix("asg-missing")).unwrap();
    let act = actuator(&g, false).await;
    let err = act.apply(&g, &[], "test", now()).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
