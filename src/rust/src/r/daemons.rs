//! Compute profiles' hosts (daemons.R): listening, status, waiting for
//! daemons, launching local ones, closing.

use super::handle::{get_handle, new_handle, Tagged};
use super::refhooks::Hooks;
use super::unwind::user_interrupted;
use super::{millis, not_forked, r_error, robj, INTERRUPT_SLICE};
use crate::host::{Host, HostConfig};
use crate::launch::process;
use crate::transport::tls::{user_config, zero_config, HostTls};
use crate::transport::url::Url;
use extendr_api::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A profile's host, owned by R: closed when R lets go of it.
pub struct HostHandle(pub Arc<Host>);

impl Tagged for HostHandle {
    const TAG: &'static std::ffi::CStr = c"mirai_host";
}

impl Drop for HostHandle {
    fn drop(&mut self) {
        self.0.close(false);
    }
}

/// The host behind a profile's handle.
pub(super) fn host(h: &Robj) -> Result<&Arc<Host>> {
    // SAFETY: the handle is checked for its tag before use.
    Ok(&get_handle::<HostHandle>(unsafe { h.get() })
        .map_err(r_error)?
        .0)
}

/// The TLS settings for a host at `url`: none unless the URL is secure;
/// the user's certificate and key if given, else single-use credentials.
fn host_tls(url: &str, cert: &str, key: &str, pass: Option<&str>) -> Result<Option<HostTls>> {
    let host = match Url::parse(url) {
        Ok(Url::Tcp {
            host, tls: true, ..
        }) => host,
        _ => return Ok(None),
    };
    let tls = if cert.is_empty() {
        zero_config(&host).map_err(r_error)?
    } else {
        user_config(cert, key, pass).map_err(|e| r_error(format!("`tls`: {e}")))?
    };
    Ok(Some(tls))
}

/// Listen at `url`. With `dispatcher`, `memory_mb` (> 0 and finite)
/// bounds queued payloads, daemons get random-number streams following
/// `stream` (a `.Random.seed`, or NULL), and a task lost with its daemon
/// is queued again up to `retry` times. Daemons must prove they know
/// `secret`, or a fresh random one if it is empty (the handle's "secret"
/// attribute). A secure URL uses the PEM certificate chain and key given
/// (the key decrypted with `tls_pass` unless NULL), or with none given,
/// single-use credentials whose authority's certificate daemons must
/// trust (the handle's "tlscert" attribute). With dispatcher, `serial` (a
/// `serial_config()` list, or NULL) is the profile's serialization
/// configuration: sent to every daemon as it connects, and kept as the
/// handle's "serial" attribute for the tasks and results of the profile.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn host_listen(
    url: &str,
    dispatcher: bool,
    memory_mb: f64,
    secret: &str,
    tls_cert: &str,
    tls_key: &str,
    tls_pass: Robj,
    stream: Robj,
    retry: i32,
    serial: Robj,
) -> Result<Robj> {
    not_forked()?;
    let memory_limit =
        (memory_mb.is_finite() && memory_mb > 0.0).then_some((memory_mb * 1e6) as u64);
    let secret = match secret.is_empty() {
        true => crate::host::new_secret().map_err(r_error)?,
        false => secret.to_string(),
    };
    let stream = match stream.as_integer_slice() {
        Some(s) if s.len() == 7 => Some(<[i32; 7]>::try_from(s).expect("length 7")),
        _ => None,
    };
    let tls = host_tls(url, tls_cert, tls_key, tls_pass.as_str())?;
    // SAFETY: `serial` is protected by extendr for this call.
    let hooked = dispatcher && unsafe { Hooks::from_config(serial.get()) }.is_some();
    let serial_bytes = match hooked {
        true => {
            let mut buf = Vec::new();
            // SAFETY: as above.
            super::serial::serialize_into(unsafe { serial.get() }, &mut buf).map_err(r_error)?;
            Some(Arc::<[u8]>::from(buf))
        }
        false => None,
    };
    let config = HostConfig {
        ephemeral: false,
        dispatcher,
        memory_limit: memory_limit.filter(|_| dispatcher),
        secret: Some(secret.clone().into_bytes()),
        tls: tls.as_ref().map(|t| t.config.clone()),
        stream,
        retry: retry.max(0) as u32,
        serial: serial_bytes,
    };
    let h = Host::listen_with(url, config).map_err(r_error)?;
    let mut handle = robj(new_handle(Arc::new(HostHandle(h))));
    handle.set_attrib("secret", secret)?;
    if hooked {
        handle.set_attrib("serial", serial)?;
    }
    if let Some(ca) = tls.and_then(|t| t.ca_pem) {
        handle.set_attrib("tlscert", ca)?;
    }
    Ok(handle)
}

