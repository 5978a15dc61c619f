//! The host with dispatcher, driven by simulated daemons (plain sockets
//! speaking the protocol), with no R involved: FIFO to free daemons,
//! cancellation of queued and executing tasks, timeouts, the memory budget,
//! `everywhere()` broadcasts, daemons dying or leaving, closing, and a
//! scale test with thousands of daemons and a million queued tasks.
//!
//! The tests take one lock each and so run one at a time: the scale test
//! measures the whole process (memory, threads), and task ids come from one
//! process-wide counter.

#[allow(dead_code)]
mod common;

use common::{join, wait};
use mirai::aio::{Aio, Outcome, ERR_CANCELED, ERR_CONNECTION_RESET, ERR_TIMEOUT};
use mirai::host::{Host, HostConfig, Task};
use mirai::protocol::*;
use mirai::transport::url::Url;
use mirai::transport::{dial_sync, SyncStream};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dispatcher(url: &str, memory_limit: Option<u64>) -> Arc<Host> {
    Host::listen_with(
        url,
        HostConfig {
            dispatcher: true,
            memory_limit,
            ..HostConfig::default()
        },
    )
    .unwrap()
}

/// A unique abstract socket name for this process.
fn abstract_url(tag: &str) -> String {
    format!(
        "abstract://mirai-dispatcher-test-{}-{tag}",
        std::process::id()
    )
}

/// A task for `host` (its aio made by the host, so cancelling reaches the
/// dispatcher) whose payload is `payload`.
fn task(host: &Arc<Host>, payload: &[u8]) -> Task {
    let aio = host.new_aio();
    let frame = common::task_frame(&aio, payload);
    Task {
        aio,
        frame: frame.into(),
    }
}

fn submit(host: &Arc<Host>, payload: &[u8], timeout: Option<Duration>) -> Arc<Aio> {
    let t = task(host, payload);
    let aio = t.aio.clone();
    host.submit(t, timeout);
    aio
}

fn connected(host: &Host, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.wait_connections(n, Duration::from_millis(50)) < n {
        assert!(Instant::now() < deadline, "daemons did not connect");
    }
}

/// Poll `cond` until it holds, failing the test after 10 seconds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// [awaiting, executing, completed]
fn counts(host: &Host) -> [u64; 3] {
    let s = host.stats();
    [s.awaiting, s.executing, s.completed]
}

fn expect_value(aio: &Aio, payload: &[u8]) {
    match aio.take() {
        Outcome::Value(v, false) => assert_eq!(&v[..], payload),
        other => panic!("task {}: expected a value, got {other:?}", aio.id),
    }
}

fn expect_error(aio: &Aio, code: i32) {
    match aio.take() {
        Outcome::Error(c) if c == code => {}
        other => panic!("task {}: expected errorValue {code}, got {other:?}", aio.id),
    }
}

/// A simulated daemon driven step by step from the test.
struct Sim {
    s: SyncStream,
}

/// A TASK as a daemon receives it.
#[derive(Debug)]
struct Got {
    id: u64,
    flags: u8,
    payload: Vec<u8>,
}

impl Sim {
    /// Connect and complete the handshake like a daemon would.
    fn connect(url: &str) -> Sim {
        Sim::connect_welcomed(url).0
    }

    /// Connect, and what the host's WELCOME said.
    fn connect_welcomed(url: &str) -> (Sim, Welcome) {
        let url = Url::parse(url).unwrap();
        let s = dial_sync(&url, Duration::from_secs(10), None).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let welcome = join(&s);
        (Sim { s }, welcome)
    }

    /// Connect and wait until the host counts this daemon (`n` in all).
    fn join(host: &Host, n: usize) -> Sim {
        let d = Sim::connect(host.url());
        connected(host, n);
        d
    }

    /// The next frame, failing the test if none comes within 10 seconds.
    fn recv(&self) -> Frame {
        read_frame_blocking(&self.s, FRAME_MAX).expect("no frame from the host")
    }

    fn recv_task(&self) -> Got {
        let f = self.recv();
        assert_eq!(f.kind, TASK, "expected a TASK frame, got kind {}", f.kind);
        assert!(f.body.len() >= ID_FLAGS_LEN);
        Got {
            id: u64::from_le_bytes(f.body[..8].try_into().unwrap()),
            flags: f.body[8],
            payload: f.body[ID_FLAGS_LEN..].to_vec(),
        }
    }

    /// The next frame is the ordinary task of `aio`, with `payload`.
    fn expect_task(&self, aio: &Aio, payload: &[u8]) {
        let got = self.recv_task();
        assert_eq!(got.id, aio.id as u64, "tasks out of order: {got:?}");
        assert_eq!(got.flags, 0);
        assert_eq!(got.payload, payload);
    }

    fn expect_cancel(&self, aio: &Aio) {
        let f = self.recv();
        assert_eq!(
            f.kind, CANCEL,
            "expected a CANCEL frame, got kind {}",
            f.kind
        );
        assert_eq!(f.body, (aio.id as u64).to_le_bytes());
    }

    /// Answer task `id`, echoing `payload`.
    fn answer(&self, id: u64, payload: &[u8]) {
        let mut body = id.to_le_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(payload);
        self.send(RESULT, &body);
    }

    fn send(&self, kind: u8, body: &[u8]) {
        (&self.s).write_all(&frame(kind, body)).unwrap();
    }

    /// Nothing at all arrives within `ms` milliseconds.
    fn quiet(&self, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.s.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        assert!(n >= 0, "poll failed");
        n == 0
    }

