//! A frame on its way to a daemon: bytes of its own, optionally followed by
//! the data of large R vectors still in R's memory (sent without copying;
//! see `FLAG_RAW_ARGS` in `protocol`). The R object holding those vectors
//! is kept from R's garbage collector until every copy of the frame is
//! gone; it is then released on R's thread (see [`release_pending`]).

use parking_lot::Mutex;
use std::sync::Arc;

/// Memory owned by R, read-only while the frame exists.
#[derive(Clone, Copy)]
struct RawSlice {
    ptr: *const u8,
    len: usize,
}

/// An R object kept alive for a frame, released when the last frame
/// referring to it is dropped.
struct RKeep(usize);

/// R objects whose frames are gone, to release on R's thread.
static RELEASE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

impl Drop for RKeep {
    fn drop(&mut self) {
        RELEASE.lock().push(self.0);
    }
}

#[derive(Clone)]
pub struct OutFrame {
    head: Vec<u8>,
    /// Boxed: most frames have none, and a queued task should stay small.
    r_data: Option<Box<RData>>,
}

#[derive(Clone)]
struct RData {
    slices: Vec<RawSlice>,
    _keep: Arc<RKeep>,
}

// The raw slices point into R vectors that are protected (R_PreserveObject)
// for as long as `_keep` lives and that R code cannot modify in place (the
// preserved task list holds a reference to each), so any thread may read
// them.
unsafe impl Send for OutFrame {}
unsafe impl Sync for OutFrame {}

impl From<Vec<u8>> for OutFrame {
    fn from(head: Vec<u8>) -> OutFrame {
        OutFrame { head, r_data: None }
    }
}

impl OutFrame {
    /// A frame of `head` followed by the data of R vectors `raw`, kept
    /// valid by preserving `keep` (an R object referring to them all).
    ///
    /// # Safety
    /// Call on R's thread; every slice must be the data of a vector that
    /// `keep` refers to.
    pub unsafe fn with_r_data(head: Vec<u8>, raw: &[&[u8]], keep: extendr_ffi::SEXP) -> OutFrame {
        extendr_ffi::R_PreserveObject(keep);
        let slices = raw
            .iter()
            .map(|s| RawSlice {
                ptr: s.as_ptr(),
                len: s.len(),
            })
            .collect();
        OutFrame {
            head,
            r_data: Some(Box::new(RData {
                slices,
                _keep: Arc::new(RKeep(keep as usize)),
            })),
        }
    }

    fn slices(&self) -> &[RawSlice] {
        self.r_data.as_ref().map_or(&[], |d| &d.slices)
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.slices().iter().map(|r| r.len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame's bytes from `offset` on, as consecutive slices.
    pub fn chunks_from(&self, offset: usize) -> impl Iterator<Item = &[u8]> {
        let raw = self
            .slices()
            .iter()
            .map(|r| unsafe { std::slice::from_raw_parts(r.ptr, r.len) });
        std::iter::once(self.head.as_slice())
            .chain(raw)
            .scan(offset, |skip, chunk| {
                let from = (*skip).min(chunk.len());
                *skip -= from;
                Some(&chunk[from..])
            })
            .filter(|c| !c.is_empty())
    }
}

/// Release the R objects of frames that are gone. R's thread only.
pub fn release_pending() {
    let done = std::mem::take(&mut *RELEASE.lock());
    for x in done {
        unsafe { extendr_ffi::R_ReleaseObject(x as extendr_ffi::SEXP) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_from_skips_whole_and_partial_parts() {
        let data = [7u8; 5];
        let f = OutFrame {
            head: vec![1, 2, 3],
            r_data: Some(Box::new(RData {
                slices: vec![RawSlice {
                    ptr: data.as_ptr(),
                    len: data.len(),
                }],
                _keep: Arc::new(RKeep(0)),
            })),
        };
        assert_eq!(f.len(), 8);
        let all: Vec<u8> = f.chunks_from(0).flatten().copied().collect();
        assert_eq!(all, [1, 2, 3, 7, 7, 7, 7, 7]);
        let rest: Vec<u8> = f.chunks_from(4).flatten().copied().collect();
        assert_eq!(rest, [7, 7, 7, 7]);
        assert_eq!(f.chunks_from(8).count(), 0);
        // no R object behind this test frame: nothing to release
        std::mem::forget(f);
    }
}
