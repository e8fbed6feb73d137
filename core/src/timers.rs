//! Timer containers for the engine. Both keep their earliest deadline in a field, so
//! [`crate::Conductor::poll_timeout`] is a handful of loads, not a walk down a dozen
//! B-trees per call.
//!
//! - [`TimerSet`]: `(deadline, key)` pairs in order, for timers with one entry per key
//!   (servers, nodes) and spread-out deadlines.
//! - [`FifoTimers`]: the same for timers whose deadlines mostly arrive in order (one
//!   long constant delay, e.g. archiving a world two days after its server stopped):
//!   inserting in order and cancelling are O(1), however many are pending.
//! - [`Rounds`]: keys grouped by deadline, for timers where many keys share the same
//!   moment (health probes: a fleet registered together is probed in lockstep, so one
//!   round per interval holds every node and costs one map entry, not one per node).

use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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

    fn refresh(&mut self) {
        self.first = self.set.first().map(|&(t, _)| t);
    }
}

/// Where a [`FifoTimers`] entry is: its deadline, and its absolute position in the
/// deque, or (with [`Ticket::SIDE`] set) its unique number in the side tree. The caller
/// keeps it to cancel the entry; a ticket names one insertion, so a stale one never
/// cancels a later entry with the same deadline and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    at: Millis,
    slot: u64,
}

impl Ticket {
    const SIDE: u64 = 1 << 63;

    #[cfg(test)]
    pub(crate) fn at(&self) -> Millis {
        self.at
    }
}

/// `(deadline, key)` pairs popped in `(deadline, key)` order, like [`TimerSet`], built
/// for deadlines that mostly arrive in order: an entry that sorts after every other
/// goes to the back of a deque (O(1)); the rest go to a small B-tree beside it.
/// Cancelling a deque entry marks it dead through its [`Ticket`] (O(1)), and dead
/// entries leave when they reach the front, so the front is always live and the
/// earliest deadline is always a real one.
#[derive(Clone, Debug)]
pub(crate) struct FifoTimers<K: Ord + Copy> {
    /// In `(deadline, key)` order; `false` marks a cancelled entry.
    queue: VecDeque<(Millis, K, bool)>,
    /// The absolute position of `queue[0]`.
    base: u64,
    /// `(deadline, key, insertion number)`.
    side: BTreeSet<(Millis, K, u64)>,
    side_next: u64,
    first: Option<Millis>,
}

impl<K: Ord + Copy> Default for FifoTimers<K> {
    fn default() -> Self {
        FifoTimers { queue: VecDeque::new(), base: 0, side: BTreeSet::new(), side_next: 0, first: None }
    }
}

