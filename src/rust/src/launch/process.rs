//! Starting daemon processes on this machine.
//!
//! Each child gets its own process group, so a Ctrl-C typed at the host's
//! terminal interrupts the host only, not its daemons. A small thread per
//! child reaps it (no zombies) and reports its exit.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

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
    let mut child = cmd.spawn()?;
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
