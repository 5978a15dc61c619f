//! Running R code that may fail, from Rust, without R's error or interrupt
//! ever unwinding through Rust frames.
//!
//! [`protect`] evaluates a body under `R_tryCatch` for the condition
//! classes "error" and "interrupt": a failure unwinds to R's handler
//! frame inside `R_tryCatch`, which returns normally to us, with the
//! condition. Nothing is printed, `options(error = )` does not run, and
//! the caller gets the message to turn into a clean R error or a
//! miraiError.
//!
//! The body is skipped over by that unwinding, so it must own nothing that
//! needs dropping: bodies here call R on data they borrow.

use super::api::{R_CheckUserInterrupt, R_tryCatch, Rf_inherits};
use extendr_ffi::{
    R_NilValue, R_PreserveObject, Rboolean, Rf_allocVector, Rf_mkCharLenCE, Rf_protect,
    Rf_unprotect, SET_STRING_ELT, SEXP, SEXPTYPE, STRING_ELT, TYPEOF, VECTOR_ELT,
};
use std::cell::Cell;
use std::os::raw::c_void;

/// How R code run by [`protect`] failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RFailure {
    /// An R error, with its message.
    Error(String),
    /// A warning, with its message (only from [`protect_strict`]).
    Warning(String),
    /// A user interrupt (Ctrl-C).
    Interrupt,
    /// A Rust panic in the body.
    Panic,
}

impl std::fmt::Display for RFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RFailure::Error(m) | RFailure::Warning(m) => f.write_str(m),
            RFailure::Interrupt => f.write_str("interrupted"),
            RFailure::Panic => f.write_str("internal error (a panic in mirai's core)"),
        }
    }
}

thread_local! {
    /// c("error", "interrupt"), and with "warning", made once (R's thread
    /// only).
    static CONDS: Cell<SEXP> = const { Cell::new(std::ptr::null_mut()) };
    static CONDS_STRICT: Cell<SEXP> = const { Cell::new(std::ptr::null_mut()) };
}

fn conditions(strict: bool) -> SEXP {
    let classes: &[&str] = match strict {
        false => &["error", "interrupt"],
        true => &["error", "interrupt", "warning"],
    };
    let cell = if strict { &CONDS_STRICT } else { &CONDS };
    cell.with(|c| {
        if c.get().is_null() {
            // SAFETY: R's thread; the vector is preserved for the session
            // before anything else can allocate.
            unsafe {
                let v = Rf_protect(Rf_allocVector(SEXPTYPE::STRSXP, classes.len() as isize));
                for (i, class) in classes.iter().enumerate() {
                    let s = Rf_mkCharLenCE(
                        class.as_ptr() as *const _,
                        class.len() as i32,
                        extendr_ffi::cetype_t::CE_UTF8,
                    );
                    SET_STRING_ELT(v, i as isize, s);
                }
                R_PreserveObject(v);
                Rf_unprotect(1);
                c.set(v);
            }
        }
        c.get()
    })
}

struct Call<F> {
    body: Option<F>,
    failure: Option<RFailure>,
}

unsafe extern "C" fn run_body<F: FnOnce() -> SEXP>(data: *mut c_void) -> SEXP {
    // SAFETY: `data` is the `Call<F>` of `protect`, alive for this call.
    let call = &mut *(data as *mut Call<F>);
    let body = call.body.take().expect("body runs once");
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(x) => x,
        Err(_) => {
            call.failure = Some(RFailure::Panic);
            R_NilValue
        }
    }
}

unsafe extern "C" fn on_condition<F>(cond: SEXP, data: *mut c_void) -> SEXP {
    // SAFETY: as in `run_body`; `cond` is the condition R caught.
    let call = &mut *(data as *mut Call<F>);
    let is = |class: &std::ffi::CStr| Rf_inherits(cond, class.as_ptr()) != Rboolean::FALSE;
    call.failure = Some(if is(c"interrupt") {
        RFailure::Interrupt
    } else if is(c"warning") {
        RFailure::Warning(condition_message(cond))
    } else {
        RFailure::Error(condition_message(cond))
    });
    R_NilValue
}

/// The message of a condition (its first element, for the conditions R
/// and `stop()` make).
///
/// # Safety
/// R's thread; `cond` a protected R object.
pub unsafe fn condition_message(cond: SEXP) -> String {
    if TYPEOF(cond) != SEXPTYPE::VECSXP || extendr_ffi::Rf_xlength(cond) < 1 {
        return "unknown error".into();
    }
    let msg = VECTOR_ELT(cond, 0);
    if TYPEOF(msg) != SEXPTYPE::STRSXP || extendr_ffi::Rf_xlength(msg) < 1 {
        return "unknown error".into();
    }
    let c = extendr_ffi::R_CHAR(STRING_ELT(msg, 0));
    std::ffi::CStr::from_ptr(c)
        .to_string_lossy()
        .trim_end()
        .to_string()
}

/// Run `body` (which calls R) so that an R error or interrupt inside it
/// comes back as an `Err`. The result is unprotected. R's thread only.
pub fn protect<F: FnOnce() -> SEXP>(body: F) -> Result<SEXP, RFailure> {
    run(body, false)
}

/// As [`protect`], but a warning also stops `body` and comes back.
pub fn protect_strict<F: FnOnce() -> SEXP>(body: F) -> Result<SEXP, RFailure> {
    run(body, true)
}

fn run<F: FnOnce() -> SEXP>(body: F, strict: bool) -> Result<SEXP, RFailure> {
    let mut call = Call {
        body: Some(body),
        failure: None,
    };
    let data = &mut call as *mut Call<F> as *mut c_void;
    // SAFETY: R's thread; the callbacks get `data`, which outlives the
    // call; `conditions()` is preserved.
    let out = unsafe {
        R_tryCatch(
            Some(run_body::<F>),
            data,
            conditions(strict),
            Some(on_condition::<F>),
            data,
            None,
            std::ptr::null_mut(),
        )
    };
    match call.failure {
        Some(f) => Err(f),
        None => Ok(out),
    }
}

/// Whether the user has pressed Ctrl-C (or SIGINT arrived) since the last
/// check. Consumes the interrupt without unwinding through Rust; the R
/// side then raises it as an R interrupt condition.
pub fn user_interrupted() -> bool {
    protect(|| {
        // SAFETY: R's thread, under protect.
        unsafe { R_CheckUserInterrupt() };
        // SAFETY: R_NilValue is a constant of R's.
        unsafe { R_NilValue }
    })
    .is_err()
}
