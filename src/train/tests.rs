//! Unit tests of forecaster training (tiny networks, a few steps).

use super::*;

#[test]
fn every_weight_gets_a_gradient() {
    for bidirectional in [true, false] {
        let mut cfg = Config::paper(6, bidirectional);
        cfg.hidden = 8;
        cfg.attention_dim = 8;
        let norms = gradient_norms(&Architecture::Recurrent(cfg), 8, 7).unwrap();
        // feature_attn (2) + lstm (4 per direction per layer) + temporal (3) + head (2)
        let dirs = if bidirectional { 2 } else { 1 };
        assert_eq!(norms.len(), 2 + 4 * dirs * 2 + 3 + 2);
        for (name, g) in &norms {
            assert!(*g > 0.0 && g.is_finite(), "{name} got gradient {g}");
        }
    }
}

#[test]
fn schedule_warms_up_then_decays() {
    let o = TrainOptions {
        max_epochs: 10,
        warmup_epochs: 2,
        ..TrainOptions::default()
    };
    assert!(lr_at(&o, 0, 10) < lr_at(&o, 10, 10));
    assert!((lr_at(&o, 19, 10) - o.lr).abs() < 1e-12);
    assert!(lr_at(&o, 60, 10) < o.lr);
    assert!(lr_at(&o, 99, 10) < 1e-5);
}

