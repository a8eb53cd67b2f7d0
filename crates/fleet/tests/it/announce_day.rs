//! The announcement state machine as the control thread drives it: a tick
//! every few milliseconds, health that changes now and then.

use fleet::{Announcer, Change, Health, HoldDown, Problem};

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// Ticks every 5 ms from `from` to `to` with `health`, collecting changes.
fn run(a: &mut Announcer, health: Health, from: u64, to: u64, out: &mut Vec<(u64, Change)>) {
    let mut t = from;
    while t < to {
        if let Some(c) = a.update(&health, t) {
            out.push((t, c));
        }
        t += 5 * MS;
    }
}

#[test]
fn an_edge_whose_upstream_flaps_every_few_seconds_settles_withdrawn_until_it_is_stable() {
    let mut a = Announcer::new(HoldDown {
        base_ns: 2 * S,
        max_ns: 30 * S,
    });
    let down = Health {
        upstream_reachable: false,
        ..Health::HEALTHY
    };
    let mut changes = Vec::new();
    let mut t = 0;
    // The upstream answers for 3 s, then not for 1 s, twenty times.
    for _ in 0..20 {
        run(&mut a, Health::HEALTHY, t, t + 3 * S, &mut changes);
        run(&mut a, down, t + 3 * S, t + 4 * S, &mut changes);
        t += 4 * S;
    }
    let announces = changes
        .iter()
        .filter(|(_, c)| matches!(c, Change::Announce { .. }))
        .count();
    // Without the growing hold-down it would announce 20 times; with it,
    // the hold-down soon outgrows the 3 s of health.
    assert!(announces <= 2, "{changes:?}");
    assert_eq!(a.withdrawn(), Some(Problem::NoUpstream));
    // Stable again: it announces after the hold-down it earned.
    let before = changes.len();
    run(&mut a, Health::HEALTHY, t, t + 31 * S, &mut changes);
    assert!(
        matches!(changes[before..], [(_, Change::Announce { held_ns })] if held_ns >= 3 * S),
        "{:?}",
        &changes[before..]
    );
}
