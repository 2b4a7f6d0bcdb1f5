//! The command line: one file per command, each a clap struct (`env` on
//! every option, doc comments as `--help`) and the function that runs it.
//! Flag groups several commands share (store, models, grid, datasets)
//! are declared once and flattened.

mod evaluate;
mod import;
pub mod loadtest;
mod replay;
mod retrain;
mod serve;
mod simulate;
mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::app::config::{GridArgs, ModelsArgs, StoreArgs};
use crate::data::DatasetSource;
use crate::forecast::{Forecaster, ModelRegistry};
pub use evaluate::EvaluateArgs;
pub use import::ImportArgs;
pub use loadtest::LoadtestArgs;
pub use replay::ReplayArgs;
pub use retrain::RetrainArgs;
pub use simulate::SimulateArgs;
pub use train::TrainArgs;

/// Workload forecasting and predictive scaling for AWS Auto Scaling groups.
#[derive(Debug, Parser)]
#[command(name = "forescale", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // built once per process
pub enum Command {
    /// Run the HTTP service.
    Serve(crate::app::ServiceConfig),
    /// Score forecasters on a dataset (docs/forecast-evaluation.md);
    /// writes CSV + Markdown.
    Evaluate(EvaluateArgs),
    /// Train the BiLSTM-attention forecaster (or the LSTM ablation, the
    /// TFT, or the scaling policy).
    Train(TrainArgs),
    /// Convert a dataset to the generic long CSV.
    Import(ImportArgs),
    /// Replay demand traces against scaling policies
    /// (docs/policy-evaluation.md): the cost / SLA table and
    /// demand-vs-capacity plots.
    Simulate(SimulateArgs),
    /// Continuous improvement: retrain a candidate policy on recent
    /// history in the simulator; promote it (a new version in the policy
    /// folder) only if it beats the live policy on the same replay.
    Retrain(RetrainArgs),
    /// Stream a trace into a running service at N x speed.
    Replay(ReplayArgs),
    /// Open-loop load test (HDR histograms) of a service: ingest,
    /// recommendations (cache hits and misses), mixed, 5,000 groups and
    /// fleet decision cycles; prints and writes a latency table.
    Loadtest(LoadtestArgs),
    /// Print the OpenAPI document.
    Openapi,
}

/// Where the shared traces are.
#[derive(Debug, Clone, Args)]
pub struct DataRootArgs {
    /// Folder holding the shared datasets.
    #[arg(long, env = "FORESCALE_DATA_ROOT", default_value = "../shared/data")]
    pub data_root: PathBuf,
}

/// One dataset to read.
#[derive(Debug, Clone, Args)]
pub struct DatasetArgs {
    /// Dataset name (bitbrains-rnd, azure-v1-cpu, nab-aws-cloudwatch,
    /// google2019-job-tasks, datacenter-aggregates) or a long-CSV file;
    /// `train` and `evaluate` take several, comma-separated (pooled; series
    /// named `<dataset>/<id>`).
    #[arg(long, env = "FORESCALE_DATASET", default_value = "bitbrains-rnd")]
    pub dataset: String,
    #[command(flatten)]
    pub root: DataRootArgs,
}

impl DatasetArgs {
    pub fn source(&self) -> anyhow::Result<DatasetSource> {
        Ok(DatasetSource::parse(&self.dataset, &self.root.data_root)?)
    }
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Evaluate(args) => {
            tokio::task::spawn_blocking(move || evaluate::run(&args)).await?
        }
        Command::Train(args) => tokio::task::spawn_blocking(move || train::run(&args)).await?,
        Command::Import(args) => import::run(&args),
        Command::Simulate(args) => {
            tokio::task::spawn_blocking(move || simulate::run(&args)).await?
        }
        Command::Retrain(args) => retrain::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Loadtest(args) => loadtest::run(args).await,
        Command::Openapi => {
            print!("{}", crate::http::openapi_json());
            Ok(())
        }
    }
}

/// This process's command line, as a user would type it.
/// The command as run, for reports and model cards, without this
/// machine's paths ([`portable_command`]).
fn command_line() -> String {
    portable_command(
        &std::iter::once("forescale".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Flags whose absolute paths are this machine's, not the command's.
const PATH_FLAGS: [&str; 3] = ["--out", "--models-dir", "--data-root"];

/// A command line without this machine's paths: an absolute path after
/// one of [`PATH_FLAGS`] (as `--flag PATH` or `--flag=PATH`) becomes
/// `<dir>`.
fn portable_command(command: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut after_flag = false;
    for word in command.split(' ') {
        let word = match word.split_once('=') {
            _ if after_flag && word.starts_with('/') => "<dir>".to_owned(),
            Some((flag, path)) if PATH_FLAGS.contains(&flag) && path.starts_with('/') => {
                format!("{flag}=<dir>")
            }
            _ => word.to_owned(),
        };
        after_flag = PATH_FLAGS.contains(&word.as_str());
        out.push(word);
    }
    out.join(" ")
}

/// Resolve model names against the baselines and a models folder.
fn resolve_models(names: &[String], registry: &ModelRegistry) -> anyhow::Result<Vec<Forecaster>> {
    use anyhow::Context;
    names
        .iter()
        .map(|m| {
            registry.get(m.trim()).with_context(|| {
                format!(
                    "unknown model {m:?}; available: {}",
                    registry.names().join(", ")
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_lose_absolute_output_paths_only() {
        assert_eq!(
            portable_command("forescale train --model bilstm --out /tmp/x/bilstm --epochs 3"),
            "forescale train --model bilstm --out <dir> --epochs 3"
        );
        assert_eq!(
            portable_command("forescale train --out=/srv/m"),
            "forescale train --out=<dir>"
        );
        assert_eq!(
            portable_command("forescale evaluate --models-dir /a/b --data-root=/d --out x"),
            "forescale evaluate --models-dir <dir> --data-root=<dir> --out x"
        );
        let relative = "forescale train --out models/bilstm --dataset /data/x.csv";
        assert_eq!(portable_command(relative), relative);
    }
}
