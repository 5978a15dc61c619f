//! The dispatcher policy: tasks wait first-in first-out and each goes to a
//! free daemon, which runs one task at a time. A daemon is handed its next
//! task the moment its result arrives, on the thread that read it. A
//! cancelled task is dropped from the queue or interrupted on its daemon;
//! queued payload bytes count against an optional budget.
//!
//! `everywhere()` calls are *broadcasts*. Each queues a group of `k` tasks
//! that go to `k` distinct daemons; while a group is not all taken, the
//! queue stops at its next task, so later tasks wait for every member (the
//! synchronisation point). Every daemon also runs each broadcast once
//! before its next ordinary task, including daemons that connect after
//! the group was taken; those extra runs are not counted as tasks. A
//! link's `next_broadcast` says how far it has got: broadcasts before it
//! it has run, as a group member or as an extra.
//!
//! Small `mirai_map()` elements go out in *runs*: consecutive queued
//! elements handed to a free daemon together (each still its own task,
//! with its own result and cancellation). The daemon reads a whole run
//! before evaluating its first task and is free again once it has
//! answered them all, so a map of tiny elements costs one wait for the
//! host per run rather than per element. A daemon's run size adapts to
//! the time its last run took per element: at most double the last run
//! while elements are quick, back to one as soon as they are not (a map of
//! slow elements stays spread one by one), and never more than a fair
//! share of what is queued.

