//! Keyed hashes the stateless proxy derives its state from, each bound to
//! what it vouches for so that nobody can reuse it elsewhere:
//!
//! - the Via **branch** of a forwarded request (RFC 3261 section 16.11)
//!   carries a MAC over the next hop it was sent to, its Call-ID and CSeq
//!   number: a response is relayed only when it comes from that next hop
//!   for that transaction ([`Secret::response_is_ours`]);
//! - the **dialog cookie** in the Record-Route of an initial INVITE binds
//!   the caller's address, the dialog (Call-ID, From tag) and the target
//!   chosen for the INVITE, which it carries: echoed back, it proves the
//!   caller real and names the only place its in-dialog requests may go;
//! - the **local tag** of the edge's own answers binds the dialog and the
//!   address answered, so an ACK carrying it proves that address real;
//! - the **flow token** in the Record-Route of a call that came in on a
//!   TCP or TLS connection names that connection (RFC 5626 section 5.2 in
//!   spirit): in-dialog requests toward the caller go back on it, and a
//!   token nobody here made names nothing.
//!
//! A stateless proxy cannot remember transactions, so everything it must
//! recognise later is recomputed from the message and a secret.

use std::hash::Hasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use siphasher::sip::SipHasher13;

use super::source_table::{HashSeed, SourceKey};
use route::Transport;

/// The RFC 3261 magic cookie every branch of this edge starts with.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// What follows the magic cookie in branches this edge makes, so a response
/// can be recognised as ours without state.
pub const BRANCH_MARK: &[u8] = b"dce";

/// The mark of an emergency call's branches instead of [`BRANCH_MARK`]: its
/// responses are relayed within the emergency budget, shields up or not.
/// The MAC covers it, so nobody can turn a call into an emergency one.
pub const EMERGENCY_MARK: &[u8] = b"dcs";

/// Hex digits of the transaction hash in a branch.
const TX_LEN: usize = 16;

/// Length of the loop key in a branch this edge makes.
pub const LOOP_KEY_LEN: usize = 8;

/// Hex digits of the next-hop MAC at the end of a branch.
const HOP_LEN: usize = 16;

/// Where the transaction hash starts in a branch this edge makes.
const TX_AT: usize = MAGIC_COOKIE.len() + BRANCH_MARK.len();

/// Length of a branch this edge makes: cookie, mark, 16 hex digits of the
/// transaction hash, 8 of the loop key, 16 of the next-hop MAC.
pub const BRANCH_LEN: usize = TX_AT + TX_LEN + LOOP_KEY_LEN + HOP_LEN;

/// Length of a dialog cookie (16 hex digits).
pub const COOKIE_LEN: usize = 16;

/// Longest encoded dialog target: an IPv6 address and a port in hex.
pub const TARGET_MAX_LEN: usize = 2 * (16 + 2);

/// Length of this edge's To tags: `dce` and 16 hex digits.
pub const LOCAL_TAG_LEN: usize = 19;

/// Hash domains, so that no MAC of one kind is ever valid as another.
mod domain {
    pub const TRANSACTION: u8 = 1;
    pub const COOKIE: u8 = 2;
    pub const LOOP: u8 = 3;
    pub const HOP: u8 = 4;
    pub const LOCAL_TAG: u8 = 5;
    pub const TABLE_SEED: u8 = 6;
    pub const FLOW: u8 = 7;
    pub const FLEET: u8 = 8;
}

/// Length of a flow token: 16 hex digits of the connection, 16 of its MAC.
pub const FLOW_TOKEN_LEN: usize = 32;

/// The next hop a request is sent to, as the branch's MAC binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// An address, reached over a transport (a route target, a Request-URI,
    /// a Route): its response must come from that address.
    Addr(SocketAddr, Transport),
    /// A connection of the stream layer (a flow token named it): its
    /// response must come back on that connection.
    Conn(u64),
}

impl From<SocketAddr> for Hop {
    fn from(addr: SocketAddr) -> Hop {
        Hop::Addr(addr, Transport::Udp)
    }
}

