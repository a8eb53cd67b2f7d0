//! A compact longest-prefix-match trie over decimal digits.
//!
//! A number is read as digits followed by an end marker: 11 symbols, the end
//! being 0 and digit `d` being `d + 1`. Each node covers two symbols, so it
//! has 11 x 11 = 121 slots and a number that ends in the middle of a node
//! still lands on a slot. A slot either descends into a child or holds a
//! result. Results are pushed down to the slots (leaf pushing), so a lookup
//! never backtracks: it walks down until it meets a result slot, and that slot
//! already holds the longest prefix matching so far.
//!
//! Layout, chosen by measuring (see `benches/route_lookup.rs` and
//! docs/route.md):
//! - every node and bucket is one 64-byte cache line in one flat array with
//!   `u32` indices; the children and results of a node are found by popcount
//!   over two 121-bit maps, as in Poptrie (Asai and Ohara, SIGCOMM 2015), and a
//!   node with at most six runs of equal results keeps them in its own line;
//! - a subtree with at most four prefixes is a bucket: one line holding the
//!   prefixes' remaining digits, compared against the number in a few
//!   instructions, so the last step of a walk is one cache line;
//! - a subtree with one prefix below a node 4 or more digits deep (four in
//!   five subtrees of a million-prefix table) is a single: 16 bytes in an
//!   array of its own rather than a whole line, which halves the table and
//!   keeps a million prefixes inside a 32 MiB L3;
//! - a direct table over the first four symbols (14,641 entries, 58 KiB)
//!   replaces the top two levels.
//!
//! In a table too large for the caches, a lookup then costs about one memory
//! access. [`PrefixTrie::lookup_batch`] overlaps those accesses between the
//! numbers of a batch.

use crate::huge::HugeSlice;

/// Slots per node: (end + 10 digits) squared.
const SLOTS: usize = 121;
/// Entries of the direct table: one per combination of the first four symbols.
const DIRECT: usize = SLOTS * SLOTS;
/// Marks a direct-table entry that is a packed result rather than a record.
const DIRECT_RESULT: u32 = 1 << 31;

/// The longest prefix, in digits, a trie can hold. E.164 numbers have at most
/// 15 digits (ITU-T E.164 section 6); 30 leaves room for routing prefixes.
pub const MAX_PREFIX_DIGITS: usize = 30;

/// Prefixes a bucket holds at most.
const BUCKET_ENTRIES: usize = 4;
/// Digits past the bucket's depth that a bucket entry can hold.
const BUCKET_DIGITS: usize = 15;
/// Result runs a node keeps in its own cache line.
const INLINE_RUNS: usize = 5;
/// The shallowest node whose one-prefix subtrees become singles; the direct
/// table stands for the nodes above it and holds records only.
const SINGLE_MIN_DEPTH: usize = 4;
/// Set in word 3 of a bucket; never set in a node (its run map uses bits
/// 0-120 only).
const BUCKET_TAG: u64 = 1 << 63;
/// Where a bucket keeps the remaining digits of each entry.
const BUCKET_DIGIT_WORDS: [usize; BUCKET_ENTRIES] = [0, 1, 2, 4];

/// Lanes of [`PrefixTrie::lookup_batch`]: walks kept in flight at once.
const LANES: usize = 64;

/// What a matching prefix yields: an opaque value and the prefix's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// The value stored with the prefix (below [`Match::VALUE_LIMIT`]).
    pub value: u32,
    /// How many leading digits of the number the prefix covers.
    pub len: usize,
}

impl Match {
    /// Values must be below this: a packed result keeps the length in its low
    /// five bits and must leave the direct table's flag bit free.
    pub const VALUE_LIMIT: u32 = (1 << 26) - 1;

    #[inline(always)]
    fn pack(self) -> u32 {
        ((self.value + 1) << 5) | self.len as u32
    }

    #[inline(always)]
    fn unpack(packed: u32) -> Option<Match> {
        (packed != 0).then(|| Match {
            value: (packed >> 5) - 1,
            len: (packed & 31) as usize,
        })
    }
}

/// Up to [`MAX_PREFIX_DIGITS`] digits packed into a `u128`: digit `i` is the
/// nibble at bits `124 - 4i ..`, stored as digit + 1, so zero means "no digit
/// here" and sorting puts a prefix just before its extensions.
#[inline(always)]
fn pack_digits(digits: &[u8]) -> (u128, usize) {
    // Two u64 halves, each built by shifting in one nibble at a time: a
    // fixed shift per digit is far cheaper than placing each digit with a
    // variable u128 shift.
    let mut halves = [0u64; 2];
    let mut len = 0;
    for (half, chunk) in halves.iter_mut().zip(digits.chunks(16)) {
        let mut acc = 0u64;
        let mut n = 0;
        for &b in chunk.iter().take(MAX_PREFIX_DIGITS - len) {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            acc = acc << 4 | u64::from(d + 1);
            n += 1;
        }
        // Move the n nibbles to the top of the half.
        *half = if n == 0 { 0 } else { acc << (64 - 4 * n) };
        len += n;
        if n < 16 {
            break;
        }
    }
    ((u128::from(halves[0]) << 64) | u128::from(halves[1]), len)
}

