//! Mutation fuzzing of every parser a peer's bytes reach: frame headers,
//! the handshake messages (and the SERIAL configuration after WELCOME),
//! TASK / RESULT / CANCEL bodies, the websocket upgrade request and
//! websocket frames, URLs and PEM input.
//!
//! Each parser starts from valid inputs (seeds) and is fed mutants of them:
//! bit flips, byte overwrites, truncations, insertions and deletions,
//! duplicated ranges, splices of two seeds and length fields replaced by
//! edge values. Every case must return (an error or a value) without
//! panicking, within a bounded (virtual) time, and without any single
//! allocation larger than the frame cap the parser was given. The case
//! count per parser is `MIRAI_FUZZ_CASES` (default 100,000);
//! `tools/fuzz.sh` runs a longer campaign.

use mirai::protocol::*;
use mirai::transport::websocket::{self, Role};
use mirai::transport::{tls, url::Url};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

// ---------------------------------------------------------------- allocator

/// Counts, per thread, the largest allocation made while armed, so a case
/// that sizes a buffer from a hostile length field is caught even when the
/// machine could satisfy it.
struct Watching;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is passed straight to the system allocator; the
// bookkeeping only reads and writes plain thread-local cells.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// The cap every length-checked parser gets here.
const CAP: u64 = 1 << 20;
/// Allowed beyond the cap: buffers round up, and a parser may hold the
/// capped body plus a little bookkeeping.
const SLACK: usize = 64 * 1024;

// ---------------------------------------------------------------- mutation

/// xorshift64*: deterministic, so a failing case can be replayed from the
/// parser name, the seed and the case number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values a length field is most likely to be mishandled at.
fn edge_value(rng: &mut Rng, len: usize) -> u64 {
    let picks = [
        0,
        1,
        7,
        8,
        9,
        24,
        255,
        len as u64,
        len as u64 + 1,
        (len as u64).saturating_sub(1),
        CAP,
        CAP + 1,
        u32::MAX as u64,
        i32::MAX as u64 + 1,
        1 << 40,
        u64::MAX / 2,
        u64::MAX,
    ];
    picks[rng.below(picks.len())]
}

fn mutate(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let n = b.len();
        match rng.below(9) {
            0 if n > 0 => {
                let i = rng.below(n);
                b[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(n + 1)),
            3 => {
                let at = rng.below(n + 1);
                let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(at..at, extra);
            }
            4 if n > 0 => {
                let from = rng.below(n);
                let to = (from + 1 + rng.below(16)).min(n);
                b.drain(from..to);
            }
            5 if n > 0 => {
                let from = rng.below(n);
                let to = (from + 1 + rng.below(32)).min(n);
                let copy = b[from..to].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, copy);
            }
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(n + 1);
                let from = rng.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            // a 64-bit length field (the header's is at 1..9)
            7 if n >= 9 => {
                let at = if rng.below(2) == 0 {
                    1
                } else {
                    rng.below(n - 7)
                };
                let v = edge_value(rng, n).to_le_bytes();
                b[at..at + 8].copy_from_slice(&v);
            }
            // a 32-bit count field
            8 if n >= 4 => {
                let at = rng.below(n - 3);
                let v = (edge_value(rng, n) as u32).to_le_bytes();
                b[at..at + 4].copy_from_slice(&v);
            }
            _ => b.push(rng.next() as u8),
        }
    }
    b
}

fn cases() -> u64 {
    std::env::var("MIRAI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Feed `cases()` mutants of `seeds` to `parse`, checking allocations.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, mut parse: impl FnMut(&[u8])) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let n = cases();
    for seed in &seeds {
        parse(seed);
    }
    for case in 0..n {
        let input = mutate(&seeds, &mut rng);
        LARGEST.with(|l| l.set(0));
        ARMED.with(|a| a.set(true));
        parse(&input);
        ARMED.with(|a| a.set(false));
        let largest = LARGEST.with(Cell::get);
        assert!(
            largest <= CAP as usize + SLACK,
            "{name}: case {case} allocated {largest} bytes from a {}-byte input",
            input.len()
        );
    }
    eprintln!("{name}: {n} cases");
}

/// A current-thread runtime with paused time: timers fire at once when
/// nothing else can run, so a case that waits on a timer finishes and a
/// case that waits on nothing at all is caught by the timeout.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn bounded<F: std::future::Future>(rt: &tokio::runtime::Runtime, what: &str, f: F) -> F::Output {
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(600), f)
            .await
            .unwrap_or_else(|_| panic!("{what}: a case did not finish"))
    })
}

