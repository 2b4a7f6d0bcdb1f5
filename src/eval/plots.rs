//! Plots of an evaluation, as SVG: forecast fan charts, the attention
//! heatmap (features x look-back steps, as Fig. 2 of seed 003) and a
//! calibration plot (nominal vs observed quantile level).

use std::collections::HashMap;
use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::{ForecastSink, ModelScores};
use crate::forecast::QuantileForecast;

/// Collects the forecasts of a few series for fan charts.
#[derive(Debug, Default)]
pub struct FanCollector {
    wanted: Vec<String>,
    pub forecasts: HashMap<String, Vec<(usize, QuantileForecast)>>,
}

impl FanCollector {
    pub fn new(wanted: Vec<String>) -> Self {
        Self {
            wanted,
            forecasts: HashMap::new(),
        }
    }
}

impl ForecastSink for FanCollector {
    fn record(
        &mut self,
        series: &str,
        origin: usize,
        _y: &[f32],
        fc: &QuantileForecast,
    ) -> csv::Result<()> {
        if self.wanted.iter().any(|w| w == series) {
            self.forecasts
                .entry(series.to_owned())
                .or_default()
                .push((origin, fc.clone()));
        }
        Ok(())
    }
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Actual values and the p10-p90 band with the median, over steps
/// `from..to` of one series (rolling origins every H steps).
pub fn fan_chart(
    path: &Path,
    title: &str,
    y: &[f32],
    from: usize,
    to: usize,
    forecasts: &[(usize, QuantileForecast)],
) -> anyhow::Result<()> {
    let to = to.min(y.len());
    let mut lo = vec![f32::NAN; to];
    let mut mid = vec![f32::NAN; to];
    let mut hi = vec![f32::NAN; to];
    for (origin, fc) in forecasts {
        for k in 0..fc.horizon() {
            let x = origin + k;
            if (from..to).contains(&x) {
                (lo[x], mid[x], hi[x]) = (fc.p10[k], fc.p50[k], fc.p90[k]);
            }
        }
    }
    let top = (from..to)
        .flat_map(|x| [y[x], hi[x]])
        .filter(|v| v.is_finite())
        .fold(1.0f32, f32::max)
        * 1.05;
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(from as f32..to as f32, 0f32..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step (5 min)")
        .y_desc("CPU %")
        .draw()
        .map_err(err)?;
    let band: Vec<(f32, f32)> = (from..to)
        .filter(|x| hi[*x].is_finite())
        .map(|x| (x as f32, hi[x]))
        .chain(
            (from..to)
                .rev()
                .filter(|x| lo[*x].is_finite())
                .map(|x| (x as f32, lo[x])),
        )
        .collect();
    chart
        .draw_series(std::iter::once(Polygon::new(band, BLUE.mix(0.2).filled())))
        .map_err(err)?
        .label("p10-p90")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.mix(0.2).filled()));
    chart
        .draw_series(LineSeries::new(
            (from..to)
                .filter(|x| mid[*x].is_finite())
                .map(|x| (x as f32, mid[x])),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("p50")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            (from..to).map(|x| (x as f32, y[x])),
            BLACK.stroke_width(1),
        ))
        .map_err(err)?
        .label("actual")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Mean feature attention, rows = features, columns = look-back steps.
pub fn heatmap(
    path: &Path,
    title: &str,
    weights: &[Vec<f32>],
    features: &[&str],
) -> anyhow::Result<()> {
    let steps = weights.len();
    let nf = features.len();
    let max = weights
        .iter()
        .flatten()
        .copied()
        .fold(f32::MIN_POSITIVE, f32::max);
    let root =
        SVGBackend::new(path, (220 + 40 * steps as u32, 120 + 22 * nf as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(140)
        .build_cartesian_2d((0..steps).into_segmented(), (0..nf).into_segmented())
        .map_err(err)?;
    // Segmented axes put each label at the centre of its cell; plotters
    // also offers the centre one past the end, which gets no label.
    let centre = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => Some(*i),
        SegmentValue::Exact(_) | SegmentValue::Last => None,
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(steps)
        .y_labels(nf)
        .x_label_formatter(&|x| {
            centre(x)
                .filter(|i| *i < steps)
                .map_or(String::new(), |i| format!("T-{}", steps - 1 - i))
        })
        .y_label_formatter(&|y| {
            centre(y)
                .filter(|i| *i < nf)
                .and_then(|i| features.get(nf - 1 - i))
                .map_or(String::new(), |f| (*f).to_owned())
        })
        .draw()
        .map_err(err)?;
    chart
        .draw_series(weights.iter().enumerate().flat_map(|(t, row)| {
            row.iter().enumerate().map(move |(j, w)| {
                let v = (w / max).clamp(0.0, 1.0);
                let shade = (255.0 * (1.0 - v)) as u8;
                let y = nf - 1 - j;
                Rectangle::new(
                    [
                        (SegmentValue::Exact(t), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(t + 1), SegmentValue::Exact(y + 1)),
                    ],
                    RGBColor(shade, shade, 255).filled(),
                )
            })
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Observed share of points at or below p10, p50, p90, per model, against
/// the diagonal of perfect calibration.
pub fn calibration(path: &Path, scores: &[ModelScores]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (520, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Calibration (test segments)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0f32..1f32, 0f32..1f32)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("nominal quantile")
        .y_desc("observed share at or below")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))
        .map_err(err)?;
    for (i, s) in scores.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts = [
            (0.1f32, s.below_p10 as f32),
            (0.5, s.below_p50 as f32),
            (0.9, s.below_p90 as f32),
        ];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(s.model.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Grouped bars: for each dataset (a group on the x axis), one bar per
/// model of its value (a ratio to naive), with the line at 1. Values
/// above the top of the axis are drawn to it and labelled.
pub fn ratio_bars(
    path: &Path,
    title: &str,
    datasets: &[&str],
    models: &[&str],
    values: &[Vec<f64>],
) -> anyhow::Result<()> {
    let finite = values.iter().flatten().copied().filter(|v| v.is_finite());
    let top = finite.fold(1.5f64, f64::max).min(3.0) * 1.05;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let groups = datasets.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..groups, 0f64..top)
        .map_err(err)?;
    let names: Vec<String> = datasets.iter().map(|d| (*d).to_owned()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(datasets.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("ratio to naive")
        .draw()
        .map_err(err)?;
    let width = 0.8 / models.len().max(1) as f64;
    for (mi, m) in models.iter().enumerate() {
        let color = Palette99::pick(mi).to_rgba();
        let bars = values
            .get(mi)
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(di, v)| {
                let x0 = di as f64 + 0.1 + mi as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v.min(top))], color.filled())
            });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label((*m).to_owned())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let clipped = values
            .get(mi)
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, v)| v.is_finite() && **v > top)
            .map(|(di, v)| {
                let x0 = di as f64 + 0.1 + mi as f64 * width;
                Text::new(format!("{v:.1}"), (x0, top * 0.97), ("sans-serif", 11))
            });
        chart.draw_series(clipped).map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, 1.0), (groups, 1.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
