//! HTTP digest authentication for SIP REGISTER (RFC 2617, as used by RFC 3261
//! section 22.4; MD5, the algorithm RFC 8760 keeps as the default). Both the
//! caller's side (answer a challenge) and the server's side (check an answer).

use md5::{Digest, Md5};

/// A `WWW-Authenticate: Digest ...` challenge, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Challenge<'a> {
    /// `realm`.
    pub realm: &'a [u8],
    /// `nonce`.
    pub nonce: &'a [u8],
    /// `opaque`, echoed back when present.
    pub opaque: Option<&'a [u8]>,
    /// True when the server offers `qop=auth`.
    pub qop_auth: bool,
    /// `algorithm`, when given (only MD5 is answered).
    pub algorithm: Option<&'a [u8]>,
}

/// Why a challenge or an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The header is not a Digest challenge/answer.
    #[error("not a Digest header")]
    NotDigest,
    /// A parameter the computation needs is missing.
    #[error("Digest header without {0}")]
    Missing(&'static str),
    /// Only MD5 is supported.
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
}

/// Iterates over `name=value` pairs of a Digest header value (after the
/// scheme), unquoting quoted values. Values with escaped quotes keep the
/// backslashes (realms and nonces never contain them in practice).
fn params(mut s: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || loop {
        while let [b' ' | b'\t' | b',' | b'\r' | b'\n', rest @ ..] = s {
            s = rest;
        }
        if s.is_empty() {
            return None;
        }
        let eq = s.iter().position(|&b| b == b'=' || b == b',')?;
        if s[eq] == b',' {
            s = &s[eq..];
            continue;
        }
        let name = trim(&s[..eq]);
        let rest = &s[eq + 1..];
        let rest = trim_start(rest);
        let (value, after) = if let [b'"', inner @ ..] = rest {
            let end = inner.iter().position(|&b| b == b'"').unwrap_or(inner.len());
            (&inner[..end], inner.get(end + 1..).unwrap_or(&[]))
        } else {
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            (trim(&rest[..end]), &rest[end..])
        };
        s = after;
        return Some((name, value));
    })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let i = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[i..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let j = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |j| j + 1);
    &s[..j]
}

fn strip_scheme(value: &[u8]) -> Result<&[u8], DigestError> {
    let v = trim_start(value);
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"digest") {
        return Err(DigestError::NotDigest);
    }
    Ok(&v[6..])
}

impl<'a> Challenge<'a> {
    /// Parses the value of a `WWW-Authenticate` or `Proxy-Authenticate` header.
    pub fn parse(value: &'a [u8]) -> Result<Self, DigestError> {
        let mut c = Challenge::default();
        let mut have_realm = false;
        let mut have_nonce = false;
        for (name, v) in params(strip_scheme(value)?) {
            if name.eq_ignore_ascii_case(b"realm") {
                c.realm = v;
                have_realm = true;
            } else if name.eq_ignore_ascii_case(b"nonce") {
                c.nonce = v;
                have_nonce = true;
            } else if name.eq_ignore_ascii_case(b"opaque") {
                c.opaque = Some(v);
            } else if name.eq_ignore_ascii_case(b"qop") {
                c.qop_auth = v
                    .split(|&b| b == b',')
                    .any(|q| trim(q).eq_ignore_ascii_case(b"auth"));
            } else if name.eq_ignore_ascii_case(b"algorithm") {
                c.algorithm = Some(v);
            }
        }
        if !have_realm {
            return Err(DigestError::Missing("realm"));
        }
        if !have_nonce {
            return Err(DigestError::Missing("nonce"));
        }
        if let Some(a) = c.algorithm {
            if !a.eq_ignore_ascii_case(b"md5") {
                return Err(DigestError::Algorithm(
                    String::from_utf8_lossy(a).into_owned(),
                ));
            }
        }
        Ok(c)
    }
}

/// Lower-case hex of an MD5 digest.
pub type Hex32 = [u8; 32];

fn md5_hex(parts: &[&[u8]]) -> Hex32 {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    let digest = h.finalize();
    let mut out = [0u8; 32];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The inputs of one digest answer.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// User name.
    pub username: &'a [u8],
    /// Password.
    pub password: &'a [u8],
    /// Request method (`REGISTER`).
    pub method: &'a [u8],
    /// The digest-uri (the Request-URI).
    pub uri: &'a [u8],
    /// Client nonce (used with qop=auth).
    pub cnonce: &'a [u8],
    /// Nonce count, 8 hex digits (used with qop=auth).
    pub nc: &'a [u8],
}

/// The `response` value (RFC 2617 section 3.2.2.1): with qop=auth
/// `MD5(HA1:nonce:nc:cnonce:auth:HA2)`, without qop `MD5(HA1:nonce:HA2)`.
pub fn response(c: &Credentials<'_>, realm: &[u8], nonce: &[u8], qop_auth: bool) -> Hex32 {
    let ha1 = md5_hex(&[c.username, realm, c.password]);
    let ha2 = md5_hex(&[c.method, c.uri]);
    if qop_auth {
        md5_hex(&[&ha1, nonce, c.nc, c.cnonce, b"auth", &ha2])
    } else {
        md5_hex(&[&ha1, nonce, &ha2])
    }
}