/// A peer that sends `input`, then end of stream, and swallows what it is
/// sent.
struct Peer<'a> {
    input: &'a [u8],
}

impl AsyncRead for Peer<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.input.len().min(buf.remaining());
        buf.put_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// ---------------------------------------------------------------- seeds

fn task_seeds() -> Vec<Vec<u8>> {
    let mut plain = Vec::new();
    begin_task(&mut plain, 7, 0);
    plain.extend_from_slice(b"X\n serialized task");
    finish_task(&mut plain, &[]);
    let mut raw = Vec::new();
    begin_task(&mut raw, 8, TASK_RAW_ARGS | TASK_KEEP_STATE);
    raw.extend_from_slice(b"serialized");
    let args = [
        RawArg {
            slot: 0,
            index: 1,
            vtype: VectorType::Double,
            n: 2,
        },
        RawArg {
            slot: 1,
            index: 0,
            vtype: VectorType::Raw,
            n: 3,
        },
    ];
    finish_task(&mut raw, &args);
    raw.extend_from_slice(&1.5f64.to_le_bytes());
    raw.extend_from_slice(&2.5f64.to_le_bytes());
    raw.extend_from_slice(&[1, 2, 3]);
    let mut shared = task_prefix(9, TASK_KEEP_STATE, 4);
    shared.extend_from_slice(b"abcd");
    vec![plain, raw, shared]
}

fn result_seeds() -> Vec<Vec<u8>> {
    let mut value = Vec::new();
    begin_result(&mut value, 3, false);
    value.extend_from_slice(b"X\n value bytes");
    finish_frame(&mut value);
    let mut error = Vec::new();
    begin_result(&mut error, 4, true);
    error.extend_from_slice(b"an error");
    finish_frame(&mut error);
    let mut vector = vector_result_head(5, VectorType::Integer, 3);
    vector.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    vec![value, error, vector]
}

fn handshake_seeds() -> Vec<Vec<u8>> {
    let welcome = Welcome {
        stream: Some([10407, 1, 2, 3, 4, 5, 6]),
        serial: true,
    };
    vec![
        frame(
            HELLO,
            &hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &[3u8; PROOF_LEN]),
        ),
        frame(WELCOME, &welcome.encode()),
        frame(WELCOME, &Welcome::default().encode()),
        frame(
            CHALLENGE,
            &Challenge::new(b"secret", &[3u8; PROOF_LEN])
                .unwrap()
                .encode(),
        ),
        frame(
            PROOF,
            &proof(
                b"secret",
                Side::Daemon,
                &[3u8; PROOF_LEN],
                &[7u8; PROOF_LEN],
            ),
        ),
        frame(REJECT, b"version mismatch"),
        SerialConfig {
            config: b"X\n a serialized configuration".to_vec(),
        }
        .encode(),
    ]
}

fn ws_frame(opcode: u8, payload: &[u8], masked: bool, fin: bool) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn pem_seeds() -> Vec<Vec<u8>> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.key_pair.serialize_pem();
    vec![
        format!("{cert_pem}{key_pem}").into_bytes(),
        cert_pem.into_bytes(),
        key_pem.into_bytes(),
    ]
}

// ---------------------------------------------------------------- parsers

#[test]
fn frame_headers_and_bodies() {
    let mut seeds = handshake_seeds();
    seeds.extend(task_seeds());
    seeds.extend(result_seeds());
    seeds.push(cancel_frame(11));
    seeds.push(signal_frame(EXIT));
    let rt = runtime();
    fuzz("frame", seeds, |b| {
        let _ = read_frame_blocking(Cursor::new(b), CAP);
        let mut r = b;
        let _ = bounded(&rt, "frame", read_frame(&mut r, CAP));
    });
}

#[test]
fn handshake_messages() {
    fuzz("handshake", handshake_seeds(), |b| {
        let Ok(f) = read_frame_blocking(Cursor::new(b), HANDSHAKE_MAX) else {
            return;
        };
        if let Ok(hello) = parse_hello(&f) {
            let _ = check_hello(&hello);
        }
        let _ = Welcome::decode(&f);
        let _ = SerialConfig::decode(&f);
        let _ = Challenge::decode(&f);
        let (d, h) = ([3u8; PROOF_LEN], [7u8; PROOF_LEN]);
        let _ = proof_matches(b"secret", Side::Daemon, &d, &h, &f.body);
    });
}

