//! Large plain vectors without serialization: the data of an
//! attribute-free atomic vector goes straight from R's memory onto the
//! socket, and is read into a [`VectorBuffer`] laid out so that it becomes
//! the R vector itself (through `Rf_allocVector3`'s custom allocator): no
//! serialize or unserialize copy. Results take this path to the host, and
//! a task's large objects to the daemon (see `rawargs`).
//!
//! ALTREP vectors (compact sequences, memory-mapped data, ...) never take
//! it: asking for their data would materialize them, while serialization
//! keeps their compact form.
//!
//! R keeps a header in front of a custom-allocated vector's data. Its size
//! is measured once, at start-up, with a probe allocation. Long vectors
//! (over 2^31 - 1 elements) cannot be adopted that way (R's allocator asks
//! for no room for their longer header): their data is copied into a
//! vector R allocates itself.

use super::api::{RAllocator, Rf_allocVector3, ALTREP, ATTRIB};
use crate::buffer::{set_vector_header, VectorBuffer};
use crate::protocol::VectorType;
use extendr_ffi::{
    R_NilValue, R_xlen_t, Rf_protect, Rf_unprotect, Rf_xlength, COMPLEX, INTEGER, LOGICAL, RAW,
    REAL, SEXP, SEXPTYPE, TYPEOF,
};
use std::os::raw::c_void;

fn vector_type(t: SEXPTYPE) -> Option<VectorType> {
    Some(match t {
        SEXPTYPE::LGLSXP => VectorType::Logical,
        SEXPTYPE::INTSXP => VectorType::Integer,
        SEXPTYPE::REALSXP => VectorType::Double,
        SEXPTYPE::CPLXSXP => VectorType::Complex,
        SEXPTYPE::RAWSXP => VectorType::Raw,
        _ => return None,
    })
}

fn sexptype(t: VectorType) -> SEXPTYPE {
    match t {
        VectorType::Logical => SEXPTYPE::LGLSXP,
        VectorType::Integer => SEXPTYPE::INTSXP,
        VectorType::Double => SEXPTYPE::REALSXP,
        VectorType::Complex => SEXPTYPE::CPLXSXP,
        VectorType::Raw => SEXPTYPE::RAWSXP,
    }
}

/// If `x` is a plain atomic vector (no attributes, not ALTREP) of at least
/// `min` bytes: its type, length and data (valid while `x` is protected
/// and unmodified).
pub fn plain_vector<'a>(x: SEXP, min: usize) -> Option<(VectorType, u64, &'a [u8])> {
    // SAFETY: R's thread; `x` is a protected R object. The data pointers
    // are taken only for non-ALTREP vectors of the matching type, whose
    // data is `n * size` contiguous bytes.
    unsafe {
        let t = vector_type(TYPEOF(x))?;
        if ATTRIB(x) != R_NilValue || ALTREP(x) != 0 {
            return None;
        }
        let n = Rf_xlength(x) as usize;
        let bytes = n.checked_mul(t.element_size())?;
        if bytes < min {
            return None;
        }
        let p: *const u8 = match t {
            VectorType::Logical => LOGICAL(x) as *const u8,
            VectorType::Integer => INTEGER(x) as *const u8,
            VectorType::Double => REAL(x) as *const u8,
            VectorType::Complex => COMPLEX(x) as *const u8,
            VectorType::Raw => RAW(x) as *const u8,
        };
        Some((t, n as u64, std::slice::from_raw_parts(p, bytes)))
    }
}

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
    // SAFETY: R's thread; the probe vector is protected while measured and
    // freed by R through `release`.
    unsafe {
        let mut a = RAllocator {
            mem_alloc: probe_alloc,
            mem_free: release,
            res: std::ptr::null_mut(),
            data: std::ptr::null_mut(),
        };
        // large enough that R does not take it from its small-vector pools
        let x = Rf_protect(Rf_allocVector3(SEXPTYPE::REALSXP, 4096, &mut a));
        let offset = (REAL(x) as usize).wrapping_sub(a.data as usize);
        Rf_unprotect(1);
        if offset > 0 && offset < 1024 && offset.is_multiple_of(8) {
            set_vector_header(offset);
        }
    }
}

/// Give R the buffer's block if it asks for exactly its size.
unsafe extern "C" fn hand_over(a: *mut RAllocator, size: usize) -> *mut c_void {
    // SAFETY: `data` is the buffer `into_r_vector` passed.
    let b = &*((*a).data as *const VectorBuffer);
    if size == b.block_size() {
        b.block_ptr() as *mut c_void
    } else {
        std::ptr::null_mut()
    }
}

/// Make a filled buffer the R vector of `t` (R's thread; the result is
/// unprotected). R frees the memory when it collects the vector. `None`
/// if R would not take the block (then it is freed here).
pub fn into_r_vector(buf: VectorBuffer, t: VectorType) -> Option<SEXP> {
    let n = buf.data_len() / t.element_size();
    if !buf.adoptable() {
        return copy_into_r_vector(&buf, t, n);
    }
    let mut a = RAllocator {
        mem_alloc: hand_over,
        mem_free: release,
        res: std::ptr::null_mut(),
        data: &buf as *const VectorBuffer as *mut c_void,
    };
    // R asks for the block through `hand_over`; a refusal makes R raise an
    // allocation error, caught here.
    let x = super::unwind::protect(|| {
        // SAFETY: R's thread; `a` and `buf` outlive the call.
        unsafe { Rf_allocVector3(sexptype(t), n as R_xlen_t, &mut a) }
    })
    .ok()?;
    // SAFETY: `x` is a fresh vector of `n` elements of `t`.
    let p = unsafe { data_ptr(x, t) };
    if !std::ptr::eq(p, buf.data().as_ptr()) {
        // a small vector: R took it from its own pools without asking for
        // the block, so the data is copied in (and the block freed here)
        // SAFETY: `x` holds exactly `buf.data_len()` bytes of data, and
        // nothing allocates before the caller protects it.
        unsafe { std::ptr::copy_nonoverlapping(buf.data().as_ptr(), p, buf.data_len()) };
        return Some(x);
    }
    // R now owns the block
    let _ = buf.into_block();
    Some(x)
}

/// Where the data of `x`, a non-ALTREP vector of `t`, starts.
///
/// # Safety
/// R's thread; `x` is such a vector.
unsafe fn data_ptr(x: SEXP, t: VectorType) -> *mut u8 {
    match t {
        VectorType::Logical => LOGICAL(x) as *mut u8,
        VectorType::Integer => INTEGER(x) as *mut u8,
        VectorType::Double => REAL(x) as *mut u8,
        VectorType::Complex => COMPLEX(x) as *mut u8,
        VectorType::Raw => RAW(x),
    }
}

/// An R vector of type `t` and length `n` holding a copy of `buf`'s data
/// (unprotected); `None` if R cannot allocate it.
fn copy_into_r_vector(buf: &VectorBuffer, t: VectorType, n: usize) -> Option<SEXP> {
    let x = super::unwind::protect(|| {
        // SAFETY: R's thread.
        unsafe { extendr_ffi::Rf_allocVector(sexptype(t), n as R_xlen_t) }
    })
    .ok()?;
    // SAFETY: `x` is a fresh, non-ALTREP vector of `n` elements of `t`,
    // whose data is exactly `buf.data_len()` bytes; nothing allocates
    // before the caller protects it.
    unsafe {
        let p = data_ptr(x, t);
        std::ptr::copy_nonoverlapping(buf.data().as_ptr(), p, buf.data_len());
    }
    Some(x)
}
