//! Dialling, for daemons: a blocking connection their R thread reads tasks
//! from and writes results to itself, with no thread hand-off on the way.
//! TLS and websocket URLs are dialled on the runtime, which then carries
//! the connection; the daemon gets the plain end of a socketpair.

use super::carrier::{socket_pair, start_carrier};
use super::url::Url;
use super::websocket::Role;
use crate::runtime::runtime;
use rustls::ClientConfig;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A blocking connection to a host.
pub enum SyncStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl SyncStream {
    pub fn fd(&self) -> RawFd {
        match self {
            SyncStream::Tcp(s) => s.as_raw_fd(),
            SyncStream::Unix(s) => s.as_raw_fd(),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            SyncStream::Tcp(s) => s.set_read_timeout(t),
            SyncStream::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl io::Read for &SyncStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            SyncStream::Tcp(s) => (&*s).read(buf),
            SyncStream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl io::Write for &SyncStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            SyncStream::Tcp(s) => (&*s).write(buf),
            SyncStream::Unix(s) => (&*s).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The host to connect to for `host`: a URL listening on every interface
/// (empty host) is reached on this machine's loopback.
fn dial_host(host: &str) -> &str {
    if host.is_empty() {
        "127.0.0.1"
    } else {
        host
    }
}

/// Dial `url` with blocking sockets, giving up after `timeout`; `tls` is
/// the daemon's settings for a secure URL.
pub fn dial_sync(
    url: &Url,
    timeout: Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> io::Result<SyncStream> {
    let s = match url {
        Url::Tcp {
            host,
            port,
            tls: secure,
            ws,
        } => {
            let host = dial_host(host);
            if *secure || ws.is_some() {
                let tls = match secure {
                    true => Some(tls.ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "no TLS settings")
                    })?),
                    false => None,
                };
                return dial_layered(host, *port, tls, ws.as_deref(), timeout);
            }
            dial_tcp(host, *port, timeout)?
        }
        Url::Ipc(path) => SyncStream::Unix(std::os::unix::net::UnixStream::connect(path)?),
        Url::Abstract(name) => SyncStream::Unix(abstract_dial(name)?),
        Url::Inproc(_) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "inproc:// URLs cannot be dialled",
            ))
        }
    };
    super::enlarge_buffers(s.fd());
    Ok(s)
}

fn dial_tcp(host: &str, port: u16, timeout: Duration) -> io::Result<SyncStream> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host not found");
    for addr in (host, port).to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                super::keepalive::watch_tcp(&s);
                return Ok(SyncStream::Tcp(s));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Dial a TLS or websocket URL: the handshakes run on the runtime, which
/// then carries the connection.
fn dial_layered(
    host: &str,
    port: u16,
    tls: Option<&Arc<ClientConfig>>,
    ws: Option<&str>,
    timeout: Duration,
) -> io::Result<SyncStream> {
    let rt = runtime();
    let (ours, theirs) = {
        let _entered = rt.enter();
        socket_pair()?
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let handshakes = async {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        super::keepalive::watch_tcp(&tcp);
        super::enlarge_buffers(tcp.as_raw_fd());
        match tls {
            Some(config) => {
                let name = super::tls::server_name(host)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let s = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                start_carrier(s, theirs, ws, Role::Client, &authority).await
            }
            None => start_carrier(tcp, theirs, ws, Role::Client, &authority).await,
        }
    };
    rt.block_on(async { tokio::time::timeout(timeout, handshakes).await })
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    let ours = ours.into_std()?;
    ours.set_nonblocking(false)?;
    Ok(SyncStream::Unix(ours))
}

#[cfg(target_os = "linux")]
fn abstract_dial(name: &str) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    std::os::unix::net::UnixStream::connect_addr(&addr)
}

#[cfg(not(target_os = "linux"))]
fn abstract_dial(_: &str) -> io::Result<std::os::unix::net::UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}
