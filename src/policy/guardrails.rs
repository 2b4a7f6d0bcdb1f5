//! Guardrails applied after every policy, in this order:
//!
//! 1. no scale-in on missing or stale data (the last step's load unknown);
//! 2. emergency scale-out: when the last step's utilisation is over
//!    `emergency_utilisation`, at least enough capacity for that load at
//!    `emergency_target`, whatever the policy said;
//! 3. the largest step up (an emergency may exceed it) and down (a
//!    share of the current total, at least one instance);
//! 4. scale-in cooldown: no scale-in within `scale_in_cooldown_steps`
//!    steps of the last scale-out;
//! 5. the group's min and max.
//!
//! Each decision reports which guardrails changed it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{MAX_CAPACITY, MIN_CAPACITY, Observation, Policy};
use crate::domain::ScalingGroup;

/// Guardrail limits; defaults suit a 5-minute step. In a group settings
/// file ([`parse_group_settings`]) every field is optional (the default
/// stands in) and an unknown one is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GuardrailSettings {
    pub min: u32,
    pub max: u32,
    /// Most instances added by one decision (an emergency may add more).
    pub max_step_up: u32,
    /// Most of the current total removed by one decision (at least one
    /// instance), in (0, 1].
    pub max_scale_in_fraction: f64,
    /// Steps after a scale-out during which no scale-in happens.
    pub scale_in_cooldown_steps: u32,
    /// Last step's utilisation (load / ready) above which capacity is
    /// added whatever the policy says.
    pub emergency_utilisation: f64,
    /// Utilisation an emergency scale-out sizes for.
    pub emergency_target: f64,
    /// The service level the group must reach: the share of 5-minute
    /// steps with utilisation at or under 90 %, from 0.5 to 0.999. The SLA
    /// planner provisions for it.
    pub sla_target: f64,
}

impl Default for GuardrailSettings {
    fn default() -> Self {
        Self {
            min: MIN_CAPACITY,
            max: MAX_CAPACITY,
            max_step_up: 20,
            max_scale_in_fraction: 0.1,
            scale_in_cooldown_steps: 3,
            emergency_utilisation: 0.85,
            emergency_target: 0.6,
            sla_target: super::sla::DEFAULT_TARGET,
        }
    }
}

impl GuardrailSettings {
    /// The first setting out of range, by name.
    pub fn validate(&self) -> Result<(), String> {
        if self.min > self.max {
            return Err(format!("min ({}) is above max ({})", self.min, self.max));
        }
        if self.max_step_up == 0 {
            return Err("max_step_up must be at least 1".into());
        }
        let unit = |x: f64| x > 0.0 && x <= 1.0;
        if !unit(self.max_scale_in_fraction) {
            return Err("max_scale_in_fraction must be in (0, 1]".into());
        }
        if !unit(self.emergency_target) {
            return Err("emergency_target must be in (0, 1]".into());
        }
        if self.emergency_utilisation.is_nan() || self.emergency_utilisation <= 0.0 {
            return Err("emergency_utilisation must be positive".into());
        }
        super::sla::check_target(self.sla_target).map_err(|e| format!("sla_target: {e}"))?;
        Ok(())
    }
}

/// Most groups a settings file may name.
pub const MAX_CONFIGURED_GROUPS: usize = 100_000;

/// A group settings file: a JSON object from group name to its guardrail
/// settings, e.g. `{"web-asg": {"min": 2, "max": 40}}`. Errors name the
/// group and the field.
pub fn parse_group_settings(
    json: &str,
) -> Result<HashMap<ScalingGroup, GuardrailSettings>, String> {
    let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| format!("not a JSON object of group -> settings: {e}"))?;
    if raw.len() > MAX_CONFIGURED_GROUPS {
        return Err(format!(
            "{} groups; at most {MAX_CONFIGURED_GROUPS}",
            raw.len()
        ));
    }
    let mut out = HashMap::with_capacity(raw.len());
    for (name, v) in raw {
        let g = ScalingGroup::parse(&name).map_err(|e| format!("group {name:?}: {e}"))?;
        let s: GuardrailSettings =
            serde_json::from_value(v).map_err(|e| format!("group {name:?}: {e}"))?;
        if s.max > MAX_CAPACITY * 100 || s.max == 0 {
            return Err(format!(
                "group {name:?}: max must be from 1 to {}",
                MAX_CAPACITY * 100
            ));
        }
        s.validate().map_err(|e| format!("group {name:?}: {e}"))?;
        out.insert(g, s);
    }
    Ok(out)
}

