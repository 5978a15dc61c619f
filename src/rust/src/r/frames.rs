//! R objects to frames and back: a task payload into a TASK frame (host),
//! a TASK back into the payload and a value into a RESULT frame (daemon).
//! The layouts themselves are the protocol's; this is where R data meets
//! them.

use super::rawargs;
use super::refhooks::Hooks;
use super::serial::{serialize_with, with_scratch, SerialFailure};
use super::unwind::RFailure;
use super::vectors::{into_r_vector, plain_vector};
use crate::daemon::Client;
use crate::outframe::OutFrame;
use crate::protocol::finish_frame;
use crate::protocol::message::{
    begin_result, begin_task, finish_task, vector_result_head, RawArg, TASK_RAW_ARGS,
};
use extendr_ffi::{Rf_protect, Rf_unprotect, SEXP};

/// Results at least this large go as raw vector data when they can.
const RAW_RESULT_MIN: usize = 4 << 20;

/// The TASK frame for task `id` with `payload`: serialized, except that
/// large plain vectors among its objects follow as raw data still in R's
/// memory (see `rawargs`), with the profile's serialization configuration
/// `hooks` if it has one. R's thread.
pub fn task_frame(
    id: u64,
    flags: u8,
    payload: SEXP,
    hooks: Option<Hooks>,
) -> Result<OutFrame, RFailure> {
    let raw = rawargs::find(payload);
    if raw.is_empty() {
        let frame = with_scratch(|buf| {
            begin_task(buf, id, flags);
            serialize_with(payload, buf, hooks)?;
            finish_task(buf, &[]);
            Ok::<(), SerialFailure>(())
        })?;
        return Ok(frame.into());
    }
    let mut head = Vec::new();
    begin_task(&mut head, id, flags | TASK_RAW_ARGS);
    // SAFETY: R's thread; the copy is protected while serialized.
    let rest = unsafe { Rf_protect(rawargs::without(payload, &raw)) };
    let serialized = serialize_with(rest, &mut head, hooks);
    // SAFETY: balances the protect above.
    unsafe { Rf_unprotect(1) };
    serialized?;
    let args: Vec<RawArg> = raw.iter().map(|(a, _)| *a).collect();
    finish_task(&mut head, &args);
    let data: Vec<&[u8]> = raw.iter().map(|(_, d)| *d).collect();
    // SAFETY: the payload list refers to every vector sent from R's
    // memory: keeping it keeps them, and stops R modifying them in place.
    Ok(unsafe { super::outframes::with_r_data(head, &data, payload) })
}

/// Why a task's raw vectors could not be put in place.
pub enum TaskError {
    /// The connection failed mid-task.
    Connection,
    /// The task cannot be rebuilt here (the message says why).
    Task(String),
}

/// Read the raw vectors of the task `client` last received straight into
/// new R vectors and put them in their places in `task` (its payload,
/// unserialized by R). On a task error the rest of its data is still read
/// off the connection.
pub fn fill_raw(client: &Client, id: u64, task: SEXP) -> Result<(), TaskError> {
    let Some((epoch, raw)) = client.take_raw() else {
        return Ok(());
    };
    let skip_from = |i: usize| {
        let rest = raw[i..].iter().filter_map(RawArg::data_len).sum();
        client.skip_raw(epoch, rest)
    };
    // Free the previous large task's vectors before allocating this one's:
    // R would collect them only later, after the process had grown by
    // fresh memory that costs page faults to fill.
    // SAFETY: R's thread; a full collection has no preconditions.
    unsafe { super::api::R_gc() };
    for (i, arg) in raw.iter().enumerate() {
        let Some(mut buf) = rawargs::buffer(arg) else {
            return match skip_from(i) {
                true => Err(TaskError::Task(
                    "not enough memory for the task's data".into(),
                )),
                false => Err(TaskError::Connection),
            };
        };
        if !client.read_raw(epoch, buf.data_mut()) {
            return Err(TaskError::Connection);
        }
        let placed = into_r_vector(buf, arg.vtype).is_some_and(|v| rawargs::put_back(task, arg, v));
        if !placed {
            return match skip_from(i + 1) {
                true => Err(TaskError::Task("malformed task".into())),
                false => Err(TaskError::Connection),
            };
        }
    }
    client.start_task(id, epoch);
    Ok(())
}

/// Send the result of task `id` to the host on the connection of `epoch`:
/// a large plain vector as raw data straight from R's memory, anything
/// else serialized (with the host's serialization configuration `hooks`
/// if it sent one).
pub fn send_result(
    client: &Client,
    id: u64,
    epoch: u64,
    value: SEXP,
    is_error: bool,
    hooks: Option<Hooks>,
) -> Result<(), SerialFailure> {
    if let Some((vtype, n, data)) = plain_vector(value, RAW_RESULT_MIN) {
        let head = vector_result_head(id, vtype, n);
        client.write_parts(epoch, &[&head, data]);
        return Ok(());
    }
    client.send(epoch, |frame| {
        begin_result(frame, id, is_error);
        serialize_with(value, frame, hooks)?;
        finish_frame(frame);
        Ok(())
    })
}
