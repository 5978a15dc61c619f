//! Settling a mirai's promise the moment its result arrives, through the
//! later package's event loop.
//!
//! R's side (R/promises.R) hands us a *settler*: an R function of no
//! arguments that reads the mirai's value and resolves the promise. We
//! keep it alive in a table on R's thread under a numeric token, and give
//! the mirai's aio a completion hook that carries only that token. When
//! the result comes in, the completing I/O thread calls later's
//! `execLaterNative2` (which may be called from any thread) to schedule
//! [`settle`] onto later's global loop with no delay; when that loop next
//! runs on R's main thread, [`settle`] takes the settler out of the table
//! and calls it. While the mirai is pending nothing is queued anywhere,
//! so there is no polling.
//!
//! The settler closes over the mirai and the promise's resolver, so the
//! table keeps both (and the promise chain hanging off them) alive until
//! settlement, even if the user has dropped every reference.

use super::api::R_GetCCallable;
use super::mirai::aio_of;
use super::r_error;
use super::unwind::protect;
use extendr_api::prelude::*;
use extendr_ffi::{
    R_GlobalEnv, R_NilValue, R_PreserveObject, R_ReleaseObject, Rf_allocVector, Rf_lang1,
    Rf_protect, Rf_unprotect, Rf_xlength, DL_FUNC, SET_VECTOR_ELT, SEXP, SEXPTYPE, VECTOR_ELT,
};
use std::cell::RefCell;
use std::os::raw::{c_int, c_void};
use std::sync::OnceLock;

/// later's `execLaterNative2(func, data, delaySecs, loop_id)`.
type ExecLater =
    unsafe extern "C" fn(Option<unsafe extern "C" fn(*mut c_void)>, *mut c_void, f64, c_int);

/// later's global loop (the one the console, `run_now()` and Shiny run).
const GLOBAL_LOOP: c_int = 0;

/// Looked up once, on R's main thread (R_GetCCallable is not thread-safe);
/// a plain function pointer from then on, usable from any thread.
static EXEC_LATER: OnceLock<ExecLater> = OnceLock::new();

fn exec_later() -> Result<ExecLater> {
    if let Some(f) = EXEC_LATER.get() {
        return Ok(*f);
    }
    // R_GetCCallable raises an R error if later is not loaded: run it
    // under protection (R/promises.R loads later's namespace first)
    let mut found: DL_FUNC = None;
    let looked = protect(|| {
        // SAFETY: R's thread, under protect; both names are C strings.
        found = unsafe { R_GetCCallable(c"later".as_ptr(), c"execLaterNative2".as_ptr()) };
        // SAFETY: R_NilValue is a constant of R's.
        unsafe { R_NilValue }
    });
    match (looked, found) {
        (Ok(_), Some(f)) => {
            // SAFETY: later registers execLaterNative2 with exactly this
            // signature (later_api.h, API version 2 onwards).
            let f = unsafe {
                std::mem::transmute::<unsafe extern "C" fn() -> *mut c_void, ExecLater>(f)
            };
            Ok(*EXEC_LATER.get_or_init(|| f))
        }
        (Ok(_), None) => Err(r_error(
            "the later package does not provide execLaterNative2",
        )),
        (Err(e), _) => Err(r_error(format!("cannot use the later package: {e}"))),
    }
}

/// Queue [`settle`] for `token` on later's global loop, now.
fn schedule(exec: ExecLater, token: usize) {
    // SAFETY: execLaterNative2 is thread-safe and copies its arguments;
    // the token is a plain integer smuggled through the data pointer.
    unsafe { exec(Some(settle), token as *mut c_void, 0.0, GLOBAL_LOOP) }
}

/// The settlers waiting for their mirai, by token (an index into `list`).
struct Settlers {
    /// A preserved R list holding each waiting settler at its token.
    list: SEXP,
    free: Vec<usize>,
    waiting: usize,
}

thread_local! {
    static SETTLERS: RefCell<Option<Settlers>> = const { RefCell::new(None) };
}

const INITIAL_SETTLERS: usize = 64;

/// Where the next settler goes.
enum Room {
    Free(usize),
    /// The table is full: this is its list.
    Full(SEXP),
    /// No table yet.
    None,
}

