//! A daemon's side of the handshake: HELLO with its nonce; if the host
//! challenges it, a check of the host's proof and then this daemon's own;
//! and the host's WELCOME (with this daemon's set-up,
//! and the profile's serialization configuration after it if announced)
//! or REJECT.

use crate::protocol::frame::{frame, read_frame_blocking, FRAME_MAX, HANDSHAKE_MAX};
use crate::protocol::handshake::{
    hello_body, new_nonce, proof, proof_matches, Challenge, Side, Welcome, PACKAGE_VERSION,
    PROTOCOL_VERSION,
};
use crate::protocol::message::{SerialConfig, CHALLENGE, HELLO, PROOF, REJECT, WELCOME};
use crate::transport::url::Url;
use crate::transport::{dial_sync, SyncStream, TransportError};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum DialError {
    /// No connection, or it dropped during the handshake.
    Transport(TransportError),
    /// The connection dropped right after our proof: most likely the host
    /// does not know our secret.
    NotAdmitted,
    /// The host refused this daemon, saying why.
    Refused(String),
    /// The host at this URL skipped the challenge or failed its proof: it
    /// does not know the secret, so its tasks must never run.
    HostUnproven(String),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Transport(e) => write!(f, "{e}"),
            DialError::NotAdmitted => f.write_str(
                "the host closed the connection after the challenge: \
                 was this daemon launched by it (MIRAI_SECRET)?",
            ),
            DialError::Refused(r) => write!(f, "the host refused this daemon: {r}"),
            DialError::HostUnproven(url) => write!(
                f,
                "the host at {url} did not prove it knows the secret: refusing it"
            ),
        }
    }
}

/// A connection through the handshake, and what the host gave.
pub struct Connected {
    pub stream: SyncStream,
    pub welcome: Welcome,
    /// The profile's serialization configuration, if the host has one.
    pub serial: Option<Vec<u8>>,
}

/// Dial `url` and complete the handshake.
pub fn connect_once(
    url: &Url,
    secret: &[u8],
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Connected, DialError> {
    let io = |e: std::io::Error| DialError::Transport(TransportError::io(&e));
    let s = dial_sync(url, DIAL_TIMEOUT, tls).map_err(io)?;
    let ours = new_nonce().map_err(io)?;
    let hello = frame(
        HELLO,
        &hello_body(PROTOCOL_VERSION, &advertised_version(), &ours),
    );
    (&s).write_all(&hello).map_err(io)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io)?;
    let mut reply = read_frame_blocking(&s, HANDSHAKE_MAX).map_err(io)?;
    // With a secret, only a host that proves it knows it is served: one
    // that skips the challenge or fails its proof could run anything here.
    let unproven = || DialError::HostUnproven(url.to_string());
    if reply.kind == CHALLENGE {
        let c = Challenge::decode(&reply).map_err(|_| unproven())?;
        if !proof_matches(secret, Side::Host, &ours, &c.nonce, &c.proof) {
            return Err(match secret.is_empty() {
                // no secret of our own: it is this daemon that cannot prove
                true => DialError::NotAdmitted,
                false => unproven(),
            });
        }
        let mine = proof(secret, Side::Daemon, &ours, &c.nonce);
        (&s).write_all(&frame(PROOF, &mine)).map_err(io)?;
        reply = read_frame_blocking(&s, HANDSHAKE_MAX).map_err(|e| {
            // dropped without a word: most likely the host did not accept
            // our proof (the host may also have gone)
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                DialError::NotAdmitted
            } else {
                io(e)
            }
        })?;
    } else if reply.kind == WELCOME && !secret.is_empty() {
        return Err(unproven());
    }
    match reply.kind {
        WELCOME => {
            let welcome = Welcome::decode(&reply).map_err(io)?;
            // the host is admitted-to now, so a configuration may be large
            let serial = match welcome.serial {
                true => {
                    let f = read_frame_blocking(&s, FRAME_MAX).map_err(io)?;
                    Some(SerialConfig::decode(&f).map_err(io)?.config)
                }
                false => None,
            };
            s.set_read_timeout(None).map_err(io)?;
            Ok(Connected {
                stream: s,
                welcome,
                serial,
            })
        }
        REJECT => Err(DialError::Refused(
            String::from_utf8_lossy(&reply.body).into_owned(),
        )),
        _ => Err(io(crate::protocol::invalid(
            "unexpected reply to the handshake",
        ))),
    }
}

/// The package version this daemon announces. `MIRAI_ADVERTISED_VERSION`
/// overrides it, so the tests can play a daemon of another version.
fn advertised_version() -> String {
    std::env::var("MIRAI_ADVERTISED_VERSION").unwrap_or_else(|_| PACKAGE_VERSION.to_string())
}