impl<K: Ord + Copy> FifoTimers<K> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn insert(&mut self, at: Millis, key: K) -> Ticket {
        if self.first.is_none_or(|f| at < f) {
            self.first = Some(at);
        }
        if self.queue.back().is_none_or(|&(t, k, _)| (t, k) <= (at, key)) {
            self.queue.push_back((at, key, true));
            Ticket { at, slot: self.base + self.queue.len() as u64 - 1 }
        } else {
            let n = self.side_next;
            self.side_next += 1;
            self.side.insert((at, key, n));
            Ticket { at, slot: Ticket::SIDE | n }
        }
    }

    /// Cancel the entry `ticket` names for `key`; false if it is not pending.
    pub(crate) fn remove(&mut self, ticket: Ticket, key: K) -> bool {
        let removed = if ticket.slot & Ticket::SIDE != 0 {
            self.side.remove(&(ticket.at, key, ticket.slot & !Ticket::SIDE))
        } else {
            match ticket.slot.checked_sub(self.base).and_then(|i| self.queue.get_mut(i as usize)) {
                Some(e) if e.2 && (e.0, e.1) == (ticket.at, key) => {
                    e.2 = false;
                    self.drop_dead_front();
                    true
                }
                _ => false,
            }
        };
        if removed && self.first == Some(ticket.at) {
            self.refresh();
        }
        removed
    }

    pub(crate) fn first(&self) -> Option<Millis> {
        self.first
    }

    /// Remove and return the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, K)> {
        if self.first? > now {
            return None;
        }
        let front = self.queue.front().map(|&(t, k, _)| (t, k));
        let side = self.side.first().map(|&(t, k, _)| (t, k));
        let e = match (front, side) {
            (Some(q), Some(s)) if s < q => self.side.pop_first().map(|(t, k, _)| (t, k)),
            (Some(_), _) => {
                let (t, k, _) = self.queue.pop_front().expect("front exists");
                self.base += 1;
                self.drop_dead_front();
                Some((t, k))
            }
            (None, _) => self.side.pop_first().map(|(t, k, _)| (t, k)),
        };
        self.refresh();
        e
    }

    /// The pending keys, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.queue.iter().filter(|e| e.2).map(|e| e.1).chain(self.side.iter().map(|e| e.1))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.iter().filter(|e| e.2).count() + self.side.len()
    }

    fn drop_dead_front(&mut self) {
        while self.queue.front().is_some_and(|e| !e.2) {
            self.queue.pop_front();
            self.base += 1;
        }
    }

    fn refresh(&mut self) {
        let q = self.queue.front().map(|e| e.0);
        let s = self.side.first().map(|e| e.0);
        self.first = match (q, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
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

    /// Random inserts (mostly in order, as a long constant delay gives), cancels and pops
    /// against a `BTreeSet`: the same entries come out in the same order.
    #[test]
    fn fifo_timers_pop_what_a_btree_would() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..50 {
            let mut f: FifoTimers<u32> = FifoTimers::new();
            let mut model: BTreeSet<(Millis, u32)> = BTreeSet::new();
            let mut tickets: BTreeMap<u32, Ticket> = BTreeMap::new();
            let mut now = 0u64;
            for _ in 0..2000 {
                let key = rnd(64) as u32;
                match rnd(10) {
                    0..=4 => {
                        if tickets.contains_key(&key) {
                            continue;
                        }
                        // Most at a long constant delay, some due at once, some in between.
                        let at = Millis(now + [1000, 1000, 1000, 0, rnd(1000)][rnd(5) as usize]);
                        tickets.insert(key, f.insert(at, key));
                        model.insert((at, key));
                    }
                    5..=6 => {
                        if let Some(t) = tickets.remove(&key) {
                            assert!(f.remove(t, key));
                            assert!(model.remove(&(t.at(), key)));
                            assert!(!f.remove(t, key), "a cancelled entry is gone");
                        }
                    }
                    _ => {
                        now += rnd(50);
                        loop {
                            let want = model.first().copied().filter(|&(t, _)| t.0 <= now);
                            let got = f.pop_due(Millis(now));
                            assert_eq!(got, want);
                            let Some(e) = got else { break };
                            model.remove(&e);
                            tickets.remove(&e.1);
                        }
                    }
                }
                assert_eq!(f.first(), model.first().map(|e| e.0));
                assert_eq!(f.len(), model.len());
            }
        }
    }

    /// A ticket names one insertion: once its entry is popped or cancelled, it cancels
    /// nothing, not even a later entry with the same deadline and key (deque or side).
    #[test]
    fn a_stale_ticket_never_cancels_a_later_entry() {
        let mut f: FifoTimers<u32> = FifoTimers::new();
        f.insert(Millis(500), 9); // the deque's back: what follows goes to the side tree
        let side = f.insert(Millis(100), 1);
        assert_eq!(f.pop_due(Millis(100)), Some((Millis(100), 1)));
        let again = f.insert(Millis(100), 1);
        assert!(!f.remove(side, 1), "popped: stale");
        assert_eq!(f.first(), Some(Millis(100)));
        assert!(f.remove(again, 1));
        assert!(!f.remove(again, 1), "cancelled: stale");
        let later = f.insert(Millis(100), 1);
        assert!(!f.remove(again, 1));
        assert_eq!(f.pop_due(Millis(100)), Some((Millis(100), 1)));
        assert!(!f.remove(later, 1));
        // The deque: a popped slot's ticket stays stale when the same deadline and key return.
        let back = f.insert(Millis(600), 2);
        assert_eq!(f.pop_due(Millis(500)), Some((Millis(500), 9)));
        assert_eq!(f.pop_due(Millis(600)), Some((Millis(600), 2)));
        let back_again = f.insert(Millis(600), 2);
        assert!(!f.remove(back, 2));
        assert_eq!(f.first(), Some(Millis(600)));
        assert!(f.remove(back_again, 2));
        assert_eq!(f.first(), None);
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
