//! Framing: every message is a kind byte and a little-endian u64 body
//! length, then the body. Readers refuse lengths above a cap given by the
//! caller (small before the handshake, [`FRAME_MAX`] after), so a peer can
//! never make us allocate what it has not sent.

use std::io;
use std::io::Read as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of a frame header: kind u8, length u64 LE.
pub const HEADER_LEN: usize = 9;
/// Cap on any frame before the peer has completed the handshake.
pub const HANDSHAKE_MAX: u64 = 4096;
/// Cap on any frame from a peer that has completed the handshake (1 TiB):
/// large enough for any R object, small enough to reject garbage lengths.
pub const FRAME_MAX: u64 = 1 << 40;

/// A whole frame read off the wire.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub body: Vec<u8>,
}

pub fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "truncated frame")
}

/// Start a frame: a header for `kind` whose length [`finish_frame`] fills
/// in once the caller has appended the body, so a serializer can write the
/// body straight into the buffer that goes to the socket.
pub fn begin_frame(kind: u8, capacity: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
    buf.push(kind);
    buf.extend_from_slice(&[0u8; 8]);
    buf
}

/// Write the body length of a frame begun with [`begin_frame`].
pub fn finish_frame(buf: &mut [u8]) {
    set_body_len(buf, (buf.len() - HEADER_LEN) as u64);
}

/// Write `len` as the body length in the header at the start of `buf`
/// (for frames whose body continues beyond `buf`).
pub fn set_body_len(buf: &mut [u8], len: u64) {
    buf[1..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
}

/// A complete frame of `kind` with `body`.
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut buf = begin_frame(kind, body.len());
    buf.extend_from_slice(body);
    finish_frame(&mut buf);
    buf
}

/// Split a header into kind and length, refusing lengths above `max`.
pub fn parse_header(header: &[u8; HEADER_LEN], max: u64) -> io::Result<(u8, u64)> {
    let len = u64::from_le_bytes(header[1..].try_into().expect("header length"));
    if len > max {
        return Err(invalid("frame length exceeds the limit"));
    }
    Ok((header[0], len))
}

/// Read one frame, refusing lengths above `max`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> io::Result<Frame> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let (kind, len) = parse_header(&header, max)?;
    let mut body = crate::buffer::with_capacity(len as usize)?;
    let got = r.take(len).read_to_end(&mut body).await?;
    if (got as u64) < len {
        return Err(truncated());
    }
    Ok(Frame { kind, body })
}

/// Blocking [`read_frame`], for a daemon's R thread.
pub fn read_frame_blocking<R: io::Read>(mut r: R, max: u64) -> io::Result<Frame> {
    let (kind, len) = read_header_blocking(&mut r, max)?;
    let mut body = Vec::new();
    read_body_into(r, len, &mut body)?;
    Ok(Frame { kind, body })
}

/// Read a frame header (blocking): the kind and the body length, at most
/// `max`.
pub fn read_header_blocking<R: io::Read>(mut r: R, max: u64) -> io::Result<(u8, u64)> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)?;
    parse_header(&header, max)
}

/// Append exactly `n` more bytes of a frame from `r` to `body` (blocking).
pub fn read_body_into<R: io::Read>(r: R, n: u64, body: &mut Vec<u8>) -> io::Result<()> {
    crate::buffer::reserve(body, n as usize)?;
    let got = io::Read::take(r, n).read_to_end(body)?;
    if (got as u64) < n {
        return Err(truncated());
    }
    Ok(())
}

/// Write a whole frame and flush it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frame_round_trip() {
        let f = frame(4, b"hello");
        let got = read_frame(&mut &f[..], FRAME_MAX).await.unwrap();
        assert_eq!(got.kind, 4);
        assert_eq!(got.body, b"hello");
    }

    #[tokio::test]
    async fn oversized_length_is_refused_without_allocating() {
        let mut f = vec![4];
        f.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = read_frame(&mut &f[..], FRAME_MAX).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut g = vec![1];
        g.extend_from_slice(&(HANDSHAKE_MAX + 1).to_le_bytes());
        assert!(read_frame(&mut &g[..], HANDSHAKE_MAX).await.is_err());
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let f = frame(5, b"0123456789");
        let err = read_frame(&mut &f[..f.len() - 3], FRAME_MAX)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_frame(&mut &f[..4], FRAME_MAX).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn blocking_reader_matches_async_one() {
        let f = frame(5, b"abc");
        let got = read_frame_blocking(&f[..], FRAME_MAX).unwrap();
        assert_eq!((got.kind, got.body), (5, b"abc".to_vec()));
        assert!(read_frame_blocking(&f[..5], FRAME_MAX).is_err());
        let mut big = vec![4];
        big.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_frame_blocking(&big[..], FRAME_MAX).is_err());
    }
}