/// A guardrail that changed a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    StaleData,
    Emergency,
    MaxStepUp,
    MaxStepDown,
    ScaleInCooldown,
    Min,
    Max,
}

/// What the group looked like when the policy decided.
#[derive(Debug, Clone, Copy)]
pub struct GroupState {
    /// Ready + pending now.
    pub total: u32,
    /// Ready during the last step.
    pub last_ready: u32,
    /// Load of the last step; None when missing or stale.
    pub last_load: Option<f64>,
}

/// The guardrails with their memory (steps since the last scale-out).
#[derive(Debug, Clone)]
pub struct Guardrails {
    pub settings: GuardrailSettings,
    since_scale_out: u32,
}

impl Guardrails {
    pub fn new(settings: GuardrailSettings) -> Self {
        Self {
            settings,
            since_scale_out: u32::MAX,
        }
    }

    pub fn reset(&mut self) {
        self.since_scale_out = u32::MAX;
    }

    /// The policy's `proposed` total after the guardrails, and which fired.
    pub fn apply(&mut self, proposed: u32, g: GroupState) -> (u32, Vec<Guard>) {
        let s = &self.settings;
        let mut fired = Vec::new();
        let mut want = proposed;
        let mut floor = 0;
        match g.last_load {
            None => {
                if want < g.total {
                    want = g.total;
                    fired.push(Guard::StaleData);
                }
            }
            Some(d) => {
                let u = d / f64::from(g.last_ready.max(1));
                if u > s.emergency_utilisation {
                    floor = (d / s.emergency_target - 1e-9).ceil().max(0.0) as u32;
                    if want < floor {
                        want = floor;
                        fired.push(Guard::Emergency);
                    }
                }
            }
        }
        let up = g.total.saturating_add(s.max_step_up).max(floor);
        if want > up {
            want = up;
            fired.push(Guard::MaxStepUp);
        }
        if want < g.total {
            let most = ((f64::from(g.total) * s.max_scale_in_fraction) as u32).max(1);
            let down = g.total - most.min(g.total);
            if self.since_scale_out < s.scale_in_cooldown_steps {
                want = g.total;
                fired.push(Guard::ScaleInCooldown);
            } else if want < down {
                want = down;
                fired.push(Guard::MaxStepDown);
            }
        }
        if want < s.min {
            want = s.min;
            fired.push(Guard::Min);
        }
        if want > s.max {
            want = s.max;
            fired.push(Guard::Max);
        }
        self.since_scale_out = if want > g.total {
            0
        } else {
            self.since_scale_out.saturating_add(1)
        };
        (want, fired)
    }
}

/// A policy with guardrails after it.
pub struct Guarded {
    pub inner: Box<dyn Policy + Send>,
    pub rails: Guardrails,
    /// The guardrails that changed the last decision.
    pub last_fired: Vec<Guard>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner.name())
            .field("rails", &self.rails)
            .finish()
    }
}

impl Guarded {
    pub fn new(inner: Box<dyn Policy + Send>, settings: GuardrailSettings) -> Self {
        Self {
            inner,
            rails: Guardrails::new(settings),
            last_fired: Vec::new(),
        }
    }
}

impl Policy for Guarded {
    fn name(&self) -> String {
        format!("{}+guardrails", self.inner.name())
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.rails.reset();
        self.last_fired.clear();
    }

