//! dce-loadgen's callers over TCP and TLS through the appliance's stream
//! thread (socket mode, 127.0.0.1) to a dce-loadgen server over UDP: every
//! call completes, INVITE to BYE, and the stream thread's counters agree.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use appliance::{Appliance, ApplianceConfig};
use loadgen::msg::Transport;
use loadgen::stream::TlsClient;
use loadgen::uac::{self, UacConfig};
use loadgen::uas::{Uas, UasConfig};
use testpki::TestCa;

fn start(upstream: SocketAddr, dir: &std::path::Path) -> Appliance {
    let (cert, key) = TestCa::new("load ca").server(&["127.0.0.1"]);
    start_with(upstream, dir, &cert, &key)
}

fn start_with(upstream: SocketAddr, dir: &std::path::Path, cert: &str, key: &str) -> Appliance {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.join("edge.crt"), cert).unwrap();
    std::fs::write(dir.join("edge.key"), key).unwrap();
    std::fs::write(
        dir.join("groups.toml"),
        format!(
            "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [ {{ address = \"{upstream}\" }} ]\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("prefixes.csv"), "44,uk\n").unwrap();
    let path = dir.join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "[edge]\nmode = \"socket\"\nlisten = \"127.0.0.1:{port}\"\n\
             control_socket = \"control.sock\"\n\
             [routes]\ngroups = \"groups.toml\"\nprefixes = \"prefixes.csv\"\n\
             [stream]\ntcp = \"127.0.0.1:0\"\ntls = \"127.0.0.1:0\"\n\
             certificate = \"edge.crt\"\nkey = \"edge.key\"\n"
        ),
    )
    .unwrap();
    Appliance::start(ApplianceConfig::load(&path).unwrap()).unwrap()
}

fn callers(target: SocketAddr, transport: Transport, tls: Option<TlsClient>) -> UacConfig {
    let mut c = UacConfig::new(target);
    c.transport = transport;
    c.tls = tls;
    c.connections = 4;
    c.cps = 200.0;
    c.duration = Duration::from_millis(500);
    c.max_calls = 100;
    c.timers.timeout_ns = 5_000_000_000;
    c
}

#[test]
fn loadgen_calls_over_tcp_and_tls_complete_through_the_stream_thread() {
    let uas = Uas::start(UasConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("load ca");
    let (cert, key) = ca.server(&["127.0.0.1"]);
    let edge = start_with(uas.local_addr(), dir.path(), &cert, &key);
    let (tcp, tls) = edge.stream_addrs();
    let stop = AtomicBool::new(false);

    let r = uac::run(&callers(tcp.unwrap(), Transport::Tcp, None), &stop).unwrap();
    assert!(r.accounting.balanced, "{r}");
    assert_eq!((r.started, r.outcomes.completed), (100, 100), "{r}");

    let trust = TlsClient::new(ca.pem.as_bytes(), "127.0.0.1").unwrap();
    let r = uac::run(&callers(tls.unwrap(), Transport::Tls, Some(trust)), &stop).unwrap();
    assert!(r.accounting.balanced, "{r}");
    assert_eq!((r.started, r.outcomes.completed), (100, 100), "{r}");

    let st = edge.stop().unwrap().stream.unwrap();
    // 4 connections per run; INVITE, ACK and BYE of 200 calls framed; the
    // two answers of each call sent back on its connection.
    assert_eq!(st.counters["accepted"], 8, "{st:?}");
    assert_eq!(st.counters["tls_handshakes"], 4, "{st:?}");
    assert_eq!(st.counters["messages"], 600, "{st:?}");
    assert_eq!(st.counters["sent"], 400, "{st:?}");
    uas.stop().unwrap();
}

#[test]
fn a_tls_caller_that_does_not_trust_the_edge_loses_every_call_as_tls_failed() {
    let uas = Uas::start(UasConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let edge = start(uas.local_addr(), dir.path());
    let (_, tls) = edge.stream_addrs();
    // A CA the edge's certificate does not chain to.
    let other_ca = TestCa::new("other ca");
    let trust = TlsClient::new(other_ca.pem.as_bytes(), "127.0.0.1").unwrap();
    let r = uac::run(
        &callers(tls.unwrap(), Transport::Tls, Some(trust)),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(r.accounting.balanced, "{r}");
    assert_eq!(r.outcomes.completed, 0, "{r}");
    assert_eq!(r.outcomes.tls_failed, r.started, "{r}");
    let st = edge.stop().unwrap().stream.unwrap();
    // The edge counts the handshakes the caller refused as alerts.
    assert!(st.counters["tls_failed_alert"] > 0, "{st:?}");
    uas.stop().unwrap();
}
