//! The host side of a compute profile: listens at a URL, admits daemons
//! that pass the handshake, sends them tasks and completes each task's aio
//! when its result comes back. Which daemon gets which task is the
//! [`scheduler`]'s business: round-robin, or FIFO to free daemons with the
//! [`dispatcher`], which lives here, as tasks on the runtime.
//!
//! A daemon that disconnects takes its unfinished tasks with it: they
//! resolve to errorValue 19 at once (or are retried). So does one that
//! falls silent, its link half-open (see [`heartbeat`]).
//!
//! An *ephemeral* host serves a single task to a single daemon process
//! (a mirai with no daemons set) and closes itself afterwards, or when the
//! task is cancelled, so its process never outlives the task.

mod budget;
mod dispatcher;
mod gate;
mod heartbeat;
mod link;
mod listener;
mod nofile;
mod scheduler;
mod secret;
pub mod shared;

pub use gate::{PREAUTH_BACKLOG, PREAUTH_PERMITS};
pub use scheduler::{State, Task};
pub use secret::new_secret;

use crate::aio::{Aio, Canceller, Outcome};
use crate::codes::{CONNECTION_RESET, TIMED_OUT};
use crate::protocol::handshake::Stream;
use crate::protocol::message::{signal_frame, EXIT};
use crate::runtime::runtime;
use crate::transport::url::Url;
use crate::transport::{self, TransportError};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

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
    /// Dispatcher: the stream S0 from which each connecting daemon's
    /// random-number stream follows (the k-th daemon gets the k-th next).
    pub stream: Option<Stream>,
    /// Dispatcher: how many times a task whose daemon dies before
    /// answering is queued again (at the head) before it resolves to
    /// errorValue 19.
    pub retry: u32,
    /// Dispatcher: the profile's serialization configuration (serialized
    /// by R, opaque here), sent to every daemon right after its WELCOME.
    pub serial: Option<Arc<[u8]>>,
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
    pub retries: u64,
}

impl Host {
    /// Listen at `url` (port 0 picks a free port).
    pub fn listen_with(url: &str, config: HostConfig) -> Result<Arc<Host>, TransportError> {
        let parsed = Url::parse(url).map_err(TransportError::url)?;
        nofile::raise_nofile_limit();
        let rt = runtime();
        let (listener, bound) = rt
            .block_on(transport::bind(&parsed, config.tls.clone()))
            .map_err(|e| TransportError::io(&e))?;
        let memory_limit = config.memory_limit.filter(|_| config.dispatcher);
        let stream = config.stream.filter(|_| config.dispatcher);
        let retry = if config.dispatcher { config.retry } else { 0 };
        let host = Arc::new(Host {
            url: bound.to_string(),
            state: Mutex::new(State::new(config.dispatcher, memory_limit, stream, retry)),
            config,
            links_changed: Condvar::new(),
            space: Condvar::new(),
            shutdown: watch::channel(false).0,
            stopped: Mutex::new(false),
            stopped_cv: Condvar::new(),
            launched: AtomicU64::new(0),
            exited: AtomicU64::new(0),
        });
        rt.spawn(listener::accept_loop(host.clone(), listener));
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
    /// reaches the dispatcher; for an ephemeral host, it closes the host.
    pub fn new_aio(self: &Arc<Self>) -> Arc<Aio> {
        if self.config.dispatcher || self.config.ephemeral {
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

    /// Wait up to `slice` for the memory budget to have room; whether it
    /// has.
    pub fn wait_room(&self, slice: Duration) -> bool {
        let mut st = self.state.lock();
        if st.closed || st.budget.has_room() {
            return true;
        }
        st.compact();
        if !st.budget.has_room() {
            self.space.wait_for(&mut st, slice);
            st.compact(); // room may have come from a cancellation
        }
        st.closed || st.budget.has_room()
    }

    /// Queue a task if the memory budget has room, waiting up to `wait`
    /// for room; hands the task back if there is none (the caller checks
    /// for Ctrl-C and tries again, or gives up).
    pub fn submit_within_budget(
        &self,
        task: Task,
        timeout: Option<Duration>,
        wait: Duration,
    ) -> Result<(), Task> {
        let mut st = self.state.lock();
        if !st.closed && !st.budget.has_room() {
            st.compact();
            if !st.budget.has_room() && !wait.is_zero() {
                self.space.wait_for(&mut st, wait);
                st.compact(); // room may have come from a cancellation
            }
            if !st.closed && !st.budget.has_room() {
                return Err(task);
            }
        }
        self.enqueue(&mut st, task, timeout);
        Ok(())
    }

    /// Whether the memory budget has room now (`try_mirai()`).
    pub fn has_room(&self) -> bool {
        let mut st = self.state.lock();
        st.compact();
        st.closed || st.budget.has_room()
    }

    fn enqueue(&self, st: &mut State, task: Task, timeout: Option<Duration>) {
        let aio = task.aio.clone();
        if let Err(task) = st.enqueue(task) {
            task.aio.complete(Outcome::Error(CONNECTION_RESET));
            return;
        }
        if let Some(t) = timeout {
            runtime().spawn(async move {
                tokio::time::sleep(t).await;
                aio.cancel(TIMED_OUT);
            });
        }
    }

    /// `everywhere()` with dispatcher: a group of `k` tasks for distinct
    /// daemons, sharing one payload, and an extra run on every other
    /// daemon, now or when it connects (see `dispatcher`).
    pub fn broadcast(self: &Arc<Self>, payload: Arc<[u8]>, k: usize) -> Vec<Arc<Aio>> {
        let mut st = self.state.lock();
        st.broadcast(payload, k, || self.new_aio())
    }

    /// Give map elements to daemons in runs of exactly `n` (as the queue
    /// allows), or with `None` of the adaptive size again (for tests).
    pub fn fix_runs(&self, n: Option<usize>) {
        self.state.lock().fixed_run = n;
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
            retries: st.retries,
        }
    }

    /// Daemon processes started for this host, and how many have ended.
    pub fn processes(&self) -> (u64, u64) {
        (
            self.launched.load(Ordering::SeqCst),
            self.exited.load(Ordering::SeqCst),
        )
    }

    /// A daemon process was started for this host.
    pub fn process_launched(&self) {
        self.launched.fetch_add(1, Ordering::SeqCst);
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
            for mut link in links {
                if send_exit {
                    link.send(Arc::new(signal_frame(EXIT).into()));
                }
                failed.extend(link.inflight.drain().map(|(_, aio)| aio));
            }
        }
        self.links_changed.notify_all();
        self.space.notify_all();
        self.shutdown.send_replace(true);
        for aio in failed {
            aio.complete(Outcome::Error(CONNECTION_RESET));
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
}

impl Canceller for Host {
    fn cancel(&self, aio: &Arc<Aio>, code: i32) -> bool {
        if !self.config.dispatcher {
            // ephemeral: the task's one process goes with the host
            aio.complete(Outcome::Error(code));
            self.close(false);
            return false;
        }
        let reached = self.state.lock().cancel(aio, code);
        if reached && self.config.memory_limit.is_some() {
            self.space.notify_all();
        }
        reached
    }
}