#[test]
fn weight_average_follows_the_weights() {
    let varmap = VarMap::new();
    let w = varmap
        .get(
            2,
            "w",
            candle_nn::Init::Const(0.0),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
    let mut ema = Ema::new(&varmap, 0.2).unwrap();
    let var = varmap.data().lock().unwrap()["w"].clone();
    var.set(&Tensor::new(&[4.0f32, -2.0], &Device::Cpu).unwrap())
        .unwrap();
    // Warm-up decays (1 + t) / (10 + t): 1/10, then 2/11, then the
    // cap 0.2 (3/12 would be more).
    let mut want = [0.0f64, 0.0];
    for d in [0.1, 2.0 / 11.0, 0.2] {
        ema.update(&varmap).unwrap();
        for (m, x) in want.iter_mut().zip([4.0, -2.0]) {
            *m = d * *m + (1.0 - d) * x;
        }
    }
    let got = ema.weights["w"].to_vec1::<f32>().unwrap();
    for (g, m) in got.iter().zip(want) {
        assert!((f64::from(*g) - m).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    // The raw weights are untouched.
    assert_eq!(w.to_vec1::<f32>().unwrap(), vec![4.0, -2.0]);
    // A snapshot is a copy: restoring it sets the average.
    restore(&varmap, &ema.snapshot().unwrap()).unwrap();
    assert_eq!(w.to_vec1::<f32>().unwrap(), got);
}

/// Two series of 400 steps (train 280, validation 60, test 60).
fn tiny_series() -> Vec<GriddedSeries> {
    let series: Vec<crate::data::Series> = (0..2)
        .map(|k| crate::data::Series {
            id: format!("s{k}"),
            samples: (0..400)
                .map(|i| {
                    let cpu = 20.0 + 10.0 * ((i + 7 * k) as f32 / 6.0).sin();
                    crate::domain::MetricSample::cpu_only(1_700_000_000 + i * 300, cpu)
                })
                .collect(),
        })
        .collect();
    crate::data::prepare(&series, 300)
}

fn tiny_options(fit_end_pct: usize) -> TrainOptions {
    TrainOptions {
        lookback: 6,
        max_epochs: 3,
        warmup_epochs: 1,
        patience: 1,
        windows_per_epoch: 64,
        batch: 32,
        hidden: 4,
        lr: 0.0,
        fit_end_pct,
        ..TrainOptions::default()
    }
}

#[test]
fn the_fit_covers_the_rows_it_is_told() {
    let series = tiny_series();
    assert_eq!(series[0].split.train_end, 280);
    let (l, h) = (6, 12);
    // Windows whose 12 targets end inside the fitted rows, per series.
    let want = |end: usize| 2 * (end + 1 - h - l);
    // Learning rate 0: validation never improves after epoch 1, so the
    // train split stops early (patience 1) and keeps epoch 1, and a
    // refit runs every epoch and keeps the last.
    let plain = train(&series, &tiny_options(70), false).unwrap();
    assert_eq!(plain.train_windows, want(280));
    assert_eq!((plain.log.len(), plain.best_epoch), (2, 1));
    let refit = train(&series, &tiny_options(85), false).unwrap();
    assert_eq!(refit.train_windows, want(340));
    assert_eq!((refit.log.len(), refit.best_epoch), (3, 3));
    // Validation origins stay those of the validation split.
    assert_eq!(refit.val_windows, plain.val_windows);
    let gap = train(&series, &tiny_options(50), false).unwrap();
    assert_eq!(gap.train_windows, want(200));
    assert!(train(&series, &tiny_options(86), false).is_err());
}

#[test]
fn bad_options_name_their_flag() {
    assert!(TrainOptions::default().check().is_ok());
    assert!(tiny_options(70).check().is_ok());
    let d = TrainOptions::default;
    for (o, flag) in [
        (TrainOptions { lookback: 0, ..d() }, "--lookback"),
        (
            TrainOptions {
                max_epochs: 0,
                ..d()
            },
            "--epochs",
        ),
        (TrainOptions { batch: 0, ..d() }, "--batch"),
        (
            TrainOptions {
                windows_per_epoch: 0,
                ..d()
            },
            "--windows-per-epoch",
        ),
        (TrainOptions { hidden: 0, ..d() }, "--hidden"),
        (TrainOptions { hidden: 6, ..d() }, "--hidden"),
        (TrainOptions { lr: -1e-3, ..d() }, "--lr"),
        (
            TrainOptions {
                lr: f64::NAN,
                ..d()
            },
            "--lr",
        ),
        (TrainOptions { patience: 0, ..d() }, "--patience"),
        (
            TrainOptions {
                max_minutes: 0.0,
                ..d()
            },
            "--max-minutes",
        ),
        (
            TrainOptions {
                max_minutes: f64::NAN,
                ..d()
            },
            "--max-minutes",
        ),
        (
            TrainOptions {
                ema_decay: 1.0,
                ..d()
            },
            "--ema-decay",
        ),
        (
            TrainOptions {
                fit_end_pct: 0,
                ..d()
            },
            "--fit-end-pct",
        ),
        (
            TrainOptions {
                fit_end_pct: 86,
                ..d()
            },
            "--fit-end-pct",
        ),
        (
            TrainOptions {
                covariate_dropout: 1.0,
                ..d()
            },
            "--covariate-dropout",
        ),
        (
            TrainOptions {
                covariate_dropout: -0.1,
                ..d()
            },
            "--covariate-dropout",
        ),
    ] {
        let e = o.check().unwrap_err().to_string();
        assert!(e.starts_with(flag), "{flag}: {e}");
        // train() refuses them too, before touching the data.
        let e = train(&[], &o, false).unwrap_err().to_string();
        assert!(e.starts_with(flag), "{flag}: {e}");
    }
}

#[test]
fn covariate_dropout_blanks_whole_covariates_and_nothing_else() {
    let (l, h) = (6, 12);
    let series = tiny_series();
    let stats = NormStats::fit_with(series.iter().flat_map(|s| &s.window.rows[..]), true);
    let mut data = prepare(&series, &stats);
    // Give every input a non-zero value, so a blanked one shows.
    for d in &mut data {
        for (i, v) in d.x.iter_mut().enumerate() {
            *v = 1.0 + i as f32;
        }
    }
    let idx: Vec<Origin> = (0..40).map(|i| (i % 2, 20 + i)).collect();
    let flat = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let plain = gather(&data, &stats, &idx, (l, h, 0), None).unwrap().x;
    // Probability 0 draws nothing: the stream of the rest of training
    // (window order, dropout masks) is that of a run without it.
    let mut rng = SplitMix64::new(5);
    let zero = gather(&data, &stats, &idx, (l, h, 0), Some((0.0, &mut rng)))
        .unwrap()
        .x;
    assert_eq!(flat(&zero), flat(&plain));
    assert_eq!(rng.next_u64(), SplitMix64::new(5).next_u64());
    let half = gather(&data, &stats, &idx, (l, h, 0), Some((0.5, &mut rng)))
        .unwrap()
        .x;
    let (plain, half) = (flat(&plain), flat(&half));
    let mut blanked = 0;
    for (w, (a, b)) in plain
        .chunks_exact(l * N_FEATURES)
        .zip(half.chunks_exact(l * N_FEATURES))
        .enumerate()
    {
        for k in 0..N_FEATURES {
            let col =
                |x: &[f32]| -> Vec<f32> { x.chunks_exact(N_FEATURES).map(|r| r[k]).collect() };
            let (ca, cb) = (col(a), col(b));
            if k == TARGET || k >= N_MEASURED {
                assert_eq!(ca, cb, "window {w}: CPU and the calendar are kept");
            } else if cb.iter().all(|v| *v == 0.0) {
                blanked += 1;
            } else {
                assert_eq!(ca, cb, "window {w}, feature {k}: all steps or none");
            }
        }
    }
    // 40 windows x 19 covariates at p = 0.5.
    assert!((280..480).contains(&blanked), "{blanked} of 760 blanked");
}

#[test]
fn rng_is_deterministic() {
    let mut a = SplitMix64::new(1);
    let mut b = SplitMix64::new(1);
    assert_eq!(a.next_u64(), b.next_u64());
    assert!(
        (0..1000)
            .map(|_| a.next_f32())
            .all(|x| (0.0..1.0).contains(&x))
    );
}

#[test]
fn every_tft_weight_gets_a_gradient() {
    let mut cfg = crate::forecast::tft::TftConfig::standard(5);
    cfg.hidden = 8;
    cfg.hidden_continuous = 2;
    cfg.heads = 2;
    cfg.horizon = 3;
    let arch = Architecture::Tft(cfg);
    let norms = gradient_norms(&arch, 8, 3).unwrap();
    assert!(norms.len() > 200, "{} weights", norms.len());
    for (name, g) in &norms {
        assert!(*g > 0.0 && g.is_finite(), "{name} got gradient {g}");
    }
}

/// With window inputs the loss weight turns a window's unit into its
/// series' scale (clipped); with global inputs the series weight stands.
#[test]
fn window_weight_puts_window_errors_in_series_units() {
    let series = |scale| Prepared {
        x: Vec::new(),
        y_norm: Vec::new(),
        y_raw: Vec::new(),
        scale,
    };
    let global = NormStats::identity();
    let window = NormStats {
        per_window: true,
        ..NormStats::identity()
    };
    assert_eq!(window_weight(&series(Some(2.0)), 0.7, 1.0, &global), 0.7);
    assert_eq!(window_weight(&series(Some(2.0)), 0.7, 1.0, &window), 0.5);
    // A flat window (tiny unit) and a wild one are clipped.
    assert_eq!(window_weight(&series(Some(2.0)), 0.7, 1e-4, &window), 0.05);
    assert_eq!(window_weight(&series(Some(2.0)), 0.7, 1e3, &window), 20.0);
    // A series with no scale (constant train segment) weighs 1.
    assert_eq!(window_weight(&series(None), 0.7, 3.0, &window), 1.0);
}
