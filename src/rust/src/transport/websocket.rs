//! WebSocket (RFC 6455) carriage of mirai's byte stream, for `ws://` and
//! `wss://` URLs.
//!
//! The host and its daemons speak their own length-prefixed protocol over a
//! byte stream. Over a websocket URL that stream travels inside a WebSocket
//! connection, so it can cross proxies and gateways that only pass HTTP. The
//! connection is first upgraded by the HTTP handshake ([`accept`] on the
//! listening side, [`connect`] on the dialling side); then [`pump`] copies
//! bytes both ways between the websocket (`outer`: a TCP or TLS stream) and a
//! plain byte stream (`inner`: in practice one end of a Unix socketpair that
//! the rest of the crate uses like any other socket).
//!
//! Both ends are always this package, so only what is needed is implemented:
//! each read from `inner` goes out as one binary frame, and the payloads of
//! received data frames are written to `inner` as they arrive (message
//! boundaries mean nothing on a byte stream). It is still correct RFC 6455 on
//! the wire, and hostile input is expected: the HTTP head is bounded, payloads
//! are streamed in fixed-size chunks (never buffered whole nor sized from the
//! peer's length field), and any protocol violation ends the pump.

use ring::rand::{SecureRandom, SystemRandom};
use std::io::{self, ErrorKind};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Which end of the websocket we are: clients mask the frames they send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEAD: usize = 8 * 1024;
const SEND_CHUNK: usize = 64 * 1024;
const RECV_CHUNK: usize = 64 * 1024;
/// Longest frame header: 2 bytes, a 64-bit length and a mask.
const MAX_HEADER: usize = 14;
/// How long to wait for the peer's Close once ours has been sent.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

const OP_CONTINUATION: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INTERNAL_ERROR: u16 = 1011;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg.into())
}

/// Peer-supplied text shortened for error messages.
fn clip(s: &str) -> &str {
    s.char_indices().nth(100).map_or(s, |(i, _)| &s[..i])
}

// ---------------------------------------------------------------- handshake

/// Server side of the opening handshake: read the HTTP/1.1 upgrade request
/// from `stream`, check it, and answer `101 Switching Protocols`.
/// Errors (and answers 400 / 404 before returning Err, best effort) when the
/// request is malformed, not a GET, not a websocket upgrade, lacks
/// Sec-WebSocket-Key, has Sec-WebSocket-Version other than 13, or its path
/// differs from `path` (404). The request head is limited to 8 KiB.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> io::Result<()> {
    let text = match read_head(stream).await {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::InvalidData => {
            reject(stream, "400 Bad Request").await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    match check_request(&text, path) {
        Ok(key) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(key)
            );
            stream.write_all(response.as_bytes()).await?;
            stream.flush().await
        }
        Err((status, e)) => {
            reject(stream, status).await;
            Err(e)
        }
    }
}

/// Answer a refused upgrade; the caller drops the connection anyway.
async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, status: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nSec-WebSocket-Version: 13\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.flush().await;
}

/// The Sec-WebSocket-Key of a valid upgrade request for `path`, or the HTTP
/// status to refuse it with.
fn check_request<'a>(text: &'a str, path: &str) -> Result<&'a str, (&'static str, io::Error)> {
    let bad = |msg: &str| {
        (
            "400 Bad Request",
            invalid(format!("websocket handshake: {msg}")),
        )
    };
    let head = parse_head(text).map_err(|_| bad("malformed HTTP request"))?;
    let parts: Vec<&str> = head.start.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("malformed HTTP request line"));
    };
    if version != "HTTP/1.1" {
        return Err(bad("not an HTTP/1.1 request"));
    }
    if method != "GET" {
        return Err(bad("not a GET request"));
    }
    let path = if path.is_empty() { "/" } else { path };
    if target != path {
        let msg = format!("websocket handshake: path {} not found", clip(target));
        return Err(("404 Not Found", invalid(msg)));
    }
    if !head.has_token("upgrade", "websocket") || !head.has_token("connection", "upgrade") {
        return Err(bad("not a websocket upgrade request"));
    }
    if head.get("sec-websocket-version") != Some("13") {
        return Err(bad("unsupported Sec-WebSocket-Version (13 required)"));
    }
    match head.get("sec-websocket-key") {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(bad("missing Sec-WebSocket-Key")),
    }
}