    fn decide(&mut self, obs: &Observation) -> u32 {
        let proposed = self.inner.decide(obs);
        let state = GroupState {
            total: obs.total(),
            last_ready: obs.last_ready,
            last_load: obs.history.last().copied().filter(|d| d.is_finite()),
        };
        let (want, fired) = self.rails.apply(proposed, state);
        self.last_fired = fired;
        want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_settings_file_fills_defaults_and_names_what_is_wrong() {
        let m = parse_group_settings(r#"{"web-asg": {"min": 2, "max": 40}, "api": {}}"#).unwrap();
        let web = &m[&ScalingGroup::parse("web-asg").unwrap()];
        assert_eq!((web.min, web.max), (2, 40));
        assert_eq!(web.max_step_up, GuardrailSettings::default().max_step_up);
        assert_eq!(
            m[&ScalingGroup::parse("api").unwrap()],
            GuardrailSettings::default()
        );
        for (bad, says) in [
            (r#"[1]"#, "JSON object"),
            (r#"{"a:b": {}}"#, "group \"a:b\""),
            (r#"{"g": {"mx": 3}}"#, "unknown field `mx`"),
            (r#"{"g": {"min": 5, "max": 3}}"#, "min (5) is above max (3)"),
            (r#"{"g": {"max": 0}}"#, "max must be from 1"),
            (
                r#"{"g": {"max_scale_in_fraction": 2}}"#,
                "max_scale_in_fraction",
            ),
            (r#"{"g": {"min": -1}}"#, "group \"g\""),
        ] {
            let e = parse_group_settings(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    fn state(total: u32, last_load: Option<f64>) -> GroupState {
        GroupState {
            total,
            last_ready: total,
            last_load,
        }
    }

    #[test]
    fn no_scale_in_on_stale_data() {
        let mut g = Guardrails::new(GuardrailSettings::default());
        assert_eq!(g.apply(3, state(10, None)), (10, vec![Guard::StaleData]));
        assert_eq!(g.apply(12, state(10, None)), (12, vec![]));
    }

    #[test]
    fn emergency_overrides_the_policy_and_the_step_limit() {
        let mut g = Guardrails::new(GuardrailSettings {
            max_step_up: 2,
            ..GuardrailSettings::default()
        });
        // 9.5 on 10 ready = 95 % > 85 %: at least ceil(9.5 / 0.6) = 16.
        assert_eq!(
            g.apply(10, state(10, Some(9.5))),
            (16, vec![Guard::Emergency])
        );
        assert_eq!(g.apply(30, state(10, Some(5.0))).0, 12, "step up limited");
    }

    #[test]
    fn scale_in_is_limited_and_waits_after_a_scale_out() {
        let mut g = Guardrails::new(GuardrailSettings::default());
        assert_eq!(
            g.apply(2, state(40, Some(1.0))),
            (36, vec![Guard::MaxStepDown])
        );
        assert_eq!(g.apply(41, state(36, Some(1.0))).0, 41);
        for _ in 0..3 {
            assert_eq!(
                g.apply(2, state(41, Some(1.0))),
                (41, vec![Guard::ScaleInCooldown])
            );
        }
        assert_eq!(g.apply(40, state(41, Some(1.0))), (40, vec![]));
    }

    #[test]
    fn min_and_max_last() {
        let mut g = Guardrails::new(GuardrailSettings {
            min: 2,
            max: 5,
            ..GuardrailSettings::default()
        });
        assert_eq!(g.apply(1, state(2, Some(0.1))), (2, vec![Guard::Min]));
        assert_eq!(g.apply(9, state(5, Some(4.0))), (5, vec![Guard::Max]));
        assert!(
            GuardrailSettings {
                min: 6,
                max: 5,
                ..GuardrailSettings::default()
            }
            .validate()
            .is_err()
        );
        assert!(GuardrailSettings::default().validate().is_ok());
        // An SLA target the planner does not support refuses the file,
        // naming the group and the field.
        for bad in ["1.0", "0.3"] {
            let e = parse_group_settings(&format!(r#"{{"web": {{"sla_target": {bad}}}}}"#))
                .unwrap_err();
            assert!(e.contains("\"web\"") && e.contains("sla_target"), "{e}");
        }
        let ok = parse_group_settings(r#"{"web": {"sla_target": 0.999}}"#).unwrap();
        assert_eq!(ok.values().next().map(|s| s.sla_target), Some(0.999));
    }
}
