//! Unauthenticated peers are bounded: beyond the handshake permits and the
//! queue for them, new connections are closed at once, so idle peers
//! cannot pile up descriptors on the host; permits come back as their
//! handshakes end, and an ephemeral host keeps its slot for its daemon.

#[allow(dead_code)] // not every helper is used here
mod common;

use common::{join, port_of};
use mirai::host::{Host, HostConfig, PREAUTH_BACKLOG, PREAUTH_PERMITS};
use mirai::protocol::*;
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(host: &Host) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port_of(host.url()))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Whether the host has closed its end of `s` (checked without blocking).
fn closed_by_host(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let closed = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn idle_peers_beyond_the_permits_and_queue_are_closed_at_once() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let held = PREAUTH_PERMITS + PREAUTH_BACKLOG;
    let n = held + 700;
    let idle: Vec<TcpStream> = (0..n).map(|_| connect(&host)).collect();

    // well within the handshake timeout (10 s), which is all that would
    // close an idle peer without the cap
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = 0;
    while closed < n - held {
        assert!(
            Instant::now() < deadline,
            "only {closed} of {n} idle peers closed (expected {})",
            n - held
        );
        std::thread::sleep(Duration::from_millis(20));
        closed = idle.iter().filter(|s| closed_by_host(s)).count();
    }
    // those within the cap are still given their chance
    assert!(closed <= n - held, "{closed} closed: the cap is too small");
    assert!(host.stats().refused >= (n - held) as u64);

    // peers going away end their handshakes, giving the permits back: a
    // daemon dialling next is admitted at once, not after the timeout
    drop(idle);
    let start = Instant::now();
    let daemon = connect(&host);
    join(&daemon);
    assert!(start.elapsed() < Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.connections() < 1 {
        assert!(Instant::now() < deadline, "daemon not registered");
        std::thread::sleep(Duration::from_millis(5));
    }
    host.close(false);
}

#[test]
fn a_stray_peer_does_not_take_an_ephemeral_hosts_slot() {
    let config = HostConfig {
        ephemeral: true,
        ..HostConfig::default()
    };
    let host = Host::listen_with("tcp://127.0.0.1:0", config).unwrap();
    let mut stray = connect(&host);
    stray.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.stats().refused < 1 {
        assert!(Instant::now() < deadline, "stray peer not refused");
        std::thread::sleep(Duration::from_millis(5));
    }
    // the host still listens and admits its daemon
    let daemon = connect(&host);
    let welcome = join(&daemon);
    assert!(!welcome.serial);
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.connections() < 1 {
        assert!(Instant::now() < deadline, "daemon not registered");
        std::thread::sleep(Duration::from_millis(5));
    }
    // a second daemon is not admitted: the slot is taken
    if let Ok(mut second) = TcpStream::connect(("127.0.0.1", port_of(host.url()))) {
        second
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let _ = second.write_all(&frame(
            HELLO,
            &hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &[0u8; PROOF_LEN]),
        ));
        assert!(read_frame_blocking(&second, HANDSHAKE_MAX).is_err());
    }
    host.close(false);
}
