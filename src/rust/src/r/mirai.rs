//! The R object behind a mirai, and how it resolves.
//!
//! A mirai is an environment of class `c("mirai", "recvAio")` with an
//! integer "id" attribute and an active binding `data`. Its aio lives in a
//! table on this side, keyed by that id, so the R object holds no pointer
//! and needs no finalizer (an R weak reference would cost more than the
//! rest of the object: this is what keeps a queued task under a kilobyte).
//!
//! While unresolved, the environment is also kept in a list of pending
//! mirai. Once its aio completes, R's thread *collects* it at the next call
//! into the package: the value is unserialized, `data` becomes a plain
//! binding to it, `value` is bound too, and the aio is dropped. A mirai the
//! user let go of thus still releases its result as soon as it completes.
//!
//! An ephemeral mirai (no daemons set) is listed through a weak reference
//! instead: when R collects it unresolved, its finalizer closes the
//! ephemeral host, and the process running the task exits.
//!
//! The registry is only ever borrowed for moments that call no R function
//! that can fail: every R allocation happens with it released, so an R
//! error cannot leave it borrowed.

use super::api::{
    R_MakeActiveBinding, R_MakeWeakRefC, R_WeakRefKey, R_removeVarFromFrame, Rf_ScalarLogical,
    Rf_eval, Rf_lang2, Rf_mkChar, Rf_mkString,
};
use super::unwind::{protect, RFailure};
use crate::aio::{self, Aio, Outcome};
use crate::codes;
use extendr_ffi::{
    R_EmptyEnv, R_GlobalEnv, R_NewEnv, R_NilValue, R_PreserveObject, R_ReleaseObject,
    Rf_ScalarInteger, Rf_allocVector, Rf_defineVar, Rf_getAttrib, Rf_install, Rf_protect,
    Rf_setAttrib, Rf_unprotect, Rf_xlength, INTEGER, SET_VECTOR_ELT, SEXP, SEXPTYPE, TYPEOF,
    VECTOR_ELT,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// R objects made once at start-up (all preserved).
#[derive(Clone, Copy)]
struct Templates {
    /// `function() <body>`, evaluated in each new mirai to make its `data`
    /// binding's function.
    binding: SEXP,
    /// c("mirai", "recvAio")
    class: SEXP,
    /// c("errorValue", "try-error")
    error_class: SEXP,
    /// The one unresolved value: NA with class "unresolvedValue".
    unresolved: SEXP,
    /// An R function making a miraiError from a message.
    make_error: SEXP,
}

/// R-thread state: the pending mirai and their aios.
struct Registry {
    templates: Templates,
    /// A preserved list whose non-NULL elements are the pending mirai.
    pending: SEXP,
    free: Vec<u32>,
    /// The aio of every mirai not yet collected, by mirai id.
    aios: HashMap<i32, Arc<Aio>>,
}

thread_local! {
    static REGISTRY: RefCell<Option<Registry>> = const { RefCell::new(None) };
}

fn sym(name: &std::ffi::CStr) -> SEXP {
    // SAFETY: R's thread; symbols are never collected.
    unsafe { Rf_install(name.as_ptr()) }
}

fn templates() -> Option<Templates> {
    REGISTRY.with(|r| r.borrow().as_ref().map(|reg| reg.templates))
}

const INITIAL_SLOTS: u32 = 1024;

/// A preserved character vector.
unsafe fn strings(values: &[&std::ffi::CStr]) -> SEXP {
    let v = Rf_protect(Rf_allocVector(SEXPTYPE::STRSXP, values.len() as isize));
    for (i, s) in values.iter().enumerate() {
        extendr_ffi::SET_STRING_ELT(v, i as isize, Rf_mkChar(s.as_ptr()));
    }
    R_PreserveObject(v);
    Rf_unprotect(1);
    v
}

/// Set up (from .onLoad): `binding` is the expression `function() ...`
/// whose value, made in each mirai, is its `data` binding; `make_error`
/// makes a miraiError from a message.
pub fn init(binding: SEXP, make_error: SEXP) {
    // SAFETY: R's thread, at load; every object made is preserved for the
    // session.
    unsafe {
        R_PreserveObject(binding);
        R_PreserveObject(make_error);
        // NA_LOGICAL is INT_MIN
        let unresolved = Rf_protect(Rf_ScalarLogical(i32::MIN));
        Rf_setAttrib(
            unresolved,
            sym(c"class"),
            Rf_mkString(c"unresolvedValue".as_ptr()),
        );
        R_PreserveObject(unresolved);
        Rf_unprotect(1);
        let templates = Templates {
            binding,
            class: strings(&[c"mirai", c"recvAio"]),
            error_class: strings(&[c"errorValue", c"try-error"]),
            unresolved,
            make_error,
        };
        let pending = Rf_allocVector(SEXPTYPE::VECSXP, INITIAL_SLOTS as isize);
        R_PreserveObject(pending);
        REGISTRY.with(|r| {
            *r.borrow_mut() = Some(Registry {
                templates,
                pending,
                free: (0..INITIAL_SLOTS).rev().collect(),
                aios: HashMap::new(),
            })
        });
    }
}

/// A free slot in the pending list, growing it (with the registry
/// released while R allocates) when full.
fn free_slot() -> u32 {
    let full = REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let reg = r.as_mut().expect("initialised");
        match reg.free.pop() {
            Some(s) => Err(s),
            None => Ok(reg.pending),
        }
    });
    let old = match full {
        Err(slot) => return slot,
        Ok(old) => old,
    };
    // SAFETY: R's thread; the new list is preserved before it is used.
    unsafe {
        let n = Rf_xlength(old);
        let new = Rf_allocVector(SEXPTYPE::VECSXP, 2 * n);
        R_PreserveObject(new);
        for i in 0..n {
            SET_VECTOR_ELT(new, i, VECTOR_ELT(old, i));
        }
        R_ReleaseObject(old);
        REGISTRY.with(|r| {
            let mut r = r.borrow_mut();
            let reg = r.as_mut().expect("initialised");
            reg.pending = new;
            reg.free.extend((n as u32 + 1..2 * n as u32).rev());
        });
        n as u32
    }
}

