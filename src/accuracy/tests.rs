use super::*;

const STEP: i64 = 300;
const H: usize = 12;

/// A forecast of `h` steps, all at `v`, with a band of +-`w`.
fn flat(v: f32, w: f32) -> QuantileForecast {
    QuantileForecast {
        p10: vec![v - w; H],
        p50: vec![v; H],
        p90: vec![v + w; H],
    }
}

/// A candidate: history so far -> forecast.
type Model<'a> = &'a dyn Fn(&[f32]) -> QuantileForecast;

/// Replay `y` (one value per step from time 0) through a ledger: at every
/// `every`-th step, observe what is new, choose, and record each
/// candidate's forecast from `models` (given the history so far).
fn replay(ledger: &mut GroupLedger, y: &[f32], every: usize, models: &[Model]) -> Vec<String> {
    let mut served = Vec::new();
    let mut seen = 0;
    for t in (1..y.len()).step_by(every) {
        for (i, v) in y.iter().enumerate().take(t).skip(seen) {
            ledger.observe(i as i64 * STEP, *v);
        }
        seen = t;
        let now = (t as i64 - 1) * STEP;
        ledger.choose(now);
        let fcs = models.iter().map(|m| Some(m(&y[..t]))).collect();
        let (i, _) = ledger.record(t as i64 * STEP, STEP, fcs).unwrap();
        served.push(ledger.models[i].name.clone());
    }
    served
}

/// A slow wave between 20 and 60.
fn wave(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 40.0 + 20.0 * (i as f32 * 0.01).sin())
        .collect()
}

#[test]
fn a_biased_default_gives_way_to_naive_once_and_for_good() {
    let y = wave(288 * 2);
    let mut l = GroupLedger::new(&["biased", "naive"], H, LedgerConfig::default());
    let biased = |h: &[f32]| flat(h[h.len() - 1] + 10.0, 2.0);
    let naive = |h: &[f32]| flat(h[h.len() - 1], 2.0);
    let served = replay(&mut l, &y, 1, &[&biased, &naive]);
    // The default serves until 6 clock hours hold scored points: the
    // first point falls in hour 0, so the sixth hour begins after 5 hours
    // (60 steps).
    assert!(served[..60].iter().all(|s| s == "biased"));
    let first_naive = served.iter().position(|s| s == "naive").unwrap();
    assert!(
        (60..75).contains(&first_naive),
        "switched at step {first_naive}"
    );
    assert!(served[first_naive..].iter().all(|s| s == "naive"));
    assert_eq!(l.switches, 1);
    // The switch has stood its 6 hours: naive serves as the best.
    assert_eq!(l.reason, Reason::Best);
    let s = l.last_switch.as_ref().unwrap();
    assert_eq!((s.from.as_str(), s.to.as_str()), ("biased", "naive"));
    assert_eq!(s.at, (first_naive as i64) * STEP);
    assert!(s.to_wql < s.from_wql * 0.95);
    assert!(!l.degraded(y.len() as i64 * STEP));
}

#[test]
fn without_evidence_the_default_serves() {
    let y = wave(40);
    let mut l = GroupLedger::new(&["biased", "naive"], H, LedgerConfig::default());
    let biased = |h: &[f32]| flat(h[h.len() - 1] + 10.0, 2.0);
    let naive = |h: &[f32]| flat(h[h.len() - 1], 2.0);
    let served = replay(&mut l, &y, 1, &[&biased, &naive]);
    assert!(served.iter().all(|s| s == "biased"));
    assert_eq!(l.reason, Reason::NoEvidence);
    // Two scored hours are not enough evidence.
    assert_eq!(l.recent_wql(39 * STEP), vec![None, None]);
}

#[test]
fn close_scores_do_not_flap() {
    // Two models a hair apart, taking turns at being better: the margin
    // keeps the default.
    let y = wave(288 * 2);
    let mut l = GroupLedger::new(&["a", "b"], H, LedgerConfig::default());
    let a = |h: &[f32]| flat(h[h.len() - 1] + 0.1 * (h.len() as f32 * 0.05).sin(), 2.0);
    let b = |h: &[f32]| flat(h[h.len() - 1] - 0.1 * (h.len() as f32 * 0.05).sin(), 2.0);
    let served = replay(&mut l, &y, 1, &[&a, &b]);
    assert!(served.iter().all(|s| s == "a"));
    assert_eq!(l.switches, 0);
    assert_eq!(l.reason, Reason::Best);
}