/// The URL daemons dial, as bound.
#[extendr]
fn host_url(h: Robj) -> Result<String> {
    Ok(host(&h)?.url().to_string())
}

/// c(connections, cumulative, awaiting, executing, completed, memory used,
/// peak and limit in bytes (NA when unbounded), refused peers, retried
/// tasks), as doubles.
#[extendr]
fn host_stats(h: Robj) -> Result<Robj> {
    let s = host(&h)?.stats();
    let mut out: Vec<Rfloat> = [
        s.connections,
        s.cumulative,
        s.awaiting,
        s.executing,
        s.completed,
        s.memory_used,
        s.memory_peak,
    ]
    .iter()
    .map(|&x| Rfloat::from(x as f64))
    .collect();
    out.push(
        s.memory_limit
            .map_or(Rfloat::na(), |l| Rfloat::from(l as f64)),
    );
    out.push(Rfloat::from(s.refused as f64));
    out.push(Rfloat::from(s.retries as f64));
    Ok(r!(out))
}

/// c(daemon processes launched for this host, how many have exited)
#[extendr]
fn host_processes(h: Robj) -> Result<Robj> {
    let (launched, exited) = host(&h)?.processes();
    Ok(r!([launched as f64, exited as f64]))
}

/// Wait up to `timeout_ms` for `n` daemons: the number connected, or -1 if
/// interrupted.
#[extendr]
fn host_wait(h: Robj, n: i32, timeout_ms: f64) -> Result<i32> {
    not_forked()?;
    let host = host(&h)?;
    let deadline = Instant::now() + millis(timeout_ms).unwrap_or(Duration::MAX / 4);
    loop {
        let now = Instant::now();
        let got = host.wait_connections(n as usize, INTERRUPT_SLICE.min(deadline - now));
        if got >= n as usize || Instant::now() >= deadline {
            return Ok(got as i32);
        }
        if user_interrupted() {
            return Ok(-1);
        }
    }
}

/// Close a host, resolving its unfinished tasks to errorValue 19 at once;
/// returns once its address is free again.
#[extendr]
fn host_close(h: Robj, send_exit: bool) -> Result<()> {
    let host = host(&h)?;
    host.close(send_exit);
    if !crate::runtime::inherited_by_fork() {
        host.wait_stopped(Duration::from_secs(2));
    }
    super::mirai::collect();
    Ok(())
}

/// Start a daemon process for `host`, telling it the secret in its
/// environment; for an ephemeral host its exit ends the host. Returns its
/// pid.
pub(super) fn launch(
    host: &Arc<Host>,
    program: &str,
    args: &[String],
    output: bool,
    secret: &str,
) -> Result<i32> {
    host.process_launched();
    let h = host.clone();
    let on_exit: Box<dyn FnOnce() + Send> = Box::new(move || h.process_exited());
    let env = [("MIRAI_SECRET", secret)];
    let pid = process::spawn(program, args, &env, output, Some(on_exit))
        .map_err(|e| r_error(format!("cannot start '{program}': {e}")))?;
    Ok(pid as i32)
}

/// Start a daemon process (`program args...`) for a profile's host.
#[extendr]
fn host_launch(h: Robj, program: &str, args: Vec<String>, output: bool) -> Result<i32> {
    not_forked()?;
    let host = host(&h)?;
    let secret = host
        .config()
        .secret
        .as_ref()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    launch(host, program, &args, output, &secret)
}

extendr_module! {
    mod daemons;
    fn host_listen;
    fn host_url;
    fn host_stats;
    fn host_processes;
    fn host_wait;
    fn host_close;
    fn host_launch;
}
