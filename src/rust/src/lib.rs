//! The Rust core of the mirai R package.
//!
//! R's main thread calls the functions in [`exports`]; everything that
//! touches a socket runs on the one tokio runtime in [`runtime`]. Modules,
//! one concept each:
//! - [`url`], [`transport`]: addresses, listening and dialling
//! - [`protocol`]: framing, message kinds, handshake
//! - [`aio`]: pending results shared with the R thread
//! - [`buffer`]: large message buffers
//! - [`host`]: a compute profile's listener and connections; [`link`]: one
//!   connected daemon; [`scheduler`]: round-robin or dispatcher
//! - [`daemon`]: the daemon side of a connection; [`cleanup`]: its state checks
//! - [`serial`]: R serialization into and out of Rust buffers; [`rvec`]:
//!   large plain vectors without serialization (results), [`rawargs`]: the
//!   same for a task's objects, [`outframe`]: frames that carry R memory
//! - [`launch`]: starting daemon processes; [`http`]: launching through
//!   an HTTP API
//! - [`handle`], [`mirai_object`], [`rapi`]: R objects and extra R C API

pub mod aio;
mod buffer;
mod cleanup;
pub mod daemon;
mod exports;
mod handle;
pub mod host;
mod http;
pub mod launch;
mod link;
mod mirai_object;
pub mod outframe;
pub mod protocol;
mod rapi;
mod rawargs;
pub mod runtime;
mod rvec;
pub mod scheduler;
mod serial;
pub mod tls;
pub mod transport;
pub mod url;
pub mod websocket;

use extendr_api::prelude::*;

extendr_module! {
    mod mirai;
    use exports;
}
