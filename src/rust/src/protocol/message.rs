//! The messages after the handshake, each encoded and decoded here and
//! nowhere else:
//!
//! - `TASK` host -> daemon: id u64, flags u8, then the serialized R task.
//!   With [`TASK_RAW_ARGS`] the serialized task is preceded by its length
//!   (u64) and followed by a table of the large vectors that travel as raw
//!   data (count u32, then one [`RAW_ARG_LEN`]-byte [`RawArg`] each), then
//!   the data of each vector in turn.
//! - `RESULT` daemon -> host: id u64, flags u8, then the serialized R
//!   value; with [`RESULT_VECTOR`] instead a plain vector: type u8, 7
//!   bytes of padding, length u64, then its data.
//! - `CANCEL` host -> daemon: id u64 (interrupt that task if running).
//! - `EXIT` host -> daemon: stop serving and exit.
//! - `LEAVING` daemon -> host: this daemon stops serving (a limit was
//!   reached, or it was told to exit); any task sent to it since its last
//!   result was never started and may go to another daemon.
//! - `SERIAL` host -> daemon, right after a WELCOME that announces it: the
//!   profile's serialization configuration, for the daemon to apply before
//!   its first task. Format u8 ([`SERIAL_FORMAT`]), length u64, then that
//!   many bytes (the configuration serialized by R; opaque here).
//! - `HEARTBEAT` either way, empty: sent by a side that has written
//!   nothing for [`HEARTBEAT_INTERVAL`], so the peer hears something; a
//!   side that hears no bytes at all for [`SILENCE_LIMIT`] takes the
//!   connection for dead. Otherwise ignored.
//! - `SHARE` host -> daemon: id u64, then a serialized R object that the
//!   tasks following may name by that id instead of carrying it (a large
//!   object of a `mirai_map()`, sent once to each daemon; see
//!   `host::shared`). The daemon keeps it until an `UNSHARE`.
//! - `UNSHARE` host -> daemon: id u64: no task will name it again.

use super::frame::{begin_frame, finish_frame, frame, invalid, set_body_len, HEADER_LEN};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

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
pub const SERIAL: u8 = 11;
pub const HEARTBEAT: u8 = 13;
pub const SHARE: u8 = 14;
pub const UNSHARE: u8 = 15;

/// A side that has written nothing for this long sends a HEARTBEAT.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// No bytes from the peer for this long: the connection is dead (the
/// peer's machine vanished, the network split, or the peer is stuck).
pub const SILENCE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Task flag: evaluate keeping state (`everywhere()`): the daemon takes a
/// new cleanup baseline afterwards.
pub const TASK_KEEP_STATE: u8 = 1;
/// Task flag: large vectors follow as raw data (see the module docs).
pub const TASK_RAW_ARGS: u8 = 2;
/// Task flag: an element of a `mirai_map()`.
pub const TASK_MAP: u8 = 4;
/// Task flag: the task names objects sent before by `SHARE`.
pub const TASK_SHARED: u8 = 8;
/// Task flag: another task of the same run follows at once (a dispatcher
/// hands a daemon consecutive small map elements together): the daemon
/// reads it before evaluating this one, so that CANCELs sent after the run
/// reach it while it works.
pub const TASK_MORE: u8 = 16;
/// Where a TASK frame's flags byte is: after the header and the id.
pub const TASK_FLAGS_AT: usize = crate::protocol::HEADER_LEN + 8;
/// Result flag: the value is an evaluation error (miraiError/Interrupt).
pub const RESULT_ERROR: u8 = 1;
/// Result flag: the value is a plain vector sent as raw data.
pub const RESULT_VECTOR: u8 = 2;

/// Bytes of id and flags at the start of TASK and RESULT bodies.
pub const ID_FLAGS_LEN: usize = 9;
/// Bytes of one raw vector's description in a TASK.
pub const RAW_ARG_LEN: usize = 24;
/// Bytes of a vector result's type and length, after id and flags.
const VECTOR_HEAD_LEN: usize = 16;
/// Bytes of a CANCEL frame.
pub const CANCEL_LEN: usize = HEADER_LEN + 8;

/// The kinds of plain vector that travel as raw data. The codes are R's
/// own type numbers, so both ends agree with R on what they mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorType {
    Logical = 10,
    Integer = 13,
    Double = 14,
    Complex = 15,
    Raw = 24,
}