/// Client side: send the upgrade request for `path` with `Host: {host}`
/// (the caller passes "host:port", IPv6 in brackets) and a random 16-byte
/// base64 Sec-WebSocket-Key, then read the response; Ok only for status 101
/// with the correct Sec-WebSocket-Accept. Error messages should be useful
/// to a user, e.g. "websocket upgrade refused: HTTP/1.1 404 Not Found".
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> io::Result<()> {
    let path = if path.is_empty() { "/" } else { path };
    // Refuse what would break (or inject into) the request head.
    let unsafe_char = |c: char| c.is_whitespace() || c.is_control();
    if host.contains(unsafe_char) || path.contains(unsafe_char) {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "websocket host or path contains whitespace or control characters",
        ));
    }
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| io::Error::other("no system randomness for the websocket key"))?;
    let key = base64(&nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let failed = |msg: &str| invalid(format!("websocket upgrade failed: {msg}"));
    let text = read_head(stream).await.map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => io::Error::new(
            ErrorKind::UnexpectedEof,
            "websocket upgrade failed: connection closed by the server",
        ),
        kind => io::Error::new(kind, format!("websocket upgrade failed: {e}")),
    })?;
    let head = parse_head(&text).map_err(|_| failed("malformed HTTP response"))?;
    let mut status = head.start.split(' ');
    let is_http = status.next().is_some_and(|v| v.starts_with("HTTP/"));
    if !is_http || status.next() != Some("101") {
        return Err(io::Error::new(
            ErrorKind::ConnectionRefused,
            format!("websocket upgrade refused: {}", clip(head.start)),
        ));
    }
    if !head.has_token("upgrade", "websocket") || !head.has_token("connection", "upgrade") {
        return Err(failed("response is not a websocket upgrade"));
    }
    if head.get("sec-websocket-accept") != Some(accept_key(&key).as_str()) {
        return Err(failed("wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// Read an HTTP head up to and including the blank line, at most 8 KiB.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    // One byte at a time: websocket frames may follow the blank line at once
    // and must stay unread. Heads are a few hundred bytes.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() == MAX_HEAD {
            return Err(invalid("HTTP head longer than 8 KiB"));
        }
        let b = stream.read_u8().await?;
        // Control bytes never occur in a head: fail fast on garbage.
        if (b < 0x20 && !matches!(b, b'\r' | b'\n' | b'\t')) || b == 0x7f {
            return Err(invalid("not an HTTP head"));
        }
        head.push(b);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A parsed HTTP head: the start line and the header fields.
struct Head<'a> {
    start: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

fn parse_head(text: &str) -> io::Result<Head<'_>> {
    let text = text.strip_suffix("\r\n\r\n").unwrap_or(text);
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or("");
    let bad_line = |l: &str| l.contains(['\r', '\n']);
    if bad_line(start) {
        return Err(invalid("malformed HTTP head"));
    }
    let mut fields = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("malformed HTTP header"))?;
        // Also rejects obsolete line folding (a line starting with a space).
        if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) || bad_line(value) {
            return Err(invalid("malformed HTTP header"));
        }
        fields.push((name, value.trim_matches([' ', '\t'])));
    }
    Ok(Head { start, fields })
}

impl<'a> Head<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        let field = self
            .fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        field.map(|&(_, v)| v)
    }

    /// Whether any `name` field has `token` in its comma-separated list.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key.
fn accept_key(key: &str) -> String {
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key.as_bytes());
    sha1.update(GUID);
    base64(sha1.finish().as_ref())
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = byte(0) << 16 | byte(1) << 8 | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------- framing

/// XOR `buf` with `mask`, `buf` starting `offset` bytes into the payload.
fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let m: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence of 4.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// xorshift64* for per-frame masks, seeded once from the system: masks only
/// need to be unforeseeable by intermediaries, not cryptographically strong.
struct MaskRng(u64);

impl MaskRng {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        if SystemRandom::new().fill(&mut seed).is_err() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            seed = now.map_or(0, |d| d.as_nanos() as u64).to_ne_bytes();
        }
        MaskRng(u64::from_ne_bytes(seed) | 1) // the state must not be zero
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32).to_ne_bytes()
    }
}

