//! Large objects shared by the tasks of one `mirai_map()`: serialized once
//! on the host and sent at most once to each daemon (a SHARE frame before
//! the first task that names it), instead of inside every task.
//!
//! A task's frame holds the objects it names, so an object lives while any
//! queued, running or retried task may still need it. Each link remembers
//! which objects its daemon holds (weakly): once an object is gone on this
//! side, the daemon is told to drop it (UNSHARE), the next time the link
//! sends a task or falls idle.

use super::link::Link;
use crate::outframe::OutFrame;
use crate::protocol::message::{share_prefix, unshare_frame};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// One shared object: its id (random, so ids from different hosts or
/// sessions never meet on a daemon) and its serialized bytes.
pub struct SharedObject {
    pub id: u64,
    pub bytes: Arc<[u8]>,
}

/// SHARE frames sent by this process, for tests and benchmarks.
static SENT: AtomicU64 = AtomicU64::new(0);

pub fn shares_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// The objects a daemon holds, by id.
pub type Held = HashMap<u64, Weak<SharedObject>>;

impl Link {
    /// Before a task goes out: send the daemon each object the task names
    /// that it does not hold yet. Returns false if the connection's writer
    /// has gone.
    pub(super) fn share_for(&mut self, frame: &OutFrame) -> bool {
        let mut ok = true;
        for object in frame.shared_objects() {
            if self.held.contains_key(&object.id) {
                continue;
            }
            self.held.insert(object.id, Arc::downgrade(object));
            let head = share_prefix(object.id, object.bytes.len());
            SENT.fetch_add(1, Ordering::Relaxed);
            ok &= self.send(Arc::new(OutFrame::with_shared(head, object.bytes.clone())));
        }
        ok
    }

    /// Tell the daemon to drop the objects no task can name any more;
    /// whether there were any.
    pub(super) fn unshare_dead(&mut self) -> bool {
        if self.held.is_empty() {
            return false;
        }
        let dead: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, w)| w.strong_count() == 0)
            .map(|(&id, _)| id)
            .collect();
        for id in &dead {
            self.held.remove(id);
            self.send(Arc::new(unshare_frame(*id).into()));
        }
        !dead.is_empty()
    }
}