    /// The host has closed the connection: end of stream, with no frame
    /// before it.
    fn expect_eof(&self) {
        let mut b = [0u8; 1];
        match (&self.s).read(&mut b) {
            Ok(0) => {}
            Ok(_) => panic!("expected end of stream, got data"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected end of stream, got {e}"),
        }
    }
}

/// 1. Tasks wait first-in first-out and each goes to a free daemon, which
///    never has more than one ordinary task unanswered.
#[test]
fn fifo_to_free_daemons_one_task_at_a_time() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    let a = Sim::join(&host, 1);
    let b = Sim::join(&host, 2);

    let held = submit(&host, b"held", None);
    a.expect_task(&held, b"held");
    let payloads: Vec<Vec<u8>> = (2..=6).map(|i| format!("task {i}").into_bytes()).collect();
    let rest: Vec<_> = payloads.iter().map(|p| submit(&host, p, None)).collect();
    assert_eq!(counts(&host), [4, 2, 0]);

    for (i, (aio, p)) in rest.iter().zip(&payloads).enumerate() {
        b.expect_task(aio, p);
        // one task at a time: nothing more arrives while this one runs
        assert!(b.quiet(60), "a second task reached a busy daemon");
        assert!(aio.is_pending());
        assert_eq!(counts(&host), [4 - i as u64, 2, i as u64]);
        b.answer(aio.id as u64, p);
        wait(aio);
        expect_value(aio, p);
    }
    // the daemon holding its task got nothing else meanwhile
    assert!(a.quiet(50), "a busy daemon was sent a second task");
    assert!(held.is_pending());
    assert_eq!(counts(&host), [0, 1, 5]);
    assert!(b.quiet(50));

    a.answer(held.id as u64, b"held");
    wait(&held);
    expect_value(&held, b"held");
    assert_eq!(counts(&host), [0, 0, 6]);

    // free daemons are used oldest-free first: b has been free longer
    let next = submit(&host, b"next", None);
    b.expect_task(&next, b"next");
    assert!(a.quiet(50));
    let after = submit(&host, b"after", None);
    a.expect_task(&after, b"after");
    b.answer(next.id as u64, b"next");
    a.answer(after.id as u64, b"after");
    wait(&next);
    wait(&after);
    expect_value(&next, b"next");
    expect_value(&after, b"after");
    assert_eq!(counts(&host), [0, 0, 8]);
    host.close(false);
}

/// 2. A queued task that is cancelled resolves at once and never reaches a
///    daemon.
#[test]
fn cancelling_a_queued_task() {
    let _g = serial();
    let host = dispatcher(&abstract_url("cancel-queued"), None);
    let t1 = submit(&host, b"one", None);
    let t2 = submit(&host, b"two", None);
    let t3 = submit(&host, b"three", None);
    assert_eq!(counts(&host), [3, 0, 0]);

    assert!(t2.cancel(ERR_CANCELED));
    assert!(!t2.is_pending() && t2.is_error_code());
    assert!(!t2.cancel(ERR_CANCELED), "cancelled twice");
    assert!(!t2.cancel(ERR_TIMEOUT), "cancelled twice");
    assert_eq!(counts(&host), [2, 0, 1]);
    expect_error(&t2, ERR_CANCELED);

    let d = Sim::join(&host, 1);
    d.expect_task(&t1, b"one");
    assert!(d.quiet(50));
    assert_eq!(counts(&host), [1, 1, 1]);
    d.answer(t1.id as u64, b"one");
    d.expect_task(&t3, b"three");
    assert!(d.quiet(50));
    d.answer(t3.id as u64, b"three");
    wait(&t1);
    wait(&t3);
    assert!(d.quiet(100), "the cancelled task reached the daemon");
    expect_value(&t1, b"one");
    expect_value(&t3, b"three");
    assert_eq!(counts(&host), [0, 0, 3]);
    // cancelling a finished task does nothing
    assert!(!t1.cancel(ERR_CANCELED));
    assert_eq!(counts(&host), [0, 0, 3]);
    host.close(false);
}

/// 3. Cancelling a running task resolves it at once and interrupts it on
///    its daemon, which stays busy until it answers; that late answer is
///    dropped.
#[test]
fn cancelling_an_executing_task() {
    let _g = serial();
    let host = dispatcher(&abstract_url("cancel-executing"), None);
    let d = Sim::join(&host, 1);
    let t1 = submit(&host, b"long", None);
    let t2 = submit(&host, b"next", None);
    d.expect_task(&t1, b"long");
    assert_eq!(counts(&host), [1, 1, 0]);

    assert!(t1.cancel(ERR_CANCELED));
    // resolved before the daemon has said anything
    assert!(!t1.is_pending() && t1.is_error_code());
    assert!(!t1.cancel(ERR_CANCELED));
    d.expect_cancel(&t1);
    // still busy: the next task waits for the cancelled one's answer
    assert!(
        d.quiet(150),
        "a daemon with a cancelled task still running got more"
    );
    assert!(t2.is_pending());
    assert_eq!(host.stats().awaiting, 1);

    d.answer(t1.id as u64, b"late");
    d.expect_task(&t2, b"next");
    // the late answer was dropped
    assert!(!t1.is_pending() && t1.is_error_code());
    d.answer(t2.id as u64, b"next");
    wait(&t2);
    expect_value(&t2, b"next");
    expect_error(&t1, ERR_CANCELED);
    assert_eq!(counts(&host), [0, 0, 2]);
    assert!(d.quiet(50));
    host.close(false);
}