/// The secret behind branches and cookies. Each appliance start picks a new
/// one unless the configuration pins it (several edges behind one address
/// must share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    k0: u64,
    k1: u64,
}

/// What a response must match to be relayed: the identity of the request
/// this edge forwarded.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// Call-ID of the request.
    pub call_id: &'a [u8],
    /// CSeq number of the request (a CANCEL and a non-2xx ACK share their
    /// INVITE's).
    pub cseq: u32,
    /// An emergency call's transaction.
    pub emergency: bool,
    /// The connection the request came in on (TCP or TLS), which its
    /// response goes back on; `None` for UDP.
    pub conn: Option<u64>,
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

    /// The seed of a per-source table's hash, derived so that no one who
    /// does not hold the secret can choose sources that collide.
    pub fn table_seed(&self, table: u8) -> HashSeed {
        let mut a = self.hasher(domain::TABLE_SEED);
        a.write_u8(table);
        let mut b = a;
        b.write_u8(0xff);
        HashSeed::new(a.finish(), b.finish())
    }

    /// The key that signs the messages edges of one fleet exchange over
    /// their bus: derived from this secret (which every edge of a fleet
    /// shares) in a domain of its own, so that no fleet signature is ever a
    /// valid branch, cookie or tag, and a party that holds only the bus
    /// credentials can forge none.
    pub fn fleet_key(&self) -> (u64, u64) {
        let a = self.hasher(domain::FLEET);
        let mut b = a;
        b.write_u8(0xff);
        (a.finish(), b.finish())
    }

    /// The branch for a request forwarded to `next_hop`.
    ///
    /// `transaction` are the parts of the incoming request that identify its
    /// transaction: retransmissions, and a CANCEL or non-2xx ACK of the same
    /// INVITE, give the same parts and so the same branch (RFC 3261 section
    /// 16.11). `loop_parts` are the parts that do not change as the request
    /// travels (Request-URI, From tag, Call-ID, CSeq number); their hash is
    /// the loop key, so a request that comes back with this edge's Via and
    /// the same loop key has looped (section 16.3, item 4). The last part is
    /// a MAC over the transaction hash, `next_hop` and `tx`: only that hop,
    /// answering that request, produces a response that
    /// [`Secret::response_is_ours`] accepts. Each part is length-prefixed so
    /// that moving bytes between parts changes the hash.
    pub fn branch<'a>(
        &self,
        transaction: impl IntoIterator<Item = &'a [u8]>,
        loop_parts: impl IntoIterator<Item = &'a [u8]>,
        next_hop: impl Into<Hop>,
        tx: Transaction<'_>,
    ) -> [u8; BRANCH_LEN] {
        let next_hop = next_hop.into();
        let mut out = [0u8; BRANCH_LEN];
        out[..MAGIC_COOKIE.len()].copy_from_slice(MAGIC_COOKIE);
        out[MAGIC_COOKIE.len()..TX_AT].copy_from_slice(if tx.emergency {
            EMERGENCY_MARK
        } else {
            BRANCH_MARK
        });
        let mut txh = [0u8; TX_LEN];
        hex16(
            hash_parts(self.hasher(domain::TRANSACTION), transaction),
            &mut txh,
        );
        out[TX_AT..TX_AT + TX_LEN].copy_from_slice(&txh);
        out[TX_AT + TX_LEN..TX_AT + TX_LEN + LOOP_KEY_LEN]
            .copy_from_slice(&self.loop_key(loop_parts));
        let hop = self.hop_mac(&txh, next_hop, tx);
        out[TX_AT + TX_LEN + LOOP_KEY_LEN..].copy_from_slice(&hop);
        out
    }

    fn hop_mac(&self, txh: &[u8], hop: Hop, tx: Transaction<'_>) -> [u8; HOP_LEN] {
        let mut h = self.hasher(domain::HOP);
        h.write(txh);
        match hop {
            // A UDP hop hashes as it always did: branches of UDP calls do
            // not change with the stream transports.
            Hop::Addr(addr, Transport::Udp) => write_addr(&mut h, addr),
            Hop::Addr(addr, t) => {
                write_addr(&mut h, addr);
                h.write_u8(b'a' + t as u8);
            }
            Hop::Conn(c) => {
                h.write_u8(b'c');
                h.write_u64(c);
            }
        }
        h.write_usize(tx.call_id.len());
        h.write(tx.call_id);
        h.write_u32(tx.cseq);
        h.write_u8(tx.emergency as u8);
        if let Some(c) = tx.conn {
            h.write_u8(b'i');
            h.write_u64(c);
        }
        let mut out = [0u8; HOP_LEN];
        hex16(h.finish(), &mut out);
        out
    }

    /// True when `branch` is one this edge made for a request with the
    /// identity `tx` that it sent to `from`: the response that carries it
    /// on top came from the hop the request went to, for that request.
    /// A branch of the right shape made up by anyone else, or a true branch
    /// echoed from another address or for another transaction, fails.
    pub fn response_is_ours(
        &self,
        branch: &[u8],
        from: impl Into<Hop>,
        tx: Transaction<'_>,
    ) -> bool {
        if !is_our_branch(branch) || branch_is_emergency(branch) != tx.emergency {
            return false;
        }
        let txh = &branch[TX_AT..TX_AT + TX_LEN];
        let expected = self.hop_mac(txh, from.into(), tx);
        constant_time_eq(&expected, &branch[TX_AT + TX_LEN + LOOP_KEY_LEN..])
    }

    /// The flow token of connection `conn`: its number and a MAC, so that
    /// only a token this edge wrote names a connection
    /// ([`Secret::verify_flow_token`]).
    pub fn flow_token(&self, conn: u64) -> [u8; FLOW_TOKEN_LEN] {
        let mut out = [0u8; FLOW_TOKEN_LEN];
        hex16(conn, &mut out[..16]);
        let mut h = self.hasher(domain::FLOW);
        h.write_u64(conn);
        hex16(h.finish(), &mut out[16..]);
        out
    }

    /// The connection a flow token names, when this edge made it.
    pub fn verify_flow_token(&self, token: &[u8]) -> Option<u64> {
        if token.len() != FLOW_TOKEN_LEN {
            return None;
        }
        let conn = read_hex16(&token[..16])?;
        constant_time_eq(&self.flow_token(conn), token).then_some(conn)
    }

    /// The loop key of a request: the [`LOOP_KEY_LEN`] characters in the
    /// middle of the branches this edge makes for it.
    pub fn loop_key<'a>(
        &self,
        loop_parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> [u8; LOOP_KEY_LEN] {
        let mut hex = [0u8; 16];
        hex16(hash_parts(self.hasher(domain::LOOP), loop_parts), &mut hex);
        let mut out = [0u8; LOOP_KEY_LEN];
        out.copy_from_slice(&hex[..LOOP_KEY_LEN]);
        out
    }

    /// The dialog cookie for `src`, the dialog (`call_id`, `from_tag`) and
    /// the `target` the initial INVITE went to, in cookie epoch `epoch`.
    fn cookie_for(&self, src: IpAddr, epoch: u64, dialog: Dialog<'_>) -> [u8; COOKIE_LEN] {
        let mut h = self.hasher(domain::COOKIE);
        h.write(&SourceKey::new(src).to_bytes());
        h.write_u64(epoch);
        h.write_usize(dialog.call_id.len());
        h.write(dialog.call_id);
        h.write_usize(dialog.from_tag.len());
        h.write(dialog.from_tag);
        write_addr(&mut h, dialog.target);
        // UDP cookies hash as they always did.
        if dialog.transport != Transport::Udp {
            h.write_u8(b'a' + dialog.transport as u8);
        }
        let mut out = [0u8; COOKIE_LEN];
        hex16(h.finish(), &mut out);
        out
    }

    /// The cookie to put in the Record-Route of an initial INVITE from `src`
    /// at `now` (nanoseconds); `period_ns` is how long one epoch lasts.
    pub fn dialog_cookie(
        &self,
        src: IpAddr,
        dialog: Dialog<'_>,
        now: u64,
        period_ns: u64,
    ) -> [u8; COOKIE_LEN] {
        self.cookie_for(src, now / period_ns.max(1), dialog)
    }

    /// True when `cookie` is the one `src` was given for `dialog` in this
    /// epoch or the previous one: the source received a response routed
    /// through this edge for that very dialog, so its address is not
    /// spoofed, and the dialog's target is the one the edge chose.
    pub fn verify_dialog_cookie(
        &self,
        src: IpAddr,
        cookie: &[u8],
        dialog: Dialog<'_>,
        now: u64,
        period_ns: u64,
    ) -> bool {
        if cookie.len() != COOKIE_LEN {
            return false;
        }
        let epoch = now / period_ns.max(1);
        let matches = |e: u64| constant_time_eq(&self.cookie_for(src, e, dialog), cookie);
        matches(epoch) | (epoch > 0 && matches(epoch - 1))
    }

    /// The To tag of this edge's own answers in the dialog `call_id` /
    /// `from_tag`, answered to `to`: derived, so retransmissions and the ACK
    /// carry the same one, and bound to the address, so an ACK that echoes
    /// it from that address proves the address received the answer.
    pub fn local_tag(&self, call_id: &[u8], from_tag: &[u8], to: IpAddr) -> [u8; LOCAL_TAG_LEN] {
        let mut h = self.hasher(domain::LOCAL_TAG);
        h.write_usize(call_id.len());
        h.write(call_id);
        h.write_usize(from_tag.len());
        h.write(from_tag);
        h.write(&SourceKey::new(to).to_bytes());
        let mut tag = [0u8; LOCAL_TAG_LEN];
        tag[..3].copy_from_slice(b"dce");
        hex16(h.finish(), &mut tag[3..]);
        tag
    }
}

