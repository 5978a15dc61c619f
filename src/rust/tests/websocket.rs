//! The websocket handshake and pump: round trips between our own client and
//! server, and hand-written peers checking the wire format and hostile input.

use mirai::transport::websocket::{self, Role};
use std::future::Future;
use std::time::Duration;
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The RFC 6455 sample key, and the upgrade request a raw client sends.
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const REQUEST: &str = "GET /ws HTTP/1.1\r\nHost: example\r\nUpgrade: WebSocket\r\n\
    Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

/// The server's pump has ended, and its inner end sees EOF with nothing
/// more delivered.
async fn assert_pump_ended(task: JoinHandle<std::io::Result<()>>, inner: &mut UnixStream) {
    within(3, task).await.unwrap().unwrap();
    let mut rest = Vec::new();
    inner.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

/// Deterministic bytes that do not repeat with period 4 (as masks do).
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A server on 127.0.0.1 accepting one websocket at `/ws` and pumping it to
/// a socketpair: the address, the pair's other end, and the pump's task.
async fn server() -> (
    std::net::SocketAddr,
    oneshot::Receiver<UnixStream>,
    JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        websocket::accept(&mut s, "/ws").await?;
        let (a, b) = UnixStream::pair()?;
        let _ = tx.send(b);
        websocket::pump(s, a, Role::Server).await;
        Ok(())
    });
    (addr, rx, task)
}

/// Our client at `addr` with `path`, pumped to a socketpair.
async fn client(
    addr: std::net::SocketAddr,
    path: &str,
) -> std::io::Result<(UnixStream, JoinHandle<()>)> {
    let mut s = TcpStream::connect(addr).await?;
    websocket::connect(&mut s, &addr.to_string(), path).await?;
    let (a, b) = UnixStream::pair()?;
    Ok((b, tokio::spawn(websocket::pump(s, a, Role::Client))))
}

/// Read an HTTP head byte by byte.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

/// A raw client that has upgraded to our server, having sent `extra` right
/// after the request in the same write.
async fn raw_client(extra: &[u8]) -> (TcpStream, UnixStream, JoinHandle<std::io::Result<()>>) {
    let (addr, inner, task) = server().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[REQUEST.as_bytes(), extra].concat())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (s, inner.await.unwrap(), task)
}

/// A frame with FIN and `opcode`, minimal length form, masked if `mask`.
fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// Read one frame: the first byte, whether masked, the header length and
/// the (unmasked) payload.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> (u8, bool, usize, Vec<u8>) {
    let b0 = s.read_u8().await.unwrap();
    let b1 = s.read_u8().await.unwrap();
    let (len, mut hl) = match b1 & 0x7f {
        126 => (s.read_u16().await.unwrap() as usize, 4),
        127 => (s.read_u64().await.unwrap() as usize, 10),
        n => (n as usize, 2),
    };
    let masked = b1 & 0x80 != 0;
    let mut mask = [0u8; 4];
    if masked {
        s.read_exact(&mut mask).await.unwrap();
        hl += 4;
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    (b0, masked, hl, payload)
}

/// Whether a frame of `len` bytes used the minimal length form.
fn minimal(len: usize, hl: usize, masked: bool) -> bool {
    let expected = match len {
        n if n < 126 => 2,
        n if n < 65536 => 4,
        _ => 10,
    };
    hl == expected + if masked { 4 } else { 0 }
}

