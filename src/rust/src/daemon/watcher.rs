//! The watcher thread of a daemon: while R evaluates a task it watches the
//! connection, interrupting R (SIGINT) when the host cancels that task, and
//! ending the process if the host goes away (autoexit TRUE) and R is still
//! busy after a grace period. It also keeps the heartbeat going while R
//! is busy (see [`Pulse`]): it consumes the host's HEARTBEATs, sends ours
//! when we have been quiet, and takes a host silent for too long as gone.
//!
//! A SIGINT can reach R after the task it was meant for has finished. So
//! R asks, for every interrupt it sees, [`Watch::interrupt_verdict`]: only
//! an interrupt during a task, not sent for an earlier one, stops anything.

use super::pulse::Pulse;
use crate::protocol::message::{parse_cancel, signal_frame, CANCEL, CANCEL_LEN, HEARTBEAT};
use crate::protocol::HEADER_LEN;
use parking_lot::{Condvar, Mutex};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a busy daemon gets to finish after its host disappears.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// Tasks shorter than this are not watched at all: the watcher thread
/// stays asleep through a stream of tiny tasks instead of waking for each.
const WATCH_AFTER: Duration = Duration::from_millis(5);

/// What R is busy with: the task and the socket it came on.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Busy {
    pub fd: RawFd,
    pub task: u64,
}

#[derive(Default)]
struct State {
    busy: Option<Busy>,
    /// The task a SIGINT was last sent for, until R has seen it.
    signalled: Option<u64>,
    /// The watcher is asleep waiting for R to become busy.
    asleep: bool,
}

/// Shared between R's thread and the watcher.
pub struct Watch {
    state: Mutex<State>,
    wake: Condvar,
    finished: AtomicBool,
    /// End the process if the host goes away mid-task (autoexit TRUE).
    exit_on_hangup: bool,
    /// R's main thread, to interrupt on cancellation.
    main_thread: libc::pthread_t,
    /// R's session temporary directory, removed on a forced exit.
    tempdir: String,
    /// Heartbeat times of the current connection.
    pub pulse: Pulse,
    /// Tasks of the run being served wait to be started (see
    /// `Client::recv`), and the CANCELs heard meanwhile for tasks other
    /// than the one running: those tasks are answered unrun.
    run_waiting: AtomicBool,
    run_cancels: Mutex<Vec<u64>>,
}

impl Watch {
    /// Start watching for the calling thread (R's main thread).
    pub fn start(exit_on_hangup: bool, tempdir: String) -> std::io::Result<Arc<Watch>> {
        let watch = Arc::new(Watch {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            finished: AtomicBool::new(false),
            exit_on_hangup,
            // SAFETY: pthread_self has no preconditions.
            main_thread: unsafe { libc::pthread_self() },
            tempdir,
            pulse: Pulse::new(),
            run_waiting: AtomicBool::new(false),
            run_cancels: Mutex::new(Vec::new()),
        });
        let w = watch.clone();
        std::thread::Builder::new()
            .name("mirai-watch".into())
            .stack_size(64 * 1024)
            .spawn(move || watch_while_busy(w))?;
        Ok(watch)
    }

    /// R is now busy with a task (`Some`), or no longer (`None`).
    pub fn set_busy(&self, busy: Option<Busy>) {
        let mut st = self.state.lock();
        st.busy = busy;
        if busy.is_some() && st.asleep {
            self.wake.notify_all();
        }
    }

    /// R has seen an interrupt: should it stop the current evaluation?
    /// Yes during a task, unless the SIGINT was sent for an earlier task;
    /// never between tasks.
    pub fn interrupt_verdict(&self) -> bool {
        let mut st = self.state.lock();
        let signalled = st.signalled.take();
        match (st.busy, signalled) {
            (None, _) => false,
            (Some(busy), Some(task)) => busy.task == task,
            // not ours: a user's Ctrl-C, rlang::interrupt()
            (Some(_), None) => true,
        }
    }

