//! Which daemon runs which task: the state of one compute profile's host,
//! always used under the host's lock. Two policies:
//!
//! - **Round-robin** (no dispatcher): each task goes at once to the next
//!   connected daemon, which queues it in its socket. Tasks wait here only
//!   while no daemon is connected.
//! - **Dispatcher**: tasks wait here first-in first-out and each goes to a
//!   free daemon, which runs one task at a time. A daemon is handed its
//!   next task the moment its result arrives, on the thread that read it.
//!   A cancelled task is dropped from the queue or interrupted on its
//!   daemon; queued payload bytes count against an optional budget.
//!
//! Nothing here is O(tasks) per task: the queue is a deque, a cancelled
//! queued task is left in place and skipped (the queue is compacted when
//! mostly cancelled), and daemons are found through hash maps.

use crate::aio::{Aio, Outcome, ERR_CONNECTION_RESET};
use crate::link::{Link, SharedFrame};
use crate::outframe::OutFrame;
use crate::protocol::*;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A task ready to go: its aio and its complete TASK frame.
pub struct Task {
    pub aio: Arc<Aio>,
    pub frame: OutFrame,
}

/// Build a TASK frame for `aio` whose payload the caller appends, then
/// seals with [`finish_frame`].
pub fn task_frame(aio: &Aio, flags: u8, capacity: usize) -> Vec<u8> {
    let mut f = begin_frame(TASK, ID_FLAGS_LEN + capacity);
    f.extend_from_slice(&(aio.id as u64).to_le_bytes());
    f.push(flags);
    f
}

fn broadcast_frame(aio: &Aio, body: &[u8]) -> SharedFrame {
    let mut f = task_frame(aio, FLAG_KEEP_STATE, body.len());
    f.extend_from_slice(body);
    finish_frame(&mut f);
    Arc::new(f.into())
}

/// Dispatcher: an ordinary task on a daemon. Its frame is kept until the
/// daemon answers, to go elsewhere if the daemon leaves without starting it.
struct Running {
    conn: u64,
    aio: Arc<Aio>,
    frame: SharedFrame,
}

/// An `everywhere()` task (dispatcher): every daemon runs it, those
/// connecting later included, before its next ordinary task.
struct Broadcast {
    body: Vec<u8>,
    /// Aios made ready for the daemons connected when it was issued.
    reserved: HashMap<u64, Arc<Aio>>,
    /// Every aio so far, one per daemon reached or about to be.
    aios: Vec<Arc<Aio>>,
}

/// Queued payload bytes against an optional limit.
#[derive(Default)]
pub struct Budget {
    pub limit: Option<u64>,
    pub used: u64,
    pub peak: u64,
}

impl Budget {
    fn add(&mut self, n: usize) {
        self.used += n as u64;
        self.peak = self.peak.max(self.used);
    }
    fn release(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n as u64);
    }
}

#[derive(Default)]
pub struct State {
    dispatcher: bool,
    pub links: HashMap<u64, Link>,
    /// Round-robin: the connections in dealing order, and the next turn.
    order: Vec<u64>,
    next: usize,
    queue: VecDeque<Task>,
    /// How many tasks in `queue` were cancelled while waiting there.
    cancelled_in_queue: usize,
    /// Dispatcher: daemons free for work, oldest first (may hold daemons
    /// since gone or busy, skipped when reached).
    idle: VecDeque<u64>,
    /// Dispatcher: ordinary tasks on daemons, by task id.
    executing: HashMap<u32, Running>,
    broadcasts: Vec<Broadcast>,
    pub budget: Budget,
    /// Tasks finished: answered, cancelled or timed out (dispatcher).
    pub completed: u64,
    pub cumulative: u64,
    pub refused: u64,
    next_conn: u64,
    pub closed: bool,
}

/// Compact the queue once this many cancelled tasks make up half of it.
const COMPACT_AFTER: usize = 1024;

impl State {
    pub fn new(dispatcher: bool, memory_limit: Option<u64>) -> State {
        State {
            dispatcher,
            budget: Budget {
                limit: memory_limit,
                ..Budget::default()
            },
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
            while let Some(task) = self.queue.pop_front() {
                self.deal(task);
            }
        }
        conn
    }

