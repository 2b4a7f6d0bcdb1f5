//! Continuous improvement (seed 001's digital twin): retrain a candidate
//! policy on the groups' recent history in the simulator, and promote it
//! only if it scores better than the current policy on the same replay.
//!
//! Each group's history (load in instance units, put on the 5-minute grid
//! and scaled to peak 20 like every trace, [`history_trace`]) is cut in
//! three, oldest first:
//! - **fit** (default 60 %): PPO rollouts on random stretches, starting
//!   from the current policy's weights;
//! - **select** (20 %): the candidate is the best PPO checkpoint here;
//!   iteration 0, the current policy itself, is one of the checkpoints;
//! - **replay** (the last 20 %): current and candidate, both with the
//!   default guardrails, are replayed from the start of the select part
//!   on the same forecasts and scored on this part, which neither
//!   training nor selection saw.
//!
//! Score: the mean over groups of cost / oracle and of SLA compliance,
//! objective = cost / oracle + 10 per SLA point under 99 % (the
//! validation objective of [`super::ppo`]). The candidate is promoted
//! when its objective is lower than the current one's by more than
//! [`RetrainOptions::min_gain`]. One policy serves every group, so the
//! comparison is over all the histories given, not group by group.
//!
//! Versions: [`PolicyDir`] (`crate::policy::versions`). Every decision,
//! promoted or not, is one fsync'd line of its `promotions.jsonl`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::Tensor;
use serde::Serialize;

use super::ppo::{self, Agent, PpoOptions, ValScore, guarded};
use crate::data::Split;
use crate::policy::reference::TargetTracking;
use crate::policy::rl::Actor;
pub use crate::policy::versions::PolicyDir;
use crate::sim::{ForecastTable, Segment, Trace};

/// Fewest steps of each of the three parts (one day).
pub const MIN_PART_STEPS: usize = 288;

/// How a candidate is trained and judged.
#[derive(Debug, Clone, Serialize)]
pub struct RetrainOptions {
    /// Percent of each history PPO learns on (the oldest part).
    pub fit_pct: usize,
    /// Percent after it on which the checkpoint is chosen; the rest, the
    /// newest, is the replay both policies are scored on.
    pub select_pct: usize,
    /// PPO settings; the rollout is shortened to fit short histories.
    pub ppo: PpoOptions,
    /// Start from the current policy's weights (else from the seed).
    pub warm_start: bool,
    /// Promote only when the candidate's objective is lower by more than
    /// this.
    pub min_gain: f64,
    /// Longest hole in a history (in 5-minute steps) the twin fills by
    /// interpolation; before a longer one the history is cut, and only
    /// the newest stretch is used (a straight line across hours of
    /// missing data is not demand).
    pub max_gap_steps: usize,
}

impl Default for RetrainOptions {
    fn default() -> Self {
        Self {
            fit_pct: 60,
            select_pct: 20,
            ppo: PpoOptions {
                iterations: 40,
                envs_per_trace: 8,
                lr: 1e-4,
                ..PpoOptions::default()
            },
            warm_start: true,
            min_gain: 0.0,
            max_gap_steps: 12,
        }
    }
}

impl RetrainOptions {
    /// Every setting in range, or what is wrong with the first that is not.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.fit_pct == 0 || self.select_pct == 0 || self.fit_pct + self.select_pct >= 100 {
            bail!(
                "fit ({} %) and select ({} %) must both be positive and leave a replay part \
                 (together under 100 %)",
                self.fit_pct,
                self.select_pct
            );
        }
        if !(self.min_gain.is_finite() && self.min_gain >= 0.0) {
            bail!("min gain must be a number >= 0, got {}", self.min_gain);
        }
        if self.ppo.iterations == 0 {
            bail!("iterations must be at least 1");
        }
        Ok(())
    }
}

/// A group's history as a trace: `points` are (Unix seconds, load in any
/// unit), gridded and scaled as every trace is, and split into fit,
/// select and replay parts. Each part must hold [`MIN_PART_STEPS`].
pub fn history_trace(
    id: &str,
    points: Vec<(i64, f64)>,
    opts: &RetrainOptions,
) -> anyhow::Result<Trace> {
    let points = after_last_gap(points, opts.max_gap_steps);
    let mut t = Trace::from_points(id, points)?;
    split_history(&mut t, opts)?;
    Ok(t)
}

