//! The Rust core of the mirai R package.
//!
//! Folders by concern; imports run one way, from `r` down:
//! - [`r`]: everything that runs on R's main thread and calls R's API (the
//!   only module that does): the functions R calls, the mirai objects,
//!   serialization, waits and interrupts.
//! - [`host`]: a compute profile's listener, connected daemons, and the
//!   scheduler (round-robin, or the dispatcher).
//! - [`daemon`]: the daemon side of a connection.
//! - [`protocol`]: framing, the handshake, and one codec per message.
//! - [`transport`]: URLs, listening and dialling, TLS, websockets.
//! - [`launch`]: starting daemon processes, HTTP launches.
//! - shared by all: [`aio`] (pending results), [`buffer`] (message and
//!   vector memory), [`outframe`] (frames with borrowed memory),
//!   [`codes`] (error codes), [`streams`] (random-number streams),
//!   [`runtime`] (the tokio runtime), [`panics`] (where panics are reported).

pub mod aio;
pub mod buffer;
pub mod codes;
pub mod daemon;
pub mod host;
pub mod launch;
pub mod outframe;
pub mod panics;
pub mod protocol;
mod r;
pub mod runtime;
pub mod streams;
pub mod transport;

use extendr_api::prelude::*;

extendr_module! {
    mod mirai;
    use r;
}
