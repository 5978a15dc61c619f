//! Reading, waiting for, racing and cancelling mirai (mirai.R). Waits
//! sleep on the process-wide completion signal and wake in short slices to
//! notice Ctrl-C; an interrupt is reported to R (which raises it) rather
//! than unwinding through here.

use super::mirai::{aio_of, collect, unresolved_value};
use super::unwind::user_interrupted;
use super::{not_forked, robj, INTERRUPT_SLICE};
use crate::aio::{self, Aio, Watcher};
use crate::codes::CANCELED;
use extendr_api::prelude::*;
use extendr_ffi::{Rf_xlength, SEXP, SEXPTYPE, TYPEOF, VECTOR_ELT};
use std::collections::HashMap;
use std::sync::Arc;

/// The aio of a mirai not yet collected; `None` once it has resolved (or
/// for anything that is not a pending mirai).
fn aio_in(m: SEXP) -> Option<Arc<Aio>> {
    aio_of(m)
}

fn resolved(a: Option<&Arc<Aio>>) -> bool {
    a.is_none_or(|a| !a.is_pending())
}

/// Wait until `done()`, answering Ctrl-C: false if interrupted.
fn wait_until(done: impl Fn() -> bool + Clone) -> bool {
    if aio::spin_until(done.clone()) {
        return true;
    }
    loop {
        let seen = aio::generation();
        if done() {
            return true;
        }
        aio::wait_for_completion(seen, INTERRUPT_SLICE);
        if !done() && user_interrupted() {
            return false;
        }
    }
}

/// The elements of an R list (none for anything else).
fn elements(x: SEXP) -> Vec<SEXP> {
    // SAFETY: R's thread; `x` is protected by the caller.
    unsafe {
        if TYPEOF(x) != SEXPTYPE::VECSXP {
            return Vec::new();
        }
        (0..Rf_xlength(x)).map(|i| VECTOR_ELT(x, i)).collect()
    }
}

fn is_list(x: SEXP) -> bool {
    // SAFETY: R's thread.
    unsafe { TYPEOF(x) == SEXPTYPE::VECSXP }
}

/// The body of a pending mirai's `data` binding, given the mirai:
/// collects completed mirai first, so this one's value is there if it has
/// arrived.
#[extendr]
fn mirai_data(m: Robj) -> Robj {
    collect();
    // SAFETY: `m` is protected by extendr for this call.
    let m = unsafe { m.get() };
    match aio_of(m) {
        Some(_) => robj(unresolved_value()),
        // collected: `data` is now a plain binding
        // SAFETY: R's thread; reads a binding of a protected environment.
        None => robj(unsafe {
            super::api::Rf_findVarInFrame(m, extendr_ffi::Rf_install(c"data".as_ptr()))
        }),
    }
}

/// Whether a mirai is still pending.
#[extendr]
fn aio_unresolved(m: Robj) -> bool {
    collect();
    // SAFETY: protected by extendr for this call.
    !resolved(aio_in(unsafe { m.get() }).as_ref())
}

/// Whether any top-level element of a list is a pending mirai.
#[extendr]
fn aio_any_unresolved(list: Robj) -> bool {
    collect();
    // SAFETY: protected by extendr for this call.
    elements(unsafe { list.get() })
        .into_iter()
        .any(|m| !resolved(aio_in(m).as_ref()))
}

/// Wait for a mirai, or for every mirai in a list (recursively, in
/// order): false if interrupted.
#[extendr]
fn aio_wait(x: Robj) -> Result<bool> {
    not_forked()?;
    let mut aios = Vec::new();
    // SAFETY: protected by extendr for this call.
    gather(unsafe { x.get() }, &mut aios);
    for a in aios {
        if !wait_until(|| !a.is_pending()) {
            return Ok(false);
        }
    }
    collect();
    Ok(true)
}

/// The aios of the pending mirai in `x`, looking into lists.
fn gather(x: SEXP, out: &mut Vec<Arc<Aio>>) {
    if let Some(a) = aio_in(x) {
        out.push(a);
    } else if is_list(x) {
        for m in elements(x) {
            gather(m, out);
        }
    }
}

/// How many elements of a list are resolved mirai (or not mirai at all).
#[extendr]
fn aio_count_resolved(list: Robj) -> i32 {
    collect();
    // SAFETY: protected by extendr for this call.
    elements(unsafe { list.get() })
        .into_iter()
        .filter(|&m| resolved(aio_in(m).as_ref()))
        .count() as i32
}

/// Index (1-based) of the first element of `list` (in list order) that is
/// a resolved mirai, waiting for one if none is yet; 0 if the list holds
/// no mirai; -1 if interrupted. `is_mirai` marks the elements that are
/// mirai. Each completion costs O(1): the pending aios report to one
/// watcher.
#[extendr]
fn aio_race(list: Robj, is_mirai: Robj) -> Result<i32> {
    let is_mirai = is_mirai.as_logical_slice().unwrap_or(&[]);
    not_forked()?;
    collect();
    // SAFETY: protected by extendr for this call.
    let items = elements(unsafe { list.get() });
    let watcher = Arc::new(Watcher::default());
    let mut index_of: HashMap<u32, usize> = HashMap::new();
    for (i, &m) in items.iter().enumerate() {
        if !is_mirai.get(i).is_some_and(|b| b.is_true()) {
            continue;
        }
        match aio_in(m) {
            None => return Ok(i as i32 + 1),
            Some(a) if !a.watch(&watcher) => return Ok(i as i32 + 1),
            Some(a) => {
                index_of.entry(a.id).or_insert(i);
            }
        }
    }
    if index_of.is_empty() {
        return Ok(0);
    }
    loop {
        let seen = aio::generation();
        let first = watcher
            .take()
            .iter()
            .filter_map(|id| index_of.get(id))
            .min()
            .copied();
        if let Some(i) = first {
            collect();
            return Ok(i as i32 + 1);
        }
        aio::wait_for_completion(seen, INTERRUPT_SLICE);
        if user_interrupted() {
            return Ok(-1);
        }
    }
}

/// Resolve a pending mirai to errorValue 20, stopping its task where the
/// dispatcher can: true if the cancellation reached a task queued or
/// running at a dispatcher.
#[extendr]
fn aio_cancel(m: Robj) -> bool {
    // SAFETY: protected by extendr for this call.
    let reached = aio_in(unsafe { m.get() }).is_some_and(|a| a.cancel(CANCELED));
    collect();
    reached
}

extendr_module! {
    mod waits;
    fn mirai_data;
    fn aio_unresolved;
    fn aio_any_unresolved;
    fn aio_wait;
    fn aio_count_resolved;
    fn aio_race;
    fn aio_cancel;
}