/// A FIN frame header for a payload of `len` bytes, and its length.
fn frame_header(opcode: u8, len: usize, mask: Option<[u8; 4]>) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    h[0] = 0x80 | opcode;
    let mut n = 2;
    if len < 126 {
        h[1] = len as u8;
    } else if let Ok(len) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        n = 4;
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(mask) = mask {
        h[1] |= 0x80;
        h[n..n + 4].copy_from_slice(&mask);
        n += 4;
    }
    (h, n)
}

/// The writing end of `outer`, used only by the sending direction.
struct FrameWriter<W> {
    out: W,
    masks: Option<MaskRng>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    async fn control(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let len = payload.len().min(125);
        let mask = self.masks.as_mut().map(MaskRng::next_mask);
        let (h, hl) = frame_header(opcode, len, mask);
        let mut frame = [0u8; MAX_HEADER + 125];
        frame[..hl].copy_from_slice(&h[..hl]);
        frame[hl..hl + len].copy_from_slice(&payload[..len]);
        if let Some(mask) = mask {
            apply_mask(&mut frame[hl..hl + len], mask, 0);
        }
        self.out.write_all(&frame[..hl + len]).await?;
        self.out.flush().await
    }

    /// Send `buf[MAX_HEADER..MAX_HEADER + len]` as a binary frame, its
    /// header written into the space before it so one write suffices.
    async fn data(&mut self, buf: &mut [u8], len: usize) -> io::Result<()> {
        let mask = self.masks.as_mut().map(MaskRng::next_mask);
        let (h, hl) = frame_header(OP_BINARY, len, mask);
        let start = MAX_HEADER - hl;
        buf[start..MAX_HEADER].copy_from_slice(&h[..hl]);
        if let Some(mask) = mask {
            apply_mask(&mut buf[MAX_HEADER..MAX_HEADER + len], mask, 0);
        }
        self.out.write_all(&buf[start..MAX_HEADER + len]).await?;
        self.out.flush().await
    }
}

/// What the receiving direction asks the sending one to write.
enum Control {
    Pong(Vec<u8>),
    Close(u16),
}

// ---------------------------------------------------------------- pump

/// Copy bytes both ways between websocket `outer` and plain `inner` until
/// either side ends or errs; then close both (send a Close frame on outer
/// best effort, shut down inner's write side). Returns when both
/// directions are finished.
pub async fn pump<O, I>(outer: O, inner: I, role: Role)
where
    O: AsyncRead + AsyncWrite + Send + Unpin,
    I: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (outer_rd, outer_wr) = tokio::io::split(outer);
    let (inner_rd, mut inner_wr) = tokio::io::split(inner);
    // Only the sending direction writes to outer; the receiving one asks it
    // for pongs and for the final Close over this channel.
    let (control_tx, control_rx) = mpsc::channel(4);
    let (sent_tx, sent_rx) = oneshot::channel::<()>();
    let send = async move {
        send_frames(outer_wr, inner_rd, control_rx, role).await;
        drop(sent_tx);
    };
    let receive = async move {
        // Once our Close is out, the peer gets a grace period to answer.
        let grace = async {
            let _ = sent_rx.await;
            tokio::time::sleep(CLOSE_GRACE).await;
        };
        let code = tokio::select! {
            r = receive_frames(outer_rd, &mut inner_wr, role, &control_tx) => match r {
                Err(e) if e.kind() == ErrorKind::InvalidData => CLOSE_PROTOCOL_ERROR,
                _ => CLOSE_NORMAL,
            },
            () = grace => CLOSE_NORMAL,
        };
        let _ = inner_wr.shutdown().await;
        // Ends the sending direction, if it is still running.
        let _ = control_tx.send(Control::Close(code)).await;
    };
    tokio::join!(send, receive);
}

/// Send what `inner` yields as binary frames, and the pongs asked for, until
/// `inner` ends or the receiving direction asks to close; then send Close.
async fn send_frames<W, R>(out: W, mut inner: R, mut control: mpsc::Receiver<Control>, role: Role)
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let masks = (role == Role::Client).then(MaskRng::new);
    let mut writer = FrameWriter { out, masks };
    let mut buf = vec![0u8; MAX_HEADER + SEND_CHUNK];
    let close = loop {
        tokio::select! {
            r = inner.read(&mut buf[MAX_HEADER..]) => match r {
                Ok(0) => break Some(CLOSE_NORMAL),
                Ok(n) => {
                    if writer.data(&mut buf, n).await.is_err() {
                        break None;
                    }
                }
                Err(_) => break Some(CLOSE_INTERNAL_ERROR),
            },
            c = control.recv() => match c {
                Some(Control::Pong(payload)) => {
                    if writer.control(OP_PONG, &payload).await.is_err() {
                        break None;
                    }
                }
                Some(Control::Close(code)) => break Some(code),
                None => break Some(CLOSE_NORMAL),
            },
        }
    };
    if let Some(code) = close {
        let _ = writer.control(OP_CLOSE, &code.to_be_bytes()).await;
    }
    let _ = writer.out.shutdown().await;
}

