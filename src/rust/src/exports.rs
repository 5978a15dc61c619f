//! The functions R calls (`.Call(wrap__<name>, ...)`). Each converts R
//! arguments, calls into the core, and converts back; all R <-> bytes work
//! happens here, on R's main thread.

use crate::aio::{self, Aio, ERR_CANCELED};
use crate::daemon::{AutoExit, Client, Incoming};
use crate::handle::{get_handle, new_handle, Tagged};
use crate::host::{task_frame, Host, HostConfig, Task};
use crate::launch;
use crate::mirai_object;
use crate::outframe::OutFrame;
use crate::protocol::{
    begin_frame, finish_frame, FLAG_ERROR, FLAG_RAW_ARGS, FLAG_VECTOR, HEADER_LEN, RESULT,
    VECTOR_HEADER_LEN,
};
use crate::rapi::user_interrupted;
use crate::rawargs;
use crate::serial;
use extendr_api::prelude::*;
use extendr_ffi::SEXP;
use std::sync::Arc;
use std::time::Duration;

/// How often a wait wakes to notice Ctrl-C.
const INTERRUPT_SLICE: Duration = Duration::from_millis(100);

pub struct HostHandle(Arc<Host>);
impl Tagged for HostHandle {
    const TAG: &'static std::ffi::CStr = c"mirai_host";
}
impl Drop for HostHandle {
    fn drop(&mut self) {
        self.0.close(false);
    }
}

impl Tagged for Client {
    const TAG: &'static std::ffi::CStr = c"mirai_daemon_connection";
}

fn host(h: &Robj) -> Result<&Arc<Host>> {
    Ok(&get_handle::<HostHandle>(unsafe { h.get() })?.0)
}

/// The aio of a mirai not yet collected; `None` once it has resolved (or
/// for anything that is not a pending mirai).
fn aio_in(m: &Robj) -> Option<Arc<Aio>> {
    mirai_object::aio_of(unsafe { m.get() })
}

fn resolved(a: Option<&Arc<Aio>>) -> bool {
    a.is_none_or(|a| !a.is_pending())
}

fn client(c: &Robj) -> Result<&Client> {
    Ok(get_handle::<Client>(unsafe { c.get() })?)
}

fn robj(x: SEXP) -> Robj {
    Robj::from_sexp(x)
}

fn unresolved_value() -> Robj {
    let mut r = Robj::from(Rbool::na());
    r.set_class(&["unresolvedValue"]).unwrap();
    r
}

/// Optional milliseconds from R: negative (R passes -1) or Inf mean none.
fn millis(ms: f64) -> Option<Duration> {
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_micros((ms * 1000.0) as u64))
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

// ---- hosts ---------------------------------------------------------------

/// Listen at `url`; an ephemeral host serves one task to one process.
/// With `dispatcher`, `memory_mb` (> 0 and finite) bounds queued payloads.
/// Daemons must prove they know `secret`, or a fresh random one if it is empty
/// (the handle's "secret" attribute). A secure URL uses the PEM certificate
/// chain and key given (the key decrypted with `tls_pass` unless NULL), or
/// with none given, single-use credentials whose authority's certificate
/// daemons must trust (the handle's "tlscert" attribute).
#[extendr]
#[allow(clippy::too_many_arguments)]
fn host_listen(
    url: &str,
    ephemeral: bool,
    dispatcher: bool,
    memory_mb: f64,
    secret: &str,
    tls_cert: &str,
    tls_key: &str,
    tls_pass: Robj,
) -> Result<Robj> {
    let memory_limit =
        (memory_mb.is_finite() && memory_mb > 0.0).then_some((memory_mb * 1e6) as u64);
    let secret = if secret.is_empty() {
        crate::host::new_secret().map_err(|e| format!("cannot make a secret: {e}"))?
    } else {
        secret.to_string()
    };
    let tls = host_tls(url, tls_cert, tls_key, tls_pass.as_str())?;
    let config = HostConfig {
        ephemeral,
        dispatcher,
        memory_limit: memory_limit.filter(|_| dispatcher),
        secret: Some(secret.clone().into_bytes()),
        tls: tls.as_ref().map(|t| t.config.clone()),
    };
    let h = Host::listen_with(url, config)?;
    let mut handle = robj(new_handle(Arc::new(HostHandle(h))));
    handle.set_attrib("secret", secret)?;
    if let Some(ca) = tls.and_then(|t| t.ca_pem) {
        handle.set_attrib("tlscert", ca)?;
    }
    Ok(handle)
}

