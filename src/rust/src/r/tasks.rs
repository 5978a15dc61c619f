//! Submitting tasks (mirai.R, map.R, `everywhere()`), and package start-up.

use super::api::Rf_shallow_duplicate;
use super::daemons::host;
use super::mirai::{new_mirai, resolved_mirai};
use super::refhooks::Hooks;
use super::unwind::{user_interrupted, RFailure};
use super::{frames, millis, not_forked, r_error, robj, INTERRUPT_SLICE};
use crate::host::{Host, HostConfig, Task};
use crate::protocol::message::TASK_KEEP_STATE;
use extendr_api::prelude::*;
use extendr_ffi::{
    R_NamesSymbol, R_NilValue, Rf_allocVector, Rf_getAttrib, Rf_install, Rf_protect, Rf_unprotect,
    Rf_xlength, R_CHAR, SET_VECTOR_ELT, SEXP, SEXPTYPE, STRING_ELT, TYPEOF, VECTOR_ELT,
};
use std::ffi::CStr;
use std::sync::Arc;
use std::time::Duration;

/// The mirai of `aio`, carrying the profile's serialization
/// configuration `serial` (protected by the caller) unless NULL.
fn mirai_for(aio: Arc<crate::aio::Aio>, serial: SEXP) -> Result<Robj> {
    let m = robj(new_mirai(aio, false).map_err(r_error)?);
    // SAFETY: R's thread; both are protected (`m` by its Robj).
    unsafe {
        if serial != R_NilValue {
            super::mirai::set_serial(m.get(), serial);
        }
    }
    Ok(m)
}

/// The serialization configuration of a profile's host handle `h`
/// (protected by the caller), or NULL (see `host_listen`).
fn serial_of(h: &Robj) -> SEXP {
    // SAFETY: R's thread; reads an attribute of a protected object.
    unsafe { Rf_getAttrib(h.get(), Rf_install(c"serial".as_ptr())) }
}

/// The serialization configuration of host handle `h` (protected by the
/// caller), if it has one.
pub(super) fn profile_hooks(h: &Robj) -> Option<Hooks> {
    hooks(serial_of(h))
}

fn hooks(serial: SEXP) -> Option<Hooks> {
    // SAFETY: R's thread; `serial` is protected by the host handle.
    unsafe { Hooks::from_config(serial) }
}

fn failed(e: RFailure) -> Error {
    r_error(e)
}

/// Package start-up (from .onLoad): `binding` is the expression making
/// each mirai's `data` binding, `make_error` the R function making a
/// miraiError from a message. Rust panics stay quiet on R's thread (they
/// reach R as errors, with their message) and are reported elsewhere.
#[extendr]
fn init_mirai(binding: Robj, make_error: Robj) {
    // SAFETY: both are protected by the caller; `init` preserves them.
    super::mirai::init(unsafe { binding.get() }, unsafe { make_error.get() });
    super::vectors::measure_layout();
    crate::panics::quiet_on_this_thread();
}

/// Serialize `payload` (protected by the caller) into a task frame with
/// `flags` naming `objects`, queue it (or send it), and return its mirai.
fn submit_one(
    host: &Arc<Host>,
    serial: SEXP,
    payload: SEXP,
    flags: i32,
    objects: Vec<Arc<crate::host::shared::SharedObject>>,
    timeout: Option<Duration>,
) -> Result<Robj> {
    let aio = host.new_aio();
    let frame =
        frames::task_frame(aio.id as u64, flags as u8, payload, hooks(serial)).map_err(failed)?;
    let task = Task {
        aio: aio.clone(),
        frame: frame.naming(objects),
    };
    host.submit(task, timeout);
    mirai_for(aio, serial)
}

/// Serialize `payload` into a task frame with `flags` and queue it (or
/// send it); returns the mirai. `shared` lists the handles of the shared
/// objects the payload names (see `shared`), or is NULL.
#[extendr]
fn host_submit(h: Robj, payload: Robj, flags: i32, timeout_ms: f64, shared: Robj) -> Result<Robj> {
    not_forked()?;
    super::mirai::collect();
    let host = host(&h)?;
    // SAFETY: `payload` and `shared` are protected by extendr for this call.
    let (payload, shared) = unsafe { (payload.get(), shared.get()) };
    let objects = super::shared::objects(shared).map_err(r_error)?;
    submit_one(
        host,
        serial_of(&h),
        payload,
        flags,
        objects,
        millis(timeout_ms),
    )
}

