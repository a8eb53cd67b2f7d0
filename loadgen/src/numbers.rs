//! Dialed numbers: from a pattern such as `4420{0000-9999}` (each `{lo-hi}`
//! group is a zero-padded range; groups multiply) or from a file with one
//! number per line, so that calls exercise the route tables under test.

use std::path::Path;

use config::ConfigError;

use crate::msgbuf::MsgBuf;

/// Where dialed numbers come from. Call `k` dials number `k mod len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Numbers {
    /// Literal parts and ranges, enumerated like an odometer (last range
    /// fastest).
    Pattern(Vec<Part>),
    /// A list read from a file.
    List(Vec<Vec<u8>>),
}

/// A piece of a number pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal characters.
    Literal(Vec<u8>),
    /// `{lo-hi}`: every number from `lo` to `hi`, padded to `width` digits.
    Range {
        /// First value.
        lo: u64,
        /// Last value (inclusive).
        hi: u64,
        /// Digits (the width of `lo` as written).
        width: usize,
    },
}

/// A refused pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("number pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

/// Characters a dialed number or user part may hold.
fn dialable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+*#-._".contains(&b)
}

impl Numbers {
    /// Parses a pattern.
    pub fn pattern(p: &str) -> Result<Numbers, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: p.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut rest = p.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'{' {
                let close = tail
                    .iter()
                    .position(|&c| c == b'}')
                    .ok_or_else(|| err("'{' without '}'"))?;
                let inner = std::str::from_utf8(&tail[..close]).map_err(|_| err("not UTF-8"))?;
                let (lo_s, hi_s) = inner
                    .split_once('-')
                    .ok_or_else(|| err("a range is written {lo-hi}"))?;
                let digits = |s: &str| {
                    !s.is_empty() && s.len() <= 18 && s.bytes().all(|c| c.is_ascii_digit())
                };
                if !digits(lo_s) || !digits(hi_s) {
                    return Err(err("range bounds must be 1 to 18 digits"));
                }
                let (lo, hi): (u64, u64) = (lo_s.parse().unwrap_or(0), hi_s.parse().unwrap_or(0));
                if lo > hi {
                    return Err(err("range start is above its end"));
                }
                if !lit.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut lit)));
                }
                parts.push(Part::Range {
                    lo,
                    hi,
                    width: lo_s.len(),
                });
                rest = &tail[close + 1..];
            } else if dialable(b) {
                lit.push(b);
                rest = tail;
            } else {
                return Err(err(&format!("character {:?} cannot be dialed", b as char)));
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        if parts.is_empty() {
            return Err(err("empty"));
        }
        let n = Numbers::Pattern(parts);
        if n.is_empty() {
            return Err(err("more numbers than fit 64 bits"));
        }
        Ok(n)
    }

    /// Reads a file of numbers, one per line; blank lines and lines starting
    /// with `#` are skipped. A bad line is refused with the file and line.
    pub fn file(path: &Path) -> Result<Numbers, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(path, format!("cannot read: {e}")))?;
        let mut list = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(bad) = line.bytes().find(|&b| !dialable(b)) {
                return Err(ConfigError::at_line(
                    path,
                    i + 1,
                    format!("{line:?}: character {:?} cannot be dialed", bad as char),
                ));
            }
            if line.len() > 64 {
                return Err(ConfigError::at_line(
                    path,
                    i + 1,
                    format!("{} characters, at most 64", line.len()),
                ));
            }
            list.push(line.as_bytes().to_vec());
        }
        if list.is_empty() {
            return Err(ConfigError::file(path, "no numbers in the file"));
        }
        Ok(Numbers::List(list))
    }

    /// How many distinct numbers there are (0 if the count overflows).
    pub fn len(&self) -> u64 {
        match self {
            Numbers::List(l) => l.len() as u64,
            Numbers::Pattern(parts) => parts
                .iter()
                .try_fold(1u64, |acc, p| match p {
                    Part::Literal(_) => Some(acc),
                    Part::Range { lo, hi, .. } => acc.checked_mul(hi - lo + 1),
                })
                .unwrap_or(0),
        }
    }

    /// True when there is no number (never, for a parsed source).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes number `k mod len` into `out`.
    pub fn write(&self, k: u64, out: &mut MsgBuf<'_>) {
        match self {
            Numbers::List(l) => out.put(&l[(k % l.len() as u64) as usize]),
            Numbers::Pattern(parts) => {
                let mut k = k % self.len().max(1);
                // Odometer: the last range turns fastest. Work out each
                // range's digit from the right, then write left to right.
                let mut picks = [0u64; 8];
                for (i, p) in parts.iter().enumerate().rev() {
                    if let Part::Range { lo, hi, .. } = p {
                        let span = hi - lo + 1;
                        if i < picks.len() {
                            picks[i] = lo + k % span;
                        }
                        k /= span;
                    }
                }
                for (i, p) in parts.iter().enumerate() {
                    match p {
                        Part::Literal(l) => out.put(l),
                        Part::Range { lo, width, .. } => {
                            out.put_u64_padded(if i < picks.len() { picks[i] } else { *lo }, *width)
                        }
                    }
                }
            }
        }
    }

    /// Number `k` as an owned string (for reports and tests).
    pub fn get(&self, k: u64) -> String {
        let mut b = [0u8; 256];
        let mut o = MsgBuf::new(&mut b);
        self.write(k, &mut o);
        String::from_utf8_lossy(o.as_bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_enumerates_a_padded_range() {
        let n = Numbers::pattern("4420{0000-9999}").unwrap();
        assert_eq!(n.len(), 10_000);
        assert_eq!(n.get(0), "44200000");
        assert_eq!(n.get(42), "44200042");
        assert_eq!(n.get(10_000), "44200000");
    }

    #[test]
    fn ranges_multiply_like_an_odometer() {
        let n = Numbers::pattern("+{1-2}0{5-7}").unwrap();
        assert_eq!(n.len(), 6);
        let all: Vec<String> = (0..6).map(|k| n.get(k)).collect();
        assert_eq!(all, ["+105", "+106", "+107", "+205", "+206", "+207"]);
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(Numbers::pattern("44{9-1}")
            .unwrap_err()
            .reason
            .contains("above"));
        assert!(Numbers::pattern("44{1-")
            .unwrap_err()
            .reason
            .contains("'}'"));
        assert!(Numbers::pattern("44 20")
            .unwrap_err()
            .reason
            .contains("cannot be dialed"));
        assert!(Numbers::pattern("").is_err());
    }

    #[test]
    fn file_is_read_and_bad_lines_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("dce-numbers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.txt");
        std::fs::write(&good, "# routes\n+4420100\n\n4420200\n").unwrap();
        let n = Numbers::file(&good).unwrap();
        assert_eq!((n.len(), n.get(1)), (2, "4420200".to_string()));
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "4420100\n44 20\n").unwrap();
        let e = Numbers::file(&bad).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("cannot be dialed"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
