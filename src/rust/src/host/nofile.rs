//! The process's descriptor limit: raised, once, to its hard limit when a
//! host starts listening, as a host with many daemons needs a descriptor
//! for each and the common soft limit (1024) is far below the usual hard
//! one. R and everything else in the process benefit as well.

use std::sync::Once;

static RAISED: Once = Once::new();

/// Raise the soft RLIMIT_NOFILE to the hard limit (at most once per
/// process; failure leaves the limit as it was).
pub(super) fn raise_nofile_limit() {
    RAISED.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct to a valid pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        if lim.rlim_cur >= lim.rlim_max {
            return;
        }
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads one rlimit struct from a valid pointer; a
        // soft limit equal to the hard one is always allowed (on macOS,
        // an unlimited hard limit is refused: nothing changes then).
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    });
}