/// The TLS settings for a host at `url`: none unless the URL is secure.
fn host_tls(
    url: &str,
    cert: &str,
    key: &str,
    pass: Option<&str>,
) -> Result<Option<crate::tls::HostTls>> {
    let host = match crate::url::Url::parse(url)? {
        crate::url::Url::Tcp {
            host, tls: true, ..
        } => host,
        _ => return Ok(None),
    };
    let tls = if cert.is_empty() {
        crate::tls::zero_config(&host)?
    } else {
        crate::tls::user_config(cert, key, pass).map_err(|e| format!("`tls`: {e}"))?
    };
    Ok(Some(tls))
}

#[extendr]
fn host_url(h: Robj) -> Result<String> {
    Ok(host(&h)?.url().to_string())
}

/// A mirai object for `aio`.
fn mirai_for(aio: Arc<Aio>) -> Result<Robj> {
    Ok(robj(mirai_object::new_mirai(aio)?))
}

/// Package start-up (from .onLoad): set the closure each mirai's `data`
/// binding copies, and keep Rust panics quiet. An error returned to R
/// travels as a panic inside extendr's wrappers and becomes the R error's
/// message; the default hook would also print it, with a backtrace, to
/// the console.
#[extendr]
fn init_mirai_template(f: Robj) {
    mirai_object::init(unsafe { f.get() });
    crate::rvec::measure_layout();
    std::panic::set_hook(Box::new(|_| {}));
}

/// Serialize `payload` into a task frame and queue it; returns the mirai.
/// While the dispatcher's memory budget is full this waits for room
/// (returning -1L if interrupted meanwhile), or with `try_only` returns
/// NULL at once.
#[extendr]
fn host_submit(h: Robj, payload: Robj, timeout_ms: f64, try_only: bool) -> Result<Robj> {
    mirai_object::collect();
    let host = host(&h)?;
    let aio = host.new_aio();
    let frame = task_out_frame(&aio, unsafe { payload.get() })?;
    let timeout = millis(timeout_ms);
    let mut task = Task {
        aio: aio.clone(),
        frame,
    };
    if host.config().memory_limit.is_none() {
        host.submit(task, timeout);
    } else {
        let wait = if try_only {
            Duration::ZERO
        } else {
            INTERRUPT_SLICE
        };
        loop {
            match host.submit_within_budget(task, timeout, wait) {
                Ok(()) => break,
                Err(_) if try_only => return Ok(Robj::from(())),
                Err(back) => task = back,
            }
            if user_interrupted() {
                return Ok(r!(-1i32));
            }
        }
    }
    mirai_for(aio)
}

/// The TASK frame for `task`: serialized, except that large plain vectors
/// among its objects follow as raw data still in R's memory (see
/// `rawargs`).
fn task_out_frame(aio: &Aio, task: SEXP) -> Result<OutFrame> {
    let raw = rawargs::find(task);
    if raw.is_empty() {
        let frame = serial::with_scratch(|buf| {
            buf.extend_from_slice(&task_frame(aio, 0, 0));
            serial::serialize_into(task, buf)?;
            finish_frame(buf);
            Ok(())
        })?;
        return Ok(frame.into());
    }
    let mut head = task_frame(aio, FLAG_RAW_ARGS, 0);
    let at = head.len();
    head.extend_from_slice(&[0u8; 8]);
    let rest = unsafe { extendr_ffi::Rf_protect(rawargs::without(task, &raw)) };
    let serialized = serial::serialize_into(rest, &mut head);
    unsafe { extendr_ffi::Rf_unprotect(1) };
    serialized?;
    let len = (head.len() - at - 8) as u64;
    head[at..at + 8].copy_from_slice(&len.to_le_bytes());
    head.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    for (arg, _) in &raw {
        arg.encode(&mut head);
    }
    let data: Vec<&[u8]> = raw.iter().map(|(_, d)| *d).collect();
    let body_len = head.len() - HEADER_LEN + data.iter().map(|d| d.len()).sum::<usize>();
    head[1..HEADER_LEN].copy_from_slice(&(body_len as u64).to_le_bytes());
    // the task list refers to every vector sent from R's memory: keeping
    // it keeps them, and stops R from modifying them in place
    Ok(unsafe { OutFrame::with_r_data(head, &data, task) })
}

