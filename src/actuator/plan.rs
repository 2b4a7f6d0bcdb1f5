//! From a capacity plan to the scheduled actions the service owns, and the
//! diff against what a group has: pure functions, no I/O.
//!
//! Rules (issue 6, and what AWS enforces):
//! - one action per change point of the plan (the first step counts as a
//!   change point), named `{prefix}{step time as YYYYMMDDTHHMMSSZ}`, so the
//!   same plan always gives the same names;
//! - start = step time minus the scheduling buffer, never earlier than now
//!   plus [`MIN_LEAD_SECS`] (AWS rejects past start times; the emulator does
//!   not, so this is checked here);
//! - capacity clamped to the group's min/max; in floor mode the action sets
//!   `MinSize` (never below the configured base) instead of the desired
//!   capacity, so a forecast never scales the group in;
//! - at most `budget` actions of ours, where the budget leaves room under
//!   the fixed quota of [`ACTION_QUOTA`] for actions people created;
//! - only names with our prefix are ever updated or deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// AWS's fixed quota of scheduled actions per Auto Scaling group.
pub const ACTION_QUOTA: usize = 125;
/// An action never starts sooner than this after now.
pub const MIN_LEAD_SECS: i64 = 60;

/// Desired capacity from a given instant on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanStep {
    /// Unix seconds at which the capacity must be in service.
    pub at: i64,
    pub capacity: u32,
}

/// What the scheduled actions set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CapacityTarget {
    /// `DesiredCapacity` (clamped to the group's min/max).
    Desired,
    /// `MinSize` = max(capacity, base): a floor, never a scale-in (how AWS
    /// predictive scaling avoids scaling in on a forecast).
    MinSizeFloor { base: u32 },
}

/// Per-deployment settings of the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSettings {
    /// Name prefix of the actions the service owns.
    pub prefix: String,
    /// Seconds before a step at which its action starts.
    pub buffer_secs: i64,
    /// Most actions of ours per group (capped further by the quota).
    pub max_actions: usize,
    /// Actions left free for people under the quota.
    pub reserve_for_others: usize,
    pub target: CapacityTarget,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            prefix: "forescale-".into(),
            buffer_secs: 300,
            max_actions: 96,
            reserve_for_others: 25,
            target: CapacityTarget::Desired,
        }
    }
}

/// The group's bounds as Auto Scaling reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GroupLimits {
    pub min: u32,
    pub max: u32,
    /// Desired capacity now.
    pub desired: u32,
}

/// One scheduled action as the service wants it, or as the group has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ActionSpec {
    pub name: String,
    /// Unix seconds.
    pub start: i64,
    pub desired_capacity: Option<u32>,
    pub min_size: Option<u32>,
}

/// What must change so the group holds exactly the wanted actions of ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ActionDiff {
    /// Actions to create or update.
    pub put: Vec<ActionSpec>,
    /// Names of our actions to delete (stale: no longer in the plan).
    pub delete: Vec<String>,
    /// Wanted actions already in place.
    pub unchanged: usize,
    /// Wanted actions left out to stay within the budget (latest first).
    pub over_budget: usize,
}

