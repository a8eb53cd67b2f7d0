//! Calls-per-second caps, split between workers so that none shares a counter.
//!
//! A group's cap `C` over `W` workers gives each worker `C / W` calls per
//! second, and the remainder `C % W` goes one call each to `C % W` workers,
//! rotating second by second. In every second the shares add up to exactly
//! `C`, so the workers together never admit more than the cap in any
//! one-second window of the shared clock, and over time each worker gets the
//! same share. The clock is passed in (sans-IO): all workers must count from
//! the same epoch so their seconds line up.
//!
//! The split is static: a worker that sees more than its share of a group's
//! calls answers 503 while another has room. That is the price of having no
//! shared counter.

use std::time::Duration;

use crate::table::{GroupId, RouteTable};

/// The answer to "may this call start now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the cap (or the group has none).
    Admitted,
    /// Over the cap: answer 503 with this Retry-After.
    OverCap {
        /// What Retry-After should say.
        retry_after: Duration,
    },
}

/// One worker's share of `cap` in second `second`.
pub fn share(cap: u32, worker: usize, workers: usize, second: u64) -> u32 {
    let workers = workers.max(1);
    let base = cap / workers as u32;
    let remainder = (cap % workers as u32) as usize;
    // Workers `second % W`, `second % W + 1`, ... (wrapping) get one more.
    let offset = (worker + workers - (second % workers as u64) as usize) % workers;
    base + u32::from(offset < remainder)
}

/// One group's counter on one worker: the second being counted and how many
/// calls it admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    second: u64,
    admitted: u32,
}

/// A worker's counters for every group of one table. Owned by that worker
/// alone; [`CpsShares::admit`] never allocates.
#[derive(Debug, Clone)]
pub struct CpsShares {
    worker: usize,
    workers: usize,
    caps: Vec<Option<u32>>,
    retry_after: Vec<Duration>,
    windows: Vec<Window>,
}

impl CpsShares {
    /// Counters for worker `worker` of `workers`, for the groups of `table`.
    pub fn new(table: &RouteTable, worker: usize, workers: usize) -> CpsShares {
        assert!(worker < workers, "worker {worker} of {workers}");
        CpsShares {
            worker,
            workers,
            caps: table.groups().iter().map(|g| g.cps_cap).collect(),
            retry_after: table.groups().iter().map(|g| g.retry_after).collect(),
            windows: vec![Window::default(); table.groups().len()],
        }
    }

    /// Admits or refuses one new call to `group` at time `now` (since the
    /// workers' shared epoch). Call it for requests that start a call
    /// (initial INVITEs), not for ACK, BYE or in-dialog requests.
    #[inline]
    pub fn admit(&mut self, group: GroupId, now: Duration) -> Admission {
        let g = group.0 as usize;
        let Some(cap) = self.caps.get(g).copied().flatten() else {
            return Admission::Admitted;
        };
        let second = now.as_secs();
        let w = &mut self.windows[g];
        if w.second != second {
            *w = Window {
                second,
                admitted: 0,
            };
        }
        if w.admitted < share(cap, self.worker, self.workers, second) {
            w.admitted += 1;
            Admission::Admitted
        } else {
            Admission::OverCap {
                retry_after: self.retry_after[g],
            }
        }
    }

    /// Carries the counters of groups that survive a reload, so a reload in
    /// the middle of a second does not hand out that second's share again.
    /// `previous[new]` is the old index of each new group, if it existed.
    pub fn carry_over(&mut self, old: &CpsShares, previous: &[Option<GroupId>]) {
        for (w, prev) in self.windows.iter_mut().zip(previous) {
            if let Some(window) = prev.and_then(|p| old.windows.get(p.0 as usize)) {
                *w = *window;
            }
        }
    }

    /// This worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_one_second_add_up_to_the_cap() {
        for cap in [0, 1, 3, 7, 100, 1001] {
            for workers in 1..=9 {
                for second in 0..20 {
                    let sum: u32 = (0..workers).map(|w| share(cap, w, workers, second)).sum();
                    assert_eq!(sum, cap, "cap {cap} workers {workers} second {second}");
                }
            }
        }
    }

    #[test]
    fn the_remainder_rotates_between_workers() {
        // A cap of 1 over 4 workers: each worker gets the call one second in four.
        let got: Vec<u32> = (0..4).map(|s| share(1, 2, 4, s)).collect();
        assert_eq!(got.iter().sum::<u32>(), 1);
        let total: u32 = (0..400).map(|s| share(1, 2, 4, s)).sum();
        assert_eq!(total, 100);
    }
}
