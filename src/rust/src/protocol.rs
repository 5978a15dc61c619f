//! The wire protocol between a host and its daemons.
//!
//! Every message is one frame:
//!
//! ```text
//! +---------+----------------+---------------------------+
//! | kind u8 | length u64 LE  | body (length bytes)       |
//! +---------+----------------+---------------------------+
//! ```
//!
//! A connection opens with a handshake: the daemon sends `HELLO` (magic,
//! protocol version, package version). A host with a secret (see `host`)
//! then sends `CHALLENGE`, 32 random bytes, and the daemon answers `PROOF`,
//! an HMAC-SHA256 of them keyed with the secret: the secret itself never
//! crosses the network, and a recorded proof is worthless for the next
//! challenge. A wrong proof is dropped without a word. Finally the host
//! answers `WELCOME`, or `REJECT` with a reason and closes. Before the handshake completes frames
//! are capped at [`HANDSHAKE_MAX`] bytes, so an unknown peer cannot make the
//! host allocate; afterwards at [`FRAME_MAX`]. Anything malformed ends that
//! connection only.
//!
//! Message kinds after the handshake:
//! - `TASK` host -> daemon: id u64, flags u8, serialized R payload
//! - `RESULT` daemon -> host: id u64, flags u8, serialized R value
//! - `CANCEL` host -> daemon: id u64 (interrupt that task if running)
//! - `EXIT` host -> daemon: stop serving and exit
//! - `LEAVING` daemon -> host: this daemon stops serving (a limit was
//!   reached, or it was told to exit); any task sent to it since its last
//!   result was never started and may go to another daemon

use std::io;
use std::io::Read as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const MAGIC: &[u8; 6] = b"MIRAI\x00";
/// Bumped whenever the framing or message layout changes.
pub const PROTOCOL_VERSION: u16 = 3;
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");

pub const HEADER_LEN: usize = 9;
/// Cap on any frame before the peer has completed the handshake.
pub const HANDSHAKE_MAX: u64 = 4096;
/// Cap on any frame from a peer that has completed the handshake (1 TiB):
/// large enough for any R object, small enough to reject garbage lengths.
pub const FRAME_MAX: u64 = 1 << 40;

pub const HELLO: u8 = 1;
pub const WELCOME: u8 = 2;
pub const REJECT: u8 = 3;
pub const TASK: u8 = 4;
pub const RESULT: u8 = 5;
pub const CANCEL: u8 = 6;
pub const EXIT: u8 = 7;
pub const LEAVING: u8 = 8;
pub const CHALLENGE: u8 = 9;
pub const PROOF: u8 = 10;
/// Bytes in a challenge and in a proof.
pub const PROOF_LEN: usize = 32;

/// Task flag: evaluate keeping state (`everywhere()`), skipping cleanup.
pub const FLAG_KEEP_STATE: u8 = 1;
/// Task flag: large plain vectors among the task's objects travel as raw
/// data after the serialized task (see `rawargs`). The body continues with
/// the serialized length (u64), the serialized task, the number of vectors
/// (u32) and a [`RAW_ARG_HEADER_LEN`]-byte header for each (list u8, 3
/// padding, index u32, R type u8, 7 padding, length u64), then the data of
/// each vector in turn.
pub const FLAG_RAW_ARGS: u8 = 2;
pub const RAW_ARG_HEADER_LEN: usize = 24;
/// Result flag: the value is an evaluation error (miraiError/Interrupt).
pub const FLAG_ERROR: u8 = 1;
/// Result flag: the value is a plain atomic vector sent as raw data: the
/// body continues with its R type (u8), 7 bytes of padding and its length
/// (u64), then the data (see `rvec`).
pub const FLAG_VECTOR: u8 = 4;
/// Bytes before the data of a [`FLAG_VECTOR`] result.
pub const VECTOR_HEADER_LEN: usize = ID_FLAGS_LEN + 16;

/// Bytes before the serialized payload in TASK and RESULT bodies.
pub const ID_FLAGS_LEN: usize = 9;

/// A frame read off the wire.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub body: Vec<u8>,
}

