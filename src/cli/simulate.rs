//! `forescale simulate`: replay demand traces against scaling policies
//! (docs/policy-evaluation.md): the cost / SLA table, demand-vs-capacity
//! plots and, for swept settings, the cost / SLA frontier.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{DataRootArgs, ModelsArgs, command_line};

// The field docs are --help text, where <model> is a placeholder, not HTML.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Policies, comma-separated: oracle, threshold, target-tracking, hold,
    /// predictive (seasonal-naive forecasts, POLICY_EVAL.md's reference),
    /// predictive-<forecaster> (naive, snaive, or a trained model in
    /// --models-dir, e.g. predictive-bilstm), provision-p<10|50|90>-<forecaster>
    /// (a fixed action of the learned policy), sla-<forecaster> (the
    /// chance-constrained planner for an SLA target) and rl. `@<n>` sets a
    /// setting: target utilisation % (target-tracking@40,
    /// predictive-bilstm@40), headroom % (provision-p90-bilstm@25) or SLA
    /// target % (sla-naive@99.9, default 99); swept policies are drawn in
    /// frontier.svg. `+guardrails` adds guardrails.
    #[arg(
        long,
        alias = "policies",
        env = "FORESCALE_SIM_POLICIES",
        value_delimiter = ',',
        default_value = "oracle,threshold,target-tracking,predictive,predictive-bilstm,sla-naive@99"
    )]
    pub policy: Vec<String>,
    /// `main` (POLICY_EVAL.md's 13 traces), one trace of it by name
    /// (e.g. bb-aug-svc3), or a CSV file with columns timestamp,value.
    #[arg(long, env = "FORESCALE_SIM_TRACE", default_value = "main")]
    pub trace: String,
    #[command(flatten)]
    pub root: DataRootArgs,
    /// Folder of trained models (for predictive-<model>).
    #[command(flatten)]
    pub registry: ModelsArgs,
    /// Output folder: scores.csv, summary.csv, report.md, one
    /// demand-vs-capacity SVG per trace and, when a setting is swept,
    /// frontier.svg (cost vs SLA).
    #[arg(long, env = "FORESCALE_SIM_OUT", default_value = "reports/sim")]
    pub out: PathBuf,
    /// Segment to score: `test` (the benchmark) or `validation` (where
    /// POLICY_EVAL.md lets policies be tuned). The replay starts at the
    /// validation start either way.
    #[arg(long, env = "FORESCALE_SIM_SEGMENT", value_enum,
          default_value_t = crate::sim::Segment::Test)]
    pub segment: crate::sim::Segment,
    /// Step of the `sla-*` planner's offset per missed step, as a share of
    /// the forecast median (`crate::policy::sla`).
    #[arg(long, env = "FORESCALE_SIM_SLA_RATE", default_value_t = crate::policy::sla::DEFAULT_RATE)]
    pub sla_rate: f64,
}

pub(super) fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    use crate::sim::{self, PolicySpec, SimForecaster};
    let registry = args.registry.load()?;
    let catalog = sim::Catalog {
        neural: registry
            .neural()
            .map(|m| (m.name().to_owned(), SimForecaster::Neural(m.clone())))
            .collect(),
        rl: match args.registry.models_dir.join("policy") {
            d if d.join("model.safetensors").is_file() => Some(
                crate::policy::rl::RlPolicy::load(&d)
                    .with_context(|| format!("loading the policy from {}", d.display()))?,
            ),
            _ => None,
        },
        sla_rate: args.sla_rate,
    };
    let specs = args
        .policy
        .iter()
        .map(|p| PolicySpec::parse(p.trim(), &catalog))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let traces = sim::traces::load_spec(&args.root.data_root, &args.trace)
        .with_context(|| format!("--trace {}", args.trace))?;
    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    let segment = args.segment;
    let started = std::time::Instant::now();
    let runs = sim::run_all(&traces, &specs, segment, |trace, runs| {
        eprintln!(
            "[{:>5.1}s] {:<26} {} steps scored: {}",
            started.elapsed().as_secs_f64(),
            trace.id,
            runs.first().map_or(0, |r| r.scores.steps),
            runs.iter()
                .map(|r| format!("{} {:.1}%", r.scores.policy, r.scores.sla_pct))
                .collect::<Vec<_>>()
                .join(", ")
        );
    })?;
    for (trace, trace_runs) in traces.iter().zip(&runs) {
        // Swept settings (`@`) would crowd the time plot: they go to the
        // frontier plot instead.
        let mut refs: Vec<&sim::Run> = trace_runs
            .iter()
            .filter(|r| sim::report::family(&r.scores.policy).is_none())
            .collect();
        if refs.is_empty() {
            refs = trace_runs.iter().take(6).collect();
        }
        sim::report::plot(
            &args.out.join(format!("{}.svg", trace.id)),
            trace,
            &refs,
            segment,
        )?;
    }
    let scores: Vec<sim::Scores> = runs.iter().flatten().map(|r| r.scores.clone()).collect();
    let agg = sim::report::aggregate(&scores);
    if scores
        .iter()
        .any(|s| sim::report::family(&s.policy).is_some())
    {
        let path = args.out.join("frontier.svg");
        sim::report::frontier(&path, &agg, segment)?;
        eprintln!("cost / service-level trade-off: {}", path.display());
    }
    sim::report::write(&args.out, &scores, &agg, &command_line(), segment)?;
    println!(
        "mean over {} traces\n{}",
        traces.len(),
        sim::report::markdown_summary(&agg, "mean")
    );
    println!("median\n{}", sim::report::markdown_summary(&agg, "median"));
    println!("report: {}", args.out.join("report.md").display());
    Ok(())
}