/// The points after the newest hole longer than `max_gap_steps` steps
/// (all of them when there is none), oldest first.
pub fn after_last_gap(mut points: Vec<(i64, f64)>, max_gap_steps: usize) -> Vec<(i64, f64)> {
    points.retain(|p| p.1.is_finite());
    points.sort_by_key(|p| p.0);
    let limit = (max_gap_steps as i64 + 1) * crate::sim::traces::STEP;
    let cut = points
        .windows(2)
        .rposition(|w| w[1].0 - w[0].0 > limit)
        .map_or(0, |i| i + 1);
    points.split_off(cut)
}

/// Re-split a trace into fit / select / replay.
pub fn split_history(t: &mut Trace, opts: &RetrainOptions) -> anyhow::Result<()> {
    let len = t.load.len();
    let train_end = len * opts.fit_pct / 100;
    let val_end = len * (opts.fit_pct + opts.select_pct) / 100;
    let parts = [train_end, val_end - train_end, len - val_end];
    if parts.iter().any(|&n| n < MIN_PART_STEPS) {
        bail!(
            "{}: {len} steps of history give fit / select / replay parts of {} / {} / {} \
             steps; each needs at least {MIN_PART_STEPS} (one day), so at least {} steps \
             ({:.1} days) are needed with these percentages",
            t.id,
            parts[0],
            parts[1],
            parts[2],
            min_history_steps(opts),
            min_history_steps(opts) as f64 / 288.0
        );
    }
    t.split = Split {
        train_end,
        val_end,
        len,
    };
    Ok(())
}

/// The shortest history whose three parts all reach [`MIN_PART_STEPS`].
pub fn min_history_steps(opts: &RetrainOptions) -> usize {
    let smallest = opts
        .fit_pct
        .min(opts.select_pct)
        .min(100 - opts.fit_pct - opts.select_pct)
        .max(1);
    (MIN_PART_STEPS * 100).div_ceil(smallest)
}

/// One group's replay scores.
#[derive(Debug, Clone, Serialize)]
pub struct TraceScores {
    pub trace: String,
    pub steps: usize,
    pub current: ValScore,
    pub candidate: ValScore,
    pub target_tracking: ValScore,
}

/// What a retrain decided and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// When the decision was made, RFC 3339.
    pub at: String,
    pub traces: Vec<String>,
    pub current_version: u32,
    /// The version the candidate became; None when not promoted.
    pub promoted_version: Option<u32>,
    pub promoted: bool,
    pub reason: String,
    /// Means over the traces, on the replay parts.
    pub current: ValScore,
    pub candidate: ValScore,
    pub target_tracking: ValScore,
    pub per_trace: Vec<TraceScores>,
    /// The candidate's checkpoint (0 = the current weights unchanged).
    pub best_iteration: usize,
    /// The candidate's score on the select parts.
    pub selection: ValScore,
    pub train_seconds: f64,
    pub options: RetrainOptions,
}

/// A candidate and the decision on it (not yet written anywhere).
#[derive(Debug)]
pub struct Outcome {
    pub weights: HashMap<String, Tensor>,
    pub decision: Decision,
}

