//! Launching daemons elsewhere (launch.R): HTTP requests, this machine's
//! addresses; and the handshake proof the tests use to play a daemon.

use super::r_error;
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
        return Err(r_error("`headers` must be a named character vector"));
    }
    let headers: Vec<(String, String)> = names.into_iter().zip(values).collect();
    let timeout = Duration::from_secs_f64(timeout_s.clamp(0.1, 3600.0));
    let code = crate::launch::http::request(url, method, &headers, body.as_bytes(), timeout)
        .map_err(r_error)?;
    Ok(code as i32)
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
    fn http_request;
    fn handshake_proof;
    fn serial_roundtrip;
}
