//! A pending result ("aio"): shared between the I/O threads that complete it
//! and the R thread that reads it.
//!
//! All aios signal one process-wide condition variable when they complete
//! rather than carrying one each: only R's main thread ever waits, and a
//! single signal lets it wait on one mirai or race many with the same code,
//! at a few bytes per task. A race registers a [`Watcher`] with the aios it
//! waits on, so each completion costs it O(1) rather than a rescan.
//! Anything else that must act the moment an aio completes (a promise's
//! settlement) registers a completion hook, run by the completing thread.

use crate::buffer::VectorBuffer;
use crate::protocol::VectorType;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// errorValue codes aios resolve to (see `codes`).
pub const ERR_TIMEOUT: i32 = crate::codes::TIMED_OUT;
pub const ERR_CONNECTION_RESET: i32 = crate::codes::CONNECTION_RESET;
pub const ERR_CANCELED: i32 = crate::codes::CANCELED;

#[derive(Debug)]
pub enum Outcome {
    Pending,
    /// A serialized R value, to be unserialized on the R thread, and
    /// whether it is an evaluation error.
    Value(Box<[u8]>, bool),
    /// A plain vector of the given type, its data already laid out for R.
    Vector(VectorBuffer, VectorType),
    /// An errorValue code.
    Error(i32),
    /// A result of this many bytes that the host had no memory for.
    Unallocated(u64),
    /// The value has been handed to R (which caches it).
    Taken,
}

/// Code to run once when an aio completes, on whichever thread completes
/// it (so it must not touch R).
pub type Hook = Box<dyn FnOnce() + Send>;

/// The hooks of one aio (a type of its own only to be `Debug`).
#[derive(Default)]
struct Hooks(Vec<Hook>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooks({})", self.0.len())
    }
}

#[derive(Debug)]
struct Inner {
    outcome: Outcome,
    /// A race waiting on this aio, told when it completes.
    watcher: Option<Weak<Watcher>>,
    /// Run once on completion, after the outcome is readable.
    hooks: Hooks,
}

#[derive(Debug)]
pub struct Aio {
    /// The task id, 1 to `i32::MAX` (R's integer range), wrapping around.
    pub id: u32,
    inner: Mutex<Inner>,
    /// Where R keeps this aio's mirai until it resolves (see `r::mirai`),
    /// or [`NO_SLOT`].
    slot: AtomicU32,
    /// Whoever holds the task and must hear of a cancellation (to drop it
    /// from its queue, stop it on its daemon, or close an ephemeral host).
    owner: Option<Weak<dyn Canceller>>,
}

/// Whoever can take a task back: see [`Aio::cancel`].
pub trait Canceller: Send + Sync + std::fmt::Debug {
    /// Resolve `aio` to errorValue `code` and stop its task wherever it
    /// is. True if the cancellation reached a task that was queued or
    /// running at a dispatcher.
    fn cancel(&self, aio: &Arc<Aio>, code: i32) -> bool;
}

pub const NO_SLOT: u32 = u32::MAX;

/// Slots of mirai whose aio has completed, for R's thread to collect.
static COLLECT: Mutex<Vec<u32>> = Mutex::new(Vec::new());

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Generation counter bumped on every completion, and the condvar waiters
/// sleep on.
static COMPLETIONS: Mutex<u64> = Mutex::new(0);
static COMPLETED: Condvar = Condvar::new();

/// A race's record of which of its aios completed.
#[derive(Debug, Default)]
pub struct Watcher {
    completed: Mutex<Vec<u32>>,
}

impl Watcher {
    /// Ids of the watched aios completed since the last call.
    pub fn take(&self) -> Vec<u32> {
        std::mem::take(&mut *self.completed.lock())
    }
}

/// A fresh task id (shared by every kind of aio, so ids never repeat
/// within a session until they wrap around at `i32::MAX`).
pub fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed) % i32::MAX as u32 + 1
}

impl Aio {
    pub fn new() -> Arc<Aio> {
        Self::with_owner(None)
    }

    /// An aio whose cancellation goes through `owner`.
    pub fn with_owner(owner: Option<Weak<dyn Canceller>>) -> Arc<Aio> {
        Arc::new(Aio {
            id: next_id(),
            inner: Mutex::new(Inner {
                outcome: Outcome::Pending,
                watcher: None,
                hooks: Hooks::default(),
            }),
            slot: AtomicU32::new(NO_SLOT),
            owner,
        })
    }

    /// Resolve to errorValue `code` (canceled, timed out) unless already
    /// resolved, telling the owner so the task itself stops too. True if
    /// the cancellation reached a task queued or running at a dispatcher.
    pub fn cancel(self: &Arc<Self>, code: i32) -> bool {
        match self.owner.as_ref().and_then(Weak::upgrade) {
            Some(owner) => owner.cancel(self, code),
            None => {
                self.complete(Outcome::Error(code));
                false
            }
        }
    }

    /// Complete with `outcome` unless already complete. Returns whether this
    /// call completed it.
    pub fn complete(&self, outcome: Outcome) -> bool {
        let (watcher, hooks) = {
            let mut inner = self.inner.lock();
            if !matches!(inner.outcome, Outcome::Pending) {
                return false;
            }
            inner.outcome = outcome;
            (inner.watcher.take(), std::mem::take(&mut inner.hooks.0))
        };
        if let Some(w) = watcher.and_then(|w| w.upgrade()) {
            w.completed.lock().push(self.id);
        }
        let slot = self.slot.load(Ordering::SeqCst);
        if slot != NO_SLOT {
            COLLECT.lock().push(slot);
        }
        // after the slot is queued for collection, so whatever a hook sets
        // off finds the result collectable; run with no lock held
        for hook in hooks {
            hook();
        }
        *COMPLETIONS.lock() += 1;
        COMPLETED.notify_all();
        true
    }

