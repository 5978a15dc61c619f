//! The one tokio runtime of this process, started on first use. It owns
//! every socket, listener and timer; R's main thread only hands it bytes.
//!
//! A forked child (`parallel::mclapply()`) inherits the runtime's state but
//! none of its threads, so anything waiting on it would wait forever: the
//! R side asks [`inherited_by_fork`] first and refuses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// The process that started the runtime (0: not started).
static OWNER: AtomicU32 = AtomicU32::new(0);

fn pid() -> u32 {
    std::process::id()
}

pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        OWNER.store(pid(), Ordering::SeqCst);
        let threads = std::thread::available_parallelism()
            .map(|n| n.get().clamp(1, 4))
            .unwrap_or(2);
        Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("mirai-io")
            .enable_io()
            .enable_time()
            .build()
            .expect("mirai: cannot start the I/O runtime")
    })
}

/// Whether this process is a fork of one whose runtime was running: its
/// runtime, hosts and connections are unusable here.
pub fn inherited_by_fork() -> bool {
    let owner = OWNER.load(Ordering::SeqCst);
    owner != 0 && owner != pid()
}