/// Start a frame: header placeholder for `kind`, body appended by the caller,
/// then [`finish_frame`] fills in the length. Lets a serializer write the
/// body straight into the buffer that goes to the socket.
pub fn begin_frame(kind: u8, capacity: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
    buf.push(kind);
    buf.extend_from_slice(&[0u8; 8]);
    buf
}

pub fn finish_frame(buf: &mut [u8]) {
    let len = (buf.len() - HEADER_LEN) as u64;
    buf[1..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
}

pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut buf = begin_frame(kind, body.len());
    buf.extend_from_slice(body);
    finish_frame(&mut buf);
    buf
}

pub fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Read one frame, refusing lengths above `max`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> io::Result<Frame> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let kind = header[0];
    let len = u64::from_le_bytes(header[1..].try_into().unwrap());
    if len > max {
        return Err(invalid("frame length exceeds the limit"));
    }
    let mut body = crate::buffer::with_capacity(len as usize)?;
    let got = r.take(len).read_to_end(&mut body).await?;
    if (got as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    Ok(Frame { kind, body })
}

/// Blocking [`read_frame`], for a daemon's R thread.
pub fn read_frame_blocking<R: std::io::Read>(r: R, max: u64) -> io::Result<Frame> {
    let mut body = Vec::new();
    let kind = read_frame_into(r, max, &mut body)?;
    Ok(Frame { kind, body })
}

/// Read a frame header (blocking): the kind and the body length, at most
/// `max`.
pub fn read_header_blocking<R: std::io::Read>(mut r: R, max: u64) -> io::Result<(u8, u64)> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)?;
    let len = u64::from_le_bytes(header[1..].try_into().unwrap());
    if len > max {
        return Err(invalid("frame length exceeds the limit"));
    }
    Ok((header[0], len))
}

/// Read one frame's body into `body` (reusing its memory); returns the kind.
pub fn read_frame_into<R: std::io::Read>(mut r: R, max: u64, body: &mut Vec<u8>) -> io::Result<u8> {
    let (kind, len) = read_header_blocking(&mut r, max)?;
    body.clear();
    read_body_into(r, len, body)?;
    Ok(kind)
}

/// Append exactly `n` more bytes of a frame from `r` to `body` (blocking).
pub fn read_body_into<R: std::io::Read>(r: R, n: u64, body: &mut Vec<u8>) -> io::Result<()> {
    crate::buffer::reserve(body, n as usize)?;
    let got = std::io::Read::take(r, n).read_to_end(body)?;
    if (got as u64) < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    Ok(())
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// The daemon's opening message: magic, protocol version and package
/// version (length-prefixed).
pub fn hello_body(protocol: u16, package: &str) -> Vec<u8> {
    let package = &package.as_bytes()[..package.len().min(255)];
    let mut b = Vec::with_capacity(MAGIC.len() + 3 + package.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&protocol.to_le_bytes());
    b.push(package.len() as u8);
    b.extend_from_slice(package);
    b
}

/// What a HELLO says, if it is one of ours at all.
#[derive(Debug, PartialEq)]
pub struct Hello {
    pub protocol: u16,
    pub package: String,
}

pub fn parse_hello(frame: &Frame) -> io::Result<Hello> {
    let b = &frame.body;
    let at = MAGIC.len();
    if frame.kind != HELLO || b.len() < at + 3 || &b[..at] != MAGIC {
        return Err(invalid("not a mirai handshake"));
    }
    let protocol = u16::from_le_bytes([b[at], b[at + 1]]);
    let n = b[at + 2] as usize;
    let rest = &b[at + 3..];
    if rest.len() < n {
        return Err(invalid("truncated handshake"));
    }
    let package = std::str::from_utf8(&rest[..n])
        .map_err(|_| invalid("package version is not UTF-8"))?
        .to_string();
    Ok(Hello { protocol, package })
}

/// A fresh challenge.
pub fn new_challenge() -> io::Result<[u8; PROOF_LEN]> {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; PROOF_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| io::Error::other("no system randomness"))?;
    Ok(nonce)
}

/// The proof of knowing `secret` for `challenge`.
pub fn proof(secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, challenge).as_ref().to_vec()
}