/// The slot of the two symbols at `pos` and `pos + 1` of a packed key.
#[inline(always)]
fn slot_at(key: u128, pos: usize) -> usize {
    let pair = (key >> (120 - 4 * pos)) as u8;
    usize::from(pair >> 4) * 11 + usize::from(pair & 15)
}

/// A prefix as the builder takes it: its digits packed (see `pack_digits`)
/// with the length in the low byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrefixKey(u128);

impl PrefixKey {
    /// Packs ASCII digits; `None` if a byte is not a digit or there are more
    /// than [`MAX_PREFIX_DIGITS`].
    pub fn from_digits(digits: &[u8]) -> Option<PrefixKey> {
        if digits.len() > MAX_PREFIX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let (key, len) = pack_digits(digits);
        Some(PrefixKey(key | len as u128))
    }

    /// The number of digits.
    pub fn len(self) -> usize {
        (self.0 & 0xff) as usize
    }

    /// True for the empty prefix (the default route).
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Digit `i` (0-9); `i` must be below [`PrefixKey::len`].
    pub fn digit(self, i: usize) -> usize {
        ((self.0 >> (124 - 4 * i)) & 0xf) as usize - 1
    }

    /// The digits as ASCII, written into `out`; returns the used part.
    pub fn write_digits(self, out: &mut [u8; MAX_PREFIX_DIGITS]) -> &[u8] {
        let len = self.len();
        for (i, b) in out.iter_mut().enumerate().take(len) {
            *b = b'0' + self.digit(i) as u8;
        }
        &out[..len]
    }
}

/// One cache line of the trie: a node or a bucket.
///
/// A node: words 0-1 and 2-3 are two 121-bit maps, A and B, that give each
/// slot a kind: A alone is a child record, A and B a single, B alone the
/// start of a run of equal results, neither a slot in the run before it.
/// Word 4 holds the first child record's index (low half) and the first
/// single's (high half); word 5's low half the first external result's, and
/// words 5 (high half) to 7 up to five results when the node has at most
/// five runs (then nothing is external).
///
/// A bucket: word 3 holds the tag, the entry count (bits 32-34), the bucket's
/// depth in digits (bits 40-45) and the result inherited from above (low
/// half); words 0, 1, 2 and 4 hold the entries' remaining digits (packed as
/// in a key, the low nibble counting them), words 5-6 their results. Entries
/// are sorted longest first, so the first that matches is the longest.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Record([u64; 8]);

impl Record {
    #[inline(always)]
    fn is_bucket(&self) -> bool {
        self.0[3] & BUCKET_TAG != 0
    }

    #[inline(always)]
    fn half(&self, first_word: usize, i: usize) -> u32 {
        (self.0[first_word + i / 2] >> (32 * (i % 2))) as u32
    }

    fn set_half(&mut self, first_word: usize, i: usize, value: u32) {
        let w = &mut self.0[first_word + i / 2];
        let shift = 32 * (i % 2);
        *w = (*w & !(0xffff_ffffu64 << shift)) | (u64::from(value) << shift);
    }
}

/// A subtree of one prefix: the prefix's digits past the subtree's depth,
/// packed as in a bucket entry (the low nibble counting them), its packed
/// result, and the packed result inherited from above for numbers that do
/// not match it.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(16))]
struct Single {
    digits: u64,
    result: u32,
    inherited: u32,
}

/// What one step of a walk found.
enum Step {
    /// Descend into this record, two digits further.
    Child(u32),
    /// The walk ends at this index of `singles`, two digits further.
    Single(u32),
    /// The walk ends with this packed result.
    Result(u32),
    /// The walk ends with the packed result at this index of `leaves`.
    Leaf(u32),
}

/// Number of set bits of the 128-bit map `(lo, hi)` below bit `i` (i <= 127).
#[inline(always)]
fn rank_below(lo: u64, hi: u64, i: usize) -> u32 {
    if i < 64 {
        (lo & ((1u64 << i) - 1)).count_ones()
    } else {
        lo.count_ones() + (hi & ((1u64 << (i - 64)) - 1)).count_ones()
    }
}

