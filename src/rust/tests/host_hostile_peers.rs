//! Malformed or hostile bytes on a host's listening socket: the peer is
//! dropped and counted as refused, the host and its daemons carry on.

mod common;

use common::{join, port_of, submit, wait};
use mirai::aio::Outcome;
use mirai::host::{Host, HostConfig};
use mirai::protocol::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(host: &Host) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port_of(host.url()))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// The host closes on us: reading ends (EOF, or a REJECT frame then EOF).
fn assert_dropped(mut s: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let start = Instant::now();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("peer not dropped: {e}"),
    }
    assert!(start.elapsed() < Duration::from_secs(12));
    got
}

fn wait_refused(host: &Host, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(12);
    while host.stats().refused < n {
        assert!(Instant::now() < deadline, "refusal not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A well-behaved simulated daemon answering `n` tasks with their payload.
fn good_daemon(host: &Host, n: usize) -> std::thread::JoinHandle<()> {
    let mut s = connect(host);
    join(&s);
    std::thread::spawn(move || {
        for _ in 0..n {
            let f = read_frame_blocking(&s, FRAME_MAX).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(&frame(RESULT, &f.body)).unwrap();
        }
    })
}

#[test]
fn hostile_peers_are_dropped_while_tasks_run() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let daemon = good_daemon(&host, 5);
    while host.connections() < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let running = submit(&host, b"running");

    // random bytes
    let mut s = connect(&host);
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&junk);
    assert_dropped(s);
    wait_refused(&host, 1);

    // an HTTP request
    let mut s = connect(&host);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_dropped(s);
    wait_refused(&host, 2);

    // a truncated frame: the header promises more than ever arrives
    let mut s = connect(&host);
    let mut f = vec![HELLO];
    f.extend_from_slice(&100u64.to_le_bytes());
    f.extend_from_slice(&[0u8; 10]);
    s.write_all(&f).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_dropped(s);
    wait_refused(&host, 3);

    // an oversized length prefix
    let mut s = connect(&host);
    let mut f = vec![HELLO];
    f.extend_from_slice(&u64::MAX.to_le_bytes());
    s.write_all(&f).unwrap();
    assert_dropped(s);
    wait_refused(&host, 4);

    // a well-formed hello of another protocol version gets a reason
    let mut s = connect(&host);
    s.write_all(&frame(
        HELLO,
        &hello_body(PROTOCOL_VERSION + 1, "0.1.0", &[0u8; PROOF_LEN]),
    ))
    .unwrap();
    let got = assert_dropped(s);
    let reply = read_frame_blocking(&got[..], HANDSHAKE_MAX).unwrap();
    assert_eq!(reply.kind, REJECT);
    assert!(String::from_utf8_lossy(&reply.body).contains("version mismatch"));
    wait_refused(&host, 5);

    // none of it became a daemon, and the real one kept working
    assert_eq!(host.connections(), 1);
    wait(&running);
    assert!(matches!(running.take(), Outcome::Value(v, _) if &v[..] == b"running"));
    for i in 0..4u8 {
        let a = submit(&host, &[i]);
        wait(&a);
        assert!(matches!(a.take(), Outcome::Value(v, _) if v[..] == [i]));
    }
    daemon.join().unwrap();
}

#[test]
fn a_silent_peer_does_not_block_other_connections() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let _silent: Vec<TcpStream> = (0..20).map(|_| connect(&host)).collect();
    let daemon = good_daemon(&host, 1);
    let a = submit(&host, b"x");
    wait(&a);
    assert!(matches!(a.take(), Outcome::Value(..)));
    daemon.join().unwrap();
}

