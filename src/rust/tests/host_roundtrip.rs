//! The host without dispatcher, driven by simulated daemons (plain blocking
//! sockets speaking the protocol), with no R involved.

mod common;

use common::{join, port_of, submit, wait};
use mirai::aio::{Outcome, ERR_CONNECTION_RESET};
use mirai::host::{Host, HostConfig};
use mirai::protocol::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Connect and complete the handshake like a daemon would.
fn simulated_daemon(url: &str) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port_of(url))).unwrap();
    s.set_nodelay(true).unwrap();
    join(&s);
    s
}

/// Answer tasks by echoing their payload back as the result.
fn echo(mut s: TcpStream, n: usize) {
    for _ in 0..n {
        let f = read_frame_blocking(&s, FRAME_MAX).unwrap();
        assert_eq!(f.kind, TASK);
        let mut body = f.body.clone();
        body[8] = 0; // result flags
        s.write_all(&frame(RESULT, &body)).unwrap();
    }
}

fn connected(host: &Host, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.wait_connections(n, Duration::from_millis(50)) < n {
        assert!(Instant::now() < deadline, "daemons did not connect");
    }
}

#[test]
fn tasks_round_trip_through_a_simulated_daemon() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let s = simulated_daemon(host.url());
    connected(&host, 1);
    let n = 2000;
    let t = std::thread::spawn(move || echo(s, n));
    let start = Instant::now();
    for i in 0..n {
        let aio = submit(&host, format!("payload {i}").as_bytes());
        wait(&aio);
        match aio.take() {
            Outcome::Value(v, false) => {
                assert_eq!(&v[..], format!("payload {i}").as_bytes())
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!(
        "round trip without R: {:.1} us",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    t.join().unwrap();
    host.close(false);
}

#[test]
fn tasks_queued_before_any_daemon_are_dealt_round_robin() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let aios: Vec<_> = (0..10).map(|i| submit(&host, &[i])).collect();
    let a = simulated_daemon(host.url());
    let b = simulated_daemon(host.url());
    connected(&host, 2);
    // the first daemon took the queue; later tasks alternate
    let more: Vec<_> = (10..14).map(|i| submit(&host, &[i])).collect();
    let ta = std::thread::spawn(move || echo(a, 12));
    let tb = std::thread::spawn(move || echo(b, 2));
    for aio in aios.iter().chain(more.iter()) {
        wait(aio);
        assert!(matches!(aio.take(), Outcome::Value(..)));
    }
    ta.join().unwrap();
    tb.join().unwrap();
}

#[test]
fn a_daemon_that_disconnects_fails_its_tasks_with_19() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let s = simulated_daemon(host.url());
    connected(&host, 1);
    let aio = submit(&host, b"never answered");
    let mut hdr = [0u8; HEADER_LEN];
    (&s).read_exact(&mut hdr).unwrap();
    drop(s);
    wait(&aio);
    assert!(matches!(aio.take(), Outcome::Error(ERR_CONNECTION_RESET)));
    assert_eq!(host.connections(), 0);
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 1024
}

#[test]
fn queued_tasks_cost_little_memory() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let payload = [7u8; 67]; // the size of a serialized `mirai(1)` task
    let n = 200_000;
    let before = rss_bytes();
    let aios: Vec<_> = (0..n).map(|_| submit(&host, &payload)).collect();
    let per_task = (rss_bytes() - before) as f64 / n as f64;
    eprintln!("Rust memory per queued task: {per_task:.0} bytes");
    assert!(per_task < 400.0, "{per_task} bytes per queued task");
    host.close(false);
    assert!(aios.iter().all(|a| !a.is_pending()));
}
