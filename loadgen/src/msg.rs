//! Writing SIP messages into reusable buffers without allocating (with the
//! bounded writer [`MsgBuf`]): the identifiers the generator puts in its
//! calls ([`CallKey`]), and the requests and responses of the scenarios.

use std::net::SocketAddr;

use crate::msgbuf::MsgBuf;
use crate::sipmsg::SipView;
use sip::Method;

/// What identifies a call of this generator: the run, the thread, the call
/// table slot and the slot's generation (so late messages for a reused slot
/// are recognised). It is spelled into Call-ID, tags and branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey {
    /// Random per run, so that messages of an earlier run are not taken for
    /// calls of this one.
    pub run: u32,
    /// Sender thread.
    pub thread: u16,
    /// Slot in that thread's call table.
    pub slot: u32,
    /// Generation of the slot.
    pub generation: u32,
}

/// Suffix of every Call-ID the generator makes.
pub const CALL_ID_HOST: &[u8] = b"@dce-loadgen";

impl CallKey {
    /// Writes `run.thread.slot.generation` in fixed-width hex.
    pub fn write(&self, out: &mut MsgBuf<'_>) {
        out.put_hex_padded(u64::from(self.run), 8);
        out.put(b".");
        out.put_hex_padded(u64::from(self.thread), 4);
        out.put(b".");
        out.put_hex_padded(u64::from(self.slot), 8);
        out.put(b".");
        out.put_hex_padded(u64::from(self.generation), 8);
    }

    /// Reads a key back from a Call-ID this generator wrote.
    pub fn from_call_id(call_id: &[u8]) -> Option<CallKey> {
        let text = call_id.strip_suffix(CALL_ID_HOST)?;
        let mut parts = text.split(|&b| b == b'.');
        let mut next = || -> Option<u64> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 8 {
                return None;
            }
            p.iter().try_fold(0u64, |n, &b| {
                let d = (b as char).to_digit(16)?;
                Some(n * 16 + u64::from(d))
            })
        };
        let key = CallKey {
            run: next()? as u32,
            thread: u16::try_from(next()?).ok()?,
            slot: next()? as u32,
            generation: next()? as u32,
        };
        parts.next().is_none().then_some(key)
    }
}

/// Writes a minimal audio SDP offer or answer (RFC 4566) for `addr`.
pub fn write_sdp(out: &mut MsgBuf<'_>, addr: SocketAddr, session: u64) {
    let ip = addr.ip();
    let fam: &[u8] = if ip.is_ipv4() { b"IP4 " } else { b"IP6 " };
    let mut ipbuf = [0u8; 48];
    let ip_txt = {
        use std::io::Write;
        let mut cur = std::io::Cursor::new(&mut ipbuf[..]);
        let _ = write!(cur, "{ip}");
        let n = cur.position() as usize;
        &ipbuf[..n]
    };
    out.put(b"v=0\r\no=- ");
    out.put_u64(session);
    out.put(b" 1 IN ");
    out.put(fam);
    out.put(ip_txt);
    out.put(b"\r\ns=-\r\nc=IN ");
    out.put(fam);
    out.put(ip_txt);
    out.put(b"\r\nt=0 0\r\nm=audio ");
    out.put_u64(u64::from(addr.port().wrapping_add(2)));
    out.put(b" RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n");
}

/// The fixed parts of a caller's requests, formatted once per socket.
#[derive(Debug, Clone)]
pub struct CallerTemplate {
    /// The target as `ip:port`: host of Request-URIs and To.
    pub target: Vec<u8>,
    /// This socket's `ip:port`: Via sent-by and Contact.
    pub local: Vec<u8>,
    /// From user part.
    pub caller: Vec<u8>,
    /// User-Agent value.
    pub user_agent: Vec<u8>,
    /// SDP offer of this socket.
    pub sdp: Vec<u8>,
    /// How the caller's messages travel: the Via transport and the
    /// `transport=` of Request-URIs and Contact.
    pub transport: Transport,
}