/// 4. A timeout resolves the task to errorValue 5, interrupting it on its
///    daemon or dropping it from the queue.
#[test]
fn timeouts_cancel_running_and_queued_tasks() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    let d = Sim::join(&host, 1);
    let limit = Duration::from_millis(100);
    let start = Instant::now();
    let running = submit(&host, b"running", Some(limit));
    let queued = submit(&host, b"queued", Some(limit));
    let later = submit(&host, b"later", None);
    d.expect_task(&running, b"running");

    wait(&running);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(90),
        "timed out early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "timed out late: {took:?}");
    wait(&queued);
    d.expect_cancel(&running);
    assert!(later.is_pending());
    assert!(d.quiet(50));
    assert_eq!(counts(&host), [1, 1, 1]);

    // the daemon answers the interrupted task; the timed-out queued task
    // is skipped
    d.answer(running.id as u64, b"too late");
    d.expect_task(&later, b"later");
    d.answer(later.id as u64, b"later");
    wait(&later);
    expect_value(&later, b"later");
    expect_error(&running, ERR_TIMEOUT);
    expect_error(&queued, ERR_TIMEOUT);
    assert!(d.quiet(150), "a timed-out task reached the daemon");
    assert_eq!(counts(&host), [0, 0, 3]);

    // a task that finishes in time is not touched by its timeout
    let quick = submit(&host, b"quick", Some(Duration::from_millis(50)));
    d.expect_task(&quick, b"quick");
    d.answer(quick.id as u64, b"quick");
    wait(&quick);
    std::thread::sleep(Duration::from_millis(150));
    expect_value(&quick, b"quick");
    assert!(d.quiet(0), "CANCEL sent for a finished task");
    assert_eq!(counts(&host), [0, 0, 4]);
    host.close(false);
}

/// 5. Queued payload bytes count against the memory budget: while the
///    bytes waiting are at or above it, submissions are handed back; below
///    it one is admitted even if it takes the queue over. Room comes when
///    tasks leave the queue (sent to a daemon, or cancelled). Tasks handed
///    straight to a free daemon never count.
#[test]
fn memory_budget_admits_and_refuses() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", Some(1000));
    let payload = vec![42u8; 4000 - HEADER_LEN - ID_FLAGS_LEN];
    let t1 = task(&host, &payload);
    assert_eq!(t1.frame.len(), 4000);
    let a1 = t1.aio.clone();
    // below the budget: admitted, however large
    assert!(host.submit_within_budget(t1, None, Duration::ZERO).is_ok());
    let s = host.stats();
    assert_eq!((s.awaiting, s.memory_used, s.memory_peak), (1, 4000, 4000));
    assert_eq!(s.memory_limit, Some(1000));

    let t2 = task(&host, &payload);
    let a2 = t2.aio.clone();
    let t2 = host
        .submit_within_budget(t2, None, Duration::ZERO)
        .expect_err("over budget, yet admitted");
    assert!(Arc::ptr_eq(&t2.aio, &a2));
    assert!(!host.has_room());
    // waiting with no daemon to take anything: refused after the wait
    let start = Instant::now();
    let t2 = host
        .submit_within_budget(t2, None, Duration::from_millis(100))
        .expect_err("over budget, yet admitted");
    assert!(start.elapsed() >= Duration::from_millis(90));

    // a daemon takes the first task: its bytes leave the budget
    let d = Sim::join(&host, 1);
    d.expect_task(&a1, &payload);
    eventually("first task sent", || host.stats().memory_used == 0);
    assert!(host.has_room());
    assert!(host.submit_within_budget(t2, None, Duration::ZERO).is_ok());
    let s = host.stats();
    assert_eq!((s.awaiting, s.executing, s.memory_used), (1, 1, 4000));
    let small = task(&host, b"x");
    let small = host
        .submit_within_budget(small, None, Duration::ZERO)
        .expect_err("over budget, yet admitted");

    // cancelling the queued task frees its bytes for the next one
    assert!(a2.cancel(ERR_CANCELED));
    let a3 = small.aio.clone();
    assert!(host
        .submit_within_budget(small, None, Duration::ZERO)
        .is_ok());
    let s = host.stats();
    assert_eq!((s.awaiting, s.executing), (1, 1));
    assert!(s.memory_used < 1000, "cancelled bytes still counted");
    // below the budget: admitted, taking the queue over it
    let t4 = task(&host, &payload);
    let a4 = t4.aio.clone();
    assert!(host.submit_within_budget(t4, None, Duration::ZERO).is_ok());
    let s = host.stats();
    assert_eq!(s.memory_used, 4000 + (HEADER_LEN + ID_FLAGS_LEN + 1) as u64);
    assert_eq!(s.memory_peak, s.memory_used);

    // a submitter waiting for room gets it when a queued task is
    // cancelled (retrying as the R thread does)
    let t5 = task(&host, &payload);
    let a5 = t5.aio.clone();
    let h = host.clone();
    let waiter = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut t = t5;
        loop {
            match h.submit_within_budget(t, None, Duration::from_millis(100)) {
                Ok(()) => return Instant::now() < deadline,
                Err(back) if Instant::now() < deadline => t = back,
                Err(_) => return false,
            }
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "admitted over budget");
    // the daemon taking the small task leaves the queue over the budget
    d.answer(a1.id as u64, b"1");
    d.expect_task(&a3, b"x");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "admitted over budget");
    let cancelled_at = Instant::now();
    assert!(a4.cancel(ERR_CANCELED));
    assert!(waiter.join().unwrap(), "not admitted after a cancellation");
    assert!(cancelled_at.elapsed() < Duration::from_secs(5));

    d.answer(a3.id as u64, b"x");
    d.expect_task(&a5, &payload);
    d.answer(a5.id as u64, b"5");
    wait(&a5);
    assert!(d.quiet(100), "a cancelled task reached the daemon");
    let s = host.stats();
    assert_eq!((s.awaiting, s.executing, s.memory_used), (0, 0, 0));
    expect_error(&a2, ERR_CANCELED);
    expect_error(&a4, ERR_CANCELED);

    // a task handed straight to the free daemon never counts
    let before = host.stats().memory_peak;
    let quick = submit(&host, &payload, None);
    d.expect_task(&quick, &payload);
    assert_eq!(host.stats().memory_used, 0);
    assert_eq!(host.stats().memory_peak, before);
    host.close(false);
}

