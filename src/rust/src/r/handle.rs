//! R external pointers that own a reference-counted Rust value: a compute
//! profile's host, and a daemon's connection. The pointer is the `Arc` itself, so a handle costs
//! no allocation beyond the value.
//!
//! The tag is an R symbol naming the type (symbols are interned, so a
//! handle costs one small R object), checked on every use so a wrong or
//! stale object is an R error rather than a crash.

use extendr_ffi::{
    R_ClearExternalPtr, R_ExternalPtrAddr, R_ExternalPtrTag, R_MakeExternalPtr, R_NilValue,
    R_RegisterCFinalizerEx, Rboolean, Rf_install, SEXP, SEXPTYPE, TYPEOF,
};
use std::ffi::CStr;
use std::sync::Arc;

pub trait Tagged: Sized + 'static {
    const TAG: &'static CStr;
}

unsafe extern "C" fn finalize<T: Tagged>(x: SEXP) {
    // SAFETY: the address is the `Arc` `new_handle` leaked (or null once
    // cleared), reclaimed exactly once.
    let p = R_ExternalPtrAddr(x) as *const T;
    if !p.is_null() {
        R_ClearExternalPtr(x);
        drop(Arc::from_raw(p));
    }
}

/// Another reference to the value behind a handle, checking its type.
pub fn clone_handle<T: Tagged>(x: SEXP) -> Result<Arc<T>, String> {
    let p: *const T = get_handle::<T>(x)?;
    // SAFETY: `p` is the `Arc` `new_handle` leaked, alive while the handle
    // (protected by the caller) holds its count: one more for the caller.
    unsafe {
        Arc::increment_strong_count(p);
        Ok(Arc::from_raw(p))
    }
}

/// Let go of the value behind a handle now, rather than when R collects
/// the handle (which then refers to nothing); a wrong object is left alone.
pub fn release_handle<T: Tagged>(x: SEXP) {
    if get_handle::<T>(x).is_ok() {
        // SAFETY: R's thread; the tag was checked, and `finalize` clears
        // the pointer, so the value is given back exactly once.
        unsafe { finalize::<T>(x) }
    }
}

/// Move `val` into a new external pointer (unprotected on return).
pub fn new_handle<T: Tagged>(val: Arc<T>) -> SEXP {
    // SAFETY: R's thread; the pointer owns one strong count, given back by
    // the finalizer.
    unsafe {
        let p = Arc::into_raw(val);
        let x = R_MakeExternalPtr(p as *mut _, Rf_install(T::TAG.as_ptr()), R_NilValue);
        R_RegisterCFinalizerEx(x, Some(finalize::<T>), Rboolean::TRUE);
        x
    }
}

/// Borrow the value behind a handle, checking its type.
pub fn get_handle<'a, T: Tagged>(x: SEXP) -> Result<&'a T, String> {
    // SAFETY: R's thread; the tag is checked before the address is used,
    // and the value lives while the (protected) handle does.
    unsafe {
        if TYPEOF(x) != SEXPTYPE::EXTPTRSXP || R_ExternalPtrTag(x) != Rf_install(T::TAG.as_ptr()) {
            return Err(format!("expected a {} object", T::TAG.to_string_lossy()));
        }
        let p = R_ExternalPtrAddr(x) as *const T;
        p.as_ref()
            .ok_or_else(|| format!("the {} object is no longer valid", T::TAG.to_string_lossy()))
    }
}
