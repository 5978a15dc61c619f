//! The host side of a compute profile: listens at a URL, admits daemons
//! that pass the handshake, sends them tasks and completes each task's aio
//! when its result comes back. Which daemon gets which task is the
//! [`scheduler`](crate::scheduler)'s business: round-robin, or FIFO to free
//! daemons with the dispatcher, which lives here, as tasks on the runtime.
//!
//! A daemon that disconnects takes its unfinished tasks with it: they
//! resolve to errorValue 19 at once.
//!
//! An *ephemeral* host serves a single task to a single daemon process
//! (a mirai with no daemons set) and closes itself afterwards.

use crate::aio::{Aio, Canceller, Outcome, ERR_CONNECTION_RESET, ERR_TIMEOUT};
use crate::link::{Link, Outgoing};
use crate::outframe::OutFrame;
use crate::protocol::*;
use crate::runtime::runtime;
use crate::scheduler::State;
pub use crate::scheduler::{task_frame, Task};
use crate::transport::{self, Accepted, BoxStream, Listener};
use crate::url::Url;
use parking_lot::{Condvar, Mutex};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch};

/// How long an unknown peer may take to say hello before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-connection read and write buffers: small, as a host may have
/// thousands of daemons; large frames bypass them.
const IO_BUFFER: usize = 16 * 1024;

