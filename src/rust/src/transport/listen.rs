//! Listening: binding a URL and accepting connections. TLS and websocket
//! handshakes are left to [`Accepted::open`], run in each connection's own
//! task, so a peer that stalls there holds up no one else.

use super::carrier::{socket_pair, start_carrier};
use super::url::Url;
use super::websocket::Role;
use super::{enlarge_buffers, BoxStream};
use rustls::ServerConfig;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream, UnixListener};

/// What a host's TCP connections are wrapped in before the protocol.
#[derive(Clone, Default)]
pub struct Layers {
    pub tls: Option<Arc<ServerConfig>>,
    /// The websocket path daemons must ask for.
    pub ws: Option<String>,
}

pub enum Listener {
    Tcp(TcpListener, Layers),
    /// With the path of the socket file, removed when the listener goes.
    Unix(UnixListener, Option<String>),
}

/// Bind `url`, with `tls` the host's settings for a secure URL; returns the
/// listener and the URL as actually bound (port 0 replaced by the assigned
/// port). Must run inside the runtime.
pub async fn bind(url: &Url, tls: Option<Arc<ServerConfig>>) -> io::Result<(Listener, Url)> {
    match url {
        Url::Tcp {
            host,
            port,
            tls: secure,
            ws,
        } => {
            if *secure && tls.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a secure URL needs TLS credentials",
                ));
            }
            // an empty host listens on every interface
            let addr = if host.is_empty() { "0.0.0.0" } else { host };
            let l = TcpListener::bind((addr, *port)).await?;
            let port = l.local_addr()?.port();
            let layers = Layers {
                tls: if *secure { tls } else { None },
                ws: ws.clone(),
            };
            Ok((Listener::Tcp(l, layers), url.with_port(port)))
        }
        Url::Ipc(path) => {
            remove_stale_socket(path)?;
            let l = UnixListener::bind(path)?;
            Ok((Listener::Unix(l, Some(path.clone())), url.clone()))
        }
        Url::Abstract(name) => {
            let l = abstract_listener(name)?;
            Ok((Listener::Unix(l, None), url.clone()))
        }
        Url::Inproc(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "inproc:// URLs are for synchronous profiles only",
        )),
    }
}

#[cfg(target_os = "linux")]
fn abstract_listener(name: &str) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let l = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    l.set_nonblocking(true)?;
    UnixListener::from_std(l)
}

#[cfg(not(target_os = "linux"))]
fn abstract_listener(_: &str) -> io::Result<UnixListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

fn is_socket(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// A socket file left by a host that died cannot be bound over: remove
/// it, but only if it is a socket and nothing answers there. Anything
/// else at the path (a user's file, a directory, a live socket) is left
/// alone and binding fails: an address in use.
fn remove_stale_socket(path: &str) -> io::Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if !is_socket(path) || std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("'{path}' exists and is not a stale socket"),
        ));
    }
    std::fs::remove_file(path)
}

/// An accepted connection, not yet ready for the protocol while it still
/// has a TLS or websocket handshake to go through.
pub enum Accepted {
    Ready(BoxStream, RawFd),
    Layered(TcpStream, Layers),
}

impl Listener {
    /// Accept a connection (its handshakes, and larger socket buffers, are
    /// left to [`Accepted::open`], once the host lets the peer in).
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l, layers) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                super::keepalive::watch_tcp(&s);
                let fd = s.as_raw_fd();
                if layers.tls.is_none() && layers.ws.is_none() {
                    return Ok(Accepted::Ready(Box::pin(s), fd));
                }
                Ok(Accepted::Layered(s, layers.clone()))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                let fd = s.as_raw_fd();
                Ok(Accepted::Ready(Box::pin(s), fd))
            }
        }
    }
}

impl Accepted {
    /// Complete the connection's handshakes: the stream for the protocol
    /// and a socket to which bytes may be written directly.
    pub async fn open(self) -> io::Result<(BoxStream, RawFd)> {
        match self {
            Accepted::Ready(s, fd) => {
                enlarge_buffers(fd);
                Ok((s, fd))
            }
            Accepted::Layered(tcp, layers) => {
                enlarge_buffers(tcp.as_raw_fd());
                let (ours, theirs) = socket_pair()?;
                let ws = layers.ws.as_deref();
                match layers.tls {
                    Some(config) => {
                        let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
                        start_carrier(tls, theirs, ws, Role::Server, "").await?
                    }
                    None => start_carrier(tcp, theirs, ws, Role::Server, "").await?,
                }
                let fd = ours.as_raw_fd();
                Ok((Box::pin(ours), fd))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            // only our own socket: never a file put there since
            if is_socket(path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
