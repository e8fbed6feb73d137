//! A map from `ServerId` that is a plain vector for small ids and an ordered map for
//! the rest. Drivers hand out dense ids (the simulator interns trace names, the live
//! driver numbers servers as it learns them), so lookups are an index, not a tree
//! walk; any id still works. Iteration is in ascending id order (every dense id is
//! below every sparse one), so it is as deterministic as the `BTreeMap` it replaces.

use crate::model::ServerId;
use std::collections::BTreeMap;
use std::ops::Index;

/// Ids below this are stored by index. 2^22 slots of `Option<V>` bound the vector's
/// growth; a driver with more servers than that falls back to the tree.
const DENSE_MAX: u64 = 1 << 22;

#[derive(Clone, Debug)]
pub(crate) struct IdMap<V> {
    dense: Vec<Option<V>>,
    sparse: BTreeMap<ServerId, V>,
    len: usize,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { dense: Vec::new(), sparse: BTreeMap::new(), len: 0 }
    }
}

impl<V> IdMap<V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, id: &ServerId) -> Option<&V> {
        if id.0 < DENSE_MAX {
            self.dense.get(id.0 as usize).and_then(Option::as_ref)
        } else {
            self.sparse.get(id)
        }
    }

    pub(crate) fn get_mut(&mut self, id: &ServerId) -> Option<&mut V> {
        if id.0 < DENSE_MAX {
            self.dense.get_mut(id.0 as usize).and_then(Option::as_mut)
        } else {
            self.sparse.get_mut(id)
        }
    }

    pub(crate) fn contains_key(&self, id: &ServerId) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn insert(&mut self, id: ServerId, v: V) -> Option<V> {
        let old = if id.0 < DENSE_MAX {
            let i = id.0 as usize;
            if self.dense.len() <= i {
                self.dense.resize_with(i + 1, || None);
            }
            self.dense[i].replace(v)
        } else {
            self.sparse.insert(id, v)
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub(crate) fn remove(&mut self, id: &ServerId) -> Option<V> {
        let old = if id.0 < DENSE_MAX {
            self.dense.get_mut(id.0 as usize).and_then(Option::take)
        } else {
            self.sparse.remove(id)
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
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
        let dense = self.dense.iter().enumerate().filter_map(|(i, v)| v.as_ref().map(|v| (ServerId(i as u64), v)));
        dense.chain(self.sparse.iter().map(|(&id, v)| (id, v)))
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
}
