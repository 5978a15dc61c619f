//! Listening at and dialling URLs: one byte-stream type over every transport,
//! so the host and daemon code never look at which one they are on.

use crate::url::Url;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

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
    /// Accept a connection: the stream, and its socket descriptor when bytes
    /// written to it go straight onto the wire (so the R thread may write to
    /// it directly; not so under TLS).
    pub async fn accept(&self) -> io::Result<(BoxStream, Option<RawFd>)> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                let fd = s.as_raw_fd();
                enlarge_buffers(fd);
                Ok((Box::pin(s), Some(fd)))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                let fd = s.as_raw_fd();
                enlarge_buffers(fd);
                Ok((Box::pin(s), Some(fd)))
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

/// Dial `url` with blocking sockets, giving up after `timeout`.
pub fn dial_sync(url: &Url, timeout: std::time::Duration) -> io::Result<SyncStream> {
    let s = dial_sync_raw(url, timeout)?;
    enlarge_buffers(s.fd());
    Ok(s)
}

fn dial_sync_raw(url: &Url, timeout: std::time::Duration) -> io::Result<SyncStream> {
    match url {
        Url::Tcp { host, port } => {
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