impl ActionDiff {
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

/// The earliest start an action may have at `now`: now + [`MIN_LEAD_SECS`]
/// rounded up to the minute. Starts are whole minutes (Auto Scaling runs
/// scheduled actions at minute granularity; the emulator truncates).
pub fn earliest_start(now: i64) -> i64 {
    (now + MIN_LEAD_SECS + 59).div_euclid(60) * 60
}

/// The name of the action for a change point at `at`.
pub fn action_name(prefix: &str, at: i64) -> String {
    let t = DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default();
    format!("{prefix}{}", t.format("%Y%m%dT%H%M%SZ"))
}

/// The actions a plan asks for (ordered by step time). Steps already in
/// service (`at <= now`) give none: capacity now is not a scheduled action;
/// the first step after now always gives one.
pub fn wanted_actions(
    steps: &[PlanStep],
    limits: GroupLimits,
    settings: &PlanSettings,
    now: i64,
) -> Vec<ActionSpec> {
    let mut steps = steps.to_vec();
    steps.sort_by_key(|s| s.at);
    let mut out = Vec::new();
    let mut previous: Option<u32> = None;
    // Steps already in service are not scheduled; the first future step
    // always is (the group may not be at the plan's capacity now).
    for step in steps.into_iter().filter(|s| s.at > now) {
        let cap = step.capacity.clamp(limits.min, limits.max.max(limits.min));
        let value = match settings.target {
            CapacityTarget::Desired => cap,
            CapacityTarget::MinSizeFloor { base } => cap.max(base).min(limits.max),
        };
        if previous == Some(value) {
            continue;
        }
        previous = Some(value);
        let start = ((step.at - settings.buffer_secs).div_euclid(60) * 60).max(earliest_start(now));
        let (desired_capacity, min_size) = match settings.target {
            CapacityTarget::Desired => (Some(value), None),
            CapacityTarget::MinSizeFloor { .. } => (None, Some(value)),
        };
        out.push(ActionSpec {
            name: action_name(&settings.prefix, step.at),
            start,
            desired_capacity,
            min_size,
        });
    }
    out
}

/// Compare the wanted actions with the group's. `existing` holds every
/// action of the group (ours and other people's); only ours are touched.
///
/// An existing action of ours with the wanted capacity is left alone even
/// if its start differs only because the wanted start was pushed to
/// now + lead (a start clamped by time passing is not a change).
pub fn diff(
    wanted: &[ActionSpec],
    existing: &[ActionSpec],
    settings: &PlanSettings,
    now: i64,
) -> ActionDiff {
    let others = existing
        .iter()
        .filter(|a| !a.name.starts_with(&settings.prefix))
        .count();
    let budget = settings
        .max_actions
        .min(ACTION_QUOTA.saturating_sub(settings.reserve_for_others.max(others)));
    let ours: BTreeMap<&str, &ActionSpec> = existing
        .iter()
        .filter(|a| a.name.starts_with(&settings.prefix))
        .map(|a| (a.name.as_str(), a))
        .collect();
    let kept = &wanted[..wanted.len().min(budget)];
    let mut out = ActionDiff {
        over_budget: wanted.len() - kept.len(),
        ..ActionDiff::default()
    };
    for w in kept {
        let same = ours.get(w.name.as_str()).is_some_and(|e| {
            e.desired_capacity == w.desired_capacity
                && e.min_size == w.min_size
                && (e.start == w.start || (w.start == earliest_start(now) && e.start > now))
        });
        if same {
            out.unchanged += 1;
        } else {
            out.put.push(w.clone());
        }
    }
    let wanted_names: std::collections::BTreeSet<&str> =
        kept.iter().map(|w| w.name.as_str()).collect();
    out.delete = ours
        .keys()
        .filter(|n| !wanted_names.contains(*n))
        .map(|n| (*n).to_owned())
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_699_999_980; // a whole minute
    const LIMITS: GroupLimits = GroupLimits {
        min: 1,
        max: 10,
        desired: 2,
    };

    fn plan(caps: &[u32]) -> Vec<PlanStep> {
        caps.iter()
            .enumerate()
            .map(|(i, c)| PlanStep {
                at: NOW + 600 + 300 * i as i64,
                capacity: *c,
            })
            .collect()
    }

    #[test]
    fn one_action_per_change_point_clamped_and_buffered() {
        let s = PlanSettings::default();
        let w = wanted_actions(&plan(&[2, 2, 5, 5, 40, 0]), LIMITS, &s, NOW);
        let caps: Vec<_> = w.iter().map(|a| a.desired_capacity).collect();
        assert_eq!(caps, [Some(2), Some(5), Some(10), Some(1)]);
        assert_eq!(w[0].start, NOW + 600 - 300);
        assert_eq!(w[1].start, NOW + 600 + 600 - 300);
        assert_eq!(w[0].name, action_name("forescale-", NOW + 600));
        assert!(w[0].name.starts_with("forescale-2023"));
    }

    #[test]
    fn never_starts_in_the_past_and_skips_steps_in_service() {
        let s = PlanSettings {
            buffer_secs: 900,
            ..PlanSettings::default()
        };
        let steps = [
            PlanStep {
                at: NOW - 300,
                capacity: 3,
            },
            PlanStep {
                at: NOW + 300,
                capacity: 4,
            },
        ];
        let w = wanted_actions(&steps, LIMITS, &s, NOW);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].desired_capacity, Some(4));
        assert_eq!(w[0].start, earliest_start(NOW));
        assert_eq!(w[0].start % 60, 0);
        assert!(w[0].start >= NOW + MIN_LEAD_SECS);
    }

    #[test]
    fn floor_mode_sets_min_size_never_below_the_base() {
        let s = PlanSettings {
            target: CapacityTarget::MinSizeFloor { base: 3 },
            ..PlanSettings::default()
        };
        let w = wanted_actions(&plan(&[1, 6, 2]), LIMITS, &s, NOW);
        let mins: Vec<_> = w.iter().map(|a| (a.min_size, a.desired_capacity)).collect();
        assert_eq!(mins, [(Some(3), None), (Some(6), None), (Some(3), None)]);
    }

    #[test]
    fn diff_touches_only_our_prefix_and_is_empty_when_in_place() {
        let s = PlanSettings::default();
        let w = wanted_actions(&plan(&[2, 5]), LIMITS, &s, NOW);
        let person = ActionSpec {
            name: "nightly-scale-down".into(),
            start: NOW + 10_000,
            desired_capacity: Some(1),
            min_size: None,
        };
        let stale = ActionSpec {
            name: action_name("forescale-", NOW + 50_000),
            ..person.clone()
        };
        let existing = vec![person.clone(), stale.clone(), w[0].clone()];
        let d = diff(&w, &existing, &s, NOW);
        assert_eq!(d.put, vec![w[1].clone()]);
        assert_eq!(d.delete, vec![stale.name.clone()]);
        assert_eq!(d.unchanged, 1);

        let existing = vec![person, w[0].clone(), w[1].clone()];
        assert!(diff(&w, &existing, &s, NOW).is_empty());
    }

    #[test]
    fn budget_leaves_room_under_the_quota() {
        let s = PlanSettings {
            max_actions: 200,
            ..PlanSettings::default()
        };
        let caps: Vec<u32> = (0..150).map(|i| 1 + (i % 2)).collect();
        let w = wanted_actions(&plan(&caps), LIMITS, &s, NOW);
        assert_eq!(w.len(), 150);
        let others: Vec<ActionSpec> = (0..40)
            .map(|i| ActionSpec {
                name: format!("manual-{i}"),
                start: NOW + 1000,
                desired_capacity: Some(1),
                min_size: None,
            })
            .collect();
        let d = diff(&w, &others, &s, NOW);
        assert_eq!(d.put.len(), ACTION_QUOTA - 40);
        assert_eq!(d.over_budget, 150 - (ACTION_QUOTA - 40));
        // The earliest change points are the ones kept.
        assert_eq!(d.put[0], w[0]);
    }

    #[test]
    fn a_start_clamped_by_time_passing_is_not_a_change() {
        let s = PlanSettings::default();
        let steps = [PlanStep {
            at: NOW + 200,
            capacity: 4,
        }];
        let first = wanted_actions(&steps, LIMITS, &s, NOW);
        let later = wanted_actions(&steps, LIMITS, &s, NOW + 30);
        assert_ne!(first[0].start, later[0].start);
        assert!(diff(&later, &first, &s, NOW + 30).is_empty());
    }
}
