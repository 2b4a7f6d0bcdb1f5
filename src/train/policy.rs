//! Training the scaling policy: PPO in the simulator on the train
//! segments of the chosen traces, reading one forecaster's quantiles
//! (computed once per trace), the checkpoint chosen on validation, then
//! the folder the service loads (`model.safetensors`, `policy.json`,
//! `training.json` with the command, options, validation history and the
//! references on the same validation segments).

use std::path::PathBuf;

use anyhow::Context;

use super::ppo;
use crate::forecast::ModelRegistry;
use crate::policy::versions::PolicyDir;
use crate::sim::{self, SimForecaster};

/// What one policy training run needs.
#[derive(Debug)]
pub struct PolicyTraining {
    pub registry: ModelRegistry,
    /// Folder of the shared traces.
    pub data_root: PathBuf,
    /// `main` or one trace name.
    pub traces: String,
    /// The forecaster whose quantiles the policy reads.
    pub forecaster: String,
    /// A trained policy folder to start from (validated first).
    pub init: Option<PathBuf>,
    pub opts: ppo::PpoOptions,
    /// Where the policy folder is written.
    pub out: PathBuf,
    /// The command line, recorded in `training.json`.
    pub command: String,
}

/// Train, choose on validation, write the folder; progress on standard
/// error.
pub fn train_policy(t: &PolicyTraining) -> anyhow::Result<()> {
    let (opts, out) = (&t.opts, &t.out);
    let registry = &t.registry;
    let forecaster = SimForecaster::by_name(&t.forecaster, registry).ok_or_else(|| {
        anyhow::anyhow!("--policy-forecaster: no trained model {:?}", t.forecaster)
    })?;
    let traces = sim::traces::load_spec(&t.data_root, &t.traces)
        .with_context(|| format!("--policy-traces {}", t.traces))?;
    eprintln!(
        "forecasting {} traces with {} (once, reused by every rollout)",
        traces.len(),
        forecaster.name()
    );
    let tables = traces
        .iter()
        .map(|t| forecaster.table(t, 13, sim::SIM_HORIZON))
        .collect::<Result<Vec<_>, _>>()?;
    let agents: Vec<ppo::Agent> = traces
        .iter()
        .zip(&tables)
        .map(|(t, f)| ppo::Agent::new(t, f))
        .collect();
    let init = match &t.init {
        Some(dir) => {
            let (p, w) = PolicyDir::new(dir)
                .load()
                .with_context(|| format!("--policy-init {}", dir.display()))?;
            anyhow::ensure!(
                p.config.forecaster == forecaster.name(),
                "--policy-init {}: that policy reads {:?}, not --policy-forecaster {:?}",
                dir.display(),
                p.config.forecaster,
                forecaster.name()
            );
            eprintln!(
                "starting from {} (version {})",
                dir.display(),
                p.config.version
            );
            Some(w)
        }
        None => None,
    };
    let started = std::time::Instant::now();
    let (weights, report) = ppo::train_from(&agents, opts, init.as_ref(), |it, reward, v| {
        eprintln!(
            "[{:>6.1}s] iteration {it:>4}/{}  mean reward {reward:>8.4}  validation: cost/oracle {:.3}  SLA {:.2} %  objective {:.3}",
            started.elapsed().as_secs_f64(),
            opts.iterations,
            v.cost_vs_oracle,
            v.sla_pct,
            v.objective
        );
    })?;
    // Validation context: the references and the best checkpoint with
    // guardrails, on the same validation segments.
    let mut context = Vec::new();
    let actor = crate::policy::rl::Actor::from_tensors(&weights, "actor")?;
    let rl = crate::policy::rl::RlPolicy {
        config: crate::policy::rl::PolicyConfig::default(),
        actor,
        last_action: crate::policy::rl::HOLD,
    };
    let mut candidates: Vec<Box<dyn crate::policy::Policy + Send>> = vec![
        Box::new(crate::policy::reference::TargetTracking::default()),
        Box::new(crate::policy::reference::Predictive {
            forecaster: forecaster.name(),
            target: None,
        }),
        Box::new(crate::policy::Guarded::new(
            Box::new(rl),
            crate::policy::GuardrailSettings::default(),
        )),
    ];
    for p in &mut candidates {
        let v = ppo::validate(&agents, p.as_mut());
        eprintln!(
            "validation, {:<22} cost/oracle {:.3}  SLA {:.2} %",
            p.name(),
            v.cost_vs_oracle,
            v.sla_pct
        );
        context.push(serde_json::json!({"policy": p.name(), "validation": v}));
    }
    let config = crate::policy::rl::PolicyConfig {
        forecaster: forecaster.name(),
        ..crate::policy::rl::PolicyConfig::default()
    };
    ppo::save(out, &weights, &config)?;
    std::fs::write(
        out.join("training.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "command": t.command,
            "traces": traces.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            "options": opts,
            "report": report,
            "validation_context": context,
        }))?,
    )?;
    eprintln!(
        "best validation at iteration {}: cost/oracle {:.3}, SLA {:.2} % ({:.0} s); wrote {}",
        report.best_iteration,
        report.best.cost_vs_oracle,
        report.best.sla_pct,
        report.seconds,
        out.display()
    );
    Ok(())
}
