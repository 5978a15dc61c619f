//! Parts of R's C API that extendr-ffi does not declare. All of these live
//! in libR and may only be called on R's main thread.
//!
//! All are part of R's API as of R 4.2 (the oldest R this package
//! supports), except `ATTRIB`: R offers no API to ask whether an object has
//! any attributes before `ANY_ATTRIB` in R 4.5.

#![allow(non_snake_case, improper_ctypes)]

use extendr_ffi::{R_inpstream_t, R_outpstream_t, R_pstream_format_t, R_xlen_t, SEXP, SEXPTYPE};
use std::os::raw::{c_char, c_int, c_void};

/// A custom allocator for `Rf_allocVector3` (R_ext/Memory.h).
#[repr(C)]
pub struct RAllocator {
    pub mem_alloc: unsafe extern "C" fn(*mut RAllocator, usize) -> *mut c_void,
    pub mem_free: unsafe extern "C" fn(*mut RAllocator, *mut c_void),
    pub res: *mut c_void,
    pub data: *mut c_void,
}

extern "C" {
    pub fn R_InitOutPStream(
        stream: R_outpstream_t,
        data: *mut c_void,
        type_: R_pstream_format_t,
        version: c_int,
        out_char: Option<unsafe extern "C" fn(R_outpstream_t, c_int)>,
        out_bytes: Option<unsafe extern "C" fn(R_outpstream_t, *mut c_void, c_int)>,
        phook: Option<unsafe extern "C" fn(SEXP, SEXP) -> SEXP>,
        pdata: SEXP,
    );
    pub fn R_InitInPStream(
        stream: R_inpstream_t,
        data: *mut c_void,
        type_: R_pstream_format_t,
        in_char: Option<unsafe extern "C" fn(R_inpstream_t) -> c_int>,
        in_bytes: Option<unsafe extern "C" fn(R_inpstream_t, *mut c_void, c_int)>,
        phook: Option<unsafe extern "C" fn(SEXP, SEXP) -> SEXP>,
        pdata: SEXP,
    );
    /// Evaluate `body`; a condition of one of the classes in `conds`
    /// signalled meanwhile unwinds to here and goes to `handler`.
    pub fn R_tryCatch(
        body: Option<unsafe extern "C" fn(*mut c_void) -> SEXP>,
        bdata: *mut c_void,
        conds: SEXP,
        handler: Option<unsafe extern "C" fn(SEXP, *mut c_void) -> SEXP>,
        hdata: *mut c_void,
        finally: Option<unsafe extern "C" fn(*mut c_void)>,
        fdata: *mut c_void,
    ) -> SEXP;
    pub fn R_CheckUserInterrupt();
    /// A C function another package registered with `R_RegisterCCallable`
    /// (raises an R error if there is none).
    pub fn R_GetCCallable(package: *const c_char, name: *const c_char) -> extendr_ffi::DL_FUNC;
    pub fn R_MakeActiveBinding(sym: SEXP, fun: SEXP, env: SEXP);
    pub fn R_removeVarFromFrame(sym: SEXP, env: SEXP);
    pub fn Rf_findVarInFrame(env: SEXP, sym: SEXP) -> SEXP;
    pub fn Rf_shallow_duplicate(x: SEXP) -> SEXP;
    pub fn Rf_mkString(s: *const c_char) -> SEXP;
    pub fn Rf_mkChar(s: *const c_char) -> SEXP;
    pub fn Rf_allocVector3(t: SEXPTYPE, n: R_xlen_t, allocator: *mut RAllocator) -> SEXP;
    pub fn ALTREP(x: SEXP) -> c_int;
    pub fn R_gc();
    pub fn R_MakeWeakRefC(
        key: SEXP,
        val: SEXP,
        fin: Option<unsafe extern "C" fn(SEXP)>,
        onexit: extendr_ffi::Rboolean,
    ) -> SEXP;
    pub fn R_WeakRefKey(w: SEXP) -> SEXP;
    pub fn Rf_eval(expr: SEXP, env: SEXP) -> SEXP;
    pub fn Rf_inherits(x: SEXP, class: *const c_char) -> extendr_ffi::Rboolean;
    pub fn Rf_lang2(f: SEXP, x: SEXP) -> SEXP;
    pub fn Rf_ScalarLogical(x: c_int) -> SEXP;
    /// Non-API: whether an object has attributes (see the module docs).
    pub fn ATTRIB(x: SEXP) -> SEXP;
}
