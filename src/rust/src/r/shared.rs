//! Shared objects of a `mirai_map()` as R sees them (see `host::shared`).
//!
//! Host: `host_share()` serializes a large `...` or `.args` object once
//! and returns a handle; the map's tasks carry a small placeholder naming
//! its id instead of the object, and their frames hold the handle's object
//! so it reaches each daemon once, before the first task naming it.
//!
//! Daemon: each SHARE is unserialized once and kept (preserved, and marked
//! not mutable so a task that modifies its copy never changes it for the
//! next); before a task is evaluated its placeholders are replaced by the
//! objects they name. UNSHARE releases one; a new connection's first SHARE
//! releases those of the previous connection.

use super::api::Rf_inherits;
use super::handle::{clone_handle, new_handle, release_handle, Tagged};
use super::refhooks::Hooks;
use super::serial::{serialize_with, unserialize_with};
use super::{r_error, robj};
use crate::host::shared::SharedObject;
use extendr_api::prelude::*;
use extendr_ffi::{
    R_NilValue, R_PreserveObject, R_ReleaseObject, Rf_xlength, MARK_NOT_MUTABLE, REAL,
    SET_VECTOR_ELT, SEXP, SEXPTYPE, TYPEOF, VECTOR_ELT,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

impl Tagged for SharedObject {
    const TAG: &'static std::ffi::CStr = c"mirai_shared_object";
}

/// The class of a placeholder: a double holding the object's id bits.
const PLACEHOLDER: &std::ffi::CStr = c"mirai_shared_ref";

/// Host: serialize `x` once (with the profile's configuration `hooks`)
/// into a shared object; its handle, and its id as a double's bits.
pub fn share(x: SEXP, hooks: Option<Hooks>) -> std::result::Result<(SEXP, f64), String> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| "no system randomness".to_string())?;
    let mut bytes = Vec::new();
    serialize_with(x, &mut bytes, hooks).map_err(|e| e.failure.to_string())?;
    let object = SharedObject {
        id: u64::from_le_bytes(id),
        bytes: Arc::from(bytes),
    };
    let bits = f64::from_bits(object.id);
    Ok((new_handle(Arc::new(object)), bits))
}

/// Host: the shared objects behind a list of handles (NULL: none).
pub fn objects(handles: SEXP) -> std::result::Result<Vec<Arc<SharedObject>>, String> {
    // SAFETY: R's thread; `handles` is protected by the caller.
    unsafe {
        if handles == R_NilValue {
            return Ok(Vec::new());
        }
        if TYPEOF(handles) != SEXPTYPE::VECSXP {
            return Err("shared objects must be a list of handles".into());
        }
        (0..Rf_xlength(handles))
            .map(|i| clone_handle::<SharedObject>(VECTOR_ELT(handles, i)))
            .collect()
    }
}

/// Daemon: the objects kept, and the connection they came on.
#[derive(Default)]
struct Kept {
    epoch: u64,
    objects: HashMap<u64, SEXP>,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// Daemon: keep the object `id` serialized in `bytes`, which came on the
/// connection of `epoch` (objects from an earlier connection go).
pub fn keep(id: u64, epoch: u64, bytes: &[u8], hooks: Option<Hooks>) -> Result<()> {
    if KEPT.with(|k| k.borrow().epoch != epoch) {
        let old = KEPT.with(|k| {
            let mut k = k.borrow_mut();
            k.epoch = epoch;
            std::mem::take(&mut k.objects)
        });
        for x in old.into_values() {
            // SAFETY: R's thread; each was preserved by `keep`.
            unsafe { R_ReleaseObject(x) };
        }
    }
    let x = unserialize_with(bytes, hooks)
        .map_err(|e| r_error(format!("a shared object could not be unserialized: {e}")))?;
    // SAFETY: R's thread; `x` is new: preserved before anything else
    // allocates, and marked so that R copies it before any modification.
    unsafe {
        R_PreserveObject(x);
        MARK_NOT_MUTABLE(x);
    }
    if let Some(old) = KEPT.with(|k| k.borrow_mut().objects.insert(id, x)) {
        // SAFETY: R's thread; preserved by an earlier `keep`.
        unsafe { R_ReleaseObject(old) };
    }
    Ok(())
}

/// Daemon: release object `id`.
pub fn forget(id: u64) {
    if let Some(x) = KEPT.with(|k| k.borrow_mut().objects.remove(&id)) {
        // SAFETY: R's thread; preserved by `keep`.
        unsafe { R_ReleaseObject(x) };
    }
}

/// How many objects this daemon keeps.
pub fn kept() -> usize {
    KEPT.with(|k| k.borrow().objects.len())
}

/// The object a placeholder names, or None if `x` is no placeholder.
/// Err if it names an object this daemon does not hold.
unsafe fn named(x: SEXP) -> std::result::Result<Option<SEXP>, String> {
    if TYPEOF(x) != SEXPTYPE::REALSXP
        || Rf_xlength(x) != 1
        || Rf_inherits(x, PLACEHOLDER.as_ptr()) == extendr_ffi::Rboolean::FALSE
    {
        return Ok(None);
    }
    let id = (*REAL(x)).to_bits();
    KEPT.with(|k| k.borrow().objects.get(&id).copied())
        .map(Some)
        .ok_or_else(|| "a shared object of this task is missing on the daemon".to_string())
}

/// Daemon: replace the placeholders among the elements of `task` (a list)
/// and of its list elements (the globals, `.args`) by their objects.
pub fn resolve(task: SEXP) -> std::result::Result<(), String> {
    // SAFETY: R's thread; `task` is protected by the caller and is the
    // task's own, freshly unserialized; elements are only replaced by
    // objects kept preserved.
    unsafe {
        if TYPEOF(task) != SEXPTYPE::VECSXP {
            return Ok(());
        }
        for i in 0..Rf_xlength(task) {
            let el = VECTOR_ELT(task, i);
            if let Some(x) = named(el)? {
                SET_VECTOR_ELT(task, i, x);
            } else if TYPEOF(el) == SEXPTYPE::VECSXP {
                for j in 0..Rf_xlength(el) {
                    if let Some(x) = named(VECTOR_ELT(el, j))? {
                        SET_VECTOR_ELT(el, j, x);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A handle to `x` serialized once for the tasks of a map (see module
/// docs), with the profile's serialization configuration: `list(handle,
/// placeholder)`.
#[extendr]
fn host_share(h: Robj, x: Robj) -> Result<Robj> {
    let hooks = super::tasks::profile_hooks(&h);
    // SAFETY: `x` is protected by extendr for this call.
    let (handle, bits) = share(unsafe { x.get() }, hooks).map_err(r_error)?;
    let handle = robj(handle);
    let mut placeholder = Robj::from(bits);
    placeholder.set_class(&[PLACEHOLDER.to_str().expect("ascii")])?;
    Ok(list!(handle, placeholder).into())
}

/// The map has submitted its tasks: the handles let go of their objects,
/// which then live as long as the tasks' frames do.
#[extendr]
fn host_unshare(handles: List) {
    for h in handles.values() {
        // SAFETY: `h` is protected by the list, which extendr protects.
        release_handle::<SharedObject>(unsafe { h.get() });
    }
}

/// SHARE frames this process has sent (tests).
#[extendr]
fn shares_sent() -> f64 {
    crate::host::shared::shares_sent() as f64
}

/// Shared objects this daemon keeps (tests).
#[extendr]
fn shared_kept() -> i32 {
    kept() as i32
}

extendr_module! {
    mod shared;
    fn host_share;
    fn host_unshare;
    fn shares_sent;
    fn shared_kept;
}
