//! The start queue: FIFO by a sequence number, 1-based positions, total queued RAM,
//! per-user counts, and deadlines in their own ordered set so that the next timeout is
//! an O(log n) lookup.
//!
//! A server whose start fails re-enters with its original sequence number and queue
//! time, so it keeps its place (the original pushed it to the tail and reset its timer).
//! Servers requeued after their node was fenced go to the head (a sequence number below
//! every other) with a fresh deadline.

use crate::model::{Plan, ServerId, UserId};
use crate::time::Millis;
use crate::timers::TimerSet;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct QueueEntry {
    pub server: ServerId,
    pub ram_mb: u32,
    pub plan: Plan,
    pub user: UserId,
    pub seq: i64,
    /// When the server was first requested; waits are measured from here.
    pub queued_at: Millis,
    /// When the server gives up waiting.
    pub deadline: Millis,
    /// Not placed before this (backoff after a failed attempt).
    pub not_before: Millis,
}

#[derive(Default)]
pub struct StartQueue {
    by_seq: BTreeMap<i64, QueueEntry>,
    seq_of: BTreeMap<ServerId, i64>,
    deadlines: TimerSet<i64>,
    per_user: BTreeMap<UserId, u32>,
    total_ram_mb: u64,
    /// Queued servers by RAM size (a multiset), for the smallest and largest entry.
    by_ram: BTreeMap<u32, u32>,
    next_tail: i64,
    next_head: i64,
}

impl StartQueue {
    pub fn new() -> StartQueue {
        StartQueue { next_tail: 1, next_head: 0, ..Default::default() }
    }

    /// A fresh sequence number at the tail.
    pub fn tail_seq(&mut self) -> i64 {
        let s = self.next_tail;
        self.next_tail += 1;
        s
    }

    /// A fresh sequence number before every other entry.
    pub fn head_seq(&mut self) -> i64 {
        let s = self.next_head;
        self.next_head -= 1;
        s
    }

    /// Insert an entry with the sequence number it carries. Panics on a duplicate server
    /// or sequence number: the engine checks first.
    pub fn insert(&mut self, e: QueueEntry) {
        assert!(!self.seq_of.contains_key(&e.server), "{} queued twice", e.server);
        assert!(!self.by_seq.contains_key(&e.seq), "queue sequence {} reused", e.seq);
        self.seq_of.insert(e.server, e.seq);
        self.deadlines.insert(e.deadline, e.seq);
        *self.per_user.entry(e.user).or_default() += 1;
        self.total_ram_mb += u64::from(e.ram_mb);
        *self.by_ram.entry(e.ram_mb).or_default() += 1;
        self.by_seq.insert(e.seq, e);
    }

    pub fn remove(&mut self, server: ServerId) -> Option<QueueEntry> {
        let seq = self.seq_of.remove(&server)?;
        let e = self.by_seq.remove(&seq).expect("seq_of and by_seq agree");
        self.deadlines.remove(e.deadline, seq);
        let n = self.per_user.get_mut(&e.user).expect("per-user count exists");
        *n -= 1;
        if *n == 0 {
            self.per_user.remove(&e.user);
        }
        self.total_ram_mb -= u64::from(e.ram_mb);
        let n = self.by_ram.get_mut(&e.ram_mb).expect("ram multiset holds every entry");
        *n -= 1;
        if *n == 0 {
            self.by_ram.remove(&e.ram_mb);
        }
        Some(e)
    }

    pub fn get(&self, server: ServerId) -> Option<&QueueEntry> {
        self.seq_of.get(&server).map(|s| &self.by_seq[s])
    }

    pub fn contains(&self, server: ServerId) -> bool {
        self.seq_of.contains_key(&server)
    }

    /// 1-based position, `None` if not queued. O(position).
    pub fn position(&self, server: ServerId) -> Option<usize> {
        let seq = *self.seq_of.get(&server)?;
        Some(self.by_seq.range(..=seq).count())
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    pub fn total_ram_mb(&self) -> u64 {
        self.total_ram_mb
    }

    /// The largest queued server (cached; recomputed after its entry leaves).
    /// The largest queued server (0 if none).
    pub fn max_ram_mb(&self) -> u32 {
        self.by_ram.last_key_value().map_or(0, |(&r, _)| r)
    }

    /// Queued servers by RAM as (size, count), smallest first.
    pub fn sizes(&self) -> impl DoubleEndedIterator<Item = (u32, u32)> + '_ {
        self.by_ram.iter().map(|(&r, &c)| (r, c))
    }

