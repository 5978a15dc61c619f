//! A connected daemon as the host sees it: how frames reach its socket and
//! which of its tasks are unfinished.

use crate::aio::Aio;
use crate::outframe::OutFrame;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// A frame, shared: the dispatcher keeps a task's frame until the daemon
/// answers, to send it elsewhere if the daemon leaves without starting it.
pub type SharedFrame = Arc<OutFrame>;

/// Bytes for a connection's writer task: a frame, from the given offset on
/// (the part a direct write did not get onto the socket).
pub type Outgoing = (SharedFrame, usize);

pub struct Link {
    pub tx: mpsc::UnboundedSender<Outgoing>,
    /// Tasks sent and not yet answered, by task id.
    pub inflight: HashMap<u64, Arc<Aio>>,
    /// The socket, to which frames may be written directly (for TLS and
    /// websocket connections, the plain end of their socketpair).
    fd: RawFd,
    /// Frames are queued for the writer task: until it has drained them,
    /// new frames must queue behind them to keep their order.
    pub backlog: bool,
    /// Dispatcher: this daemon is listed as free for work.
    pub idle_listed: bool,
    /// Dispatcher: the profile's `everywhere()` calls before this index
    /// have been run by this daemon (see `dispatcher`).
    pub next_broadcast: usize,
    /// The daemon said it is leaving: it gets no more tasks.
    pub leaving: bool,
    /// When a frame was last sent (a heartbeat goes after a quiet spell).
    pub last_write: Instant,
    /// The shared objects this daemon holds (see `shared`).
    pub held: super::shared::Held,
    /// Dispatcher: how many small map elements the next run may hold, and
    /// the run in progress: when it was sent and its length (see
    /// `dispatcher`).
    pub run_size: usize,
    pub run_sent: Instant,
    pub run_len: usize,
}

impl Link {
    pub fn new(tx: mpsc::UnboundedSender<Outgoing>, fd: RawFd) -> Link {
        Link {
            tx,
            inflight: HashMap::new(),
            fd,
            backlog: false,
            idle_listed: false,
            next_broadcast: 0,
            leaving: false,
            last_write: Instant::now(),
            held: Default::default(),
            run_size: 1,
            run_sent: Instant::now(),
            run_len: 0,
        }
    }

    /// Send a frame. The fast path writes it to the socket right here, on
    /// the calling thread (R's, or the runtime thread that just read a
    /// result), saving a thread hand-off per task; whatever the socket does
    /// not take at once goes to the writer task. Called with the host state
    /// locked, which keeps the socket open meanwhile. False if the
    /// connection's writer has gone.
    pub fn send(&mut self, frame: SharedFrame) -> bool {
        self.last_write = Instant::now();
        if self.backlog {
            return self.tx.send((frame, 0)).is_ok();
        }
        let sent = write_nonblocking(self.fd, &frame);
        if sent == frame.len() {
            return true;
        }
        self.backlog = true;
        self.tx.send((frame, sent)).is_ok()
    }

    /// Send a task and remember it as unfinished; the shared objects it
    /// names go first, where the daemon lacks them.
    pub fn send_task(&mut self, aio: Arc<Aio>, frame: SharedFrame) -> bool {
        self.inflight.insert(aio.id as u64, aio);
        self.unshare_dead();
        self.share_for(&frame) && self.send(frame)
    }

    /// Send a later task of a run (see `dispatcher`): it names no object
    /// the daemon lacks, and nothing may come between it and the run's
    /// other tasks.
    pub fn send_run_task(&mut self, aio: Arc<Aio>, frame: SharedFrame) -> bool {
        self.inflight.insert(aio.id as u64, aio);
        self.send(frame)
    }
}

/// Write as much of `frame` as the socket takes without blocking.
fn write_nonblocking(fd: RawFd, frame: &OutFrame) -> usize {
    let mut done = 0;
    for chunk in frame.chunks_from(0) {
        let n = write_some(fd, chunk);
        done += n;
        if n < chunk.len() {
            break;
        }
    }
    done
}

fn write_some(fd: RawFd, buf: &[u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: `fd` is the link's open socket (the host state lock the
        // caller holds keeps it open) and the pointer and length describe
        // the rest of `buf`.
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
