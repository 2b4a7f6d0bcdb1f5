//! `forescale import`: a dataset as the generic long CSV.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::DatasetArgs;
use crate::data;

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Output file (`-` for standard output).
    #[arg(long, env = "FORESCALE_IMPORT_OUT")]
    pub out: PathBuf,
}

pub(super) fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let source = args.data.source()?;
    let started = Instant::now();
    let (series, report) = data::load(&source)?;
    let n: usize = series.iter().map(|s| s.samples.len()).sum();
    if args.out.as_os_str() == "-" {
        data::write_long_csv(&series, std::io::stdout().lock())?;
    } else {
        let f = std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        data::write_long_csv(&series, std::io::BufWriter::new(f))?;
    }
    eprintln!(
        "imported {} series, {n} samples from {} in {:.1} s ({} samples dropped, {} values blanked by the bounds check)",
        series.len(),
        source.name(),
        started.elapsed().as_secs_f64(),
        report.dropped_samples,
        report.blanked_values
    );
    Ok(())
}
