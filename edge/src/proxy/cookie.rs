//! Keyed hashes the stateless proxy derives its state from: Via branches
//! (RFC 3261 section 16.11) and the dialog cookie that proves a source is
//! real (it received a response through this edge and echoed the cookie).
//!
//! A stateless proxy cannot remember transactions, so everything it must
//! recognise later is recomputed from the message and a secret.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

use super::source_table::SourceKey;

/// The RFC 3261 magic cookie every branch of this edge starts with.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// What follows the magic cookie in branches this edge makes, so a response
/// can be recognised as ours without state.
pub const BRANCH_MARK: &[u8] = b"dce";

/// Length of a branch this edge makes: cookie, mark, 16 hex digits.
pub const BRANCH_LEN: usize = MAGIC_COOKIE.len() + BRANCH_MARK.len() + 16;

/// Length of a dialog cookie (16 hex digits).
pub const COOKIE_LEN: usize = 16;

/// The secret behind branches and cookies. Each appliance start picks a new
/// one unless the configuration pins it (several edges behind one address
/// must share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    k0: u64,
    k1: u64,
}

impl Secret {
    /// A secret from two 64-bit keys.
    pub fn new(k0: u64, k1: u64) -> Self {
        Secret { k0, k1 }
    }

    /// A secret from the kernel's random source.
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 16];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let (a, b) = bytes.split_at(8);
        Ok(Secret::new(
            u64::from_le_bytes(a.try_into().unwrap()),
            u64::from_le_bytes(b.try_into().unwrap()),
        ))
    }

    fn hasher(&self, domain: u8) -> SipHasher13 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(domain);
        h
    }

    /// The branch for a forwarded request, from the parts of the incoming
    /// request that identify its transaction. Retransmissions, and a CANCEL
    /// or non-2xx ACK of the same INVITE, give the same parts and so the
    /// same branch (RFC 3261 section 16.11). Each part is length-prefixed so
    /// that moving bytes between parts changes the hash.
    pub fn branch<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; BRANCH_LEN] {
        let mut h = self.hasher(1);
        for part in parts {
            h.write_usize(part.len());
            h.write(part);
        }
        let mut out = [0u8; BRANCH_LEN];
        out[..MAGIC_COOKIE.len()].copy_from_slice(MAGIC_COOKIE);
        out[MAGIC_COOKIE.len()..MAGIC_COOKIE.len() + BRANCH_MARK.len()]
            .copy_from_slice(BRANCH_MARK);
        hex16(
            h.finish(),
            &mut out[MAGIC_COOKIE.len() + BRANCH_MARK.len()..],
        );
        out
    }

    /// The dialog cookie for `src` in cookie epoch `epoch`.
    fn cookie_for(&self, src: IpAddr, epoch: u64) -> [u8; COOKIE_LEN] {
        let mut h = self.hasher(2);
        h.write(&SourceKey::new(src).to_bytes());
        h.write_u64(epoch);
        let mut out = [0u8; COOKIE_LEN];
        hex16(h.finish(), &mut out);
        out
    }

    /// The cookie to put in the Record-Route of a request from `src` at
    /// `now` (nanoseconds); `period_ns` is how long one epoch lasts.
    pub fn dialog_cookie(&self, src: IpAddr, now: u64, period_ns: u64) -> [u8; COOKIE_LEN] {
        self.cookie_for(src, now / period_ns.max(1))
    }

    /// True when `cookie` is the one `src` was given in this epoch or the
    /// previous one: the source received a response routed through this
    /// edge, so its address is not spoofed.
    pub fn verify_dialog_cookie(
        &self,
        src: IpAddr,
        cookie: &[u8],
        now: u64,
        period_ns: u64,
    ) -> bool {
        if cookie.len() != COOKIE_LEN {
            return false;
        }
        let epoch = now / period_ns.max(1);
        let matches = |e: u64| constant_time_eq(&self.cookie_for(src, e), cookie);
        matches(epoch) | (epoch > 0 && matches(epoch - 1))
    }
}

/// True when `branch` has the shape of a branch this edge makes.
pub fn is_our_branch(branch: &[u8]) -> bool {
    branch.len() == BRANCH_LEN
        && branch.starts_with(MAGIC_COOKIE)
        && branch[MAGIC_COOKIE.len()..].starts_with(BRANCH_MARK)
        && branch[MAGIC_COOKIE.len() + BRANCH_MARK.len()..]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

fn hex16(v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().take(16).enumerate() {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000_000_000;

    fn secret() -> Secret {
        Secret::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210)
    }

    #[test]
    fn branch_is_stable_for_the_same_parts_and_ours() {
        let s = secret();
        let a = s.branch([&b"z9hG4bK776asdhds"[..], b"198.18.0.1:5060"]);
        let b = s.branch([&b"z9hG4bK776asdhds"[..], b"198.18.0.1:5060"]);
        assert_eq!(a, b);
        assert!(is_our_branch(&a));
        assert!(a.starts_with(b"z9hG4bKdce"));
    }

    #[test]
    fn branch_changes_with_parts_boundaries_and_secret() {
        let s = secret();
        assert_ne!(s.branch([&b"ab"[..], b"c"]), s.branch([&b"a"[..], b"bc"]));
        assert_ne!(s.branch([&b"x"[..]]), Secret::new(1, 2).branch([&b"x"[..]]));
    }

    #[test]
    fn foreign_branches_are_not_ours() {
        assert!(!is_our_branch(b"z9hG4bK776asdhds"));
        assert!(!is_our_branch(b"z9hG4bKdce0123456789abcdeZ"));
    }

    #[test]
    fn dialog_cookie_verifies_for_its_source_in_this_and_the_next_epoch() {
        let s = secret();
        let src: IpAddr = "198.18.5.5".parse().unwrap();
        let c = s.dialog_cookie(src, 10 * HOUR + 5, HOUR);
        assert!(s.verify_dialog_cookie(src, &c, 10 * HOUR + 9, HOUR));
        assert!(s.verify_dialog_cookie(src, &c, 11 * HOUR + 1, HOUR));
        assert!(!s.verify_dialog_cookie(src, &c, 12 * HOUR + 1, HOUR));
    }

    #[test]
    fn dialog_cookie_fails_for_another_source_or_garbage() {
        let s = secret();
        let src: IpAddr = "198.18.5.5".parse().unwrap();
        let other: IpAddr = "198.18.5.6".parse().unwrap();
        let c = s.dialog_cookie(src, HOUR, HOUR);
        assert!(!s.verify_dialog_cookie(other, &c, HOUR, HOUR));
        assert!(!s.verify_dialog_cookie(src, b"0000000000000000", HOUR, HOUR));
        assert!(!s.verify_dialog_cookie(src, b"short", HOUR, HOUR));
    }
}
