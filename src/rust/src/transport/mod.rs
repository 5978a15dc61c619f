//! Listening at and dialling URLs: one byte-stream type over every transport,
//! so the host and daemon code never look at which one they are on.
//!
//! TLS and websocket connections reach that code through a Unix socketpair:
//! a *carrier* task on the runtime moves bytes between the encrypted or
//! framed connection and one end of the pair, and the protocol code uses
//! the other end as if it were a plain socket (see [`carrier`]). The
//! host's direct writes and the daemon's peeking for cancellation then
//! work on every transport, at the cost of one memory copy that encryption
//! dwarfs anyway.

mod carrier;
mod dial;
pub mod interfaces;
pub mod keepalive;
mod listen;
pub mod tls;
pub mod url;
pub mod websocket;

pub use dial::{dial_sync, SyncStream};
pub use interfaces::interface_addresses;
pub use listen::{bind, Accepted, Listener};

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

/// Any connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub type BoxStream = Pin<Box<dyn Stream>>;

/// A listen or dial failure, as R reports it: an error code and its
/// message ("10 | Address in use"), with the underlying reason for logs.
#[derive(Debug)]
pub struct TransportError {
    pub code: i32,
    pub reason: String,
}

impl TransportError {
    pub fn io(e: &io::Error) -> TransportError {
        let reason = e.to_string();
        let certificate = reason.contains("certificate") || reason.contains("UnknownIssuer");
        TransportError {
            code: if certificate {
                crate::codes::PEER_AUTH
            } else {
                crate::codes::of_io(e)
            },
            reason,
        }
    }

    pub fn url(e: url::UrlError) -> TransportError {
        let code = if e.why.starts_with("unknown scheme") {
            crate::codes::NOT_SUPPORTED
        } else {
            crate::codes::ADDRESS_INVALID
        };
        TransportError {
            code,
            reason: e.to_string(),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::codes::describe(self.code))
    }
}

/// Socket buffer size asked for on every connection: large messages then
/// move in fewer, larger steps (the kernel caps it at its own maximum).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

fn enlarge_buffers(fd: RawFd) {
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads an int-sized option value from a valid
        // pointer; failure (not a socket, kernel limits) is harmless.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &SOCKET_BUFFER as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}