/// A new environment of class mirai with id `id` (protected once: the
/// caller unprotects).
unsafe fn mirai_env(t: &Templates, id: i32) -> SEXP {
    let env = Rf_protect(R_NewEnv(R_EmptyEnv, 0, 0));
    Rf_setAttrib(env, sym(c"id"), Rf_ScalarInteger(id));
    Rf_setAttrib(env, sym(c"class"), t.class);
    env
}

/// A new, unresolved mirai around `aio` (returned unprotected); `weak`
/// for an ephemeral one (see the module docs).
pub fn new_mirai(aio: Arc<Aio>, weak: bool) -> Result<SEXP, String> {
    let t = templates().ok_or("mirai is not initialised (package not loaded?)")?;
    let id = aio.id as i32;
    // SAFETY: R's thread; objects are protected until placed in the
    // preserved pending list; the registry is not borrowed while R runs.
    unsafe {
        let env = mirai_env(&t, id);
        let f = Rf_protect(Rf_eval(t.binding, env));
        R_MakeActiveBinding(sym(c"data"), f, env);
        let listed = match weak {
            true => R_MakeWeakRefC(
                env,
                Rf_ScalarInteger(id),
                Some(forgotten),
                extendr_ffi::Rboolean::FALSE,
            ),
            false => env,
        };
        Rf_protect(listed);
        let slot = free_slot();
        REGISTRY.with(|r| {
            let mut r = r.borrow_mut();
            let reg = r.as_mut().expect("initialised");
            SET_VECTOR_ELT(reg.pending, slot as isize, listed);
            reg.aios.insert(id, aio.clone());
        });
        aio.set_slot(slot);
        Rf_unprotect(3);
        Ok(env)
    }
}