/// 6. A broadcast (`everywhere()`) of one task runs first on one daemon;
///    every other daemon, those connecting later included, runs it too
///    before its next ordinary task, and those extra runs are not counted.
#[test]
fn broadcast_reaches_every_daemon_before_later_tasks() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    let d1 = Sim::join(&host, 1);
    let t0 = submit(&host, b"t0", None);
    d1.expect_task(&t0, b"t0");

    let aios = host.broadcast(Arc::from(&b"everywhere"[..]), 1);
    assert_eq!(aios.len(), 1);
    let t1 = submit(&host, b"t1", None);
    // not while the daemon is busy
    assert!(d1.quiet(50));
    d1.answer(t0.id as u64, b"t0");
    let got = d1.recv_task();
    assert_eq!(got.flags, TASK_KEEP_STATE);
    assert_eq!(got.payload, b"everywhere");
    assert_eq!(got.id, aios[0].id as u64);
    // the broadcast is a task like any other: one at a time
    assert!(d1.quiet(50));
    assert!(t1.is_pending() && aios[0].is_pending());
    assert_eq!(counts(&host), [1, 1, 1]);
    d1.answer(got.id, b"done");
    d1.expect_task(&t1, b"t1");
    wait(&aios[0]);
    expect_value(&aios[0], b"done");
    // once done, the host keeps nothing of it but the payload for daemons
    // that join later: the caller holds the only reference (the I/O
    // thread that completed it lets go of it just after)
    let until = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&aios[0]) > 1 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(Arc::strong_count(&aios[0]), 1);

    // a daemon connecting later runs it first, even with a task queued
    let t2 = submit(&host, b"t2", None);
    let d2 = Sim::join(&host, 2);
    let got = d2.recv_task();
    assert_eq!(got.flags, TASK_KEEP_STATE);
    assert_eq!(got.payload, b"everywhere");
    assert!(d2.quiet(50));
    // the extra run is not a task of the profile's
    assert_eq!(counts(&host), [1, 1, 2]);
    d2.answer(got.id, b"done 2");
    d2.expect_task(&t2, b"t2");

    d1.answer(t1.id as u64, b"t1");
    d2.answer(t2.id as u64, b"t2");
    wait(&t1);
    wait(&t2);
    expect_value(&t1, b"t1");
    expect_value(&t2, b"t2");
    assert_eq!(counts(&host), [0, 0, 4]);
    assert!(d1.quiet(50) && d2.quiet(0));
    host.close(false);
}

/// 6b. A broadcast group goes to distinct daemons, and tasks submitted
///     after it wait until every member of the group has been taken (the
///     synchronisation point), even while a member daemon is free.
#[test]
fn broadcast_group_is_a_synchronisation_point() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    let d1 = Sim::join(&host, 1);
    let d2 = Sim::join(&host, 2);
    let busy = submit(&host, b"busy", None);
    d1.expect_task(&busy, b"busy");
    let group = host.broadcast(Arc::from(&b"setup"[..]), 2);
    let after = submit(&host, b"after", None);
    // d2 is free: it takes one group task
    let g2 = d2.recv_task();
    assert_eq!(g2.flags, TASK_KEEP_STATE);
    d2.answer(g2.id, b"ok");
    // d2 may take neither the other group task nor the task after it
    assert!(d2.quiet(100), "went past the synchronisation point");
    assert!(after.is_pending());
    // d1 finishes: it takes the other group task, then work flows
    d1.answer(busy.id as u64, b"busy");
    let g1 = d1.recv_task();
    assert_eq!(g1.flags, TASK_KEEP_STATE);
    assert_ne!(g1.id, g2.id);
    d2.expect_task(&after, b"after");
    d1.answer(g1.id, b"ok");
    d2.answer(after.id as u64, b"after");
    for a in group.iter().chain([&after]) {
        wait(a);
    }
    assert!(
        d1.quiet(50) && d2.quiet(0),
        "a daemon ran the broadcast twice"
    );
    assert_eq!(counts(&host), [0, 0, 4]);
    host.close(false);
}

/// 6c. A group larger than the daemons connected waits for more daemons,
///     and tasks behind it wait too; a daemon that dies with a group task
///     takes it with it (errorValue 19).
#[test]
fn broadcast_group_waits_for_daemons_to_connect() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    let group = host.broadcast(Arc::from(&b"setup"[..]), 2);
    let after = submit(&host, b"after", None);
    assert_eq!(counts(&host), [3, 0, 0]);
    let d1 = Sim::join(&host, 1);
    let g1 = d1.recv_task();
    d1.answer(g1.id, b"ok");
    assert!(d1.quiet(100), "went past the synchronisation point");
    let d2 = Sim::join(&host, 2);
    let g2 = d2.recv_task();
    assert_eq!(g2.flags, TASK_KEEP_STATE);
    // the group is all taken: d1 takes the task behind it
    d1.expect_task(&after, b"after");
    drop(d2);
    let lost = group.iter().find(|a| a.id as u64 == g2.id).unwrap();
    wait(lost);
    expect_error(lost, ERR_CONNECTION_RESET);
    d1.answer(after.id as u64, b"after");
    wait(&after);
    assert_eq!(counts(&host), [0, 0, 3]);
    host.close(false);
}