/// Send `payload` to every daemon, to be evaluated keeping state. With
/// dispatcher, wait (answering Ctrl-C) until at least `min` daemons have
/// run it, counting daemons that connect meanwhile. Returns the list of
/// mirai, or -1L if interrupted.
#[extendr]
fn host_broadcast(h: Robj, payload: Robj, min: i32) -> Result<Robj> {
    let host = host(&h)?;
    let mut body = Vec::new();
    serial::serialize_into(unsafe { payload.get() }, &mut body)?;
    let (index, mut aios) = host.broadcast(body);
    if host.config().dispatcher {
        // daemons lost before answering (errorValue 19) do not count
        let ran = |aios: &[Arc<Aio>]| {
            aios.iter()
                .filter(|a| !a.is_pending() && !a.is_error_code())
                .count()
        };
        loop {
            let seen = aio::generation();
            aios = host.broadcast_aios(index);
            if ran(&aios) >= min.max(0) as usize || host.is_closed() {
                break;
            }
            aio::wait_for_completion(seen, INTERRUPT_SLICE);
            if user_interrupted() {
                return Ok(r!(-1i32));
            }
        }
    }
    let mirai: Vec<Robj> = aios.into_iter().map(mirai_for).collect::<Result<_>>()?;
    Ok(List::from_values(mirai).into())
}

/// c(connections, cumulative, awaiting, executing, completed, memory used,
/// peak and limit in bytes (NA when unbounded), refused peers), as doubles.
#[extendr]
fn host_stats(h: Robj) -> Result<Robj> {
    let s = host(&h)?.stats();
    let limit = s.memory_limit.map_or(f64::NAN, |l| l as f64);
    let v = [
        s.connections as f64,
        s.cumulative as f64,
        s.awaiting as f64,
        s.executing as f64,
        s.completed as f64,
        s.memory_used as f64,
        s.memory_peak as f64,
    ];
    let mut out: Vec<Rfloat> = v.iter().map(|&x| Rfloat::from(x)).collect();
    out.push(if limit.is_nan() {
        Rfloat::na()
    } else {
        Rfloat::from(limit)
    });
    out.push(Rfloat::from(s.refused as f64));
    Ok(r!(out))
}

/// c(connections, cumulative, refused, launched, exited)
#[extendr]
fn host_counts(h: Robj) -> Result<Robj> {
    let counts = host(&h)?.counts().map(|c| c.min(i32::MAX as u64) as i32);
    Ok(r!(counts))
}

/// Wait up to `timeout_ms` for `n` daemons: the number connected, or -1 if
/// interrupted.
#[extendr]
fn host_wait(h: Robj, n: i32, timeout_ms: f64) -> Result<i32> {
    let host = host(&h)?;
    let deadline = std::time::Instant::now() + millis(timeout_ms).unwrap_or(Duration::MAX / 4);
    loop {
        let now = std::time::Instant::now();
        let got = host.wait_connections(n as usize, INTERRUPT_SLICE.min(deadline - now));
        if got >= n as usize || std::time::Instant::now() >= deadline {
            return Ok(got as i32);
        }
        if user_interrupted() {
            return Ok(-1);
        }
    }
}

/// Close a host; returns once its address is free again.
#[extendr]
fn host_close(h: Robj, send_exit: bool) -> Result<()> {
    let host = host(&h)?;
    host.close(send_exit);
    host.wait_stopped(Duration::from_secs(2));
    Ok(())
}

/// Start a daemon process; for an ephemeral host its exit ends the host.
#[extendr]
fn host_launch(h: Robj, program: &str, args: Vec<String>, output: bool) -> Result<i32> {
    let host = host(&h)?.clone();
    host.process_launched();
    let secret = host
        .config()
        .secret
        .as_ref()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    let on_exit: Box<dyn FnOnce() + Send> = Box::new(move || host.process_exited());
    let env = [("MIRAI_SECRET", secret.as_str())];
    let pid = launch::spawn(program, &args, &env, output, Some(on_exit))
        .map_err(|e| format!("cannot start '{program}': {e}"))?;
    Ok(pid as i32)
}