    /// A daemon has gone: returns its unfinished tasks.
    pub fn remove_link(&mut self, conn: u64) -> Vec<Arc<Aio>> {
        let Some(link) = self.links.remove(&conn) else {
            return Vec::new();
        };
        if let Some(i) = self.order.iter().position(|&c| c == conn) {
            self.order.swap_remove(i);
        }
        for id in link.inflight.keys() {
            self.executing.remove(&(*id as u32));
        }
        let mut lost: Vec<Arc<Aio>> = link.inflight.into_values().collect();
        // everywhere() tasks set aside for this daemon that it never got
        for b in self.broadcasts.iter_mut().skip(link.broadcasts_seen) {
            lost.extend(b.reserved.remove(&conn));
        }
        lost
    }

    /// Queue or send a task; hands it back if the host is closed.
    pub fn enqueue(&mut self, task: Task) -> Result<(), Task> {
        if self.closed {
            return Err(task);
        }
        if !self.dispatcher {
            if self.order.is_empty() {
                self.queue.push_back(task);
            } else {
                self.deal(task);
            }
            return Ok(());
        }
        self.budget.add(task.frame.len());
        self.queue.push_back(task);
        self.dispatch();
        Ok(())
    }

    /// Whether a payload of `bytes` fits the memory budget now. One task
    /// always fits an empty queue, however large.
    pub fn admits(&self, bytes: usize) -> bool {
        match self.budget.limit {
            None => true,
            Some(limit) => self.budget.used == 0 || self.budget.used + bytes as u64 <= limit,
        }
    }

    /// Round-robin: send a task to the next daemon in turn. Tasks resolved
    /// while waiting (timed out, cancelled) are dropped.
    fn deal(&mut self, task: Task) {
        if !task.aio.is_pending() {
            return;
        }
        let conn = self.order[self.next % self.order.len()];
        self.next = self.next.wrapping_add(1);
        let link = self
            .links
            .get_mut(&conn)
            .expect("dealing order out of date");
        let aio = task.aio.clone();
        if !link.send_task(task.aio, Arc::new(task.frame)) {
            link.inflight.remove(&(aio.id as u64));
            aio.complete(Outcome::Error(ERR_CONNECTION_RESET));
        }
    }

    /// Dispatcher: hand queued tasks to free daemons while there are both.
    fn dispatch(&mut self) {
        while self.queue.len() > self.cancelled_in_queue {
            let Some(conn) = self.idle.pop_front() else {
                return;
            };
            if let Some(link) = self.links.get_mut(&conn) {
                link.idle_listed = false;
                self.give_work(conn);
            }
        }
    }

    /// Dispatcher: give a daemon with nothing to do its next task: an
    /// `everywhere()` task it has not run yet, else the oldest queued task;
    /// with neither, list it as free.
    fn give_work(&mut self, conn: u64) {
        match self.links.get(&conn) {
            Some(link) if link.inflight.is_empty() && !link.leaving => {}
            _ => return,
        }
        let link = self.links.get_mut(&conn).unwrap();
        if let Some(b) = self.broadcasts.get_mut(link.broadcasts_seen) {
            link.broadcasts_seen += 1;
            let aio = b.reserved.remove(&conn).unwrap_or_else(|| {
                let aio = Aio::new();
                b.aios.push(aio.clone());
                aio
            });
            let frame = broadcast_frame(&aio, &b.body);
            link.send_task(aio, frame);
            return;
        }
        if let Some(task) = self.pop_queued() {
            let frame = Arc::new(task.frame);
            self.executing.insert(
                task.aio.id,
                Running {
                    conn,
                    aio: task.aio.clone(),
                    frame: frame.clone(),
                },
            );
            // a failed send leaves the task in flight: it resolves when
            // the connection's reader sees the daemon gone
            self.links
                .get_mut(&conn)
                .unwrap()
                .send_task(task.aio, frame);
            return;
        }
        let link = self.links.get_mut(&conn).unwrap();
        if !link.idle_listed {
            link.idle_listed = true;
            self.idle.push_back(conn);
        }
    }

    /// The oldest queued task still wanted; cancelled ones are dropped.
    fn pop_queued(&mut self) -> Option<Task> {
        while let Some(task) = self.queue.pop_front() {
            self.budget.release(task.frame.len());
            if task.aio.is_pending() {
                return Some(task);
            }
            self.cancelled_in_queue = self.cancelled_in_queue.saturating_sub(1);
        }
        None
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
        let ordinary = self.executing.remove(&(id as u32)).is_some();
        if aio.complete(outcome) && ordinary {
            self.completed += 1;
        }
        if self.dispatcher && free {
            self.give_work(conn);
        }
    }

