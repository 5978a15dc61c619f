//! The daemon loop's calls (daemon.R): dialling the host, receiving tasks,
//! sending results.

use super::frames::{fill_raw, send_result, TaskError};
use super::handle::{get_handle, new_handle, Tagged};
use super::refhooks::{is_hooked, Hooks};
use super::unwind::user_interrupted;
use super::{millis, not_forked, r_error, robj, INTERRUPT_SLICE};
use crate::daemon::{AutoExit, Client, Incoming};
use extendr_api::prelude::*;
use extendr_ffi::{R_PreserveObject, R_ReleaseObject, SEXP};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

impl Tagged for Client {
    const TAG: &'static std::ffi::CStr = c"mirai_daemon_connection";
}

fn client(c: &Robj) -> Result<&Client> {
    // SAFETY: the handle is checked for its tag before use.
    get_handle::<Client>(unsafe { c.get() }).map_err(r_error)
}

thread_local! {
    /// The serialization configuration the host sent (preserved), or null.
    static SERIAL: Cell<SEXP> = const { Cell::new(std::ptr::null_mut()) };
}

/// The serialization configuration in force on this daemon.
fn hooks() -> Option<Hooks> {
    let x = SERIAL.with(Cell::get);
    // SAFETY: R's thread; a non-null `x` is preserved.
    (!x.is_null())
        .then(|| unsafe { Hooks::from_config(x) })
        .flatten()
}

/// Take the serialization configuration a new connection's host sent
/// (`None`: it has none), in place of any earlier host's. One that cannot
/// be read here (say, its functions' package is not installed) is an R
/// error: this daemon cannot serve that host.
fn set_hooks(config: Option<Vec<u8>>) -> Result<()> {
    let new = match config {
        None => std::ptr::null_mut(),
        Some(bytes) => {
            let unusable = |why: String| {
                r_error(format!(
                    "cannot use the host's serialization configuration: {why}"
                ))
            };
            let x = super::serial::unserialize(&bytes).map_err(|e| unusable(e.to_string()))?;
            // SAFETY: R's thread; `x` is preserved before anything allocates.
            unsafe {
                if Hooks::from_config(x).is_none() {
                    return Err(unusable("not a serial_config()".into()));
                }
                R_PreserveObject(x);
            }
            x
        }
    };
    let old = SERIAL.with(|c| c.replace(new));
    if !old.is_null() {
        // SAFETY: R's thread; `old` was preserved above, once.
        unsafe { R_ReleaseObject(old) };
    }
    Ok(())
}

/// Connect a daemon to its host. `autoexit`: TRUE, NA or FALSE. A failed
/// dial is an R error with the transport's "code | message" text.
#[extendr]
fn daemon_dial(
    url: &str,
    asyncdial: bool,
    autoexit: Rbool,
    tempdir: &str,
    secret: &str,
    tlscert: &str,
) -> Result<Robj> {
    not_forked()?;
    let mode = if autoexit.is_na() {
        AutoExit::AfterTask
    } else if autoexit.is_true() {
        AutoExit::Immediate
    } else {
        AutoExit::Never
    };
    let c = Client::dial(
        url,
        asyncdial,
        mode,
        tempdir.to_string(),
        secret.to_string(),
        (!tlscert.is_empty()).then(|| tlscert.to_string()),
    )
    .map_err(r_error)?;
    Ok(robj(new_handle(Arc::new(c))))
}

/// Set in a task's flags for R when the host cancelled it while it waited
/// in its run: R answers it without evaluating it (`.flag_cancelled`).
const CANCELLED_FLAG: i32 = 256;

