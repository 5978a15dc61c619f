//! Helpers shared by the host tests: submitting raw tasks and waiting for
//! them the way the R thread does, without R.

use mirai::aio::{self, Aio};
use mirai::host::{Host, Task};
use mirai::protocol::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Say HELLO on `s` as a daemon of this version does and expect WELCOME
/// (hosts in these tests have no secret, so no challenge comes first);
/// returns what the WELCOME says.
pub fn join<S: Read + Write>(mut s: S) -> Welcome {
    s.write_all(&frame(
        HELLO,
        &hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &[0u8; PROOF_LEN]),
    ))
    .unwrap();
    let reply = read_frame_blocking(s, HANDSHAKE_MAX).unwrap();
    assert_eq!(reply.kind, WELCOME);
    Welcome::decode(&reply).expect("a well-formed WELCOME")
}

/// A TASK frame for `aio` whose serialized payload is `payload`.
pub fn task_frame(aio: &Aio, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    begin_task(&mut f, aio.id as u64, 0);
    f.extend_from_slice(payload);
    finish_task(&mut f, &[]);
    f
}

/// Queue a task whose payload is `payload`.
pub fn submit(host: &Host, payload: &[u8]) -> Arc<Aio> {
    let aio = Aio::new();
    let f = task_frame(&aio, payload);
    host.submit(
        Task {
            aio: aio.clone(),
            frame: f.into(),
        },
        None,
    );
    aio
}

/// Wait for `aio` to complete, failing the test after 10 seconds.
pub fn wait(aio: &Aio) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = aio::generation();
        if !aio.is_pending() {
            return;
        }
        assert!(Instant::now() < deadline, "task did not complete");
        aio::wait_for_completion(g, Duration::from_millis(100));
    }
}