/// Train a candidate on `histories` (split by [`split_history`]) with
/// their forecasts, starting from `current` (the live policy's weights
/// and version), and decide on it. `progress` hears each validation of
/// PPO (iteration, mean reward, score on the select parts).
pub fn retrain(
    histories: &[Trace],
    tables: &[ForecastTable],
    current: (&HashMap<String, Tensor>, u32),
    opts: &RetrainOptions,
    progress: impl FnMut(usize, f32, &ValScore),
) -> anyhow::Result<Outcome> {
    opts.check()?;
    if histories.is_empty() || histories.len() != tables.len() {
        bail!("retrain needs at least one history, each with its forecasts");
    }
    let agents: Vec<Agent> = histories
        .iter()
        .zip(tables)
        .map(|(t, f)| Agent::new(t, f))
        .collect();
    // Rollouts must fit in the shortest fit part (after the forecasts'
    // first step).
    let shortest_fit = histories
        .iter()
        .zip(tables)
        .map(|(t, f)| t.split.train_end.saturating_sub(f.from.max(13) + 2))
        .min()
        .unwrap_or(0);
    let mut ppo_opts = opts.ppo.clone();
    ppo_opts.rollout = ppo_opts.rollout.min(shortest_fit / 2).max(32);
    let (weights_now, version_now) = current;
    let started = Instant::now();
    let (weights, report) = ppo::train_from(
        &agents,
        &ppo_opts,
        opts.warm_start.then_some(weights_now),
        progress,
    )?;
    let train_seconds = started.elapsed().as_secs_f64();

    let cur_actor = Actor::from_tensors(weights_now, "actor")?;
    let cand_actor = Actor::from_tensors(&weights, "actor")?;
    let cur = ppo::score_each(&agents, &mut guarded(cur_actor), Segment::Test);
    let cand = ppo::score_each(&agents, &mut guarded(cand_actor), Segment::Test);
    let tt = ppo::score_each(&agents, &mut TargetTracking::default(), Segment::Test);
    let per_trace: Vec<TraceScores> = histories
        .iter()
        .enumerate()
        .map(|(i, t)| TraceScores {
            trace: t.id.clone(),
            steps: Segment::Test.range(t).len(),
            current: cur[i],
            candidate: cand[i],
            target_tracking: tt[i],
        })
        .collect();
    let (current, candidate) = (ValScore::mean(&cur), ValScore::mean(&cand));
    let gain = current.objective - candidate.objective;
    let promoted = report.best_iteration > 0 && gain > opts.min_gain;
    let reason = if report.best_iteration == 0 {
        "no PPO iteration beat the current policy on the select part; the candidate is the \
         current policy"
            .to_owned()
    } else if promoted {
        format!(
            "candidate objective {:.4} < current {:.4} on the replay (gain {gain:.4} > {:.4})",
            candidate.objective, current.objective, opts.min_gain
        )
    } else {
        format!(
            "candidate objective {:.4} vs current {:.4} on the replay: gain {gain:.4} is not \
             above {:.4}",
            candidate.objective, current.objective, opts.min_gain
        )
    };
    Ok(Outcome {
        weights,
        decision: Decision {
            at: crate::domain::rfc3339(chrono::Utc::now().timestamp()),
            traces: histories.iter().map(|t| t.id.clone()).collect(),
            current_version: version_now,
            promoted_version: None,
            promoted,
            reason,
            current,
            candidate,
            target_tracking: ValScore::mean(&tt),
            per_trace,
            best_iteration: report.best_iteration,
            selection: report.best,
            train_seconds,
            options: RetrainOptions {
                ppo: ppo_opts,
                ..opts.clone()
            },
        },
    })
}

/// Demand against the ready capacity of the live policy, the candidate
/// and target tracking on each history's replay part:
/// `<dir>/<history>.svg`. Returns the files written.
pub fn plot_replays(
    dir: &Path,
    histories: &[Trace],
    tables: &[ForecastTable],
    live: (&HashMap<String, Tensor>, u32),
    candidate: &HashMap<String, Tensor>,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let mut out = Vec::with_capacity(histories.len());
    for (t, f) in histories.iter().zip(tables) {
        let (start, score) = (t.split.train_end, Segment::Test.range(t));
        let run = |p: &mut dyn crate::policy::Policy, label: String| {
            let mut r = crate::sim::replay_scores(t, p, Some(f), start, score.clone());
            r.scores.policy = label;
            r
        };
        let runs = [
            run(
                &mut guarded(Actor::from_tensors(live.0, "actor")?),
                format!("live v{} + guardrails", live.1),
            ),
            run(
                &mut guarded(Actor::from_tensors(candidate, "actor")?),
                "candidate + guardrails".into(),
            ),
            run(&mut TargetTracking::default(), "target tracking".into()),
        ];
        let path = dir.join(format!("{}.svg", t.id));
        crate::sim::report::plot(&path, t, &runs.iter().collect::<Vec<_>>(), Segment::Test)?;
        out.push(path);
    }
    Ok(out)
}