/// 6d. A broadcast's payload is one allocation shared by the frames of
///     every daemon, not a copy each.
#[test]
fn broadcast_frames_share_one_payload() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    let payload: Arc<[u8]> = Arc::from(vec![9u8; 100_000]);
    let aios = host.broadcast(payload.clone(), 3);
    assert_eq!(aios.len(), 3);
    // ours, the broadcast's record, and one per queued frame
    assert_eq!(Arc::strong_count(&payload), 2 + 3);
    let daemons: Vec<Sim> = (1..=3).map(|n| Sim::join(&host, n)).collect();
    for d in &daemons {
        let got = d.recv_task();
        assert_eq!(got.payload.len(), 100_000);
        d.answer(got.id, b"ok");
    }
    for a in &aios {
        wait(a);
    }
    host.close(false);
}

/// 6e. With a stream S0, the k-th daemon to connect is given N^k(S0) in
///     its WELCOME (a dispatcher's random-number streams); without a
///     dispatcher nothing.
#[test]
fn connecting_daemons_get_successive_streams() {
    let _g = serial();
    let s0 = [10407, 1, 2, 3, 4, 5, 6];
    let host = Host::listen_with(
        "tcp://127.0.0.1:0",
        HostConfig {
            dispatcher: true,
            stream: Some(s0),
            ..HostConfig::default()
        },
    )
    .unwrap();
    let mut expected = s0;
    let mut keep = Vec::new();
    for n in 1..=3 {
        expected = mirai::streams::next_stream(&expected);
        let (d, welcome) = Sim::connect_welcomed(host.url());
        connected(&host, n);
        assert_eq!(welcome.stream, Some(expected), "daemon {n}");
        keep.push(d);
    }
    host.close(false);
    let plain = Host::listen_with(
        "tcp://127.0.0.1:0",
        HostConfig {
            stream: Some(s0),
            ..HostConfig::default()
        },
    )
    .unwrap();
    let (_d, welcome) = Sim::connect_welcomed(plain.url());
    assert_eq!(welcome.stream, None);
    plain.close(false);
}

/// 6g. A dispatcher with a serialization configuration announces it in
///     WELCOME and sends it (SERIAL) right after, before any task, to
///     every daemon that connects, including a task queued before it came.
#[test]
fn the_serialization_configuration_precedes_the_first_task() {
    let _g = serial();
    let config: Arc<[u8]> = Arc::from(&b"serialized configuration"[..]);
    let host = Host::listen_with(
        "tcp://127.0.0.1:0",
        HostConfig {
            dispatcher: true,
            serial: Some(config.clone()),
            ..HostConfig::default()
        },
    )
    .unwrap();
    let t = submit(&host, b"queued early", None);
    for n in 1..=2 {
        let (d, welcome) = Sim::connect_welcomed(host.url());
        assert!(welcome.serial, "daemon {n}: no configuration announced");
        let f = d.recv();
        assert_eq!(
            f.kind,
            mirai::protocol::message::SERIAL,
            "daemon {n}: expected SERIAL first"
        );
        assert_eq!(SerialConfig::decode(&f).unwrap().config, &config[..]);
        if n == 1 {
            d.expect_task(&t, b"queued early");
            d.answer(t.id as u64, b"done");
            wait(&t);
        }
        connected(&host, 1);
        drop(d);
        eventually("daemon removed", || host.connections() == 0);
    }
    host.close(false);
    // without dispatcher there is none to send
    let plain = Host::listen_with(
        "tcp://127.0.0.1:0",
        HostConfig {
            serial: Some(config),
            ..HostConfig::default()
        },
    )
    .unwrap();
    let (d, welcome) = Sim::connect_welcomed(plain.url());
    assert!(!welcome.serial);
    assert!(d.quiet(100));
    plain.close(false);
}

/// 6f. With `retry`, a task whose daemon dies before answering goes back
///     to the head of the queue, up to `retry` times, then resolves to 19.
#[test]
fn retry_requeues_tasks_lost_with_their_daemon() {
    let _g = serial();
    let host = Host::listen_with(
        "tcp://127.0.0.1:0",
        HostConfig {
            dispatcher: true,
            retry: 1,
            ..HostConfig::default()
        },
    )
    .unwrap();
    let a = Sim::join(&host, 1);
    let t = submit(&host, b"fragile", None);
    let later = submit(&host, b"later", None);
    a.expect_task(&t, b"fragile");
    drop(a);
    eventually("daemon removed", || host.connections() == 0);
    assert!(t.is_pending(), "resolved although it had a retry left");
    assert_eq!(host.stats().retries, 1);
    assert_eq!(counts(&host), [2, 0, 0]);
    // the task is first again, then loses its last attempt
    let b = Sim::join(&host, 1);
    b.expect_task(&t, b"fragile");
    drop(b);
    wait(&t);
    expect_error(&t, ERR_CONNECTION_RESET);
    assert_eq!(host.stats().retries, 1);
    let c = Sim::join(&host, 1);
    c.expect_task(&later, b"later");
    c.answer(later.id as u64, b"done");
    wait(&later);
    expect_value(&later, b"done");
    assert_eq!(counts(&host), [0, 0, 2]);
    host.close(false);
}