/// The finalizer of an ephemeral mirai collected by R while pending (R
/// passes the mirai itself): its task is cancelled, which closes its host
/// (so its process exits).
unsafe extern "C" fn forgotten(mirai: SEXP) {
    let Some(id) = id_of(mirai) else {
        return;
    };
    let aio = REGISTRY.with(|r| r.borrow_mut().as_mut()?.aios.remove(&id));
    if let Some(aio) = aio {
        aio.cancel(codes::CANCELED);
    }
}

/// The mirai a pending-list entry stands for: itself, or the key of an
/// ephemeral mirai's weak reference (NULL once R has collected it).
unsafe fn listed_mirai(entry: SEXP) -> SEXP {
    if TYPEOF(entry) == SEXPTYPE::WEAKREFSXP {
        R_WeakRefKey(entry)
    } else {
        entry
    }
}

/// A mirai already resolved to `value` (synchronous profiles): plain
/// `data` and `value` bindings (returned unprotected).
pub fn resolved_mirai(value: SEXP) -> Result<SEXP, String> {
    let t = templates().ok_or("mirai is not initialised (package not loaded?)")?;
    // SAFETY: R's thread; `value` is protected by the caller.
    unsafe {
        let env = mirai_env(&t, aio::next_id() as i32);
        Rf_defineVar(sym(c"data"), value, env);
        Rf_defineVar(sym(c"value"), value, env);
        Rf_unprotect(1);
        Ok(env)
    }
}

/// The id of a mirai (or of anything with an integer "id" attribute).
unsafe fn id_of(m: SEXP) -> Option<i32> {
    if TYPEOF(m) != SEXPTYPE::ENVSXP {
        return None;
    }
    let id = Rf_getAttrib(m, sym(c"id"));
    (TYPEOF(id) == SEXPTYPE::INTSXP && Rf_xlength(id) == 1).then(|| *INTEGER(id))
}

/// The aio of a mirai not yet collected (`None` once it has resolved and
/// been collected, for a synchronous mirai, or for anything else).
pub fn aio_of(m: SEXP) -> Option<Arc<Aio>> {
    // SAFETY: R's thread; reads an attribute of a protected object.
    let id = unsafe { id_of(m) }?;
    REGISTRY.with(|r| r.borrow().as_ref()?.aios.get(&id).cloned())
}

/// The shared unresolved value.
pub fn unresolved_value() -> SEXP {
    // SAFETY: R_NilValue is a constant of R's.
    templates().map_or(unsafe { R_NilValue }, |t| t.unresolved)
}

/// Collect every mirai whose aio has completed (see the module docs).
pub fn collect() {
    super::outframes::release_pending();
    for slot in aio::take_completed() {
        collect_one(slot);
    }
}

fn collect_one(slot: u32) {
    // look up (briefly borrowed), convert (R runs), then record
    let found = REGISTRY.with(|r| {
        let r = r.borrow();
        let reg = r.as_ref()?;
        // SAFETY: R's thread; reads an element of the preserved list.
        let entry = unsafe { VECTOR_ELT(reg.pending, slot as isize) };
        // SAFETY: as above.
        let env = unsafe { listed_mirai(entry) };
        // SAFETY: as above.
        let id = unsafe { id_of(env) };
        Some((entry, env, id, reg.templates))
    });
    let Some((entry, env, id, t)) = found else {
        return;
    };
    let Some(id) = id else {
        // SAFETY: R's thread; reads the type of a preserved object.
        if unsafe { TYPEOF(entry) } == SEXPTYPE::WEAKREFSXP {
            release_slot(slot, None); // an ephemeral mirai R has collected
        }
        return; // otherwise already collected (queued twice)
    };
    let Some(aio) = REGISTRY.with(|r| r.borrow().as_ref()?.aios.get(&id).cloned()) else {
        return;
    };
    let outcome = aio.take();
    if matches!(outcome, Outcome::Pending | Outcome::Taken) {
        return; // a newer mirai in a reused slot
    }
    // SAFETY: R's thread; `env` and `value` are protected while R runs
    // (and the configuration by `env` until it is removed).
    unsafe {
        Rf_protect(env);
        let serial = Rf_getAttrib(env, sym(SERIAL_ATTR));
        let value = Rf_protect(to_r(outcome, &t, serial));
        if serial != R_NilValue {
            Rf_setAttrib(env, sym(SERIAL_ATTR), R_NilValue);
        }
        R_removeVarFromFrame(sym(c"data"), env);
        Rf_defineVar(sym(c"data"), value, env);
        Rf_defineVar(sym(c"value"), value, env);
        release_slot(slot, Some(id));
        Rf_unprotect(2);
    }
}

