//! The benchmark's reference for moving large objects: a Unix socketpair
//! echoing bytes between two threads of this process (`tools/bench`,
//! scenario `bigvec`). It measures what the kernel's sockets allow on this
//! machine, so the bench can report the package's 100 MB round trip as a
//! fraction of it.

use super::r_error;
use extendr_api::prelude::*;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Chunk the echo thread reads and writes back.
const ECHO_CHUNK: usize = 1 << 20;

/// Largest size accepted, so a typo cannot ask for terabytes.
const MAX_BYTES: f64 = 8e9;

/// Seconds of each of `reps` round trips of `bytes` bytes through a
/// socketpair: this thread reads the echo back while a second thread
/// writes, and a third echoes (so neither side's socket buffer can fill up
/// and block the other). Buffers are allocated and touched before timing;
/// each echo is checked against what was sent.
#[extendr]
fn socketpair_echo(bytes: f64, reps: i32) -> Result<Vec<f64>> {
    if !(1.0..=MAX_BYTES).contains(&bytes) {
        return Err(r_error(format!(
            "'bytes' must be a number of bytes between 1 and {MAX_BYTES}"
        )));
    }
    if reps < 1 {
        return Err(r_error("'reps' must be a positive integer"));
    }
    echo_runs(bytes as usize, reps as usize)
        .map_err(|e| r_error(format!("socketpair echo failed: {e}")))
}

fn echo_runs(n: usize, reps: usize) -> io::Result<Vec<f64>> {
    // Distinct non-zero bytes, written once so every page is mapped.
    let src: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
    let mut dst = vec![0u8; n];
    touch(&mut dst);
    let (ours, theirs) = UnixStream::pair()?;
    let echo = std::thread::spawn(move || echo(theirs));
    let mut times = Vec::with_capacity(reps);
    let mut outcome = Ok(());
    for _ in 0..reps {
        let t0 = Instant::now();
        let sent = std::thread::scope(|s| {
            let writer = s.spawn(|| (&ours).write_all(&src));
            let read = (&ours).read_exact(&mut dst);
            let wrote = writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("writer panicked")));
            read.and(wrote)
        });
        times.push(t0.elapsed().as_secs_f64());
        if let Err(e) = sent {
            outcome = Err(e);
            break;
        }
        if dst != src {
            outcome = Err(io::Error::other("the echo differs from what was sent"));
            break;
        }
        touch(&mut dst); // the next rep must really fill it again
    }
    // Closing our end ends the echo thread's loop.
    drop(ours);
    let echoed = echo
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("echo thread panicked")));
    outcome.and(echoed).map(|()| times)
}

/// Writes every byte back as it arrives, until the other end closes.
fn echo(mut s: UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; ECHO_CHUNK];
    touch(&mut buf);
    loop {
        let got = s.read(&mut buf)?;
        if got == 0 {
            return Ok(());
        }
        s.write_all(&buf[..got])?;
    }
}

/// Overwrites a buffer (zeroed memory may not be mapped yet).
fn touch(buf: &mut [u8]) {
    buf.fill(0xa5);
}

extendr_module! {
    mod bench_ref;
    fn socketpair_echo;
}
