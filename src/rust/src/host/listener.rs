//! A host's connections: accepting peers, admitting those that complete
//! the handshake, reading their results and writing what the scheduler
//! sends them. Each connection is a task on the runtime; whatever way it
//! ends (the peer goes, the host closes, or the task panics), its guard
//! takes the daemon off the host and resolves its unfinished tasks.

use super::gate::{Gate, Ticket};
use super::heartbeat::{watchdog, Heard, LastHeard};
use super::link::{Link, Outgoing};
use super::Host;
use crate::aio::Outcome;
use crate::buffer::VectorBuffer;
use crate::codes::CONNECTION_RESET;
use crate::outframe::OutFrame;
use crate::protocol::frame::{parse_header, read_frame, write_frame, FRAME_MAX, HANDSHAKE_MAX};
use crate::protocol::handshake::{
    check_hello, parse_hello, proof_matches, Challenge, Side, Welcome, PROTOCOL_VERSION,
};
use crate::protocol::message::{
    read_result, ResultValue, SerialConfig, CHALLENGE, HEARTBEAT, LEAVING, PROOF, REJECT, RESULT,
    WELCOME,
};
use crate::protocol::{frame, HEADER_LEN};
use crate::transport::{Accepted, BoxStream, Listener};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, Notify};

/// How long an unknown peer may take, from accept, to be admitted
/// (including any wait for a permit, see `gate`) before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-connection read and write buffers: small, as a host may have
/// thousands of daemons; large frames bypass them.
const IO_BUFFER: usize = 16 * 1024;

pub(super) async fn accept_loop(host: Arc<Host>, listener: Listener) {
    accept_until_stopped(&host, listener).await;
    *host.stopped.lock() = true;
    host.stopped_cv.notify_all();
}