impl VectorType {
    pub fn from_code(code: u8) -> Option<VectorType> {
        Some(match code {
            10 => VectorType::Logical,
            13 => VectorType::Integer,
            14 => VectorType::Double,
            15 => VectorType::Complex,
            24 => VectorType::Raw,
            _ => return None,
        })
    }

    pub fn element_size(self) -> usize {
        match self {
            VectorType::Logical | VectorType::Integer => 4,
            VectorType::Double => 8,
            VectorType::Complex => 16,
            VectorType::Raw => 1,
        }
    }

    /// Bytes of data of a vector of `n` elements; `None` on overflow.
    pub fn data_len(self, n: u64) -> Option<usize> {
        usize::try_from(n).ok()?.checked_mul(self.element_size())
    }
}

/// A large vector of a task sent as raw data: where it belongs in the
/// task (`slot` and `index`, meaningful to the R side only), its type and
/// length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawArg {
    pub slot: u32,
    pub index: u32,
    pub vtype: VectorType,
    pub n: u64,
}

impl RawArg {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.push(self.vtype as u8);
        out.extend_from_slice(&[0; 7]);
        out.extend_from_slice(&self.n.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<RawArg> {
        if b.len() != RAW_ARG_LEN || b[9..16].iter().any(|&x| x != 0) {
            return None;
        }
        let arg = RawArg {
            slot: u32::from_le_bytes(b[0..4].try_into().ok()?),
            index: u32::from_le_bytes(b[4..8].try_into().ok()?),
            vtype: VectorType::from_code(b[8])?,
            n: u64::from_le_bytes(b[16..24].try_into().ok()?),
        };
        arg.data_len()?;
        Some(arg)
    }

    /// Bytes of this vector's data.
    pub fn data_len(&self) -> Option<usize> {
        self.vtype.data_len(self.n)
    }
}

// ---- TASK -------------------------------------------------------------

/// Begin a TASK frame in `buf` (cleared first): header, id and flags, and
/// with [`TASK_RAW_ARGS`] room for the serialized length. Append the
/// serialized task, then call [`finish_task`].
pub fn begin_task(buf: &mut Vec<u8>, id: u64, flags: u8) {
    buf.clear();
    buf.extend_from_slice(&begin_frame(TASK, 0));
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(flags);
    if flags & TASK_RAW_ARGS != 0 {
        buf.extend_from_slice(&[0u8; 8]);
    }
}

/// Finish a TASK frame begun with [`begin_task`]: with raw vectors `raw`
/// (whose data the caller sends after these bytes, in order), write the
/// table describing them and count their data in the frame length.
pub fn finish_task(buf: &mut Vec<u8>, raw: &[RawArg]) {
    let flags = buf[HEADER_LEN + 8];
    if flags & TASK_RAW_ARGS == 0 {
        debug_assert!(raw.is_empty());
        finish_frame(buf);
        return;
    }
    let at = HEADER_LEN + ID_FLAGS_LEN;
    let serialized = (buf.len() - at - 8) as u64;
    buf[at..at + 8].copy_from_slice(&serialized.to_le_bytes());
    buf.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    let mut data = 0u64;
    for arg in raw {
        arg.encode(buf);
        data += arg.data_len().unwrap_or(0) as u64;
    }
    let body = (buf.len() - HEADER_LEN) as u64 + data;
    set_body_len(buf, body);
}

/// The start of a TASK frame whose serialized task of `payload_len`
/// bytes follows separately (an `everywhere()` payload shared by every
/// daemon's frame).
pub fn task_prefix(id: u64, flags: u8, payload_len: usize) -> Vec<u8> {
    let mut buf = begin_frame(TASK, ID_FLAGS_LEN);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(flags & !TASK_RAW_ARGS);
    set_body_len(&mut buf, (ID_FLAGS_LEN + payload_len) as u64);
    buf
}

/// The head of a SHARE frame for object `id` whose serialized bytes
/// (`len` of them) follow.
pub fn share_prefix(id: u64, len: usize) -> Vec<u8> {
    let mut buf = begin_frame(SHARE, 8);
    buf.extend_from_slice(&id.to_le_bytes());
    set_body_len(&mut buf, (8 + len) as u64);
    buf
}

/// An UNSHARE frame for object `id`.
pub fn unshare_frame(id: u64) -> Vec<u8> {
    frame(UNSHARE, &id.to_le_bytes())
}

/// The object id at the start of a SHARE or UNSHARE body.
pub fn parse_share_id(body: &[u8]) -> io::Result<u64> {
    match body.get(..8) {
        Some(b) => Ok(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
        None => Err(invalid("truncated shared-object id")),
    }
}

/// A task as the daemon receives it: the serialized task is left in the
/// reader's buffer; raw vectors, if any, come next on the stream.
#[derive(Debug, PartialEq)]
pub struct TaskHead {
    pub id: u64,
    pub flags: u8,
    pub raw: Vec<RawArg>,
}

/// Read the body (`len` bytes, header already read) of a TASK up to the
/// data of its raw vectors, putting the serialized task in `payload`.
/// Everything is checked against `len` before any allocation it implies.
pub fn read_task_blocking<R: io::Read>(
    mut r: R,
    len: u64,
    payload: &mut Vec<u8>,
) -> io::Result<TaskHead> {
    let bad = || invalid("malformed task");
    let mut head = [0u8; ID_FLAGS_LEN];
    if len < ID_FLAGS_LEN as u64 {
        return Err(bad());
    }
    r.read_exact(&mut head)?;
    let id = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    let flags = head[8];
    let mut left = len - ID_FLAGS_LEN as u64;
    payload.clear();
    if flags & TASK_RAW_ARGS == 0 {
        super::frame::read_body_into(&mut r, left, payload)?;
        return Ok(TaskHead {
            id,
            flags,
            raw: Vec::new(),
        });
    }
    let mut word = [0u8; 8];
    r.read_exact(&mut word)?;
    let serialized = u64::from_le_bytes(word);
    left = left
        .checked_sub(8)
        .and_then(|l| l.checked_sub(serialized))
        .and_then(|l| l.checked_sub(4))
        .ok_or_else(bad)?;
    super::frame::read_body_into(&mut r, serialized, payload)?;
    r.read_exact(&mut word[..4])?;
    let count = u32::from_le_bytes(word[..4].try_into().expect("4 bytes")) as u64;
    let table_len = count
        .checked_mul(RAW_ARG_LEN as u64)
        .filter(|&t| t <= left)
        .ok_or_else(bad)?;
    let mut table = vec![0u8; table_len as usize];
    r.read_exact(&mut table)?;
    left -= table_len;
    let mut raw = Vec::with_capacity(count as usize);
    for entry in table.chunks_exact(RAW_ARG_LEN) {
        let arg = RawArg::decode(entry).ok_or_else(bad)?;
        left = left
            .checked_sub(arg.data_len().ok_or_else(bad)? as u64)
            .ok_or_else(bad)?;
        raw.push(arg);
    }
    if left != 0 {
        return Err(bad());
    }
    Ok(TaskHead { id, flags, raw })
}

// ---- RESULT -----------------------------------------------------------

/// Begin a RESULT frame in `buf` (cleared first) for a serialized value,
/// which the caller appends before sealing it with [`finish_frame`].
pub fn begin_result(buf: &mut Vec<u8>, id: u64, is_error: bool) {
    buf.clear();
    buf.extend_from_slice(&begin_frame(RESULT, 0));
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(if is_error { RESULT_ERROR } else { 0 });
}

/// The bytes before the data of a vector result: the data (`n` elements
/// of `vtype`) follows separately.
pub fn vector_result_head(id: u64, vtype: VectorType, n: u64) -> Vec<u8> {
    let mut buf = begin_frame(RESULT, ID_FLAGS_LEN + VECTOR_HEAD_LEN);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.push(RESULT_VECTOR);
    buf.push(vtype as u8);
    buf.extend_from_slice(&[0u8; 7]);
    buf.extend_from_slice(&n.to_le_bytes());
    let data = vtype.data_len(n).unwrap_or(0) as u64;
    set_body_len(&mut buf, (ID_FLAGS_LEN + VECTOR_HEAD_LEN) as u64 + data);
    buf
}

/// What a result carries, as the host reads it.
pub enum ResultValue<B> {
    /// A serialized R value, and whether it is an evaluation error.
    Serialized(Vec<u8>, bool),
    /// A plain vector's data, read into a buffer made by the caller.
    Vector(B, VectorType),
    /// A value of this many bytes that there was no memory for: its bytes
    /// were read and dropped, so the connection goes on.
    Unallocated(u64),
}

/// Read and drop the next `n` bytes of `r`.
async fn skip<R: AsyncRead + Unpin>(r: &mut R, n: u64) -> io::Result<()> {
    let got = tokio::io::copy(&mut r.take(n), &mut tokio::io::sink()).await?;
    if got < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    Ok(())
}

/// Read the body (`len` bytes, header already read) of a RESULT. The data
/// of a vector goes into a buffer from `vector_buffer(type, length)`, so
/// the host can read it into memory laid out for R. A value there is no
/// memory for (`vector_buffer` gives `None`, or the bytes of a serialized
/// one cannot be reserved) is skipped: [`ResultValue::Unallocated`].
pub async fn read_result<R, B>(
    r: &mut R,
    len: u64,
    vector_buffer: impl FnOnce(VectorType, u64) -> Option<B>,
    data_of: impl FnOnce(&mut B) -> &mut [u8],
) -> io::Result<(u64, ResultValue<B>)>
where
    R: AsyncRead + Unpin,
{
    let bad = || invalid("malformed result");
    if len < ID_FLAGS_LEN as u64 {
        return Err(bad());
    }
    let mut head = [0u8; ID_FLAGS_LEN];
    r.read_exact(&mut head).await?;
    let id = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    let flags = head[8];
    let rest = len - ID_FLAGS_LEN as u64;
    if flags & RESULT_VECTOR != 0 {
        let mut vh = [0u8; VECTOR_HEAD_LEN];
        let data_len = rest.checked_sub(VECTOR_HEAD_LEN as u64).ok_or_else(bad)?;
        r.read_exact(&mut vh).await?;
        let vtype = VectorType::from_code(vh[0]).ok_or_else(bad)?;
        let n = u64::from_le_bytes(vh[8..].try_into().expect("8 bytes"));
        if vh[1..8].iter().any(|&x| x != 0) || vtype.data_len(n) != Some(data_len as usize) {
            return Err(bad());
        }
        let Some(mut buf) = vector_buffer(vtype, n) else {
            skip(r, data_len).await?;
            return Ok((id, ResultValue::Unallocated(data_len)));
        };
        r.read_exact(data_of(&mut buf)).await?;
        return Ok((id, ResultValue::Vector(buf, vtype)));
    }
    let Ok(mut body) = crate::buffer::with_capacity(rest as usize) else {
        skip(r, rest).await?;
        return Ok((id, ResultValue::Unallocated(rest)));
    };
    let got = r.take(rest).read_to_end(&mut body).await?;
    if (got as u64) < rest {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    Ok((id, ResultValue::Serialized(body, flags & RESULT_ERROR != 0)))
}

// ---- SERIAL -------------------------------------------------------------

/// The layout of a SERIAL body this version writes and reads.
pub const SERIAL_FORMAT: u8 = 1;
const SERIAL_HEAD_LEN: usize = 9;

/// A profile's serialization configuration as it travels to a daemon.
#[derive(Debug, PartialEq, Eq)]
pub struct SerialConfig {
    /// The configuration serialized by R (its classes and functions).
    pub config: Vec<u8>,
}

impl SerialConfig {
    /// The whole SERIAL frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = begin_frame(SERIAL, SERIAL_HEAD_LEN + self.config.len());
        buf.push(SERIAL_FORMAT);
        buf.extend_from_slice(&(self.config.len() as u64).to_le_bytes());
        buf.extend_from_slice(&self.config);
        finish_frame(&mut buf);
        buf
    }

    /// The configuration in a SERIAL frame; anything else, another format
    /// or a length that disagrees with the body is refused.
    pub fn decode(frame: &super::frame::Frame) -> io::Result<SerialConfig> {
        let bad = || invalid("malformed serialization configuration");
        let b = &frame.body;
        if frame.kind != SERIAL || b.len() < SERIAL_HEAD_LEN || b[0] != SERIAL_FORMAT {
            return Err(bad());
        }
        let n = u64::from_le_bytes(b[1..SERIAL_HEAD_LEN].try_into().expect("8 bytes"));
        if n != (b.len() - SERIAL_HEAD_LEN) as u64 || n == 0 {
            return Err(bad());
        }
        Ok(SerialConfig {
            config: b[SERIAL_HEAD_LEN..].to_vec(),
        })
    }
}

// ---- CANCEL, EXIT, LEAVING ----------------------------------------------

pub fn cancel_frame(id: u64) -> Vec<u8> {
    frame(CANCEL, &id.to_le_bytes())
}

/// The task id of a complete CANCEL frame at the start of `bytes`.
pub fn parse_cancel(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < CANCEL_LEN || bytes[0] != CANCEL || bytes[1..HEADER_LEN] != 8u64.to_le_bytes()
    {
        return None;
    }
    Some(u64::from_le_bytes(
        bytes[HEADER_LEN..CANCEL_LEN].try_into().ok()?,
    ))
}

/// A message with no body (EXIT, LEAVING).
pub fn signal_frame(kind: u8) -> Vec<u8> {
    frame(kind, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{parse_header, FRAME_MAX};

    fn task_with(raw: &[RawArg], serialized: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let flags = if raw.is_empty() { 0 } else { TASK_RAW_ARGS };
        begin_task(&mut buf, 42, flags);
        buf.extend_from_slice(serialized);
        finish_task(&mut buf, raw);
        for arg in raw {
            buf.extend(std::iter::repeat_n(7u8, arg.data_len().unwrap()));
        }
        buf
    }

    fn read_back(bytes: &[u8]) -> io::Result<(TaskHead, Vec<u8>)> {
        let header: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
        let (kind, len) = parse_header(&header, FRAME_MAX)?;
        assert_eq!(kind, TASK);
        let mut payload = Vec::new();
        let head = read_task_blocking(&bytes[HEADER_LEN..], len, &mut payload)?;
        Ok((head, payload))
    }

    #[test]
    fn tasks_round_trip_with_and_without_raw_vectors() {
        let (head, payload) = read_back(&task_with(&[], b"serialized")).unwrap();
        assert_eq!((head.id, head.flags, head.raw.len()), (42, 0, 0));
        assert_eq!(payload, b"serialized");
        let raw = [
            RawArg {
                slot: 1,
                index: 3,
                vtype: VectorType::Double,
                n: 5,
            },
            RawArg {
                slot: 2,
                index: 0,
                vtype: VectorType::Raw,
                n: 3,
            },
        ];
        let bytes = task_with(&raw, b"rest");
        let (head, payload) = read_back(&bytes).unwrap();
        assert_eq!(head.raw, raw);
        assert_eq!(head.flags, TASK_RAW_ARGS);
        assert_eq!(payload, b"rest");
    }

    #[test]
    fn malformed_tasks_are_refused() {
        let raw = [RawArg {
            slot: 1,
            index: 0,
            vtype: VectorType::Integer,
            n: 4,
        }];
        let good = task_with(&raw, b"abc");
        // a raw table claiming more data than the frame holds
        let mut lying = good.clone();
        let n_at = good.len() - 16 - 8;
        lying[n_at..n_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_back(&lying).is_err());
        // an unknown vector type
        let mut bad_type = good.clone();
        bad_type[n_at - 8] = 16; // STRSXP
        assert!(read_back(&bad_type).is_err());
        // a serialized length beyond the body
        let mut bad_len = good;
        bad_len[HEADER_LEN + ID_FLAGS_LEN..HEADER_LEN + ID_FLAGS_LEN + 8]
            .copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(read_back(&bad_len).is_err());
    }

    #[test]
    fn shared_payload_prefix_counts_the_payload() {
        let p = task_prefix(9, TASK_KEEP_STATE, 100);
        let header: [u8; HEADER_LEN] = p[..HEADER_LEN].try_into().unwrap();
        assert_eq!(parse_header(&header, FRAME_MAX).unwrap(), (TASK, 109));
    }

    /// A whole RESULT frame read back, into plain buffers.
    async fn decode_result(frame: &[u8]) -> (u64, ResultValue<Vec<u8>>) {
        let len = frame.len() as u64 - HEADER_LEN as u64;
        let mut r = &frame[HEADER_LEN..];
        read_result(
            &mut r,
            len,
            |t, n| Some(vec![0u8; t.data_len(n).unwrap()]),
            |b| b.as_mut_slice(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn results_round_trip_and_lengths_are_checked() {
        let mut buf = Vec::new();
        begin_result(&mut buf, 7, true);
        buf.extend_from_slice(b"value");
        finish_frame(&mut buf);
        let (id, v) = decode_result(&buf).await;
        assert_eq!(id, 7);
        assert!(matches!(v, ResultValue::Serialized(b, true) if b == b"value"));

        let mut v = vector_result_head(8, VectorType::Integer, 2);
        v.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let (id, got) = decode_result(&v).await;
        assert_eq!(id, 8);
        assert!(
            matches!(got, ResultValue::Vector(b, VectorType::Integer) if b == [1, 0, 0, 0, 2, 0, 0, 0])
        );
        // a vector result shorter than its own header: refused, no panic
        let mut r = &v[HEADER_LEN..HEADER_LEN + 12];
        assert!(read_result(
            &mut r,
            12,
            |t, n| Some(vec![0u8; t.data_len(n).unwrap()]),
            |b| b.as_mut_slice()
        )
        .await
        .is_err());
    }

    #[tokio::test]
    async fn a_result_without_memory_for_it_is_skipped_and_the_stream_goes_on() {
        let mut v = vector_result_head(8, VectorType::Double, 3);
        v.extend_from_slice(&[7u8; 24]);
        let mut stream = v.clone();
        stream.extend_from_slice(&cancel_frame(5));
        let mut r = &stream[HEADER_LEN..];
        let len = v.len() as u64 - HEADER_LEN as u64;
        let (id, got) = read_result(&mut r, len, |_, _| None::<Vec<u8>>, |b| b.as_mut_slice())
            .await
            .unwrap();
        assert_eq!(id, 8);
        assert!(matches!(got, ResultValue::Unallocated(24)));
        // the next frame starts where the skipped one ended
        assert_eq!(parse_cancel(r), Some(5));
        // a body that ends early is still an error
        let mut short = &v[HEADER_LEN..v.len() - 1];
        assert!(read_result(
            &mut short,
            len,
            |_, _| None::<Vec<u8>>,
            |b| b.as_mut_slice()
        )
        .await
        .is_err());
    }

    /// The frame as a reader sees it after the header.
    fn as_frame(bytes: &[u8]) -> io::Result<crate::protocol::frame::Frame> {
        crate::protocol::frame::read_frame_blocking(bytes, FRAME_MAX)
    }

    #[test]
    fn serial_configs_round_trip() {
        let c = SerialConfig {
            config: b"X\n\x00\x00\x00\x03 config".to_vec(),
        };
        let f = c.encode();
        let header: [u8; HEADER_LEN] = f[..HEADER_LEN].try_into().unwrap();
        assert_eq!(
            parse_header(&header, FRAME_MAX).unwrap(),
            (SERIAL, (f.len() - HEADER_LEN) as u64)
        );
        assert_eq!(SerialConfig::decode(&as_frame(&f).unwrap()).unwrap(), c);
    }

    #[test]
    fn malformed_serial_configs_are_refused_without_panic() {
        let good = SerialConfig {
            config: vec![1, 2, 3, 4],
        }
        .encode();
        let body = good[HEADER_LEN..].to_vec();
        let with_body = |kind: u8, body: Vec<u8>| crate::protocol::frame::Frame { kind, body };
        // every truncation of the body, including an empty one
        for n in 0..body.len() {
            assert!(SerialConfig::decode(&with_body(SERIAL, body[..n].to_vec())).is_err());
        }
        // trailing bytes
        let mut long = body.clone();
        long.push(0);
        assert!(SerialConfig::decode(&with_body(SERIAL, long)).is_err());
        // a length that claims more than there is, or overflows
        for claim in [5u64, u64::MAX] {
            let mut lying = body.clone();
            lying[1..9].copy_from_slice(&claim.to_le_bytes());
            assert!(SerialConfig::decode(&with_body(SERIAL, lying)).is_err());
        }
        // another format, another kind, an empty configuration
        let mut other = body.clone();
        other[0] = SERIAL_FORMAT + 1;
        assert!(SerialConfig::decode(&with_body(SERIAL, other)).is_err());
        assert!(SerialConfig::decode(&with_body(TASK, body)).is_err());
        let empty = SerialConfig { config: vec![] }.encode();
        assert!(SerialConfig::decode(&as_frame(&empty).unwrap()).is_err());
        // a frame cut short on the wire never gets to decoding
        assert!(as_frame(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn cancel_frames_parse_only_when_whole() {
        let f = cancel_frame(99);
        assert_eq!(parse_cancel(&f), Some(99));
        assert_eq!(parse_cancel(&f[..CANCEL_LEN - 1]), None);
        assert_eq!(parse_cancel(&signal_frame(EXIT)), None);
    }

    #[test]
    fn share_and_unshare_frames_carry_the_id() {
        let head = share_prefix(0x0102_0304_0506_0708, 5);
        let (kind, len) =
            crate::protocol::frame::parse_header(head[..HEADER_LEN].try_into().unwrap(), u64::MAX)
                .unwrap();
        assert_eq!((kind, len), (SHARE, 13));
        assert_eq!(
            parse_share_id(&head[HEADER_LEN..]).unwrap(),
            0x0102_0304_0506_0708
        );
        let un = unshare_frame(42);
        assert_eq!(un[0], UNSHARE);
        assert_eq!(parse_share_id(&un[HEADER_LEN..]).unwrap(), 42);
        assert!(parse_share_id(&[1, 2, 3]).is_err());
    }
}