#[test]
fn task_bodies() {
    fuzz("task", task_seeds(), |b| {
        let mut r = Cursor::new(b);
        let Ok((_, len)) = read_header_blocking(&mut r, CAP) else {
            return;
        };
        let mut payload = Vec::new();
        let _ = read_task_blocking(&mut r, len, &mut payload);
    });
}

#[test]
fn result_bodies() {
    let rt = runtime();
    fuzz("result", result_seeds(), |b| {
        let Ok((_, len)) = read_header_blocking(Cursor::new(b), CAP) else {
            return;
        };
        let mut r = &b[HEADER_LEN.min(b.len())..];
        let _ = bounded(
            &rt,
            "result",
            read_result(
                &mut r,
                len,
                |vtype, n| {
                    vtype
                        .data_len(n)
                        .filter(|&l| l as u64 <= CAP)
                        .map(|l| vec![0u8; l])
                },
                |buf| &mut buf[..],
            ),
        );
    });
}

#[test]
fn cancel_bodies() {
    let seeds = vec![
        11u64.to_le_bytes().to_vec(),
        u64::MAX.to_le_bytes().to_vec(),
    ];
    fuzz("cancel", seeds, |b| {
        let _ = parse_cancel(b);
    });
}

#[test]
fn websocket_upgrade_requests() {
    let request = "GET /mirai HTTP/1.1\r\nHost: 127.0.0.1:5555\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    let lower = request
        .to_lowercase()
        .replace("get /mirai http/1.1", "GET /mirai HTTP/1.1");
    let seeds = vec![request.as_bytes().to_vec(), lower.into_bytes()];
    let rt = runtime();
    fuzz("websocket upgrade", seeds, |b| {
        let mut peer = Peer { input: b };
        let _ = bounded(
            &rt,
            "websocket upgrade",
            websocket::accept(&mut peer, "/mirai"),
        );
    });
}

#[test]
fn websocket_frames() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut stream = ws_frame(2, &payload[..100], true, false);
    stream.extend(ws_frame(0, &payload[100..], true, true));
    stream.extend(ws_frame(9, b"ping", true, true));
    stream.extend(ws_frame(2, &[0u8; 70_000], true, true));
    stream.extend(ws_frame(8, &1000u16.to_be_bytes(), true, true));
    let seeds = vec![
        stream,
        ws_frame(2, &payload, true, true),
        ws_frame(2, &payload, false, true),
        ws_frame(1, b"text", true, true),
        ws_frame(10, b"pong", true, true),
    ];
    let rt = runtime();
    fuzz("websocket frames", seeds, |b| {
        let (inner, mut far) = tokio::io::duplex(64 * 1024);
        let input = b.to_vec();
        bounded(&rt, "websocket frames", async move {
            let drain = async move {
                let mut sink = Vec::new();
                let _ = far.read_to_end(&mut sink).await;
            };
            let outer = Peer { input: &input };
            tokio::join!(websocket::pump(outer, inner, Role::Server), drain);
        });
    });
}

#[test]
fn urls() {
    let seeds: Vec<Vec<u8>> = [
        "tcp://127.0.0.1:5555",
        "tcp://[::1]:0",
        "tls+tcp://host.example:443",
        "ws://10.0.0.1:80/path/x",
        "wss://[fe80::1%25eth0]:8443/p",
        "tcp://*:5555",
        "tcp://:5555",
        "ipc:///tmp/mirai.sock",
        "abstract://mirai",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("url", seeds, |b| {
        let text = String::from_utf8_lossy(b);
        if let Ok(url) = Url::parse(&text) {
            let _ = url.with_port(1);
            let _ = url.is_secure();
        }
    });
}

#[test]
fn pem_input() {
    let mut case = 0u64;
    fuzz("pem", pem_seeds(), |b| {
        case += 1;
        let text = String::from_utf8_lossy(b);
        let _ = tls::user_config(&text, &text, None);
        // an encrypted-key attempt on every 16th case (the key derivation
        // is slow by design)
        if case.is_multiple_of(16) {
            let _ = tls::user_config(&text, &text, Some("pass"));
        }
        let _ = tls::client_config(Some(&text));
    });
}
