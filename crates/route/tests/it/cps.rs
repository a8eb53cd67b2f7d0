//! The CPS cap split between workers: several worker threads hammering one
//! capped group at once admit, together, exactly the cap in every second of
//! the shared clock, also across a reload in the middle of a second.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use route::health::HealthSettings;
use route::trie::PrefixKey;
use route::{Action, Admission, Decision, GroupId, RouteControl, RouteGroup, RouteTable};

const WORKERS: usize = 4;
const SECONDS: u64 = 6;

fn capped(cap: u32, retry_after: u64) -> RouteTable {
    let mut g = RouteGroup::new("capped", Action::Reject { code: 404 }).with_cps_cap(cap);
    g.retry_after = Duration::from_secs(retry_after);
    RouteTable::build(
        vec![g, RouteGroup::new("free", Action::Reject { code: 404 })],
        &[
            (PrefixKey::from_digits(b"1").unwrap(), GroupId(0)),
            (PrefixKey::from_digits(b"2").unwrap(), GroupId(1)),
        ],
        HealthSettings::default(),
    )
    .unwrap()
}

/// Each worker thread offers 20 calls per simulated millisecond for
/// `SECONDS` seconds (far above any share) and counts what it admitted in
/// each second. Halfway through the third second the control installs a new
/// version of the same group; each worker swaps when its clock gets there.
fn hammer(cap: u32) -> Vec<u32> {
    let (mut control, workers) = RouteControl::new(capped(cap, 3), WORKERS);
    control.install(capped(cap, 3));
    let start = Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut per_second = vec![0u32; SECONDS as usize];
                start.wait();
                for ms in 0..SECONDS * 1000 {
                    if ms == 2500 {
                        assert_eq!(w.poll().swapped_to, Some(2));
                    }
                    let now = Duration::from_millis(ms);
                    for _ in 0..20 {
                        match w.route_call(b"1555", b"call", now) {
                            Decision::Reject { code: 404, .. } => {
                                per_second[(ms / 1000) as usize] += 1
                            }
                            Decision::OverCap { retry_after, .. } => {
                                assert_eq!(retry_after, Duration::from_secs(3))
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
                per_second
            })
        })
        .collect();
    let mut total = vec![0u32; SECONDS as usize];
    for h in handles {
        for (t, n) in total.iter_mut().zip(h.join().unwrap()) {
            *t += n;
        }
    }
    total
}

#[test]
fn workers_together_admit_exactly_the_cap_each_second() {
    assert_eq!(hammer(1000), vec![1000; SECONDS as usize]);
}

#[test]
fn a_cap_that_does_not_divide_evenly_still_adds_up() {
    assert_eq!(hammer(7), vec![7; SECONDS as usize]);
}

#[test]
fn a_cap_smaller_than_the_worker_count_is_shared_over_time() {
    assert_eq!(hammer(3), vec![3; SECONDS as usize]);
}

#[test]
fn a_group_without_a_cap_admits_everything() {
    let (_control, mut workers) = RouteControl::new(capped(1, 1), 2);
    for _ in 0..10_000 {
        assert_eq!(
            workers[1].admit(GroupId(1), Duration::from_millis(7)),
            Admission::Admitted
        );
    }
}