/// Write the payloads of data frames from `rd` to `inner` and pass pings on
/// as pongs, until Close or end of stream (Ok) or an error. Protocol
/// violations are `InvalidData` errors.
async fn receive_frames<R, W>(
    mut rd: R,
    inner: &mut W,
    role: Role,
    control: &mpsc::Sender<Control>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; RECV_CHUNK];
    let mut in_message = false;
    loop {
        let mut b = [0u8; 2];
        if rd.read(&mut b[..1]).await? == 0 {
            return Ok(());
        }
        rd.read_exact(&mut b[1..]).await?;
        let (fin, opcode, masked) = (b[0] & 0x80 != 0, b[0] & 0x0f, b[1] & 0x80 != 0);
        if b[0] & 0x70 != 0 {
            return Err(invalid("websocket frame with reserved bits set"));
        }
        // Clients must mask, servers must not.
        if masked != (role == Role::Server) {
            return Err(invalid(if masked {
                "masked websocket frame from the server"
            } else {
                "unmasked websocket frame from the client"
            }));
        }
        let len = match b[1] & 0x7f {
            126 => u64::from(rd.read_u16().await?),
            127 => rd.read_u64().await?,
            n => u64::from(n),
        };
        if len >> 63 != 0 {
            return Err(invalid("websocket frame length out of range"));
        }
        let mut mask = [0u8; 4];
        if masked {
            rd.read_exact(&mut mask).await?;
        }
        let unmask = |buf: &mut [u8], offset: usize| {
            if masked {
                apply_mask(buf, mask, offset);
            }
        };
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                if (opcode == OP_CONTINUATION) != in_message {
                    return Err(invalid("websocket fragments out of order"));
                }
                in_message = !fin;
                // Stream the payload through, whatever its announced length.
                let (mut left, mut offset) = (len, 0);
                while left > 0 {
                    let want = left.min(RECV_CHUNK as u64) as usize;
                    let n = rd.read(&mut buf[..want]).await?;
                    if n == 0 {
                        return Err(ErrorKind::UnexpectedEof.into());
                    }
                    unmask(&mut buf[..n], offset);
                    inner.write_all(&buf[..n]).await?;
                    offset = (offset + n) % 4;
                    left -= n as u64;
                }
                inner.flush().await?;
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(invalid("invalid websocket control frame"));
                }
                let payload = &mut buf[..len as usize];
                rd.read_exact(payload).await?;
                unmask(payload, 0);
                match opcode {
                    OP_CLOSE => return Ok(()),
                    // When pongs are backed up, skipping one is allowed.
                    OP_PING => drop(control.try_send(Control::Pong(payload.to_vec()))),
                    _ => {}
                }
            }
            _ => return Err(invalid("unknown websocket opcode")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn accept_key_matches_rfc6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn mask_is_correct_for_any_offset_and_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mask = [0x12, 0x34, 0x56, 0x78];
        let naive: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        for chunk in [1, 3, 5, 8, 13, 64, 1000] {
            for start in 0..9 {
                let mut buf = data[start..].to_vec();
                for (k, piece) in buf.chunks_mut(chunk).enumerate() {
                    apply_mask(piece, mask, start + k * chunk);
                }
                assert_eq!(buf, naive[start..], "chunk {chunk} start {start}");
            }
        }
    }

    #[test]
    fn frame_header_uses_minimal_length_forms() {
        assert_eq!(frame_header(OP_BINARY, 125, None).1, 2);
        assert_eq!(frame_header(OP_BINARY, 126, None).1, 4);
        assert_eq!(frame_header(OP_BINARY, 65535, None).1, 4);
        let (h, n) = frame_header(OP_BINARY, 65536, Some([1, 2, 3, 4]));
        assert_eq!(&h[..n], &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]);
    }
}
