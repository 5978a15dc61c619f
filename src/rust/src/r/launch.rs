//! Launching daemons elsewhere (launch.R): HTTP requests, this machine's
//! addresses; and the handshake proof the tests use to play a daemon.

use super::unwind::user_interrupted;
use super::{not_forked, r_error, INTERRUPT_SLICE};
use crate::launch::http::{self, HttpError};
use extendr_api::prelude::*;
use std::time::Duration;

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

/// This machine's host name ("" if it has none).
#[extendr]
fn host_name() -> String {
    crate::transport::interfaces::hostname().unwrap_or_default()
}

/// Run a launch command line (`launch_remote()` with a configured command)
/// without waiting. The host's `secret` goes into the command's
/// environment, and with `secret_on_stdin` also onto its standard input
/// (how an ssh launch hands it to the remote daemon); never into its
/// arguments. `detach`: see `process::run_shell`.
#[extendr]
fn launch_command(line: &str, secret: &str, secret_on_stdin: bool, detach: bool) -> Result<i32> {
    not_forked()?;
    let env = [("MIRAI_SECRET", secret)];
    let line_in = format!("{secret}\n");
    let stdin = secret_on_stdin.then_some(line_in.as_bytes());
    let pid = crate::launch::process::run_shell(line, &env, stdin, detach)
        .map_err(|e| r_error(format!("cannot run the launch command: {e}")))?;
    Ok(pid as i32)
}

/// One HTTP(S) request (`http_config()` launches, the Posit Workbench
/// look-up), waited for on this thread in slices so that Ctrl-C stops it.
/// `cafile` names a PEM file of authorities to trust for `https://`
/// instead of the system's ("" for the system's). Gives
/// `list(status = <int>, headers = <named chr>, data = <chr>)`, or the
/// error's message (a string), or NULL when interrupted (R raises it).
#[extendr]
fn http_request(
    url: &str,
    method: &str,
    headers: Robj,
    body: &str,
    timeout_s: f64,
    cafile: &str,
) -> Result<Robj> {
    not_forked()?;
    let names: Vec<String> = headers
        .names()
        .map(|n| n.map(String::from).collect())
        .unwrap_or_default();
    let values: Vec<String> = match headers.as_str_vector() {
        Some(v) => v.into_iter().map(String::from).collect(),
        None if headers.is_null() || headers.len() == 0 => Vec::new(),
        None => return Err(r_error("`headers` must be a named character vector")),
    };
    if names.len() != values.len() {
        return Err(r_error("`headers` must be a named character vector"));
    }
    let fail = |e: HttpError| -> Result<Robj> {
        Ok(Robj::from(format!("HTTP request to '{url}' failed: {e}")))
    };
    let ca_pem = match cafile {
        "" => None,
        path => match http::read_ca_file(path) {
            Ok(pem) => Some(pem),
            Err(e) => return fail(e),
        },
    };
    let timeout = if timeout_s.is_finite() {
        Duration::from_secs_f64(timeout_s.clamp(0.01, 86400.0))
    } else {
        Duration::from_secs(86400)
    };
    let request = http::Request {
        url: url.to_string(),
        method: method.to_string(),
        headers: names.into_iter().zip(values).collect(),
        body: body.as_bytes().to_vec(),
        timeout,
        ca_pem,
    };
    let pending = match http::start(request) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let response = loop {
        if let Some(outcome) = pending.wait(INTERRUPT_SLICE) {
            break outcome;
        }
        if user_interrupted() {
            // dropping `pending` abandons the request
            return Ok(Robj::from(()));
        }
    };
    match response {
        Ok(r) => Ok(response_list(&r)),
        Err(e) => fail(e),
    }
}

/// Text for R: invalid UTF-8 replaced, and no NUL (R strings cannot hold
/// one).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

fn response_list(r: &http::Response) -> Robj {
    let names: Vec<String> = r.headers.iter().map(|(k, _)| text(k.as_bytes())).collect();
    let values: Vec<String> = r.headers.iter().map(|(_, v)| text(v.as_bytes())).collect();
    let mut headers = Robj::from(values);
    if !names.is_empty() {
        let _ = headers.set_names(names);
    }
    let status = r.status as i32;
    let data = text(&r.body);
    list!(status = status, headers = headers, data = data).into()
}

/// The daemon's proof of knowing `secret` for a pair of nonces (what a
/// daemon sends; used by the tests that play a daemon by hand).
#[extendr]
fn handshake_proof(secret: &str, daemon_nonce: Raw, host_nonce: Raw) -> Result<Raw> {
    use crate::protocol::{Nonce, Side};
    let nonce = |r: &Raw| -> Result<Nonce> {
        r.as_slice()
            .try_into()
            .map_err(|_| r_error("a nonce is 32 bytes"))
    };
    let (d, h) = (nonce(&daemon_nonce)?, nonce(&host_nonce)?);
    Ok(Raw::from_bytes(&crate::protocol::proof(
        secret.as_bytes(),
        Side::Daemon,
        &d,
        &h,
    )))
}

/// Serialize and unserialize `x` through the stream API (for tests).
#[extendr]
fn serial_roundtrip(x: Robj) -> Result<Robj> {
    let mut buf = Vec::new();
    // SAFETY: `x` is protected by extendr for this call.
    super::serial::serialize_into(unsafe { x.get() }, &mut buf).map_err(r_error)?;
    Ok(super::robj(
        super::serial::unserialize(&buf).map_err(r_error)?,
    ))
}

extendr_module! {
    mod launch;
    fn interface_addresses;
    fn host_name;
    fn launch_command;
    fn http_request;
    fn handshake_proof;
    fn serial_roundtrip;
}