use super::scheduler::{Broadcast, Queued, Running, State, Task};
use crate::aio::{Aio, Outcome};
use crate::outframe::OutFrame;
use crate::protocol::handshake::Stream;
use crate::protocol::message::{
    cancel_frame, task_prefix, TASK_KEEP_STATE, TASK_MAP, TASK_MORE, TASK_RAW_ARGS,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most tasks in one run.
const RUN_MAX: usize = 1024;
/// Elements this slow (per element, the wait for the host included) are
/// sent one by one.
const RUN_SLOW: Duration = Duration::from_millis(1);
/// About how long a run of quick elements should take.
const RUN_TIME: Duration = Duration::from_millis(20);
/// Largest task frame that joins a run (larger ones gain nothing).
const RUN_FRAME_MAX: usize = 64 << 10;

/// Whether a queued task may be part of a run: a map element, small, with
/// no raw vectors following it.
fn joins_run(q: &Queued) -> bool {
    let flags = q.task.frame.task_flags();
    q.group.is_none()
        && flags & TASK_MAP != 0
        && flags & TASK_RAW_ARGS == 0
        && q.task.frame.len() <= RUN_FRAME_MAX
}

/// The size of a daemon's next run, after it took `took` to answer a run
/// of `len` tasks.
fn next_run_size(len: usize, took: Duration) -> usize {
    let per = took / len.max(1) as u32;
    if per >= RUN_SLOW {
        return 1;
    }
    let by_time = (RUN_TIME.as_nanos() / per.as_nanos().max(1)) as usize;
    (2 * len).min(by_time).clamp(1, RUN_MAX)
}

impl super::link::Link {
    /// The daemon has answered its whole run: size the next one.
    pub(super) fn run_done(&mut self) {
        if self.run_len > 0 {
            self.run_size = next_run_size(self.run_len, self.run_sent.elapsed());
            self.run_len = 0;
        }
    }
}

/// A TASK frame for `aio` carrying a broadcast's shared payload.
fn broadcast_frame(aio: &Aio, payload: &Arc<[u8]>) -> OutFrame {
    let head = task_prefix(aio.id as u64, TASK_KEEP_STATE, payload.len());
    OutFrame::with_shared(head, payload.clone())
}

impl State {
    /// The random-number stream for the next daemon to connect: each gets
    /// the stream after the last one's.
    pub fn next_stream(&mut self) -> Option<Stream> {
        let next = crate::streams::next_stream(self.stream.as_ref()?);
        self.stream = Some(next);
        Some(next)
    }

    /// Queue a counted task and hand out work; its bytes count against the
    /// budget only if no free daemon took it at once.
    pub(super) fn queue_for_dispatch(&mut self, task: Task, group: Option<usize>) {
        let aio = task.aio.clone();
        self.queue.push_back(Queued {
            task,
            group,
            counted: false,
            attempts: 0,
        });
        self.dispatch();
        if let Some(q) = self.queue.back_mut() {
            if Arc::ptr_eq(&q.task.aio, &aio) {
                q.counted = true;
                let len = q.task.frame.len();
                self.budget.add(len);
            }
        }
    }

    /// Whether queued work remains that some daemon might take.
    fn has_queued(&self) -> bool {
        self.queue.len() > self.cancelled_in_queue
    }

    /// Hand queued tasks to free daemons while there are both. A daemon
    /// that cannot take the head (a broadcast it has run) goes back on the
    /// list; one pass over the list without progress ends the round.
    pub(super) fn dispatch(&mut self) {
        let mut tries = self.idle.len();
        while tries > 0 && self.has_queued() {
            tries -= 1;
            let Some(conn) = self.idle.pop_front() else {
                return;
            };
            let Some(link) = self.links.get_mut(&conn) else {
                continue;
            };
            link.idle_listed = false;
            if self.give_work(conn) {
                tries = self.idle.len();
            }
        }
    }

    /// Offer work to every free daemon (a broadcast group has been taken:
    /// those that did not run it do so now, the others may go past it).
    fn offer_all_idle(&mut self) {
        let idle: Vec<u64> = self.idle.drain(..).collect();
        for conn in idle {
            if let Some(link) = self.links.get_mut(&conn) {
                link.idle_listed = false;
                self.give_work(conn);
            }
        }
    }

    /// Give a daemon with nothing to do its next task: a broadcast it has
    /// not run, else the queue's head if it may take it; with neither,
    /// list it as free. Returns whether it was given something.
    pub(super) fn give_work(&mut self, conn: u64) -> bool {
        match self.links.get(&conn) {
            Some(link) if link.inflight.is_empty() && !link.leaving => {}
            _ => return false,
        }
        if self.extra_run(conn) {
            return true;
        }
        let next_broadcast = self.links[&conn].next_broadcast;
        while let Some(q) = self.queue.front() {
            if !q.task.aio.is_pending() {
                let q = self.queue.pop_front().expect("front exists");
                self.cancelled_in_queue = self.cancelled_in_queue.saturating_sub(1);
                self.forget_queued(&q);
                continue;
            }
            if q.group.is_some_and(|b| b < next_broadcast) {
                break; // a broadcast this daemon has run: it waits
            }
            let q = self.queue.pop_front().expect("front exists");
            self.forget_queued(&q);
            let run = self.take_run(conn, q);
            self.run(conn, run);
            return true;
        }
        let link = self.links.get_mut(&conn).expect("checked above");
        if !link.idle_listed {
            link.idle_listed = true;
            self.idle.push_back(conn);
        }
        false
    }

    /// The run starting with `first` (just taken from the queue): the
    /// queued map elements that follow it, up to the daemon's run size and
    /// a fair share of the queue. Cancelled tasks met on the way are
    /// dropped from the queue.
    fn take_run(&mut self, conn: u64, first: Queued) -> Vec<Queued> {
        let share =
            (self.queue.len() - self.cancelled_in_queue + 1).div_ceil(2 * self.links.len().max(1));
        let size = match self.fixed_run {
            Some(n) => n,
            None => self.links[&conn].run_size.min(share),
        };
        let mut run = vec![first];
        if size <= 1 || !joins_run(&run[0]) {
            return run;
        }
        while run.len() < size {
            let Some(q) = self.queue.front() else {
                break;
            };
            if !q.task.aio.is_pending() {
                let q = self.queue.pop_front().expect("front exists");
                self.cancelled_in_queue = self.cancelled_in_queue.saturating_sub(1);
                self.forget_queued(&q);
                continue;
            }
            // nothing may come between a run's tasks: each must name only
            // objects the daemon holds or will get before the first
            let named_before = |o: &&Arc<crate::host::shared::SharedObject>| {
                self.links[&conn].held.contains_key(&o.id)
                    || run[0]
                        .task
                        .frame
                        .shared_objects()
                        .iter()
                        .any(|f| f.id == o.id)
            };
            if !joins_run(q)
                || !q
                    .task
                    .frame
                    .shared_objects()
                    .iter()
                    .all(|o| named_before(&o))
            {
                break;
            }
            let q = self.queue.pop_front().expect("front exists");
            self.forget_queued(&q);
            run.push(q);
        }
        run
    }

    /// Send counted tasks to a daemon, as one run (see the module docs).
    fn run(&mut self, conn: u64, run: Vec<Queued>) {
        let last = run.len() - 1;
        for (i, q) in run.into_iter().enumerate() {
            let Queued {
                mut task,
                group,
                attempts,
                ..
            } = q;
            task.frame.set_task_flag(TASK_MORE, i < last);
            let frame = Arc::new(task.frame);
            self.executing.insert(
                task.aio.id,
                Running {
                    conn,
                    aio: task.aio.clone(),
                    frame: frame.clone(),
                    group,
                    attempts,
                    sent: self.sent,
                },
            );
            self.sent += 1;
            let link = self.links.get_mut(&conn).expect("caller checked");
            if let Some(b) = group {
                link.next_broadcast = link.next_broadcast.max(b + 1);
            }
            // a failed send leaves the task in flight: it resolves when the
            // connection's reader sees the daemon gone
            if i == 0 {
                link.send_task(task.aio, frame);
            } else {
                link.send_run_task(task.aio, frame);
            }
        }
        let link = self.links.get_mut(&conn).expect("caller checked");
        link.run_len = last + 1;
        link.run_sent = Instant::now();
    }

    /// If a broadcast whose group is all taken has not been run by this
    /// daemon, send it (uncounted); true if one was sent.
    fn extra_run(&mut self, conn: u64) -> bool {
        let link = self.links.get_mut(&conn).expect("caller checked");
        let Some(b) = self.broadcasts.get(link.next_broadcast) else {
            return false;
        };
        if b.untaken > 0 {
            return false; // still a group: taken from the queue
        }
        link.next_broadcast += 1;
        let aio = Aio::new();
        let frame = Arc::new(broadcast_frame(&aio, &b.payload));
        link.send_task(aio, frame);
        true
    }

    /// A group task of broadcast `b` left the queue (taken or cancelled).
    pub(super) fn group_task_taken(&mut self, b: usize) {
        let Some(bc) = self.broadcasts.get_mut(b) else {
            return;
        };
        bc.untaken = bc.untaken.saturating_sub(1);
        if bc.untaken == 0 {
            self.offer_all_idle();
        }
    }

    /// Queue an `everywhere()` call as a group of `k` tasks for distinct
    /// daemons (see the module docs); returns their aios, which are
    /// counted tasks. With `k` zero the call still reaches every daemon
    /// as an extra run.
    pub fn broadcast(
        &mut self,
        payload: Arc<[u8]>,
        k: usize,
        new_aio: impl Fn() -> Arc<Aio>,
    ) -> Vec<Arc<Aio>> {
        if self.closed {
            return Vec::new();
        }
        let b = self.broadcasts.len();
        self.broadcasts.push(Broadcast {
            payload: payload.clone(),
            untaken: k,
        });
        let mut aios = Vec::with_capacity(k);
        for _ in 0..k {
            let aio = new_aio();
            let frame = broadcast_frame(&aio, &payload);
            aios.push(aio.clone());
            let _ = self.enqueue_in(Task { aio, frame }, Some(b));
        }
        if k == 0 {
            self.offer_all_idle();
        }
        aios
    }

    /// Resolve `aio` to errorValue `code` and stop its task: a queued one
    /// is skipped when reached, a running one is interrupted on its daemon
    /// (which stays busy until it answers). True if the task was queued or
    /// running here; false if it had already resolved.
    pub fn cancel(&mut self, aio: &Aio, code: i32) -> bool {
        if !aio.complete(Outcome::Error(code)) {
            return false;
        }
        if let Some(running) = self.executing.get(&aio.id) {
            if let Some(link) = self.links.get_mut(&running.conn) {
                link.send(Arc::new(cancel_frame(aio.id as u64).into()));
            }
        } else if !self.closed {
            self.cancelled_while_queued();
        }
        true
    }

    /// A daemon is leaving: tasks it was sent but never started go back to
    /// the head of the queue.
    pub(super) fn requeue_unstarted(&mut self, conn: u64) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let ids: Vec<u64> = link.inflight.keys().copied().collect();
        let mut unstarted = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(running) = self.executing.remove(&(id as u32)) {
                link.inflight.remove(&id);
                unstarted.push(running);
            }
        }
        self.requeue_waiting(unstarted);
        self.dispatch();
    }

    /// Put tasks a daemon never started back at the head of the queue, in
    /// the order they were sent, without using an attempt (the cancelled
    /// ones are dropped).
    pub(super) fn requeue_waiting(&mut self, mut tasks: Vec<Running>) {
        // pushed to the head one by one: the last sent first
        tasks.sort_unstable_by_key(|r| std::cmp::Reverse(r.sent));
        for running in tasks {
            if running.aio.is_pending() {
                let attempts = running.attempts;
                self.requeue(running, attempts);
            }
        }
    }

    /// Put a task taken by a daemon back at the head of the queue (the
    /// daemon left without starting it, or died with it and it has
    /// attempts left).
    pub(super) fn requeue(&mut self, running: Running, attempts: u32) {
        if let Some(b) = running.group {
            if let Some(bc) = self.broadcasts.get_mut(b) {
                bc.untaken += 1;
            }
        }
        let frame = Arc::unwrap_or_clone(running.frame);
        self.budget.add(frame.len());
        self.queue.push_front(Queued {
            task: Task {
                aio: running.aio,
                frame,
            },
            group: running.group,
            counted: true,
            attempts,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_grow_for_quick_elements_and_end_for_slow_ones() {
        let us = Duration::from_micros;
        // quick: at most double the last run, as time allows
        assert_eq!(next_run_size(1, us(80)), 2);
        assert_eq!(next_run_size(64, us(64 * 50)), 128);
        assert_eq!(next_run_size(512, us(512 * 10)), RUN_MAX);
        assert_eq!(next_run_size(512, us(512 * 20)), 1000);
        assert_eq!(next_run_size(RUN_MAX, us(RUN_MAX as u64 * 5)), RUN_MAX);
        // a run should take about RUN_TIME: 200 us elements give 100
        assert_eq!(next_run_size(400, us(400 * 200)), 100);
        // slow elements go one by one, whatever came before
        assert_eq!(next_run_size(RUN_MAX, RUN_SLOW * RUN_MAX as u32), 1);
        assert_eq!(next_run_size(1, Duration::from_millis(10)), 1);
        assert_eq!(next_run_size(0, Duration::ZERO), 1);
    }
}
