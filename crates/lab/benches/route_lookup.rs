//! Route lookup: ns per lookup at 1 thousand, 100 thousand and 1 million
//! prefixes, build time and memory per worker copy at 1 million, against a
//! plain baseline measured in the same run (a std HashMap probed from the
//! longest prefix length down).
//!
//! Run: `cargo bench -p dce-lab --bench route_lookup`
//! (`ROUTE_BENCH_QUICK=1` for a short run with fewer numbers and rounds.)
//!
//! Tables are synthetic E.164-like prefixes (`route::synth`): a
//! real country code then random digits, 4 to 12 digits in all. Numbers are
//! 10 to 13 digits, half of them extending a random prefix of the table and
//! half random (after a country code, or with a leading 0), so they hit and
//! miss all over the table and the caches. The numbers sit in one contiguous
//! buffer, as they sit in the packets a worker has just parsed. Every method
//! looks up the same numbers; the answers are checked against each other
//! before timing.
//!
//! Methods:
//! - `trie batch`: `RouteTable::lookup_batch`, 64 numbers per call (64 walks
//!   in flight, their memory accesses overlap);
//! - `trie single`: `RouteTable::lookup`, one number after another;
//! - `hashmap`: the baseline;
//! - `batch 4K pg`, `single 4K pg` (tables over 2 MiB): the same table copied
//!   onto small pages, to show what huge pages change.
//!
//! For each method, `mean` is the whole pass divided by the count of numbers,
//! and `p50`/`p99` are percentiles over blocks of 64 consecutive numbers,
//! each block timed with the monotonic clock and divided by 64. `1x1 p50/p99`
//! times single trie lookups one at a time, minus the clock's own cost. The
//! machine is shared: each figure is the median over interleaved rounds.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use config::SourceFile;
use route::files;
use route::health::HealthSettings;
use route::synth;
use route::trie::{PrefixKey, PrefixTrie};
use route::{Action, GroupId, RouteGroup, RouteMatch, RouteTable, Target};

const BLOCK: usize = 64;
const GROUPS: usize = 100;

struct Figures {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `run` over every block of `numbers`: mean, p50 and p99 in ns per number.
fn time_blocks(numbers: &[&[u8]], mut run: impl FnMut(&[&[u8]]) -> u64) -> Figures {
    let mut per_block = Vec::with_capacity(numbers.len() / BLOCK + 1);
    let mut sink = 0u64;
    let started = Instant::now();
    for block in numbers.chunks(BLOCK) {
        let t = Instant::now();
        sink = sink.wrapping_add(run(block));
        per_block.push(t.elapsed().as_nanos() as f64 / block.len() as f64);
    }
    let mean = started.elapsed().as_nanos() as f64 / numbers.len() as f64;
    black_box(sink);
    per_block.sort_by(f64::total_cmp);
    Figures {
        mean,
        p50: percentile(&per_block, 0.50),
        p99: percentile(&per_block, 0.99),
    }
}

/// Single lookups timed one by one, minus the median cost of reading the clock.
fn time_one_by_one(table: &RouteTable, numbers: &[&[u8]]) -> (f64, f64) {
    let mut clock = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let t = Instant::now();
        clock.push(t.elapsed().as_nanos() as f64);
    }
    let clock = median(clock);
    let mut each = Vec::with_capacity(numbers.len());
    for n in numbers {
        let t = Instant::now();
        black_box(table.lookup(black_box(n)));
        each.push((t.elapsed().as_nanos() as f64 - clock).max(0.0));
    }
    each.sort_by(f64::total_cmp);
    (percentile(&each, 0.50), percentile(&each, 0.99))
}

fn groups() -> Vec<RouteGroup> {
    (0..GROUPS)
        .map(|g| {
            RouteGroup::new(synth::group_name(g), Action::Forward).with_target(Target::new(
                format!("198.18.{}.{}:5060", 2 + g / 200, 1 + g % 200)
                    .parse()
                    .unwrap(),
                1,
                1,
            ))
        })
        .collect()
}

