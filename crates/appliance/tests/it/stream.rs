//! The appliance with a `[stream]` table, in socket mode on 127.0.0.1: a
//! SIP-over-TCP caller routed to a UDP upstream through the stream thread
//! (the INVITE leaving from the SIP port), and the 200 back on its
//! connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use appliance::{Appliance, ApplianceConfig};

const WAIT: Duration = Duration::from_secs(20);

/// A port nobody uses on 127.0.0.1 right now (for the UDP listen address
/// the proxy must name; the stream listener takes port 0).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(upstream: SocketAddr) -> (Appliance, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    std::fs::write(
        dir.path().join("groups.toml"),
        format!(
            "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [ {{ address = \"{upstream}\" }} ]\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("prefixes.csv"), "44,uk\n").unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "[edge]\nmode = \"socket\"\nlisten = \"127.0.0.1:{port}\"\n\
             control_socket = \"control.sock\"\n\
             [routes]\ngroups = \"groups.toml\"\nprefixes = \"prefixes.csv\"\n\
             [stream]\ntcp = \"127.0.0.1:0\"\nmax_per_source = 4\n"
        ),
    )
    .unwrap();
    let cfg = ApplianceConfig::load(&path).unwrap();
    (Appliance::start(cfg).unwrap(), dir)
}

#[test]
fn a_tcp_caller_reaches_a_udp_upstream_through_the_appliance() {
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    upstream.set_read_timeout(Some(WAIT)).unwrap();
    let (mut edge, _dir) = start(upstream.local_addr().unwrap());
    let (tcp, tls) = edge.stream_addrs();
    assert!(tls.is_none());
    let tcp = tcp.unwrap();
    let mut caller = TcpStream::connect(tcp).unwrap();
    caller.set_read_timeout(Some(WAIT)).unwrap();
    let me = caller.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:442071234567@{tcp};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP {me};branch=z9hG4bKap1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:c@{me}>;tag=ft1\r\nTo: <sip:442071234567@{tcp}>\r\n\
         Call-ID: ap1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{me};transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.write_all(invite.as_bytes()).unwrap();
    let mut buf = [0u8; 65536];
    let (n, from) = upstream.recv_from(&mut buf).unwrap();
    let fwd = String::from_utf8_lossy(&buf[..n]).into_owned();
    // It leaves from the SIP port, not a port of the stream thread's own.
    assert_eq!(from, edge.local_addrs()[0], "{fwd}");
    assert!(
        fwd.contains(&format!("<sip:{tcp};transport=tcp;lr;dce=")),
        "{fwd}"
    );
    // The upstream's 200, to where the request came from.
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for line in fwd.split("\r\n").skip(1) {
        match line.split(':').next().unwrap_or("") {
            "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => {
                ok.push_str(line);
                ok.push_str("\r\n");
            }
            "To" => {
                ok.push_str(line);
                ok.push_str(";tag=uas1\r\n");
            }
            _ => {}
        }
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    upstream.send_to(ok.as_bytes(), from).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        let n = caller.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("branch=z9hG4bKap1"), "{answer}");
    // (On 127.0.0.1 the caller shares the upstream's address, which is
    // trusted: no Verified event to expect here.) The control thread's
    // round polls the stream thread's events too.
    edge.tick();
    // Counted by the stream thread, in the snapshot and the final one.
    let st = edge.snapshot().stream.unwrap();
    assert_eq!(st.open_connections, 1);
    assert_eq!((st.counters["accepted"], st.counters["messages"]), (1, 1));
    // The 200 came back to the SIP port: a worker read it and handed it
    // to the stream thread for the caller's connection.
    assert_eq!(st.counters["udp_received"], 0, "{st:?}");
    let last = edge.stop().unwrap().stream.unwrap();
    assert_eq!(last.counters["handed_over"], 1, "{last:?}");
    assert_eq!(last.counters["sent"], 1);
}

/// Connects over TLS and returns the DER of the certificate the edge
/// presented.
fn presented(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        testpki::client_config(ca_pem, None),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    testpki::certificates(pem)[0].to_vec()
}

#[test]
fn a_reloaded_certificate_serves_new_tls_connections_and_a_bad_one_is_refused() {
    // Two certificates for the same name from one CA.
    let ca = testpki::TestCa::new("reload ca");
    let (first, second) = (ca.server(&["localhost"]), ca.server(&["localhost"]));
    let dir = tempfile::tempdir().unwrap();
    let write = |(cert, key): &(String, String)| {
        std::fs::write(dir.path().join("edge.crt"), cert).unwrap();
        std::fs::write(dir.path().join("edge.key"), key).unwrap();
    };
    write(&first);
    std::fs::write(
        dir.path().join("groups.toml"),
        "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [ { address = \"127.0.0.1:9\" } ]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("prefixes.csv"), "44,uk\n").unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "[edge]\nmode = \"socket\"\nlisten = \"127.0.0.1:{}\"\n\
             control_socket = \"control.sock\"\n\
             [routes]\ngroups = \"groups.toml\"\nprefixes = \"prefixes.csv\"\n\
             [stream]\ntls = \"127.0.0.1:0\"\ncertificate = \"edge.crt\"\nkey = \"edge.key\"\n",
            free_udp_port()
        ),
    )
    .unwrap();
    let mut edge = Appliance::start(ApplianceConfig::load(&path).unwrap()).unwrap();
    let tls = edge.stream_addrs().1.unwrap();
    assert_eq!(presented(tls, &ca.pem), der(&first.0));

    write(&second);
    edge.reload_tls().unwrap();
    // Taken by the stream thread between rounds: new connections see it.
    let deadline = Instant::now() + WAIT;
    while presented(tls, &ca.pem) != der(&second.0) {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A key that does not match its certificate: refused, the second stays.
    std::fs::write(dir.path().join("edge.key"), &first.1).unwrap();
    let e = edge.reload_tls().unwrap_err();
    assert!(e.contains("edge.toml:") && e.contains("refused"), "{e}");
    assert_eq!(presented(tls, &ca.pem), der(&second.0));
    edge.stop().unwrap();
}