/// Whether `given` proves knowledge of `secret` for `challenge`, in time
/// that does not depend on where a wrong proof differs.
pub fn proof_matches(secret: &[u8], challenge: &[u8], given: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, challenge, given).is_ok()
}

/// The host's verdict on a HELLO: `None` to accept, or the reason to refuse.
pub fn check_hello(hello: &Hello) -> Option<String> {
    if hello.protocol != PROTOCOL_VERSION || hello.package != PACKAGE_VERSION {
        Some(format!(
            "version mismatch: host runs mirai {} (protocol {}), daemon runs mirai {} (protocol {})",
            PACKAGE_VERSION, PROTOCOL_VERSION, hello.package, hello.protocol
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frame_round_trip() {
        let f = frame(TASK, b"hello");
        let got = read_frame(&mut &f[..], FRAME_MAX).await.unwrap();
        assert_eq!(got.kind, TASK);
        assert_eq!(got.body, b"hello");
    }

    #[tokio::test]
    async fn oversized_length_is_refused_without_allocating() {
        let mut f = vec![TASK];
        f.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = read_frame(&mut &f[..], FRAME_MAX).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut g = vec![HELLO];
        g.extend_from_slice(&(HANDSHAKE_MAX + 1).to_le_bytes());
        assert!(read_frame(&mut &g[..], HANDSHAKE_MAX).await.is_err());
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let f = frame(RESULT, b"0123456789");
        let err = read_frame(&mut &f[..f.len() - 3], FRAME_MAX)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_frame(&mut &f[..4], FRAME_MAX).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn proofs_need_the_secret_and_the_challenge() {
        let c = new_challenge().unwrap();
        assert_ne!(c, new_challenge().unwrap());
        let p = proof(b"s3cret", &c);
        assert_eq!(p.len(), PROOF_LEN);
        assert!(proof_matches(b"s3cret", &c, &p));
        assert!(!proof_matches(b"s3creT", &c, &p));
        assert!(!proof_matches(b"s3cret", &new_challenge().unwrap(), &p));
        assert!(!proof_matches(b"s3cret", &c, &p[..31]));
        assert!(!proof_matches(b"s3cret", &c, b""));
    }

    #[test]
    fn hello_is_checked_for_truncation() {
        let f = Frame {
            kind: HELLO,
            body: hello_body(PROTOCOL_VERSION, PACKAGE_VERSION),
        };
        let h = parse_hello(&f).unwrap();
        assert_eq!(h.package, PACKAGE_VERSION);
        let mut cut = f.body.clone();
        cut.truncate(MAGIC.len() + 4);
        assert!(parse_hello(&Frame {
            kind: HELLO,
            body: cut
        })
        .is_err());
    }

    #[test]
    fn hello_checks_magic_and_versions() {
        let ok = Frame {
            kind: HELLO,
            body: hello_body(PROTOCOL_VERSION, PACKAGE_VERSION),
        };
        let h = parse_hello(&ok).unwrap();
        assert_eq!(check_hello(&h), None);

        let old = Frame {
            kind: HELLO,
            body: hello_body(PROTOCOL_VERSION + 1, "1.0.0"),
        };
        let msg = check_hello(&parse_hello(&old).unwrap()).unwrap();
        assert!(msg.contains("version mismatch"), "{msg}");
        assert!(msg.contains("1.0.0"), "{msg}");

        let junk = Frame {
            kind: HELLO,
            body: b"GET / HTTP/1.1".to_vec(),
        };
        assert!(parse_hello(&junk).is_err());
        let wrong_kind = Frame {
            kind: TASK,
            body: hello_body(PROTOCOL_VERSION, PACKAGE_VERSION),
        };
        assert!(parse_hello(&wrong_kind).is_err());
    }

    #[test]
    fn blocking_reader_matches_async_one() {
        let f = frame(RESULT, b"abc");
        let got = read_frame_blocking(&f[..], FRAME_MAX).unwrap();
        assert_eq!((got.kind, got.body), (RESULT, b"abc".to_vec()));
        assert!(read_frame_blocking(&f[..5], FRAME_MAX).is_err());
        let mut big = vec![TASK];
        big.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_frame_blocking(&big[..], FRAME_MAX).is_err());
    }
}
