//! Half-open connections: a peer that completes the handshake and then
//! falls silent (as when its machine vanishes without a FIN or RST) is
//! given up on, on both sides; a peer that only sends heartbeats is kept.
//! Real clocks: each case ends within the silence limit plus a few seconds.

mod common;

use common::{join, port_of, submit, wait};
use mirai::aio::{self, Aio, Outcome};
use mirai::daemon::{AutoExit, Client, Incoming};
use mirai::host::{Host, HostConfig};
use mirai::protocol::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longer than the silence limit plus the host's watchdog tick, with room
/// for a loaded machine; shorter than anything that would pass for a hang.
const BOUND: Duration = Duration::from_secs(40);

fn connect(host: &Host) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port_of(host.url()))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    join(&s);
    s
}

/// Read the next TASK on `s` (skipping heartbeats); returns its id.
fn task_id(s: &TcpStream) -> u64 {
    loop {
        let f = read_frame_blocking(s, FRAME_MAX).unwrap();
        if f.kind == TASK {
            return u64::from_le_bytes(f.body[..8].try_into().unwrap());
        }
        assert_eq!(f.kind, HEARTBEAT);
    }
}

fn wait_done(aio: &Aio, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while aio.is_pending() {
        if Instant::now() >= deadline {
            return false;
        }
        let g = aio::generation();
        if aio.is_pending() {
            aio::wait_for_completion(g, Duration::from_millis(200));
        }
    }
    true
}

#[test]
fn a_silent_daemon_is_dropped_and_a_heartbeating_one_kept() {
    let host = Host::listen_with(
        "tcp://127.0.0.1:0",
        HostConfig {
            dispatcher: true,
            ..HostConfig::default()
        },
    )
    .unwrap();
    let silent = connect(&host);
    let mut alive = connect(&host);
    while host.connections() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let aios: Vec<Arc<Aio>> = (0..2).map(|_| submit(&host, b"payload")).collect();
    let silent_id = task_id(&silent);
    let alive_id = task_id(&alive);
    let by_id = |id: u64| aios.iter().find(|a| a.id as u64 == id).unwrap().clone();
    let (lost, kept) = (by_id(silent_id), by_id(alive_id));

    // the live daemon is busy with a long task: it only sends heartbeats
    let stop = Arc::new(AtomicBool::new(false));
    let beating = {
        let stop = stop.clone();
        let mut s = alive.try_clone().unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if s.write_all(&signal_frame(HEARTBEAT)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    // the silent one neither reads nor writes from here on
    assert!(
        wait_done(&lost, BOUND),
        "the silent daemon's task stayed pending"
    );
    assert!(matches!(lost.take(), Outcome::Error(19)));
    assert!(kept.is_pending(), "the live daemon's task was lost");
    assert_eq!(host.connections(), 1);

    // the host kept writing heartbeats to the live daemon meanwhile
    stop.store(true, Ordering::SeqCst);
    beating.join().unwrap();
    let f = read_frame_blocking(&alive, FRAME_MAX).unwrap();
    assert_eq!((f.kind, f.body.len()), (HEARTBEAT, 0));
    alive
        .write_all(&frame(
            RESULT,
            &[&alive_id.to_le_bytes()[..], &[0], b"x"].concat(),
        ))
        .unwrap();
    wait(&kept);
    assert!(matches!(kept.take(), Outcome::Value(..)));
    drop(silent);
    host.close(false);
}

#[test]
fn a_daemon_gives_up_on_a_silent_host() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // a host that admits the daemon, then says nothing and reads nothing
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let hello = read_frame_blocking(&s, HANDSHAKE_MAX).unwrap();
        assert_eq!(hello.kind, HELLO);
        let welcome = Welcome {
            stream: None,
            serial: false,
        };
        s.write_all(&frame(WELCOME, &welcome.encode())).unwrap();
        // what the daemon sent until it gave up: heartbeats, then EOF
        s.set_read_timeout(Some(BOUND)).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    let client = Client::dial(
        &format!("tcp://127.0.0.1:{port}"),
        false,
        AutoExit::AfterTask,
        String::new(),
        String::new(), // no secret: this host gives no challenge
        None,
    )
    .unwrap();
    let deadline = Instant::now() + BOUND;
    let gave_up = loop {
        match client.recv(Duration::from_millis(500)) {
            Some(Incoming::Disconnected) => break true,
            None if Instant::now() < deadline => {}
            _ => break false,
        }
    };
    assert!(gave_up, "the daemon kept waiting on a silent host");
    drop(client);
    let got = fake.join().unwrap();
    assert!(got.len() >= HEADER_LEN && got.len() % HEADER_LEN == 0);
    for f in got.chunks(HEADER_LEN) {
        assert_eq!(f, &signal_frame(HEARTBEAT)[..]);
    }
}
