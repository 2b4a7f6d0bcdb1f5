//! The POLICY_EVAL.md (docs/policy-evaluation.md) table: per trace and aggregated over traces (mean
//! and median), as CSV and Markdown, and demand-vs-capacity plots.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;

use super::{Run, Scores, Trace};

/// Mean and median of each score of one policy over traces.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Aggregate {
    pub policy: String,
    pub stat: &'static str,
    pub traces: usize,
    pub cost_vs_oracle: f64,
    pub sla_pct: f64,
    pub utilisation_pct: f64,
    pub violating_steps_per_hour: f64,
    pub violation_episodes_per_hour: f64,
    pub overload_volume: f64,
    pub capacity_changes: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Fill `cost_vs_oracle` from the oracle's row of the same trace.
pub fn relate_to_oracle(scores: &mut [Scores]) {
    let oracle: Vec<(String, f64)> = scores
        .iter()
        .filter(|s| s.policy == "oracle")
        .map(|s| (s.trace.clone(), s.cost_usd))
        .collect();
    for s in scores.iter_mut() {
        if let Some((_, c)) = oracle.iter().find(|(t, _)| *t == s.trace) {
            s.cost_vs_oracle = s.cost_usd / c;
        }
    }
}

/// Mean and median per policy, in the order policies first appear.
pub fn aggregate(scores: &[Scores]) -> Vec<Aggregate> {
    let mut policies: Vec<&str> = Vec::new();
    for s in scores {
        if !policies.contains(&s.policy.as_str()) {
            policies.push(&s.policy);
        }
    }
    let mut out = Vec::new();
    for p in policies {
        let rows: Vec<&Scores> = scores.iter().filter(|s| s.policy == p).collect();
        let col = |f: fn(&Scores) -> f64| rows.iter().map(|s| f(s)).collect::<Vec<_>>();
        for (stat, g) in [("mean", mean as fn(&[f64]) -> f64), ("median", median)] {
            out.push(Aggregate {
                policy: p.to_owned(),
                stat,
                traces: rows.len(),
                cost_vs_oracle: g(&col(|s| s.cost_vs_oracle)),
                sla_pct: g(&col(|s| s.sla_pct)),
                utilisation_pct: g(&col(|s| s.utilisation_pct)),
                violating_steps_per_hour: g(&col(|s| s.violating_steps_per_hour)),
                violation_episodes_per_hour: g(&col(|s| s.violation_episodes_per_hour)),
                overload_volume: g(&col(|s| s.overload_volume)),
                capacity_changes: g(&col(|s| s.capacity_changes as f64)),
            });
        }
    }
    out
}

fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| path.display().to_string())?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// The headline table (one row per policy, one statistic).
pub fn markdown_summary(agg: &[Aggregate], stat: &str) -> String {
    let mut s = String::from(
        "| policy | cost / oracle | SLA % | capped utilisation % | violating steps / h | \
         episodes / h | overload volume | capacity changes |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for a in agg.iter().filter(|a| a.stat == stat) {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.2} | {:.1} | {:.3} | {:.3} | {:.1} | {:.0} |",
            a.policy,
            a.cost_vs_oracle,
            a.sla_pct,
            a.utilisation_pct,
            a.violating_steps_per_hour,
            a.violation_episodes_per_hour,
            a.overload_volume,
            a.capacity_changes
        );
    }
    s
}

