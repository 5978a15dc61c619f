//! The secret of a daemon launched through ssh.
//!
//! A host never puts its secret on a command line (process lists are
//! public), and ssh cannot pass environment variables without the remote
//! server's consent, so an ssh launch writes the secret as the first line
//! of the remote command's standard input. A daemon reads it only when it
//! has no secret in its environment, runs in an ssh session
//! (`SSH_CONNECTION` is set by sshd) and its standard input is a pipe or a
//! socket: never from a terminal or a file, and a daemon started any other
//! way reads nothing.

use super::watcher::poll_fd;
use std::time::{Duration, Instant};

/// How long to wait for the line: it is written as ssh starts, so it is
/// normally there before R is.
const WAIT: Duration = Duration::from_secs(10);
/// Longer than any secret; a line without an end within this is ignored.
const LINE_MAX: usize = 1024;

/// The secret on standard input, if this daemon was launched that way.
pub fn from_ssh_stdin() -> Option<String> {
    if std::env::var_os("SSH_CONNECTION").is_none() || !stdin_is_channel() {
        return None;
    }
    read_line(0, WAIT)
}

fn stdin_is_channel() -> bool {
    // SAFETY: `st` is plain data that fstat fills in; fd 0 may be closed,
    // in which case fstat fails and nothing is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        return false;
    }
    let kind = st.st_mode & libc::S_IFMT;
    kind == libc::S_IFIFO || kind == libc::S_IFSOCK
}

/// Read from `fd` up to the first newline, within `wait` in total. None at
/// end of input, on timeout or for an over-long or empty line.
fn read_line(fd: i32, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    let mut line = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while line.len() < LINE_MAX {
        let left = deadline.checked_duration_since(Instant::now())?;
        if poll_fd(fd, libc::POLLIN, left) == 0 {
            return None;
        }
        // One byte at a time: whatever follows the line stays unread.
        // SAFETY: reads at most one byte into a one-byte buffer.
        let n = unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) };
        match n {
            1 if byte[0] == b'\n' => {
                let s = String::from_utf8(line).ok()?;
                let s = s.trim();
                return (!s.is_empty()).then(|| s.to_string());
            }
            1 => line.push(byte[0]),
            _ if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_the_first_line_only() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"c0ffee\nrest").unwrap();
        assert_eq!(read_line(b.as_raw_fd(), WAIT).as_deref(), Some("c0ffee"));
        let mut rest = [0u8; 4];
        std::io::Read::read_exact(&mut &b, &mut rest).unwrap();
        assert_eq!(&rest, b"rest");
    }

    #[test]
    fn nothing_at_end_of_input_or_timeout_or_without_a_line_end() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert_eq!(read_line(b.as_raw_fd(), WAIT), None);
        let (_a, b) = UnixStream::pair().unwrap();
        assert_eq!(read_line(b.as_raw_fd(), Duration::from_millis(50)), None);
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[b'x'; LINE_MAX + 1]).unwrap();
        assert_eq!(read_line(b.as_raw_fd(), WAIT), None);
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b" \n").unwrap();
        assert_eq!(read_line(b.as_raw_fd(), WAIT), None);
    }
}