#[inline(always)]
fn bit_set(lo: u64, hi: u64, i: usize) -> bool {
    let word = if i < 64 { lo } else { hi };
    word >> (i % 64) & 1 != 0
}

/// Sets bit `i` of the 128-bit map in `words[0]` (low) and `words[1]` (high).
fn set_bit(words: &mut [u64], i: usize) {
    words[i / 64] |= 1 << (i % 64);
}

/// One step of a walk at record `r`, `pos` digits into the number `key`.
#[inline(always)]
fn step(r: &Record, key: u128, pos: usize) -> Step {
    step_tagged(r, r.0[3], key, pos)
}

/// [`step`] with the record's word 3 (which holds the bucket tag) already
/// loaded.
#[inline(always)]
fn step_tagged(r: &Record, word3: u64, key: u128, pos: usize) -> Step {
    if word3 & BUCKET_TAG != 0 {
        return Step::Result(bucket_result(r, key));
    }
    let slot = slot_at(key, pos);
    let [a_lo, a_hi, b_lo, _, bases, word5, ..] = r.0;
    let b_hi = word3;
    if bit_set(a_lo, a_hi, slot) {
        if bit_set(b_lo, b_hi, slot) {
            let rank = rank_below(a_lo & b_lo, a_hi & b_hi, slot);
            return Step::Single((bases >> 32) as u32 + rank);
        }
        return Step::Child(bases as u32 + rank_below(a_lo & !b_lo, a_hi & !b_hi, slot));
    }
    // The run holding `slot` starts at the last run start at or before it.
    let (runs_lo, runs_hi) = (b_lo & !a_lo, b_hi & !a_hi);
    let run = rank_below(runs_lo, runs_hi, slot + 1) - 1;
    if runs_lo.count_ones() + runs_hi.count_ones() <= INLINE_RUNS as u32 {
        Step::Result(r.half(5, run as usize + 1))
    } else {
        Step::Leaf(word5 as u32 + run)
    }
}

/// The packed result of a single for the number `key`; `depth` is the
/// single's depth (its node's plus two).
#[inline(always)]
fn single_result(s: &Single, key: u128, depth: usize) -> u32 {
    // Singles sit below nodes and hold at least one digit, so depth < 30.
    let digits = ((key << (4 * depth)) >> 64) as u64;
    let len = (s.digits & 0xf) as u32;
    // len is 1..=15, so the shift stays inside the word.
    let mask = !0u64 << (64 - 4 * len);
    if (digits ^ s.digits) & mask == 0 {
        s.result
    } else {
        s.inherited
    }
}

/// A prefix's digits past `depth`, moved to the top of a word, with their
/// count in the low nibble (at most [`BUCKET_DIGITS`]).
fn entry_digits(key: PrefixKey, depth: usize) -> u64 {
    let rest = key.len() - depth;
    let digits = ((key.0 << (4 * depth)) >> 64) as u64;
    let kept = !0u64 << (64 - 4 * rest);
    (digits & kept) | rest as u64
}

/// The packed result of a bucket for the number `key`.
#[inline(always)]
fn bucket_result(r: &Record, key: u128) -> u32 {
    let depth = ((r.0[3] >> 40) & 63) as u32;
    // The bucket's depth is below MAX_PREFIX_DIGITS, so the shift stays in range.
    let digits = ((key << (4 * depth)) >> 64) as u64;
    let count = ((r.0[3] >> 32) & 7) as usize;
    for (i, &w) in BUCKET_DIGIT_WORDS.iter().enumerate().take(count) {
        let entry = r.0[w];
        let len = (entry & 0xf) as u32;
        // len is 1..=15, so the shift stays inside the word.
        let mask = !0u64 << (64 - 4 * len);
        if (digits ^ entry) & mask == 0 {
            return r.half(5, i);
        }
    }
    r.0[3] as u32
}

/// A longest-prefix-match table from digit strings to `u32` values.
///
/// Immutable once built; [`Clone`] makes an independent copy (each worker
/// owns one). Lookups never allocate.
#[derive(Debug, Clone)]
pub struct PrefixTrie {
    direct: Box<[u32]>,
    /// On huge pages when large (see [`HugeSlice`]): a lookup in a table of
    /// a million prefixes then costs a cache miss but no TLB miss.
    records: HugeSlice<Record>,
    singles: HugeSlice<Single>,
    leaves: HugeSlice<u32>,
    prefixes: usize,
    longest: usize,
}

/// What a trie is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrieLayout {
    /// Bucket records (64 bytes each).
    pub buckets: usize,
    /// Node records (64 bytes each).
    pub nodes: usize,
    /// Singles (16 bytes each).
    pub singles: usize,
    /// Results kept outside their nodes (4 bytes each).
    pub external_results: usize,
}

