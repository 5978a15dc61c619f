//! The daemon side of a connection. A daemon does one thing at a time, so
//! its R thread reads each task and writes each result on a blocking socket
//! itself: no I/O thread, no hand-off, one wake-up per task.
//!
//! What happens when the connection drops depends on `autoexit`:
//! - `Immediate` (TRUE): R stops serving; if R is busy evaluating at the
//!   time, the [`watcher`] ends the process after a short grace period
//!   (no orphans).
//! - `AfterTask` (NA): R stops serving once the current task is done.
//! - `Never` (FALSE): dial again and serve whichever host appears there.
//!
//! A host silent for `SILENCE_LIMIT` (no bytes, not even a HEARTBEAT)
//! counts as gone the same way: its machine vanished or the network split.
//! The daemon sends its own HEARTBEAT after a quiet spell, from R's thread
//! between tasks and from the watcher during them.
//!
//! The same watcher hears cancellations: a dispatcher sends nothing to a
//! busy daemon but a CANCEL for its task, which the watcher answers by
//! interrupting R's main thread, so the evaluation stops and the daemon
//! replies and serves on.

mod connect;
mod pulse;
mod ssh_secret;
mod watcher;

pub use connect::DialError;

use crate::aio::SPIN_BEFORE_SLEEP;
use crate::protocol::frame::{read_body_into, read_header_blocking, FRAME_MAX};
use crate::protocol::handshake::Stream;
use crate::protocol::message::{
    parse_share_id, read_task_blocking, signal_frame, RawArg, TaskHead, CANCEL, EXIT, HEARTBEAT,
    LEAVING, SHARE, TASK, TASK_MORE, UNSHARE,
};
use crate::transport::url::Url;
use crate::transport::{SyncStream, TransportError};
use connect::{connect_once, Connected};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use watcher::{poll_fd, Busy, Watch};

const REDIAL_INTERVAL: Duration = Duration::from_millis(250);
/// How often an idle daemon looks at the heartbeat within a long wait.
const PULSE_CHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AutoExit {
    Immediate,
    AfterTask,
    Never,
}

/// What the R thread receives.
pub enum Incoming {
    /// A task; its serialized payload is in the client's receive buffer
    /// (see [`Client::with_task_payload`]). Raw vectors (`raw`) follow on
    /// the connection: read each with [`Client::read_raw`], then call
    /// [`Client::start_task`].
    Task {
        id: u64,
        flags: u8,
        epoch: u64,
        raw: Vec<RawArg>,
        /// The host cancelled it while it waited in its run: answer it
        /// without evaluating it.
        cancelled: bool,
    },
    /// A new connection's set-up from a dispatcher: this daemon's
    /// random-number stream.
    Setup(Stream),
    /// A new connection's serialization configuration (serialized by R),
    /// or `None`: the previous connection's no longer applies. Comes
    /// before anything else on that connection.
    Serial(Option<Vec<u8>>),
    /// An object tasks will name by `id` (see `host::shared`): its
    /// serialized bytes are in the receive buffer, after the id (see
    /// [`Client::with_task_payload`]).
    Share { id: u64, epoch: u64 },
    /// No task will name object `id` again.
    Unshare(u64),
    /// The host asked this daemon to exit.
    Exit,
    /// The connection dropped and this daemon does not redial.
    Disconnected,
    /// The host refused this daemon (the reason is its message).
    Refused(String),
    /// The host at the URL is not to be trusted (why is the message).
    Untrusted(String),
}

struct Conn {
    stream: SyncStream,
    epoch: u64,
    /// The set-up from WELCOME, not yet handed to R.
    setup: Option<Stream>,
    /// The serialization configuration that came with WELCOME.
    serial: Option<Vec<u8>>,
    /// Whether R has been told this connection's configuration.
    serial_told: bool,
}

