//! Sums that make the EVAL.md scores of a set of forecast points, and a
//! ring of time buckets holding them, so a rolling window (the last day,
//! the last week) is a sum over a bounded number of buckets.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Sums over scored points: enough for WQL, MAE and coverage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Pinball loss of p10, p50, p90.
    pub pinball: [f64; 3],
    pub abs_err: f64,
    pub covered: f64,
    pub points: f64,
    pub abs_y: f64,
}

fn pinball(q: f64, y: f64, f: f64) -> f64 {
    let d = y - f;
    (q * d).max((q - 1.0) * d)
}

impl Tally {
    /// One point: the actual `y` against p10, p50, p90.
    pub fn point(y: f32, q: [f32; 3]) -> Self {
        let (y, f) = (f64::from(y), q.map(f64::from));
        Self {
            pinball: [
                pinball(0.1, y, f[0]),
                pinball(0.5, y, f[1]),
                pinball(0.9, y, f[2]),
            ],
            abs_err: (y - f[1]).abs(),
            covered: f64::from(u8::from(f[0] <= y && y <= f[2])),
            points: 1.0,
            abs_y: y.abs(),
        }
    }

    pub fn add(&mut self, o: &Self) {
        for (a, b) in self.pinball.iter_mut().zip(o.pinball) {
            *a += b;
        }
        self.abs_err += o.abs_err;
        self.covered += o.covered;
        self.points += o.points;
        self.abs_y += o.abs_y;
    }

    /// Weighted quantile loss: the mean over the three quantiles of
    /// 2 * sum(pinball) / sum(|y|), as EVAL.md defines it. `None` without
    /// points.
    pub fn wql(&self) -> Option<f64> {
        (self.points > 0.0).then(|| {
            2.0 * self.pinball.iter().sum::<f64>() / 3.0 / self.abs_y.max(f64::MIN_POSITIVE)
        })
    }

    pub fn mae(&self) -> Option<f64> {
        (self.points > 0.0).then(|| self.abs_err / self.points)
    }

    /// Share of points inside p10-p90.
    pub fn coverage(&self) -> Option<f64> {
        (self.points > 0.0).then(|| self.covered / self.points)
    }
}

/// Something a bucket can hold.
pub trait Merge: Clone {
    fn merge(&mut self, o: &Self);
}

impl Merge for Tally {
    fn merge(&mut self, o: &Self) {
        self.add(o);
    }
}

impl Merge for Vec<Tally> {
    fn merge(&mut self, o: &Self) {
        if self.len() < o.len() {
            self.resize(o.len(), Tally::default());
        }
        for (a, b) in self.iter_mut().zip(o) {
            a.add(b);
        }
    }
}

/// The last `len` buckets of `width` seconds (by the time of the scored
/// point), oldest first; older buckets fall off as newer ones open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ring<T> {
    width: i64,
    len: usize,
    buckets: VecDeque<(i64, T)>,
}

impl<T> Ring<T> {
    /// The buckets' contents, oldest first.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.buckets.iter().map(|(_, v)| v)
    }
}

impl<T: Merge> Ring<T> {
    pub fn new(width: i64, len: usize) -> Self {
        Self {
            width: width.max(1),
            len: len.max(1),
            buckets: VecDeque::new(),
        }
    }

    /// Add `v` at time `ts`. A point older than the ring is dropped.
    pub fn add(&mut self, ts: i64, v: &T) {
        let b = ts.div_euclid(self.width);
        let newest = self.buckets.back().map_or(b, |(n, _)| (*n).max(b));
        if b <= newest - self.len as i64 {
            return;
        }
        match self.buckets.iter().position(|(k, _)| *k >= b) {
            Some(i) if self.buckets[i].0 == b => self.buckets[i].1.merge(v),
            Some(i) => self.buckets.insert(i, (b, v.clone())),
            None => self.buckets.push_back((b, v.clone())),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(k, _)| *k <= newest - self.len as i64)
        {
            self.buckets.pop_front();
        }
    }

    /// The sum of the buckets within `span` seconds up to `now`
    /// (inclusive of `now`'s bucket), and how many of them hold points.
    pub fn window(&self, now: i64, span: i64, zero: T) -> (T, usize) {
        let last = now.div_euclid(self.width);
        let first = last - span.div_euclid(self.width) + 1;
        let mut acc = zero;
        let mut n = 0;
        for (_, v) in self
            .buckets
            .iter()
            .filter(|(k, _)| (first..=last).contains(k))
        {
            acc.merge(v);
            n += 1;
        }
        (acc, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_scores_match_their_definitions() {
        let mut t = Tally::point(10.0, [8.0, 9.0, 12.0]);
        t.add(&Tally::point(20.0, [21.0, 22.0, 23.0]));
        assert_eq!(t.points, 2.0);
        assert_eq!(t.mae(), Some(1.5));
        assert_eq!(t.coverage(), Some(0.5));
        // Pinball: p10 0.2 + 0.9, p50 0.5 + 1.0, p90 0.2 + 0.3.
        let wql = 2.0 * (1.1 + 1.5 + 0.5) / 3.0 / 30.0;
        assert!((t.wql().unwrap() - wql).abs() < 1e-12);
        assert_eq!(Tally::default().wql(), None);
    }

    #[test]
    fn ring_keeps_the_last_buckets_and_sums_a_window() {
        let mut r: Ring<Tally> = Ring::new(3600, 24);
        let one = Tally::point(1.0, [1.0, 1.0, 1.0]);
        for hour in 0..30 {
            r.add(hour * 3600 + 10, &one);
            r.add(hour * 3600 + 20, &one);
        }
        assert_eq!(r.buckets.len(), 24);
        let (t, n) = r.window(29 * 3600, 6 * 3600, Tally::default());
        assert_eq!((t.points, n), (12.0, 6));
        // Too old to keep; a late point within the ring still counts.
        r.add(0, &one);
        r.add(20 * 3600, &one);
        let (t, n) = r.window(29 * 3600, 24 * 3600, Tally::default());
        assert_eq!((t.points, n), (49.0, 24));
        // A window ending before the data holds nothing.
        assert_eq!(r.window(-3600, 3600, Tally::default()).1, 0);
    }

    #[test]
    fn per_step_tallies_merge_by_step() {
        let mut r: Ring<Vec<Tally>> = Ring::new(86_400, 7);
        let mut v = vec![Tally::default(); 3];
        v[2] = Tally::point(5.0, [4.0, 5.0, 6.0]);
        r.add(0, &v);
        r.add(100, &v);
        let (t, _) = r.window(100, 86_400, Vec::new());
        assert_eq!(t.len(), 3);
        assert_eq!(t[2].points, 2.0);
        assert_eq!(t[0].points, 0.0);
    }
}