/// The builder was given two entries with the same prefix; the indices are
/// positions in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicatePrefix {
    /// The entry that came first in the input.
    pub first: usize,
    /// The entry that repeats it.
    pub second: usize,
}

impl PrefixTrie {
    /// Builds a trie from `(prefix, value)` entries in any order.
    ///
    /// Values must be below [`Match::VALUE_LIMIT`] (checked with a panic: the
    /// route table never gets near it). Every pair of entries with the same
    /// prefix is returned as an error, so a file can report all its repeats.
    pub fn build(entries: &[(PrefixKey, u32)]) -> Result<PrefixTrie, Vec<DuplicatePrefix>> {
        for &(_, v) in entries {
            assert!(v < Match::VALUE_LIMIT, "trie value {v} over the limit");
        }
        let mut items = entries.to_vec();
        items.sort_unstable_by_key(|&(k, _)| k);
        if items.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(duplicates(entries));
        }
        Ok(Self::build_sorted(&items))
    }

    fn build_sorted(items: &[(PrefixKey, u32)]) -> PrefixTrie {
        let mut builder = Builder {
            records: Vec::with_capacity(items.len() / 8 + 64),
            singles: Vec::with_capacity(items.len() / 2),
            leaves: Vec::new(),
            scratch: Vec::new(),
        };
        // The empty prefix, if present, sorts first.
        let (root_value, rest) = match items.first() {
            Some(&(k, v)) if k.is_empty() => (Match { value: v, len: 0 }.pack(), &items[1..]),
            _ => (0, items),
        };
        builder.records.push(Record::default());
        builder.node(0, rest, 0, root_value);
        let mut trie = PrefixTrie {
            direct: Box::new([]),
            records: HugeSlice::from_slice(&builder.records),
            singles: HugeSlice::from_slice(&builder.singles),
            leaves: HugeSlice::from_slice(&builder.leaves),
            prefixes: items.len(),
            longest: items.iter().map(|(k, _)| k.len()).max().unwrap_or(0),
        };
        trie.direct = trie.direct_table();
        trie
    }

    /// Where the walk stands after the first four symbols, for each of their
    /// 14,641 combinations: a packed result, or the record to go on from.
    fn direct_table(&self) -> Box<[u32]> {
        let mut direct = vec![0u32; DIRECT];
        for (first, chunk) in direct.chunks_mut(SLOTS).enumerate() {
            // `first` is the slot of the first two symbols; build a key with
            // them and every second pair.
            let (s0, s1) = (first / 11, first % 11);
            for (second, entry) in chunk.iter_mut().enumerate() {
                let (s2, s3) = (second / 11, second % 11);
                let key = (s0 as u128) << 124
                    | (s1 as u128) << 120
                    | (s2 as u128) << 116
                    | (s3 as u128) << 112;
                *entry = match step(&self.records[0], key, 0) {
                    Step::Result(packed) => packed | DIRECT_RESULT,
                    Step::Leaf(i) => self.leaves[i as usize] | DIRECT_RESULT,
                    Step::Child(c) if self.records[c as usize].is_bucket() => c,
                    Step::Child(c) => match step(&self.records[c as usize], key, 2) {
                        Step::Result(packed) => packed | DIRECT_RESULT,
                        Step::Leaf(i) => self.leaves[i as usize] | DIRECT_RESULT,
                        Step::Child(c) => c,
                        Step::Single(_) => unreachable!("no singles above depth 4"),
                    },
                    Step::Single(_) => unreachable!("no singles above depth 4"),
                };
            }
        }
        direct.into_boxed_slice()
    }

    /// Where a walk for `key` starts: a packed result, or a record 4 digits
    /// in (a bucket carries its own depth).
    #[inline(always)]
    fn start(&self, key: u128) -> Result<u32, u32> {
        let entry = self.direct[slot_at(key, 0) * SLOTS + slot_at(key, 2)];
        if entry & DIRECT_RESULT != 0 {
            Ok(entry & !DIRECT_RESULT)
        } else {
            Err(entry)
        }
    }

    /// The longest prefix of `number` in the table. `number` is read as ASCII
    /// digits up to its end or its first non-digit byte; digits past
    /// [`MAX_PREFIX_DIGITS`] cannot change the answer and are not read.
    #[inline]
    pub fn lookup(&self, number: &[u8]) -> Option<Match> {
        let (key, _) = pack_digits(number);
        let mut rec = match self.start(key) {
            Ok(packed) => return Match::unpack(packed),
            Err(rec) => rec,
        };
        let mut pos = 4;
        loop {
            match step(&self.records[rec as usize], key, pos) {
                Step::Child(child) => {
                    rec = child;
                    pos += 2;
                }
                Step::Result(packed) => return Match::unpack(packed),
                Step::Leaf(i) => return Match::unpack(self.leaves[i as usize]),
                Step::Single(i) => {
                    let s = &self.singles[i as usize];
                    return Match::unpack(single_result(s, key, pos + 2));
                }
            }
        }
    }

    /// Looks up several numbers at once: `out[i]` gets the answer for
    /// `numbers[i]` (`out` must be at least as long as `numbers`).
    ///
    /// The walks advance side by side, one record per round, so the memory
    /// loads of different numbers overlap instead of queueing: a worker that
    /// routes a batch of packets pays about one memory latency per round
    /// rather than per number. The answers equal [`PrefixTrie::lookup`]'s.
    pub fn lookup_batch(&self, numbers: &[&[u8]], out: &mut [Option<Match>]) {
        assert!(out.len() >= numbers.len(), "out shorter than numbers");
        for (chunk, outs) in numbers.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let mut key = [0u128; LANES];
            let mut rec = [0u32; LANES];
            let mut walking = [0u8; LANES];
            let mut count = 0;
            for (k, number) in chunk.iter().enumerate() {
                key[k] = pack_digits(number).0;
                match self.start(key[k]) {
                    Ok(packed) => outs[k] = Match::unpack(packed),
                    Err(r) => {
                        rec[k] = r;
                        walking[count] = k as u8;
                        count += 1;
                    }
                }
            }
            let mut leaf = [u32::MAX; LANES];
            // The single each lane ends at, and its depth.
            let mut single = [(u32::MAX, 0u8); LANES];
            let mut word3 = [0u64; LANES];
            let mut pos = 4;
            while count > 0 {
                // Load one word of every walk's record first: these loads
                // feed no branch, so they all go to memory at once. The steps
                // afterwards find the lines in cache and cannot squash a load
                // that is still out.
                for j in 0..count {
                    word3[j] = self.records[rec[walking[j] as usize] as usize].0[3];
                }
                let mut still = 0;
                for j in 0..count {
                    let k = walking[j] as usize;
                    let r = &self.records[rec[k] as usize];
                    match step_tagged(r, word3[j], key[k], pos) {
                        Step::Child(child) => {
                            rec[k] = child;
                            walking[still] = k as u8;
                            still += 1;
                        }
                        Step::Result(packed) => outs[k] = Match::unpack(packed),
                        Step::Leaf(i) => leaf[k] = i,
                        Step::Single(i) => single[k] = (i, (pos + 2) as u8),
                    }
                }
                count = still;
                pos += 2;
            }
            for k in 0..chunk.len() {
                if leaf[k] != u32::MAX {
                    outs[k] = Match::unpack(self.leaves[leaf[k] as usize]);
                } else if single[k].0 != u32::MAX {
                    let (i, depth) = single[k];
                    let s = &self.singles[i as usize];
                    outs[k] = Match::unpack(single_result(s, key[k], usize::from(depth)));
                }
            }
        }
    }

    /// How many prefixes the table holds (the default route counts as one).
    pub fn len(&self) -> usize {
        self.prefixes
    }

    /// True when the table holds no prefix at all.
    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// The longest prefix, in digits.
    pub fn longest_prefix(&self) -> usize {
        self.longest
    }

    /// Cache-line records (nodes and buckets) in the trie.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Bytes of memory this copy holds (whole huge pages where mapped).
    pub fn heap_bytes(&self) -> usize {
        self.direct.len() * std::mem::size_of::<u32>()
            + self.records.footprint()
            + self.singles.footprint()
            + self.leaves.footprint()
    }

    /// A copy kept on small pages whatever its size, to measure what huge
    /// pages change (`benches/route_lookup.rs`); workers never use it.
    pub fn clone_on_small_pages(&self) -> PrefixTrie {
        PrefixTrie {
            records: HugeSlice::on_heap(&self.records),
            singles: HugeSlice::on_heap(&self.singles),
            leaves: HugeSlice::on_heap(&self.leaves),
            ..self.clone()
        }
    }

    /// How a lookup of `number` walks: records read after the direct table
    /// (nodes, buckets and singles) and whether it ends in the external
    /// results array. For measuring the layout (`benches/route_lookup.rs`).
    pub fn walk_shape(&self, number: &[u8]) -> (usize, bool) {
        let (key, _) = pack_digits(number);
        let Err(mut rec) = self.start(key) else {
            return (0, false);
        };
        let (mut pos, mut records) = (4, 0);
        loop {
            records += 1;
            match step(&self.records[rec as usize], key, pos) {
                Step::Child(child) => {
                    rec = child;
                    pos += 2;
                }
                Step::Result(_) => return (records, false),
                Step::Leaf(_) => return (records, true),
                Step::Single(_) => return (records + 1, false),
            }
        }
    }

    /// How the trie is laid out (`benches/route_lookup.rs`).
    pub fn layout(&self) -> TrieLayout {
        let buckets = self.records.iter().filter(|r| r.is_bucket()).count();
        TrieLayout {
            buckets,
            nodes: self.records.len() - buckets,
            singles: self.singles.len(),
            external_results: self.leaves.len(),
        }
    }

    /// True when the trie's records sit in a huge-page-advised mapping (a
    /// table too large for one huge page; see [`HugeSlice`]).
    pub fn on_huge_pages(&self) -> bool {
        self.records.is_mapped()
    }
}