/// One retrain of the live policy in `dir`: forecasts for every history
/// from the forecaster the live policy reads (found in `models`), a
/// candidate, the
/// decision, the promotion unless `dry_run`, and the decision logged.
/// `training` is recorded in the new version's `training.json`. With
/// `plots`, [`plot_replays`] draws each history's replay there.
#[allow(clippy::too_many_arguments)]
pub fn retrain_dir(
    dir: &PolicyDir,
    histories: &[Trace],
    models: &crate::forecast::ModelRegistry,
    opts: &RetrainOptions,
    dry_run: bool,
    training: serde_json::Value,
    plots: Option<&Path>,
    progress: impl FnMut(usize, f32, &ValScore),
) -> anyhow::Result<Decision> {
    let (live, weights) = dir
        .load()
        .with_context(|| format!("the live policy in {}", dir.path.display()))?;
    let forecaster = crate::sim::SimForecaster::by_name(&live.config.forecaster, models)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the live policy (version {}) reads model {:?}, which is not loaded",
                live.config.version,
                live.config.forecaster
            )
        })?;
    let tables = histories
        .iter()
        .map(|t| forecaster.table(t, 13, crate::sim::SIM_HORIZON))
        .collect::<Result<Vec<_>, _>>()?;
    let out = retrain(
        histories,
        &tables,
        (&weights, live.config.version),
        opts,
        progress,
    )?;
    if let Some(p) = plots {
        plot_replays(
            p,
            histories,
            &tables,
            (&weights, live.config.version),
            &out.weights,
        )?;
    }
    let mut d = out.decision;
    if d.promoted && dry_run {
        d.promoted = false;
        d.reason = format!("dry run, not promoted: {}", d.reason);
    }
    if d.promoted {
        let training = serde_json::json!({
            "retrained_from": live.config.version,
            "decision": &d,
            "context": training,
        });
        d.promoted_version = Some(dir.promote(&out.weights, &live.config, &training)?);
    }
    dir.log(&d)?;
    Ok(d)
}

/// The points of the newest `days` of a history (all of them for 0).
pub fn recent(mut points: Vec<(i64, f64)>, days: f64) -> Vec<(i64, f64)> {
    if days > 0.0 {
        let newest = points.iter().map(|p| p.0).max().unwrap_or(0);
        let cutoff = newest - (days * 86_400.0) as i64;
        points.retain(|p| p.0 > cutoff);
    }
    points
}

