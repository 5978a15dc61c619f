//! Everything that runs on R's main thread and calls R's API: the only
//! module that does (`grep -rl extendr_ffi src/` lists only files here).
//!
//! The functions R calls (`.Call(wrap__<name>, ...)`) are grouped like the
//! R files they serve: [`tasks`] (mirai.R, map.R), [`waits`] (waiting,
//! collecting, cancelling), [`daemons`] (daemons.R), [`daemon`]
//! (daemon.R), [`launch`] (launch.R), [`promises`] (promises.R). Each
//! converts its arguments, calls into the core and converts back. The rest
//! supports them: the mirai objects ([`mirai`]), serialization ([`serial`],
//! with [`refhooks`] for configured classes), task and result frames
//! ([`frames`], [`rawargs`], [`vectors`], [`outframes`]), running R code
//! safely ([`unwind`], and [`plain_data`] for when it is not needed), external pointers ([`handle`]) and the C API
//! declarations extendr lacks ([`api`]), the shared objects of a map
//! ([`shared`]); [`bench_ref`] is the benchmark's
//! socketpair reference.

mod api;
mod bench_ref;
mod daemon;
mod daemons;
mod frames;
mod handle;
mod launch;
mod mirai;
mod outframes;
mod plain_data;
mod promises;
mod rawargs;
mod refhooks;
mod serial;
mod shared;
mod tasks;
mod unwind;
mod vectors;
mod waits;

use extendr_api::prelude::*;
use std::time::Duration;

/// How often a wait wakes to notice Ctrl-C.
const INTERRUPT_SLICE: Duration = Duration::from_millis(100);

fn robj(x: extendr_ffi::SEXP) -> Robj {
    Robj::from_sexp(x)
}

/// Optional milliseconds from R: negative (R passes -1), NA or Inf mean
/// none.
fn millis(ms: f64) -> Option<Duration> {
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_micros((ms * 1000.0) as u64))
}

/// An R error message for extendr: it is used as a C format string, so
/// any `%` is doubled.
fn r_error(msg: impl std::fmt::Display) -> Error {
    Error::Other(msg.to_string().replace('%', "%%"))
}

/// Refuse to work in a forked child of a process whose runtime was
/// running (`parallel::mclapply()`): its hosts and connections are not
/// there, and waiting on them would wait forever.
fn not_forked() -> Result<()> {
    if crate::runtime::inherited_by_fork() {
        return Err(r_error(
            "mirai cannot be used in a forked child process (e.g. parallel::mclapply()) \
             of a session that uses it: use mirai_map() or daemons instead",
        ));
    }
    Ok(())
}

extendr_module! {
    mod r;
    use tasks;
    use waits;
    use daemons;
    use daemon;
    use launch;
    use promises;
    use shared;
    use bench_ref;
}
