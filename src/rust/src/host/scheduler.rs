//! Which daemon runs which task: the state of one compute profile's host,
//! always used under the host's lock. Two policies:
//!
//! - **Round-robin** (no dispatcher, here): each task goes at once to the
//!   next connected daemon, which queues it in its socket. Tasks wait here
//!   only while no daemon is connected.
//! - **Dispatcher** (see `dispatcher`): tasks wait here first-in first-out
//!   and each goes to a free daemon, which runs one task at a time.
//!
//! Nothing here is O(tasks) per task: the queue is a deque, a cancelled
//! queued task is left in place and skipped (the queue is compacted when
//! mostly cancelled), and daemons are found through hash maps.

use super::budget::Budget;
use super::link::{Link, SharedFrame};
use crate::aio::{Aio, Outcome};
use crate::codes::CONNECTION_RESET;
use crate::outframe::OutFrame;
use crate::protocol::handshake::Stream;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A task ready to go: its aio and its complete TASK frame.
pub struct Task {
    pub aio: Arc<Aio>,
    pub frame: OutFrame,
}

/// A task waiting in the queue.
pub(super) struct Queued {
    pub task: Task,
    /// The `everywhere()` call it belongs to (dispatcher).
    pub group: Option<usize>,
    /// Its bytes count against the memory budget.
    pub counted: bool,
    /// Times it was lost with a daemon and queued again (`retry`).
    pub attempts: u32,
}

/// A counted task on a daemon. Its frame is kept until the daemon
/// answers, to go elsewhere if the daemon leaves without starting it.
pub(super) struct Running {
    pub conn: u64,
    pub aio: Arc<Aio>,
    pub frame: SharedFrame,
    pub group: Option<usize>,
    /// Times it was lost with a daemon before (`retry`).
    pub attempts: u32,
    /// When it was sent, as a count of counted tasks sent before it: a
    /// daemon starts the tasks of a run in this order.
    pub sent: u64,
}

/// One `everywhere()` call.
pub(super) struct Broadcast {
    /// The serialized task, shared by every daemon's frame.
    pub payload: Arc<[u8]>,
    /// Group tasks not yet taken by a daemon.
    pub untaken: usize,
}

#[derive(Default)]
pub struct State {
    pub(super) dispatcher: bool,
    pub links: HashMap<u64, Link>,
    /// Round-robin: the connections in dealing order, and the next turn.
    order: Vec<u64>,
    next: usize,
    pub(super) queue: VecDeque<Queued>,
    /// How many tasks in `queue` were cancelled while waiting there.
    pub(super) cancelled_in_queue: usize,
    /// Dispatcher: daemons free for work, oldest first (may hold daemons
    /// since gone or busy, skipped when reached).
    pub(super) idle: VecDeque<u64>,
    /// Dispatcher: counted tasks on daemons, by task id.
    pub(super) executing: HashMap<u32, Running>,
    /// Dispatcher: every `everywhere()` call so far.
    pub(super) broadcasts: Vec<Broadcast>,
    pub budget: Budget,
    /// Tasks ever submitted (the ones `status()` counts).
    pub(super) received: u64,
    pub cumulative: u64,
    pub refused: u64,
    next_conn: u64,
    pub closed: bool,
    /// Dispatcher: the random-number stream given to the last daemon.
    pub(super) stream: Option<Stream>,
    /// Dispatcher: how many times a task lost with its daemon is queued
    /// again before it resolves to errorValue 19.
    pub(super) retry: u32,
    /// Tasks queued again after their daemon died.
    pub retries: u64,
    /// Dispatcher: a fixed run size in place of the adaptive one (tests).
    pub(super) fixed_run: Option<usize>,
    /// Dispatcher: counted tasks ever sent (see [`Running::sent`]).
    pub(super) sent: u64,
}

/// Compact the queue once this many cancelled tasks make up half of it.
const COMPACT_AFTER: usize = 1024;

impl State {
    pub fn new(
        dispatcher: bool,
        memory_limit: Option<u64>,
        stream: Option<Stream>,
        retry: u32,
    ) -> State {
        State {
            dispatcher,
            budget: Budget {
                limit: memory_limit,
                ..Budget::default()
            },
            stream,
            retry,
            ..State::default()
        }
    }