/// How a host schedules its tasks.
#[derive(Clone, Debug, Default)]
pub struct HostConfig {
    /// Serve one task to one process, then close.
    pub ephemeral: bool,
    /// FIFO to free daemons, cancellation, memory budget.
    pub dispatcher: bool,
    /// Dispatcher: budget in bytes for queued task payloads.
    pub memory_limit: Option<u64>,
    /// The secret a daemon must prove it knows in the handshake (see
    /// [`new_secret`]); `None` admits any daemon of the right version.
    pub secret: Option<Vec<u8>>,
    /// TLS settings for a secure URL (`tls+tcp://`, `wss://`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A fresh random secret for a host, as the hex text launch commands carry.
pub fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    let mut got = 0;
    while got < bytes.len() {
        let n = unsafe {
            libc::getrandom(
                bytes[got..].as_mut_ptr() as *mut libc::c_void,
                bytes.len() - got,
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        got += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub struct Host {
    url: String,
    config: HostConfig,
    state: Mutex<State>,
    links_changed: Condvar,
    /// Signalled when queued payload bytes are released (memory budget).
    space: Condvar,
    shutdown: watch::Sender<bool>,
    /// Daemon processes started for this host, and how many have ended.
    launched: AtomicU64,
    exited: AtomicU64,
    /// Set once the listening socket is closed (see `wait_stopped`).
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Host({})", self.url)
    }
}

/// Counters for `status()` and `info()`.
pub struct HostStats {
    pub connections: u64,
    pub cumulative: u64,
    pub refused: u64,
    pub awaiting: u64,
    pub executing: u64,
    pub completed: u64,
    pub memory_used: u64,
    pub memory_peak: u64,
    pub memory_limit: Option<u64>,
}

impl Host {
    /// Listen at `url` (port 0 picks a free port), without dispatcher.
    pub fn listen(url: &str, ephemeral: bool) -> Result<Arc<Host>, String> {
        Self::listen_with(
            url,
            HostConfig {
                ephemeral,
                ..HostConfig::default()
            },
        )
    }

    pub fn listen_with(url: &str, config: HostConfig) -> Result<Arc<Host>, String> {
        let parsed = Url::parse(url)?;
        let rt = runtime();
        let (listener, bound) = rt
            .block_on(transport::bind(&parsed, config.tls.clone()))
            .map_err(|e| format!("cannot listen at '{url}': {e}"))?;
        let host = Arc::new(Host {
            url: bound.to_string(),
            state: Mutex::new(State::new(config.dispatcher, config.memory_limit)),
            config,
            links_changed: Condvar::new(),
            space: Condvar::new(),
            shutdown: watch::channel(false).0,
            stopped: Mutex::new(false),
            stopped_cv: Condvar::new(),
            launched: AtomicU64::new(0),
            exited: AtomicU64::new(0),
        });
        rt.spawn(accept_loop(host.clone(), listener));
        Ok(host)
    }

    /// The URL daemons dial: as bound, with any port 0 resolved.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// A new aio for a task of this host: with dispatcher, cancelling it
    /// reaches the dispatcher.
    pub fn new_aio(self: &Arc<Self>) -> Arc<Aio> {
        if self.config.dispatcher {
            let owner: Weak<dyn Canceller> = Arc::downgrade(self) as Weak<dyn Canceller>;
            Aio::with_owner(Some(owner))
        } else {
            Aio::new()
        }
    }

    /// Queue or send a task, whatever the memory budget.
    pub fn submit(&self, task: Task, timeout: Option<Duration>) {
        let mut st = self.state.lock();
        self.enqueue(&mut st, task, timeout);
    }

    /// Queue a task if it fits the memory budget, waiting up to `wait` for
    /// room; hands the task back if there is none (the caller checks for
    /// Ctrl-C and tries again, or gives up).
    pub fn submit_within_budget(
        &self,
        task: Task,
        timeout: Option<Duration>,
        wait: Duration,
    ) -> Result<(), Task> {
        let len = task.frame.len();
        let mut st = self.state.lock();
        if !st.closed && !st.admits(len) {
            st.compact();
            if !st.admits(len) && !wait.is_zero() {
                self.space.wait_for(&mut st, wait);
                st.compact(); // room may have come from a cancellation
            }
            if !st.closed && !st.admits(len) {
                return Err(task);
            }
        }
        self.enqueue(&mut st, task, timeout);
        Ok(())
    }

    fn enqueue(&self, st: &mut State, task: Task, timeout: Option<Duration>) {
        let aio = task.aio.clone();
        if let Err(task) = st.enqueue(task) {
            task.aio.complete(Outcome::Error(ERR_CONNECTION_RESET));
            return;
        }
        if let Some(t) = timeout {
            runtime().spawn(async move {
                tokio::time::sleep(t).await;
                aio.cancel(ERR_TIMEOUT);
            });
        }
    }

    /// Send `body` to be evaluated, keeping state, on every daemon (with
    /// dispatcher also on those connecting later). Returns the broadcast's
    /// number and the aios of the daemons connected now.
    pub fn broadcast(&self, body: Vec<u8>) -> (usize, Vec<Arc<Aio>>) {
        self.state.lock().broadcast(body)
    }

    /// Every aio of a dispatcher broadcast so far.
    pub fn broadcast_aios(&self, index: usize) -> Vec<Arc<Aio>> {
        self.state.lock().broadcast_aios(index)
    }

    pub fn connections(&self) -> usize {
        self.state.lock().links.len()
    }

    pub fn stats(&self) -> HostStats {
        let st = self.state.lock();
        let [awaiting, executing, completed] = st.task_counts();
        HostStats {
            connections: st.links.len() as u64,
            cumulative: st.cumulative,
            refused: st.refused,
            awaiting,
            executing,
            completed,
            memory_used: st.budget.used,
            memory_peak: st.budget.peak,
            memory_limit: st.budget.limit,
        }
    }

    /// [connections, cumulative connections, refused peers, daemon
    /// processes launched, launched processes that have exited]
    pub fn counts(&self) -> [u64; 5] {
        let st = self.state.lock();
        [
            st.links.len() as u64,
            st.cumulative,
            st.refused,
            self.launched.load(Ordering::SeqCst),
            self.exited.load(Ordering::SeqCst),
        ]
    }

    /// A daemon process was started for this host.
    pub fn process_launched(&self) {
        self.launched.fetch_add(1, Ordering::SeqCst);
    }

    /// Wait up to `slice` for at least `n` daemons; returns how many there are.
    pub fn wait_connections(&self, n: usize, slice: Duration) -> usize {
        let mut st = self.state.lock();
        if st.links.len() < n && !st.closed {
            // also woken when a launched process exits
            self.links_changed.wait_for(&mut st, slice);
        }
        st.links.len()
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Stop listening, drop every daemon (sending each an explicit EXIT if
    /// `send_exit`), and resolve every unfinished task to errorValue 19.
    pub fn close(&self, send_exit: bool) {
        let mut failed;
        {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            let (lost, links) = st.close();
            failed = lost;
            for link in links {
                if send_exit {
                    let _ = link.tx.send((Arc::new(frame(EXIT, &[]).into()), 0));
                }
                failed.extend(link.inflight.into_values());
            }
        }
        self.links_changed.notify_all();
        self.space.notify_all();
        self.shutdown.send_replace(true);
        for aio in failed {
            aio.complete(Outcome::Error(ERR_CONNECTION_RESET));
        }
    }

    /// After [`close`](Host::close), wait (up to `timeout`) until the
    /// listening socket is really closed, so its address can be bound again
    /// at once. Not for use on the runtime's own threads.
    pub fn wait_stopped(&self, timeout: Duration) {
        let mut stopped = self.stopped.lock();
        if !*stopped {
            self.stopped_cv.wait_for(&mut stopped, timeout);
        }
    }

    /// A daemon process started for this host ended. For an ephemeral host
    /// whatever it did not finish is lost.
    pub fn process_exited(&self) {
        self.exited.fetch_add(1, Ordering::SeqCst);
        self.links_changed.notify_all();
        if self.config.ephemeral {
            self.close(false);
        }
    }

    fn register(&self, tx: mpsc::UnboundedSender<Outgoing>, fd: RawFd) -> Option<u64> {
        let mut st = self.state.lock();
        if st.closed {
            return None;
        }
        let conn = st.add_link(Link::new(tx, fd));
        drop(st);
        self.links_changed.notify_all();
        self.space.notify_all();
        Some(conn)
    }

    fn unregister(&self, conn: u64) {
        {
            // fail the daemon's tasks before releasing the lock: a cancel
            // in between would find them neither executing nor closed and
            // count them as cancelled in the queue
            let mut st = self.state.lock();
            for aio in st.remove_link(conn) {
                aio.complete(Outcome::Error(ERR_CONNECTION_RESET));
            }
        }
        self.links_changed.notify_all();
        if self.config.ephemeral {
            self.close(false);
        }
    }

    fn deliver(&self, conn: u64, (id, outcome): (u64, Outcome)) {
        self.state.lock().result(conn, id, outcome);
        if self.config.memory_limit.is_some() {
            self.space.notify_all();
        }
        if self.config.ephemeral {
            self.close(false);
        }
    }

    /// A daemon said it is leaving: tasks it was sent but never started go
    /// to other daemons.
    fn leaving(&self, conn: u64) {
        self.state.lock().leave(conn);
    }

    fn refuse(&self) {
        self.state.lock().refused += 1;
    }

    /// The writer of `conn` has written what it had: if nothing more is
    /// queued (checked under the lock senders hold), direct writes resume.
    fn drained(&self, conn: u64, rx: &mpsc::UnboundedReceiver<Outgoing>) {
        let mut st = self.state.lock();
        if rx.is_empty() {
            if let Some(link) = st.links.get_mut(&conn) {
                link.backlog = false;
            }
        }
    }
}

impl Canceller for Host {
    fn cancel(&self, aio: &Arc<Aio>, code: i32) -> bool {
        let done = self.state.lock().cancel(aio, code);
        if done && self.config.memory_limit.is_some() {
            self.space.notify_all();
        }
        done
    }
}

async fn accept_loop(host: Arc<Host>, listener: Listener) {
    accept_until_stopped(&host, listener).await;
    *host.stopped.lock() = true;
    host.stopped_cv.notify_all();
}

/// Accept daemons until shutdown (or, for an ephemeral host, the first);
/// the listener is dropped, closing the socket, on return.
async fn accept_until_stopped(host: &Arc<Host>, listener: Listener) {
    let mut stop = host.shutdown.subscribe();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            _ = stop.changed() => break,
            res = listener.accept() => match res {
                Ok(accepted) => {
                    tokio::spawn(serve(host.clone(), accepted));
                    if host.config.ephemeral {
                        break;
                    }
                }
                // Out of descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

/// Admit one peer: it must complete the handshake in time, with matching
/// versions, before it is treated as a daemon. Refusals are counted.
async fn handshake(host: &Host, stream: &mut BoxStream) -> bool {
    let admitted = match tokio::time::timeout(HANDSHAKE_TIMEOUT, admit(host, stream)).await {
        Ok(Ok(admitted)) => admitted,
        _ => false,
    };
    if !admitted {
        host.refuse();
    }
    admitted
}

async fn admit(host: &Host, stream: &mut BoxStream) -> std::io::Result<bool> {
    let hello = parse_hello(&read_frame(stream, HANDSHAKE_MAX).await?)?;
    // A peer of our protocol must prove it knows the secret. Without it, it
    // learns nothing, not even why: it was not launched by this host.
    if let (Some(secret), PROTOCOL_VERSION) = (&host.config.secret, hello.protocol) {
        let challenge = new_challenge()?;
        write_frame(stream, &frame(CHALLENGE, &challenge)).await?;
        let answer = read_frame(stream, HANDSHAKE_MAX).await?;
        if answer.kind != PROOF || !proof_matches(secret, &challenge, &answer.body) {
            return Ok(false);
        }
    }
    if let Some(reason) = check_hello(&hello) {
        eprintln!("mirai: refused a daemon at {}: {reason}", host.url);
        let _ = write_frame(stream, &frame(REJECT, reason.as_bytes())).await;
        return Ok(false);
    }
    write_frame(stream, &frame(WELCOME, &[])).await?;
    Ok(true)
}

async fn serve(host: Arc<Host>, accepted: Accepted) {
    // TLS and websocket handshakes first, in this connection's own task.
    let (mut stream, fd) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepted.open()).await {
        Ok(Ok(opened)) => opened,
        _ => {
            host.refuse();
            return;
        }
    };
    if !handshake(&host, &mut stream).await {
        return;
    }
    let mut stop = host.shutdown.subscribe();
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let Some(conn) = host.register(tx, fd) else {
        return;
    };
    tokio::spawn(write_loop(host.clone(), conn, wr, rx));
    let mut rd = BufReader::with_capacity(IO_BUFFER, rd);
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            r = read_message(&mut rd) => match r {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        match message {
            FromDaemon::Result(id, outcome) => host.deliver(conn, (id, outcome)),
            FromDaemon::Leaving => host.leaving(conn),
        }
    }
    host.unregister(conn);
}

/// What a daemon sends.
enum FromDaemon {
    Result(u64, Outcome),
    Leaving,
}

/// Read one message from a daemon: a RESULT frame (its task id and
/// outcome; a plain vector's data goes straight into memory laid out for
/// R, see `rvec`) or LEAVING.
async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<FromDaemon> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let len = u64::from_le_bytes(header[1..].try_into().unwrap());
    if header[0] == LEAVING && len == 0 {
        return Ok(FromDaemon::Leaving);
    }
    if header[0] != RESULT || len < ID_FLAGS_LEN as u64 || len > FRAME_MAX {
        return Err(invalid("not a result frame"));
    }
    let mut head = [0u8; ID_FLAGS_LEN];
    r.read_exact(&mut head).await?;
    let id = u64::from_le_bytes(head[..8].try_into().unwrap());
    let flags = head[8];
    let rest = len - ID_FLAGS_LEN as u64;
    if flags & FLAG_VECTOR != 0 {
        let mut vh = [0u8; VECTOR_HEADER_LEN - ID_FLAGS_LEN];
        r.read_exact(&mut vh).await?;
        let t = vh[0];
        let n = u64::from_le_bytes(vh[8..].try_into().unwrap());
        let data_len = rest - vh.len() as u64;
        let size = crate::rvec::element_size(t).ok_or_else(|| invalid("bad vector type"))?;
        if n.checked_mul(size as u64) != Some(data_len) {
            return Err(invalid("bad vector length"));
        }
        let mut buf = crate::rvec::RBuffer::new(data_len as usize)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::OutOfMemory, "no memory"))?;
        r.read_exact(buf.data_mut()).await?;
        return Ok(FromDaemon::Result(id, Outcome::Vector(buf, t)));
    }
    let mut body = crate::buffer::with_capacity(len as usize)?;
    body.extend_from_slice(&head);
    let got = r.take(rest).read_to_end(&mut body).await?;
    if (got as u64) < rest {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    Ok(FromDaemon::Result(
        id,
        Outcome::Value(body.into_boxed_slice(), flags & FLAG_ERROR != 0),
    ))
}

async fn write_frame_from<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &OutFrame,
    from: usize,
) -> std::io::Result<()> {
    let chunks: Vec<&[u8]> = frame.chunks_from(from).collect();
    for chunk in chunks {
        w.write_all(chunk).await?;
    }
    Ok(())
}

/// Drain a connection's queued frames onto the socket, coalescing whatever
/// is queued into one flush; once drained, let the R thread write directly
/// again. Ends (closing the write side) when every sender is gone.
async fn write_loop<W: AsyncWrite + Unpin>(
    host: Arc<Host>,
    conn: u64,
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut w = BufWriter::with_capacity(IO_BUFFER, wr);
    while let Some((frame, from)) = rx.recv().await {
        if write_frame_from(&mut w, &frame, from).await.is_err() {
            return;
        }
        while let Ok((more, from)) = rx.try_recv() {
            if write_frame_from(&mut w, &more, from).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
        host.drained(conn, &rx);
    }
    let _ = w.shutdown().await;
}
