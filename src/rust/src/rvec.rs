//! Large plain vectors without serialization: a daemon writes the data of
//! an attribute-free atomic vector straight from R's memory onto the
//! socket, and the host reads it into a buffer laid out so that it can
//! become the R vector itself (through `allocVector3`'s custom allocator):
//! no serialize or unserialize copy, and no fresh memory for R to fault in
//! (the buffer's pages are populated in one call as it is allocated).
//! Daemons use the same buffers for a task's large objects (`rawargs`).
//!
//! The layout R puts in front of a custom-allocated vector's data is
//! measured once, at run time, with a probe allocation.

#![allow(improper_ctypes)]

use extendr_ffi::{R_xlen_t, Rf_protect, Rf_unprotect, SEXP, SEXPTYPE, TYPEOF};
use std::os::raw::c_void;
use std::sync::OnceLock;

#[repr(C)]
struct RAllocator {
    mem_alloc: unsafe extern "C" fn(*mut RAllocator, usize) -> *mut c_void,
    mem_free: unsafe extern "C" fn(*mut RAllocator, *mut c_void),
    res: *mut c_void,
    data: *mut c_void,
}

extern "C" {
    fn Rf_allocVector3(t: SEXPTYPE, n: R_xlen_t, allocator: *mut RAllocator) -> SEXP;
    fn DATAPTR(x: SEXP) -> *mut c_void;
    fn ATTRIB(x: SEXP) -> SEXP;
    fn Rf_xlength(x: SEXP) -> R_xlen_t;
    static R_NilValue: SEXP;
}

/// Bytes per element of the vector types sent this way.
pub fn element_size(t: u8) -> Option<usize> {
    match t {
        x if x == SEXPTYPE::REALSXP as u8 => Some(8),
        x if x == SEXPTYPE::INTSXP as u8 || x == SEXPTYPE::LGLSXP as u8 => Some(4),
        x if x == SEXPTYPE::CPLXSXP as u8 => Some(16),
        x if x == SEXPTYPE::RAWSXP as u8 => Some(1),
        _ => None,
    }
}

/// If `x` is a plain atomic vector (no attributes) of at least `min` bytes,
/// its type and data (valid while `x` is protected).
pub fn plain_vector<'a>(x: SEXP, min: usize) -> Option<(u8, usize, &'a [u8])> {
    unsafe {
        let t = TYPEOF(x) as u8;
        let size = element_size(t)?;
        if ATTRIB(x) != R_NilValue {
            return None;
        }
        let n = Rf_xlength(x) as usize;
        if n * size < min {
            return None;
        }
        let data = std::slice::from_raw_parts(DATAPTR(x) as *const u8, n * size);
        Some((t, n, data))
    }
}

/// Memory for a vector's data, with room in front for what R puts there.
pub struct RBuffer {
    block: *mut u8,
    data_len: usize,
}

// The block is plain memory, owned by whichever thread holds the buffer.
unsafe impl Send for RBuffer {}

impl std::fmt::Debug for RBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RBuffer({} bytes)", self.data_len)
    }
}

/// Bytes R puts in front of a custom-allocated vector's data; `None` until
/// measured on R's thread (see [`measure_layout`]).
static DATA_OFFSET: OnceLock<usize> = OnceLock::new();

unsafe extern "C" fn probe_alloc(a: *mut RAllocator, size: usize) -> *mut c_void {
    let p = libc::malloc(size);
    (*a).data = p;
    p
}

unsafe extern "C" fn release(_: *mut RAllocator, p: *mut c_void) {
    libc::free(p);
}

/// Measure where R puts a custom-allocated vector's data (R's thread).
pub fn measure_layout() {
    unsafe {
        let mut a = RAllocator {
            mem_alloc: probe_alloc,
            mem_free: release,
            res: std::ptr::null_mut(),
            data: std::ptr::null_mut(),
        };
        // large enough that R does not take it from its small-vector pools
        let x = Rf_protect(Rf_allocVector3(SEXPTYPE::REALSXP, 4096, &mut a));
        let offset = (DATAPTR(x) as usize).wrapping_sub(a.data as usize);
        Rf_unprotect(1);
        if offset > 0 && offset < 1024 && offset.is_multiple_of(8) {
            let _ = DATA_OFFSET.set(offset);
        }
    }
}

impl RBuffer {
    /// A buffer for `data_len` bytes of vector data, or `None` if the
    /// layout is unknown or memory is short.
    pub fn new(data_len: usize) -> Option<RBuffer> {
        let offset = *DATA_OFFSET.get()?;
        let size = offset + round8(data_len);
        let block = unsafe { libc::malloc(size) } as *mut u8;
        if block.is_null() {
            return None;
        }
        prefault(block, size);
        Some(RBuffer { block, data_len })
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        let offset = DATA_OFFSET.get().copied().unwrap_or(0);
        unsafe { std::slice::from_raw_parts_mut(self.block.add(offset), self.data_len) }
    }

    /// Make this buffer an R vector of type `t` (R's thread; the result is
    /// unprotected). R frees the memory when it collects the vector.
    pub fn into_r_vector(self, t: u8) -> Option<SEXP> {
        let size = element_size(t)?;
        let t: SEXPTYPE = unsafe { std::mem::transmute(t as u32) };
        let n = self.data_len / size;
        let mut a = RAllocator {
            mem_alloc: hand_over,
            mem_free: release,
            res: std::ptr::null_mut(),
            data: &self as *const RBuffer as *mut c_void,
        };
        let x = unsafe { Rf_allocVector3(t, n as R_xlen_t, &mut a) };
        // R now owns the block (or the allocation failed and R errored out)
        std::mem::forget(self);
        Some(x)
    }
}

/// Give R the buffer's block if it asks for exactly its size.
unsafe extern "C" fn hand_over(a: *mut RAllocator, size: usize) -> *mut c_void {
    let b = &*((*a).data as *const RBuffer);
    let offset = DATA_OFFSET.get().copied().unwrap_or(0);
    // R asks for its header and the data in whole 8-byte units
    if size == offset + round8(b.data_len) {
        b.block as *mut c_void
    } else {
        std::ptr::null_mut()
    }
}

/// Have the kernel map a large block's pages in one call, rather than
/// taking one page fault per 4 KiB as the socket data is copied in (tens of
/// thousands for 100 MB, each costly on a virtual machine). Best effort.
fn prefault(block: *mut u8, size: usize) {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    const PAGE: usize = 4096;
    if size < (1 << 20) {
        return;
    }
    let start = (block as usize).div_ceil(PAGE) * PAGE;
    let end = (block as usize + size) / PAGE * PAGE;
    if end > start {
        unsafe { libc::madvise(start as *mut c_void, end - start, MADV_POPULATE_WRITE) };
    }
}

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl Drop for RBuffer {
    fn drop(&mut self) {
        unsafe { libc::free(self.block as *mut c_void) };
    }
}