#[test]
fn a_peer_without_the_hosts_secret_is_refused_silently() {
    use mirai::host::{new_secret, HostConfig};
    let secret = new_secret().unwrap();
    assert_eq!(secret.len(), 64);
    assert_ne!(secret, new_secret().unwrap());
    let host = Host::listen_with(
        "tcp://127.0.0.1:0",
        HostConfig {
            secret: Some(secret.clone().into_bytes()),
            ..HostConfig::default()
        },
    )
    .unwrap();
    // A peer answering the challenge with a proof from no secret, a wrong
    // one, the secret itself, or a replayed proof: dropped without a word,
    // counted, and no task reaches it.
    let queued = submit(&host, b"for a real daemon only");
    let challenged = || {
        let mut s = connect(&host);
        let ours = new_nonce().unwrap();
        s.write_all(&frame(
            HELLO,
            &hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &ours),
        ))
        .unwrap();
        let c = Challenge::decode(&read_frame_blocking(&s, HANDSHAKE_MAX).unwrap()).unwrap();
        // the host proves itself first, for this daemon's nonce
        let key = secret.as_bytes();
        assert!(proof_matches(key, Side::Host, &ours, &c.nonce, &c.proof));
        (s, ours, c)
    };
    let (_, first_nonce, first) = challenged();
    let replayed = proof(secret.as_bytes(), Side::Daemon, &first_nonce, &first.nonce);
    wait_refused(&host, 1);
    type Answer<'a> = Box<dyn Fn(&Nonce, &Challenge) -> Vec<u8> + 'a>;
    let key = secret.as_bytes();
    let answers: Vec<Answer> = vec![
        Box::new(|d, c| proof(b"", Side::Daemon, d, &c.nonce)),
        Box::new(|d, c| {
            proof(
                b"0123456789abcdef0123456789abcdef",
                Side::Daemon,
                d,
                &c.nonce,
            )
        }),
        Box::new(|_, _| secret.as_bytes().to_vec()),
        Box::new(|_, _| replayed.clone()),
        // the host's own proof sent back: reflection is refused
        Box::new(|_, c| c.proof.clone()),
        Box::new(|d, c| proof(key, Side::Host, d, &c.nonce)),
    ];
    for answer in &answers {
        let (mut s, d, c) = challenged();
        s.write_all(&frame(PROOF, &answer(&d, &c))).unwrap();
        assert!(
            assert_dropped(s).is_empty(),
            "a refused peer was told something"
        );
    }
    wait_refused(&host, 1 + answers.len() as u64);
    assert_eq!(host.connections(), 0);
    assert!(queued.is_pending());
    // a peer of this protocol without a nonce is not challenged at all
    let mut s = connect(&host);
    let mut bare = hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &[0u8; PROOF_LEN]);
    bare.truncate(bare.len() - PROOF_LEN);
    s.write_all(&frame(HELLO, &bare)).unwrap();
    assert!(assert_dropped(s).is_empty());
    wait_refused(&host, 2 + answers.len() as u64);
    // the proof for this challenge is admitted and gets the task
    let (mut s, d, c) = challenged();
    s.write_all(&frame(PROOF, &proof(key, Side::Daemon, &d, &c.nonce)))
        .unwrap();
    assert_eq!(
        read_frame_blocking(&s, HANDSHAKE_MAX).unwrap().kind,
        WELCOME
    );
    let task = read_frame_blocking(&s, FRAME_MAX).unwrap();
    assert_eq!(&task.body[ID_FLAGS_LEN..], b"for a real daemon only");
    s.write_all(&frame(RESULT, &task.body)).unwrap();
    wait(&queued);
    host.close(false);
}

/// A daemon that has passed the handshake and then sends malformed
/// results (a vector result shorter than its own header, a length beyond
/// its data, an unknown kind) loses its connection; its task resolves to
/// errorValue 19 and the host serves other daemons on.
#[test]
fn a_daemon_sending_malformed_results_is_dropped_its_task_resolved() {
    let host = Host::listen_with("tcp://127.0.0.1:0", HostConfig::default()).unwrap();
    let bad_results: Vec<Vec<u8>> = vec![
        // RESULT flagged as a vector, with 3 bytes where 16 must follow
        {
            let mut b = 0u64.to_le_bytes().to_vec();
            b.push(RESULT_VECTOR);
            b.extend_from_slice(&[14, 0, 0]);
            frame(RESULT, &b)
        },
        // a vector whose length does not match its data
        {
            let mut b = 0u64.to_le_bytes().to_vec();
            b.push(RESULT_VECTOR);
            b.push(14);
            b.extend_from_slice(&[0; 7]);
            b.extend_from_slice(&u64::MAX.to_le_bytes());
            frame(RESULT, &b)
        },
        // a kind no daemon sends
        frame(CANCEL, &0u64.to_le_bytes()),
    ];
    for bytes in bad_results {
        let mut s = connect(&host);
        join(&s);
        while host.connections() < 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let aio = submit(&host, b"for the rogue");
        let task = read_frame_blocking(&s, FRAME_MAX).unwrap();
        assert_eq!(task.kind, TASK);
        s.write_all(&bytes).unwrap();
        wait(&aio);
        assert!(matches!(aio.take(), Outcome::Error(19)));
        while host.connections() > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // a good daemon is served as before
    let daemon = good_daemon(&host, 1);
    let aio = submit(&host, b"fine");
    wait(&aio);
    assert!(matches!(aio.take(), Outcome::Value(v, _) if v[..] == *b"fine"));
    daemon.join().unwrap();
    host.close(false);
}