/// The handshake's proof of knowing `secret` for `challenge` (what a
/// daemon sends; used by the tests that play a daemon by hand).
#[extendr]
fn handshake_proof(secret: &str, challenge: Raw) -> Raw {
    Raw::from_bytes(&crate::protocol::proof(
        secret.as_bytes(),
        challenge.as_slice(),
    ))
}

/// This machine's IPv4 addresses, named by interface (`host_url()`).
#[extendr]
fn interface_addresses() -> Robj {
    let found = crate::transport::interface_addresses();
    let names: Vec<String> = found.iter().map(|(n, _)| n.clone()).collect();
    let addrs: Vec<String> = found.iter().map(|(_, ip)| ip.to_string()).collect();
    let mut v = Robj::from(addrs);
    if !names.is_empty() {
        let _ = v.set_names(names);
    }
    v
}

/// One HTTP request (`http_config()` launches): the response status code.
#[extendr]
fn http_request(url: &str, method: &str, headers: Robj, body: &str, timeout_s: f64) -> Result<i32> {
    let names: Vec<String> = headers
        .names()
        .map(|n| n.map(String::from).collect())
        .unwrap_or_default();
    let values: Vec<String> = headers
        .as_str_vector()
        .map(|v| v.into_iter().map(String::from).collect())
        .unwrap_or_default();
    if names.len() != values.len() {
        return Err("`headers` must be a named character vector".into());
    }
    let headers: Vec<(String, String)> = names.into_iter().zip(values).collect();
    let timeout = Duration::from_secs_f64(timeout_s.clamp(0.1, 3600.0));
    Ok(crate::http::request(url, method, &headers, body.as_bytes(), timeout)? as i32)
}

// ---- aios ----------------------------------------------------------------

/// The body of a pending mirai's `data` binding, given the binding's own
/// evaluation frame (whose enclosure is the mirai): collects completed
/// mirai first, so this one's value is there if it has arrived.
#[extendr]
fn mirai_data(frame: Robj) -> Robj {
    mirai_object::collect();
    let m = unsafe { crate::rapi::ENCLOS(frame.get()) };
    match mirai_object::aio_of(m) {
        Some(_) => unresolved_value(),
        // collected: `data` is now a plain binding
        None => robj(unsafe {
            crate::rapi::Rf_findVarInFrame(m, extendr_ffi::Rf_install(c"data".as_ptr()))
        }),
    }
}

#[extendr]
fn aio_unresolved(m: Robj) -> bool {
    mirai_object::collect();
    !resolved(aio_in(&m).as_ref())
}

/// Wait for one aio: false if interrupted.
#[extendr]
fn aio_wait(m: Robj) -> bool {
    let aio = aio_in(&m);
    wait_until(|| resolved(aio.as_ref()))
}

/// Wait for every aio in a list (a map), in order. Returns 0 once all are
/// resolved; with `stop`, the 1-based index of an element that resolved to
/// an error as soon as one does; -1 if interrupted; -2 when `tick_ms`
/// passes first (so R can update a progress bar and call again).
#[extendr]
fn aio_wait_map(list: List, stop: bool, tick_ms: f64) -> Result<i32> {
    let aios: Vec<Option<Arc<Aio>>> = list.iter().map(|(_, m)| aio_in(&m)).collect();
    let pending = |i: usize| !resolved(aios[i].as_ref());
    let first_error = || {
        aios.iter()
            .position(|a| a.as_ref().is_some_and(|a| a.is_error()))
            .map(|i| i as i32 + 1)
    };
    let tick = millis(tick_ms).map(|d| std::time::Instant::now() + d);
    let mut errors_seen = aio::error_count();
    if stop {
        if let Some(i) = first_error() {
            return Ok(i);
        }
    }
    let mut next = 0;
    loop {
        let seen = aio::generation();
        while next < aios.len() && !pending(next) {
            next += 1;
        }
        if stop && aio::error_count() != errors_seen {
            errors_seen = aio::error_count();
            if let Some(i) = first_error() {
                return Ok(i);
            }
        }
        if next == aios.len() {
            return Ok(0);
        }
        if tick.is_some_and(|t| std::time::Instant::now() >= t) {
            return Ok(-2);
        }
        aio::wait_for_completion(seen, INTERRUPT_SLICE);
        if user_interrupted() {
            return Ok(-1);
        }
    }
}

