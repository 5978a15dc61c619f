//! Starting daemons: processes on this machine ([`process`]), and requests
//! to HTTP APIs that start them elsewhere ([`http`]).

pub mod http;
pub mod process;
