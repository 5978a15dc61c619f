//! Parts of R's C API that extendr-ffi does not declare. All of these live
//! in libR and may only be called on R's main thread.

#![allow(non_snake_case, improper_ctypes)]

use extendr_ffi::{R_inpstream_t, R_outpstream_t, R_pstream_format_t, Rboolean, SEXP};
use std::os::raw::{c_char, c_int, c_void};

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
    pub fn R_MakeActiveBinding(sym: SEXP, fun: SEXP, env: SEXP);
    pub fn Rf_shallow_duplicate(x: SEXP) -> SEXP;
    pub fn SET_CLOENV(x: SEXP, v: SEXP);
    pub fn Rf_mkString(s: *const c_char) -> SEXP;
    pub fn Rf_findVar(sym: SEXP, env: SEXP) -> SEXP;
    pub fn R_removeVarFromFrame(sym: SEXP, env: SEXP);
    pub fn Rf_findVarInFrame(env: SEXP, sym: SEXP) -> SEXP;
    pub fn ENCLOS(env: SEXP) -> SEXP;
    /// The message of the last R error.
    pub fn R_curErrorBuf() -> *const c_char;
    pub fn R_ToplevelExec(
        fun: Option<unsafe extern "C" fn(*mut c_void)>,
        data: *mut c_void,
    ) -> Rboolean;
    pub fn R_CheckUserInterrupt();
    pub fn R_gc();
    pub fn Rf_error(fmt: *const c_char, ...) -> !;
    /// Set by R's SIGINT handler; acted on at R's next interrupt check.
    pub static mut R_interrupts_pending: c_int;
}

unsafe extern "C" fn check_interrupt(_: *mut c_void) {
    R_CheckUserInterrupt();
}

/// Run `f` so that an R error (or interrupt) inside it stops at this
/// point instead of unwinding through the caller's Rust frames; returns
/// the error message on failure. This costs a C-level context, unlike a
/// tryCatch(). `f` must not own anything that needs dropping: the error
/// unwinds straight out of it.
pub fn r_protect(f: &mut dyn FnMut()) -> Result<(), String> {
    unsafe extern "C" fn call(data: *mut c_void) {
        let f = &mut *(data as *mut &mut dyn FnMut());
        f();
    }
    let mut f = f;
    let ok = unsafe { R_ToplevelExec(Some(call), &mut f as *mut &mut dyn FnMut() as *mut c_void) };
    if ok == Rboolean::FALSE {
        let msg = unsafe { std::ffi::CStr::from_ptr(R_curErrorBuf()) };
        Err(msg.to_string_lossy().trim_end().to_string())
    } else {
        Ok(())
    }
}

/// Whether the user has pressed Ctrl-C (or SIGINT arrived). Consumes the
/// interrupt without unwinding through the caller's Rust frames; the R
/// wrapper then re-raises it as an R interrupt condition.
pub fn user_interrupted() -> bool {
    unsafe { R_ToplevelExec(Some(check_interrupt), std::ptr::null_mut()) == Rboolean::FALSE }
}
