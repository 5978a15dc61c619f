//! The host side of a compute profile without dispatcher: listens at a URL,
//! admits daemons that pass the handshake, deals tasks to them round-robin
//! and completes each task's aio when its result comes back.
//!
//! Tasks submitted while no daemon is connected wait in a queue and are
//! dealt out as daemons arrive. A daemon that disconnects takes its
//! unfinished tasks with it: they resolve to errorValue 19 at once.
//!
//! An *ephemeral* host serves a single task to a single daemon process
//! (a mirai with no daemons set) and closes itself afterwards.

use crate::aio::{Aio, Outcome, ERR_CONNECTION_RESET, ERR_TIMEOUT};
use crate::protocol::*;
use crate::runtime::runtime;
use crate::transport::{self, BoxStream, Listener};
use crate::url::Url;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch};

/// How long an unknown peer may take to say hello before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IO_BUFFER: usize = 64 * 1024;

/// A task ready to go: its aio and its complete TASK frame.
pub struct Task {
    pub aio: Arc<Aio>,
    pub frame: Vec<u8>,
}

/// Build a TASK frame for `aio` whose payload the caller appends, then
/// seals with [`finish_frame`].
pub fn task_frame(aio: &Aio, flags: u8, capacity: usize) -> Vec<u8> {
    let mut f = begin_frame(TASK, ID_FLAGS_LEN + capacity);
    f.extend_from_slice(&(aio.id as u64).to_le_bytes());
    f.push(flags);
    f
}

/// Bytes for the writer task: a frame, from the given offset on (the part
/// a direct write did not get onto the socket).
type Outgoing = (Vec<u8>, usize);

/// A connected daemon.
struct Link {
    conn: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    inflight: HashMap<u64, Arc<Aio>>,
    /// The socket, when frames may be written to it directly.
    fd: Option<RawFd>,
    /// Frames are queued for the writer task: until it has drained them,
    /// new frames must queue behind them to keep their order.
    backlog: bool,
}

impl Link {
    /// Send a frame. The fast path writes it to the socket right here, on
    /// the calling (R) thread, saving a thread hand-off per task; whatever
    /// the socket does not take at once goes to the writer task. Called with
    /// the host state locked, which keeps the socket open meanwhile.
    fn send(&mut self, frame: Vec<u8>) -> bool {
        if let (Some(fd), false) = (self.fd, self.backlog) {
            let sent = write_nonblocking(fd, &frame);
            if sent == frame.len() {
                return true;
            }
            self.backlog = true;
            return self.tx.send((frame, sent)).is_ok();
        }
        self.backlog = true;
        self.tx.send((frame, 0)).is_ok()
    }
}

