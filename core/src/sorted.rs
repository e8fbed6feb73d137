//! A small ordered set kept as a sorted vector: the placement index's per-kind sets hold
//! one entry per node (tens to a few hundred), and every booking moves one entry a short
//! way; the engine's per-node booking index holds the servers of one node. A move is a
//! binary search and a walk over the entries between the old and the new place, not a
//! tree removal and insertion.

#[derive(Clone, Debug)]
pub(crate) struct SortedSet<T: Ord + Copy> {
    v: Vec<T>,
}

impl<T: Ord + Copy> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet { v: Vec::new() }
    }
}

impl<T: Ord + Copy> SortedSet<T> {
    /// Add `x`; false if it was there.
    pub(crate) fn insert(&mut self, x: T) -> bool {
        match self.v.binary_search(&x) {
            Ok(_) => false,
            Err(i) => {
                self.v.insert(i, x);
                true
            }
        }
    }

    /// Remove `x`; false if it was not there.
    pub(crate) fn remove(&mut self, x: &T) -> bool {
        match self.v.binary_search(x) {
            Ok(i) => {
                self.v.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Replace `old` (which must be present) with `new` (which must not be), moving
    /// only the entries between their places: one binary search for `old`, then an
    /// insertion-sort walk (a booking moves an entry a few places, so the walk is shorter
    /// than a second search and a rotation).
    pub(crate) fn replace(&mut self, old: T, new: T) {
        let mut i = self.v.binary_search(&old).expect("replacing an entry that is in the set");
        if new > old {
            while i + 1 < self.v.len() && self.v[i + 1] < new {
                self.v[i] = self.v[i + 1];
                i += 1;
            }
        } else {
            while i > 0 && self.v[i - 1] > new {
                self.v[i] = self.v[i - 1];
                i -= 1;
            }
        }
        self.v[i] = new;
    }

    pub(crate) fn last(&self) -> Option<&T> {
        self.v.last()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.v.len()
    }

    pub(crate) fn contains(&self, x: &T) -> bool {
        self.v.binary_search(x).is_ok()
    }

    /// In order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.v.iter()
    }

    /// The entries at or above `lo`, in order.
    pub(crate) fn range_from(&self, lo: T) -> std::slice::Iter<'_, T> {
        self.v[self.v.partition_point(|x| *x < lo)..].iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn behaves_like_a_btree_set() {
        let (mut s, mut r) = (SortedSet::default(), BTreeSet::new());
        let mut x: u64 = 5;
        for step in 0..20_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let a = (x >> 40) % 300;
            match (x >> 20) % 4 {
                0 => assert_eq!(s.insert(a), r.insert(a), "step {step}"),
                1 => assert_eq!(s.remove(&a), r.remove(&a), "step {step}"),
                _ => {
                    // Move a present entry to an absent place, either way.
                    let old = r.iter().nth(((x >> 10) % 17) as usize).copied();
                    if let Some(old) = old.filter(|_| !r.contains(&a)) {
                        s.replace(old, a);
                        r.remove(&old);
                        r.insert(a);
                    }
                }
            }
            assert_eq!(s.last(), r.last(), "step {step}");
            if step % 250 == 0 {
                assert!(s.iter().eq(r.iter()), "step {step}");
                assert!(s.range_from(a).eq(r.range(a..)), "step {step}");
            }
        }
        assert!(s.iter().eq(r.iter()));
        assert_eq!(s.is_empty(), r.is_empty());
    }
}
