//! A map from `ServerId` that is a slab indexed through a plain vector for small ids
//! and an ordered map for the rest. Drivers hand out dense ids (the simulator interns
//! trace names, the live driver numbers servers as it learns them), so lookups are an
//! index, not a tree walk; any id still works. The index costs 4 bytes per id ever
//! seen; the values themselves sit in a slab as large as the most entries present at
//! once (holes are reused), so a month of servers that came and went does not keep a
//! slot of a server's size each.
//! Iteration is in ascending id order (every dense id is below every sparse one), so it
//! is as deterministic as the `BTreeMap` it replaces.

use crate::model::ServerId;
use std::collections::BTreeMap;
use std::ops::Index;

/// Ids below this are stored by index. 2^22 index entries bound the vector's growth; a
/// driver with more servers than that falls back to the tree.
const DENSE_MAX: u64 = 1 << 22;

#[derive(Clone, Debug)]
pub(crate) struct IdMap<V> {
    /// For each dense id, its position in `slab` plus one; 0 when absent.
    index: Vec<u32>,
    /// The dense entries in no particular order; a removed entry leaves a hole that the
    /// next insertion fills (nothing moves, so a removal touches only its own entry).
    slab: Vec<Option<V>>,
    /// Holes in `slab`.
    free: Vec<u32>,
    sparse: BTreeMap<ServerId, V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { index: Vec::new(), slab: Vec::new(), free: Vec::new(), sparse: BTreeMap::new() }
    }
}

impl<V> IdMap<V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len() - self.free.len() + self.sparse.len()
    }

    /// The slab position of a dense id, if present.
    fn pos(&self, id: u64) -> Option<usize> {
        match self.index.get(id as usize) {
            Some(&p) if p > 0 => Some(p as usize - 1),
            _ => None,
        }
    }

    pub(crate) fn get(&self, id: &ServerId) -> Option<&V> {
        if id.0 < DENSE_MAX {
            self.pos(id.0).and_then(|p| self.slab[p].as_ref())
        } else {
            self.sparse.get(id)
        }
    }

    pub(crate) fn get_mut(&mut self, id: &ServerId) -> Option<&mut V> {
        if id.0 < DENSE_MAX {
            self.pos(id.0).and_then(|p| self.slab[p].as_mut())
        } else {
            self.sparse.get_mut(id)
        }
    }

    pub(crate) fn contains_key(&self, id: &ServerId) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn insert(&mut self, id: ServerId, v: V) -> Option<V> {
        if id.0 >= DENSE_MAX {
            return self.sparse.insert(id, v);
        }
        if let Some(p) = self.pos(id.0) {
            return self.slab[p].replace(v);
        }
        let i = id.0 as usize;
        if self.index.len() <= i {
            self.index.resize(i + 1, 0);
        }
        // At most DENSE_MAX entries, so a position fits.
        let p = match self.free.pop() {
            Some(p) => {
                self.slab[p as usize] = Some(v);
                p as usize
            }
            None => {
                self.slab.push(Some(v));
                self.slab.len() - 1
            }
        };
        self.index[i] = p as u32 + 1;
        None
    }

    pub(crate) fn remove(&mut self, id: &ServerId) -> Option<V> {
        if id.0 >= DENSE_MAX {
            return self.sparse.remove(id);
        }
        let p = self.pos(id.0)?;
        self.index[id.0 as usize] = 0;
        self.free.push(p as u32);
        self.slab[p].take()
    }

    /// The value for `id`, inserted by `f` if absent.
    pub(crate) fn get_or_insert_with(&mut self, id: ServerId, f: impl FnOnce() -> V) -> &mut V {
        if !self.contains_key(&id) {
            self.insert(id, f());
        }
        self.get_mut(&id).expect("just inserted")
    }

    /// In ascending id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ServerId, &V)> + '_ {
        let dense = self
            .index
            .iter()
            .enumerate()
            .filter(|&(_, &p)| p > 0)
            .filter_map(|(i, &p)| Some((ServerId(i as u64), self.slab[p as usize - 1].as_ref()?)));
        dense.chain(self.sparse.iter().map(|(&id, v)| (id, v)))
    }
}

/// A set of `ServerId`s: one bit per dense id, an ordered set for the rest. For sets that
/// grow with customers (the archived worlds), an id costs a bit, not a slab entry.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdSet {
    bits: Vec<u64>,
    sparse: std::collections::BTreeSet<ServerId>,
}

