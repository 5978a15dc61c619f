//! The daemon side of a connection: dial the host, pass the handshake,
//! hand incoming tasks to R's main thread and send its results back.
//!
//! What happens when the connection drops depends on `autoexit`:
//! - `Immediate` (TRUE): tell R to stop, and if R is still busy evaluating
//!   after a short grace period, end the process (no orphans).
//! - `AfterTask` (NA): tell R to stop once the current task is done.
//! - `Never` (FALSE): dial again and serve whichever host appears there.

use crate::host::write_loop;
use crate::protocol::*;
use crate::runtime::runtime;
use crate::transport::{self, BoxStream};
use crate::url::Url;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::sync::mpsc;

/// How long a busy daemon gets to finish after its host disappears.
const EXIT_GRACE: Duration = Duration::from_millis(500);
const REDIAL_INTERVAL: Duration = Duration::from_millis(250);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AutoExit {
    Immediate,
    AfterTask,
    Never,
}

/// What the R thread receives.
pub enum Incoming {
    Task {
        id: u64,
        flags: u8,
        epoch: u64,
        body: Vec<u8>,
    },
    /// The host asked this daemon to exit.
    Exit,
    /// The connection dropped and this daemon does not redial.
    Disconnected,
    /// The host refused this daemon (the reason is its message).
    Refused(String),
}

/// State shared between the connection task and the R thread.
struct Shared {
    /// The current connection's outgoing queue, tagged with its epoch so a
    /// result computed for one host is never sent to the next.
    out: Mutex<Option<(u64, mpsc::UnboundedSender<Vec<u8>>)>>,
    /// Set when R has left the daemon loop: no forced exit then.
    finished: AtomicBool,
    /// R's session temporary directory, removed on a forced exit.
    tempdir: String,
    /// The current connection's writer, awaited on finish so the last
    /// result leaves before the process exits.
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub struct Client {
    incoming: std_mpsc::Receiver<Incoming>,
    shared: Arc<Shared>,
}

enum DialError {
    Io(String),
    Refused(String),
}

async fn connect_once(url: &Url) -> Result<BoxStream, DialError> {
    let mut s = transport::dial(url)
        .await
        .map_err(|e| DialError::Io(e.to_string()))?;
    let hello = frame(HELLO, &hello_body(PROTOCOL_VERSION, &advertised_version()));
    write_frame(&mut s, &hello)
        .await
        .map_err(|e| DialError::Io(e.to_string()))?;
    let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut s, HANDSHAKE_MAX))
        .await
        .map_err(|_| DialError::Io("no reply to the handshake".into()))?
        .map_err(|e| DialError::Io(format!("handshake failed: {e}")))?;
    match reply.kind {
        WELCOME => Ok(s),
        REJECT => Err(DialError::Refused(
            String::from_utf8_lossy(&reply.body).into_owned(),
        )),
        _ => Err(DialError::Io("unexpected reply to the handshake".into())),
    }
}

/// The package version this daemon announces. `MIRAI_ADVERTISED_VERSION`
/// overrides it, so the tests can play a daemon of another version.
fn advertised_version() -> String {
    std::env::var("MIRAI_ADVERTISED_VERSION").unwrap_or_else(|_| PACKAGE_VERSION.to_string())
}

impl Client {
    /// Connect to `url`. With `asyncdial` false a single attempt is made and
    /// its failure is returned; otherwise dialling goes on in the background
    /// until a host answers.
    pub fn dial(
        url: &str,
        asyncdial: bool,
        autoexit: AutoExit,
        tempdir: String,
    ) -> Result<Client, String> {
        let parsed = Url::parse(url)?;
        let first = if asyncdial {
            None
        } else {
            match runtime().block_on(connect_once(&parsed)) {
                Ok(s) => Some(s),
                Err(DialError::Io(e)) => return Err(format!("cannot connect to '{url}': {e}")),
                Err(DialError::Refused(r)) => {
                    return Err(format!("the host at '{url}' refused this daemon: {r}"))
                }
            }
        };
        let (tx, rx) = std_mpsc::channel();
        let shared = Arc::new(Shared {
            out: Mutex::new(None),
            finished: AtomicBool::new(false),
            tempdir,
            writer: Mutex::new(None),
        });
        runtime().spawn(session(parsed, first, autoexit, shared.clone(), tx));
        Ok(Client {
            incoming: rx,
            shared,
        })
    }