/// How many aios of a list are resolved.
#[extendr]
fn aio_count_resolved(list: List) -> i32 {
    list.iter()
        .filter(|(_, m)| resolved(aio_in(m).as_ref()))
        .count() as i32
}

/// Index (1-based) of the first resolved aio in the list, waiting for one;
/// 0 for an empty list, -1 if interrupted. Non-aio elements count as
/// resolved (their mirai already hold a value).
#[extendr]
fn aio_race(list: List) -> Result<i32> {
    if list.is_empty() {
        return Ok(0);
    }
    let aios: Vec<Option<Arc<Aio>>> = list.iter().map(|(_, m)| aio_in(&m)).collect();
    let first = || aios.iter().position(|a| resolved(a.as_ref()));
    if !wait_until(|| first().is_some()) {
        return Ok(-1);
    }
    Ok(first().map_or(0, |i| i as i32 + 1))
}

/// Resolve a pending aio to errorValue 20, stopping its task where the
/// dispatcher can: true if it was still pending.
#[extendr]
fn aio_cancel(m: Robj) -> bool {
    aio_in(&m).is_some_and(|a| a.cancel(ERR_CANCELED))
}

// ---- daemons -------------------------------------------------------------

/// Connect a daemon to its host. `autoexit`: TRUE, NA or FALSE.
#[extendr]
fn daemon_dial(
    url: &str,
    asyncdial: bool,
    autoexit: Rbool,
    tempdir: &str,
    secret: &str,
    tlscert: &str,
) -> Result<Robj> {
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
    )?;
    Ok(robj(new_handle(Arc::new(c))))
}

/// Wait for the next task: `list(id, flags, epoch, payload)` (with a fifth
/// element, the error message, if the payload could not be read), or an integer
/// code: 0 connection ended, 1 idle time reached, 2 told to exit,
/// -1 interrupted. A refusal by the host is an R error.
#[extendr]
fn daemon_recv(c: Robj, idle_ms: f64) -> Result<Robj> {
    let client = client(&c)?;
    let deadline = millis(idle_ms).map(|d| std::time::Instant::now() + d);
    loop {
        let slice = match deadline {
            Some(d) => {
                let now = std::time::Instant::now();
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
            }) => {
                // A task that cannot be rebuilt here (say, it needs a package
                // this machine lacks) still gets an answer: its error message.
                let task = match client.with_task_body(serial::unserialize) {
                    Ok(task) => robj(task),
                    Err(e) => {
                        // its raw vectors are still to come: drop them
                        let rest = raw.iter().map(|(_, n)| n).sum();
                        if !client.skip_raw(epoch, rest) {
                            return Ok(r!(-1));
                        }
                        client.start_task(id, epoch);
                        return Ok(list!(id as f64, flags as i32, epoch as f64, (), e).into());
                    }
                };
                match fill_raw_args(client, epoch, &task, &raw) {
                    Ok(()) => {}
                    Err(RawError::Connection) => return Ok(r!(-1)),
                    Err(RawError::Task(e)) => {
                        client.start_task(id, epoch);
                        return Ok(list!(id as f64, flags as i32, epoch as f64, (), e).into());
                    }
                }
                client.start_task(id, epoch);
                return Ok(list!(id as f64, flags as i32, epoch as f64, task).into());
            }
            Some(Incoming::Disconnected) => return Ok(r!(0)),
            Some(Incoming::Exit) => return Ok(r!(2)),
            Some(Incoming::Refused(why)) => {
                return Err(format!("the host refused this daemon: {why}").into())
            }
            None => {
                if user_interrupted() {
                    return Ok(r!(-1));
                }
            }
        }
    }
}

enum RawError {
    /// The connection failed mid-task.
    Connection,
    /// The task cannot be rebuilt (the message says why).
    Task(String),
}