/// What a dialog cookie binds besides the caller's address.
#[derive(Debug, Clone, Copy)]
pub struct Dialog<'a> {
    /// The dialog's Call-ID.
    pub call_id: &'a [u8],
    /// The caller's tag (the From tag of its requests).
    pub from_tag: &'a [u8],
    /// Where the initial INVITE was forwarded.
    pub target: SocketAddr,
    /// Over what.
    pub transport: Transport,
}

/// The dialog target as the Record-Route carries it (`dct=`): the address
/// bytes and the port, in lower-case hex. Returns the length written.
pub fn encode_target(target: SocketAddr, out: &mut [u8; TARGET_MAX_LEN]) -> usize {
    let mut raw = [0u8; 18];
    let n = match target.ip() {
        IpAddr::V4(a) => {
            raw[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            raw[..16].copy_from_slice(&a.octets());
            16
        }
    };
    raw[n..n + 2].copy_from_slice(&target.port().to_be_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in raw[..n + 2].iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    2 * (n + 2)
}

/// Reads a `dct=` value back; `None` for anything [`encode_target`] does
/// not write.
pub fn decode_target(text: &[u8]) -> Option<SocketAddr> {
    let n = match text.len() {
        12 => 4,
        36 => 16,
        _ => return None,
    };
    let mut raw = [0u8; 18];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0])?;
        let lo = hex_value(pair[1])?;
        raw[i] = (hi << 4) | lo;
    }
    let port = u16::from_be_bytes([raw[n], raw[n + 1]]);
    let ip = if n == 4 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&raw[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    Some(SocketAddr::new(ip, port))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn write_addr(h: &mut SipHasher13, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(a) => {
            h.write_u8(4);
            h.write(&a.octets());
        }
        IpAddr::V6(a) => {
            h.write_u8(6);
            h.write(&a.octets());
        }
    }
    h.write_u16(addr.port());
}