/// Every entry that repeats an earlier prefix (the slow path of a refused
/// table, so it may hash).
fn duplicates(entries: &[(PrefixKey, u32)]) -> Vec<DuplicatePrefix> {
    let mut first = std::collections::HashMap::with_capacity(entries.len());
    let mut dups = Vec::new();
    for (i, &(k, _)) in entries.iter().enumerate() {
        if let Some(prev) = first.insert(k, i) {
            dups.push(DuplicatePrefix {
                first: prev,
                second: i,
            });
        }
    }
    dups
}

struct Builder {
    records: Vec<Record>,
    singles: Vec<Single>,
    leaves: Vec<u32>,
    /// Reused lists of pending children, one per depth being built.
    scratch: Vec<Vec<Pending>>,
}

/// A child still to be built: its slot, its prefixes and what it inherits.
#[derive(Clone, Copy)]
struct Pending {
    slot: usize,
    start: usize,
    end: usize,
    inherited: u32,
}

impl Builder {
    /// Fills record `at` as a node at depth `depth` from `items` (sorted; all
    /// longer than `depth`, sharing its first `depth` digits). `inherited` is
    /// the packed result of the longest prefix of length <= `depth`.
    fn node(&mut self, at: usize, items: &[(PrefixKey, u32)], depth: usize, inherited: u32) {
        let mut slots = [inherited; SLOTS];
        let mut children = self.scratch.pop().unwrap_or_default();
        children.clear();
        let mut i = 0;
        while i < items.len() {
            let a = items[i].0.digit(depth) + 1;
            let mut value_a = inherited;
            if items[i].0.len() == depth + 1 {
                value_a = Match {
                    value: items[i].1,
                    len: depth + 1,
                }
                .pack();
                i += 1;
            }
            // Digit a then anything, the end included.
            slots[a * 11..a * 11 + 11].fill(value_a);
            while i < items.len() && items[i].0.digit(depth) + 1 == a {
                let b = items[i].0.digit(depth + 1) + 1;
                let mut value_ab = value_a;
                if items[i].0.len() == depth + 2 {
                    value_ab = Match {
                        value: items[i].1,
                        len: depth + 2,
                    }
                    .pack();
                    i += 1;
                }
                slots[a * 11 + b] = value_ab;
                let start = i;
                while i < items.len()
                    && items[i].0.digit(depth) + 1 == a
                    && items[i].0.digit(depth + 1) + 1 == b
                {
                    i += 1;
                }
                if i > start {
                    children.push(Pending {
                        slot: a * 11 + b,
                        start,
                        end: i,
                        inherited: value_ab,
                    });
                }
            }
        }

        // A one-prefix subtree deep enough is a single; the rest are records.
        let is_single = |c: &Pending| {
            depth >= SINGLE_MIN_DEPTH
                && c.end - c.start == 1
                && items[c.start].0.len() - (depth + 2) <= BUCKET_DIGITS
        };
        let child_base = self.records.len();
        let single_base = self.singles.len();
        let mut rec = Record::default();
        let mut runs = [0u32; SLOTS];
        let mut run_count = 0;
        let mut next_child = children.iter().peekable();
        for (slot, &value) in slots.iter().enumerate() {
            if let Some(c) = next_child.next_if(|c| c.slot == slot) {
                set_bit(&mut rec.0[0..2], slot);
                if is_single(c) {
                    set_bit(&mut rec.0[2..4], slot);
                    self.singles.push(Single {
                        digits: entry_digits(items[c.start].0, depth + 2),
                        result: Match {
                            value: items[c.start].1,
                            len: items[c.start].0.len(),
                        }
                        .pack(),
                        inherited: c.inherited,
                    });
                }
                continue;
            }
            if run_count == 0 || runs[run_count - 1] != value {
                set_bit(&mut rec.0[2..4], slot);
                runs[run_count] = value;
                run_count += 1;
            }
        }
        if run_count <= INLINE_RUNS {
            for (k, &value) in runs[..run_count].iter().enumerate() {
                rec.set_half(5, k + 1, value);
            }
        } else {
            rec.0[5] = self.leaves.len() as u64;
            self.leaves.extend_from_slice(&runs[..run_count]);
        }
        rec.0[4] = child_base as u64 | (single_base as u64) << 32;
        self.records[at] = rec;
        // Child records of one node sit side by side, in slot order, and so
        // do its singles.
        let records: usize = children.iter().filter(|c| !is_single(c)).count();
        self.records.resize(child_base + records, Record::default());
        let depth = depth + 2;
        for (k, c) in children.iter().filter(|c| !is_single(c)).enumerate() {
            let sub = &items[c.start..c.end];
            if sub.len() <= BUCKET_ENTRIES
                && sub
                    .iter()
                    .all(|(key, _)| key.len() - depth <= BUCKET_DIGITS)
            {
                self.records[child_base + k] = bucket(sub, depth, c.inherited);
            } else {
                self.node(child_base + k, sub, depth, c.inherited);
            }
        }
        self.scratch.push(children);
    }
}

