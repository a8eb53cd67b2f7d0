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

/// Length of a branch this edge makes: cookie, mark, 16 hex digits of the
/// transaction hash, 8 hex digits of the loop key.
pub const BRANCH_LEN: usize = MAGIC_COOKIE.len() + BRANCH_MARK.len() + 16 + LOOP_KEY_LEN;

/// Length of the loop key at the end of a branch this edge makes.
pub const LOOP_KEY_LEN: usize = 8;

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

    fn hasher(&self, domain: u8) -> SipHasher13 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(domain);
        h
    }

    /// The branch for a forwarded request.
    ///
    /// `transaction` are the parts of the incoming request that identify its
    /// transaction: retransmissions, and a CANCEL or non-2xx ACK of the same
    /// INVITE, give the same parts and so the same branch (RFC 3261 section
    /// 16.11). `loop_parts` are the parts that do not change as the request
    /// travels (Request-URI, From tag, Call-ID, CSeq number); their hash ends
    /// the branch, so a request that comes back with this edge's Via and the
    /// same loop key has looped (section 16.3, item 4). Each part is
    /// length-prefixed so that moving bytes between parts changes the hash.
    pub fn branch<'a>(
        &self,
        transaction: impl IntoIterator<Item = &'a [u8]>,
        loop_parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> [u8; BRANCH_LEN] {
        let mut out = [0u8; BRANCH_LEN];
        let (head, rest) = out.split_at_mut(MAGIC_COOKIE.len() + BRANCH_MARK.len());
        head[..MAGIC_COOKIE.len()].copy_from_slice(MAGIC_COOKIE);
        head[MAGIC_COOKIE.len()..].copy_from_slice(BRANCH_MARK);
        let (tx, lk) = rest.split_at_mut(16);
        hex16(hash_parts(self.hasher(1), transaction), tx);
        lk.copy_from_slice(&self.loop_key(loop_parts));
        out
    }

    /// The loop key of a request: the last [`LOOP_KEY_LEN`] characters of the
    /// branches this edge makes for it.
    pub fn loop_key<'a>(
        &self,
        loop_parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> [u8; LOOP_KEY_LEN] {
        let mut hex = [0u8; 16];
        hex16(hash_parts(self.hasher(3), loop_parts), &mut hex);
        let mut out = [0u8; LOOP_KEY_LEN];
        out.copy_from_slice(&hex[..LOOP_KEY_LEN]);
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

fn hash_parts<'a>(mut h: SipHasher13, parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    for part in parts {
        h.write_usize(part.len());
        h.write(part);
    }
    h.finish()
}

/// The loop key of a branch this edge made, if it is one.
pub fn branch_loop_key(branch: &[u8]) -> Option<&[u8]> {
    is_our_branch(branch).then(|| &branch[BRANCH_LEN - LOOP_KEY_LEN..])
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
        let a = s.branch(
            [&b"z9hG4bK776asdhds"[..], b"198.18.0.1:5060"],
            [&b"sip:1@e"[..]],
        );
        let b = s.branch(
            [&b"z9hG4bK776asdhds"[..], b"198.18.0.1:5060"],
            [&b"sip:1@e"[..]],
        );
        assert_eq!(a, b);
        assert!(is_our_branch(&a));
        assert!(a.starts_with(b"z9hG4bKdce"));
    }

    #[test]
    fn branch_changes_with_parts_boundaries_and_secret() {
        let s = secret();
        let none: [&[u8]; 0] = [];
        assert_ne!(
            s.branch([&b"ab"[..], b"c"], none),
            s.branch([&b"a"[..], b"bc"], none)
        );
        assert_ne!(
            s.branch([&b"x"[..]], none),
            Secret::new(1, 2).branch([&b"x"[..]], none)
        );
    }

    #[test]
    fn loop_key_ends_the_branch_and_ignores_the_transaction() {
        let s = secret();
        let a = s.branch([&b"z9hG4bKa"[..]], [&b"sip:1@e"[..], b"tag"]);
        let b = s.branch([&b"z9hG4bKb"[..]], [&b"sip:1@e"[..], b"tag"]);
        assert_ne!(a, b);
        assert_eq!(branch_loop_key(&a), branch_loop_key(&b));
        assert_eq!(
            branch_loop_key(&a),
            Some(&s.loop_key([&b"sip:1@e"[..], b"tag"])[..])
        );
        assert_eq!(branch_loop_key(b"z9hG4bKforeign"), None);
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