/// The policy's view of a group's stored samples: (timestamp, load) with
/// load = CPU % x capacity / 100 (instances busy) when the sample carries
/// its capacity, else CPU % alone. Samples without CPU are skipped.
pub fn load_points(samples: &[crate::domain::MetricSample]) -> Vec<(i64, f64)> {
    samples
        .iter()
        .filter_map(|s| {
            let cpu = f64::from(s.values[crate::domain::TARGET]?);
            let load = match s.capacity {
                Some(c) if c > 0.0 => cpu * f64::from(c) / 100.0,
                _ => cpu,
            };
            Some((s.timestamp, load))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rl::{PolicyConfig, RlPolicy};

    fn wave(n: usize) -> Vec<(i64, f64)> {
        (0..n)
            .map(|i| {
                let x = i as f64 * std::f64::consts::TAU / 288.0;
                (i as i64 * 300, 5.0 + 4.0 * x.sin() + (i % 7) as f64 * 0.3)
            })
            .collect()
    }

    #[test]
    fn a_history_splits_into_fit_select_and_replay_or_says_how_much_is_needed() {
        let opts = RetrainOptions::default();
        let t = history_trace("g", wave(2000), &opts).unwrap();
        assert_eq!(
            (t.split.train_end, t.split.val_end, t.split.len),
            (1200, 1600, 2000)
        );
        assert_eq!(min_history_steps(&opts), 1440);
        let e = history_trace("g", wave(1000), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("600 / 200 / 200") && e.contains("1440"), "{e}");
        let bad = RetrainOptions {
            fit_pct: 80,
            select_pct: 20,
            ..RetrainOptions::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("replay"));
    }

    #[test]
    fn a_long_hole_cuts_the_history_and_short_ones_are_kept() {
        // Steps 0..10, a 24-step hole, 34..40, a 12-step hole (40..52
        // missing), 52..55; a NaN is no sample.
        let mut pts: Vec<(i64, f64)> = (0..10).map(|i| (i * 300, 1.0)).collect();
        pts.extend((34..40).map(|i| (i * 300, 2.0)));
        pts.extend((52..55).map(|i| (i * 300, 3.0)));
        pts.push((60 * 300, f64::NAN));
        pts.reverse();
        let kept = after_last_gap(pts.clone(), 12);
        assert_eq!(kept.first(), Some(&(34 * 300, 2.0)));
        assert_eq!(kept.len(), 9);
        // A limit under the 12-step hole: only the last run.
        let kept = after_last_gap(pts, 11);
        assert_eq!(kept.first(), Some(&(52 * 300, 3.0)));
        assert_eq!(kept.len(), 3);
    }

    #[test]
    fn load_is_cpu_times_capacity_when_known() {
        let mut a = crate::domain::MetricSample::cpu_only(0, 50.0);
        a.capacity = Some(4.0);
        let b = crate::domain::MetricSample::cpu_only(300, 30.0);
        let mut c = crate::domain::MetricSample::cpu_only(600, 1.0);
        c.values[crate::domain::TARGET] = None;
        assert_eq!(load_points(&[a, b, c]), vec![(0, 2.0), (300, 30.0)]);
    }

    /// A tiny retrain end to end: the decision follows the replay scores,
    /// iteration 0 is the starting policy, and a promotion archives the
    /// live version, bumps the version and logs the decision.
    #[test]
    fn a_retrain_is_judged_on_the_replay_and_a_promotion_is_versioned() {
        let opts = RetrainOptions {
            ppo: PpoOptions {
                iterations: 2,
                rollout: 64,
                envs_per_trace: 2,
                minibatch: 64,
                epochs: 1,
                validate_every: 1,
                ..RetrainOptions::default().ppo
            },
            ..RetrainOptions::default()
        };
        let t = history_trace("g", wave(1500), &opts).unwrap();
        let table = crate::sim::SimForecaster::Naive
            .table(&t, 13, crate::sim::SIM_HORIZON)
            .unwrap();
        let start = ppo::Nets::new(1).unwrap().tensors().unwrap();
        let mut seen = Vec::new();
        let out = retrain(
            std::slice::from_ref(&t),
            std::slice::from_ref(&table),
            (&start, 3),
            &opts,
            |it, _, v| seen.push((it, v.objective)),
        )
        .unwrap();
        let d = &out.decision;
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(d.current_version, 3);
        // The current policy's replay score is the starting weights'.
        let agent = Agent::new(&t, &table);
        let again = ppo::score_each(
            std::slice::from_ref(&agent),
            &mut guarded(Actor::from_tensors(&start, "actor").unwrap()),
            Segment::Test,
        );
        assert_eq!(d.current.objective, again[0].objective);
        assert_eq!(d.per_trace[0].steps, 300);
        let gain = d.current.objective - d.candidate.objective;
        assert_eq!(d.promoted, d.best_iteration > 0 && gain > 0.0, "{d:?}");
        if d.best_iteration == 0 {
            // The candidate is the start, bit for bit.
            assert_eq!(d.candidate.objective, d.current.objective);
        }

        // Promotion into a folder holding version 3.
        let dir = tempfile::tempdir().unwrap();
        let pd = PolicyDir::new(dir.path());
        let live = PolicyConfig {
            version: 3,
            ..PolicyConfig::default()
        };
        ppo::save(dir.path(), &start, &live).unwrap();
        std::fs::write(dir.path().join("training.json"), "{}").unwrap();
        let v = pd
            .promote(&out.weights, &live, &serde_json::json!({"retrain": true}))
            .unwrap();
        assert_eq!(v, 4);
        let (p, w) = pd.load().unwrap();
        assert_eq!((p.config.version, p.config.parent), (4, Some(3)));
        assert_eq!(w.len(), 16);
        let old = RlPolicy::load(&pd.version_dir(3)).unwrap();
        assert_eq!(old.config.version, 3);
        assert_eq!(
            std::fs::read_to_string(pd.version_dir(3).join("training.json")).unwrap(),
            "{}"
        );
        pd.log(d).unwrap();
        pd.log(d).unwrap();
        let logged = pd.decisions().unwrap();
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[0]["current_version"], 3);

        // Back to version 3: served as version 5 (4 is archived), the
        // weights those of version 3, the rollback logged.
        assert_eq!(pd.rollback(3).unwrap(), 5);
        let (p, w) = pd.load().unwrap();
        assert_eq!((p.config.version, p.config.parent), (5, Some(3)));
        let same = (&w["actor.l0.weight"] - &start["actor.l0.weight"])
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(same, 0.0);
        assert_eq!(
            RlPolicy::load(&pd.version_dir(4)).unwrap().config.version,
            4
        );
        let logged = pd.decisions().unwrap();
        assert_eq!(logged[2]["rollback"]["new_version"], 5);
        assert!(
            pd.rollback(9)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
    }
}