    /// Dispatcher: resolve `aio` to errorValue `code` and stop its task: a
    /// queued one is skipped when reached, an executing one is interrupted
    /// on its daemon (which stays busy until it answers). False if the aio
    /// had already resolved.
    pub fn cancel(&mut self, aio: &Aio, code: i32) -> bool {
        if !aio.complete(Outcome::Error(code)) {
            return false;
        }
        self.completed += 1;
        if let Some(running) = self.executing.get(&aio.id) {
            if let Some(link) = self.links.get_mut(&running.conn) {
                link.send(Arc::new(
                    frame(CANCEL, &(aio.id as u64).to_le_bytes()).into(),
                ));
            }
        } else if !self.closed {
            self.cancelled_in_queue += 1;
            if self.cancelled_in_queue >= COMPACT_AFTER
                && self.cancelled_in_queue * 2 >= self.queue.len()
            {
                self.compact();
            }
        }
        true
    }

    /// A daemon is leaving: it gets nothing more, and (dispatcher) tasks it
    /// was sent but never started go back to the head of the queue.
    pub fn leave(&mut self, conn: u64) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        link.leaving = true;
        if let Some(i) = self.order.iter().position(|&c| c == conn) {
            self.order.remove(i);
        }
        let ids: Vec<u64> = link.inflight.keys().copied().collect();
        for id in ids {
            let Some(running) = self.executing.remove(&(id as u32)) else {
                continue;
            };
            link.inflight.remove(&id);
            if !running.aio.is_pending() {
                continue; // cancelled meanwhile
            }
            let frame = Arc::unwrap_or_clone(running.frame);
            self.budget.add(frame.len());
            self.queue.push_front(Task {
                aio: running.aio,
                frame,
            });
        }
        self.dispatch();
    }

    /// Drop cancelled tasks from the queue now (freeing their budget).
    pub fn compact(&mut self) {
        if self.cancelled_in_queue == 0 {
            return;
        }
        let budget = &mut self.budget;
        self.queue.retain(|t| {
            let keep = t.aio.is_pending();
            if !keep {
                budget.release(t.frame.len());
            }
            keep
        });
        self.cancelled_in_queue = 0;
    }

    pub fn has_cancelled_in_queue(&self) -> bool {
        self.cancelled_in_queue > 0
    }

    /// Send `body` to be evaluated, keeping state, on every daemon: now to
    /// each connected one (round-robin), or (dispatcher) to each daemon as
    /// its next task, including daemons that connect later. Returns the
    /// broadcast's number and the aios of the daemons connected now.
    pub fn broadcast(&mut self, body: Vec<u8>) -> (usize, Vec<Arc<Aio>>) {
        let conns: Vec<u64> = self.links.keys().copied().collect();
        if !self.dispatcher {
            let mut aios = Vec::with_capacity(conns.len());
            for conn in conns {
                let aio = Aio::new();
                let link = self.links.get_mut(&conn).unwrap();
                if link.send_task(aio.clone(), broadcast_frame(&aio, &body)) {
                    aios.push(aio);
                } else {
                    link.inflight.remove(&(aio.id as u64));
                }
            }
            return (usize::MAX, aios);
        }
        let reserved: HashMap<u64, Arc<Aio>> = conns.iter().map(|&c| (c, Aio::new())).collect();
        let aios: Vec<Arc<Aio>> = reserved.values().cloned().collect();
        self.broadcasts.push(Broadcast {
            body,
            reserved,
            aios: aios.clone(),
        });
        for conn in conns {
            self.give_work(conn);
        }
        (self.broadcasts.len() - 1, aios)
    }

    /// Every aio of broadcast `index` so far.
    pub fn broadcast_aios(&self, index: usize) -> Vec<Arc<Aio>> {
        self.broadcasts
            .get(index)
            .map(|b| b.aios.clone())
            .unwrap_or_default()
    }

    /// [awaiting, executing, completed]
    pub fn task_counts(&self) -> [u64; 3] {
        [
            (self.queue.len() - self.cancelled_in_queue) as u64,
            self.executing.len() as u64,
            self.completed,
        ]
    }

    /// Close: every unfinished task, for the caller to resolve, and the
    /// daemons' links.
    pub fn close(&mut self) -> (Vec<Arc<Aio>>, Vec<Link>) {
        self.closed = true;
        let mut lost: Vec<Arc<Aio>> = self.queue.drain(..).map(|t| t.aio).collect();
        self.cancelled_in_queue = 0;
        self.budget.used = 0;
        self.idle.clear();
        self.executing.clear();
        self.order.clear();
        for b in self.broadcasts.drain(..) {
            lost.extend(b.reserved.into_values());
        }
        let links: Vec<Link> = self.links.drain().map(|(_, l)| l).collect();
        (lost, links)
    }
}