impl Conn {
    fn new(c: Connected, epoch: u64) -> Conn {
        Conn {
            stream: c.stream,
            epoch,
            setup: c.welcome.stream,
            serial: c.serial,
            serial_told: false,
        }
    }
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
    /// The raw vectors of the task last received that R has not read yet
    /// (see [`Client::take_raw`]), and the connection they are on.
    pending_raw: Mutex<Option<(u64, Vec<RawArg>)>>,
    /// R holds a serialization configuration (from an earlier connection).
    serial_set: AtomicBool,
    /// The rest of the run being served (see `host::dispatcher`): tasks
    /// read ahead, in order, with their connection's epoch.
    run: Mutex<VecDeque<(TaskHead, u64, Vec<u8>)>>,
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

/// A daemon keeps the memory it frees for its next task instead of handing
/// it back to the system and faulting it in again: moving a large object
/// then costs copies, not page faults. (Only in daemon processes, which
/// exist to run tasks; up to 1 GiB of free memory is kept.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes glibc malloc's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Why a daemon could not start.
#[derive(Debug)]
pub enum StartError {
    Url(TransportError),
    Tls(String),
    Dial(DialError),
    Thread(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Url(e) => write!(f, "{e}"),
            StartError::Tls(e) => write!(f, "`tlscert`: {e}"),
            StartError::Dial(e) => write!(f, "{e}"),
            StartError::Thread(e) => write!(f, "cannot start the watcher thread: {e}"),
        }
    }
}