/// Accept daemons until shutdown (or, for an ephemeral host, until one is
/// admitted: a stray peer failing its handshake does not take the slot);
/// the listener is dropped, closing the socket, on return.
async fn accept_until_stopped(host: &Arc<Host>, listener: Listener) {
    let mut stop = host.shutdown.subscribe();
    let gate = Gate::new();
    let slot = host
        .config
        .ephemeral
        .then(|| Arc::new(OneDaemon::default()));
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let filled = async {
            match &slot {
                Some(s) => s.filled.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            _ = filled => break,
            res = listener.accept() => match res {
                // beyond the permits and the queue, closed at once
                Ok(accepted) => match gate.arrive() {
                    Some(ticket) => {
                        tokio::spawn(serve(host.clone(), accepted, ticket, slot.clone()));
                    }
                    None => host.refuse(),
                },
                // Out of descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

/// An ephemeral host's one daemon slot: taken by the first peer admitted.
#[derive(Default)]
struct OneDaemon {
    taken: AtomicBool,
    filled: Notify,
}

impl OneDaemon {
    /// Take the slot (false if another peer has it); accepting stops.
    fn take(&self) -> bool {
        let first = !self.taken.swap(true, Ordering::SeqCst);
        if first {
            self.filled.notify_one();
        }
        first
    }
}

/// Why a peer was not admitted.
enum Refusal {
    /// Not one of ours, or without the secret: told nothing.
    Silent,
    /// A daemon of another version: told why.
    Told(String),
}

/// Admit one peer: it must complete the handshake in time, with matching
/// versions, before it is treated as a daemon.
async fn admit(host: &Host, stream: &mut BoxStream) -> std::io::Result<Result<(), Refusal>> {
    let hello = match parse_hello(&read_frame(stream, HANDSHAKE_MAX).await?) {
        Ok(h) => h,
        Err(_) => return Ok(Err(Refusal::Silent)),
    };
    // A peer of our protocol must prove it knows the secret, after the host
    // has proved it to the peer. Without it, it learns nothing, not even
    // why: it was not launched by this host.
    if let (Some(secret), PROTOCOL_VERSION) = (&host.config.secret, hello.protocol) {
        let Some(theirs) = hello.nonce else {
            return Ok(Err(Refusal::Silent));
        };
        let challenge = Challenge::new(secret, &theirs)?;
        write_frame(stream, &frame(CHALLENGE, &challenge.encode())).await?;
        let answer = read_frame(stream, HANDSHAKE_MAX).await?;
        let ours = &challenge.nonce;
        if answer.kind != PROOF || !proof_matches(secret, Side::Daemon, &theirs, ours, &answer.body)
        {
            return Ok(Err(Refusal::Silent));
        }
    }
    if let Err(reason) = check_hello(&hello) {
        return Ok(Err(Refusal::Told(reason)));
    }
    Ok(Ok(()))
}

/// Takes a daemon off its host when its connection task ends, however it
/// ends, so its tasks never stay pending.
struct Registered {
    host: Arc<Host>,
    conn: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.host.unregister(self.conn);
    }
}

async fn serve(host: Arc<Host>, accepted: Accepted, ticket: Ticket, slot: Option<Arc<OneDaemon>>) {
    // One deadline, from accept, for the whole admission: waiting for a
    // permit, then TLS and websocket handshakes (in this connection's own
    // task), then ours. The permit goes when the admission ends.
    let admission = async {
        let _permit = ticket.permit().await;
        let (mut stream, fd) = accepted.open().await?;
        match admit(&host, &mut stream).await? {
            Ok(()) => Ok((stream, fd)),
            Err(Refusal::Told(reason)) => {
                eprintln!("mirai: refused a daemon at {}: {reason}", host.url);
                let _ = write_frame(&mut stream, &frame(REJECT, reason.as_bytes())).await;
                Err(crate::protocol::invalid("refused"))
            }
            Err(Refusal::Silent) => Err(crate::protocol::invalid("not admitted")),
        }
    };
    let admitted = match tokio::time::timeout(HANDSHAKE_TIMEOUT, admission).await {
        Ok(Ok(admitted)) => Some(admitted),
        _ => None,
    };
    let Some((mut stream, fd)) = admitted.filter(|_| slot.is_none_or(|s| s.take())) else {
        host.refuse();
        return;
    };
    let serial = host
        .config
        .serial
        .as_ref()
        .filter(|_| host.config.dispatcher);
    let welcome = Welcome {
        stream: host.state.lock().next_stream(),
        serial: serial.is_some(),
    };
    if write_frame(&mut stream, &frame(WELCOME, &welcome.encode()))
        .await
        .is_err()
    {
        return;
    }
    // the configuration goes before the daemon is registered, so before
    // any task can be sent to it
    if let Some(config) = serial {
        let msg = SerialConfig {
            config: config.to_vec(),
        };
        if write_frame(&mut stream, &msg.encode()).await.is_err() {
            return;
        }
    }
    let mut stop = host.shutdown.subscribe();
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let Some(conn) = host.register(tx, fd) else {
        return;
    };
    let registered = Registered {
        host: host.clone(),
        conn,
    };
    let last = LastHeard::new();
    tokio::spawn(write_loop(
        host.clone(),
        conn,
        Heard::new(wr, last.clone()),
        rx,
    ));
    let silent = watchdog(host.clone(), conn, last.clone());
    tokio::pin!(silent);
    let mut rd = BufReader::with_capacity(IO_BUFFER, Heard::new(rd, last));
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            _ = &mut silent => {
                // the daemon is gone without a word: make the writer fail
                // too, rather than wait on a peer that never reads
                shut_down(fd);
                break;
            }
            r = read_message(&mut rd) => match r {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        match message {
            FromDaemon::Result(id, outcome) => host.deliver(conn, id, outcome),
            FromDaemon::Leaving => host.leaving(conn),
            FromDaemon::Heartbeat => {}
        }
    }
    drop(registered);
}

/// Shut a connection's socket down both ways.
fn shut_down(fd: RawFd) {
    // SAFETY: `fd` is this connection's socket, still open: the caller
    // holds its read half. shutdown only changes the socket's state.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// What a daemon sends.
enum FromDaemon {
    Result(u64, Outcome),
    Leaving,
    /// Nothing to do: its bytes have already counted as a sign of life.
    Heartbeat,
}

/// Read one message from a daemon: a RESULT (its task id and outcome; a
/// plain vector's data goes straight into memory laid out for R) or
/// LEAVING or HEARTBEAT. Anything else ends the connection.
async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<FromDaemon> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let (kind, len) = parse_header(&header, FRAME_MAX)?;
    match kind {
        LEAVING if len == 0 => Ok(FromDaemon::Leaving),
        HEARTBEAT if len == 0 => Ok(FromDaemon::Heartbeat),
        RESULT => {
            let (id, value) = read_result(
                r,
                len,
                |t, n| VectorBuffer::new(t.data_len(n)?, n),
                |b| b.data_mut(),
            )
            .await?;
            let outcome = match value {
                ResultValue::Serialized(bytes, is_error) => {
                    Outcome::Value(bytes.into_boxed_slice(), is_error)
                }
                ResultValue::Vector(buf, t) => Outcome::Vector(buf, t),
                ResultValue::Unallocated(n) => Outcome::Unallocated(n),
            };
            Ok(FromDaemon::Result(id, outcome))
        }
        _ => Err(crate::protocol::invalid("unexpected message from a daemon")),
    }
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
/// is queued into one flush; once drained, let direct writes resume. Ends
/// (closing the write side) when every sender is gone.
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

impl Host {
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
                aio.complete(Outcome::Error(CONNECTION_RESET));
            }
        }
        self.links_changed.notify_all();
        if self.config.ephemeral {
            self.close(false);
        }
    }

    fn deliver(&self, conn: u64, id: u64, outcome: Outcome) {
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
