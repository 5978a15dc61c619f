//! Listening at and dialling URLs: one byte-stream type over every transport,
//! so the host and daemon code never look at which one they are on.
//!
//! TLS and websocket connections reach that code through a Unix socketpair:
//! a *carrier* task on the runtime moves bytes between the encrypted or
//! framed connection and one end of the pair, and the protocol code uses
//! the other end as if it were a plain socket. The host's direct writes and
//! the daemon's peeking for cancellation then work on every transport, at
//! the cost of one memory copy that encryption dwarfs anyway.

use crate::runtime::runtime;
use crate::url::Url;
use crate::websocket::{self, Role};
use rustls::{ClientConfig, ServerConfig};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Bytes a carrier moves per read, each way: large messages pass in few
/// steps, while a host with thousands of TLS daemons holds 128 KiB each.
const CARRIER_BUFFER: usize = 64 * 1024;

/// Socket buffer size asked for on every connection: large messages then
/// move in fewer, larger steps (the kernel caps it at its own maximum).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

fn enlarge_buffers(fd: RawFd) {
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
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

/// Any connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub type BoxStream = Pin<Box<dyn Stream>>;

/// What a host's TCP connections are wrapped in before the protocol.
#[derive(Clone, Default)]
pub struct Layers {
    pub tls: Option<Arc<ServerConfig>>,
    /// The websocket path daemons must ask for.
    pub ws: Option<String>,
}

pub enum Listener {
    Tcp(TcpListener, Layers),
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
            let l = TcpListener::bind((host.as_str(), *port)).await?;
            let port = l.local_addr()?.port();
            let layers = Layers {
                tls: if *secure { tls } else { None },
                ws: ws.clone(),
            };
            Ok((Listener::Tcp(l, layers), url.with_port(port)))
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

/// An accepted connection, not yet ready for the protocol while it still
/// has a TLS or websocket handshake to go through.
pub enum Accepted {
    Ready(BoxStream, RawFd),
    Layered(TcpStream, Layers),
}

impl Listener {
    /// Accept a connection. Its TLS and websocket handshakes are left to
    /// [`Accepted::open`], run in the connection's own task, so a peer that
    /// stalls there holds up no one else.
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l, layers) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                let fd = s.as_raw_fd();
                enlarge_buffers(fd);
                if layers.tls.is_none() && layers.ws.is_none() {
                    return Ok(Accepted::Ready(Box::pin(s), fd));
                }
                Ok(Accepted::Layered(s, layers.clone()))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                let fd = s.as_raw_fd();
                enlarge_buffers(fd);
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
            Accepted::Ready(s, fd) => Ok((s, fd)),
            Accepted::Layered(tcp, layers) => {
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

/// A connected pair of non-blocking Unix sockets with large buffers.
fn socket_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    enlarge_buffers(a.as_raw_fd());
    enlarge_buffers(b.as_raw_fd());
    Ok((a, b))
}

/// Finish the websocket handshake on `outer` if there is one, then move
/// bytes between `outer` and `inner` in a task of their own until either
/// side closes. `authority` is the `host:port` a client asks for.
async fn start_carrier<S>(
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

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A blocking connection, for a daemon's R thread: it reads its tasks and
/// writes its results itself, with no thread hand-off on the way.
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

    pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
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

/// Dial `url` with blocking sockets, giving up after `timeout`; `tls` is
/// the daemon's settings for a secure URL.
pub fn dial_sync(
    url: &Url,
    timeout: std::time::Duration,
    tls: Option<&Arc<ClientConfig>>,
) -> io::Result<SyncStream> {
    if let Url::Tcp {
        host,
        port,
        tls: secure,
        ws,
    } = url
    {
        if *secure || ws.is_some() {
            let tls = if *secure {
                Some(tls.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "no TLS settings")
                })?)
            } else {
                None
            };
            return dial_layered(host, *port, tls, ws.as_deref(), timeout);
        }
    }
    let s = dial_sync_raw(url, timeout)?;
    enlarge_buffers(s.fd());
    Ok(s)
}

/// Dial a TLS or websocket URL: the handshakes run on the runtime, which
/// then carries the connection; the daemon gets the plain end of a pair.
fn dial_layered(
    host: &str,
    port: u16,
    tls: Option<&Arc<ClientConfig>>,
    ws: Option<&str>,
    timeout: std::time::Duration,
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
        enlarge_buffers(tcp.as_raw_fd());
        match tls {
            Some(config) => {
                let name = crate::tls::server_name(host)
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

fn dial_sync_raw(url: &Url, timeout: std::time::Duration) -> io::Result<SyncStream> {
    match url {
        Url::Tcp { host, port, .. } => {
            use std::net::ToSocketAddrs;
            let mut last = io::Error::new(io::ErrorKind::NotFound, "host not found");
            for addr in (host.as_str(), *port).to_socket_addrs()? {
                match std::net::TcpStream::connect_timeout(&addr, timeout) {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        return Ok(SyncStream::Tcp(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Url::Ipc(path) => Ok(SyncStream::Unix(std::os::unix::net::UnixStream::connect(
            path,
        )?)),
        Url::Abstract(name) => abstract_dial_sync(name).map(SyncStream::Unix),
    }
}

#[cfg(target_os = "linux")]
fn abstract_dial_sync(name: &str) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    std::os::unix::net::UnixStream::connect_addr(&addr)
}

#[cfg(not(target_os = "linux"))]
fn abstract_dial_sync(_: &str) -> io::Result<std::os::unix::net::UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// This machine's IPv4 addresses by network interface (`getifaddrs`),
/// loopback last.
pub fn interface_addresses() -> Vec<(String, std::net::Ipv4Addr)> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut p = list;
    while !p.is_null() {
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null()
            && unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int == libc::AF_INET
        {
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            out.push((name, ip));
        }
        p = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(list) };
    out.sort_by_key(|(_, ip)| ip.is_loopback());
    out
}