/// Appends an `Authorization: Digest ...` header line (with CRLF) answering
/// `challenge` to `out`.
pub fn write_authorization(
    out: &mut crate::msgbuf::MsgBuf<'_>,
    ch: &Challenge<'_>,
    c: &Credentials<'_>,
) {
    let resp = response(c, ch.realm, ch.nonce, ch.qop_auth);
    out.put(b"Authorization: Digest username=\"");
    out.put(c.username);
    out.put(b"\", realm=\"");
    out.put(ch.realm);
    out.put(b"\", nonce=\"");
    out.put(ch.nonce);
    out.put(b"\", uri=\"");
    out.put(c.uri);
    out.put(b"\", response=\"");
    out.put(&resp);
    out.put(b"\", algorithm=MD5");
    if ch.qop_auth {
        out.put(b", qop=auth, nc=");
        out.put(c.nc);
        out.put(b", cnonce=\"");
        out.put(c.cnonce);
        out.put(b"\"");
    }
    if let Some(o) = ch.opaque {
        out.put(b", opaque=\"");
        out.put(o);
        out.put(b"\"");
    }
    out.put(b"\r\n");
}

/// An `Authorization: Digest ...` answer, borrowed from the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answer<'a> {
    /// `username`.
    pub username: &'a [u8],
    /// `realm`.
    pub realm: &'a [u8],
    /// `nonce`.
    pub nonce: &'a [u8],
    /// `uri`.
    pub uri: &'a [u8],
    /// `response`.
    pub response: &'a [u8],
    /// `qop` (empty when absent).
    pub qop: &'a [u8],
    /// `nc`.
    pub nc: &'a [u8],
    /// `cnonce`.
    pub cnonce: &'a [u8],
}

impl<'a> Answer<'a> {
    /// Parses the value of an `Authorization` header.
    pub fn parse(value: &'a [u8]) -> Result<Self, DigestError> {
        let mut a = Answer::default();
        for (name, v) in params(strip_scheme(value)?) {
            let slot = match name.to_ascii_lowercase().as_slice() {
                b"username" => &mut a.username,
                b"realm" => &mut a.realm,
                b"nonce" => &mut a.nonce,
                b"uri" => &mut a.uri,
                b"response" => &mut a.response,
                b"qop" => &mut a.qop,
                b"nc" => &mut a.nc,
                b"cnonce" => &mut a.cnonce,
                _ => continue,
            };
            *slot = v;
        }
        if a.username.is_empty() {
            return Err(DigestError::Missing("username"));
        }
        if a.response.is_empty() {
            return Err(DigestError::Missing("response"));
        }
        Ok(a)
    }

    /// True when the answer proves knowledge of `password` for `method`.
    pub fn verify(&self, method: &[u8], password: &[u8]) -> bool {
        let c = Credentials {
            username: self.username,
            password,
            method,
            uri: self.uri,
            cnonce: self.cnonce,
            nc: self.nc,
        };
        let qop_auth = self.qop.eq_ignore_ascii_case(b"auth");
        let expect = response(&c, self.realm, self.nonce, qop_auth);
        self.response.eq_ignore_ascii_case(&expect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2617 section 3.5.
    const RFC_CHALLENGE: &[u8] = b"Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    fn mufasa<'a>() -> Credentials<'a> {
        Credentials {
            username: b"Mufasa",
            password: b"Circle Of Life",
            method: b"GET",
            uri: b"/dir/index.html",
            cnonce: b"0a4f113b",
            nc: b"00000001",
        }
    }

    #[test]
    fn rfc2617_example_response_matches() {
        let ch = Challenge::parse(RFC_CHALLENGE).unwrap();
        assert_eq!(ch.realm, b"testrealm@host.com");
        assert_eq!(ch.nonce, b"dcd98b7102dd2f0e8b11d0f600bfb0c093");
        assert_eq!(ch.opaque, Some(&b"5ccc069c403ebaf9f0171e9517f40e41"[..]));
        assert!(ch.qop_auth);
        let r = response(&mufasa(), ch.realm, ch.nonce, true);
        assert_eq!(&r, b"6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc2617_example_verifies_on_the_server_side() {
        let v = b"Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let a = Answer::parse(v).unwrap();
        assert!(a.verify(b"GET", b"Circle Of Life"));
        assert!(!a.verify(b"GET", b"circle of life"));
    }

    #[test]
    fn written_authorization_round_trips_through_the_verifier() {
        let ch = Challenge::parse(RFC_CHALLENGE).unwrap();
        let mut buf = [0u8; 512];
        let mut out = crate::msgbuf::MsgBuf::new(&mut buf);
        write_authorization(&mut out, &ch, &mufasa());
        let line = out.as_bytes().to_vec();
        let value = line.strip_prefix(b"Authorization: ").unwrap();
        let a = Answer::parse(value).unwrap();
        assert_eq!(a.response, b"6629fae49393a05397450978507c4ef1");
        assert!(a.verify(b"GET", b"Circle Of Life"));
    }

    #[test]
    fn challenge_without_qop_uses_the_rfc2069_form() {
        let ch = Challenge::parse(b"Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!ch.qop_auth);
        let c = mufasa();
        let ha1 = md5_hex(&[c.username, b"r", c.password]);
        let ha2 = md5_hex(&[c.method, c.uri]);
        assert_eq!(
            response(&c, b"r", b"n", false),
            md5_hex(&[&ha1, b"n", &ha2])
        );
    }

    #[test]
    fn non_digest_and_incomplete_challenges_are_refused() {
        assert_eq!(
            Challenge::parse(b"Basic realm=\"x\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse(b"Digest realm=\"x\""),
            Err(DigestError::Missing("nonce"))
        );
        assert!(matches!(
            Challenge::parse(b"Digest realm=\"x\", nonce=\"y\", algorithm=SHA-256"),
            Err(DigestError::Algorithm(_))
        ));
    }
}
