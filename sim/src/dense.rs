//! A map from a dense id to a value: a vector indexed by the id pointing into a packed
//! slab of the values present. The simulator's ids are dense by construction (the trace
//! interner numbers servers from 0, the engine numbers nodes from 0), so a lookup per
//! event is an index, not a hash or a tree walk; an id ever seen costs 4 bytes, a value
//! only while it is present. Iteration is in id order, as with the ordered maps this
//! replaces.

use conductor_core::{NodeId, ServerId};

pub trait DenseKey: Copy {
    fn index(self) -> usize;
    fn from_index(i: usize) -> Self;
}

impl DenseKey for ServerId {
    /// The simulator numbers servers from 0 as it meets them; an id beyond 2^32 is not
    /// one of those and would ask for a vector of that size.
    fn index(self) -> usize {
        assert!(self.0 < 1 << 32, "server id {} is not a dense (interned) id", self.0);
        self.0 as usize
    }
    fn from_index(i: usize) -> Self {
        ServerId(i as u64)
    }
}

impl DenseKey for NodeId {
    fn index(self) -> usize {
        self.0 as usize
    }
    fn from_index(i: usize) -> Self {
        NodeId(u32::try_from(i).expect("node ids are u32"))
    }
}

pub struct Dense<K, V> {
    /// For each id, its position in `slab` plus one; 0 when absent.
    index: Vec<u32>,
    /// The values present with their ids, in no particular order (removal swaps the
    /// last one in).
    slab: Vec<(K, V)>,
}

impl<K, V> Default for Dense<K, V> {
    fn default() -> Self {
        Dense { index: Vec::new(), slab: Vec::new() }
    }
}

impl<K: DenseKey, V> Dense<K, V> {
    fn pos(&self, k: K) -> Option<usize> {
        match self.index.get(k.index()) {
            Some(&p) if p > 0 => Some(p as usize - 1),
            _ => None,
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.pos(*k).map(|p| &self.slab[p].1)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.pos(*k).map(|p| &mut self.slab[p].1)
    }

    /// The slab position for `k`, with `f`'s value pushed if absent.
    fn pos_or_insert_with(&mut self, k: K, f: impl FnOnce() -> V) -> usize {
        if let Some(p) = self.pos(k) {
            return p;
        }
        let i = k.index();
        if self.index.len() <= i {
            self.index.resize(i + 1, 0);
        }
        self.slab.push((k, f()));
        self.index[i] = u32::try_from(self.slab.len()).expect("fewer than 2^32 entries");
        self.slab.len() - 1
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.pos(k) {
            Some(p) => Some(std::mem::replace(&mut self.slab[p].1, v)),
            None => {
                self.pos_or_insert_with(k, || v);
                None
            }
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let p = self.pos(*k)?;
        self.index[k.index()] = 0;
        let (_, v) = self.slab.swap_remove(p);
        if let Some(&(moved, _)) = self.slab.get(p) {
            self.index[moved.index()] = p as u32 + 1;
        }
        Some(v)
    }

    /// The value for `k`, a default one inserted if absent.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        let p = self.pos_or_insert_with(k, V::default);
        &mut self.slab[p].1
    }

    /// In id order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// In id order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.index
            .iter()
            .enumerate()
            .filter(|&(_, &p)| p > 0)
            .map(|(i, &p)| (K::from_index(i), &self.slab[p as usize - 1].1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut d: Dense<ServerId, u32> = Dense::default();
        let mut r = BTreeMap::new();
        for (i, id) in [5u64, 1, 9, 0, 5, 3].into_iter().enumerate() {
            assert_eq!(d.insert(ServerId(id), i as u32), r.insert(ServerId(id), i as u32));
        }
        assert_eq!(d.remove(&ServerId(3)), r.remove(&ServerId(3)));
        assert_eq!(d.remove(&ServerId(42)), None);
        *d.entry_or_default(ServerId(12)) += 7;
        *r.entry(ServerId(12)).or_default() += 7;
        assert_eq!(d.get(&ServerId(9)), r.get(&ServerId(9)));
        assert_eq!(d.get(&ServerId(100)), None);
        assert_eq!(d.values().copied().collect::<Vec<_>>(), r.values().copied().collect::<Vec<_>>());
        assert_eq!(d.iter().map(|(k, &v)| (k, v)).collect::<Vec<_>>(), r.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn removals_that_move_slab_entries_keep_every_id_findable() {
        let (mut d, mut r) = (Dense::<ServerId, u64>::default(), BTreeMap::new());
        let mut x: u64 = 11;
        for step in 0..20_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let id = ServerId((x >> 33) % 300);
            match (x >> 20) % 4 {
                0 => assert_eq!(d.remove(&id), r.remove(&id), "step {step}"),
                1 => {
                    *d.entry_or_default(id) += step;
                    *r.entry(id).or_default() += step;
                }
                _ => assert_eq!(d.insert(id, step), r.insert(id, step), "step {step}"),
            }
        }
        for id in 0..300 {
            assert_eq!(d.get(&ServerId(id)), r.get(&ServerId(id)), "id {id}");
        }
        assert_eq!(d.iter().map(|(k, &v)| (k, v)).collect::<Vec<_>>(), r.into_iter().collect::<Vec<_>>());
    }
}