/// Per-trace table: cost / oracle and SLA % per policy.
pub fn markdown_per_trace(scores: &[Scores]) -> String {
    let mut policies: Vec<&str> = Vec::new();
    let mut traces: Vec<&str> = Vec::new();
    for s in scores {
        if !policies.contains(&s.policy.as_str()) {
            policies.push(&s.policy);
        }
        if !traces.contains(&s.trace.as_str()) {
            traces.push(&s.trace);
        }
    }
    let mut s = String::from("| trace |");
    for p in &policies {
        let _ = write!(s, " {p} |");
    }
    s.push_str("\n| --- |");
    s.push_str(&" --- |".repeat(policies.len()));
    s.push('\n');
    for t in traces {
        let _ = write!(s, "| {t} |");
        for p in &policies {
            match scores.iter().find(|r| r.trace == t && r.policy == *p) {
                Some(r) => {
                    let _ = write!(s, " {:.3} / {:.2} % |", r.cost_vs_oracle, r.sla_pct);
                }
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s
}

/// Whether a policy takes an SLA target (its `@` setting is the target).
pub fn takes_target(policy: &str) -> bool {
    policy.starts_with("sla")
}

/// The cheapest cost / oracle at which a swept reference family reaches
/// `sla` (mean over traces): linear between neighbouring settings along
/// the family's curve, the lowest over the segments that cross `sla`, or
/// its cheapest point above it. None when no setting reaches it.
pub fn cheapest_at(points: &[(f64, f64, f64)], sla: f64) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut keep = |c: f64| best = Some(best.map_or(c, |b: f64| b.min(c)));
    for p in points.iter().filter(|p| p.1 >= sla) {
        keep(p.2);
    }
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (lo, hi) = if a.1 <= b.1 { (a, b) } else { (b, a) };
        if lo.1 < sla && sla <= hi.1 && hi.1 > lo.1 {
            let f = (sla - lo.1) / (hi.1 - lo.1);
            keep(lo.2 + f * (hi.2 - lo.2));
        }
    }
    best
}

/// A swept family: (family, [(setting, SLA %, cost / oracle)]).
type Curve = (String, Vec<(f64, f64, f64)>);

/// The swept reference families of the mean aggregate, each sorted by
/// setting.
fn reference_families(agg: &[Aggregate]) -> Vec<Curve> {
    let mut fams: Vec<Curve> = Vec::new();
    for a in agg.iter().filter(|a| a.stat == "mean") {
        let Some((f, v)) = family(&a.policy) else {
            continue;
        };
        if takes_target(&f) {
            continue;
        }
        let pt = (v, a.sla_pct, a.cost_vs_oracle);
        match fams.iter_mut().find(|(n, _)| *n == f) {
            Some((_, pts)) => pts.push(pt),
            None => fams.push((f, vec![pt])),
        }
    }
    for (_, pts) in &mut fams {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    fams
}

/// Per trace: the policy's cost over the cheapest swept reference that
/// reaches the policy's SLA on that trace (None where none does).
fn per_trace_ratios(scores: &[Scores], policy: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for s in scores.iter().filter(|s| s.policy == policy) {
        let on_trace: Vec<Scores> = scores
            .iter()
            .filter(|r| r.trace == s.trace)
            .cloned()
            .collect();
        let fams = reference_families(&aggregate(&on_trace));
        let best = fams
            .iter()
            .filter_map(|(_, pts)| cheapest_at(pts, s.sla_pct - 1e-9))
            .fold(None, |b: Option<f64>, c| Some(b.map_or(c, |b| b.min(c))));
        out.push(best.map(|c| s.cost_vs_oracle / c));
    }
    out
}

/// POLICY_EVAL.md v2's target table: for each policy run at a target,
/// the SLA achieved (mean over traces) against it, its cost / oracle,
/// and the cheapest swept reference reaching the same SLA; then the same
/// comparison trace by trace. Empty when no policy took a target.
pub fn markdown_targets(agg: &[Aggregate], scores: &[Scores]) -> String {
    let fams = reference_families(agg);
    let rows: Vec<&Aggregate> = agg
        .iter()
        .filter(|a| a.stat == "mean" && takes_target(&a.policy))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "| policy | target % | achieved SLA % | off target (points) | cost / oracle | \
         cheapest swept reference at that SLA | its cost / oracle | policy / reference |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for a in rows {
        let Some((_, target)) = family(&a.policy) else {
            continue;
        };
        let best = fams
            .iter()
            .filter_map(|(f, pts)| cheapest_at(pts, a.sla_pct).map(|c| (f, c)))
            .min_by(|x, y| x.1.total_cmp(&y.1));
        let (name, cost, ratio) = match best {
            Some((f, c)) => (
                f.clone(),
                format!("{c:.3}"),
                format!("{:.3}", a.cost_vs_oracle / c),
            ),
            None if fams.is_empty() => ("(none swept)".into(), "-".into(), "-".into()),
            None => ("none reaches it".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {target} | {:.2} | {:+.2} | {:.3} | {name} | {cost} | {ratio} |",
            a.policy,
            a.sla_pct,
            a.sla_pct - target,
            a.cost_vs_oracle,
        );
    }
    if fams.is_empty() {
        return s;
    }
    s.push_str(
        "\nTrace by trace: the policy's cost over the cheapest swept reference reaching \
         the policy's SLA on that trace.\n\n\
         | policy | traces | 10 % or more cheaper | within 10 % | dearer by over 10 % | \
         no reference reaches it | median ratio |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for a in agg
        .iter()
        .filter(|a| a.stat == "mean" && takes_target(&a.policy))
    {
        let r = per_trace_ratios(scores, &a.policy);
        let known: Vec<f64> = r.iter().flatten().copied().collect();
        let count = |f: &dyn Fn(f64) -> bool| known.iter().filter(|x| f(**x)).count();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            a.policy,
            r.len(),
            count(&|x| x <= 0.9),
            count(&|x| x > 0.9 && x <= 1.1),
            count(&|x| x > 1.1),
            r.len() - known.len(),
            if known.is_empty() {
                "-".into()
            } else {
                format!("{:.3}", median(&known))
            }
        );
    }
    s
}

/// `scores.csv` (per trace), `summary.csv` (aggregates) and `report.md`.
pub fn write(
    out: &Path,
    scores: &[Scores],
    agg: &[Aggregate],
    command: &str,
    segment: super::Segment,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    write_csv(&out.join("scores.csv"), scores)?;
    write_csv(&out.join("summary.csv"), agg)?;
    let md = format!(
        "# Scaling-policy benchmark (POLICY_EVAL.md v2)\n\n\
         Made by `{command}`. {} segments only; cost / oracle is per trace, then \
         aggregated.\n\n## Mean over traces\n\n{}\n## Median over traces\n\n{}\n{}\
         ## Per trace (cost / oracle / SLA %)\n\n{}",
        match segment {
            super::Segment::Test => "Test",
            super::Segment::Validation => "Validation",
        },
        markdown_summary(agg, "mean"),
        markdown_summary(agg, "median"),
        match markdown_targets(agg, scores) {
            t if t.is_empty() => String::new(),
            t => format!(
                "## SLA targets (mean over traces)\n\nThe cheapest swept reference is \
                 read off each swept family's curve at the SLA the policy achieved \
                 (linear between settings).\n\n{t}\n"
            ),
        },
        markdown_per_trace(scores)
    );
    std::fs::write(out.join("report.md"), md).with_context(|| out.display().to_string())?;
    Ok(())
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Demand (as instances needed at 90 %) and each policy's ready capacity
/// over the scored segment of one trace, as SVG.
pub fn plot(
    path: &Path,
    trace: &Trace,
    runs: &[&Run],
    segment: super::Segment,
) -> anyhow::Result<()> {
    let range = segment.range(trace);
    let (from, to) = (range.start, range.end);
    let need: Vec<f64> = trace
        .load
        .iter()
        .map(|d| d / super::SLA_UTILISATION)
        .collect();
    let top = runs
        .iter()
        .flat_map(|r| r.ready.iter().map(|v| f64::from(*v)))
        .chain(need[from..].iter().copied())
        .fold(1.0, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: demand vs ready capacity ({} segment)",
                trace.id,
                segment.name()
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(from as f64..to as f64, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step (5 min)")
        .y_desc("instances")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            (from..to).map(|t| (t as f64, need[t])),
            BLACK.stroke_width(2),
        ))
        .map_err(err)?
        .label("demand / 0.9")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK));
    for (i, r) in runs.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                (from..to).map(|t| (t as f64, f64::from(r.ready[t - r.from]))),
                c.stroke_width(1),
            ))
            .map_err(err)?
            .label(r.scores.policy.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], c));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// A swept policy's family and setting: `target-tracking@40+guardrails`