/// Write as much of `buf` as the socket takes without blocking.
fn write_nonblocking(fd: RawFd, buf: &[u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let n = unsafe {
            libc::send(
                fd,
                buf[done..].as_ptr() as *const libc::c_void,
                buf.len() - done,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            done += n as usize;
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            break;
        }
    }
    done
}

#[derive(Default)]
struct State {
    links: Vec<Link>,
    next: usize,
    pending: VecDeque<Task>,
    cumulative: u64,
    refused: u64,
    next_conn: u64,
    closed: bool,
}

pub struct Host {
    url: String,
    ephemeral: bool,
    state: Mutex<State>,
    links_changed: Condvar,
    shutdown: watch::Sender<bool>,
    /// Daemon processes started for this host, and how many have ended.
    launched: AtomicU64,
    exited: AtomicU64,
    /// Set once the listening socket is closed (see `wait_stopped`).
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
}

impl Host {
    /// Listen at `url` (port 0 picks a free port).
    pub fn listen(url: &str, ephemeral: bool) -> Result<Arc<Host>, String> {
        let parsed = Url::parse(url)?;
        let rt = runtime();
        let (listener, bound) = rt
            .block_on(transport::bind(&parsed))
            .map_err(|e| format!("cannot listen at '{url}': {e}"))?;
        let host = Arc::new(Host {
            url: bound.to_string(),
            ephemeral,
            state: Mutex::new(State::default()),
            links_changed: Condvar::new(),
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

    pub fn submit(&self, task: Task, timeout: Option<Duration>) {
        if let Some(t) = timeout {
            let aio = task.aio.clone();
            runtime().spawn(async move {
                tokio::time::sleep(t).await;
                aio.complete(Outcome::Error(ERR_TIMEOUT));
            });
        }
        let mut st = self.state.lock();
        if st.closed {
            drop(st);
            task.aio.complete(Outcome::Error(ERR_CONNECTION_RESET));
        } else if st.links.is_empty() {
            st.pending.push_back(task);
        } else {
            assign(&mut st, task);
        }
    }

    /// Send a task to every connected daemon, one aio each; `frame_for`
    /// builds the frame for a given aio.
    pub fn broadcast(&self, frame_for: impl Fn(&Aio) -> Vec<u8>) -> Vec<Arc<Aio>> {
        let mut st = self.state.lock();
        let mut aios = Vec::with_capacity(st.links.len());
        for link in st.links.iter_mut() {
            let aio = Aio::new();
            if link.send(frame_for(&aio)) {
                link.inflight.insert(aio.id as u64, aio.clone());
                aios.push(aio);
            }
        }
        aios
    }

    pub fn connections(&self) -> usize {
        self.state.lock().links.len()
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

    /// Stop listening, drop every daemon (sending each an explicit EXIT if
    /// `send_exit`), and resolve every unfinished task to errorValue 19.
    pub fn close(&self, send_exit: bool) {
        let mut failed = Vec::new();
        {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            failed.extend(st.pending.drain(..).map(|t| t.aio));
            for link in st.links.drain(..) {
                if send_exit {
                    let _ = link.tx.send((frame(EXIT, &[]), 0));
                }
                failed.extend(link.inflight.into_values());
            }
        }
        self.links_changed.notify_all();
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
        if self.ephemeral {
            self.close(false);
        }
    }

    fn register(&self, tx: mpsc::UnboundedSender<Outgoing>, fd: Option<RawFd>) -> Option<u64> {
        let mut st = self.state.lock();
        if st.closed {
            return None;
        }
        let conn = st.next_conn;
        st.next_conn += 1;
        st.cumulative += 1;
        st.links.push(Link {
            conn,
            tx,
            inflight: HashMap::new(),
            fd,
            backlog: false,
        });
        while let Some(task) = st.pending.pop_front() {
            assign(&mut st, task);
        }
        drop(st);
        self.links_changed.notify_all();
        Some(conn)
    }

    fn unregister(&self, conn: u64) {
        let lost = {
            let mut st = self.state.lock();
            match st.links.iter().position(|l| l.conn == conn) {
                Some(i) => st.links.swap_remove(i).inflight,
                None => return,
            }
        };
        self.links_changed.notify_all();
        for aio in lost.into_values() {
            aio.complete(Outcome::Error(ERR_CONNECTION_RESET));
        }
        if self.ephemeral {
            self.close(false);
        }
    }

    fn deliver(&self, conn: u64, (id, outcome): (u64, Outcome)) {
        let aio = {
            let mut st = self.state.lock();
            st.links
                .iter_mut()
                .find(|l| l.conn == conn)
                .and_then(|l| l.inflight.remove(&id))
        };
        if let Some(aio) = aio {
            aio.complete(outcome);
        }
        if self.ephemeral {
            self.close(false);
        }
    }

    fn refuse(&self) {
        self.state.lock().refused += 1;
    }
}

/// Round-robin one task to the next daemon. Tasks already resolved (timed
/// out or cancelled while queued) are dropped here.
fn assign(st: &mut State, task: Task) {
    if !task.aio.is_pending() {
        return;
    }
    let i = st.next % st.links.len();
    st.next = st.next.wrapping_add(1);
    let link = &mut st.links[i];
    if link.send(task.frame) {
        link.inflight.insert(task.aio.id as u64, task.aio);
    } else {
        task.aio.complete(Outcome::Error(ERR_CONNECTION_RESET));
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
                Ok((stream, fd)) => {
                    tokio::spawn(serve(host.clone(), stream, fd));
                    if host.ephemeral {
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
/// versions, before it is treated as a daemon.
async fn handshake(host: &Host, stream: &mut BoxStream) -> bool {
    let hello =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(stream, HANDSHAKE_MAX)).await {
            Ok(Ok(f)) => f,
            _ => {
                host.refuse();
                return false;
            }
        };
    let hello = match parse_hello(&hello) {
        Ok(h) => h,
        Err(_) => {
            host.refuse();
            return false;
        }
    };
    if let Some(reason) = check_hello(&hello) {
        host.refuse();
        eprintln!("mirai: refused a daemon at {}: {reason}", host.url);
        let _ = write_frame(stream, &frame(REJECT, reason.as_bytes())).await;
        return false;
    }
    write_frame(stream, &frame(WELCOME, &[])).await.is_ok()
}

async fn serve(host: Arc<Host>, mut stream: BoxStream, fd: Option<RawFd>) {
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
        let result = tokio::select! {
            _ = stop.changed() => break,
            r = read_result(&mut rd) => match r {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        host.deliver(conn, result);
    }
    host.unregister(conn);
}

/// Read one RESULT frame from a daemon: its task id and outcome. A plain
/// vector's data goes straight into memory laid out for R (see `rvec`).
async fn read_result<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u64, Outcome)> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let len = u64::from_le_bytes(header[1..].try_into().unwrap());
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
        return Ok((id, Outcome::Vector(buf, t)));
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
    Ok((
        id,
        Outcome::Value(body.into_boxed_slice(), flags & FLAG_ERROR != 0),
    ))
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
    while let Some((buf, from)) = rx.recv().await {
        if w.write_all(&buf[from..]).await.is_err() {
            return;
        }
        while let Ok((more, from)) = rx.try_recv() {
            if w.write_all(&more[from..]).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
        let mut st = host.state.lock();
        if rx.is_empty() {
            if let Some(link) = st.links.iter_mut().find(|l| l.conn == conn) {
                link.backlog = false;
            }
        }
    }
    let _ = w.shutdown().await;
}
