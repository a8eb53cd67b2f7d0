//! CPU sets in the kernel's list format (`0-3,8,10-11`), as found in
//! /sys/devices/system/cpu/{online,isolated,nohz_full} and
//! /proc/irq/N/smp_affinity_list, and as written back to them.

use std::collections::BTreeSet;
use std::fmt;

/// A set of CPU numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<u32>);

/// Largest CPU number accepted from a list; the kernel's NR_CPUS tops out at
/// 8192, and a bound keeps a corrupt range from allocating without limit.
pub const MAX_CPU: u32 = 8191;

impl CpuSet {
    /// The empty set.
    pub fn new() -> Self {
        CpuSet(BTreeSet::new())
    }

    /// Parses the kernel's list format. Whitespace around the text and an
    /// empty text (no CPUs) are accepted.
    pub fn parse_list(text: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        let text = text.trim();
        if text.is_empty() {
            return Ok(CpuSet(set));
        }
        for part in text.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (parse_cpu(lo, part)?, parse_cpu(hi, part)?),
                None => {
                    let cpu = parse_cpu(part, part)?;
                    (cpu, cpu)
                }
            };
            if lo > hi {
                return Err(format!("CPU range {part:?} runs backwards"));
            }
            set.extend(lo..=hi);
        }
        Ok(CpuSet(set))
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the set holds no CPU.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Adds a CPU.
    pub fn insert(&mut self, cpu: u32) {
        self.0.insert(cpu);
    }

    /// True when every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        CpuSet(iter.into_iter().collect())
    }
}

fn parse_cpu(text: &str, part: &str) -> Result<u32, String> {
    let cpu: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{part:?} is not a CPU number or range"))?;
    if cpu > MAX_CPU {
        return Err(format!("CPU {cpu} is above the kernel's limit {MAX_CPU}"));
    }
    Ok(cpu)
}

/// The list format, with runs of three or more written as ranges: `0-3,8`.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus: Vec<u32> = self.iter().collect();
        let mut i = 0;
        let mut first = true;
        while i < cpus.len() {
            let mut j = i;
            while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match j - i {
                0 => write!(f, "{}", cpus[i])?,
                1 => write!(f, "{},{}", cpus[i], cpus[j])?,
                _ => write!(f, "{}-{}", cpus[i], cpus[j])?,
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl serde::Serialize for CpuSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        let set = CpuSet::parse_list("0-2,5,7-8\n").unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 1, 2, 5, 7, 8]);
    }

    #[test]
    fn empty_text_is_no_cpus() {
        assert!(CpuSet::parse_list("\n").unwrap().is_empty());
    }

    #[test]
    fn refuses_garbage_and_backward_ranges() {
        assert!(CpuSet::parse_list("a-b").is_err());
        assert!(CpuSet::parse_list("3-1").is_err());
        assert!(CpuSet::parse_list("0-99999999").is_err());
    }

    #[test]
    fn displays_in_list_format() {
        let set: CpuSet = [0, 1, 2, 3, 8, 10, 11].into_iter().collect();
        assert_eq!(set.to_string(), "0-3,8,10,11");
    }

    #[test]
    fn display_round_trips() {
        for text in ["", "0", "1,3", "0-7", "2-15", "0,2-4,9"] {
            assert_eq!(CpuSet::parse_list(text).unwrap().to_string(), text);
        }
    }
}