/// 7. A daemon dying mid-task fails that task with errorValue 19 at once;
///    the queue carries on with the other daemons.
#[test]
fn a_daemon_dying_mid_task() {
    let _g = serial();
    let host = dispatcher(&abstract_url("dying"), None);
    let a = Sim::join(&host, 1);
    let b = Sim::join(&host, 2);
    let lost = submit(&host, b"lost", None);
    a.expect_task(&lost, b"lost");
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| vec![i; 3]).collect();
    let rest: Vec<_> = payloads.iter().map(|p| submit(&host, p, None)).collect();
    b.expect_task(&rest[0], &payloads[0]);

    let start = Instant::now();
    drop(a);
    wait(&lost);
    assert!(start.elapsed() < Duration::from_secs(2), "slow to notice");
    expect_error(&lost, ERR_CONNECTION_RESET);
    connected(&host, 1);
    eventually("daemon removed", || host.connections() == 1);
    assert_eq!(counts(&host), [4, 1, 1]);

    for (i, (aio, p)) in rest.iter().zip(&payloads).enumerate() {
        if i > 0 {
            b.expect_task(aio, p);
        }
        assert!(b.quiet(20));
        b.answer(aio.id as u64, p);
        wait(aio);
        expect_value(aio, p);
    }
    assert_eq!(counts(&host), [0, 0, 6]);
    // cancelling the lost task now does nothing
    assert!(!lost.cancel(ERR_CANCELED));
    assert_eq!(counts(&host), [0, 0, 6]);
    host.close(false);
}

/// 8. Closing resolves every unfinished task, queued or running, to
///    errorValue 19, and closes every daemon's connection.
#[test]
fn close_fails_every_unfinished_task() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", Some(1 << 20));
    let a = Sim::join(&host, 1);
    let b = Sim::join(&host, 2);
    let ta = submit(&host, b"a", None);
    let tb = submit(&host, b"b", None);
    a.expect_task(&ta, b"a");
    b.expect_task(&tb, b"b");
    // one cancelled while running, one cancelled while queued
    let cancelled = submit(&host, b"c", None);
    let queued: Vec<_> = (0..3u8).map(|i| submit(&host, &[i], None)).collect();
    assert!(cancelled.cancel(ERR_CANCELED));
    assert!(ta.cancel(ERR_CANCELED));
    a.expect_cancel(&ta);
    let timed = submit(&host, b"t", Some(Duration::from_millis(200)));
    assert_eq!(counts(&host), [4, 2, 1]);

    host.close(false);
    assert!(host.is_closed());
    // resolved by the time close returns
    for aio in queued.iter().chain([&tb, &timed]) {
        assert!(
            !aio.is_pending(),
            "task {} still pending after close",
            aio.id
        );
        expect_error(aio, ERR_CONNECTION_RESET);
    }
    expect_error(&ta, ERR_CANCELED);
    expect_error(&cancelled, ERR_CANCELED);
    a.expect_eof();
    b.expect_eof();
    assert_eq!(host.connections(), 0);
    let s = host.stats();
    assert_eq!((s.awaiting, s.executing, s.memory_used), (0, 0, 0));

    // the timeout firing later changes nothing
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(host.stats().awaiting, 0);
    // nothing more is accepted
    let late = submit(&host, b"late", None);
    expect_error(&late, ERR_CONNECTION_RESET);
    let t = task(&host, b"late");
    let late = t.aio.clone();
    assert!(host.submit_within_budget(t, None, Duration::ZERO).is_ok());
    expect_error(&late, ERR_CONNECTION_RESET);
    assert!(host.broadcast(Arc::from(&b"late"[..]), 1).is_empty());

    // with send_exit, daemons are told to exit, then closed
    let host = dispatcher(&abstract_url("close-exit"), None);
    let d = Sim::join(&host, 1);
    let t = submit(&host, b"x", None);
    d.expect_task(&t, b"x");
    host.close(true);
    expect_error(&t, ERR_CONNECTION_RESET);
    assert_eq!(d.recv().kind, EXIT);
    d.expect_eof();
}

/// 10. A daemon announcing that it is leaving gets nothing more; the task
///     it was sent but never started goes back to the head of the queue and
///     runs elsewhere (unless cancelled meanwhile).
#[test]
fn a_leaving_daemon_hands_back_its_unstarted_task() {
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    let a = Sim::join(&host, 1);
    let b = Sim::join(&host, 2);
    let t0 = submit(&host, b"t0", None);
    let t1 = submit(&host, b"t1", None);
    let t2 = submit(&host, b"t2", None);
    let t3 = submit(&host, b"t3", None);
    a.expect_task(&t0, b"t0");
    b.expect_task(&t1, b"t1");
    assert_eq!(counts(&host), [2, 2, 0]);

    a.send(LEAVING, &[]);
    eventually("task handed back", || counts(&host) == [3, 1, 0]);
    assert!(t0.is_pending());
    assert!(a.quiet(100), "a leaving daemon was sent more");
    // it goes first, ahead of the tasks that were queued behind it
    b.answer(t1.id as u64, b"t1");
    b.expect_task(&t0, b"t0");
    // the leaving daemon going does not fail the task it handed back
    drop(a);
    eventually("daemon removed", || host.connections() == 1);
    assert!(t0.is_pending());
    b.answer(t0.id as u64, b"t0");
    b.expect_task(&t2, b"t2");
    b.answer(t2.id as u64, b"t2");
    b.expect_task(&t3, b"t3");
    b.answer(t3.id as u64, b"t3");
    for (t, p) in [(&t0, b"t0"), (&t1, b"t1"), (&t2, b"t2"), (&t3, b"t3")] {
        wait(t);
        expect_value(t, p);
    }
    assert_eq!(counts(&host), [0, 0, 4]);

    // a task cancelled before its daemon leaves is not handed on
    let c = Sim::join(&host, 2);
    let tx = submit(&host, b"tx", None);
    let ty = submit(&host, b"ty", None);
    b.expect_task(&tx, b"tx");
    c.expect_task(&ty, b"ty");
    assert!(ty.cancel(ERR_CANCELED));
    c.expect_cancel(&ty);
    c.send(LEAVING, &[]);
    eventually("daemon leaving", || counts(&host) == [0, 1, 5]);
    b.answer(tx.id as u64, b"tx");
    wait(&tx);
    expect_value(&tx, b"tx");
    assert!(b.quiet(100), "a cancelled task was handed on");
    // later tasks go to the daemon that stays
    let tz = submit(&host, b"tz", None);
    b.expect_task(&tz, b"tz");
    assert!(c.quiet(50));
    b.answer(tz.id as u64, b"tz");
    wait(&tz);
    expect_value(&tz, b"tz");
    expect_error(&ty, ERR_CANCELED);
    assert_eq!(counts(&host), [0, 0, 7]);
    host.close(false);
    c.expect_eof();
}