fn build(prefixes: &[(String, usize)]) -> (RouteTable, Duration) {
    let entries: Vec<(PrefixKey, GroupId)> = prefixes
        .iter()
        .map(|(p, g)| {
            (
                PrefixKey::from_digits(p.as_bytes()).unwrap(),
                GroupId(*g as u32),
            )
        })
        .collect();
    let t = Instant::now();
    let table = RouteTable::build(groups(), &entries, HealthSettings::default()).unwrap();
    (table, t.elapsed())
}

/// The baseline: every prefix in a std HashMap, probed longest length first.
struct Baseline {
    map: HashMap<Box<[u8]>, u32>,
    longest: usize,
}

impl Baseline {
    fn new(prefixes: &[(String, usize)]) -> Baseline {
        Baseline {
            map: prefixes
                .iter()
                .map(|(p, g)| (p.as_bytes().into(), *g as u32))
                .collect(),
            longest: prefixes.iter().map(|(p, _)| p.len()).max().unwrap_or(0),
        }
    }

    fn lookup(&self, number: &[u8]) -> Option<(u32, usize)> {
        (0..=self.longest.min(number.len()))
            .rev()
            .find_map(|len| self.map.get(&number[..len]).map(|&g| (g, len)))
    }

    /// Keys, values and buckets, plus each boxed key's heap block (rounded
    /// up to malloc's 16-byte minimum chunk of 32 bytes).
    fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Box<[u8]>, u32)>() + 1;
        self.map.capacity() * slot + self.map.len() * 32
    }
}

/// `lookup_batch` over `numbers`, block by block.
fn time_batch(table: &RouteTable, numbers: &[&[u8]], out: &mut [Option<RouteMatch>]) -> Figures {
    time_blocks(numbers, |block| {
        table.lookup_batch(block, &mut out[..block.len()]);
        out[..block.len()]
            .iter()
            .flatten()
            .map(|m| u64::from(m.group.0))
            .sum()
    })
}

/// `lookup` over `numbers`, one after another.
fn time_single(table: &RouteTable, numbers: &[&[u8]]) -> Figures {
    time_blocks(numbers, |block| {
        block
            .iter()
            .filter_map(|n| table.lookup(n))
            .map(|m| u64::from(m.group.0))
            .sum()
    })
}

/// How lookups walk the 1M-prefix trie: its records by kind, and how many
/// records (each a cache line) a lookup reads after the direct table.
fn walk_shapes(prefixes: &[(String, usize)], count: usize) {
    let entries: Vec<(PrefixKey, u32)> = prefixes
        .iter()
        .map(|(p, g)| (PrefixKey::from_digits(p.as_bytes()).unwrap(), *g as u32))
        .collect();
    let trie = PrefixTrie::build(&entries).expect("no duplicates");
    let layout = trie.layout();
    let mut depth = [0usize; 8];
    let mut external = 0;
    let numbers = synth::numbers(2, count, prefixes, 50);
    for n in &numbers {
        let (records, leaf) = trie.walk_shape(n.as_bytes());
        depth[records.min(7)] += 1;
        external += usize::from(leaf);
    }
    let pct = |n: usize| 100.0 * n as f64 / numbers.len() as f64;
    println!(
        "1000000 prefixes: {} bucket and {} node lines, {} singles, {} external results; \
         lines read after the direct table per lookup (a single counts as one): 0 {:.1}%, \
         1 {:.1}%, 2 {:.1}%, 3 {:.1}%, 4+ {:.1}%; plus the external results line {:.1}%",
        layout.buckets,
        layout.nodes,
        layout.singles,
        layout.external_results,
        pct(depth[0]),
        pct(depth[1]),
        pct(depth[2]),
        pct(depth[3]),
        pct(depth[4..].iter().sum()),
        pct(external),
    );
}

/// Whether the table asked for huge pages and how much of the process the
/// kernel backs with them.
fn huge_pages(table: &RouteTable) -> String {
    if !table.on_huge_pages() {
        return "no (under 2 MiB)".into();
    }
    match route::huge::process_huge_bytes() {
        Some(b) => format!("advised; process AnonHugePages {:.0} MiB", mib(b as usize)),
        None => "advised".into(),
    }
}