/// True when `branch` has the shape of a branch this edge makes (its MAC
/// unchecked: see [`Secret::response_is_ours`]).
pub fn is_our_branch(branch: &[u8]) -> bool {
    branch.len() == BRANCH_LEN
        && branch.starts_with(MAGIC_COOKIE)
        && (branch[MAGIC_COOKIE.len()..].starts_with(BRANCH_MARK) || branch_is_emergency(branch))
        && branch[TX_AT..].iter().all(u8::is_ascii_hexdigit)
}

/// True when `branch` carries the emergency mark (its MAC unchecked).
pub fn branch_is_emergency(branch: &[u8]) -> bool {
    branch.len() == BRANCH_LEN && branch[MAGIC_COOKIE.len()..].starts_with(EMERGENCY_MARK)
}

fn hash_parts<'a>(mut h: SipHasher13, parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    for part in parts {
        h.write_usize(part.len());
        h.write(part);
    }
    h.finish()
}

/// The loop key of a branch this edge made, if it has the shape of one.
pub fn branch_loop_key(branch: &[u8]) -> Option<&[u8]> {
    is_our_branch(branch).then(|| &branch[TX_AT + TX_LEN..TX_AT + TX_LEN + LOOP_KEY_LEN])
}

/// Writes `v` as 16 lower-case hex digits into `out` (the `dcc` Via
/// parameter that names a connection).
pub fn write_hex16(v: u64, out: &mut [u8]) {
    hex16(v, out)
}