/// A cancellation racing a daemon's disconnect: the cancel may land after
/// the host has dropped the daemon but before it has failed the daemon's
/// tasks. Whichever wins, the task resolves once, the dispatcher's counts
/// stay right and later tasks still reach free daemons at once.
#[test]
fn cancel_racing_a_disconnect() {
    const ROUNDS: usize = 500;
    let _g = serial();
    let host = dispatcher("tcp://127.0.0.1:0", None);
    // a thread waiting for connections makes the host wake it on every
    // disconnect (as the R thread does while daemons start), between
    // dropping the daemon and failing its tasks
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (host, stop) = (host.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                host.wait_connections(usize::MAX, Duration::from_millis(100));
            }
        })
    };
    let mut rounds = 0;
    let mut cancel_won = false;
    while rounds < ROUNDS && !cancel_won {
        rounds += 1;
        let d = Sim::join(&host, 1);
        let t = submit(&host, b"racing", None);
        d.expect_task(&t, b"racing");
        // cancel just as the host has dropped the daemon
        drop(d);
        let deadline = Instant::now() + Duration::from_secs(10);
        while host.connections() == 1 {
            assert!(Instant::now() < deadline, "disconnect not noticed");
        }
        cancel_won = t.cancel(ERR_CANCELED);
        wait(&t);
        match t.take() {
            Outcome::Error(ERR_CANCELED) => assert!(cancel_won),
            Outcome::Error(ERR_CONNECTION_RESET) => assert!(!cancel_won),
            other => panic!("unexpected {other:?}"),
        }
        // either way the task is done: completed counts every finished task
        assert_eq!(host.stats().completed, rounds as u64);
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    if cancel_won {
        eprintln!("the cancel landed after the disconnect in round {rounds}");
    } else {
        eprintln!("the cancel never landed after the disconnect in {ROUNDS} rounds");
    }

    // a free daemon gets the next task at once
    let d = Sim::join(&host, 1);
    let t = submit(&host, b"after", None);
    assert!(
        !d.quiet(2000),
        "a task stays queued while a daemon is free ({} awaiting)",
        host.stats().awaiting as i64
    );
    d.expect_task(&t, b"after");
    assert_eq!(counts(&host), [0, 1, rounds as u64]);
    d.answer(t.id as u64, b"after");
    wait(&t);
    expect_value(&t, b"after");
    host.close(false);
}

// ---------------------------------------------------------------------
// Scale: thousands of daemons, a million queued tasks

fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

fn threads() -> u64 {
    proc_status("Threads:")
}

/// Threads of the host's I/O runtime.
fn io_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == "mirai-io")
        .count()
}

/// Raise the soft limit on open files to the hard limit; returns it.
fn raise_nofile_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one valid rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
    }
    lim.rlim_cur
}

/// What the simulated daemons saw.
struct Tally {
    /// Per task (by id - `base`): how many times it was received.
    seen: Vec<AtomicU8>,
    base: u32,
    tasks: AtomicU64,
    unknown: AtomicU64,
}

