//! A frame on its way to a daemon: bytes of its own, optionally followed by
//! memory it does not own (the data of large R vectors, sent without
//! copying; or an `everywhere()` payload shared by the frames of every
//! daemon). A guard keeps that memory valid until every copy of the frame
//! is gone.

use crate::host::shared::SharedObject;
use crate::protocol::message::TASK_FLAGS_AT;
use std::sync::Arc;

/// Memory outside the frame, read-only while the frame exists.
#[derive(Clone, Copy)]
struct Slice {
    ptr: *const u8,
    len: usize,
}

/// Keeps borrowed memory valid while it lives.
pub type Guard = Arc<dyn Send + Sync>;

#[derive(Clone)]
pub struct OutFrame {
    head: Vec<u8>,
    /// Boxed: most frames have none, and a queued task should stay small.
    tail: Option<Box<Tail>>,
}

#[derive(Clone)]
struct Tail {
    slices: Vec<Slice>,
    _guard: Guard,
    /// Objects the task names (sent ahead of it, see `host::shared`).
    shared: Vec<Arc<SharedObject>>,
}

// SAFETY: the slices point into memory that `_guard` keeps alive and
// unmodified for as long as the frame exists (the contract of
// `with_tail`), so any thread may read them.
unsafe impl Send for OutFrame {}
unsafe impl Sync for OutFrame {}

impl From<Vec<u8>> for OutFrame {
    fn from(head: Vec<u8>) -> OutFrame {
        OutFrame { head, tail: None }
    }
}

impl OutFrame {
    /// A frame of `head` followed by the bytes of `tail`.
    ///
    /// # Safety
    /// Every slice must stay valid and unmodified for as long as `guard`
    /// (or a clone of it) lives.
    pub unsafe fn with_tail(head: Vec<u8>, tail: &[&[u8]], guard: Guard) -> OutFrame {
        let slices = tail
            .iter()
            .map(|s| Slice {
                ptr: s.as_ptr(),
                len: s.len(),
            })
            .collect();
        OutFrame {
            head,
            tail: Some(Box::new(Tail {
                slices,
                _guard: guard,
                shared: Vec::new(),
            })),
        }
    }

    /// A frame of `head` followed by `shared`, which other frames share.
    pub fn with_shared(head: Vec<u8>, shared: Arc<[u8]>) -> OutFrame {
        let tail: &[u8] = &shared;
        let tail = [tail];
        // SAFETY: the guard is the Arc owning the bytes, and Arc<[u8]> is
        // immutable.
        unsafe { OutFrame::with_tail(head, &tail, Arc::new(shared.clone())) }
    }

    /// The same frame, naming `objects` (which must go to a daemon before
    /// it, and live as long as it does).
    pub fn naming(mut self, objects: Vec<Arc<SharedObject>>) -> OutFrame {
        if objects.is_empty() {
            return self;
        }
        let tail = self.tail.get_or_insert_with(|| {
            Box::new(Tail {
                slices: Vec::new(),
                _guard: Arc::new(()),
                shared: Vec::new(),
            })
        });
        tail.shared = objects;
        self
    }

    /// The shared objects this frame's task names.
    pub fn shared_objects(&self) -> &[Arc<SharedObject>] {
        self.tail.as_ref().map_or(&[], |t| &t.shared)
    }

    /// A TASK frame's flags.
    pub fn task_flags(&self) -> u8 {
        self.head.get(TASK_FLAGS_AT).copied().unwrap_or(0)
    }

    /// Set or clear flag bits of a TASK frame.
    pub fn set_task_flag(&mut self, flag: u8, on: bool) {
        if let Some(f) = self.head.get_mut(TASK_FLAGS_AT) {
            *f = if on { *f | flag } else { *f & !flag };
        }
    }

    fn slices(&self) -> &[Slice] {
        self.tail.as_ref().map_or(&[], |t| &t.slices)
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.slices().iter().map(|r| r.len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame's bytes from `offset` on, as consecutive slices.
    pub fn chunks_from(&self, offset: usize) -> impl Iterator<Item = &[u8]> {
        let tail = self.slices().iter().map(|r| {
            // SAFETY: valid while the guard, owned by `self`, lives.
            unsafe { std::slice::from_raw_parts(r.ptr, r.len) }
        });
        std::iter::once(self.head.as_slice())
            .chain(tail)
            .scan(offset, |skip, chunk| {
                let from = (*skip).min(chunk.len());
                *skip -= from;
                Some(&chunk[from..])
            })
            .filter(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_from_skips_whole_and_partial_parts() {
        let f = OutFrame::with_shared(vec![1, 2, 3], Arc::from(vec![7u8; 5]));
        assert_eq!(f.len(), 8);
        let all: Vec<u8> = f.chunks_from(0).flatten().copied().collect();
        assert_eq!(all, [1, 2, 3, 7, 7, 7, 7, 7]);
        let rest: Vec<u8> = f.chunks_from(4).flatten().copied().collect();
        assert_eq!(rest, [7, 7, 7, 7]);
        assert_eq!(f.chunks_from(8).count(), 0);
    }

    #[test]
    fn task_flags_are_read_and_set_in_place() {
        use crate::protocol::message::{task_prefix, TASK_MAP, TASK_MORE};
        let mut f = OutFrame::from(task_prefix(3, TASK_MAP, 0));
        assert_eq!(f.task_flags(), TASK_MAP);
        f.set_task_flag(TASK_MORE, true);
        assert_eq!(f.task_flags(), TASK_MAP | TASK_MORE);
        f.set_task_flag(TASK_MORE, false);
        assert_eq!(f.task_flags(), TASK_MAP);
        let mut empty = OutFrame::from(Vec::new());
        empty.set_task_flag(TASK_MORE, true);
        assert_eq!(empty.task_flags(), 0);
    }
}
