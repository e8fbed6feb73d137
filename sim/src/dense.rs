//! A map from a dense id to a value: a vector indexed by the id. The simulator's ids are
//! dense by construction (the trace interner numbers servers from 0, the engine numbers
//! nodes from 0), so a lookup per event is an index, not a hash or a tree walk.
//! Iteration is in id order, as with the ordered maps this replaces.

use conductor_core::{NodeId, ServerId};
use std::marker::PhantomData;

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
    slots: Vec<Option<V>>,
    _key: PhantomData<K>,
}

impl<K, V> Default for Dense<K, V> {
    fn default() -> Self {
        Dense { slots: Vec::new(), _key: PhantomData }
    }
}

impl<K: DenseKey, V> Dense<K, V> {
    pub fn get(&self, k: &K) -> Option<&V> {
        self.slots.get(k.index()).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.slots.get_mut(k.index()).and_then(Option::as_mut)
    }

    fn slot(&mut self, k: K) -> &mut Option<V> {
        let i = k.index();
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        &mut self.slots[i]
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.slot(k).replace(v)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.slots.get_mut(k.index()).and_then(Option::take)
    }

    /// The value for `k`, a default one inserted if absent.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        self.slot(k).get_or_insert_with(V::default)
    }

    /// In id order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(Option::as_ref)
    }

    /// In id order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.slots.iter().enumerate().filter_map(|(i, v)| v.as_ref().map(|v| (K::from_index(i), v)))
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
}