    /// Record where R keeps this aio's mirai. If it has already completed,
    /// queue it for collection now (collecting twice is harmless).
    pub fn set_slot(&self, slot: u32) {
        self.slot.store(slot, Ordering::SeqCst);
        if !self.is_pending() {
            COLLECT.lock().push(slot);
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(self.inner.lock().outcome, Outcome::Pending)
    }

    /// Resolved to an errorValue code (the task may not have run at all).
    pub fn is_error_code(&self) -> bool {
        matches!(self.inner.lock().outcome, Outcome::Error(_))
    }

    /// Have `watcher` told when this aio completes; false (and nothing
    /// registered) if it already has.
    pub fn watch(&self, watcher: &Arc<Watcher>) -> bool {
        let mut inner = self.inner.lock();
        if !matches!(inner.outcome, Outcome::Pending) {
            return false;
        }
        inner.watcher = Some(Arc::downgrade(watcher));
        true
    }

    /// Have `hook` run when this aio completes. If it already has, nothing
    /// is registered and the hook comes back, for the caller to run.
    pub fn on_complete(&self, hook: Hook) -> Result<(), Hook> {
        let mut inner = self.inner.lock();
        if !matches!(inner.outcome, Outcome::Pending) {
            return Err(hook);
        }
        inner.hooks.0.push(hook);
        Ok(())
    }

    /// Take the outcome for conversion to R (which caches it), leaving
    /// `Taken` behind once complete.
    pub fn take(&self) -> Outcome {
        let mut inner = self.inner.lock();
        match &inner.outcome {
            Outcome::Pending => Outcome::Pending,
            Outcome::Taken => Outcome::Taken,
            _ => std::mem::replace(&mut inner.outcome, Outcome::Taken),
        }
    }
}

/// Results often arrive within microseconds, but waking a thread that
/// went to sleep costs tens of microseconds (more on virtual machines,
/// whose idle CPUs halt). So a waiter first checks for its result for this
/// long, yielding the CPU to any other runnable thread in between.
pub const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(200);

/// Poll `done()` for up to [`SPIN_BEFORE_SLEEP`]; true once it holds.
pub fn spin_until(done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + SPIN_BEFORE_SLEEP;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Take the slots of the mirai completed since the last call.
pub fn take_completed() -> Vec<u32> {
    std::mem::take(&mut *COLLECT.lock())
}

/// The current completion generation: wait with [`wait_for_completion`]
/// after checking state, so no completion in between is missed.
pub fn generation() -> u64 {
    *COMPLETIONS.lock()
}

/// Sleep until some aio completes after generation `seen`, or `slice` passes.
pub fn wait_for_completion(seen: u64, slice: Duration) {
    let deadline = Instant::now() + slice;
    let mut g = COMPLETIONS.lock();
    while *g == seen {
        if COMPLETED.wait_until(&mut g, deadline).timed_out() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_once() {
        let a = Aio::new();
        assert!(a.is_pending());
        assert!(a.complete(Outcome::Error(ERR_CANCELED)));
        assert!(!a.complete(Outcome::Value(Box::new([1]), false)));
        assert!(matches!(a.take(), Outcome::Error(ERR_CANCELED)));
        assert!(matches!(a.take(), Outcome::Taken));
    }

    #[test]
    fn cancelling_without_an_owner_resolves_but_reaches_nothing() {
        let a = Aio::new();
        assert!(!a.cancel(ERR_CANCELED));
        assert!(a.is_error_code());
    }

    #[test]
    fn a_watcher_hears_each_completion_once() {
        let w = Arc::new(Watcher::default());
        let (a, b) = (Aio::new(), Aio::new());
        assert!(a.watch(&w) && b.watch(&w));
        b.complete(Outcome::Error(ERR_TIMEOUT));
        assert_eq!(w.take(), vec![b.id]);
        assert!(w.take().is_empty());
        assert!(!b.watch(&w));
        a.complete(Outcome::Error(ERR_TIMEOUT));
        assert_eq!(w.take(), vec![a.id]);
    }

    #[test]
    fn a_hook_runs_once_on_the_completing_thread_after_the_outcome() {
        use std::sync::atomic::AtomicUsize;
        let a = Aio::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (r, seen) = (runs.clone(), a.clone());
        let hook: Hook = Box::new(move || {
            assert!(!seen.is_pending(), "the outcome is readable in the hook");
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert!(a.on_complete(hook).is_ok());
        let b = a.clone();
        std::thread::spawn(move || b.complete(Outcome::Error(ERR_CANCELED)))
            .join()
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(!a.complete(Outcome::Error(ERR_TIMEOUT)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // too late: the hook comes back to the caller, unrun
        let r = runs.clone();
        let late = a.on_complete(Box::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        assert!(late.is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn waiter_wakes_on_completion_from_another_thread() {
        let a = Aio::new();
        let b = a.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.complete(Outcome::Value(Box::new([7]), false));
        });
        let start = Instant::now();
        loop {
            let g = generation();
            if !a.is_pending() {
                break;
            }
            wait_for_completion(g, Duration::from_secs(5));
        }
        assert!(start.elapsed() < Duration::from_secs(4));
        t.join().unwrap();
        assert!(matches!(a.take(), Outcome::Value(v, false) if *v == [7]));
        assert!(matches!(a.take(), Outcome::Taken));
    }
}