/// A lightweight simulated daemon: a task on the test's own runtime that
/// answers every TASK at once with a RESULT echoing its payload, until the
/// host closes the connection.
async fn light_daemon(
    addr: std::os::unix::net::SocketAddr,
    tally: Arc<Tally>,
    gate: Arc<tokio::sync::Semaphore>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let permit = gate.acquire_owned().await.unwrap();
    let addr = tokio::net::unix::SocketAddr::from(addr);
    let mut tries = 0;
    let stream = loop {
        match tokio::net::UnixStream::connect_addr(&addr).await {
            Ok(s) => break s,
            // a full listen backlog: try again shortly
            Err(_) if tries < 200 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let (rd, mut wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(512, rd);
    wr.write_all(&frame(
        HELLO,
        &hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &[0u8; PROOF_LEN]),
    ))
    .await?;
    let welcome = read_frame(&mut rd, HANDSHAKE_MAX).await?;
    if welcome.kind != WELCOME {
        return Err(invalid("not welcomed"));
    }
    drop(permit);
    let mut header = [0u8; HEADER_LEN];
    let mut buf = Vec::with_capacity(64);
    loop {
        match rd.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u64::from_le_bytes(header[1..].try_into().unwrap()) as usize;
        match header[0] {
            TASK if (ID_FLAGS_LEN..1024).contains(&len) => {}
            EXIT if len == 0 => return Ok(()),
            k => return Err(invalid(&format!("unexpected frame kind {k}, length {len}"))),
        }
        buf.clear();
        buf.push(RESULT);
        buf.extend_from_slice(&header[1..]);
        buf.resize(HEADER_LEN + len, 0);
        rd.read_exact(&mut buf[HEADER_LEN..]).await?;
        let id = u64::from_le_bytes(buf[HEADER_LEN..HEADER_LEN + 8].try_into().unwrap());
        tally.tasks.fetch_add(1, Ordering::Relaxed);
        match (id as u32)
            .checked_sub(tally.base)
            .and_then(|i| tally.seen.get(i as usize))
        {
            Some(n) if id <= u32::MAX as u64 => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                tally.unknown.fetch_add(1, Ordering::Relaxed);
            }
        }
        buf[HEADER_LEN + 8] = 0; // result flags
        wr.write_all(&buf).await?;
    }
}

/// 9. 2,000 daemons and 1,000,000 tasks queued before any of them
///    connects: every task runs exactly once and completes, queued tasks
///    cost little memory, and the host uses a fixed handful of threads.
#[test]
#[ignore = "a benchmark: run by tools/bench/run.R (cargo test -- --ignored)"]
fn scale_thousands_of_daemons_a_million_tasks() {
    let _g = serial();
    let n_tasks: usize = 1_000_000;
    let limit = raise_nofile_limit();
    // two descriptors per daemon (host side and daemon side), and room
    // for the rest of the process
    let n_daemons = 2000.min(limit.saturating_sub(200) as usize / 2);
    if n_daemons < 2000 {
        eprintln!(
            "scale: open file limit is {limit}, too low for 2000 daemons \
             (two descriptors each): using {n_daemons}"
        );
    }
    assert!(n_daemons >= 100, "open file limit {limit} is far too low");

    let url = abstract_url("scale");
    let host = dispatcher(&url, None);
    let payload = |i: usize| (i as u32).to_le_bytes();

    // the test's own bookkeeping, touched before measuring
    let mut aios: Vec<Option<Arc<Aio>>> = vec![None; n_tasks];
    let threads_before = threads();
    let rss_before = rss_bytes();
    let start = Instant::now();
    for (i, slot) in aios.iter_mut().enumerate() {
        let t = task(&host, &payload(i));
        *slot = Some(t.aio.clone());
        host.submit(t, None);
    }
    let queue_time = start.elapsed();
    let rss_after = rss_bytes();
    let per_task = rss_after.saturating_sub(rss_before) as f64 / n_tasks as f64;
    eprintln!(
        "scale: queued {n_tasks} tasks in {:.2} s: {per_task:.0} bytes of memory per queued task",
        queue_time.as_secs_f64()
    );
    assert!(per_task < 300.0, "{per_task:.0} bytes per queued task");
    let aios: Vec<Arc<Aio>> = aios.into_iter().map(Option::unwrap).collect();
    assert_eq!(host.stats().awaiting, n_tasks as u64);

    let base = aios[0].id;
    for (i, a) in aios.iter().enumerate() {
        assert_eq!(a.id, base + i as u32, "task ids not consecutive");
    }
    let tally = Arc::new(Tally {
        seen: (0..n_tasks).map(|_| AtomicU8::new(0)).collect(),
        base,
        tasks: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sim-daemons")
        .enable_all()
        .build()
        .unwrap();
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        let name = url.strip_prefix("abstract://").unwrap();
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let start = Instant::now();
    let daemons: Vec<_> = (0..n_daemons)
        .map(|_| rt.spawn(light_daemon(addr.clone(), tally.clone(), gate.clone())))
        .collect();

    let mut max_threads = threads();
    let mut max_io_threads = io_threads();
    let mut all_connected = None;
    let deadline = start + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        max_threads = max_threads.max(threads());
        max_io_threads = max_io_threads.max(io_threads());
        let s = host.stats();
        if all_connected.is_none() && s.connections == n_daemons as u64 {
            all_connected = Some(start.elapsed());
        }
        if s.completed == n_tasks as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n_tasks} tasks completed, {} daemons connected",
            s.completed,
            s.connections
        );
        assert!(
            !daemons.iter().any(|d| d.is_finished()),
            "a simulated daemon ended early"
        );
    }
    let elapsed = start.elapsed();
    eprintln!(
        "scale: {n_daemons} daemons ran {n_tasks} tasks in {:.2} s ({:.0} tasks/s); \
         all connected after {:.2} s",
        elapsed.as_secs_f64(),
        n_tasks as f64 / elapsed.as_secs_f64(),
        all_connected.unwrap_or(elapsed).as_secs_f64(),
    );
    eprintln!(
        "scale: threads before {threads_before}, at most {max_threads} during the run \
         ({max_io_threads} mirai-io, 2 simulated-daemon runtime workers)"
    );

    let s = host.stats();
    assert_eq!(s.completed, n_tasks as u64);
    assert_eq!((s.awaiting, s.executing), (0, 0));
    assert_eq!(s.connections, n_daemons as u64);
    assert_eq!(s.cumulative, n_daemons as u64);
    for (i, a) in aios.iter().enumerate() {
        assert!(!a.is_pending(), "task {i} still pending");
        expect_value(a, &payload(i));
    }
    assert_eq!(tally.tasks.load(Ordering::Relaxed), n_tasks as u64);
    assert_eq!(tally.unknown.load(Ordering::Relaxed), 0);
    for (i, n) in tally.seen.iter().enumerate() {
        assert_eq!(
            n.load(Ordering::Relaxed),
            1,
            "task {i} received {n:?} times"
        );
    }
    // no thread per task or per connection: the host's runtime has at
    // most 4 workers, the simulated daemons' 2
    assert!(
        (1..=4).contains(&max_io_threads),
        "{max_io_threads} I/O threads"
    );
    assert!(
        max_threads <= threads_before + 4,
        "thread count grew from {threads_before} to {max_threads}"
    );

    // every daemon is let go when the host closes
    host.close(false);
    rt.block_on(async {
        for d in daemons {
            match tokio::time::timeout(Duration::from_secs(30), d).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("simulated daemon failed: {e}"),
                Ok(Err(e)) => panic!("simulated daemon panicked: {e}"),
                Err(_) => panic!("simulated daemon not released by close"),
            }
        }
    });
}
