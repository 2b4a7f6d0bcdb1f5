//! The actuator: turns a capacity plan into predictive scheduled actions of
//! an EC2 Auto Scaling group (aws-sdk-autoscaling), safely.
//!
//! - **Forecast-only by default.** The diff is computed, logged and kept in
//!   the audit log; nothing is written unless writing is enabled for the
//!   group *and* the kill switch is off.
//! - **Owns a prefix.** Only actions whose name starts with the prefix are
//!   ever created, updated or deleted ([`plan`]).
//! - **Reconciles.** Reads the group's actions (paginated), writes only the
//!   difference (batches of 50, per-item failures retried with backoff and
//!   then reported), deletes its own stale actions. The same plan applied
//!   twice makes no write call.
//! - **Audited.** Every write, and every write forecast-only mode held
//!   back, is an [`AuditEntry`]: in memory for `GET /v1/groups/{g}/actions`
//!   and appended (fsync'd) to a JSON-lines file when a data dir is set.

pub mod audit;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::primitives::DateTime as AwsDateTime;
use aws_sdk_autoscaling::types::ScheduledUpdateGroupActionRequest;
use serde::Serialize;

pub use audit::{AuditEntry, AuditLog};
pub use plan::{
    ActionDiff, ActionSpec, CapacityTarget, GroupLimits, PlanSettings, PlanStep, action_name,
};

use crate::domain::ScalingGroup;

/// Most actions in one batch call (AWS's limit).
pub const BATCH_LIMIT: usize = 50;
/// Attempts for an item a batch call reported as failed.
const ITEM_ATTEMPTS: u32 = 3;

/// Why an apply did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    #[error("Auto Scaling group {0:?} does not exist")]
    GroupNotFound(String),
    #[error("Auto Scaling {call} failed: {message}")]
    Aws { call: &'static str, message: String },
}

fn aws_err<E: std::error::Error + Send + Sync + 'static>(
    call: &'static str,
) -> impl Fn(aws_sdk_autoscaling::error::SdkError<E>) -> ActuatorError {
    move |e| ActuatorError::Aws {
        call,
        message: aws_sdk_autoscaling::error::DisplayErrorContext(&e).to_string(),
    }
}

/// File in the data dir whose presence keeps the kill switch on across
/// restarts (created by `POST /v1/actuator/kill-switch`).
pub const KILL_SWITCH_FILE: &str = "actuator-kill-switch";

/// Which groups may be written to.
#[derive(Debug, Default)]
pub struct WritePolicy {
    /// Groups with writing enabled; everything else is forecast-only.
    pub enabled: BTreeSet<String>,
    /// MinSize-floor base per group (absent: actions set DesiredCapacity).
    pub floors: BTreeMap<String, u32>,
    /// When on, nothing is written for any group.
    pub kill_switch: AtomicBool,
    /// Where an engaged kill switch is remembered ([`KILL_SWITCH_FILE`]).
    pub kill_file: Option<std::path::PathBuf>,
}

impl WritePolicy {
    pub fn writes(&self, group: &ScalingGroup) -> bool {
        !self.kill_switch.load(Ordering::SeqCst) && self.enabled.contains(group.as_str())
    }

    /// Stop every write now, and after a restart (until the file is removed).
    pub fn engage_kill_switch(&self) -> std::io::Result<()> {
        self.kill_switch.store(true, Ordering::SeqCst);
        tracing::warn!("actuator: kill switch engaged; nothing will be written");
        if let Some(path) = &self.kill_file {
            std::fs::write(
                path,
                b"engaged through the API; remove this file to release\n",
            )?;
        }
        Ok(())
    }
}

/// An action a batch call refused, after retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FailedItem {
    pub name: String,
    pub error: String,
}

impl FailedItem {
    /// From a batch call's per-item failure (name, code, message).
    fn new(name: Option<&str>, code: Option<&str>, message: Option<&str>) -> Self {
        Self {
            name: name.unwrap_or_default().to_owned(),
            error: format!(
                "{}: {}",
                code.unwrap_or("unknown"),
                message.unwrap_or_default()
            ),
        }
    }
}

/// The audit outcome of one batch: `ok` or how many items failed.
fn batch_outcome(failed: &[FailedItem], items: usize) -> String {
    if failed.is_empty() {
        "ok".to_owned()
    } else {
        format!("{} of {items} failed", failed.len())
    }
}

