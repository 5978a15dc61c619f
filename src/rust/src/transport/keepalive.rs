//! Kernel-level liveness on every TCP connection: keepalive probes find a
//! peer whose machine vanished while the link is idle, and (on Linux)
//! TCP_USER_TIMEOUT fails a connection whose sent data stays unacknowledged,
//! so neither side waits forever on a half-open link. The protocol's own
//! heartbeat (see `protocol::message::HEARTBEAT`) covers what the kernel
//! cannot see: a peer that is reachable but stuck.

use socket2::{SockRef, TcpKeepalive};
use std::os::fd::AsFd;
use std::time::Duration;

/// Idle time before the first probe, time between probes, and how many
/// unanswered probes end the connection: a silent peer is given up on
/// about 25 s after the link went quiet.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_PROBES: u32 = 3;
/// How long written data may stay unacknowledged before the kernel fails
/// the connection (keepalive alone never fires while data is in flight).
pub const USER_TIMEOUT: Duration = Duration::from_secs(25);

/// Enable keepalive (and the user timeout) on a connected TCP socket.
/// Failure is ignored: the socket still works, only less watched, and the
/// heartbeat still applies.
pub fn watch_tcp<S: AsFd>(socket: &S) {
    let sock = SockRef::from(socket);
    let params = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let _ = sock.set_tcp_keepalive(&params);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = sock.set_tcp_user_timeout(Some(USER_TIMEOUT));
}