    /// Admit a daemon; returns its connection number.
    pub fn add_link(&mut self, link: Link) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.cumulative += 1;
        self.links.insert(conn, link);
        if self.dispatcher {
            self.give_work(conn);
        } else {
            self.order.push(conn);
            while let Some(q) = self.queue.pop_front() {
                self.deal(q.task);
            }
        }
        conn
    }

    /// A daemon has gone: returns its unfinished tasks, for the caller to
    /// resolve (with dispatcher and `retry`, its counted task is queued
    /// again instead, while it has attempts left).
    pub fn remove_link(&mut self, conn: u64) -> Vec<Arc<Aio>> {
        let Some(link) = self.links.remove(&conn) else {
            return Vec::new();
        };
        if let Some(i) = self.order.iter().position(|&c| c == conn) {
            self.order.remove(i);
        }
        let mut lost = Vec::new();
        let mut counted = Vec::new();
        for (id, aio) in link.inflight {
            match self.executing.remove(&(id as u32)) {
                Some(running) => counted.push(running),
                None => lost.push(aio),
            }
        }
        // Only the first task of a run can have started: the daemon
        // evaluates them in turn and every earlier one has answered. The
        // rest were waiting, as if still queued: they go back to the head
        // of the queue, in their order, without using an attempt.
        counted.sort_unstable_by_key(|r| r.sent);
        let waiting = counted.split_off(counted.len().min(1));
        self.requeue_waiting(waiting);
        for running in counted {
            if running.attempts < self.retry && running.aio.is_pending() {
                self.retries += 1;
                let attempts = running.attempts + 1;
                self.requeue(running, attempts);
            } else {
                lost.push(running.aio);
            }
        }
        if self.dispatcher {
            self.dispatch();
        }
        lost
    }

    /// Queue or send a task; hands it back if the host is closed.
    pub fn enqueue(&mut self, task: Task) -> Result<(), Task> {
        self.enqueue_in(task, None)
    }

    pub(super) fn enqueue_in(&mut self, task: Task, group: Option<usize>) -> Result<(), Task> {
        if self.closed {
            return Err(task);
        }
        self.received += 1;
        if !self.dispatcher {
            if self.order.is_empty() {
                self.queue.push_back(Queued {
                    task,
                    group,
                    counted: false,
                    attempts: 0,
                });
            } else {
                self.deal(task);
            }
            return Ok(());
        }
        self.queue_for_dispatch(task, group);
        Ok(())
    }

    /// Round-robin: send a task to the next daemon in turn. Tasks resolved
    /// while waiting (timed out, cancelled) are dropped.
    fn deal(&mut self, task: Task) {
        if !task.aio.is_pending() {
            return;
        }
        let conn = self.order[self.next % self.order.len()];
        self.next = self.next.wrapping_add(1);
        let Some(link) = self.links.get_mut(&conn) else {
            task.aio.complete(Outcome::Error(CONNECTION_RESET));
            return;
        };
        let aio = task.aio.clone();
        if !link.send_task(task.aio, Arc::new(task.frame)) {
            link.inflight.remove(&(aio.id as u64));
            aio.complete(Outcome::Error(CONNECTION_RESET));
        }
    }

    /// A daemon answered task `id`: complete its aio and, with dispatcher,
    /// give the daemon its next task. A result for a task cancelled
    /// meanwhile is dropped.
    pub fn result(&mut self, conn: u64, id: u64, outcome: Outcome) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let Some(aio) = link.inflight.remove(&id) else {
            return;
        };
        let free = link.inflight.is_empty();
        if free && self.dispatcher {
            link.run_done();
        }
        self.executing.remove(&(id as u32));
        aio.complete(outcome);
        if self.dispatcher && free {
            self.give_work(conn);
        }
        if free {
            self.unshare_dead(conn);
        }
    }

    /// A daemon fell idle: if some shared object has gone since it last
    /// sent a task, every daemon holding one that has gone drops it.
    fn unshare_dead(&mut self, conn: u64) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if link.inflight.is_empty() && link.unshare_dead() {
            for link in self.links.values_mut() {
                link.unshare_dead();
            }
        }
    }

    /// A daemon is leaving: it gets nothing more, and (dispatcher) tasks
    /// it was sent but never started go to other daemons.
    pub fn leave(&mut self, conn: u64) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        link.leaving = true;
        if let Some(i) = self.order.iter().position(|&c| c == conn) {
            self.order.remove(i);
        }
        if self.dispatcher {
            self.requeue_unstarted(conn);
        }
    }

    /// Note that a queued task was cancelled (it is skipped when reached).
    pub(super) fn cancelled_while_queued(&mut self) {
        self.cancelled_in_queue += 1;
        if self.cancelled_in_queue >= COMPACT_AFTER
            && self.cancelled_in_queue * 2 >= self.queue.len()
        {
            self.compact();
        }
    }

    /// Drop cancelled tasks from the queue now (freeing their budget).
    pub fn compact(&mut self) {
        if self.cancelled_in_queue == 0 {
            return;
        }
        let mut queue = std::mem::take(&mut self.queue);
        queue.retain(|q| {
            let keep = q.task.aio.is_pending();
            if !keep {
                self.forget_queued(q);
            }
            keep
        });
        self.queue = queue;
        self.cancelled_in_queue = 0;
    }

    /// Account for a queued task leaving the queue.
    pub(super) fn forget_queued(&mut self, q: &Queued) {
        if q.counted {
            self.budget.release(q.task.frame.len());
        }
        if let Some(b) = q.group {
            self.group_task_taken(b);
        }
    }

    /// [awaiting, executing, completed]
    pub fn task_counts(&self) -> [u64; 3] {
        let awaiting = (self.queue.len() - self.cancelled_in_queue) as u64;
        let executing = self.executing.len() as u64;
        let completed = self.received.saturating_sub(awaiting + executing);
        [awaiting, executing, completed]
    }

    /// Close: every unfinished task, for the caller to resolve, and the
    /// daemons' links.
    pub fn close(&mut self) -> (Vec<Arc<Aio>>, Vec<Link>) {
        self.closed = true;
        let lost: Vec<Arc<Aio>> = self.queue.drain(..).map(|q| q.task.aio).collect();
        self.cancelled_in_queue = 0;
        self.budget.used = 0;
        self.idle.clear();
        self.executing.clear();
        self.order.clear();
        let links: Vec<Link> = self.links.drain().map(|(_, l)| l).collect();
        (lost, links)
    }
}