/// -> (`target-tracking+guardrails`, 40); None without `@`.
pub fn family(policy: &str) -> Option<(String, f64)> {
    let (base, rest) = policy.split_once('@')?;
    let (num, tail) = match rest.find('+') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    Some((format!("{base}{tail}"), num.parse().ok()?))
}

/// The cost / service-level trade-off (mean over traces): every swept
/// family (policies named `<family>@<setting>`) as a line through its
/// settings, every other policy as a point; the 99 % SLA goal as a
/// vertical rule. SVG.
pub fn frontier(path: &Path, agg: &[Aggregate], segment: super::Segment) -> anyhow::Result<()> {
    let mean: Vec<&Aggregate> = agg
        .iter()
        .filter(|a| a.stat == "mean" && a.policy != "oracle")
        .collect();
    // (family, [(setting, SLA %, cost / oracle)])
    type Line = (String, Vec<(f64, f64, f64)>);
    let mut families: Vec<Line> = Vec::new();
    let mut points: Vec<(String, f64, f64)> = Vec::new();
    for a in &mean {
        match family(&a.policy) {
            Some((f, v)) => {
                let pt = (v, a.sla_pct, a.cost_vs_oracle);
                match families.iter_mut().find(|(n, _)| *n == f) {
                    Some((_, pts)) => pts.push(pt),
                    None => families.push((f, vec![pt])),
                }
            }
            None => points.push((a.policy.clone(), a.sla_pct, a.cost_vs_oracle)),
        }
    }
    for (_, pts) in &mut families {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let all = mean.iter().map(|a| (a.sla_pct, a.cost_vs_oracle));
    let (mut x0, mut x1, mut y1) = (99.0f64, 99.5f64, 1.5f64);
    for (x, y) in all {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    let x0 = (x0 - 0.5).max(0.0).floor();
    let x1 = (x1 + 0.2).min(100.2);
    let root = SVGBackend::new(path, (1000, 650)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "cost vs service level, mean over traces ({} segments)",
                segment.name()
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, 0.9..y1 * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("SLA compliance %")
        .y_desc("cost / oracle")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [(99.0, 0.9), (99.0, y1 * 1.05)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(err)?
        .label("99 % SLA goal")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK.mix(0.4)));
    let mut colour = 0;
    for (name, pts) in &families {
        let c = COLOURS[colour % COLOURS.len()];
        colour += 1;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.1, p.2)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{name} @ {}..{}", pts[0].0, pts[pts.len() - 1].0))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], c));
        chart
            .draw_series(pts.iter().map(|p| {
                EmptyElement::at((p.1, p.2))
                    + Circle::new((0, 0), 3, c.filled())
                    + Text::new(format!("{}", p.0), (4, -12), ("sans-serif", 11))
            }))
            .map_err(err)?;
    }
    for (name, x, y) in &points {
        let c = COLOURS[colour % COLOURS.len()];
        colour += 1;
        chart
            .draw_series(std::iter::once(TriangleMarker::new(
                (*x, *y),
                7,
                c.filled(),
            )))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| TriangleMarker::new((x + 7, y), 5, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_of_swept_policies() {
        assert_eq!(
            family("target-tracking@40+guardrails"),
            Some(("target-tracking+guardrails".into(), 40.0))
        );
        assert_eq!(
            family("provision-p90-bilstm@12.5"),
            Some(("provision-p90-bilstm".into(), 12.5))
        );
        assert_eq!(family("rl+guardrails"), None);
    }

    #[test]
    fn the_cheapest_reference_is_read_off_the_curve_at_the_same_sla() {
        // (setting, SLA %, cost): 98 % at 1.5, 99 % at 1.7, 99.5 % at 2.1.
        let pts = [(60.0, 98.0, 1.5), (50.0, 99.0, 1.7), (40.0, 99.5, 2.1)];
        assert!((cheapest_at(&pts, 98.5).unwrap() - 1.6).abs() < 1e-9);
        assert_eq!(cheapest_at(&pts, 99.0), Some(1.7));
        assert_eq!(cheapest_at(&pts, 99.9), None);
        // A non-monotone curve: a cheaper setting above the SLA wins.
        let pts = [(0.0, 97.0, 1.2), (10.0, 99.2, 1.4), (20.0, 99.1, 1.9)];
        assert!((cheapest_at(&pts, 99.0).unwrap() - (1.2 + 2.0 / 2.2 * 0.2)).abs() < 1e-9);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
