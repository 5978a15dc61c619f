//! tls+tcp://, ws:// and wss:// hosts: simulated daemons dial them through
//! the transport layer and answer tasks; peers that cannot prove the
//! host's identity, or do not speak TLS, get nothing.

mod common;

use common::{join, port_of, submit, wait};
use mirai::aio::Outcome;
use mirai::host::{Host, HostConfig};
use mirai::protocol::*;
use mirai::transport::url::Url;
use mirai::transport::{dial_sync, SyncStream};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A host at `url` (port 0) with fresh single-use credentials; returns it
/// with the authority certificate its daemons must trust.
fn secure_host(url: &str) -> (Arc<Host>, String) {
    let tls = mirai::transport::tls::zero_config("127.0.0.1").unwrap();
    let host = Host::listen_with(
        url,
        HostConfig {
            tls: Some(tls.config),
            ..HostConfig::default()
        },
    )
    .unwrap();
    (host, tls.ca_pem.unwrap())
}

fn dial(host: &Host, ca: Option<&str>) -> std::io::Result<SyncStream> {
    let url = Url::parse(host.url()).unwrap();
    let tls = ca.map(|pem| mirai::transport::tls::client_config(Some(pem)).unwrap());
    dial_sync(&url, TIMEOUT, tls.as_ref())
}

/// Answer `n` tasks on `s` with their own payloads.
fn echo_daemon(s: SyncStream, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..n {
            let f = read_frame_blocking(&s, FRAME_MAX).unwrap();
            (&s).write_all(&frame(RESULT, &f.body)).unwrap();
        }
    })
}

fn round_trips(host: &Host, ca: Option<&str>) {
    let s = dial(host, ca).unwrap();
    join(&s);
    wait_connections(host, 1);
    let daemon = echo_daemon(s, 3);
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    for payload in [&b"small"[..], &big, b""] {
        let aio = submit(host, payload);
        wait(&aio);
        match aio.take() {
            Outcome::Value(body, false) => assert_eq!(&body[..], payload),
            _ => panic!("unexpected outcome"),
        }
    }
    daemon.join().unwrap();
}

#[test]
fn tasks_round_trip_over_tls_ws_and_wss() {
    let (host, ca) = secure_host("tls+tcp://127.0.0.1:0");
    assert!(host.url().starts_with("tls+tcp://127.0.0.1:"));
    round_trips(&host, Some(&ca));
    host.close(false);

    let (host, ca) = secure_host("wss://127.0.0.1:0/daemons");
    assert!(host.url().ends_with("/daemons"));
    round_trips(&host, Some(&ca));
    host.close(false);

    let host = Host::listen_with("ws://127.0.0.1:0/a/b", HostConfig::default()).unwrap();
    round_trips(&host, None);
    // several daemons on the one port and path
    let more: Vec<SyncStream> = (0..3).map(|_| dial(&host, None).unwrap()).collect();
    for s in &more {
        join(s);
    }
    wait_connections(&host, 3);
    host.close(false);
}

#[test]
fn a_host_with_another_certificate_is_not_trusted() {
    let (host, _) = secure_host("tls+tcp://127.0.0.1:0");
    let (_, other_ca) = secure_host("tls+tcp://127.0.0.1:0");
    let e = dial(&host, Some(&other_ca)).err().expect("dial must fail");
    assert!(e.to_string().contains("certificate"), "{e}");
    wait_refused(&host, 1);
    assert_eq!(host.connections(), 0);
}

#[test]
fn plain_and_silent_peers_at_a_tls_port() {
    let (host, ca) = secure_host("tls+tcp://127.0.0.1:0");
    let port = port_of(host.url());
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s
    };
    // peers that open the port and say nothing stall in the TLS handshake
    let _silent: Vec<TcpStream> = (0..20).map(|_| connect()).collect();
    // a plain-protocol client: its HELLO is not TLS, it is dropped
    let mut plain = connect();
    plain
        .write_all(&frame(
            HELLO,
            &hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &[0u8; PROOF_LEN]),
        ))
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    // (at most a TLS alert, never a welcome)
    assert_ne!(got.first(), Some(&WELCOME));
    wait_refused(&host, 1);
    // a real daemon is served meanwhile
    round_trips(&host, Some(&ca));
    assert_eq!(
        host.stats().refused,
        1,
        "the silent peers are still pending"
    );
}

/// Wait until the host counts `n` connected daemons (it registers one
/// just after welcoming it).
fn wait_connections(host: &Host, n: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while host.connections() != n {
        assert!(Instant::now() < deadline, "expected {n} connections");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_refused(host: &Host, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(12);
    while host.stats().refused < n {
        assert!(Instant::now() < deadline, "refusal not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
}