    /// Wait up to `slice` for the next message from the host.
    pub fn recv(&self, slice: Duration) -> Option<Incoming> {
        match self.incoming.recv_timeout(slice) {
            Ok(m) => Some(m),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Some(Incoming::Disconnected),
        }
    }

    /// Queue a RESULT frame for the connection of `epoch` (dropped if that
    /// connection is gone).
    pub fn send(&self, epoch: u64, frame: Vec<u8>) {
        if let Some((e, tx)) = &*self.shared.out.lock() {
            if *e == epoch {
                let _ = tx.send(frame);
            }
        }
    }

    /// R has left the daemon loop: stop serving, never force an exit, and
    /// give results still queued a moment to reach the host.
    pub fn finish(&self) {
        self.shared.finished.store(true, Ordering::SeqCst);
        self.shared.out.lock().take();
        if let Some(w) = self.shared.writer.lock().take() {
            let _ = runtime().block_on(async { tokio::time::timeout(Duration::from_secs(5), w).await });
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.finish();
    }
}

async fn session(
    url: Url,
    mut first: Option<BoxStream>,
    autoexit: AutoExit,
    shared: Arc<Shared>,
    tx: std_mpsc::Sender<Incoming>,
) {
    let mut epoch = 0;
    loop {
        let stream = match first.take() {
            Some(s) => s,
            None => match redial(&url, &shared).await {
                Some(Ok(s)) => s,
                Some(Err(reason)) => {
                    let _ = tx.send(Incoming::Refused(reason));
                    return;
                }
                None => return,
            },
        };
        epoch += 1;
        let (rd, wr) = tokio::io::split(stream);
        let (otx, orx) = mpsc::unbounded_channel();
        *shared.out.lock() = Some((epoch, otx));
        *shared.writer.lock() = Some(tokio::spawn(write_loop(wr, orx)));
        let told_to_exit = read_tasks(rd, epoch, &tx).await;
        shared.out.lock().take();
        if told_to_exit {
            let _ = tx.send(Incoming::Exit);
            force_exit_later(shared);
            return;
        }
        match autoexit {
            AutoExit::Never => {
                if shared.finished.load(Ordering::SeqCst) {
                    return;
                }
            }
            AutoExit::AfterTask => {
                let _ = tx.send(Incoming::Disconnected);
                return;
            }
            AutoExit::Immediate => {
                let _ = tx.send(Incoming::Disconnected);
                force_exit_later(shared);
                return;
            }
        }
    }
}

/// Dial until a host answers (`Ok`), refuses (`Err`), or R stops (`None`).
async fn redial(url: &Url, shared: &Shared) -> Option<Result<BoxStream, String>> {
    loop {
        if shared.finished.load(Ordering::SeqCst) {
            return None;
        }
        match connect_once(url).await {
            Ok(s) => return Some(Ok(s)),
            Err(DialError::Refused(r)) => return Some(Err(r)),
            Err(DialError::Io(_)) => tokio::time::sleep(REDIAL_INTERVAL).await,
        }
    }
}

/// Forward tasks to R until the connection ends; true if the host said EXIT.
async fn read_tasks<R: tokio::io::AsyncRead + Unpin>(
    rd: R,
    epoch: u64,
    tx: &std_mpsc::Sender<Incoming>,
) -> bool {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    while let Ok(f) = read_frame(&mut rd, FRAME_MAX).await {
        match f.kind {
            TASK if f.body.len() >= 9 => {
                let id = u64::from_le_bytes(f.body[..8].try_into().unwrap());
                let flags = f.body[8];
                let msg = Incoming::Task {
                    id,
                    flags,
                    epoch,
                    body: f.body,
                };
                if tx.send(msg).is_err() {
                    return false;
                }
            }
            EXIT => return true,
            // Cancellation needs the dispatcher; anything else is a
            // protocol violation that ends the connection.
            CANCEL => {}
            _ => return false,
        }
    }
    false
}

/// If R is still busy after the grace period, end the process, removing
/// R's temporary directory as R itself would have.
fn force_exit_later(shared: Arc<Shared>) {
    let _ = std::thread::Builder::new()
        .name("mirai-exit".into())
        .spawn(move || {
            std::thread::sleep(EXIT_GRACE);
            if !shared.finished.load(Ordering::SeqCst) {
                if !shared.tempdir.is_empty() {
                    let _ = std::fs::remove_dir_all(&shared.tempdir);
                }
                unsafe { libc::_exit(0) };
            }
        });
}
