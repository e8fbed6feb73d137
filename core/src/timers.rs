//! Timer containers for the engine. Both keep their earliest deadline in a field, so
//! [`crate::Conductor::poll_timeout`] is a handful of loads, not a walk down a dozen
//! B-trees per call.
//!
//! - [`TimerSet`]: `(deadline, key)` pairs in order, for timers with one entry per key
//!   (servers, nodes) and spread-out deadlines.
//! - [`Rounds`]: keys grouped by deadline, for timers where many keys share the same
//!   moment (health probes: a fleet registered together is probed in lockstep, so one
//!   round per interval holds every node and costs one map entry, not one per node).

use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

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