/// The transport a caller's messages travel over (RFC 3261 section 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Datagrams, retransmitted by the transaction layer.
    #[default]
    Udp,
    /// A TCP connection, messages framed by Content-Length.
    Tcp,
    /// TLS over TCP, framed like TCP.
    Tls,
}

impl Transport {
    /// The lower-case name (`udp`, `tcp`, `tls`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The Via header's transport token (section 20.42).
    pub fn via(self) -> &'static [u8] {
        match self {
            Transport::Udp => b"UDP",
            Transport::Tcp => b"TCP",
            Transport::Tls => b"TLS",
        }
    }

    /// The URI parameter naming the transport (section 19.1.1): none for
    /// UDP, the default.
    pub fn uri_param(self) -> &'static [u8] {
        match self {
            Transport::Udp => b"",
            Transport::Tcp => b";transport=tcp",
            Transport::Tls => b";transport=tls",
        }
    }

    /// Whether the transport is reliable: no request retransmissions
    /// (RFC 3261 sections 17.1.1.2 and 17.1.2.2).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

/// Which transaction of a call a request belongs to; it is spelled into the
/// Via branch so each transaction has its own (RFC 3261 section 8.1.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Txn {
    /// The INVITE, its CANCEL, and the ACK of a non-2xx answer.
    Invite,
    /// The ACK of a 2xx answer (a transaction of its own, section 13.2.2.4).
    Ack2xx,
    /// The BYE.
    Bye,
    /// An OPTIONS ping.
    Options,
    /// A REGISTER, with its CSeq number telling the first from the answer
    /// to a challenge.
    Register,
}

impl Txn {
    fn letter(self) -> &'static [u8] {
        match self {
            Txn::Invite => b"i",
            Txn::Ack2xx => b"a",
            Txn::Bye => b"b",
            Txn::Options => b"o",
            Txn::Register => b"r",
        }
    }
}

/// A caller's request: what changes per message.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method.
    pub method: Method<'a>,
    /// Transaction (for the branch).
    pub txn: Txn,
    /// The dialed number or user (Request-URI and To user; for REGISTER the
    /// address of record).
    pub number: &'a [u8],
    /// Call identity.
    pub key: CallKey,
    /// CSeq number.
    pub cseq: u32,
    /// To tag, inside a dialog or when acknowledging a final answer.
    pub to_tag: Option<&'a [u8]>,
    /// Carry the SDP offer.
    pub with_sdp: bool,
    /// The dialog's route set (RFC 3261 section 12.1.2), written as a Route
    /// header in requests inside the dialog.
    pub route: Option<&'a [u8]>,
}

