//! The daemon's half of the heartbeat (see `protocol::message::HEARTBEAT`):
//! when it last heard from its host and last wrote to it, shared by R's
//! thread (between tasks) and the watcher (while R evaluates), so the host
//! hears from a daemon busy with a long task, and a daemon whose host fell
//! silent gives up on it.

use crate::protocol::message::{HEARTBEAT_INTERVAL, SILENCE_LIMIT};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

pub struct Pulse {
    heard: AtomicU64,
    wrote: AtomicU64,
}

impl Pulse {
    pub fn new() -> Pulse {
        Pulse {
            heard: AtomicU64::new(now_ms()),
            wrote: AtomicU64::new(now_ms()),
        }
    }

    /// A new connection: nothing owed, nothing missed yet.
    pub fn reset(&self) {
        self.heard();
        self.wrote();
    }

    /// Bytes came from the host.
    pub fn heard(&self) {
        self.heard.store(now_ms(), Ordering::Relaxed);
    }

    /// Bytes went to the host.
    pub fn wrote(&self) {
        self.wrote.store(now_ms(), Ordering::Relaxed);
    }

    fn since(t: &AtomicU64) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(t.load(Ordering::Relaxed)))
    }

    /// The host has been silent for too long: the connection is dead.
    pub fn host_silent(&self) -> bool {
        Self::since(&self.heard) >= SILENCE_LIMIT
    }

    /// Time to send the host a HEARTBEAT.
    pub fn heartbeat_due(&self) -> bool {
        Self::since(&self.wrote) >= HEARTBEAT_INTERVAL
    }
}

impl Default for Pulse {
    fn default() -> Pulse {
        Pulse::new()
    }
}