/// Keep `settler` (protected by the caller) until its token comes back.
/// R allocates only while the table is not borrowed.
fn store(settler: SEXP) -> usize {
    let room = SETTLERS.with(|s| match s.borrow_mut().as_mut() {
        None => Room::None,
        Some(s) => s.free.pop().map_or(Room::Full(s.list), Room::Free),
    });
    let token = match room {
        Room::Free(token) => token,
        Room::Full(old) => grow(Some(old)),
        Room::None => grow(None),
    };
    SETTLERS.with(|s| {
        let mut s = s.borrow_mut();
        let s = s.as_mut().expect("made by grow");
        // SAFETY: R's thread; the list is preserved and `token` in range.
        unsafe { SET_VECTOR_ELT(s.list, token as isize, settler) };
        s.waiting += 1;
    });
    token
}

/// Replace the table's list (`old`, if any) by one twice the size, the
/// old settlers copied; returns the first new free token.
fn grow(old: Option<SEXP>) -> usize {
    // SAFETY: R's thread; the new list is preserved before use, and the
    // old one (preserved) is released only once copied.
    unsafe {
        let n = old.map_or(0, |o| Rf_xlength(o) as usize);
        let size = (2 * n).max(INITIAL_SETTLERS);
        let new = Rf_allocVector(SEXPTYPE::VECSXP, size as isize);
        R_PreserveObject(new);
        if let Some(old) = old {
            for i in 0..n {
                SET_VECTOR_ELT(new, i as isize, VECTOR_ELT(old, i as isize));
            }
            R_ReleaseObject(old);
        }
        SETTLERS.with(|s| {
            let mut s = s.borrow_mut();
            let waiting = s.as_ref().map_or(0, |s| s.waiting);
            *s = Some(Settlers {
                list: new,
                free: (n + 1..size).rev().collect(),
                waiting,
            });
        });
        n
    }
}

/// Take the settler stored under `token` out of the table (NULL if none).
fn take(token: usize) -> SEXP {
    SETTLERS.with(|s| {
        let mut s = s.borrow_mut();
        let Some(s) = s.as_mut() else {
            // SAFETY: R_NilValue is a constant of R's.
            return unsafe { R_NilValue };
        };
        // SAFETY: R's thread; reads and clears an element of the
        // preserved list (bounds checked first).
        unsafe {
            if token >= Rf_xlength(s.list) as usize {
                return R_NilValue;
            }
            let settler = VECTOR_ELT(s.list, token as isize);
            if settler == R_NilValue {
                return R_NilValue;
            }
            SET_VECTOR_ELT(s.list, token as isize, R_NilValue);
            s.free.push(token);
            s.waiting -= 1;
            settler
        }
    })
}

/// Run by later on R's main thread: call the settler for the token in
/// `data`. An R error or interrupt in it is caught here (the promise
/// machinery delivers errors in user handlers to the promise chain
/// itself), and nothing unwinds into later's frames.
unsafe extern "C" fn settle(data: *mut c_void) {
    let token = data as usize;
    let _ = std::panic::catch_unwind(|| {
        let settler = take(token);
        // SAFETY: R's main thread (later runs its loop there); the settler
        // is protected while it runs, having left the preserved table.
        unsafe {
            if settler == R_NilValue {
                return;
            }
            Rf_protect(settler);
            let call = Rf_protect(Rf_lang1(settler));
            // a failure here has nowhere to go: the settler only reads a
            // value and hands it to the promise, which does not raise
            let _ = protect(|| super::api::Rf_eval(call, R_GlobalEnv));
            Rf_unprotect(2);
        }
    });
}

/// Call `settler` (an R function of no arguments) on later's global loop
/// once mirai `m` has resolved: straight away if it already has, otherwise
/// from its completion. later's namespace must be loaded.
#[extendr]
fn mirai_on_resolve(m: Robj, settler: Robj) -> Result<()> {
    let exec = exec_later()?;
    // SAFETY: both are protected by extendr for this call.
    let (m, settler) = unsafe { (m.get(), settler.get()) };
    let token = store(settler);
    let pending = aio_of(m).map(|aio| aio.on_complete(Box::new(move || schedule(exec, token))));
    match pending {
        Some(Ok(())) => {}
        // resolved already (collected, synchronous, or just completed)
        _ => schedule(exec, token),
    }
    Ok(())
}

/// How many settlers are waiting for their mirai (for tests: each
/// promise has one until it settles).
#[extendr]
fn promise_settlers_waiting() -> i32 {
    SETTLERS.with(|s| s.borrow().as_ref().map_or(0, |s| s.waiting) as i32)
}

extendr_module! {
    mod promises;
    fn mirai_on_resolve;
    fn promise_settlers_waiting;
}
