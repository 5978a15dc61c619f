//! The wire protocol between a host and its daemons: length-prefixed
//! frames ([`frame`]), the opening handshake ([`handshake`]) and the
//! messages after it, each with its one encoder and decoder
//! ([`message`]). Anything malformed ends that connection only; frames
//! are capped before and after the handshake.
//!
//! ```text
//! +---------+----------------+---------------------------+
//! | kind u8 | length u64 LE  | body (length bytes)       |
//! +---------+----------------+---------------------------+
//! ```

pub mod frame;
pub mod handshake;
pub mod message;

pub use frame::*;
pub use handshake::*;
pub use message::*;
