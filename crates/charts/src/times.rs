//! The rows' times, shared by a registry's charts: whole seconds (as Netdata stores them),
//! held as runs a fixed step apart. A registry's rows come every `update_every` seconds, so
//! an hour of them is one run of a few words, where one number per row was 32 KB in each of
//! a thousand namespaces.

use std::collections::VecDeque;

/// `count` rows from `start`, `step` seconds apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Run {
    start: f64,
    step: f64,
    count: u32,
}

impl Run {
    fn at(&self, k: u32) -> f64 {
        self.start + self.step * f64::from(k)
    }
}

/// Adds time `t` after the last run's rows.
fn extend(runs: &mut VecDeque<Run>, t: f64) {
    match runs.back_mut() {
        Some(r) if r.count == 1 && t >= r.start => {
            r.step = t - r.start;
            r.count = 2;
        }
        Some(r) if r.at(r.count) == t && r.count < u32::MAX => r.count += 1,
        _ => runs.push_back(Run { start: t, step: 0.0, count: 1 }),
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Times {
    Runs {
        runs: VecDeque<Run>,
        len: usize,
    },
    /// One time per row: where rows come so irregularly that runs would cost more.
    // Boxed: the enum is as small as its runs form, which nearly every registry has.
    #[allow(clippy::box_collection)]
    Flat(Box<VecDeque<f64>>),
}

impl Default for Times {
    fn default() -> Self {
        Times::Runs { runs: VecDeque::new(), len: 0 }
    }
}

impl Times {
    pub(crate) fn len(&self) -> usize {
        match self {
            Times::Runs { len, .. } => *len,
            Times::Flat(v) => v.len(),
        }
    }

    /// Adds the newest row's time (its Unix time, to the whole second).
    pub(crate) fn push_back(&mut self, t: f64) {
        let t = t.floor();
        match self {
            Times::Runs { runs, len } => {
                *len += 1;
                extend(runs, t);
                // A run costs three rows' worth: where they average under three rows, one
                // time per row is cheaper.
                if runs.len() > 8 && runs.len() * 3 > *len {
                    let flat: VecDeque<f64> = self.iter().collect();
                    *self = Times::Flat(Box::new(flat));
                }
            }
            Times::Flat(v) => {
                let before = v.back().copied().unwrap_or(t);
                v.push_back(t);
                // Runs again once the irregular rows have left the history: looked at each
                // time the clock passes a multiple of 256 s (a pass over the rows).
                if (before / 256.0).floor() != (t / 256.0).floor() {
                    let mut runs = VecDeque::new();
                    for t in v.iter() {
                        extend(&mut runs, *t);
                    }
                    if runs.len() * 6 <= v.len() {
                        *self = Times::Runs { len: v.len(), runs };
                    }
                }
            }
        }
    }

    pub(crate) fn pop_front(&mut self) {
        match self {
            Times::Runs { runs, len } => {
                let Some(r) = runs.front_mut() else { return };
                *len -= 1;
                r.start += r.step;
                r.count -= 1;
                if r.count == 0 {
                    runs.pop_front();
                }
            }
            Times::Flat(v) => {
                v.pop_front();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn back(&self) -> Option<f64> {
        match self {
            Times::Runs { runs, .. } => runs.back().map(|r| r.at(r.count - 1)),
            Times::Flat(v) => v.back().copied(),
        }
    }

    /// Every row's time, oldest first.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter { times: self, front: (0, 0), back: self.back_position(), left: self.len() }
    }

    /// The rows from `skip` on.
    pub(crate) fn iter_from(&self, skip: usize) -> Iter<'_> {
        let mut it = self.iter();
        match self {
            Times::Flat(_) => {
                it.front = (skip, 0);
                it.left -= skip.min(it.left);
            }
            Times::Runs { runs, .. } => {
                let mut skip = skip.min(it.left);
                it.left -= skip;
                for (i, r) in runs.iter().enumerate() {
                    if (skip as u64) < u64::from(r.count) {
                        it.front = (i, skip as u32);
                        break;
                    }
                    skip -= r.count as usize;
                    it.front = (i + 1, 0);
                }
            }
        }
        it
    }

    /// The position (run, row within it; or row, 0) of the newest row.
    fn back_position(&self) -> (usize, u32) {
        match self {
            Times::Runs { runs, .. } => match runs.back() {
                Some(r) => (runs.len() - 1, r.count - 1),
                None => (0, 0),
            },
            Times::Flat(v) => (v.len().saturating_sub(1), 0),
        }
    }
}

/// [`Times::iter`]: double-ended and exact, as a deque's iterator is.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    times: &'a Times,
    front: (usize, u32),
    back: (usize, u32),
    left: usize,
}

impl Iter<'_> {
    fn get(&self, (i, k): (usize, u32)) -> f64 {
        match self.times {
            Times::Runs { runs, .. } => runs[i].at(k),
            Times::Flat(v) => v[i],
        }
    }
}

impl Iterator for Iter<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        if self.left == 0 {
            return None;
        }
        let t = self.get(self.front);
        self.left -= 1;
        self.front = match self.times {
            Times::Runs { runs, .. } if self.front.1 + 1 < runs[self.front.0].count => {
                (self.front.0, self.front.1 + 1)
            }
            _ => (self.front.0 + 1, 0),
        };
        Some(t)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<f64> {
        if self.left == 0 {
            return None;
        }
        let t = self.get(self.back);
        self.left -= 1;
        self.back = match (self.times, self.back) {
            (_, (i, k)) if k > 0 => (i, k - 1),
            (Times::Runs { runs, .. }, (i, 0)) if i > 0 => (i - 1, runs[i - 1].count - 1),
            (Times::Flat(_), (i, 0)) if i > 0 => (i - 1, 0),
            _ => (0, 0),
        };
        Some(t)
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the rows' rhythm, the runs read back what one time per row would.
    #[test]
    fn runs_read_back_every_time() {
        let keep = 40;
        let mut times = Times::default();
        let mut plain: VecDeque<f64> = VecDeque::new();
        let mut t = 1_800_000_000.0;
        for i in 0..400u32 {
            // Regular, then a late tick, a burst of irregular ones, a repeated second, regular.
            t += match i {
                0..=99 => 1.0,
                100 => 3.0,
                101..=180 => f64::from(i % 3 + 1),
                181 => 0.0,
                _ => 1.0,
            } + 0.25;
            times.push_back(t);
            plain.push_back(t.floor());
            while plain.len() > keep {
                plain.pop_front();
                times.pop_front();
            }
            assert_eq!(times.len(), plain.len());
            assert_eq!(
                times.iter().collect::<Vec<_>>(),
                plain.iter().copied().collect::<Vec<_>>(),
                "row {i}"
            );
            assert_eq!(
                times.iter().rev().collect::<Vec<_>>(),
                plain.iter().rev().copied().collect::<Vec<_>>()
            );
            assert_eq!(times.back(), plain.back().copied());
            for skip in [0, 1, 5, plain.len() / 2, plain.len()] {
                let want: Vec<f64> = plain.iter().skip(skip).copied().collect();
                assert_eq!(times.iter_from(skip).collect::<Vec<_>>(), want, "row {i}, from {skip}");
                assert_eq!(times.iter_from(skip).len(), want.len());
                assert_eq!(times.iter_from(skip).next_back(), want.last().copied());
            }
        }
    }

    #[test]
    fn a_burst_of_irregular_rows_is_held_flat_until_it_leaves() {
        let mut times = Times::default();
        let mut t = 1_800_000_000.0;
        for i in 0..2000u32 {
            t += if (100..400).contains(&i) { f64::from(i % 3 + 1) } else { 1.0 };
            times.push_back(t);
            if times.len() > 600 {
                times.pop_front();
            }
            if i == 450 {
                assert!(matches!(times, Times::Flat(_)), "{times:?}");
            }
        }
        assert!(matches!(&times, Times::Runs { runs, .. } if runs.len() == 1), "{times:?}");
    }

    #[test]
    fn an_hour_of_regular_rows_is_one_run() {
        let mut times = Times::default();
        for i in 0..3600 {
            times.push_back(1_800_000_000.0 + f64::from(i) + 0.003);
        }
        assert!(matches!(&times, Times::Runs { runs, len: 3600 } if runs.len() == 1));
    }
}