    /// The smallest queued server (0 if none).
    pub fn min_ram_mb(&self) -> u32 {
        self.by_ram.first_key_value().map_or(0, |(&r, _)| r)
    }

    pub fn user_count(&self, user: UserId) -> u32 {
        self.per_user.get(&user).copied().unwrap_or(0)
    }

    /// Entries in queue order.
    pub fn iter(&self) -> impl Iterator<Item = &QueueEntry> {
        self.by_seq.values()
    }

    /// Servers in queue order (a snapshot, so the engine may mutate while walking).
    pub fn order(&self) -> Vec<ServerId> {
        self.by_seq.values().map(|e| e.server).collect()
    }

    /// The first entry after sequence number `seq` (from the head when `None`).
    pub fn next_after(&self, seq: Option<i64>) -> Option<&QueueEntry> {
        match seq {
            None => self.by_seq.values().next(),
            Some(seq) => {
                self.by_seq.range((std::ops::Bound::Excluded(seq), std::ops::Bound::Unbounded)).next().map(|(_, e)| e)
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.first()
    }

    /// Remove and return every entry whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Millis) -> Vec<QueueEntry> {
        let mut out = Vec::new();
        while let Some((_, seq)) = self.deadlines.peek_due(now) {
            let server = self.by_seq[&seq].server;
            out.push(self.remove(server).expect("deadline entry is queued"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(q: &mut StartQueue, id: u64, ram: u32, user: u64, at: u64) -> QueueEntry {
        QueueEntry {
            server: ServerId(id),
            ram_mb: ram,
            plan: Plan::PayPerPlay,
            user: UserId(user),
            seq: q.tail_seq(),
            queued_at: Millis(at),
            deadline: Millis(at + 600_000),
            not_before: Millis(at),
        }
    }

    #[test]
    fn fifo_positions_totals_and_removal() {
        let mut q = StartQueue::new();
        for i in 1..=3 {
            let e = entry(&mut q, i, 1024 * i as u32, 7, i);
            q.insert(e);
        }
        assert_eq!(q.position(ServerId(1)), Some(1));
        assert_eq!(q.position(ServerId(3)), Some(3));
        assert_eq!(q.total_ram_mb(), 6144);
        assert_eq!(q.max_ram_mb(), 3072);
        assert_eq!(q.user_count(UserId(7)), 3);
        let e = q.remove(ServerId(1)).unwrap();
        assert_eq!(q.position(ServerId(3)), Some(2));
        assert_eq!(q.total_ram_mb(), 5120);
        // Re-inserted with its old sequence number, it is first again.
        q.insert(e);
        assert_eq!(q.position(ServerId(1)), Some(1));
        q.remove(ServerId(3));
        assert_eq!(q.max_ram_mb(), 2048);
        assert_eq!(q.position(ServerId(3)), None);
    }

    #[test]
    fn head_insert_goes_before_everything() {
        let mut q = StartQueue::new();
        let e = entry(&mut q, 1, 1024, 1, 0);
        q.insert(e);
        let mut h = entry(&mut q, 2, 1024, 1, 5);
        h.seq = q.head_seq();
        q.insert(h);
        assert_eq!(q.order(), vec![ServerId(2), ServerId(1)]);
    }

    #[test]
    fn expire_returns_due_entries_only() {
        let mut q = StartQueue::new();
        let e1 = entry(&mut q, 1, 1024, 1, 0);
        let e2 = entry(&mut q, 2, 1024, 1, 1000);
        q.insert(e1);
        q.insert(e2);
        assert_eq!(q.next_deadline(), Some(Millis(600_000)));
        let gone = q.expire(Millis(600_000));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].server, ServerId(1));
        assert_eq!(q.len(), 1);
    }
}
