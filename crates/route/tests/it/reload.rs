//! Hot reload under load: worker threads route continuously while the
//! control thread installs many versions (and is refused some); every answer
//! comes whole from one version, none fails, and a refused reload changes
//! nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use route::health::HealthSettings;
use route::synth;
use route::trie::{PrefixKey, PrefixTrie};
use route::{Action, GroupId, RouteControl, RouteGroup, RouteTable, Target};

const GROUPS: u32 = 8;
const PREFIXES: usize = 3000;
const WORKERS: usize = 3;
const RELOADS: u64 = 60;
/// Present only in even versions, so an answer also shows whether the
/// version's prefix set was used whole.
const EVEN_ONLY: &str = "8888";

/// Version `v` maps prefix `i` to group `(i + v) % GROUPS`.
fn table_for(version: u64, prefixes: &[(String, usize)]) -> RouteTable {
    let groups = (0..GROUPS)
        .map(|g| {
            RouteGroup::new(format!("g{g}"), Action::Forward).with_target(Target::new(
                format!("198.18.0.{}:5060", g + 1).parse().unwrap(),
                1,
                1,
            ))
        })
        .collect();
    let mut entries: Vec<(PrefixKey, GroupId)> = prefixes
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            let g = ((i as u64 + version) % u64::from(GROUPS)) as u32;
            (PrefixKey::from_digits(p.as_bytes()).unwrap(), GroupId(g))
        })
        .collect();
    if version.is_multiple_of(2) {
        entries.push((
            PrefixKey::from_digits(EVEN_ONLY.as_bytes()).unwrap(),
            GroupId(7),
        ));
    }
    RouteTable::build(groups, &entries, HealthSettings::default()).unwrap()
}

/// A test number and what it should match: the index of its longest prefix
/// among the shared ones, or the even-only prefix.
#[derive(Clone)]
struct Probe {
    number: String,
    prefix: Option<usize>,
    even_only: bool,
}

fn expected(version: u64, p: &Probe) -> Option<GroupId> {
    if p.even_only {
        return version.is_multiple_of(2).then_some(GroupId(7));
    }
    p.prefix
        .map(|i| GroupId(((i as u64 + version) % u64::from(GROUPS)) as u32))
}

#[test]
fn lookups_during_many_reloads_answer_from_one_version_each() {
    let prefixes = synth::prefixes(41, PREFIXES, 1);
    // The reference matcher: which shared prefix (by index) each number hits.
    let keyed: Vec<_> = prefixes
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (PrefixKey::from_digits(p.as_bytes()).unwrap(), i as u32))
        .collect();
    let reference = PrefixTrie::build(&keyed).unwrap();
    let mut probes: Vec<Probe> = synth::numbers(42, 2000, &prefixes, 70)
        .into_iter()
        .map(|number| Probe {
            prefix: reference
                .lookup(number.as_bytes())
                .map(|m| m.value as usize),
            number,
            even_only: false,
        })
        .collect();
    probes.push(Probe {
        number: format!("{EVEN_ONLY}123456"),
        prefix: None,
        even_only: true,
    });
    assert!(probes.iter().filter(|p| p.prefix.is_some()).count() > 1000);
    let probes = Arc::new(probes);

    let (mut control, workers) = RouteControl::new(table_for(1, &prefixes), WORKERS);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            let probes = Arc::clone(&probes);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let (mut lookups, mut wrong, mut versions_seen, mut last) =
                    (0u64, 0u64, 1u64, 1u64);
                let started = Instant::now();
                // Until told to stop, and at least until the last version
                // arrived (bounded, so a bug cannot hang the test).
                while !(stop.load(Ordering::Acquire) && w.version() == RELOADS + 1)
                    && started.elapsed() < Duration::from_secs(120)
                {
                    w.poll();
                    for batch in probes.chunks(64) {
                        let version = w.version();
                        if version != last {
                            assert!(version > last, "versions only go forward");
                            versions_seen += 1;
                            last = version;
                        }
                        for p in batch {
                            let got = w.lookup(p.number.as_bytes()).map(|m| m.group);
                            lookups += 1;
                            if got != expected(version, p) {
                                wrong += 1;
                            }
                        }
                    }
                }
                (w.version(), lookups, wrong, versions_seen)
            })
        })
        .collect();

    let bad_groups = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad_groups.path(),
        "[[group]]\nname = \"g0\"\naction = \"forward\"\n",
    )
    .unwrap();
    let good_prefixes = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(good_prefixes.path(), "49,g0\n").unwrap();
    let mut freed = 0;
    let mut refused = 0;
    for version in 2..=RELOADS + 1 {
        if version.is_multiple_of(10) {
            let before = control.version();
            assert!(control
                .reload_files(bad_groups.path(), good_prefixes.path())
                .is_err());
            assert_eq!(
                control.version(),
                before,
                "a refused reload keeps the version"
            );
            refused += 1;
        }
        assert_eq!(control.install(table_for(version, &prefixes)), version);
        freed += control.pump();
        thread::sleep(Duration::from_millis(2));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !control.settled() && Instant::now() < deadline {
        freed += control.pump();
        thread::sleep(Duration::from_millis(1));
    }
    assert!(control.settled(), "every worker reached the last version");
    stop.store(true, Ordering::Release);
    for h in handles {
        let (version, lookups, wrong, versions_seen) = h.join().unwrap();
        assert_eq!(version, RELOADS + 1);
        assert_eq!(wrong, 0, "answers that matched no single version");
        assert!(lookups > 0);
        assert!(versions_seen >= 2, "the worker swapped while routing");
    }
    assert_eq!(refused, 6);
    // Every copy a worker swapped out came back to be freed here; reloads a
    // worker skipped (collapsed into a newer one) were freed by install.
    assert!(freed >= WORKERS, "freed {freed}");
}

#[test]
fn a_worker_that_never_polls_costs_a_bounded_number_of_copies() {
    let prefixes = synth::prefixes(5, 100, 1);
    let (mut control, mut workers) = RouteControl::new(table_for(1, &prefixes), 1);
    for v in 2..=50 {
        control.install(table_for(v, &prefixes));
    }
    // One table in the ring, one waiting: the other 47 were dropped by install.
    let w = &mut workers[0];
    assert_eq!(w.poll().swapped_to, Some(2));
    control.pump();
    assert_eq!(w.poll().swapped_to, Some(50));
    control.pump();
    assert!(control.settled());
    assert_eq!(w.lookup(b"88881").map(|m| m.group), Some(GroupId(7)));
}