/// Wait for the next message: a task `list(id, flags, epoch, payload,
/// raw, hooked)`, its payload the serialized task as a raw vector (R
/// unserializes it, within the same handlers as the evaluation) and `raw`
/// whether large vectors follow on the connection (see `daemon_fill_raw`);
/// `hooked` if it was serialized with the host's serialization
/// configuration, when the payload is NULL and `daemon_task` reads it; a new
/// connection's random-number stream (an integer vector of 7); or an
/// integer code: 0 connection ended, 1 `idle_ms` passed, 2 told to exit,
/// -1 interrupted. A refusal by the host is an R error.
#[extendr]
fn daemon_recv(c: Robj, idle_ms: f64) -> Result<Robj> {
    let client = client(&c)?;
    let deadline = millis(idle_ms).map(|d| Instant::now() + d);
    loop {
        let slice = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok(r!(1));
                }
                INTERRUPT_SLICE.min(d - now)
            }
            None => INTERRUPT_SLICE,
        };
        match client.recv(slice) {
            Some(Incoming::Task {
                id,
                flags,
                epoch,
                raw,
                cancelled,
            }) => {
                let hooked = client.with_task_payload(is_hooked);
                let payload = match hooked {
                    true => Robj::from(()),
                    false => client.with_task_payload(Raw::from_bytes).into(),
                };
                let task = list!(
                    id as f64,
                    flags as i32 | if cancelled { CANCELLED_FLAG } else { 0 },
                    epoch as f64,
                    payload,
                    !raw.is_empty(),
                    hooked
                );
                return Ok(task.into());
            }
            Some(Incoming::Serial(config)) => set_hooks(config)?,
            Some(Incoming::Share { id, epoch }) => {
                client.with_task_payload(|b| super::shared::keep(id, epoch, &b[8..], hooks()))?
            }
            Some(Incoming::Unshare(id)) => super::shared::forget(id),
            Some(Incoming::Setup(stream)) => return Ok(r!(stream.to_vec())),
            Some(Incoming::Disconnected) => return Ok(r!(0)),
            Some(Incoming::Exit) => return Ok(r!(2)),
            Some(Incoming::Refused(why)) => {
                return Err(r_error(format!("the host refused this daemon: {why}")))
            }
            Some(Incoming::Untrusted(why)) => return Err(r_error(why)),
            None => {
                if user_interrupted() {
                    // an interrupt between tasks (a late cancellation) is
                    // nothing to act on
                    client.interrupt_verdict();
                    return Ok(r!(-1));
                }
            }
        }
    }
}

/// The task last received, serialized with the host's serialization
/// configuration: unserialized with it (the configured functions run).
#[extendr]
fn daemon_task(c: Robj) -> Result<Robj> {
    let client = client(&c)?;
    let hooks = hooks();
    let task = client.with_task_payload(|b| super::serial::unserialize_with(b, hooks));
    match task {
        Ok(x) => Ok(robj(x)),
        Err(e) => Err(r_error(format!("the task could not be unserialized: {e}"))),
    }
}

/// Read the large vectors of task `id` (its payload unserialized by R as
/// `task`) off the connection into their places in `task`: NULL when done,
/// the reason when the task cannot be rebuilt, or -1L if the connection
/// failed meanwhile.
#[extendr]
fn daemon_fill_raw(c: Robj, id: f64, task: Robj) -> Result<Robj> {
    let client = client(&c)?;
    // SAFETY: `task` is protected by extendr for this call.
    match fill_raw(client, id as u64, unsafe { task.get() }) {
        Ok(()) => Ok(Robj::from(())),
        Err(TaskError::Task(why)) => Ok(r!(why)),
        Err(TaskError::Connection) => Ok(r!(-1)),
    }
}

/// Put the shared objects the task names in their places in `task` (its
/// payload, unserialized by R): NULL, or why that failed.
#[extendr]
fn daemon_resolve_shared(task: Robj) -> Robj {
    // SAFETY: `task` is protected by extendr for this call.
    match super::shared::resolve(unsafe { task.get() }) {
        Ok(()) => Robj::from(()),
        Err(why) => r!(why),
    }
}

/// Send the result of task `id` back on the connection it came from:
/// NULL, or why the value could not be serialized (the caller then sends
/// a miraiError instead). When a function of the host's serialization
/// configuration fails on it, this daemon drops its connection and serves
/// no more (the host sees it gone with the task): -1L.
#[extendr]
fn daemon_send(c: Robj, id: f64, epoch: f64, value: Robj, is_error: bool) -> Result<Robj> {
    let client = client(&c)?;
    // SAFETY: `value` is protected by extendr for this call.
    let sexp = unsafe { value.get() };
    let sent = send_result(client, id as u64, epoch as u64, sexp, is_error, hooks());
    Ok(match sent {
        Ok(()) => Robj::from(()),
        Err(e) if e.hook => {
            client.abandon();
            r!(-1)
        }
        Err(e) => r!(e.failure.to_string()),
    })
}

/// An interrupt has reached the daemon's R code: whether it should stop
/// the evaluation in progress (a cancellation of this task, or a user's
/// interrupt) rather than be ignored (between tasks, or sent for a task
/// already finished).
#[extendr]
fn daemon_interrupt_verdict(c: Robj) -> Result<bool> {
    Ok(client(&c)?.interrupt_verdict())
}

/// The daemon leaves: the host hears of it, the connection closes.
#[extendr]
fn daemon_finish(c: Robj) -> Result<()> {
    client(&c)?.finish();
    Ok(())
}

extendr_module! {
    mod daemon;
    fn daemon_dial;
    fn daemon_recv;
    fn daemon_task;
    fn daemon_fill_raw;
    fn daemon_resolve_shared;
    fn daemon_send;
    fn daemon_interrupt_verdict;
    fn daemon_finish;
}
