//! A pending result ("aio"): shared between the I/O threads that complete it
//! and the R thread that reads it.
//!
//! All aios signal one process-wide condition variable when they complete
//! rather than carrying one each: only R's main thread ever waits, and a
//! single signal lets it wait on one mirai or race many with the same code,
//! at a few bytes per task.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// errorValue codes used by the package.
pub const ERR_TIMEOUT: i32 = 5;
pub const ERR_PROTOCOL: i32 = 13;
pub const ERR_CONNECTION_RESET: i32 = 19;
pub const ERR_CANCELED: i32 = 20;

#[derive(Debug)]
pub enum Outcome {
    Pending,
    /// A RESULT body (task id and flags, then the serialized R value, to
    /// be unserialized on the R thread), and whether the value is an
    /// evaluation error.
    Value(Box<[u8]>, bool),
    /// A plain atomic vector of R type `.1`, already laid out for R.
    Vector(crate::rvec::RBuffer, u8),
    /// An errorValue code.
    Error(i32),
    /// The value has been handed to R (which caches it).
    Taken,
}

#[derive(Debug)]
pub struct Aio {
    /// The task id, 1 to `i32::MAX` (R's integer range), wrapping around.
    pub id: u32,
    outcome: Mutex<Outcome>,
    /// Where R keeps this aio's mirai until it resolves (see
    /// `mirai_object`), or [`NO_SLOT`].
    slot: AtomicU32,
    /// The dispatcher that holds the task, which must hear of a
    /// cancellation (to drop it from its queue or stop it on its daemon).
    owner: Option<Weak<dyn Canceller>>,
}

/// Whoever can take a task back: see [`Aio::cancel`].
pub trait Canceller: Send + Sync + std::fmt::Debug {
    /// Resolve `aio` to errorValue `code` and stop its task wherever it
    /// is; false if it had already resolved.
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
/// Bumped on every completion that is an error of any kind, so a map
/// collected with `.stop` looks for errors only when one has happened.
static ERRORS: AtomicU64 = AtomicU64::new(0);

impl Aio {
    pub fn new() -> Arc<Aio> {
        Self::with_owner(None)
    }

    /// An aio whose cancellation goes through `owner`.
    pub fn with_owner(owner: Option<Weak<dyn Canceller>>) -> Arc<Aio> {
        Arc::new(Aio {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed) % i32::MAX as u32 + 1,
            outcome: Mutex::new(Outcome::Pending),
            slot: AtomicU32::new(NO_SLOT),
            owner,
        })
    }

    /// Resolve to errorValue `code` (canceled, timed out) unless already
    /// resolved, telling the owner so the task itself stops too. Returns
    /// whether this call resolved it.
    pub fn cancel(self: &Arc<Self>, code: i32) -> bool {
        match self.owner.as_ref().and_then(Weak::upgrade) {
            Some(owner) => owner.cancel(self, code),
            None => self.complete(Outcome::Error(code)),
        }
    }

    /// Complete with `outcome` unless already complete. Returns whether this
    /// call completed it.
    pub fn complete(&self, outcome: Outcome) -> bool {
        {
            let mut o = self.outcome.lock();
            if !matches!(*o, Outcome::Pending) {
                return false;
            }
            if matches!(outcome, Outcome::Error(_) | Outcome::Value(_, true)) {
                ERRORS.fetch_add(1, Ordering::SeqCst);
            }
            *o = outcome;
        }
        let slot = self.slot.load(Ordering::SeqCst);
        if slot != NO_SLOT {
            COLLECT.lock().push(slot);
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
        matches!(*self.outcome.lock(), Outcome::Pending)
    }

    /// Resolved to an errorValue code (the task may not have run at all).
    pub fn is_error_code(&self) -> bool {
        matches!(*self.outcome.lock(), Outcome::Error(_))
    }

    /// Resolved to an error (code or evaluation error). Once the value has
    /// been taken by R this is remembered by R, not here.
    pub fn is_error(&self) -> bool {
        matches!(
            *self.outcome.lock(),
            Outcome::Error(_) | Outcome::Value(_, true)
        )
    }

    /// Take the outcome for conversion to R (which caches it), leaving
    /// `Taken` behind once complete.
    pub fn take(&self) -> Outcome {
        let mut o = self.outcome.lock();
        match &*o {
            Outcome::Pending => Outcome::Pending,
            Outcome::Taken => Outcome::Taken,
            _ => std::mem::replace(&mut *o, Outcome::Taken),
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

/// How many error completions there have been in this process.
pub fn error_count() -> u64 {
    ERRORS.load(Ordering::SeqCst)
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
