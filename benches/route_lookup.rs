use dce_edge::route::synth;
use dce_edge::route::trie::{PrefixKey, PrefixTrie};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    for &size in &[1_000usize, 100_000, 1_000_000] {
        let table = synth::prefixes(1, size, 100);
        let keys: Vec<_> = table
            .iter()
            .map(|(p, g)| (PrefixKey::from_digits(p.as_bytes()).unwrap(), *g as u32))
            .collect();
        {
            let t0 = Instant::now();
            let mut order: Vec<u32> = (0..keys.len() as u32).collect();
            order.sort_unstable_by_key(|&i| (keys[i as usize].0, i));
            let t1 = t0.elapsed();
            let t0 = Instant::now();
            let mut v: Vec<(PrefixKey, u32, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, &(k, g))| (k, g, i as u32))
                .collect();
            v.sort_unstable_by_key(|&(k, _, i)| (k, i));
            let t2 = t0.elapsed();
            println!("indirect sort {t1:?} direct sort {t2:?}");
        }
        let t0 = Instant::now();
        let trie = PrefixTrie::build(&keys).unwrap();
        let build = t0.elapsed();
        let base: HashMap<Box<[u8]>, u32> = table
            .iter()
            .map(|(p, g)| (p.as_bytes().into(), *g as u32))
            .collect();
        let maxlen = trie.longest_prefix();
        let nums = synth::numbers(2, 200_000, &table, 50);
        let nums: Vec<&[u8]> = nums.iter().map(|s| s.as_bytes()).collect();
        let mut hits = 0;
        for n in &nums {
            if trie.lookup(n).is_some() {
                hits += 1;
            }
        }

        println!(
            "size {size}: build {:?} nodes {} bytes {} hits {}",
            build,
            trie.record_count(),
            trie.heap_bytes(),
            hits
        );
        for _ in 0..3 {
            let mut acc = 0u64;
            let t0 = Instant::now();
            for n in &nums {
                if let Some(m) = trie.lookup(black_box(n)) {
                    acc += m.value as u64;
                }
            }
            let tt = t0.elapsed().as_nanos() as f64 / nums.len() as f64;
            let mut out = vec![None; 64];
            let t0 = Instant::now();
            for c in nums.chunks(64) {
                trie.lookup_batch(black_box(c), &mut out);
                for m in out.iter().flatten() {
                    acc += m.value as u64;
                }
            }
            let tbat = t0.elapsed().as_nanos() as f64 / nums.len() as f64;
            let t0 = Instant::now();
            for n in &nums {
                for len in (0..=maxlen.min(n.len())).rev() {
                    if let Some(v) = base.get(&n[..len]) {
                        acc += *v as u64;
                        break;
                    }
                }
            }
            let tb = t0.elapsed().as_nanos() as f64 / nums.len() as f64;
            black_box(acc);
            println!("   trie {tt:.1} ns batch {tbat:.1} ns base {tb:.1} ns");
        }
    }
}
