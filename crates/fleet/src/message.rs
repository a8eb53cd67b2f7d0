//! What the edges of a fleet tell each other over the bus, and how it is
//! signed.
//!
//! Every message is a value in the bus's key-value store (JetStream KV),
//! under a key that names its kind, the edge that made it and what it is
//! about: `edge.<edge>` (heartbeat), `ban.<edge>.<network>`,
//! `verified.<edge>.<source>`, and in the operators' bucket
//! `op.<edge>.ban.<network>` / `op.<edge>.allow.<network>`. One key per
//! thing, so the store keeps only the latest of each, and a reader that
//! comes back after an outage reads the whole state again.
//!
//! The payload is `<MAC> <JSON>`: 16 hex digits of a SipHash-1-3 MAC over
//! the key and the JSON, keyed with a key derived from the proxy secret all
//! edges share. Whoever holds only the bus credentials (a monitoring tool,
//! a leaked password) can read the state but forge nothing; the key binds
//! the message to its key, so a valid message cannot be replayed under
//! another one. Times are wall-clock Unix milliseconds: edges run on
//! different machines, whose monotonic clocks have nothing in common.

use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;
use wire::Cidr;

/// The format this code writes and reads.
pub const VERSION: u32 = 1;

/// The largest payload read; anything longer is refused before parsing.
pub const MAX_PAYLOAD: usize = 4096;

/// The key messages are signed with (from `proxy::cookie::Secret::fleet_key`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacKey {
    k0: u64,
    k1: u64,
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    /// A key from its two halves.
    pub const fn new((k0, k1): (u64, u64)) -> MacKey {
        MacKey { k0, k1 }
    }

    fn mac(&self, key: &str, json: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_usize(key.len());
        h.write(key.as_bytes());
        h.write_usize(json.len());
        h.write(json);
        h.finish()
    }
}

/// What one edge says about itself, once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Heartbeat {
    /// Its own address.
    #[serde(default)]
    pub address: Option<String>,
    /// Whether it announces the service address (`None`: it announces
    /// nothing, no `[fleet.announce]`).
    #[serde(default)]
    pub announced: Option<bool>,
    /// Why it is withdrawn.
    #[serde(default)]
    pub reason: Option<String>,
    /// Its route table's version (a counter of its own).
    #[serde(default)]
    pub routes_version: u64,
    /// A digest of its route files: equal digests, equal tables.
    #[serde(default)]
    pub routes_digest: String,
    /// Bans it made and shared, still in force.
    #[serde(default)]
    pub bans_made: u64,
    /// Sources verified there.
    #[serde(default)]
    pub verified: u64,
    /// When it started (Unix ms).
    #[serde(default)]
    pub started_ms: u64,
}

/// An operator's action on one edge, applied by all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum OperatorAction {
    /// `dce-edge ban`.
    Ban {
        /// The network, as written (`198.51.100.0/24`).
        network: String,
        /// The reason name.
        reason: String,
        /// The operator's note.
        #[serde(default)]
        note: String,
        /// When it lapses (Unix ms); `None` until unbanned.
        until_ms: Option<u64>,
    },
    /// `dce-edge unban`.
    Unban {
        /// The network, as banned.
        network: String,
    },
    /// `dce-edge allow`.
    Allow {
        /// The network.
        network: String,
    },
    /// `dce-edge allow --remove`.
    Disallow {
        /// The network.
        network: String,
    },
}

impl OperatorAction {
    /// The network it is about, as written.
    pub fn network_text(&self) -> &str {
        match self {
            OperatorAction::Ban { network, .. }
            | OperatorAction::Unban { network }
            | OperatorAction::Allow { network }
            | OperatorAction::Disallow { network } => network,
        }
    }

    /// `ban` for bans and unbans, `allow` for the allowlist: one key per
    /// network and list, so the latest action on it is the one kept.
    pub fn list(&self) -> &'static str {
        match self {
            OperatorAction::Ban { .. } | OperatorAction::Unban { .. } => "ban",
            OperatorAction::Allow { .. } | OperatorAction::Disallow { .. } => "allow",
        }
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// The edge is alive, and this is its state.
    Heartbeat(Heartbeat),
    /// The edge banned a source under its own rules (the source had proved
    /// its address, then crossed an abuse limit or sent a scanner's
    /// signature).
    Ban {
        /// The source (one host).
        network: String,
        /// Why (`not_found`, `auth_failure`, `extension_scan`, `scanner`).
        reason: String,
        /// When it lapses (Unix ms).
        until_ms: u64,
    },
    /// A source proved its address to the edge.
    Verified {
        /// The source.
        source: IpAddr,
        /// When the proof lapses (Unix ms).
        until_ms: u64,
    },
    /// An operator's action.
    Operator(OperatorAction),
}

impl Body {
    /// The kind's name in keys, counters and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Heartbeat(_) => "heartbeat",
            Body::Ban { .. } => "ban",
            Body::Verified { .. } => "verified",
            Body::Operator(_) => "operator",
        }
    }
}

/// A message with its origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`VERSION`].
    pub v: u32,
    /// The fleet.
    pub fleet: String,
    /// The edge that made it.
    pub edge: String,
    /// When (Unix ms).
    pub at_ms: u64,
    /// What it says.
    pub body: Body,
}

/// A network or address as one token of a key: `198_18_0_9_32`,
/// `2001-db8--1_128` (keys allow letters, digits, `-`, `_`; `.` separates
/// tokens).
pub fn net_token(c: &Cidr) -> String {
    let addr = c.addr.to_string().replace(['.'], "_").replace(':', "-");
    format!("{addr}_{}", c.prefix)
}