/// Forget a collected mirai: its aio, and its place in the pending list.
fn release_slot(slot: u32, id: Option<i32>) {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let reg = r.as_mut().expect("initialised");
        if let Some(id) = id {
            reg.aios.remove(&id);
        }
        // SAFETY: R's thread; clears an element of the preserved list.
        unsafe { SET_VECTOR_ELT(reg.pending, slot as isize, R_NilValue) };
        reg.free.push(slot);
    });
}

/// A mirai of a profile with a serialization configuration carries it
/// here until its value is read (see `refhooks`).
const SERIAL_ATTR: &std::ffi::CStr = c"serial";

/// Give `mirai` (protected) the serialization configuration `config` of
/// its profile, for reading its value with.
///
/// # Safety
/// R's thread; both protected.
pub unsafe fn set_serial(mirai: SEXP, config: SEXP) {
    Rf_setAttrib(mirai, sym(SERIAL_ATTR), config);
}

/// The R value of a completed outcome (unprotected); `serial` the
/// mirai's serialization configuration (or NULL).
unsafe fn to_r(outcome: Outcome, t: &Templates, serial: SEXP) -> SEXP {
    match outcome {
        Outcome::Error(code) => error_value(code, t),
        Outcome::Unallocated(bytes) => mirai_error(
            &format!("the result ({bytes} bytes) could not be allocated on the host"),
            t,
        ),
        Outcome::Vector(buf, vtype) => {
            let n = buf.data_len() / vtype.element_size();
            super::vectors::into_r_vector(buf, vtype).unwrap_or_else(|| {
                mirai_error(
                    &format!("the result (a vector of {n} elements) could not be allocated"),
                    t,
                )
            })
        }
        Outcome::Value(bytes, _) => match super::serial::unserialize_with(
            &bytes,
            super::refhooks::Hooks::from_config(serial),
        ) {
            Ok(v) => v,
            Err(RFailure::Interrupt) => {
                mirai_error("interrupted while unserializing the result", t)
            }
            Err(e) => mirai_error(&format!("the result could not be unserialized: {e}"), t),
        },
        Outcome::Pending | Outcome::Taken => R_NilValue,
    }
}

/// An integer errorValue (unprotected).
unsafe fn error_value(code: i32, t: &Templates) -> SEXP {
    let v = Rf_protect(Rf_ScalarInteger(code));
    Rf_setAttrib(v, sym(c"class"), t.error_class);
    Rf_unprotect(1);
    v
}

/// A miraiError saying `message`, made by the R side (unprotected); an
/// errorValue if even that fails.
unsafe fn mirai_error(message: &str, t: &Templates) -> SEXP {
    let text = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
    let made = protect(|| {
        let call = Rf_protect(Rf_lang2(t.make_error, Rf_mkString(text.as_ptr())));
        let v = Rf_eval(call, R_GlobalEnv);
        Rf_unprotect(1);
        v
    });
    made.unwrap_or_else(|_| error_value(codes::CONNECTION_RESET, t))
}
