//! The one tokio runtime of this process, started on first use. It owns
//! every socket, listener and timer; R's main thread only hands it bytes.

use std::sync::OnceLock;
use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
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