/// What one reconciliation did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplyReport {
    pub group: String,
    /// False in forecast-only mode: the diff was computed, not written.
    pub wrote: bool,
    pub limits: Option<GroupLimits>,
    pub diff: ActionDiff,
    /// Calls that wrote (batch put and batch delete).
    pub write_calls: usize,
    pub failed: Vec<FailedItem>,
}

/// The scheduled-action writer for every group of one AWS account/region.
#[derive(Debug)]
pub struct Actuator {
    client: Client,
    pub settings: PlanSettings,
    pub policy: WritePolicy,
    pub audit: AuditLog,
}

impl Actuator {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        settings: PlanSettings,
        policy: WritePolicy,
        audit: AuditLog,
    ) -> Self {
        Self {
            client: Client::new(sdk),
            settings,
            policy,
            audit,
        }
    }

    /// The settings for one group (its floor, if it has one).
    pub fn settings_for(&self, group: &ScalingGroup) -> PlanSettings {
        let mut s = self.settings.clone();
        if let Some(base) = self.policy.floors.get(group.as_str()) {
            s.target = CapacityTarget::MinSizeFloor { base: *base };
        }
        s
    }

    /// The group's min and max (DescribeAutoScalingGroups).
    pub async fn limits(&self, group: &ScalingGroup) -> Result<GroupLimits, ActuatorError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group.as_str())
            .send()
            .await
            .map_err(aws_err("DescribeAutoScalingGroups"))?;
        let g = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group.as_str()))
            .ok_or_else(|| ActuatorError::GroupNotFound(group.to_string()))?;
        let clamp = |v: Option<i32>| v.unwrap_or(0).max(0) as u32;
        Ok(GroupLimits {
            min: clamp(g.min_size()),
            max: clamp(g.max_size()),
            desired: clamp(g.desired_capacity()),
        })
    }

    /// Every scheduled action of the group (all pages), ours and others'.
    pub async fn existing(&self, group: &ScalingGroup) -> Result<Vec<ActionSpec>, ActuatorError> {
        let mut pages = self
            .client
            .describe_scheduled_actions()
            .auto_scaling_group_name(group.as_str())
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let a = item.map_err(aws_err("DescribeScheduledActions"))?;
            let Some(name) = a.scheduled_action_name() else {
                continue;
            };
            let to_u32 = |v: Option<i32>| v.map(|v| v.max(0) as u32);
            out.push(ActionSpec {
                name: name.to_owned(),
                start: a.start_time().map_or(0, |t| t.secs()),
                desired_capacity: to_u32(a.desired_capacity()),
                min_size: to_u32(a.min_size()),
            });
        }
        Ok(out)
    }

    /// Make the group's actions of ours match `steps`. Writes only when the
    /// group is enabled and the kill switch is off; logs and audits either way.
    pub async fn apply(
        &self,
        group: &ScalingGroup,
        steps: &[PlanStep],
        reason: &str,
        now: i64,
    ) -> Result<ApplyReport, ActuatorError> {
        let limits = self.limits(group).await?;
        self.apply_with_limits(group, limits, steps, reason, now)
            .await
    }

    /// [`Actuator::apply`] with the group's limits already read this step
    /// (saves a DescribeAutoScalingGroups call).
    pub async fn apply_with_limits(
        &self,
        group: &ScalingGroup,
        limits: GroupLimits,
        steps: &[PlanStep],
        reason: &str,
        now: i64,
    ) -> Result<ApplyReport, ActuatorError> {
        let settings = self.settings_for(group);
        let existing = self.existing(group).await?;
        let wanted = plan::wanted_actions(steps, limits, &settings, now);
        let diff = plan::diff(&wanted, &existing, &settings, now);
        let write = self.policy.writes(group);
        let mut report = ApplyReport {
            group: group.to_string(),
            wrote: write,
            limits: Some(limits),
            diff: diff.clone(),
            write_calls: 0,
            failed: Vec::new(),
        };
        if diff.is_empty() {
            tracing::debug!(group = %group, unchanged = diff.unchanged, "actuator: nothing to change");
            return Ok(report);
        }
        if !write {
            tracing::info!(
                group = %group,
                put = diff.put.len(),
                delete = diff.delete.len(),
                "actuator: forecast-only, not writing"
            );
            self.audit.record(AuditEntry::new(
                group,
                "dry_run",
                diff.put.clone(),
                diff.delete.clone(),
                reason,
                "forecast-only: not written",
            ));
            return Ok(report);
        }
        for chunk in diff.put.chunks(BATCH_LIMIT) {
            let (calls, failed) = self.put_with_retries(group, chunk).await?;
            report.write_calls += calls;
            let outcome = batch_outcome(&failed, chunk.len());
            tracing::info!(group = %group, actions = chunk.len(), %outcome, %reason, "actuator: put scheduled actions");
            self.audit.record(AuditEntry::new(
                group,
                "put",
                chunk.to_vec(),
                Vec::new(),
                reason,
                &outcome,
            ));
            report.failed.extend(failed);
        }
        for chunk in diff.delete.chunks(BATCH_LIMIT) {
            let (calls, failed) = self.delete_with_retries(group, chunk).await?;
            report.write_calls += calls;
            let outcome = batch_outcome(&failed, chunk.len());
            tracing::info!(group = %group, actions = chunk.len(), %outcome, %reason, "actuator: deleted stale scheduled actions");
            self.audit.record(AuditEntry::new(
                group,
                "delete",
                Vec::new(),
                chunk.to_vec(),
                reason,
                &outcome,
            ));
            report.failed.extend(failed);
        }
        Ok(report)
    }

    /// One batch put, then retries of the items it refused (backoff).
    async fn put_with_retries(
        &self,
        group: &ScalingGroup,
        chunk: &[ActionSpec],
    ) -> Result<(usize, Vec<FailedItem>), ActuatorError> {
        let mut pending: Vec<ActionSpec> = chunk.to_vec();
        let mut calls = 0;
        let mut failed = Vec::new();
        for attempt in 0..ITEM_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let mut req = self
                .client
                .batch_put_scheduled_update_group_action()
                .auto_scaling_group_name(group.as_str());
            for a in &pending {
                let mut b = ScheduledUpdateGroupActionRequest::builder()
                    .scheduled_action_name(&a.name)
                    .start_time(AwsDateTime::from_secs(a.start));
                if let Some(d) = a.desired_capacity {
                    b = b.desired_capacity(d as i32);
                }
                if let Some(m) = a.min_size {
                    b = b.min_size(m as i32);
                }
                req = req.scheduled_update_group_actions(b.build());
            }
            let out = req
                .send()
                .await
                .map_err(aws_err("BatchPutScheduledUpdateGroupAction"))?;
            calls += 1;
            failed = out
                .failed_scheduled_update_group_actions()
                .iter()
                .map(|f| {
                    FailedItem::new(f.scheduled_action_name(), f.error_code(), f.error_message())
                })
                .collect();
            if failed.is_empty() {
                break;
            }
            let names: BTreeSet<&str> = failed.iter().map(|f| f.name.as_str()).collect();
            pending.retain(|a| names.contains(a.name.as_str()));
            tracing::warn!(group = %group, failed = failed.len(), attempt, "actuator: some scheduled actions were refused");
        }
        Ok((calls, failed))
    }

    async fn delete_with_retries(
        &self,
        group: &ScalingGroup,
        chunk: &[String],
    ) -> Result<(usize, Vec<FailedItem>), ActuatorError> {
        let mut pending: Vec<String> = chunk.to_vec();
        let mut calls = 0;
        let mut failed = Vec::new();
        for attempt in 0..ITEM_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let out = self
                .client
                .batch_delete_scheduled_action()
                .auto_scaling_group_name(group.as_str())
                .set_scheduled_action_names(Some(pending.clone()))
                .send()
                .await
                .map_err(aws_err("BatchDeleteScheduledAction"))?;
            calls += 1;
            // "not found" means already gone: deleting is idempotent.
            failed = out
                .failed_scheduled_actions()
                .iter()
                .filter(|f| !f.error_message().unwrap_or_default().contains("not found"))
                .map(|f| {
                    FailedItem::new(f.scheduled_action_name(), f.error_code(), f.error_message())
                })
                .collect();
            if failed.is_empty() {
                break;
            }
            let names: BTreeSet<&str> = failed.iter().map(|f| f.name.as_str()).collect();
            pending.retain(|n| names.contains(n.as_str()));
        }
        Ok((calls, failed))
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * (1 << attempt.min(6)))
}
