//! Listening at and dialling URLs: one byte-stream type over every transport,
//! so the host and daemon code never look at which one they are on.

use crate::url::Url;
use std::io;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Any connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub type BoxStream = Pin<Box<dyn Stream>>;

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Option<String>),
}

/// Bind `url`; returns the listener and the URL as actually bound (port 0
/// replaced by the assigned port). Must run inside the runtime.
pub async fn bind(url: &Url) -> io::Result<(Listener, Url)> {
    match url {
        Url::Tcp { host, port } => {
            let l = TcpListener::bind((host.as_str(), *port)).await?;
            let port = l.local_addr()?.port();
            Ok((Listener::Tcp(l), url.with_port(port)))
        }
        Url::Ipc(path) => {
            remove_stale_socket(path);
            let l = UnixListener::bind(path)?;
            Ok((Listener::Unix(l, Some(path.clone())), url.clone()))
        }
        Url::Abstract(name) => {
            let l = abstract_listener(name)?;
            Ok((Listener::Unix(l, None), url.clone()))
        }
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

/// A socket file left by a host that died cannot be bound over; remove it,
/// but only if nothing answers there.
fn remove_stale_socket(path: &str) {
    if std::path::Path::new(path).exists() && std::os::unix::net::UnixStream::connect(path).is_err()
    {
        let _ = std::fs::remove_file(path);
    }
}

impl Listener {
    pub async fn accept(&self) -> io::Result<BoxStream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(Box::pin(s))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok(Box::pin(s))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub async fn dial(url: &Url) -> io::Result<BoxStream> {
    match url {
        Url::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true)?;
            Ok(Box::pin(s))
        }
        Url::Ipc(path) => Ok(Box::pin(UnixStream::connect(path).await?)),
        Url::Abstract(name) => Ok(Box::pin(abstract_dial(name)?)),
    }
}

#[cfg(target_os = "linux")]
fn abstract_dial(name: &str) -> io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    s.set_nonblocking(true)?;
    UnixStream::from_std(s)
}

#[cfg(not(target_os = "linux"))]
fn abstract_dial(_: &str) -> io::Result<UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}
