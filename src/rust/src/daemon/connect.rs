//! A daemon's side of the handshake: HELLO, the proof of its secret if the
//! host challenges it, and the host's WELCOME (with this daemon's set-up,
//! and the profile's serialization configuration after it if announced)
//! or REJECT.

use crate::protocol::frame::{frame, read_frame_blocking, FRAME_MAX, HANDSHAKE_MAX};
use crate::protocol::handshake::{hello_body, proof, Welcome, PACKAGE_VERSION, PROTOCOL_VERSION};
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
    let hello = frame(HELLO, &hello_body(PROTOCOL_VERSION, &advertised_version()));
    (&s).write_all(&hello).map_err(io)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io)?;
    let mut reply = read_frame_blocking(&s, HANDSHAKE_MAX).map_err(io)?;
    if reply.kind == CHALLENGE {
        (&s).write_all(&frame(PROOF, &proof(secret, &reply.body)))
            .map_err(io)?;
        reply = read_frame_blocking(&s, HANDSHAKE_MAX).map_err(|e| {
            // dropped without a word: most likely the host did not accept
            // our proof (the host may also have gone)
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                DialError::NotAdmitted
            } else {
                io(e)
            }
        })?;
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