/// The key a body belongs under, for the edge `edge`.
pub fn key_for(edge: &str, body: &Body) -> Option<String> {
    Some(match body {
        Body::Heartbeat(_) => format!("edge.{edge}"),
        Body::Ban { network, .. } => {
            format!("ban.{edge}.{}", net_token(&network.parse::<Cidr>().ok()?))
        }
        Body::Verified { source, .. } => {
            format!("verified.{edge}.{}", net_token(&Cidr::host(*source)))
        }
        Body::Operator(a) => format!(
            "op.{edge}.{}.{}",
            a.list(),
            net_token(&a.network_text().parse::<Cidr>().ok()?)
        ),
    })
}

/// The edge a key names (its second token), if it has the shape of ours.
pub fn key_origin(key: &str) -> Option<&str> {
    let mut t = key.split('.');
    let kind = t.next()?;
    let edge = t.next()?;
    matches!(kind, "edge" | "ban" | "verified" | "op").then_some(edge)
}

/// Why a payload was not taken as a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Longer than [`MAX_PAYLOAD`].
    TooLong,
    /// Not `<16 hex> <JSON>`, or JSON of another shape.
    Malformed,
    /// The MAC does not match: not made with the fleet's secret, or made
    /// for another key.
    BadSignature,
    /// A format this code does not read.
    Version,
}

impl Unreadable {
    /// The name in counters.
    pub fn name(self) -> &'static str {
        match self {
            Unreadable::TooLong => "too_long",
            Unreadable::Malformed => "malformed",
            Unreadable::BadSignature => "bad_signature",
            Unreadable::Version => "version",
        }
    }
}

/// Signs `envelope` for `key`.
pub fn seal(mac: &MacKey, key: &str, envelope: &Envelope) -> Vec<u8> {
    let json = serde_json::to_vec(envelope).expect("an envelope always serializes");
    let mut out = format!("{:016x} ", mac.mac(key, &json)).into_bytes();
    out.extend_from_slice(&json);
    out
}

/// Checks the signature of a payload stored under `key` and reads it.
pub fn open(mac: &MacKey, key: &str, payload: &[u8]) -> Result<Envelope, Unreadable> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Unreadable::TooLong);
    }
    if payload.len() < 18 || payload[16] != b' ' {
        return Err(Unreadable::Malformed);
    }
    let (hex, json) = (&payload[..16], &payload[17..]);
    let claimed = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or(Unreadable::Malformed)?;
    // Constant time is not needed for a MAC the reader recomputes and never
    // reveals, but it costs nothing.
    let expected = mac.mac(key, json);
    if (claimed ^ expected) != 0 {
        return Err(Unreadable::BadSignature);
    }
    let env: Envelope = serde_json::from_slice(json).map_err(|_| Unreadable::Malformed)?;
    if env.v != VERSION {
        return Err(Unreadable::Version);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: MacKey = MacKey { k0: 1, k1: 2 };

    fn ban() -> Envelope {
        Envelope {
            v: VERSION,
            fleet: "lab".into(),
            edge: "e1".into(),
            at_ms: 1_000,
            body: Body::Ban {
                network: "198.18.0.9/32".into(),
                reason: "not_found".into(),
                until_ms: 601_000,
            },
        }
    }

    #[test]
    fn a_sealed_message_opens_under_its_key_only() {
        let env = ban();
        let key = key_for("e1", &env.body).unwrap();
        assert_eq!(key, "ban.e1.198_18_0_9_32");
        let p = seal(&K, &key, &env);
        assert_eq!(open(&K, &key, &p).unwrap(), env);
        assert_eq!(
            open(&K, "ban.e1.198_18_0_10_32", &p),
            Err(Unreadable::BadSignature)
        );
        assert_eq!(
            open(&MacKey::new((1, 3)), &key, &p),
            Err(Unreadable::BadSignature)
        );
    }

    #[test]
    fn a_changed_byte_breaks_the_signature() {
        let env = ban();
        let key = key_for("e1", &env.body).unwrap();
        let mut p = seal(&K, &key, &env);
        let at = p.len() - 5;
        p[at] ^= 1;
        assert!(open(&K, &key, &p).is_err());
    }

    #[test]
    fn garbage_is_malformed_and_oversize_is_refused_unread() {
        assert_eq!(open(&K, "k", b"hello"), Err(Unreadable::Malformed));
        assert_eq!(
            open(&K, "k", b"zzzzzzzzzzzzzzzz {}"),
            Err(Unreadable::Malformed)
        );
        assert_eq!(
            open(&K, "k", &vec![b'a'; MAX_PAYLOAD + 1]),
            Err(Unreadable::TooLong)
        );
    }

    #[test]
    fn keys_name_kind_origin_and_subject() {
        let v6 = Body::Verified {
            source: "2001:db8::1".parse().unwrap(),
            until_ms: 1,
        };
        assert_eq!(key_for("e2", &v6).unwrap(), "verified.e2.2001-db8--1_128");
        let op = Body::Operator(OperatorAction::Allow {
            network: "198.51.100.0/24".into(),
        });
        assert_eq!(key_for("e3", &op).unwrap(), "op.e3.allow.198_51_100_0_24");
        assert_eq!(key_origin("op.e3.allow.198_51_100_0_24"), Some("e3"));
        assert_eq!(key_origin("edge.e1"), Some("e1"));
        assert_eq!(key_origin("other.e1"), None);
        let bad = Body::Ban {
            network: "not a network".into(),
            reason: "x".into(),
            until_ms: 1,
        };
        assert_eq!(key_for("e1", &bad), None);
    }
}
