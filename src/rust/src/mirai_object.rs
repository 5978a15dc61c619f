//! The R object behind a mirai, and how it resolves.
//!
//! A mirai is an environment of class "mirai" with an integer "id"
//! attribute and an active binding `data`. Its aio lives in a table on
//! this side, keyed by that id, so the R object holds no pointer and needs
//! no finalizer (an R weak reference would cost more than the rest of the
//! object: this is what keeps a queued task under a kilobyte).
//!
//! While unresolved, the environment is also kept in a list of pending
//! mirai. Once its aio completes, R's thread *collects* it at the next call
//! into the package: the value is unserialized, `data` becomes a plain
//! binding to it and the aio is dropped. A mirai the user let go of thus
//! still releases its result as soon as it completes.

use crate::aio::{self, Aio, Outcome, ERR_PROTOCOL};
use crate::protocol::ID_FLAGS_LEN;
use crate::rapi::{
    R_MakeActiveBinding, R_removeVarFromFrame, Rf_mkString, Rf_shallow_duplicate, SET_CLOENV,
};
use crate::serial;
use extendr_ffi::{
    R_EmptyEnv, R_NewEnv, R_NilValue, R_PreserveObject, R_ReleaseObject, Rf_ScalarInteger,
    Rf_allocVector, Rf_defineVar, Rf_getAttrib, Rf_install, Rf_protect, Rf_setAttrib, Rf_unprotect,
    Rf_xlength, INTEGER, SET_VECTOR_ELT, SEXP, SEXPTYPE, TYPEOF, VECTOR_ELT,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// R-thread state: the binding template, the class vector, the pending
/// mirai and their aios.
struct Registry {
    template: SEXP,
    class: SEXP,
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
    unsafe { Rf_install(name.as_ptr()) }
}

const INITIAL_SLOTS: u32 = 1024;

/// Set up (from .onLoad) with the closure each mirai's `data` binding
/// copies; its body passes its own environment (the mirai) to
/// `aio_value`.
pub fn init(template: SEXP) {
    unsafe {
        R_PreserveObject(template);
        let class = Rf_mkString(c"mirai".as_ptr());
        R_PreserveObject(class);
        let pending = Rf_allocVector(SEXPTYPE::VECSXP, INITIAL_SLOTS as isize);
        R_PreserveObject(pending);
        REGISTRY.with(|r| {
            *r.borrow_mut() = Some(Registry {
                template,
                class,
                pending,
                free: (0..INITIAL_SLOTS).rev().collect(),
                aios: HashMap::new(),
            })
        });
    }
}

impl Registry {
    /// A free slot in the pending list, growing it when full.
    fn slot(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        unsafe {
            let old = self.pending;
            let n = Rf_xlength(old);
            let new = Rf_allocVector(SEXPTYPE::VECSXP, 2 * n);
            R_PreserveObject(new);
            for i in 0..n {
                SET_VECTOR_ELT(new, i, VECTOR_ELT(old, i));
            }
            R_ReleaseObject(old);
            self.pending = new;
            self.free.extend((n as u32 + 1..2 * n as u32).rev());
            n as u32
        }
    }
}

/// A new, unresolved mirai around `aio` (returned unprotected).
pub fn new_mirai(aio: Arc<Aio>) -> Result<SEXP, String> {
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let reg = r
            .as_mut()
            .ok_or("mirai is not initialised (package not loaded?)")?;
        let id = aio.id as i32;
        unsafe {
            let env = Rf_protect(R_NewEnv(R_EmptyEnv, 0, 0));
            let f = Rf_protect(Rf_shallow_duplicate(reg.template));
            SET_CLOENV(f, env);
            R_MakeActiveBinding(sym(c"data"), f, env);
            Rf_setAttrib(env, sym(c"id"), Rf_ScalarInteger(id));
            Rf_setAttrib(env, sym(c"class"), reg.class);
            let slot = reg.slot();
            SET_VECTOR_ELT(reg.pending, slot as isize, env);
            Rf_unprotect(2);
            reg.aios.insert(id, aio.clone());
            aio.set_slot(slot);
            Ok(env)
        }
    })
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
    let id = unsafe { id_of(m) }?;
    REGISTRY.with(|r| r.borrow().as_ref()?.aios.get(&id).cloned())
}

/// Collect every mirai whose aio has completed (see the module docs).
pub fn collect() {
    crate::outframe::release_pending();
    let slots = aio::take_completed();
    if slots.is_empty() {
        return;
    }
    REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let Some(reg) = r.as_mut() else { return };
        for slot in slots {
            unsafe { collect_one(reg, slot) };
        }
    });
}

unsafe fn collect_one(reg: &mut Registry, slot: u32) {
    let env = VECTOR_ELT(reg.pending, slot as isize);
    let Some(id) = id_of(env) else {
        return; // already collected (queued twice)
    };
    let Some(aio) = reg.aios.get(&id) else { return };
    let value = match aio.take() {
        Outcome::Pending | Outcome::Taken => return, // a newer mirai in a reused slot
        Outcome::Error(code) => error_value(code),
        Outcome::Vector(buf, t) => match buf.into_r_vector(t) {
            Some(v) => v,
            None => error_value(ERR_PROTOCOL),
        },
        Outcome::Value(bytes, _) => match serial::unserialize(&bytes[ID_FLAGS_LEN..]) {
            Ok(v) => v,
            Err(_) => error_value(ERR_PROTOCOL),
        },
    };
    Rf_protect(value);
    reg.aios.remove(&id);
    R_removeVarFromFrame(sym(c"data"), env);
    Rf_defineVar(sym(c"data"), value, env);
    SET_VECTOR_ELT(reg.pending, slot as isize, R_NilValue);
    reg.free.push(slot);
    Rf_unprotect(1);
}

/// An integer errorValue (unprotected).
pub fn error_value(code: i32) -> SEXP {
    unsafe {
        let v = Rf_protect(Rf_ScalarInteger(code));
        Rf_setAttrib(v, sym(c"class"), Rf_mkString(c"errorValue".as_ptr()));
        Rf_unprotect(1);
        v
    }
}
