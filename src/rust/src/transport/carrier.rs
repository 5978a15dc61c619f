//! Carriers: a task on the runtime that moves bytes between an encrypted
//! or websocket-framed connection and one end of a Unix socketpair, whose
//! other end the protocol code uses as if it were a plain socket.

use super::enlarge_buffers;
use super::websocket::{self, Role};
use std::io;
use std::os::fd::AsRawFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

/// Bytes a carrier moves per read, each way: large messages pass in few
/// steps, while a host with thousands of TLS daemons holds 128 KiB each.
const CARRIER_BUFFER: usize = 64 * 1024;

/// A connected pair of non-blocking Unix sockets with large buffers.
pub fn socket_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    enlarge_buffers(a.as_raw_fd());
    enlarge_buffers(b.as_raw_fd());
    Ok((a, b))
}

/// Finish the websocket handshake on `outer` if there is one, then move
/// bytes between `outer` and `inner` in a task of their own until either
/// side closes. `authority` is the `host:port` a client asks for.
pub async fn start_carrier<S>(
    mut outer: S,
    mut inner: UnixStream,
    ws: Option<&str>,
    role: Role,
    authority: &str,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    match ws {
        Some(path) => {
            // an empty path is the root of the server
            let path = if path.is_empty() { "/" } else { path };
            match role {
                Role::Server => websocket::accept(&mut outer, path).await?,
                Role::Client => websocket::connect(&mut outer, authority, path).await?,
            }
            tokio::spawn(websocket::pump(outer, inner, role));
        }
        None => {
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut outer,
                    &mut inner,
                    CARRIER_BUFFER,
                    CARRIER_BUFFER,
                )
                .await;
            });
        }
    }
    Ok(())
}