/// ns per load of a chain of dependent loads over the 64-byte lines of
/// `bytes` of memory on huge pages, in one random cycle: what one cache miss
/// at that working-set size costs on this machine (the floor for a walk
/// that must read a line of a table that large).
fn load_latency(bytes: usize, rng: &mut fastrand::Rng) -> f64 {
    let n = bytes / 64;
    let mut order: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut order);
    let mut lines = vec![[0u64; 8]; n];
    for w in 0..n {
        lines[order[w] as usize][0] = u64::from(order[(w + 1) % n]);
    }
    let lines = route::huge::HugeSlice::from_slice(&lines);
    let steps = 2_000_000;
    let mut at = 0usize;
    for _ in 0..n.min(steps) {
        at = lines[at][0] as usize;
    }
    let t = Instant::now();
    for _ in 0..steps {
        at = lines[at][0] as usize;
    }
    let ns = t.elapsed().as_nanos() as f64 / steps as f64;
    black_box(at);
    ns
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let quick = std::env::var_os("ROUTE_BENCH_QUICK").is_some();
    let count = if quick { 65_536 } else { 524_288 };
    let rounds = if quick { 3 } else { 5 };
    println!(
        "route_lookup: {count} numbers per pass, 10-13 digits, half built on a table prefix; \
         median of {rounds} interleaved rounds; ns per lookup"
    );
    println!(
        "{:>9}  {:<12} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "prefixes", "method", "mean", "p50", "p99", "1x1 p50", "1x1 p99"
    );
    let mut at_million = None;
    for size in [1_000usize, 100_000, 1_000_000] {
        let prefixes = synth::prefixes(1, size, GROUPS);
        let (table, _) = build(&prefixes);
        // The same table on 4 KiB pages, to show what huge pages change.
        let small = table.clone_on_small_pages();
        let baseline = Baseline::new(&prefixes);
        // One contiguous buffer, as a worker's dialed numbers sit in the
        // packets it just parsed (separate heap strings would add a cache
        // miss per number that no worker pays).
        let owned = synth::numbers(2, count, &prefixes, 50);
        let flat = owned.concat();
        let mut numbers: Vec<&[u8]> = Vec::with_capacity(owned.len());
        let mut at = 0;
        for n in &owned {
            numbers.push(&flat.as_bytes()[at..at + n.len()]);
            at += n.len();
        }

        // Same answers from every method, before anything is timed.
        let mut out = vec![None::<RouteMatch>; BLOCK];
        let mut hits = 0;
        for block in numbers.chunks(BLOCK) {
            table.lookup_batch(block, &mut out[..block.len()]);
            for (n, got) in block.iter().zip(&out) {
                let single = table.lookup(n);
                assert_eq!(*got, single);
                let base = baseline.lookup(n);
                assert_eq!(single.map(|m| (m.group.0, m.prefix_len)), base);
                hits += usize::from(single.is_some());
            }
        }

        let (mut batch, mut single, mut base, mut one) = (vec![], vec![], vec![], vec![]);
        let (mut batch_small, mut single_small) = (vec![], vec![]);
        for _ in 0..rounds {
            batch_small.push(time_batch(&small, &numbers, &mut out));
            single_small.push(time_single(&small, &numbers));
            batch.push(time_batch(&table, &numbers, &mut out));
            single.push(time_single(&table, &numbers));
            base.push(time_blocks(&numbers, |block| {
                block
                    .iter()
                    .filter_map(|n| baseline.lookup(n))
                    .map(|(g, _)| u64::from(g))
                    .sum()
            }));
            one.push(time_one_by_one(
                &table,
                &numbers[..numbers.len().min(131_072)],
            ));
        }
        let summary = |v: &[Figures]| Figures {
            mean: median(v.iter().map(|f| f.mean).collect()),
            p50: median(v.iter().map(|f| f.p50).collect()),
            p99: median(v.iter().map(|f| f.p99).collect()),
        };
        let (batch, single, base) = (summary(&batch), summary(&single), summary(&base));
        let (batch_small, single_small) = (summary(&batch_small), summary(&single_small));
        let one = (
            median(one.iter().map(|o| o.0).collect()),
            median(one.iter().map(|o| o.1).collect()),
        );
        let row = |name: &str, f: &Figures, extra: String| {
            println!(
                "{size:>9}  {name:<12} {:>8.1} {:>8.1} {:>8.1} {extra}",
                f.mean, f.p50, f.p99
            )
        };
        row("trie batch", &batch, String::new());
        row(
            "trie single",
            &single,
            format!("{:>9.1} {:>9.1}", one.0, one.1),
        );
        row("hashmap", &base, String::new());
        if table.on_huge_pages() {
            row("batch 4K pg", &batch_small, String::new());
            row("single 4K pg", &single_small, String::new());
        }
        println!(
            "{size:>9}  hits {:.1}%; baseline / trie (p50): single {:.1}x, batch {:.1}x; \
             memory per copy {:.1} MiB (hashmap about {:.1} MiB); trie on huge pages: {}",
            100.0 * hits as f64 / numbers.len() as f64,
            base.p50 / single.p50,
            base.p50 / batch.p50,
            mib(table.heap_bytes()),
            mib(baseline.heap_bytes()),
            huge_pages(&table),
        );
        if size == 1_000_000 {
            at_million = Some((prefixes, batch, single, base));
        }
    }

    let (prefixes, batch, single, base) = at_million.expect("measured at 1M");
    walk_shapes(&prefixes, count);
    let mut builds = Vec::new();
    let mut table = None;
    for _ in 0..3 {
        let (t, took) = build(&prefixes);
        builds.push(took.as_secs_f64() * 1e3);
        table = Some(t);
    }
    let table = table.expect("built");
    let t = Instant::now();
    let copy = table.clone();
    let clone_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(copy);

    // The practical path: a million-line CSV and its groups file, parsed,
    // checked and built as `routes check` and a reload do it.
    let groups_src = SourceFile::from_text("groups.toml", synth::groups_toml(GROUPS));
    let prefixes_src = SourceFile::from_text("prefixes.csv", synth::prefixes_csv(&prefixes));
    let loaded = files::load_sources(&groups_src, &prefixes_src, None).expect("valid files");
    let build_ms = median(builds);
    println!(
        "1000000 prefixes: build {build_ms:.0} ms (median of 3); from files: parse {:.0} ms + build {:.0} ms; \
         clone per worker {clone_ms:.0} ms; memory per copy {:.1} MiB for {} prefixes",
        loaded.stats.read_and_parse.as_secs_f64() * 1e3,
        loaded.stats.build.as_secs_f64() * 1e3,
        mib(table.heap_bytes()),
        table.prefix_count(),
    );
    let mut rng = fastrand::Rng::with_seed(3);
    let sizes = [1 << 20, 4 << 20, 8 << 20, table.heap_bytes()];
    let latencies: Vec<String> = sizes
        .iter()
        .map(|&b| {
            let ns = median((0..3).map(|_| load_latency(b, &mut rng)).collect());
            format!("{:.1} MiB {ns:.0} ns", mib(b))
        })
        .collect();
    println!(
        "memory latency (dependent loads over random lines, huge pages; median of 3): {}; \
         the last is the 1M table's size, the floor for a lookup that must read one line of it",
        latencies.join(", ")
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets at 1M (on p50): under 100 ns per lookup: batch {:.1} ns {}, single {:.1} ns {}; \
         build under 1 s: {build_ms:.0} ms {}; at least 3x the baseline: single {:.1}x {}, batch {:.1}x {}",
        batch.p50,
        verdict(batch.p50 < 100.0),
        single.p50,
        verdict(single.p50 < 100.0),
        verdict(build_ms < 1000.0),
        base.p50 / single.p50,
        verdict(base.p50 / single.p50 >= 3.0),
        base.p50 / batch.p50,
        verdict(base.p50 / batch.p50 >= 3.0),
    );
}
