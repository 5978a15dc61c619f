//! The daemon side of a connection. A daemon does one thing at a time, so
//! its R thread reads each task and writes each result on a blocking socket
//! itself: no I/O thread, no hand-off, one wake-up per task.
//!
//! What happens when the connection drops depends on `autoexit`:
//! - `Immediate` (TRUE): R stops serving; if R is busy evaluating at the
//!   time, a watcher thread that polls the socket for hang-up ends the
//!   process after a short grace period (no orphans).
//! - `AfterTask` (NA): R stops serving once the current task is done.
//! - `Never` (FALSE): dial again and serve whichever host appears there.
//!
//! The same watcher thread hears cancellations: a dispatcher sends nothing
//! to a busy daemon but a CANCEL for its task, which the watcher answers by
//! interrupting R's main thread (SIGINT), so the evaluation stops and the
//! daemon replies and serves on.

use crate::aio::SPIN_BEFORE_SLEEP;
use crate::protocol::*;
use crate::rawargs::RawArg;
use crate::transport::{dial_sync, SyncStream};
use crate::url::Url;
use parking_lot::{Condvar, Mutex};
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a busy daemon gets to finish after its host disappears.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// Tasks shorter than this are not watched at all: the watcher thread
/// stays asleep through a stream of tiny tasks instead of waking for each.
const WATCH_AFTER: Duration = Duration::from_millis(5);
const REDIAL_INTERVAL: Duration = Duration::from_millis(250);
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AutoExit {
    Immediate,
    AfterTask,
    Never,
}

/// What the R thread receives.
pub enum Incoming {
    /// A task; its body is in the client's receive buffer (see
    /// [`Client::with_task_body`]). Raw vectors (`raw`, see `rawargs`)
    /// follow on the connection: read each with [`Client::read_raw`],
    /// then call [`Client::start_task`].
    Task {
        id: u64,
        flags: u8,
        epoch: u64,
        raw: Vec<(RawArg, usize)>,
    },
    /// The host asked this daemon to exit.
    Exit,
    /// The connection dropped and this daemon does not redial.
    Disconnected,
    /// The host refused this daemon (the reason is its message).
    Refused(String),
}

struct Conn {
    stream: SyncStream,
    epoch: u64,
}

/// What R is busy with: the task and the socket it came on.
#[derive(Clone, Copy, PartialEq)]
struct Busy {
    fd: RawFd,
    task: u64,
}

/// Shared with the watcher thread: which socket to watch while R is busy.
struct Watch {
    busy: Mutex<Option<Busy>>,
    /// The watcher is asleep waiting for R to become busy (read and
    /// written under the `busy` lock).
    asleep: AtomicBool,
    wake: Condvar,
    finished: AtomicBool,
    /// End the process if the host goes away mid-task (autoexit TRUE).
    exit_on_hangup: bool,
    /// R's main thread, to interrupt on cancellation.
    main_thread: libc::pthread_t,
    /// R's session temporary directory, removed on a forced exit.
    tempdir: String,
}

/// Used from R's main thread only; the locks just make that safe to state.
pub struct Client {
    url: Url,
    /// Proven to the host in every handshake (see `host::new_secret`).
    secret: Vec<u8>,
    /// Trust settings for a secure URL.
    tls: Option<Arc<rustls::ClientConfig>>,
    autoexit: AutoExit,
    conn: Mutex<Option<Conn>>,
    /// Whether to (re)dial when there is no connection.
    may_dial: AtomicBool,
    epoch: AtomicU64,
    next_dial: Mutex<Instant>,
    watch: Arc<Watch>,
    /// Reused from task to task, so a daemon moving large objects does not
    /// fault in fresh memory for each one.
    recv_buf: Mutex<Vec<u8>>,
    send_buf: Mutex<Vec<u8>>,
    /// The last `recv` returned a task.
    just_served: AtomicBool,
}

enum DialError {
    Io(String),
    Refused(String),
}

