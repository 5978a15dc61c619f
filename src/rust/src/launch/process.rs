//! Starting processes on this machine: local daemons, and the commands
//! that launch daemons elsewhere (ssh, a scheduler, ...).
//!
//! A local daemon gets its own process group, so a Ctrl-C typed at the
//! host's terminal interrupts the host only, not its daemons. A small
//! thread per child reaps it (no zombies) and reports its exit.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Spawn `program args...` with extra environment variables `env` (how a
/// daemon gets its host's secret without it showing in process lists);
/// `output` keeps the child's stdout/stderr on the host's, otherwise they
/// are discarded. `on_exit` runs once the child has ended. Returns the
/// child's pid.
pub fn spawn(
    program: &str,
    args: &[String],
    env: &[(&str, &str)],
    output: bool,
    on_exit: Option<Box<dyn FnOnce() + Send>>,
) -> io::Result<u32> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .process_group(0);
    if !output {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    reap(cmd.spawn()?, on_exit)
}

/// Run the shell command line `line` (as `system2()` would, not waiting)
/// with extra environment variables `env`; `stdin`, when given, is what the
/// command reads on its standard input, then end of input. Its output goes
/// to the host's. `detach` starts it in a session of its own, as `ssh -f`
/// does once connected: no terminal, so Ctrl-C at the host's does not end
/// it. Returns the pid of the shell.
pub fn run_shell(
    line: &str,
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
    detach: bool,
) -> io::Result<u32> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line).envs(env.iter().copied());
    if detach {
        // SAFETY: runs in the forked child before exec; setsid() is
        // async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    let feed = match stdin {
        Some(bytes) => {
            // A socket rather than a pipe: written with MSG_NOSIGNAL, a
            // command that exits without reading cannot raise SIGPIPE in R.
            let (ours, theirs) = UnixStream::pair()?;
            cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
            Some((ours, bytes))
        }
        None => {
            cmd.stdin(Stdio::null());
            None
        }
    };
    let child = cmd.spawn()?;
    drop(cmd);
    if let Some((ours, bytes)) = feed {
        // Small (a line), so it fits the socket buffer: this does not block.
        // A command that has already gone just misses it.
        // SAFETY: `ours` is an open socket; `bytes` is valid for its length.
        let _ = unsafe {
            libc::send(
                ours.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
    }
    reap(child, None)
}

fn reap(mut child: Child, on_exit: Option<Box<dyn FnOnce() + Send>>) -> io::Result<u32> {
    let pid = child.id();
    std::thread::Builder::new()
        .name("mirai-reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = child.wait();
            if let Some(f) = on_exit {
                f();
            }
        })?;
    Ok(pid)
}
