//! Error codes and their messages, as R users see them: in integer
//! errorValues (`'errorValue' int 19 | Connection reset`) and in the
//! messages of transport errors ("10 | Address in use"). The numbering
//! and texts are those of the NNG library, which the established package
//! exposes and downstream code compares against.

use std::io;

pub const TIMED_OUT: i32 = 5;
pub const CONNECTION_REFUSED: i32 = 6;
pub const NOT_SUPPORTED: i32 = 9;
pub const ADDRESS_IN_USE: i32 = 10;
pub const ADDRESS_INVALID: i32 = 15;
pub const CONNECTION_RESET: i32 = 19;
pub const CANCELED: i32 = 20;
pub const PEER_AUTH: i32 = 27;

/// Codes with this bit set carry a system error number in the rest.
pub const SYSTEM_ERROR: i32 = 0x1000_0000;

const MESSAGES: [&str; 32] = [
    "Hunky dory",
    "Interrupted",
    "Out of memory",
    "Invalid argument",
    "Resource busy",
    "Timed out",
    "Connection refused",
    "Object closed",
    "Try again",
    "Not supported",
    "Address in use",
    "Incorrect state",
    "Entry not found",
    "Protocol error",
    "Destination unreachable",
    "Address invalid",
    "Permission denied",
    "Message too large",
    "Connection aborted",
    "Connection reset",
    "Operation canceled",
    "Out of files",
    "Out of space",
    "Resource already exists",
    "Read only resource",
    "Write only resource",
    "Cryptographic error",
    "Peer could not be authenticated",
    "Option requires argument",
    "Ambiguous option",
    "Incorrect type",
    "Connection shutdown",
];

/// The message of `code`.
pub fn message(code: i32) -> String {
    if code & SYSTEM_ERROR != 0 {
        return io::Error::from_raw_os_error(code & !SYSTEM_ERROR)
            .to_string()
            .split(" (os error")
            .next()
            .unwrap_or_default()
            .to_string();
    }
    match code {
        0..=31 => MESSAGES[code as usize].to_string(),
        1000 => "Internal error detected".to_string(),
        _ => format!("Unknown error #{code}"),
    }
}

/// `"<code> | <message>"`.
pub fn describe(code: i32) -> String {
    format!("{code} | {}", message(code))
}

/// The code for an I/O error.
pub fn of_io(e: &io::Error) -> i32 {
    use io::ErrorKind::*;
    match e.kind() {
        AddrInUse => ADDRESS_IN_USE,
        AddrNotAvailable => ADDRESS_INVALID,
        ConnectionRefused | NotFound => CONNECTION_REFUSED,
        ConnectionReset | BrokenPipe | UnexpectedEof => CONNECTION_RESET,
        ConnectionAborted => 18,
        TimedOut => TIMED_OUT,
        PermissionDenied => 16,
        Unsupported => NOT_SUPPORTED,
        OutOfMemory => 2,
        InvalidInput => 3,
        _ => match e.raw_os_error() {
            Some(errno) => SYSTEM_ERROR | errno,
            None => 13,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_table() {
        assert_eq!(describe(19), "19 | Connection reset");
        assert_eq!(describe(5), "5 | Timed out");
        assert_eq!(describe(1000), "1000 | Internal error detected");
        assert_eq!(describe(77), "77 | Unknown error #77");
        assert_eq!(
            describe(SYSTEM_ERROR | 2),
            "268435458 | No such file or directory"
        );
    }

    #[test]
    fn io_errors_map_to_codes() {
        let e = io::Error::new(io::ErrorKind::AddrInUse, "x");
        assert_eq!(describe(of_io(&e)), "10 | Address in use");
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(of_io(&e), CONNECTION_REFUSED);
    }
}
