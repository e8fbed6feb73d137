//! Timer containers for the engine. Both keep their earliest deadline in a field, so
//! [`crate::Conductor::poll_timeout`] is a handful of loads, not a walk down a dozen
//! B-trees per call.
//!
//! - [`TimerSet`]: `(deadline, key)` pairs in order, for timers with one entry per key
//!   (servers, nodes) and spread-out deadlines.
//! - [`LazyTimers`]: `(deadline, key)` entries whose owner keeps each key's deadline in
//!   its own record; cancelling is clearing that record, and stale entries are dropped
//!   when they reach the top. For archives: one per stopped server, 48 h out by default,
//!   mostly cancelled by a restart; a heap makes both ends O(1) to O(log n) without a
//!   tree walk per cancel.
//! - [`Rounds`]: keys grouped by deadline, for timers where many keys share the same
//!   moment (health probes: a fleet registered together is probed in lockstep, so one
//!   round per interval holds every node and costs one map entry, not one per node).

use crate::time::Millis;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// `(deadline, key)` pairs, ordered; the earliest deadline is cached.
#[derive(Clone, Debug)]
pub(crate) struct TimerSet<K: Ord + Copy> {
    set: BTreeSet<(Millis, K)>,
    first: Option<Millis>,
}

impl<K: Ord + Copy> Default for TimerSet<K> {
    fn default() -> Self {
        TimerSet { set: BTreeSet::new(), first: None }
    }
}

impl<K: Ord + Copy> TimerSet<K> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn insert(&mut self, at: Millis, key: K) {
        self.set.insert((at, key));
        if self.first.is_none_or(|f| at < f) {
            self.first = Some(at);
        }
    }

    pub(crate) fn remove(&mut self, at: Millis, key: K) -> bool {
        let removed = self.set.remove(&(at, key));
        if removed && self.first == Some(at) {
            self.refresh();
        }
        removed
    }

    /// The earliest deadline.
    pub(crate) fn first(&self) -> Option<Millis> {
        self.first
    }

    /// The earliest entry if it is due at `now`.
    pub(crate) fn peek_due(&self, now: Millis) -> Option<(Millis, K)> {
        if self.first? > now {
            return None;
        }
        self.set.first().copied()
    }

    /// Remove and return the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, K)> {
        if self.first? > now {
            return None;
        }
        let e = self.set.pop_first();
        self.refresh();
        e
    }

    pub(crate) fn retain(&mut self, f: impl FnMut(&(Millis, K)) -> bool) {
        self.set.retain(f);
        self.refresh();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Millis, K)> {
        self.set.iter()
    }

    fn refresh(&mut self) {
        self.first = self.set.first().map(|&(t, _)| t);
    }
}

/// `(deadline, key)` entries popped in `(deadline, key)` order, like a [`TimerSet`], whose
/// removal is lazy: the owner records each key's live deadline and passes a check
/// (`is_live(at, key)`) to [`LazyTimers::pop_due`] and [`LazyTimers::prune`]. The owner
/// calls `prune` after every change, so the top (and [`LazyTimers::first`]) is a live
/// entry whenever it is read. Several copies of a live entry are harmless: the first pop
/// consumes it, and the owner's record no longer matches the others.
#[derive(Clone, Debug)]
pub(crate) struct LazyTimers<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Millis, K)>>,
    /// The heap's length after the last full sweep: the next one waits until it doubles.
    swept_len: usize,
}

/// No full sweep below this many entries.
const SWEEP_MIN: usize = 4096;

impl<K: Ord + Copy> Default for LazyTimers<K> {
    fn default() -> Self {
        LazyTimers { heap: BinaryHeap::new(), swept_len: 0 }
    }
}