/// Writes a caller's request. Returns the length, or `None` if it did not
/// fit `buf`.
pub fn write_request(
    buf: &mut [u8],
    t: &CallerTemplate,
    r: &Request<'_>,
    auth: Option<(
        &crate::digest::Challenge<'_>,
        &crate::digest::Credentials<'_>,
    )>,
) -> Option<usize> {
    let mut out = MsgBuf::new(buf);
    let register = r.method == Method::Register;
    out.put(r.method.as_bytes());
    out.put(b" sip:");
    if !register {
        out.put(r.number);
        out.put(b"@");
    }
    out.put(&t.target);
    out.put(t.transport.uri_param());
    out.put(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.put(t.transport.via());
    out.put(b" ");
    out.put(&t.local);
    out.put(b";branch=z9hG4bK");
    r.key.write(&mut out);
    out.put(r.txn.letter());
    if r.txn == Txn::Register {
        out.put_u64(u64::from(r.cseq));
    }
    out.put(b";rport\r\nMax-Forwards: 70\r\nFrom: <sip:");
    if register {
        out.put(r.number);
        out.put(b"@");
        out.put(&t.target);
    } else {
        out.put(&t.caller);
        out.put(b"@");
        out.put(&t.local);
    }
    out.put(b">;tag=");
    r.key.write(&mut out);
    out.put(b"\r\nTo: <sip:");
    out.put(r.number);
    out.put(b"@");
    out.put(&t.target);
    out.put(b">");
    if let Some(tag) = r.to_tag {
        out.put(b";tag=");
        out.put(tag);
    }
    out.put(b"\r\nCall-ID: ");
    r.key.write(&mut out);
    out.put(CALL_ID_HOST);
    out.put(b"\r\nCSeq: ");
    out.put_u64(u64::from(r.cseq));
    out.put(b" ");
    out.put(r.method.as_bytes());
    out.put(b"\r\n");
    if let Some(route) = r.route {
        out.put(b"Route: ");
        out.put(route);
        out.put(b"\r\n");
    }
    if matches!(r.method, Method::Invite | Method::Register) {
        out.put(b"Contact: <sip:");
        out.put(if register { r.number } else { &t.caller });
        out.put(b"@");
        out.put(&t.local);
        out.put(t.transport.uri_param());
        out.put(b">\r\n");
    }
    if register {
        out.put(b"Expires: 3600\r\n");
    }
    if let Some((ch, cred)) = auth {
        crate::digest::write_authorization(&mut out, ch, cred);
    }
    out.put(b"User-Agent: ");
    out.put(&t.user_agent);
    out.put(b"\r\n");
    if r.with_sdp {
        out.put(b"Content-Type: application/sdp\r\nContent-Length: ");
        out.put_u64(t.sdp.len() as u64);
        out.put(b"\r\n\r\n");
        out.put(&t.sdp);
    } else {
        out.put(b"Content-Length: 0\r\n\r\n");
    }
    (!out.overflowed()).then(|| out.len())
}

/// Writes an ACK for a final response `resp` using only the response
/// (stateless, for answers that arrive after the call ended): the same branch
/// for a non-2xx answer (RFC 3261 section 17.1.1.3), a new one for a 2xx
/// (section 13.2.2.4).
pub fn write_ack_from_response(
    buf: &mut [u8],
    resp: &SipView<'_>,
    local: &[u8],
    transport: Transport,
) -> Option<usize> {
    let mut out = MsgBuf::new(buf);
    let to_uri = uri_of(resp.to);
    out.put(b"ACK ");
    out.put(to_uri);
    out.put(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.put(transport.via());
    out.put(b" ");
    out.put(local);
    out.put(b";branch=");
    let branch = resp.top_branch().unwrap_or(b"z9hG4bKlate");
    out.put(branch);
    if resp.code().is_some_and(|c| (200..300).contains(&c)) {
        out.put(b"a");
    }
    out.put(b";rport\r\nMax-Forwards: 70\r\nFrom: ");
    out.put(resp.from);
    out.put(b"\r\nTo: ");
    out.put(resp.to);
    out.put(b"\r\nCall-ID: ");
    out.put(resp.call_id);
    out.put(b"\r\nCSeq: ");
    out.put_u64(u64::from(resp.cseq));
    out.put(b" ACK\r\nContent-Length: 0\r\n\r\n");
    (!out.overflowed()).then(|| out.len())
}

/// The URI inside `<...>` of a name-addr, or the value up to its parameters.
pub fn uri_of(value: &[u8]) -> &[u8] {
    if let Some(a) = value.iter().position(|&b| b == b'<') {
        let rest = &value[a + 1..];
        let b = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
        return &rest[..b];
    }
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    &value[..end]
}

/// A server's response to request `req`.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code.
    pub code: u16,
    /// To tag to add when the request's To has none (not for 100 Trying,
    /// RFC 3261 section 8.2.6.2).
    pub to_tag: Option<&'a [u8]>,
    /// Contact header value, if any.
    pub contact: Option<&'a [u8]>,
    /// Extra header lines, each ending in CRLF.
    pub extra: &'a [u8],
    /// SDP answer, if any.
    pub sdp: Option<&'a [u8]>,
}

/// Writes a response to `req` (RFC 3261 section 8.2.6: Via, From, To,
/// Call-ID and CSeq copied).
pub fn write_response(buf: &mut [u8], req: &SipView<'_>, r: &Response<'_>) -> Option<usize> {
    let mut out = MsgBuf::new(buf);
    out.put(b"SIP/2.0 ");
    out.put_u64(u64::from(r.code));
    out.put(b" ");
    out.put(sip::reason_phrase(r.code).as_bytes());
    out.put(b"\r\n");
    for via in req.vias() {
        out.put(b"Via: ");
        out.put(via);
        out.put(b"\r\n");
    }
    out.put(b"From: ");
    out.put(req.from);
    out.put(b"\r\nTo: ");
    out.put(req.to);
    if let (Some(tag), None) = (r.to_tag, req.to_tag()) {
        out.put(b";tag=");
        out.put(tag);
    }
    out.put(b"\r\nCall-ID: ");
    out.put(req.call_id);
    out.put(b"\r\nCSeq: ");
    out.put_u64(u64::from(req.cseq));
    out.put(b" ");
    out.put(req.cseq_method.as_bytes());
    out.put(b"\r\n");
    // RFC 3261 section 12.1.1: a UAS copies the Record-Route of a request
    // that creates a dialog into its answers, so the route set reaches the
    // caller (and the proxies that asked for it stay in the dialog).
    if let (Some(rr), Method::Invite, 101..=299) = (req.record_route, req.cseq_method, r.code) {
        out.put(b"Record-Route: ");
        out.put(rr);
        out.put(b"\r\n");
    }
    if let Some(c) = r.contact {
        out.put(b"Contact: ");
        out.put(c);
        out.put(b"\r\n");
    }
    out.put(r.extra);
    out.put(b"Server: dce-loadgen\r\n");
    match r.sdp {
        Some(sdp) => {
            out.put(b"Content-Type: application/sdp\r\nContent-Length: ");
            out.put_u64(sdp.len() as u64);
            out.put(b"\r\n\r\n");
            out.put(sdp);
        }
        None => out.put(b"Content-Length: 0\r\n\r\n"),
    }
    (!out.overflowed()).then(|| out.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sipmsg::parse;

    fn template() -> CallerTemplate {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut sdp = [0u8; 256];
        let mut o = MsgBuf::new(&mut sdp);
        write_sdp(&mut o, local, 1);
        let sdp = o.as_bytes().to_vec();
        CallerTemplate {
            target: b"127.0.0.1:5060".to_vec(),
            local: b"127.0.0.1:40000".to_vec(),
            caller: b"loadgen".to_vec(),
            user_agent: b"dce-loadgen".to_vec(),
            sdp,
            transport: Transport::Udp,
        }
    }

    const KEY: CallKey = CallKey {
        run: 0xdeadbeef,
        thread: 3,
        slot: 77,
        generation: 5,
    };

    #[test]
    fn call_key_round_trips_through_call_id() {
        let mut b = [0u8; 64];
        let mut o = MsgBuf::new(&mut b);
        KEY.write(&mut o);
        o.put(CALL_ID_HOST);
        assert_eq!(CallKey::from_call_id(o.as_bytes()), Some(KEY));
        assert_eq!(CallKey::from_call_id(b"foreign@host"), None);
        assert_eq!(CallKey::from_call_id(b"1.2.3@dce-loadgen"), None);
    }

    #[test]
    fn invite_parses_back_with_body_length() {
        let mut b = [0u8; 2048];
        let r = Request {
            method: Method::Invite,
            txn: Txn::Invite,
            number: b"44201234",
            key: KEY,
            cseq: 1,
            to_tag: None,
            with_sdp: true,
            route: None,
        };
        let n = write_request(&mut b, &template(), &r, None).unwrap();
        let v = parse(&b[..n]).unwrap();
        assert_eq!(v.method(), Some(Method::Invite));
        assert_eq!(CallKey::from_call_id(v.call_id), Some(KEY));
        assert!(v.body.starts_with(b"v=0"));
        assert!(v.top_branch().unwrap().starts_with(b"z9hG4bK"));
    }

    #[test]
    fn response_copies_the_request_and_adds_a_tag() {
        let mut b = [0u8; 2048];
        let r = Request {
            method: Method::Invite,
            txn: Txn::Invite,
            number: b"1",
            key: KEY,
            cseq: 1,
            to_tag: None,
            with_sdp: false,
            route: None,
        };
        let n = write_request(&mut b, &template(), &r, None).unwrap();
        let req = b[..n].to_vec();
        let req = parse(&req).unwrap();
        let mut out = [0u8; 2048];
        let resp = Response {
            code: 486,
            to_tag: Some(b"srv"),
            contact: None,
            extra: b"",
            sdp: None,
        };
        let n = write_response(&mut out, &req, &resp).unwrap();
        let v = parse(&out[..n]).unwrap();
        assert_eq!(v.code(), Some(486));
        assert_eq!(v.to_tag(), Some(&b"srv"[..]));
        assert_eq!(v.call_id, req.call_id);
        assert_eq!(v.top_branch(), req.top_branch());
    }

    #[test]
    fn stateless_ack_keeps_the_branch_of_a_failure() {
        let resp = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let resp = parse(resp).unwrap();
        let mut out = [0u8; 1024];
        let n = write_ack_from_response(&mut out, &resp, b"127.0.0.1:1", Transport::Udp).unwrap();
        let ack = parse(&out[..n]).unwrap();
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.top_branch(), Some(&b"z9hG4bKx"[..]));
        assert_eq!(ack.to_tag(), Some(&b"2"[..]));
        assert!(matches!(
            ack.start,
            crate::sipmsg::Start::Request {
                uri: b"sip:b@y",
                ..
            }
        ));
    }

    #[test]
    fn a_tls_request_names_its_transport_in_via_uri_and_contact() {
        let mut b = [0u8; 2048];
        let t = CallerTemplate {
            transport: Transport::Tls,
            ..template()
        };
        let r = Request {
            method: Method::Invite,
            txn: Txn::Invite,
            number: b"44201234",
            key: KEY,
            cseq: 1,
            to_tag: None,
            with_sdp: true,
            route: None,
        };
        let n = write_request(&mut b, &t, &r, None).unwrap();
        let text = std::str::from_utf8(&b[..n]).unwrap();
        assert!(
            text.starts_with("INVITE sip:44201234@127.0.0.1:5060;transport=tls SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nVia: SIP/2.0/TLS 127.0.0.1:40000;branch="));
        assert!(text.contains("\r\nContact: <sip:loadgen@127.0.0.1:40000;transport=tls>\r\n"));
        assert!(parse(&b[..n]).is_ok());
    }

    #[test]
    fn a_request_that_does_not_fit_is_not_written() {
        assert_eq!(
            write_request(
                &mut [0u8; 16],
                &template(),
                &Request {
                    method: Method::Options,
                    txn: Txn::Options,
                    number: b"1",
                    key: KEY,
                    cseq: 1,
                    to_tag: None,
                    with_sdp: false,
                    route: None,
                },
                None
            ),
            None
        );
    }

    #[test]
    fn call_ids_of_one_run_have_one_length() {
        let len = |k: CallKey| {
            let mut b = [0u8; 64];
            let mut o = MsgBuf::new(&mut b);
            k.write(&mut o);
            o.len()
        };
        let small = CallKey {
            slot: 1,
            generation: 0,
            ..KEY
        };
        let big = CallKey {
            slot: 0xfff_ffff,
            generation: 0xffff,
            ..KEY
        };
        assert_eq!(len(small), len(big));
    }
}