/// Feed `handshake` with the raw `request` over a duplex stream: the result
/// and the response head.
async fn try_accept(request: &str, path: &str) -> (std::io::Result<()>, String) {
    let (mut peer, mut ours) = duplex(64 * 1024);
    peer.write_all(request.as_bytes()).await.unwrap();
    let result = websocket::accept(&mut ours, path).await;
    drop(ours);
    let mut response = String::new();
    peer.read_to_string(&mut response).await.unwrap();
    (result, response)
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_both_ways_with_all_length_forms() {
    within(60, async {
        let (addr, server_inner, server_task) = server().await;
        let (client_end, client_task) = client(addr, "/ws").await.unwrap();
        let server_end = server_inner.await.unwrap();
        let (mut cr, mut cw) = client_end.into_split();
        let (mut sr, mut sw) = server_end.into_split();

        // 10 MB each way, concurrently.
        let up = pattern(10_000_000, 1);
        let down = pattern(10_000_000, 2);
        let (up2, down2) = (up.clone(), down.clone());
        let w1 = tokio::spawn(async move { cw.write_all(&up2).await.map(|_| cw) });
        let w2 = tokio::spawn(async move { sw.write_all(&down2).await.map(|_| sw) });
        let r1 = tokio::spawn(async move {
            let mut got = vec![0u8; 10_000_000];
            sr.read_exact(&mut got).await.map(|_| (sr, got))
        });
        let mut got = vec![0u8; 10_000_000];
        cr.read_exact(&mut got).await.unwrap();
        assert!(got == down, "server to client bytes differ");
        let (mut sr, got) = r1.await.unwrap().unwrap();
        assert!(got == up, "client to server bytes differ");
        let mut cw = w1.await.unwrap().unwrap();
        let mut sw = w2.await.unwrap().unwrap();

        // Small writes, one at a time, so that each is one frame.
        for (i, n) in [1, 125, 126, 65535, 65536, 300_000].into_iter().enumerate() {
            let data = pattern(n, 10 + i as u64);
            cw.write_all(&data).await.unwrap();
            let mut got = vec![0u8; n];
            sr.read_exact(&mut got).await.unwrap();
            assert!(got == data, "client to server, {n} bytes");
            sw.write_all(&data).await.unwrap();
            cr.read_exact(&mut got).await.unwrap();
            assert!(got == data, "server to client, {n} bytes");
        }

        // Closing the client's inner end closes everything, promptly.
        drop(cw);
        drop(cr);
        let mut rest = Vec::new();
        within(3, sr.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
        within(3, client_task).await.unwrap();
        within(3, server_task).await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_inner_close_propagates_to_client() {
    within(10, async {
        let (addr, server_inner, server_task) = server().await;
        let (mut client_end, client_task) = client(addr, "/ws").await.unwrap();
        let mut server_end = server_inner.await.unwrap();
        server_end.write_all(b"last words").await.unwrap();
        drop(server_end);
        let mut got = Vec::new();
        within(3, client_end.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last words");
        within(3, server_task).await.unwrap().unwrap();
        within(3, client_task).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_path_is_refused_with_404() {
    within(10, async {
        let (addr, _inner, server_task) = server().await;
        let err = client(addr, "/other").await.unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        let err = server_task.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_requests_are_checked() {
    let ok = REQUEST;
    let (r, response) = try_accept(ok, "/ws").await;
    assert!(r.is_ok(), "{r:?}");
    assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    let root = REQUEST.replace("GET /ws ", "GET / ");
    assert!(try_accept(&root, "").await.0.is_ok(), "empty path means /");

    let cases = [
        (REQUEST.replace("GET ", "POST "), "400"),
        (REQUEST.replace("HTTP/1.1", "HTTP/1.0"), "400"),
        (REQUEST.replace("Upgrade: WebSocket\r\n", ""), "400"),
        (REQUEST.replace("keep-alive, Upgrade", "keep-alive"), "400"),
        (REQUEST.replace("Version: 13", "Version: 8"), "400"),
        (
            REQUEST.replace(&format!("Sec-WebSocket-Key: {SAMPLE_KEY}\r\n"), ""),
            "400",
        ),
        (REQUEST.replace("Host: example", "Host example"), "400"),
        (REQUEST.replace("GET /ws ", "GET /ws?x=1 "), "404"),
    ];
    for (request, status) in cases {
        let (r, response) = try_accept(&request, "/ws").await;
        assert!(r.is_err(), "accepted {request:?}");
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} -> {response:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_key_matches_rfc6455_example() {
    let request = REQUEST.replace("GET /ws ", "GET /chat ");
    let (r, response) = try_accept(&request, "/chat").await;
    r.unwrap();
    assert!(
        response.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_checks_the_response() {
    let respond = |response: &'static str| async move {
        let (mut ours, mut peer) = duplex(64 * 1024);
        let server = async move {
            read_head(&mut peer).await;
            peer.write_all(response.as_bytes()).await.unwrap();
        };
        tokio::join!(websocket::connect(&mut ours, "h:1", "/ws"), server).0
    };
    let err = respond("HTTP/1.1 403 Forbidden\r\n\r\n").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("websocket upgrade refused: HTTP/1.1 403 Forbidden"),
        "{err}"
    );
    let wrong_accept = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let err = respond(wrong_accept).await.unwrap_err();
    assert!(err.to_string().contains("Sec-WebSocket-Accept"), "{err}");
    let err = respond("HTTP/1.1 101 OK\r\n").await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_requests_fail_promptly() {
    within(10, async {
        // Random bytes: refused at the first control byte, with a 400.
        let (addr, _inner, server_task) = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let garbage = pattern(100_000, 3);
        let writer = tokio::spawn(async move {
            let _ = s.write_all(&garbage).await;
            s
        });
        assert!(within(3, server_task).await.unwrap().is_err());
        let mut s = writer.await.unwrap();
        let mut response = vec![0u8; 12];
        s.read_exact(&mut response).await.unwrap();
        assert_eq!(&response, b"HTTP/1.1 400");

        // A head that never ends: no more than 8 KiB is read.
        let (mut peer, mut ours) = duplex(64 * 1024);
        let long = format!("GET /ws HTTP/1.1\r\nX-Long: {}", "a".repeat(20_000));
        peer.write_all(long.as_bytes()).await.unwrap();
        peer.shutdown().await.unwrap();
        assert!(websocket::accept(&mut ours, "/ws").await.is_err());
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).await.unwrap();
        assert!(long.len() - rest.len() <= 8192, "read past 8 KiB");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_frames_end_the_server_pump() {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut too_long = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1];
    too_long.extend_from_slice(&mask);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", frame(2, b"abc", None)),
        ("64-bit length with top bit", too_long),
        ("reserved bit", vec![0xc2, 0x80, 1, 2, 3, 4]),
        ("unknown opcode", frame(3, b"x", Some(mask))),
        ("long ping", frame(9, &[0; 126], Some(mask))),
        ("fragmented ping", vec![0x09, 0x80, 1, 2, 3, 4]),
        ("stray continuation", frame(0, b"x", Some(mask))),
    ];
    for (name, bytes) in cases {
        within(10, async {
            let (mut s, mut inner, task) = raw_client(&[]).await;
            s.write_all(&bytes).await.unwrap();
            within(3, task).await.unwrap().unwrap();
            let mut rest = Vec::new();
            inner.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{name}");
            let (b0, masked, _, payload) = read_frame(&mut s).await;
            assert_eq!((b0, masked), (0x88, false), "{name}");
            assert_eq!(payload, 1002u16.to_be_bytes(), "{name}");
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_announced_frame_is_streamed_not_allocated() {
    within(10, async {
        let (mut s, mut inner, task) = raw_client(&[]).await;
        // 2^40 bytes announced, 10 sent, then the connection drops.
        let mask = [9, 8, 7, 6];
        let mut f = vec![0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0];
        f.extend_from_slice(&mask);
        f.extend((0..10u8).map(|i| i ^ mask[i as usize % 4]));
        s.write_all(&f).await.unwrap();
        let mut got = [0u8; 10];
        inner.read_exact(&mut got).await.unwrap();
        assert_eq!(got, std::array::from_fn(|i| i as u8));
        drop(s);
        assert_pump_ended(task, &mut inner).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_client_ping_data_and_server_frames() {
    within(10, async {
        // The ping comes in the same write as the request: accept must not
        // have read past the head.
        let mask = [0xa1, 0xb2, 0xc3, 0xd4];
        let (mut s, mut inner, task) = raw_client(&frame(9, b"hello", Some(mask))).await;
        let (b0, masked, hl, payload) = read_frame(&mut s).await;
        assert_eq!(
            (b0, masked, hl, payload.as_slice()),
            (0x8a, false, 2, &b"hello"[..])
        );

        // Data in all length forms, including a non-minimal 64-bit one, and
        // a fragmented message with a ping in between.
        let data = pattern(70_000, 4);
        let mut wire = frame(2, &data[..5], Some(mask));
        wire.extend(frame(2, &data[5..300], Some(mask)));
        wire.extend(frame(2, &data[300..70_000], Some(mask)));
        wire.extend([0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 3]);
        wire.extend(mask);
        wire.extend(b"xyz".iter().enumerate().map(|(i, b)| b ^ mask[i]));
        let mut first = frame(2, b"frag", Some(mask));
        first[0] &= 0x7f;
        wire.extend(first);
        wire.extend(frame(9, b"", Some(mask)));
        wire.extend(frame(0, b"ment", Some(mask)));
        s.write_all(&wire).await.unwrap();
        let mut got = vec![0u8; 70_000 + 3 + 8];
        inner.read_exact(&mut got).await.unwrap();
        assert!(got[..70_000] == data[..]);
        assert_eq!(&got[70_000..], b"xyzfragment");
        let (b0, _, _, payload) = read_frame(&mut s).await;
        assert_eq!((b0, payload.len()), (0x8a, 0));

        // What the server sends: unmasked binary frames, minimal lengths.
        let sizes = [1, 125, 126, 65535, 65536, 1_000_000];
        for (i, n) in sizes.into_iter().enumerate() {
            let data = pattern(n, 20 + i as u64);
            inner.write_all(&data).await.unwrap();
            let mut got = Vec::new();
            while got.len() < n {
                let (b0, masked, hl, payload) = read_frame(&mut s).await;
                assert_eq!((b0, masked), (0x82, false));
                assert!(minimal(payload.len(), hl, masked), "{n}: {hl}");
                got.extend(payload);
            }
            assert!(got == data, "{n} bytes");
        }

        // A Close from the client ends the server, which answers it.
        s.write_all(&frame(8, &1000u16.to_be_bytes(), Some(mask)))
            .await
            .unwrap();
        let (b0, _, _, payload) = read_frame(&mut s).await;
        assert_eq!((b0, payload.as_slice()), (0x88, &[0x03, 0xe8][..]));
        assert_pump_ended(task, &mut inner).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_frames_are_masked_and_pings_answered() {
    within(10, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let raw = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            websocket::accept(&mut s, "/ws").await.unwrap();
            s
        });
        let (mut inner, task) = client(addr, "/ws").await.unwrap();
        let mut s = raw.await.unwrap();

        let data = pattern(100_000, 5);
        inner.write_all(&data).await.unwrap();
        let mut got = Vec::new();
        while got.len() < data.len() {
            let (b0, masked, hl, payload) = read_frame(&mut s).await;
            assert_eq!((b0, masked), (0x82, true));
            assert!(minimal(payload.len(), hl, masked));
            got.extend(payload);
        }
        assert!(got == data);

        s.write_all(&frame(9, b"are you there", None))
            .await
            .unwrap();
        let (b0, masked, _, payload) = read_frame(&mut s).await;
        assert_eq!(
            (b0, masked, payload.as_slice()),
            (0x8a, true, &b"are you there"[..])
        );

        // A masked frame from the server is a protocol error.
        s.write_all(&frame(2, b"abc", Some([1, 2, 3, 4])))
            .await
            .unwrap();
        let (b0, masked, _, payload) = read_frame(&mut s).await;
        assert_eq!(
            (b0, masked, payload),
            (0x88, true, 1002u16.to_be_bytes().to_vec())
        );
        within(3, task).await.unwrap();
        let mut rest = Vec::new();
        inner.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    })
    .await;
}

// Keep the helper bounds honest: the pump must be spawnable on any stream.
#[allow(dead_code)]
fn pump_is_send<O, I>(o: O, i: I)
where
    O: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    drop(tokio::spawn(websocket::pump(o, i, Role::Server)));
}