impl<K: Ord + Copy> LazyTimers<K> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn insert(&mut self, at: Millis, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline (live after a `prune`).
    pub(crate) fn first(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Remove and return the earliest live entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Millis, is_live: impl Fn(Millis, K) -> bool) -> Option<(Millis, K)> {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if is_live(at, key) {
                return Some((at, key));
            }
        }
        None
    }

    /// Drop stale entries from the top. When the heap has doubled since the last full
    /// sweep, sweep it (O(n), so amortized O(1) per insert): cancelled entries in the
    /// middle cannot pile up beyond twice the live ones plus [`SWEEP_MIN`].
    pub(crate) fn prune(&mut self, is_live: impl Fn(Millis, K) -> bool) {
        if self.heap.len() > SWEEP_MIN.max(2 * self.swept_len) {
            self.heap.retain(|&Reverse((at, key))| is_live(at, key));
            self.swept_len = self.heap.len();
        }
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if is_live(at, key) {
                break;
            }
            self.heap.pop();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Keys grouped by deadline. Removal is lazy: a round counts its members still due at
/// its time (`live`), the caller remembers each key's deadline and filters a popped
/// round against it, and a round whose count reaches zero is dropped at once, so the
/// cached earliest deadline is always a real one.
#[derive(Clone, Debug)]
pub(crate) struct Rounds<K: Ord + Copy> {
    by_time: BTreeMap<Millis, Round<K>>,
    first: Option<Millis>,
    /// An emptied member list kept for the next round, so steady probing allocates nothing.
    spare: Vec<K>,
}

#[derive(Clone, Debug)]
struct Round<K> {
    members: Vec<K>,
    live: usize,
}

impl<K: Ord + Copy> Default for Rounds<K> {
    fn default() -> Self {
        Rounds { by_time: BTreeMap::new(), first: None, spare: Vec::new() }
    }
}

impl<K: Ord + Copy> Rounds<K> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Add `key` to the round at `at`. The caller must not hold another live entry for it.
    pub(crate) fn insert(&mut self, at: Millis, key: K) {
        let spare = &mut self.spare;
        let r = self.by_time.entry(at).or_insert_with(|| Round { members: std::mem::take(spare), live: 0 });
        r.members.push(key);
        r.live += 1;
        if self.first.is_none_or(|f| at < f) {
            self.first = Some(at);
        }
    }

    /// Withdraw one live member of the round at `at` (the caller knows `key` is in it).
    /// Add several members to the round at `at` with one map lookup.
    pub(crate) fn insert_many(&mut self, at: Millis, keys: &[K]) {
        if keys.is_empty() {
            return;
        }
        let spare = &mut self.spare;
        let r = self.by_time.entry(at).or_insert_with(|| Round { members: std::mem::take(spare), live: 0 });
        r.members.extend_from_slice(keys);
        r.live += keys.len();
        if self.first.is_none_or(|f| at < f) {
            self.first = Some(at);
        }
    }

    pub(crate) fn cancel(&mut self, at: Millis) {
        self.cancel_n(at, 1);
    }

    /// Cancel `n` members of the round at `at`.
    pub(crate) fn cancel_n(&mut self, at: Millis, n: usize) {
        let Some(r) = self.by_time.get_mut(&at) else {
            debug_assert!(false, "cancel of a round that does not exist");
            return;
        };
        debug_assert!(r.live >= n, "cancelled more members than the round holds");
        r.live = r.live.saturating_sub(n);
        if r.live == 0 {
            let r = self.by_time.remove(&at).expect("present");
            self.recycle(r.members);
            if self.first == Some(at) {
                self.first = self.by_time.first_key_value().map(|(&t, _)| t);
            }
        }
    }

    /// The earliest deadline with a live member.
    pub(crate) fn first(&self) -> Option<Millis> {
        self.first
    }

    /// Remove the earliest round if it is due at `now`: its time and every key ever added
    /// to it (sorted, without repeats), for the caller to filter against its own record.
    /// Hand the list back with [`Rounds::recycle`] when done.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, Vec<K>)> {
        if self.first? > now {
            return None;
        }
        let (at, r) = self.by_time.pop_first().expect("first is cached from the map");
        self.first = self.by_time.first_key_value().map(|(&t, _)| t);
        let mut members = r.members;
        members.sort_unstable();
        members.dedup();
        Some((at, members))
    }

    pub(crate) fn recycle(&mut self, mut members: Vec<K>) {
        if members.capacity() > self.spare.capacity() {
            members.clear();
            self.spare = members;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_set_caches_the_earliest_deadline() {
        let mut s: TimerSet<u32> = TimerSet::new();
        assert_eq!(s.first(), None);
        s.insert(Millis(20), 1);
        s.insert(Millis(10), 2);
        s.insert(Millis(30), 3);
        assert_eq!(s.first(), Some(Millis(10)));
        assert!(s.remove(Millis(10), 2));
        assert!(!s.remove(Millis(10), 2));
        assert_eq!(s.first(), Some(Millis(20)));
        assert_eq!(s.pop_due(Millis(19)), None);
        assert_eq!(s.pop_due(Millis(20)), Some((Millis(20), 1)));
        s.retain(|&(_, k)| k != 3);
        assert_eq!(s.first(), None);
    }

    #[test]
    fn lazy_timers_pop_live_entries_in_order_and_keep_a_live_top() {
        use std::collections::BTreeMap;
        // The owner's record: key -> live deadline.
        let mut live: BTreeMap<u32, u64> = BTreeMap::new();
        let mut t: LazyTimers<u32> = LazyTimers::new();
        for (at, k) in [(30, 1), (10, 2), (10, 0), (20, 3)] {
            live.insert(k, at);
            t.insert(Millis(at), k);
        }
        // Cancel 0 and 2 (the two earliest): after a prune the top is live.
        live.remove(&0);
        live.remove(&2);
        t.prune(|at, k| live.get(&k) == Some(&at.0));
        assert_eq!(t.first(), Some(Millis(20)));
        // Re-arm 2 at the same deadline: a second copy, popped once.
        live.insert(2, 10);
        t.insert(Millis(10), 2);
        let mut popped = Vec::new();
        while let Some((at, k)) = t.pop_due(Millis(25), |at, k| live.get(&k) == Some(&at.0)) {
            live.remove(&k);
            popped.push((at.0, k));
        }
        assert_eq!(popped, vec![(10, 2), (20, 3)]);
        t.prune(|at, k| live.get(&k) == Some(&at.0));
        assert_eq!(t.first(), Some(Millis(30)));
        // Cancelled entries in the middle stay until the heap has doubled, then go.
        for k in 100..100 + SWEEP_MIN as u32 {
            live.insert(k, 40);
            t.insert(Millis(40), k);
            live.remove(&k);
        }
        assert_eq!(t.len(), 1 + SWEEP_MIN);
        t.prune(|at, k| live.get(&k) == Some(&at.0));
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(Millis(100), |at, k| live.get(&k) == Some(&at.0)), Some((Millis(30), 1)));
        assert_eq!(t.first(), None);
    }

    #[test]
    fn rounds_group_keys_and_drop_emptied_rounds() {
        let mut r: Rounds<u32> = Rounds::new();
        r.insert(Millis(60), 3);
        r.insert(Millis(60), 1);
        r.insert(Millis(65), 2);
        assert_eq!(r.first(), Some(Millis(60)));
        // Withdraw 1 and 3: the 60 round is gone, the next is exact.
        r.cancel(Millis(60));
        r.cancel(Millis(60));
        assert_eq!(r.first(), Some(Millis(65)));
        r.insert(Millis(60), 1);
        r.insert(Millis(60), 1);
        r.cancel(Millis(60));
        assert_eq!(r.first(), Some(Millis(60)));
        assert_eq!(r.pop_due(Millis(59)), None);
        let (at, members) = r.pop_due(Millis(70)).unwrap();
        assert_eq!((at, members.clone()), (Millis(60), vec![1]));
        r.recycle(members);
        assert_eq!(r.pop_due(Millis(70)).map(|(t, m)| (t, m)), Some((Millis(65), vec![2])));
        assert_eq!(r.first(), None);
    }
}
