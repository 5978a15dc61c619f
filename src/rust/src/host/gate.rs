//! The gate before the handshake: how many unauthenticated peers a host
//! lets hold descriptors and buffers at once. A peer takes a permit before
//! anything else is done for it (TLS, websocket, reading its HELLO) and
//! gives it back when its handshake ends, however it ends; admitted
//! daemons hold none. While every permit is taken, a few more peers may
//! wait for one; beyond those, new peers are closed at once, so a flood of
//! idle connections costs a bounded number of descriptors.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Peers in their handshake at once.
pub const PREAUTH_PERMITS: usize = 256;
/// Peers waiting for a permit; more than this are closed at once.
pub const PREAUTH_BACKLOG: usize = 64;

pub(super) struct Gate {
    permits: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

/// A peer's place at the gate: a permit, or a place in the queue for one.
pub(super) enum Ticket {
    Now(OwnedSemaphorePermit),
    Queued(OwnedSemaphorePermit, Arc<Semaphore>),
}

impl Gate {
    pub(super) fn new() -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(PREAUTH_PERMITS)),
            waiting: Arc::new(Semaphore::new(PREAUTH_BACKLOG)),
        }
    }

    /// A place for a newly accepted peer, or `None` if the queue is full
    /// too (the peer is to be closed at once).
    pub(super) fn arrive(&self) -> Option<Ticket> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(Ticket::Now(p));
        }
        let place = self.waiting.clone().try_acquire_owned().ok()?;
        Some(Ticket::Queued(place, self.permits.clone()))
    }
}

impl Ticket {
    /// Wait (in turn) for the permit; the queue place is freed on taking it.
    pub(super) async fn permit(self) -> OwnedSemaphorePermit {
        match self {
            Ticket::Now(p) => p,
            Ticket::Queued(place, permits) => {
                let p = permits
                    .acquire_owned()
                    .await
                    .expect("the gate's semaphore is never closed");
                drop(place);
                p
            }
        }
    }
}
