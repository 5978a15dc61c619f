//! The host's half of the heartbeat (see `protocol::message::HEARTBEAT`):
//! each connection notes when it last heard any byte from its daemon, and
//! a watchdog sends the daemon a HEARTBEAT whenever nothing else has been
//! written to it for a while, and gives the daemon up once it has been
//! silent for too long (its machine vanished, the network split, or it is
//! stuck). A daemon busy with a long task still answers, so long tasks are
//! not affected.

use super::Host;
use crate::protocol::message::{signal_frame, HEARTBEAT, HEARTBEAT_INTERVAL, SILENCE_LIMIT};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How often the watchdog looks: silence is noticed at most this late.
const TICK: Duration = Duration::from_secs(1);

/// Milliseconds since the first call: a clock cheap to keep in an atomic.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// When a connection last showed its daemon alive (see [`Heard`]).
pub(super) struct LastHeard(AtomicU64);

impl LastHeard {
    pub fn new() -> Arc<LastHeard> {
        Arc::new(LastHeard(AtomicU64::new(now_ms())))
    }

    fn stamp(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// One half of a connection that stamps [`LastHeard`] on every byte it
/// moves: bytes received (a large result still arriving counts, whole
/// messages or not), and bytes the writer task gets onto the socket. That
/// task only writes once a direct write found the socket full, so its
/// progress means the daemon is acknowledging what it is sent: a daemon
/// busy receiving a large task for longer than the limit is not given up.
pub(super) struct Heard<S> {
    inner: S,
    last: Arc<LastHeard>,
}

impl<S> Heard<S> {
    pub fn new(inner: S, last: Arc<LastHeard>) -> Heard<S> {
        Heard { inner, last }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last.stamp();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.last.stamp();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Keep connection `conn` alive from our side and watch the daemon's:
/// returns once the daemon has been silent for [`SILENCE_LIMIT`], or its
/// link is gone.
pub(super) async fn watchdog(host: Arc<Host>, conn: u64, last: Arc<LastHeard>) {
    loop {
        tokio::time::sleep(TICK).await;
        {
            let mut st = host.state.lock();
            let Some(link) = st.links.get_mut(&conn) else {
                return;
            };
            if link.last_write.elapsed() >= HEARTBEAT_INTERVAL {
                link.send(Arc::new(signal_frame(HEARTBEAT).into()));
            }
        }
        if last.silent_for() >= SILENCE_LIMIT {
            return;
        }
    }
}
