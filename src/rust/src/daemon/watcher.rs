//! The watcher thread of a daemon: while R evaluates a task it watches the
//! connection, interrupting R (SIGINT) when the host cancels that task, and
//! ending the process if the host goes away (autoexit TRUE) and R is still
//! busy after a grace period.
//!
//! A SIGINT can reach R after the task it was meant for has finished. So
//! R asks, for every interrupt it sees, [`Watch::interrupt_verdict`]: only
//! an interrupt during a task, not sent for an earlier one, stops anything.

use crate::protocol::message::{parse_cancel, CANCEL, CANCEL_LEN};
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
        if ev & libc::POLLIN != 0 && !take_cancel(w, busy) {
            events = libc::POLLRDHUP;
        }
    }
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

/// Input has arrived while R is busy: if it is a CANCEL frame for the
/// running task, consume it and interrupt R. False if the input is
/// something else (left unread).
fn take_cancel(w: &Watch, busy: Busy) -> bool {
    let mut buf = [0u8; CANCEL_LEN];
    let mut n = peek(busy.fd, &mut buf);
    // a frame split across segments: wait briefly for the rest
    for _ in 0..100 {
        if n <= 0 || n as usize >= CANCEL_LEN || buf[0] != CANCEL {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        n = peek(busy.fd, &mut buf);
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