fn connect_once(
    url: &Url,
    secret: &[u8],
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<SyncStream, DialError> {
    let io = |e: std::io::Error| DialError::Io(e.to_string());
    let s = dial_sync(url, DIAL_TIMEOUT, tls).map_err(io)?;
    let hello = frame(HELLO, &hello_body(PROTOCOL_VERSION, &advertised_version()));
    (&s).write_all(&hello).map_err(io)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io)?;
    let failed = |e: std::io::Error| DialError::Io(format!("handshake failed: {e}"));
    let mut reply = read_frame_blocking(&s, HANDSHAKE_MAX).map_err(failed)?;
    if reply.kind == CHALLENGE {
        (&s).write_all(&frame(PROOF, &proof(secret, &reply.body)))
            .map_err(io)?;
        reply = read_frame_blocking(&s, HANDSHAKE_MAX).map_err(|e| {
            // Dropped without a word: most likely the host did not accept
            // our proof (kept an I/O error: the host may also have gone).
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                DialError::Io(
                    "the host closed the connection after the challenge: \
                     was this daemon launched by it (MIRAI_SECRET)?"
                        .into(),
                )
            } else {
                failed(e)
            }
        })?;
    }
    s.set_read_timeout(None).map_err(io)?;
    match reply.kind {
        WELCOME => Ok(s),
        REJECT => Err(DialError::Refused(
            String::from_utf8_lossy(&reply.body).into_owned(),
        )),
        _ => Err(DialError::Io("unexpected reply to the handshake".into())),
    }
}

/// The package version this daemon announces. `MIRAI_ADVERTISED_VERSION`
/// overrides it, so the tests can play a daemon of another version.
fn advertised_version() -> String {
    std::env::var("MIRAI_ADVERTISED_VERSION").unwrap_or_else(|_| PACKAGE_VERSION.to_string())
}

/// Read one message from the host, its body into `body` (reusing its
/// memory); returns its kind. A TASK with raw vectors is read up to their
/// data, which comes next on the stream; their headers and sizes are
/// returned, and `body` holds the id, flags and serialized task.
fn read_message(
    stream: &SyncStream,
    body: &mut Vec<u8>,
) -> std::io::Result<(u8, Vec<(RawArg, usize)>)> {
    let mut r = stream;
    let (kind, len) = read_header_blocking(r, FRAME_MAX)?;
    body.clear();
    if kind != TASK || len < ID_FLAGS_LEN as u64 {
        read_body_into(r, len, body)?;
        return Ok((kind, Vec::new()));
    }
    read_body_into(r, ID_FLAGS_LEN as u64, body)?;
    let mut left = len - ID_FLAGS_LEN as u64;
    if body[8] & FLAG_RAW_ARGS == 0 {
        read_body_into(r, left, body)?;
        return Ok((kind, Vec::new()));
    }
    let mut word = [0u8; 8];
    r.read_exact(&mut word)?;
    let serialized = u64::from_le_bytes(word);
    left = left
        .checked_sub(8 + serialized + 4)
        .ok_or_else(|| invalid("bad raw task"))?;
    read_body_into(r, serialized, body)?;
    r.read_exact(&mut word[..4])?;
    let count = u32::from_le_bytes(word[..4].try_into().unwrap()) as u64;
    let table_len = count
        .checked_mul(RAW_ARG_HEADER_LEN as u64)
        .filter(|&t| t <= left)
        .ok_or_else(|| invalid("bad raw task"))?;
    let mut table = vec![0u8; table_len as usize];
    r.read_exact(&mut table)?;
    left -= table_len;
    let mut raw = Vec::with_capacity(count as usize);
    for h in table.chunks(RAW_ARG_HEADER_LEN) {
        let (arg, bytes) = RawArg::decode(h).ok_or_else(|| invalid("bad raw vector"))?;
        left = left
            .checked_sub(bytes as u64)
            .ok_or_else(|| invalid("bad raw task"))?;
        raw.push((arg, bytes));
    }
    if left != 0 {
        return Err(invalid("bad raw task"));
    }
    Ok((kind, raw))
}