    /// R has left the daemon loop: stop the watcher thread.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.set_busy(None);
        self.wake.notify_all();
    }

    /// Whether tasks of a run wait to be started; once none do, the
    /// CANCELs heard for them are forgotten.
    pub fn set_run_waiting(&self, waiting: bool) {
        self.run_waiting.store(waiting, Ordering::SeqCst);
        if !waiting {
            self.run_cancels.lock().clear();
        }
    }

    /// A CANCEL for task `id`, not the one running: if tasks of a run wait,
    /// it may be one of them.
    pub fn note_run_cancel(&self, id: u64) {
        if self.run_waiting.load(Ordering::SeqCst) {
            let mut cancels = self.run_cancels.lock();
            // a run holds at most a few thousand tasks
            if cancels.len() < 1 << 16 {
                cancels.push(id);
            }
        }
    }

    /// Whether task `id`, about to start, was cancelled while it waited.
    pub fn take_run_cancel(&self, id: u64) -> bool {
        let mut cancels = self.run_cancels.lock();
        match cancels.iter().position(|&c| c == id) {
            Some(i) => {
                cancels.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn current(&self) -> Option<Busy> {
        self.state.lock().busy
    }
}

/// Check `fd` for `events` for up to `timeout`; returns the revents.
pub fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> libc::c_short {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n > 0 {
        p.revents
    } else {
        0
    }
}

fn watch_while_busy(w: Arc<Watch>) {
    loop {
        let busy = {
            let mut st = w.state.lock();
            while st.busy.is_none() && !w.finished.load(Ordering::SeqCst) {
                st.asleep = true;
                w.wake.wait(&mut st);
                st.asleep = false;
            }
            if w.finished.load(Ordering::SeqCst) {
                return;
            }
            st.busy.expect("checked above")
        };
        std::thread::sleep(WATCH_AFTER);
        if w.current() == Some(busy) {
            watch_task(&w, busy);
        }
    }
}

/// Watch one task until R is done with it.
fn watch_task(w: &Watch, busy: Busy) {
    let still = || w.current() == Some(busy);
    // Input other than a cancellation (a task queued by a host without
    // dispatcher) is left for R; then only hang-up is watched.
    let mut events = libc::POLLIN | libc::POLLRDHUP;
    while still() {
        let ev = poll_fd(busy.fd, events, Duration::from_millis(100));
        if ev & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            if w.exit_on_hangup {
                exit_after_grace(w, busy);
            }
            // nothing more to hear on this connection for this task
            while still() {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        if ev & libc::POLLIN != 0 {
            w.pulse.heard();
            if !take_signal(w, busy) {
                events = libc::POLLRDHUP;
            }
        }
        if events == libc::POLLRDHUP {
            // input queued behind a task (no dispatcher) cannot be read
            // here: while it waits the host counts as alive, and the
            // kernel's timeouts still watch the link
            w.pulse.heard();
        }
        if w.pulse.heartbeat_due() {
            send_heartbeat(w, busy);
        }
        if w.pulse.host_silent() {
            give_up(w, busy);
        }
    }
}

/// Send a HEARTBEAT, unless R has finished the task (it then owns the
/// socket's write side again, to send its result): the state lock, held
/// throughout, keeps R from writing meanwhile. A full socket means the
/// host is not reading: nothing is sent, and the next check tries again.
fn send_heartbeat(w: &Watch, busy: Busy) {
    let st = w.state.lock();
    if st.busy != Some(busy) {
        return;
    }
    let frame = signal_frame(HEARTBEAT);
    let mut flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let mut done = 0;
    while done < frame.len() {
        // SAFETY: `busy.fd` is the connection's socket, open while R is
        // busy on it (checked under the lock); the pointer and length
        // describe the rest of `frame`.
        let n = unsafe {
            libc::send(
                busy.fd,
                frame[done..].as_ptr() as *const libc::c_void,
                frame.len() - done,
                flags,
            )
        };
        if n <= 0 {
            break;
        }
        done += n as usize;
        // a frame begun must be finished, or the stream is broken
        flags = libc::MSG_NOSIGNAL;
    }
    drop(st);
    if done > 0 {
        w.pulse.wrote();
    }
}

/// The host has been silent too long: shut the connection down, which
/// the watch loop and R's thread then see as the host gone.
fn give_up(w: &Watch, busy: Busy) {
    let st = w.state.lock();
    if st.busy == Some(busy) {
        // SAFETY: the socket is open while R is busy on it (checked under
        // the lock); shutdown only changes its state.
        unsafe { libc::shutdown(busy.fd, libc::SHUT_RDWR) };
    }
    drop(st);
}

/// An empty HEARTBEAT frame at the start of `bytes`.
fn is_heartbeat(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] == HEARTBEAT && bytes[1..HEADER_LEN] == [0u8; 8]
}

fn peek(fd: RawFd, buf: &mut [u8; CANCEL_LEN]) -> isize {
    // SAFETY: reads at most CANCEL_LEN bytes into `buf`, leaving them on
    // the socket (MSG_PEEK).
    unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            CANCEL_LEN,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    }
}

/// Input has arrived while R is busy: if it is a HEARTBEAT, consume it;
/// if a CANCEL frame for the running task, consume it and interrupt R.
/// False if the input is something else (left unread).
fn take_signal(w: &Watch, busy: Busy) -> bool {
    let mut buf = [0u8; CANCEL_LEN];
    let mut n = peek(busy.fd, &mut buf);
    // a frame split across segments: wait briefly for the rest
    for _ in 0..100 {
        let want = match buf[0] {
            CANCEL => CANCEL_LEN,
            HEARTBEAT => HEADER_LEN,
            _ => 0,
        };
        if n <= 0 || n as usize >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        n = peek(busy.fd, &mut buf);
    }
    if n > 0 && is_heartbeat(&buf[..n as usize]) {
        let st = w.state.lock();
        if st.busy == Some(busy) {
            // SAFETY: consumes the HEARTBEAT frame just peeked, into `buf`.
            unsafe {
                libc::recv(
                    busy.fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    HEADER_LEN,
                    libc::MSG_DONTWAIT,
                )
            };
        }
        return true;
    }
    let Some(id) = parse_cancel(&buf[..n.max(0) as usize]) else {
        return n <= 0; // nothing there after all: keep watching input
    };
    let mut st = w.state.lock();
    if st.busy != Some(busy) {
        return true;
    }
    // SAFETY: consumes the CANCEL frame just peeked, into `buf`.
    let got = unsafe {
        libc::recv(
            busy.fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            CANCEL_LEN,
            libc::MSG_DONTWAIT,
        )
    };
    if got as usize == CANCEL_LEN && id == busy.task {
        st.signalled = Some(id);
        // SAFETY: signals R's main thread, which exists for the life of
        // the process; R's own SIGINT handler runs there.
        unsafe { libc::pthread_kill(w.main_thread, libc::SIGINT) };
    } else if got as usize == CANCEL_LEN {
        drop(st);
        w.note_run_cancel(id);
    }
    true
}

/// The host has gone mid-task: give R the grace period to finish, then end
/// the process.
fn exit_after_grace(w: &Watch, busy: Busy) {
    std::thread::sleep(EXIT_GRACE);
    if w.current() == Some(busy) && !w.finished.load(Ordering::SeqCst) {
        if !w.tempdir.is_empty() {
            let _ = std::fs::remove_dir_all(&w.tempdir);
        }
        // SAFETY: ends the process at once; nothing more runs.
        unsafe { libc::_exit(0) };
    }
}