/// Submit a map's elements in one call (see `mirai_map()`): for each
/// element of the list `elements`, a copy of the task `template` with the
/// element as its `.x`, submitted as by `host_submit`. Returns the list of
/// mirai, in order. (Profiles that need something per element on R's
/// side, such as a seed's stream or a memory budget, submit element by
/// element instead.)
#[extendr]
fn host_submit_map(
    h: Robj,
    template: Robj,
    elements: Robj,
    flags: i32,
    shared: Robj,
) -> Result<Robj> {
    not_forked()?;
    super::mirai::collect();
    let host = host(&h)?;
    let serial = serial_of(&h);
    // SAFETY: the arguments are protected by extendr for this call; each
    // copy of the template is protected while it is submitted, and the
    // list of mirai while it is filled.
    unsafe {
        let (template, elements) = (template.get(), elements.get());
        if TYPEOF(template) != SEXPTYPE::VECSXP || TYPEOF(elements) != SEXPTYPE::VECSXP {
            return Err(r_error("a map's template and elements must be lists"));
        }
        let names = Rf_getAttrib(template, R_NamesSymbol);
        let slot = (0..Rf_xlength(template))
            .filter(|_| TYPEOF(names) == SEXPTYPE::STRSXP)
            .find(|&i| CStr::from_ptr(R_CHAR(STRING_ELT(names, i))) == c".x")
            .ok_or_else(|| r_error("a map's template has no .x"))?;
        let objects = super::shared::objects(shared.get()).map_err(r_error)?;
        let n = Rf_xlength(elements);
        let out = Rf_protect(Rf_allocVector(SEXPTYPE::VECSXP, n));
        let mut outcome = Ok(());
        for i in 0..n {
            let payload = Rf_protect(Rf_shallow_duplicate(template));
            SET_VECTOR_ELT(payload, slot, VECTOR_ELT(elements, i));
            let m = submit_one(host, serial, payload, flags, objects.clone(), None);
            Rf_unprotect(1);
            match m {
                Ok(m) => {
                    SET_VECTOR_ELT(out, i, m.get());
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let out = robj(out);
        Rf_unprotect(1);
        outcome.map(|()| out)
    }
}

/// Wait until the dispatcher's memory budget has room (the queued bytes
/// are below it): 0, or -1 if interrupted meanwhile.
#[extendr]
fn host_wait_room(h: Robj) -> Result<i32> {
    not_forked()?;
    let host = host(&h)?;
    while !host.wait_room(INTERRUPT_SLICE) {
        if user_interrupted() {
            return Ok(-1);
        }
    }
    Ok(0)
}

/// Whether the dispatcher's memory budget has room now.
#[extendr]
fn host_has_room(h: Robj) -> Result<bool> {
    Ok(host(&h)?.has_room())
}

/// Tests: give map elements to daemons in runs of `n` (0: adaptive runs).
#[extendr]
fn host_fix_runs(h: Robj, n: i32) -> Result<()> {
    host(&h)?.fix_runs((n > 0).then_some(n as usize));
    Ok(())
}

/// `n` random bytes as hex text (URL names; R's own generator is left
/// alone, so launching daemons draws nothing from it).
#[extendr]
fn random_hex(n: i32) -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; n.clamp(0, 1024) as usize];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| r_error("no system randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A mirai with no daemons set: a host at `url` for this one task, and a
/// daemon process (`program args...`, told the host's secret in its
/// environment) to run it. The host closes once the task is done, timed
/// out or stopped, and the process then exits.
#[extendr]
fn ephemeral_submit(
    url: &str,
    payload: Robj,
    timeout_ms: f64,
    program: &str,
    args: Vec<String>,
) -> Result<Robj> {
    not_forked()?;
    super::mirai::collect();
    let secret = crate::host::new_secret().map_err(r_error)?;
    let config = HostConfig {
        ephemeral: true,
        secret: Some(secret.clone().into_bytes()),
        ..HostConfig::default()
    };
    let host = Host::listen_with(url, config).map_err(r_error)?;
    let aio = host.new_aio();
    // SAFETY: `payload` is protected by extendr for this call.
    let frame = frames::task_frame(aio.id as u64, 0, unsafe { payload.get() }, None);
    let frame = match frame {
        Ok(f) => f,
        Err(e) => {
            host.close(false);
            return Err(failed(e));
        }
    };
    host.submit(
        Task {
            aio: aio.clone(),
            frame,
        },
        millis(timeout_ms),
    );
    if let Err(e) = super::daemons::launch(&host, program, &args, false, &secret) {
        host.close(false);
        return Err(e);
    }
    Ok(robj(new_mirai(aio, true).map_err(r_error)?))
}

/// `everywhere()`: `k` tasks keeping state. With dispatcher they go to
/// `k` distinct daemons and every other daemon runs the task too (see
/// `host::dispatcher`); without, they are dealt round-robin. One
/// serialized payload is shared by all. Returns the list of mirai.
#[extendr]
fn host_everywhere(h: Robj, payload: Robj, k: i32) -> Result<Robj> {
    not_forked()?;
    super::mirai::collect();
    let host = host(&h)?;
    let serial = serial_of(&h);
    let mut body = Vec::new();
    // SAFETY: `payload` is protected by extendr for this call.
    super::serial::serialize_with(unsafe { payload.get() }, &mut body, hooks(serial))
        .map_err(|e| failed(e.into()))?;
    let shared: Arc<[u8]> = Arc::from(body);
    let k = k.max(0) as usize;
    let aios = if host.config().dispatcher {
        host.broadcast(shared, k)
    } else {
        (0..k)
            .map(|_| {
                let aio = host.new_aio();
                let head = crate::protocol::message::task_prefix(
                    aio.id as u64,
                    TASK_KEEP_STATE,
                    shared.len(),
                );
                let frame = crate::outframe::OutFrame::with_shared(head, shared.clone());
                host.submit(
                    Task {
                        aio: aio.clone(),
                        frame,
                    },
                    None::<Duration>,
                );
                aio
            })
            .collect()
    };
    let mirai: Vec<Robj> = aios
        .into_iter()
        .map(|aio| mirai_for(aio, serial))
        .collect::<Result<_>>()?;
    Ok(List::from_values(mirai).into())
}

/// A mirai already resolved to `value` (synchronous profiles).
#[extendr]
fn mirai_resolved(value: Robj) -> Result<Robj> {
    // SAFETY: `value` is protected by extendr for this call.
    Ok(robj(
        resolved_mirai(unsafe { value.get() }).map_err(r_error)?,
    ))
}

/// `"<code> | <message>"` for an error code.
#[extendr]
fn error_text(code: i32) -> String {
    crate::codes::describe(code)
}

extendr_module! {
    mod tasks;
    fn init_mirai;
    fn host_submit;
    fn host_submit_map;
    fn host_wait_room;
    fn host_has_room;
    fn host_fix_runs;
    fn random_hex;
    fn ephemeral_submit;
    fn host_everywhere;
    fn mirai_resolved;
    fn error_text;
}