/// A bucket at `depth` for `items` (at most [`BUCKET_ENTRIES`], each at most
/// [`BUCKET_DIGITS`] longer than `depth`).
fn bucket(items: &[(PrefixKey, u32)], depth: usize, inherited: u32) -> Record {
    let mut sorted = [(PrefixKey(0), 0u32); BUCKET_ENTRIES];
    sorted[..items.len()].copy_from_slice(items);
    let sorted = &mut sorted[..items.len()];
    sorted.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut rec = Record::default();
    rec.0[3] =
        BUCKET_TAG | (depth as u64) << 40 | (items.len() as u64) << 32 | u64::from(inherited);
    for (i, &(key, value)) in sorted.iter().enumerate() {
        rec.0[BUCKET_DIGIT_WORDS[i]] = entry_digits(key, depth);
        rec.set_half(
            5,
            i,
            Match {
                value,
                len: key.len(),
            }
            .pack(),
        );
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(entries: &[(&str, u32)]) -> PrefixTrie {
        let keyed: Vec<_> = entries
            .iter()
            .map(|&(p, v)| (PrefixKey::from_digits(p.as_bytes()).unwrap(), v))
            .collect();
        PrefixTrie::build(&keyed).unwrap()
    }

    fn found(t: &PrefixTrie, number: &str) -> Option<(u32, usize)> {
        t.lookup(number.as_bytes()).map(|m| (m.value, m.len))
    }

    #[test]
    fn longest_prefix_wins() {
        let t = trie(&[("49", 1), ("4930", 2), ("493", 3)]);
        assert_eq!(found(&t, "4930123456"), Some((2, 4)));
        assert_eq!(found(&t, "4931"), Some((3, 3)));
        assert_eq!(found(&t, "4940"), Some((1, 2)));
        assert_eq!(found(&t, "44"), None);
    }

    #[test]
    fn a_number_shorter_than_a_prefix_does_not_match_it() {
        let t = trie(&[("4930", 2), ("4", 1)]);
        assert_eq!(found(&t, "493"), Some((1, 1)));
        assert_eq!(found(&t, "49"), Some((1, 1)));
        assert_eq!(found(&t, ""), None);
    }

    #[test]
    fn the_empty_prefix_is_the_default() {
        let t = trie(&[("", 7), ("1", 1)]);
        assert_eq!(found(&t, "2"), Some((7, 0)));
        assert_eq!(found(&t, ""), Some((7, 0)));
        assert_eq!(found(&t, "12"), Some((1, 1)));
    }

    #[test]
    fn a_non_digit_ends_the_number() {
        let t = trie(&[("12", 1), ("123", 2)]);
        assert_eq!(found(&t, "12;x=3"), Some((1, 2)));
        assert_eq!(found(&t, "1;23"), None);
    }

    #[test]
    fn duplicates_are_reported_by_position() {
        let keyed: Vec<_> = ["12", "3", "12", "12"]
            .iter()
            .map(|p| (PrefixKey::from_digits(p.as_bytes()).unwrap(), 0))
            .collect();
        let dups = PrefixTrie::build(&keyed).unwrap_err();
        assert_eq!(
            dups,
            vec![
                DuplicatePrefix {
                    first: 0,
                    second: 2
                },
                DuplicatePrefix {
                    first: 2,
                    second: 3
                }
            ]
        );
    }

    #[test]
    fn keys_round_trip_their_digits() {
        let k = PrefixKey::from_digits(b"0123456789").unwrap();
        let mut buf = [0; MAX_PREFIX_DIGITS];
        assert_eq!(k.write_digits(&mut buf), b"0123456789");
        assert!(PrefixKey::from_digits(b"12a").is_none());
        assert!(PrefixKey::from_digits(&[b'1'; MAX_PREFIX_DIGITS + 1]).is_none());
        assert!(PrefixKey::from_digits(&[b'9'; MAX_PREFIX_DIGITS]).is_some());
    }

    #[test]
    fn maximum_length_prefixes_match() {
        let long = "9".repeat(MAX_PREFIX_DIGITS);
        let t = trie(&[(&long, 1), (&long[..29], 2)]);
        assert_eq!(found(&t, &long), Some((1, 30)));
        assert_eq!(found(&t, &format!("{long}12")), Some((1, 30)));
        assert_eq!(found(&t, &long[..29]), Some((2, 29)));
    }

    #[test]
    fn a_lone_deep_prefix_is_a_single_that_matches_or_inherits() {
        // Six prefixes below 4930 make it a node 4 digits deep; 493012345
        // and 4930555 are alone under theirs and become singles inheriting
        // 4930's result, the four under 493098 a bucket.
        let t = trie(&[
            ("4930", 1),
            ("493012345", 2),
            ("4930987", 3),
            ("4930985", 4),
            ("4930986", 5),
            ("4930984", 6),
            ("4930555", 7),
        ]);
        assert_eq!(t.layout().singles, 2);
        assert_eq!(t.layout().buckets, 1);
        assert_eq!(found(&t, "4930555"), Some((7, 7)));
        assert_eq!(found(&t, "493055"), Some((1, 4)));
        assert_eq!(found(&t, "49301234567"), Some((2, 9)));
        assert_eq!(found(&t, "4930123"), Some((1, 4)));
        assert_eq!(found(&t, "493012349"), Some((1, 4)));
        assert_eq!(found(&t, "493098"), Some((1, 4)));
        assert_eq!(found(&t, "4930987"), Some((3, 7)));
        let numbers: Vec<&[u8]> = vec![b"493012345", b"4930123", b"4930985111", b"4"];
        let mut out = vec![None; numbers.len()];
        t.lookup_batch(&numbers, &mut out);
        for (n, got) in numbers.iter().zip(&out) {
            assert_eq!(*got, t.lookup(n));
        }
        // Above depth 4 the direct table stands for the nodes: no singles.
        let t = trie(&[("49", 1), ("4912345", 2)]);
        assert_eq!(t.layout().singles, 0);
        assert_eq!(found(&t, "491234567"), Some((2, 7)));
    }

    fn brute_force(entries: &[(String, u32)], number: &str) -> Option<(u32, usize)> {
        let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
        entries
            .iter()
            .filter(|(p, _)| digits.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(p, v)| (*v, p.len()))
    }

    #[test]
    fn random_tables_agree_with_a_brute_force_scan() {
        let mut rng = fastrand::Rng::with_seed(11);
        for round in 0..300 {
            // Few digit values and short lengths force shared paths, buckets
            // and nodes of every shape.
            let alphabet = rng.u8(1..=10);
            let max_len = rng.usize(1..=MAX_PREFIX_DIGITS);
            let count = rng.usize(0..=200);
            let mut entries: Vec<(String, u32)> = Vec::new();
            for _ in 0..count {
                let len = rng.usize(0..=max_len);
                let p: String = (0..len)
                    .map(|_| char::from(b'0' + rng.u8(0..alphabet)))
                    .collect();
                if !entries.iter().any(|(q, _)| *q == p) {
                    entries.push((p, rng.u32(0..1000)));
                }
            }
            let keyed: Vec<_> = entries
                .iter()
                .map(|(p, v)| (PrefixKey::from_digits(p.as_bytes()).unwrap(), *v))
                .collect();
            let t = PrefixTrie::build(&keyed).unwrap();
            let numbers: Vec<String> = (0..200)
                .map(|_| {
                    let len = rng.usize(0..=max_len + 3);
                    (0..len)
                        .map(|_| char::from(b'0' + rng.u8(0..alphabet)))
                        .collect()
                })
                .collect();
            let refs: Vec<&[u8]> = numbers.iter().map(|n| n.as_bytes()).collect();
            let mut batch = vec![None; refs.len()];
            t.lookup_batch(&refs, &mut batch);
            for (n, b) in numbers.iter().zip(&batch) {
                let want = brute_force(&entries, n);
                assert_eq!(found(&t, n), want, "round {round} number {n}");
                assert_eq!(
                    b.map(|m| (m.value, m.len)),
                    want,
                    "batch, round {round} number {n}"
                );
            }
        }
    }
}
