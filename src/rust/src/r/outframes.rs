//! Frames that carry the data of R vectors straight from R's memory (see
//! `rawargs`): the R object holding those vectors is kept from R's garbage
//! collector until every copy of the frame is gone, then released on R's
//! thread at its next call into the package.

use crate::outframe::OutFrame;
use extendr_ffi::{R_PreserveObject, R_ReleaseObject, SEXP};
use parking_lot::Mutex;
use std::sync::Arc;

/// An R object kept alive for a frame, released when the last frame
/// referring to it is dropped (on whichever thread).
struct Kept(usize);

/// R objects whose frames are gone, to release on R's thread.
static RELEASE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

impl Drop for Kept {
    fn drop(&mut self) {
        RELEASE.lock().push(self.0);
    }
}

/// A frame of `head` followed by the data `tail` of R vectors that `keep`
/// (an R object referring to them all) holds. R's thread.
///
/// # Safety
/// Every slice must be the data of a vector that `keep` refers to, and R
/// code must not modify those vectors in place (it cannot while `keep`
/// refers to them: R copies shared vectors before modifying them).
pub unsafe fn with_r_data(head: Vec<u8>, tail: &[&[u8]], keep: SEXP) -> OutFrame {
    R_PreserveObject(keep);
    OutFrame::with_tail(head, tail, Arc::new(Kept(keep as usize)))
}

/// Release the R objects of frames that are gone. R's thread only.
pub fn release_pending() {
    let done = std::mem::take(&mut *RELEASE.lock());
    for x in done {
        // SAFETY: R's thread; each object was preserved once by
        // `with_r_data` and is released once here.
        unsafe { R_ReleaseObject(x as SEXP) };
    }
}