/// Reads 16 hex digits written by [`write_hex16`].
pub fn read_hex16(text: &[u8]) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    text.iter()
        .try_fold(0u64, |v, &b| Some((v << 4) | u64::from(hex_value(b)?)))
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

    fn hop() -> SocketAddr {
        "198.18.0.100:5060".parse().unwrap()
    }

    fn tx() -> Transaction<'static> {
        Transaction {
            call_id: b"call-1@198.18.0.10",
            cseq: 1,
            emergency: false,
            conn: None,
        }
    }

    fn branch(s: &Secret, parts: &[&[u8]], loop_parts: &[&[u8]]) -> [u8; BRANCH_LEN] {
        s.branch(
            parts.iter().copied(),
            loop_parts.iter().copied(),
            hop(),
            tx(),
        )
    }

    #[test]
    fn branch_is_stable_for_the_same_parts_and_ours() {
        let s = secret();
        let a = branch(
            &s,
            &[b"z9hG4bK776asdhds", b"198.18.0.1:5060"],
            &[b"sip:1@e"],
        );
        let b = branch(
            &s,
            &[b"z9hG4bK776asdhds", b"198.18.0.1:5060"],
            &[b"sip:1@e"],
        );
        assert_eq!(a, b);
        assert!(is_our_branch(&a));
        assert!(a.starts_with(b"z9hG4bKdce"));
    }

    #[test]
    fn branch_changes_with_parts_boundaries_and_secret() {
        let s = secret();
        assert_ne!(
            branch(&s, &[b"ab", b"c"], &[]),
            branch(&s, &[b"a", b"bc"], &[])
        );
        assert_ne!(
            branch(&s, &[b"x"], &[]),
            branch(&Secret::new(1, 2), &[b"x"], &[])
        );
    }

    #[test]
    fn loop_key_sits_in_the_branch_and_ignores_the_transaction() {
        let s = secret();
        let a = branch(&s, &[b"z9hG4bKa"], &[b"sip:1@e", b"tag"]);
        let b = branch(&s, &[b"z9hG4bKb"], &[b"sip:1@e", b"tag"]);
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
    fn a_response_is_ours_only_from_the_hop_and_for_the_transaction() {
        let s = secret();
        let b = branch(&s, &[b"z9hG4bKx"], &[b"sip:1@e"]);
        assert!(s.response_is_ours(&b, hop(), tx()));
        // Another host echoing the branch.
        assert!(!s.response_is_ours(&b, "198.18.0.101:5060".parse::<SocketAddr>().unwrap(), tx()));
        assert!(!s.response_is_ours(&b, "198.18.0.100:5061".parse::<SocketAddr>().unwrap(), tx()));
        // Another transaction.
        let other = Transaction {
            call_id: b"call-2@198.18.0.10",
            ..tx()
        };
        assert!(!s.response_is_ours(&b, hop(), other));
        assert!(!s.response_is_ours(&b, hop(), Transaction { cseq: 2, ..tx() }));
        // A branch of the right shape made up by someone else.
        let mut forged = b;
        forged[BRANCH_LEN - 1] = if forged[BRANCH_LEN - 1] == b'0' {
            b'1'
        } else {
            b'0'
        };
        assert!(is_our_branch(&forged));
        assert!(!s.response_is_ours(&forged, hop(), tx()));
        // Another edge's secret.
        assert!(!Secret::new(5, 6).response_is_ours(&b, hop(), tx()));
    }

    #[test]
    fn an_emergency_branch_is_marked_and_cannot_be_flipped() {
        let s = secret();
        let sos = Transaction {
            emergency: true,
            ..tx()
        };
        let b = s.branch([&b"z9hG4bKx"[..]], [&b"sip:911@e"[..]], hop(), sos);
        assert!(b.starts_with(b"z9hG4bKdcs"));
        assert!(is_our_branch(&b) && branch_is_emergency(&b));
        assert!(s.response_is_ours(&b, hop(), sos));
        // The same MAC under the ordinary mark, or the other way round, fails.
        let mut flipped = b;
        flipped[MAGIC_COOKIE.len()..TX_AT].copy_from_slice(BRANCH_MARK);
        assert!(!s.response_is_ours(&flipped, hop(), tx()));
        let ordinary = branch(&s, &[b"z9hG4bKx"], &[b"sip:911@e"]);
        let mut raised = ordinary;
        raised[MAGIC_COOKIE.len()..TX_AT].copy_from_slice(EMERGENCY_MARK);
        assert!(!s.response_is_ours(&raised, hop(), sos));
    }

    fn dialog(target: &str) -> Dialog<'static> {
        Dialog {
            call_id: b"call-9",
            from_tag: b"ft9",
            target: target.parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    #[test]
    fn a_dialog_cookie_binds_the_target_transport() {
        let s = secret();
        let src: IpAddr = "198.18.5.5".parse().unwrap();
        let d = dialog("198.18.0.100:5061");
        let tls = Dialog {
            transport: Transport::Tls,
            ..d
        };
        let c = s.dialog_cookie(src, tls, HOUR, HOUR);
        assert!(s.verify_dialog_cookie(src, &c, tls, HOUR, HOUR));
        assert!(!s.verify_dialog_cookie(src, &c, d, HOUR, HOUR));
        assert!(!s.verify_dialog_cookie(
            src,
            &c,
            Dialog {
                transport: Transport::Tcp,
                ..d
            },
            HOUR,
            HOUR
        ));
    }

    #[test]
    fn a_response_to_a_request_that_came_on_a_connection_names_that_connection() {
        let s = secret();
        let on_a = Transaction {
            conn: Some(7),
            ..tx()
        };
        let b = s.branch([&b"z9hG4bKx"[..]], [&b"sip:1@e"[..]], hop(), on_a);
        assert!(s.response_is_ours(&b, hop(), on_a));
        // The connection named in the Via changed: another customer's.
        for other in [Some(8), None] {
            assert!(!s.response_is_ours(
                &b,
                hop(),
                Transaction {
                    conn: other,
                    ..tx()
                }
            ));
        }
    }

    #[test]
    fn a_hop_over_a_stream_or_a_connection_is_its_own_hop() {
        let s = secret();
        let tls = Hop::Addr(hop(), Transport::Tls);
        let b = s.branch([&b"z9hG4bKx"[..]], [&b"sip:1@e"[..]], tls, tx());
        assert!(s.response_is_ours(&b, tls, tx()));
        assert!(
            !s.response_is_ours(&b, hop(), tx()),
            "the same address over UDP"
        );
        assert!(!s.response_is_ours(&b, Hop::Addr(hop(), Transport::Tcp), tx()));
        let flow = s.branch([&b"z9hG4bKx"[..]], [&b"sip:1@e"[..]], Hop::Conn(3), tx());
        assert!(s.response_is_ours(&flow, Hop::Conn(3), tx()));
        assert!(!s.response_is_ours(&flow, Hop::Conn(4), tx()));
    }

    #[test]
    fn flow_tokens_name_their_connection_and_forgeries_name_none() {
        let s = secret();
        let t = s.flow_token(0x1234);
        assert_eq!(s.verify_flow_token(&t), Some(0x1234));
        let mut other = s.flow_token(0x1235);
        assert_eq!(s.verify_flow_token(&other), Some(0x1235));
        // Renumbered without the MAC: refused.
        other[..16].copy_from_slice(&t[..16]);
        assert_eq!(s.verify_flow_token(&other), None);
        assert_eq!(Secret::new(1, 2).verify_flow_token(&t), None);
        assert_eq!(s.verify_flow_token(b"0000000000001234"), None);
        assert_eq!(s.verify_flow_token(&[b'z'; FLOW_TOKEN_LEN]), None);
    }

    #[test]
    fn dialog_cookie_verifies_for_its_source_and_dialog_in_this_and_the_next_epoch() {
        let s = secret();
        let src: IpAddr = "198.18.5.5".parse().unwrap();
        let d = dialog("198.18.0.100:5060");
        let c = s.dialog_cookie(src, d, 10 * HOUR + 5, HOUR);
        assert!(s.verify_dialog_cookie(src, &c, d, 10 * HOUR + 9, HOUR));
        assert!(s.verify_dialog_cookie(src, &c, d, 11 * HOUR + 1, HOUR));
        assert!(!s.verify_dialog_cookie(src, &c, d, 12 * HOUR + 1, HOUR));
    }

    #[test]
    fn dialog_cookie_fails_for_another_source_dialog_target_or_garbage() {
        let s = secret();
        let src: IpAddr = "198.18.5.5".parse().unwrap();
        let d = dialog("198.18.0.100:5060");
        let c = s.dialog_cookie(src, d, HOUR, HOUR);
        let other: IpAddr = "198.18.5.6".parse().unwrap();
        assert!(!s.verify_dialog_cookie(other, &c, d, HOUR, HOUR));
        let elsewhere = dialog("203.0.113.9:5060");
        assert!(!s.verify_dialog_cookie(src, &c, elsewhere, HOUR, HOUR));
        let other_call = Dialog {
            call_id: b"call-10",
            ..d
        };
        assert!(!s.verify_dialog_cookie(src, &c, other_call, HOUR, HOUR));
        let other_tag = Dialog {
            from_tag: b"ft10",
            ..d
        };
        assert!(!s.verify_dialog_cookie(src, &c, other_tag, HOUR, HOUR));
        assert!(!s.verify_dialog_cookie(src, b"0000000000000000", d, HOUR, HOUR));
        assert!(!s.verify_dialog_cookie(src, b"short", d, HOUR, HOUR));
    }

    #[test]
    fn dialog_targets_round_trip_and_garbage_is_refused() {
        let mut buf = [0u8; TARGET_MAX_LEN];
        for t in ["198.18.0.100:5060", "[2001:db8::7]:5070", "10.0.0.1:1"] {
            let a: SocketAddr = t.parse().unwrap();
            let n = encode_target(a, &mut buf);
            assert_eq!(decode_target(&buf[..n]), Some(a), "{t}");
        }
        assert_eq!(decode_target(b"c6120064"), None);
        assert_eq!(decode_target(b"c612006413c4z"), None);
        assert_eq!(decode_target(b"C612006413C4"), None);
    }

    #[test]
    fn a_local_tag_is_bound_to_the_address_answered() {
        let s = secret();
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        let t = s.local_tag(b"c", b"f", a);
        assert!(t.starts_with(b"dce"));
        assert_eq!(t, s.local_tag(b"c", b"f", a));
        assert_ne!(t, s.local_tag(b"c", b"f", b));
        assert_ne!(t, s.local_tag(b"c2", b"f", a));
    }
}