/// Read a task's raw vectors (see `rawargs`) straight into new R vectors
/// and put them in their places in `task`. On a task error, the vectors
/// not yet read are still on the connection.
fn fill_raw_args(
    client: &Client,
    epoch: u64,
    task: &Robj,
    raw: &[(rawargs::RawArg, usize)],
) -> std::result::Result<(), RawError> {
    if !raw.is_empty() {
        // Free the previous large task's vectors before allocating this
        // one's: R would collect them only later, after the process had
        // grown by fresh memory that costs page faults to fill.
        unsafe { crate::rapi::R_gc() };
    }
    for (i, (arg, _)) in raw.iter().enumerate() {
        let Some(mut buf) = rawargs::buffer(arg) else {
            let rest = raw[i..].iter().map(|(_, n)| n).sum();
            if !client.skip_raw(epoch, rest) {
                return Err(RawError::Connection);
            }
            return Err(RawError::Task(
                "not enough memory for the task's data".into(),
            ));
        };
        if !client.read_raw(epoch, buf.data_mut()) {
            return Err(RawError::Connection);
        }
        let v = rawargs::into_vector(arg, buf).map(robj);
        let placed = v
            .as_ref()
            .is_some_and(|v| rawargs::put_back(unsafe { task.get() }, arg, unsafe { v.get() }));
        if !placed {
            let rest = raw[i + 1..].iter().map(|(_, n)| n).sum();
            if !client.skip_raw(epoch, rest) {
                return Err(RawError::Connection);
            }
            return Err(RawError::Task("malformed task".into()));
        }
    }
    Ok(())
}

/// Send the result of task `id` back on the connection it came from.
#[extendr]
fn daemon_send(c: Robj, id: f64, epoch: f64, value: Robj, is_error: bool) -> Result<()> {
    let client = client(&c)?;
    // a large plain vector goes as raw data, straight from R's memory
    if let Some((t, n, data)) = crate::rvec::plain_vector(unsafe { value.get() }, 4 << 20) {
        let mut head = begin_frame(RESULT, VECTOR_HEADER_LEN);
        head.extend_from_slice(&(id as u64).to_le_bytes());
        head.push(FLAG_VECTOR);
        head.push(t);
        head.extend_from_slice(&[0u8; 7]);
        head.extend_from_slice(&(n as u64).to_le_bytes());
        let len = (head.len() - crate::protocol::HEADER_LEN + data.len()) as u64;
        head[1..crate::protocol::HEADER_LEN].copy_from_slice(&len.to_le_bytes());
        client.write_parts(epoch as u64, &[&head, data]);
        return Ok(());
    }
    client.send(epoch as u64, |frame| {
        frame.extend_from_slice(&begin_frame(RESULT, 0));
        frame.extend_from_slice(&(id as u64).to_le_bytes());
        frame.push(if is_error { FLAG_ERROR } else { 0 });
        serial::serialize_into(unsafe { value.get() }, frame)?;
        finish_frame(frame);
        Ok(())
    })?;
    Ok(())
}

#[extendr]
fn daemon_finish(c: Robj) -> Result<()> {
    client(&c)?.finish();
    Ok(())
}

/// Whether R's options are as in `snapshot` (`as.list(.Options)` taken
/// earlier), by identity: a daemon's cheap check after each task.
#[extendr]
fn options_unchanged(snapshot: Robj) -> bool {
    crate::cleanup::options_unchanged(unsafe { snapshot.get() })
}

/// Serialize and unserialize `x` through the stream API (for tests).
#[extendr]
fn serial_roundtrip(x: Robj) -> Result<Robj> {
    let mut buf = Vec::new();
    serial::serialize_into(unsafe { x.get() }, &mut buf)?;
    Ok(robj(serial::unserialize(&buf)?))
}

extendr_module! {
    mod exports;
    fn init_mirai_template;
    fn host_listen;
    fn host_url;
    fn host_submit;
    fn host_broadcast;
    fn host_counts;
    fn host_stats;
    fn host_wait;
    fn host_close;
    fn host_launch;
    fn http_request;
    fn interface_addresses;
    fn handshake_proof;
    fn mirai_data;
    fn aio_unresolved;
    fn aio_wait;
    fn aio_wait_map;
    fn aio_count_resolved;
    fn aio_race;
    fn aio_cancel;
    fn daemon_dial;
    fn daemon_recv;
    fn daemon_send;
    fn daemon_finish;
    fn serial_roundtrip;
    fn options_unchanged;
}