impl Client {
    /// Connect to `url`. With `asyncdial` false a single attempt is made now
    /// and its failure returned; otherwise dialling is retried while the
    /// daemon waits for tasks, until a host answers. Without a `secret`, one
    /// written on standard input by an ssh launch is used.
    pub fn dial(
        url: &str,
        asyncdial: bool,
        autoexit: AutoExit,
        tempdir: String,
        secret: String,
        tlscert: Option<String>,
    ) -> Result<Client, StartError> {
        let parsed = Url::parse(url).map_err(|e| StartError::Url(TransportError::url(e)))?;
        let tls = match parsed.is_secure() {
            true => Some(
                crate::transport::tls::client_config(tlscert.as_deref())
                    .map_err(StartError::Tls)?,
            ),
            false => None,
        };
        let secret = match secret.is_empty() {
            true => ssh_secret::from_ssh_stdin().unwrap_or_default(),
            false => secret,
        };
        keep_freed_memory();
        let first = match asyncdial {
            true => None,
            false => Some(Conn::new(
                connect_once(&parsed, secret.as_bytes(), tls.as_ref()).map_err(StartError::Dial)?,
                1,
            )),
        };
        let watch =
            Watch::start(autoexit == AutoExit::Immediate, tempdir).map_err(StartError::Thread)?;
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
            pending_raw: Mutex::new(None),
            run: Mutex::new(VecDeque::new()),
            serial_set: AtomicBool::new(false),
        })
    }

    /// R has finished the current task: no cancellation may interrupt it
    /// any more.
    fn task_done(&self) {
        self.watch.set_busy(None);
    }

    /// Whether an interrupt R has just seen should stop its evaluation
    /// (see `watcher`).
    pub fn interrupt_verdict(&self) -> bool {
        self.watch.interrupt_verdict()
    }

    /// Wait up to `slice` for the next message from the host (`None` if
    /// nothing came). Returning a task marks the daemon busy until the
    /// result is sent.
    pub fn recv(&self, slice: Duration) -> Option<Incoming> {
        self.task_done();
        // the raw data of a task R did not rebuild is still on the stream
        if let Some((epoch, raw)) = self.pending_raw.lock().take() {
            let rest = raw.iter().filter_map(RawArg::data_len).sum();
            self.skip_raw(epoch, rest);
        }
        if let Some(task) = self.next_in_run() {
            return Some(task);
        }
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
            let mut guard = self.conn.lock();
            let c = guard.as_mut().expect("checked above");
            if !c.serial_told {
                c.serial_told = true;
                let serial = c.serial.take();
                if serial.is_some() || self.serial_set.load(Ordering::Relaxed) {
                    self.serial_set.store(serial.is_some(), Ordering::Relaxed);
                    return Some(Incoming::Serial(serial));
                }
            }
            if let Some(stream) = c.setup.take() {
                return Some(Incoming::Setup(stream));
            }
            // Right after a task, the next one often follows within
            // microseconds: look for it briefly before sleeping (see
            // SPIN_BEFORE_SLEEP).
            let ready = self.just_served.swap(false, Ordering::Relaxed)
                && spin_until_readable(c.stream.fd());
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = left.min(PULSE_CHECK);
            if !ready && poll_fd(c.stream.fd(), libc::POLLIN, wait) == 0 {
                let pulse = &self.watch.pulse;
                let mut dead = pulse.host_silent();
                if !dead && pulse.heartbeat_due() {
                    dead = (&c.stream).write_all(&signal_frame(HEARTBEAT)).is_err();
                    pulse.wrote();
                }
                if dead {
                    drop(guard);
                    if let Some(m) = self.disconnected() {
                        return Some(m);
                    }
                    continue;
                }
                if wait >= left {
                    return None;
                }
                continue;
            }
            self.watch.pulse.heard();
            let mut payload = self.recv_buf.lock();
            match read_message(&c.stream, &mut payload) {
                Ok(Message::Task(head)) => {
                    if head.flags & TASK_MORE != 0
                        && (!head.raw.is_empty() || self.read_run(c).is_err())
                    {
                        drop(payload);
                        drop(guard);
                        if let Some(m) = self.disconnected() {
                            return Some(m);
                        }
                        continue;
                    }
                    if head.raw.is_empty() {
                        self.watch.set_busy(Some(Busy {
                            fd: c.stream.fd(),
                            task: head.id,
                        }));
                    } else {
                        *self.pending_raw.lock() = Some((c.epoch, head.raw.clone()));
                    }
                    self.just_served.store(true, Ordering::Relaxed);
                    return Some(Incoming::Task {
                        id: head.id,
                        flags: head.flags,
                        epoch: c.epoch,
                        raw: head.raw,
                        cancelled: false,
                    });
                }
                Ok(Message::Share(id)) => return Some(Incoming::Share { id, epoch: c.epoch }),
                Ok(Message::Unshare(id)) => return Some(Incoming::Unshare(id)),
                Ok(Message::Exit) => return Some(Incoming::Exit),
                Ok(Message::Cancel(id)) => {
                    self.watch.note_run_cancel(id);
                    continue;
                }
                Ok(Message::Heartbeat) => continue,
                Err(_) => {
                    drop(payload);
                    drop(guard);
                    if let Some(m) = self.disconnected() {
                        return Some(m);
                    }
                }
            }
        }
    }

    /// Read the rest of a run, whose first task has just come (the host
    /// sends a run's tasks back to back): nothing else may come between
    /// them but HEARTBEATs and CANCELs.
    fn read_run(&self, c: &Conn) -> std::io::Result<()> {
        loop {
            let mut payload = Vec::new();
            match read_message(&c.stream, &mut payload)? {
                Message::Task(head) if head.raw.is_empty() => {
                    let more = head.flags & TASK_MORE != 0;
                    self.run.lock().push_back((head, c.epoch, payload));
                    self.watch.set_run_waiting(true);
                    if !more {
                        return Ok(());
                    }
                }
                Message::Heartbeat => {}
                Message::Cancel(id) => self.watch.note_run_cancel(id),
                _ => return Err(crate::protocol::invalid("unexpected message within a run")),
            }
        }
    }

    /// The next task of the run being served, if any is left (tasks of a
    /// connection since closed are dropped: the host has them back).
    fn next_in_run(&self) -> Option<Incoming> {
        if self.run.lock().is_empty() {
            return None;
        }
        let (epoch, fd) = {
            let mut conn = self.conn.lock();
            let c = conn.as_ref()?;
            let at = (c.epoch, c.stream.fd());
            // CANCELs sent while the last task ran (too quick for the
            // watcher to look) are heard before the next one starts
            match self.hear_signals(c) {
                Ok(false) => {}
                Ok(true) => return Some(Incoming::Exit),
                Err(_) => {
                    self.drop_connection(&mut conn);
                    return None;
                }
            }
            at
        };
        loop {
            let mut run = self.run.lock();
            let (head, task_epoch, payload) = run.pop_front()?;
            let last = run.is_empty();
            drop(run);
            let cancelled = self.watch.take_run_cancel(head.id);
            if last {
                self.watch.set_run_waiting(false);
            }
            if task_epoch != epoch {
                continue;
            }
            *self.recv_buf.lock() = payload;
            self.watch.set_busy(Some(Busy { fd, task: head.id }));
            self.just_served.store(true, Ordering::Relaxed);
            return Some(Incoming::Task {
                id: head.id,
                flags: head.flags,
                epoch,
                raw: head.raw,
                cancelled,
            });
        }
    }

    /// Read the signals already waiting on the connection (between the
    /// tasks of a run, when only these can come): true if one was EXIT.
    fn hear_signals(&self, c: &Conn) -> std::io::Result<bool> {
        let mut body = Vec::new();
        while poll_fd(c.stream.fd(), libc::POLLIN, Duration::ZERO) & libc::POLLIN != 0 {
            self.watch.pulse.heard();
            match read_message(&c.stream, &mut body)? {
                Message::Cancel(id) => self.watch.note_run_cancel(id),
                Message::Heartbeat => {}
                Message::Exit => return Ok(true),
                _ => return Err(crate::protocol::invalid("unexpected message within a run")),
            }
        }
        Ok(false)
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
            Ok(connected) => {
                let epoch = self.epoch.fetch_add(1, Ordering::Relaxed) + 1;
                *self.conn.lock() = Some(Conn::new(connected, epoch));
                self.watch.pulse.reset();
                None
            }
            Err(DialError::Refused(r)) => Some(Incoming::Refused(r)),
            Err(e @ DialError::HostUnproven(_)) => Some(Incoming::Untrusted(e.to_string())),
            Err(_) => None,
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
        self.watch.set_busy(Some(Busy { fd, task: id }));
    }

    /// The serialized payload of the task last received. The buffer is
    /// taken out while `f` runs (it calls R, which may not return), and
    /// kept for the next task afterwards.
    pub fn with_task_payload<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        let buf = std::mem::take(&mut *self.recv_buf.lock());
        let out = f(&buf);
        *self.recv_buf.lock() = buf;
        out
    }

    /// The raw vectors of the task last received, for R to read now (with
    /// [`Client::read_raw`]; `None` if it has none, or they are gone).
    pub fn take_raw(&self) -> Option<(u64, Vec<RawArg>)> {
        self.pending_raw.lock().take()
    }

    /// Build a RESULT frame with `fill` in the reusable send buffer and send
    /// it on the connection of `epoch` (a result computed for a host that
    /// has since gone is dropped).
    pub fn send<E>(
        &self,
        epoch: u64,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.task_done();
        // taken out while `fill` runs (it calls R, which may not return)
        let mut frame = std::mem::take(&mut *self.send_buf.lock());
        let filled = fill(&mut frame);
        if filled.is_ok() {
            self.write_parts(epoch, &[&frame]);
        }
        *self.send_buf.lock() = frame;
        filled
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
        } else {
            self.watch.pulse.wrote();
        }
    }

    /// Drop the connection without a word and serve no more: the host
    /// sees the daemon gone with its task (which resolves to errorValue
    /// 19), as when a daemon process dies.
    pub fn abandon(&self) {
        self.may_dial.store(false, Ordering::Relaxed);
        self.task_done();
        self.conn.lock().take();
    }

    /// R has left the daemon loop: tell the host (so tasks sent since the
    /// last result go elsewhere), stop watching and close the connection.
    pub fn finish(&self) {
        self.watch.finish();
        if let Some(c) = self.conn.lock().take() {
            let _ = (&c.stream).write_all(&signal_frame(LEAVING));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A message from the host, its payload (for a task) in the buffer given.
enum Message {
    Task(crate::protocol::message::TaskHead),
    /// A shared object; the body (id, then the object) is in the buffer.
    Share(u64),
    Unshare(u64),
    Exit,
    /// A CANCEL for a task not running: finished, or waiting in its run.
    Cancel(u64),
    Heartbeat,
}

/// Bodies of messages other than tasks are tiny; a longer one is not ours.
const SIGNAL_MAX: u64 = 64;

fn read_message(stream: &SyncStream, payload: &mut Vec<u8>) -> std::io::Result<Message> {
    let (kind, len) = read_header_blocking(stream, FRAME_MAX)?;
    match kind {
        TASK => Ok(Message::Task(read_task_blocking(stream, len, payload)?)),
        EXIT | CANCEL if len <= SIGNAL_MAX => {
            payload.clear();
            read_body_into(stream, len, payload)?;
            Ok(if kind == EXIT {
                Message::Exit
            } else {
                // (a CANCEL too short to name a task names none)
                let id = payload
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8")));
                Message::Cancel(id.unwrap_or(u64::MAX))
            })
        }
        HEARTBEAT if len == 0 => Ok(Message::Heartbeat),
        SHARE => {
            payload.clear();
            read_body_into(stream, len, payload)?;
            Ok(Message::Share(parse_share_id(payload)?))
        }
        UNSHARE if len <= SIGNAL_MAX => {
            payload.clear();
            read_body_into(stream, len, payload)?;
            Ok(Message::Unshare(parse_share_id(payload)?))
        }
        _ => Err(crate::protocol::invalid("unexpected message from the host")),
    }
}