/// Check `fd` for input for up to [`SPIN_BEFORE_SLEEP`], yielding the
/// CPU in between; true if input arrived.
fn spin_until_readable(fd: RawFd) -> bool {
    let until = Instant::now() + SPIN_BEFORE_SLEEP;
    while Instant::now() < until {
        if poll_fd(fd, libc::POLLIN, Duration::ZERO) != 0 {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Wait up to `timeout` for `fd` to have `events`; returns the revents.
fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> libc::c_short {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n > 0 {
        p.revents
    } else {
        0
    }
}

/// A daemon keeps the memory it frees for its next task instead of handing
/// it back to the system and faulting it in again: moving a large object
/// then costs copies, not page faults. (Only in daemon processes, which
/// exist to run tasks; up to 1 GiB of free memory is kept.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

impl Client {
    /// Connect to `url`. With `asyncdial` false a single attempt is made now
    /// and its failure returned; otherwise dialling is retried while the
    /// daemon waits for tasks, until a host answers.
    pub fn dial(
        url: &str,
        asyncdial: bool,
        autoexit: AutoExit,
        tempdir: String,
        secret: String,
        tlscert: Option<String>,
    ) -> Result<Client, String> {
        let parsed = Url::parse(url)?;
        let tls = if parsed.is_secure() {
            Some(crate::tls::client_config(tlscert.as_deref())?)
        } else {
            None
        };
        keep_freed_memory();
        let first = if asyncdial {
            None
        } else {
            match connect_once(&parsed, secret.as_bytes(), tls.as_ref()) {
                Ok(s) => Some(Conn {
                    stream: s,
                    epoch: 1,
                }),
                Err(DialError::Io(e)) => return Err(format!("cannot connect to '{url}': {e}")),
                Err(DialError::Refused(r)) => {
                    return Err(format!("the host at '{url}' refused this daemon: {r}"))
                }
            }
        };
        let watch = Arc::new(Watch {
            busy: Mutex::new(None),
            asleep: AtomicBool::new(false),
            wake: Condvar::new(),
            finished: AtomicBool::new(false),
            exit_on_hangup: autoexit == AutoExit::Immediate,
            main_thread: unsafe { libc::pthread_self() },
            tempdir,
        });
        let w = watch.clone();
        std::thread::Builder::new()
            .name("mirai-watch".into())
            .stack_size(64 * 1024)
            .spawn(move || watch_while_busy(w))
            .map_err(|e| e.to_string())?;
        Ok(Client {
            url: parsed,
            secret: secret.into_bytes(),
            tls,
            autoexit,
            may_dial: AtomicBool::new(first.is_none()),
            epoch: AtomicU64::new(first.as_ref().map_or(0, |c| c.epoch)),
            conn: Mutex::new(first),
            next_dial: Mutex::new(Instant::now()),
            watch,
            recv_buf: Mutex::new(Vec::new()),
            send_buf: Mutex::new(Vec::new()),
            just_served: AtomicBool::new(false),
        })
    }

    fn set_busy(&self, busy: Option<Busy>) {
        let mut b = self.watch.busy.lock();
        *b = busy;
        if busy.is_some() && self.watch.asleep.load(Ordering::Relaxed) {
            self.watch.wake.notify_all();
        }
    }

    /// R has finished the current task: no cancellation may interrupt it
    /// any more. One sent just before has already raised its signal (the
    /// watcher signals holding the lock taken here), so the pending
    /// interrupt it left is cleared.
    fn task_done(&self) {
        let mut busy = self.watch.busy.lock();
        if busy.take().is_some() {
            unsafe { crate::rapi::R_interrupts_pending = 0 };
        }
    }

    /// Wait up to `slice` for the next message from the host (`None` if
    /// nothing came). Returning a task marks the daemon busy until the next
    /// call.
    pub fn recv(&self, slice: Duration) -> Option<Incoming> {
        self.set_busy(None);
        let deadline = Instant::now() + slice;
        loop {
            if self.conn.lock().is_none() {
                if let Some(msg) = self.try_dial(deadline) {
                    return Some(msg);
                }
                if self.conn.lock().is_none() {
                    return None;
                }
            }
            let conn = self.conn.lock();
            let c = conn.as_ref().unwrap();
            // Right after a task, the next one often follows within
            // microseconds: look for it briefly before sleeping (see
            // SPIN_BEFORE_SLEEP).
            let ready = self.just_served.swap(false, Ordering::Relaxed)
                && spin_until_readable(c.stream.fd());
            let left = deadline.saturating_duration_since(Instant::now());
            if !ready && poll_fd(c.stream.fd(), libc::POLLIN, left) == 0 {
                return None;
            }
            let mut body = self.recv_buf.lock();
            match read_message(&c.stream, &mut body) {
                Ok((TASK, raw)) if body.len() >= ID_FLAGS_LEN => {
                    let id = u64::from_le_bytes(body[..8].try_into().unwrap());
                    if raw.is_empty() {
                        self.set_busy(Some(Busy {
                            fd: c.stream.fd(),
                            task: id,
                        }));
                    }
                    self.just_served.store(true, Ordering::Relaxed);
                    return Some(Incoming::Task {
                        id,
                        flags: body[8],
                        epoch: c.epoch,
                        raw,
                    });
                }
                Ok((EXIT, _)) => return Some(Incoming::Exit),
                // for a task already finished
                Ok((CANCEL, _)) => continue,
                _ => {
                    drop(body);
                    drop(conn);
                    if let Some(m) = self.disconnected() {
                        return Some(m);
                    }
                }
            }
        }
    }

    /// The connection is gone: redial later, or tell R to stop.
    fn disconnected(&self) -> Option<Incoming> {
        self.conn.lock().take();
        if self.autoexit == AutoExit::Never {
            self.may_dial.store(true, Ordering::Relaxed);
            None
        } else {
            Some(Incoming::Disconnected)
        }
    }

    /// One dial attempt if it is time for one (waiting no later than
    /// `deadline`); a refusal ends serving.
    fn try_dial(&self, deadline: Instant) -> Option<Incoming> {
        if !self.may_dial.load(Ordering::Relaxed) {
            return Some(Incoming::Disconnected);
        }
        let next = *self.next_dial.lock();
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next.min(deadline) - now);
            if Instant::now() < next {
                return None;
            }
        }
        *self.next_dial.lock() = Instant::now() + REDIAL_INTERVAL;
        match connect_once(&self.url, &self.secret, self.tls.as_ref()) {
            Ok(stream) => {
                let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
                *self.conn.lock() = Some(Conn { stream, epoch });
                None
            }
            Err(DialError::Refused(r)) => Some(Incoming::Refused(r)),
            Err(DialError::Io(_)) => None,
        }
    }

    /// Read the data of the next raw vector of the task last received into
    /// `buf` (see [`Incoming::Task`]); false if the connection failed.
    pub fn read_raw(&self, epoch: u64, buf: &mut [u8]) -> bool {
        let mut conn = self.conn.lock();
        match &*conn {
            Some(c) if c.epoch == epoch => {
                let ok = (&c.stream).read_exact(buf).is_ok();
                if !ok {
                    self.drop_connection(&mut conn);
                }
                ok
            }
            _ => false,
        }
    }

    /// The connection failed mid-message: close it, and with autoexit
    /// FALSE dial again later.
    fn drop_connection(&self, conn: &mut Option<Conn>) {
        conn.take();
        if self.autoexit == AutoExit::Never {
            self.may_dial.store(true, Ordering::Relaxed);
        }
    }

    /// Read and drop `n` bytes of raw data (for a task that could not be
    /// rebuilt); false if the connection failed.
    pub fn skip_raw(&self, epoch: u64, mut n: usize) -> bool {
        let mut chunk = vec![0u8; n.min(1 << 20)];
        while n > 0 {
            let k = n.min(chunk.len());
            if !self.read_raw(epoch, &mut chunk[..k]) {
                return false;
            }
            n -= k;
        }
        true
    }

    /// The task with raw vectors has been read in full: R is now busy with
    /// it (cancellations may interrupt it).
    pub fn start_task(&self, id: u64, epoch: u64) {
        let fd = match &*self.conn.lock() {
            Some(c) if c.epoch == epoch => c.stream.fd(),
            _ => return,
        };
        self.set_busy(Some(Busy { fd, task: id }));
    }

    /// The payload of the task last received.
    pub fn with_task_body<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        f(&self.recv_buf.lock()[ID_FLAGS_LEN..])
    }

    /// Build a RESULT frame with `fill` in the reusable send buffer and send
    /// it on the connection of `epoch` (a result computed for a host that
    /// has since gone is dropped).
    pub fn send(
        &self,
        epoch: u64,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.task_done();
        let mut frame = self.send_buf.lock();
        frame.clear();
        fill(&mut frame)?;
        self.write_parts(epoch, &[&frame]);
        Ok(())
    }

    /// Send a frame made of `parts` (say, a header and data still in R's
    /// memory) on the connection of `epoch`.
    pub fn write_parts(&self, epoch: u64, parts: &[&[u8]]) {
        self.task_done();
        let mut conn = self.conn.lock();
        let failed = match &*conn {
            Some(c) if c.epoch == epoch => parts.iter().any(|p| (&c.stream).write_all(p).is_err()),
            _ => false,
        };
        if failed {
            self.drop_connection(&mut conn);
        }
    }

    /// R has left the daemon loop: tell the host (so tasks sent since the
    /// last result go elsewhere), stop watching and close the connection.
    pub fn finish(&self) {
        self.watch.finished.store(true, Ordering::SeqCst);
        self.set_busy(None);
        self.watch.wake.notify_all();
        if let Some(c) = self.conn.lock().take() {
            let _ = (&c.stream).write_all(&frame(LEAVING, &[]));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.finish();
    }
}

/// While R is busy evaluating, watch its connection: interrupt R when the
/// host cancels the task, and if the host is gone (and autoexit is TRUE)
/// and R is still busy after the grace period, end the process, removing
/// R's temporary directory as R itself would have.
fn watch_while_busy(w: Arc<Watch>) {
    loop {
        let busy = {
            let mut busy = w.busy.lock();
            while busy.is_none() && !w.finished.load(Ordering::SeqCst) {
                w.asleep.store(true, Ordering::Relaxed);
                w.wake.wait(&mut busy);
                w.asleep.store(false, Ordering::Relaxed);
            }
            if w.finished.load(Ordering::SeqCst) {
                return;
            }
            busy.unwrap()
        };
        std::thread::sleep(WATCH_AFTER);
        if *w.busy.lock() == Some(busy) {
            watch_task(&w, busy);
        }
    }
}

/// Watch one task until R is done with it.
fn watch_task(w: &Watch, busy: Busy) {
    let still = || *w.busy.lock() == Some(busy);
    // Input other than a cancellation (a task queued by a host without
    // dispatcher) is left for R; then only hang-up is watched.
    let mut events = libc::POLLIN | libc::POLLRDHUP;
    while still() {
        let ev = poll_fd(busy.fd, events, Duration::from_millis(100));
        if ev & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            if w.exit_on_hangup {
                exit_after_grace(w, busy);
            }
            // nothing more to hear on this connection for this task
            while still() {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        if ev & libc::POLLIN != 0 && !take_cancel(w, busy) {
            events = libc::POLLRDHUP;
        }
    }
}

/// Input has arrived while R is busy: if it is a CANCEL frame for the
/// running task, consume it and interrupt R. False if the input is
/// something else (left unread).
fn take_cancel(w: &Watch, busy: Busy) -> bool {
    const CANCEL_LEN: usize = HEADER_LEN + 8;
    let mut buf = [0u8; CANCEL_LEN];
    let peek = |buf: &mut [u8; CANCEL_LEN]| unsafe {
        libc::recv(
            busy.fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            CANCEL_LEN,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let mut n = peek(&mut buf);
    // a frame split across segments: wait briefly for the rest
    for _ in 0..100 {
        if n <= 0 || n as usize >= CANCEL_LEN || buf[0] != CANCEL {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        n = peek(&mut buf);
    }
    if n as usize != CANCEL_LEN || buf[0] != CANCEL || buf[1..HEADER_LEN] != 8u64.to_le_bytes() {
        return n <= 0; // nothing there after all: keep watching input
    }
    let current = w.busy.lock();
    if *current != Some(busy) {
        return true;
    }
    let got = unsafe {
        libc::recv(
            busy.fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            CANCEL_LEN,
            libc::MSG_DONTWAIT,
        )
    };
    let id = u64::from_le_bytes(buf[HEADER_LEN..].try_into().unwrap());
    if got as usize == CANCEL_LEN && id == busy.task {
        // signalled with the lock held: see Client::task_done
        unsafe { libc::pthread_kill(w.main_thread, libc::SIGINT) };
    }
    true
}

/// The host has gone mid-task: give R the grace period to finish, then end
/// the process.
fn exit_after_grace(w: &Watch, busy: Busy) {
    std::thread::sleep(EXIT_GRACE);
    if *w.busy.lock() == Some(busy) && !w.finished.load(Ordering::SeqCst) {
        if !w.tempdir.is_empty() {
            let _ = std::fs::remove_dir_all(&w.tempdir);
        }
        unsafe { libc::_exit(0) };
    }
}