impl IdSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn contains(&self, id: &ServerId) -> bool {
        if id.0 < DENSE_MAX {
            self.bits.get((id.0 / 64) as usize).is_some_and(|w| w >> (id.0 % 64) & 1 == 1)
        } else {
            self.sparse.contains(id)
        }
    }

    /// Add `id`; false if it was there.
    pub(crate) fn insert(&mut self, id: ServerId) -> bool {
        if id.0 >= DENSE_MAX {
            return self.sparse.insert(id);
        }
        let w = (id.0 / 64) as usize;
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        let was = self.bits[w] >> (id.0 % 64) & 1 == 1;
        self.bits[w] |= 1 << (id.0 % 64);
        !was
    }

    /// Remove `id`; false if it was not there.
    pub(crate) fn remove(&mut self, id: &ServerId) -> bool {
        if id.0 >= DENSE_MAX {
            return self.sparse.remove(id);
        }
        let was = self.contains(id);
        if was {
            self.bits[(id.0 / 64) as usize] &= !(1 << (id.0 % 64));
        }
        was
    }

    /// In ascending id order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = ServerId> + '_ {
        let dense = self.bits.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64u64).filter(move |b| bits >> b & 1 == 1).map(move |b| ServerId(w as u64 * 64 + b))
        });
        dense.chain(self.sparse.iter().copied())
    }
}

impl<V> Index<&ServerId> for IdMap<V> {
    type Output = V;

    fn index(&self, id: &ServerId) -> &V {
        self.get(id).expect("no entry for this server id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_ids_behave_like_one_ordered_map() {
        let mut m = IdMap::new();
        let mut reference = BTreeMap::new();
        for (i, id) in [5u64, 1, DENSE_MAX + 7, 0, DENSE_MAX, 5, 3, u64::MAX].into_iter().enumerate() {
            assert_eq!(m.insert(ServerId(id), i), reference.insert(ServerId(id), i));
        }
        assert_eq!(m.remove(&ServerId(3)), reference.remove(&ServerId(3)));
        assert_eq!(m.remove(&ServerId(DENSE_MAX)), reference.remove(&ServerId(DENSE_MAX)));
        assert_eq!(m.remove(&ServerId(4)), None);
        *m.get_or_insert_with(ServerId(9), || 90) += 1;
        *reference.entry(ServerId(9)).or_insert(90) += 1;
        assert_eq!(m.len(), reference.len());
        let got: Vec<(ServerId, usize)> = m.iter().map(|(id, &v)| (id, v)).collect();
        let want: Vec<(ServerId, usize)> = reference.iter().map(|(&id, &v)| (id, v)).collect();
        assert_eq!(got, want);
        assert_eq!(m[&ServerId(u64::MAX)], 7);
        assert!(m.get(&ServerId(1 << 40)).is_none());
    }

    #[test]
    fn id_set_behaves_like_an_ordered_set() {
        let (mut s, mut r) = (IdSet::new(), std::collections::BTreeSet::new());
        let mut x: u64 = 9;
        for step in 0..10_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let id = ServerId(if (x >> 60) == 0 { DENSE_MAX + (x >> 40) % 5 } else { (x >> 33) % 700 });
            if (x >> 20) % 3 == 0 {
                assert_eq!(s.remove(&id), r.remove(&id), "step {step}");
            } else {
                assert_eq!(s.insert(id), r.insert(id), "step {step}");
            }
            assert_eq!(s.contains(&id), r.contains(&id));
        }
        assert!(s.iter().eq(r.iter().copied()));
    }

    #[test]
    fn removals_and_reused_holes_keep_every_id_findable() {
        // Inserts and removals in a fixed pseudo-random order (an LCG): removals leave
        // holes in the slab that later insertions fill. The slab never outgrows the most
        // entries present at once.
        let (mut m, mut reference) = (IdMap::new(), BTreeMap::new());
        let mut x: u64 = 7;
        let mut peak = 0;
        for step in 0..20_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let id = ServerId((x >> 33) % 500);
            if (x >> 20) % 3 == 0 {
                assert_eq!(m.remove(&id), reference.remove(&id), "step {step}");
            } else {
                assert_eq!(m.insert(id, step), reference.insert(id, step), "step {step}");
            }
            assert_eq!(m.len(), reference.len());
            peak = peak.max(reference.len());
            assert!(m.slab.len() <= peak, "step {step}: slab {} for at most {peak} entries", m.slab.len());
        }
        for id in 0..500 {
            assert_eq!(m.get(&ServerId(id)), reference.get(&ServerId(id)), "id {id}");
        }
        let got: Vec<(ServerId, u64)> = m.iter().map(|(id, &v)| (id, v)).collect();
        let want: Vec<(ServerId, u64)> = reference.iter().map(|(&id, &v)| (id, v)).collect();
        assert_eq!(got, want);
    }
}