#[test]
fn a_switch_stands_for_the_dwell_time() {
    // b is better for the first 9 hours, then a is: the ledger moves to b
    // after 6 hours, and back to a only once b's choice has stood 6 hours
    // and a's last-day score is ahead by the margin.
    let y = wave(288 * 3);
    let mut l = GroupLedger::new(&["a", "b"], H, LedgerConfig::default());
    let turn = 108;
    let a = move |h: &[f32]| flat(h[h.len() - 1] + if h.len() < turn { 8.0 } else { 0.0 }, 2.0);
    let b = move |h: &[f32]| flat(h[h.len() - 1] + if h.len() < turn { 0.0 } else { 8.0 }, 2.0);
    let served = replay(&mut l, &y, 1, &[&a, &b]);
    let to_b = served.iter().position(|s| s == "b").unwrap();
    let back = to_b + served[to_b..].iter().position(|s| s == "a").unwrap();
    assert!(
        back - to_b >= 72,
        "switched back after {} steps",
        back - to_b
    );
    assert_eq!(l.switches, 2);
    assert_eq!(l.served_name(), "a");
}

#[test]
fn served_worse_than_naive_is_degraded() {
    let y = wave(288);
    // Only the biased model and naive, with a margin no challenger can
    // beat: the biased model keeps serving and is degraded.
    let config = LedgerConfig {
        margin: 1.0,
        ..LedgerConfig::default()
    };
    let mut l = GroupLedger::new(&["biased", "naive"], H, config);
    let biased = |h: &[f32]| flat(h[h.len() - 1] + 10.0, 2.0);
    let naive = |h: &[f32]| flat(h[h.len() - 1], 2.0);
    replay(&mut l, &y, 1, &[&biased, &naive]);
    assert_eq!(l.served_name(), "biased");
    assert!(l.degraded(287 * STEP));
}

#[test]
fn scores_per_step_and_pending_forecasts_stay_bounded() {
    let y = wave(288 * 9);
    let mut l = GroupLedger::new(&["naive"], H, LedgerConfig::default());
    let naive = |h: &[f32]| flat(h[h.len() - 1], 2.0);
    replay(&mut l, &y, 1, &[&naive]);
    let m = &l.models[0];
    // At most one forecast per step of the horizon is waiting.
    assert!(m.pending.len() <= H, "{}", m.pending.len());
    let now = (y.len() as i64 - 1) * STEP;
    let per_step = m.per_step(now, 7 * DAY);
    assert_eq!(per_step.len(), H);
    // A wave: errors grow with the horizon.
    let mae: Vec<f64> = per_step.iter().map(|t| t.mae().unwrap()).collect();
    assert!(mae.windows(2).all(|w| w[0] < w[1]), "{mae:?}");
    // The week holds at most 8 daily buckets, the day 24 hourly ones.
    let (week, _) = m.window(now, 7 * DAY);
    let (day, hours) = m.window(now, DAY);
    assert_eq!(hours, 24);
    assert!(week.points > day.points * 6.0 && week.points <= day.points * 8.0);
}

#[test]
fn a_ledger_survives_a_round_trip_through_json() {
    let y = wave(200);
    let mut l = GroupLedger::new(&["a", "naive"], H, LedgerConfig::default());
    let a = |h: &[f32]| flat(h[h.len() - 1] + 1.0, 2.0);
    let naive = |h: &[f32]| flat(h[h.len() - 1], 2.0);
    replay(&mut l, &y, 3, &[&a, &naive]);
    let json = serde_json::to_string(&l).unwrap();
    let back: GroupLedger = serde_json::from_str(&json).unwrap();
    assert_eq!(back, l);
}

#[test]
fn the_served_model_falls_back_when_it_cannot_forecast() {
    let mut l = GroupLedger::new(&["a", "b"], H, LedgerConfig::default());
    let (i, fc) = l.record(0, STEP, vec![None, Some(flat(5.0, 1.0))]).unwrap();
    assert_eq!((i, fc.p50[0]), (1, 5.0));
    assert_eq!(l.record(STEP, STEP, vec![None, None]), None);
}
