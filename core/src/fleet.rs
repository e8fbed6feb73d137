//! The node registry and its placement index.
//!
//! Placement must not scan and sort every node per request, so the fleet keeps, per
//! node kind (dedicated, cloud), ordered sets over the *placeable* nodes (healthy,
//! active, non-system): by available RAM always (best fit's range query, and the
//! largest free block), and by utilization only when the configured strategy is
//! `Spread` (an index nobody reads would cost two B-tree updates per start and stop).
//! Every change to a node that could move it in those sets goes through a method here
//! that re-indexes it.
//!
//! - `Spread` (the design's default): dedicated before cloud; within a kind, walk the
//!   nodes by ascending utilization (ties by node id) and take the first that fits. A
//!   kind whose largest available RAM is too small is skipped in O(log n), so the walk
//!   only passes nodes that are less utilized *and* too small for this server, which
//!   takes a fleet of mixed sizes; in a fleet of one size the first node fits or none does.
//! - `BestFit`: dedicated before cloud; the node with the least available RAM that
//!   still fits (a range query), ties by node id.

use crate::config::{PlacementStrategy, ReserveConfig};
use crate::model::{NodeId, NodeKind};
use crate::node::{Node, NodeSpec};
use crate::time::Millis;
use std::collections::BTreeSet;

pub struct Fleet {
    /// By id; ids are never reused, so over a month of rented VMs most slots are empty.
    nodes: Vec<Option<Node>>,
    /// The registered ids, ascending: iteration skips the empty slots.
    live: Vec<NodeId>,
    /// The sum of every node's allocation.
    allocated_mb: u64,
    keys: Vec<Option<IndexKey>>,
    index: [KindIndex; 2],
    reserve: ReserveConfig,
    strategy: PlacementStrategy,
}

#[derive(Default)]
struct KindIndex {
    /// Empty unless the strategy is `Spread`.
    by_util: BTreeSet<(u64, NodeId)>,
    by_avail: BTreeSet<(u64, NodeId)>,
    /// Sums over the indexed nodes, for [`Fleet::owned_free_below`].
    avail_sum: u64,
    usable_sum: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct IndexKey {
    slot: usize,
    util_ppm: u64,
    avail_mb: u64,
    usable_mb: u64,
}

fn slot(kind: NodeKind) -> usize {
    match kind {
        NodeKind::Dedicated => 0,
        NodeKind::Cloud => 1,
    }
}

impl Fleet {
    pub fn new(reserve: ReserveConfig, strategy: PlacementStrategy) -> Fleet {
        Fleet {
            nodes: Vec::new(),
            live: Vec::new(),
            allocated_mb: 0,
            keys: Vec::new(),
            index: Default::default(),
            reserve,
            strategy,
        }
    }

    /// The strategy [`Fleet::place`] uses (the configuration's `placement.strategy`).
    pub fn strategy(&self) -> PlacementStrategy {
        self.strategy
    }

    pub fn reserve(&self) -> &ReserveConfig {
        &self.reserve
    }

    pub fn register(&mut self, spec: NodeSpec, now: Millis) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 node registrations"));
        self.nodes.push(Some(Node::new(id, spec, now)));
        self.live.push(id);
        self.keys.push(None);
        self.reindex(id);
        id
    }

    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Nodes in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.live.iter().map(|&id| self.node(id))
    }

    /// RAM booked over all nodes (the sum of their allocations), O(1).
    pub fn allocated_mb(&self) -> u64 {
        self.allocated_mb
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Change a node's health, lifecycle or metadata, then re-index it. The closure must
    /// not touch the bookkeeping fields (they have their own methods).
    pub fn update<T>(&mut self, id: NodeId, f: impl FnOnce(&mut Node) -> T) -> Option<T> {
        let node = self.nodes.get_mut(id.0 as usize)?.as_mut()?;
        let (alloc, count, worlds) = (node.allocated_mb, node.containers, node.worlds);
        let out = f(node);
        debug_assert!(
            (alloc, count, worlds) == (node.allocated_mb, node.containers, node.worlds),
            "Fleet::update must not write bookkeeping"
        );
        self.reindex(id);
        Some(out)
    }

    /// Record a probe answer (or timeout). Not an index key, so no re-index: this runs
    /// for every node every `health.interval_s`.
    pub(crate) fn set_last_probe_at(&mut self, id: NodeId, at: Millis) {
        if let Some(n) = self.nodes.get_mut(id.0 as usize).and_then(Option::as_mut) {
            n.last_probe_at = Some(at);
        }
    }

    /// Book `ram_mb` on the node for one server. The engine's server records are the
    /// only caller, through one helper, so a node's allocation is the sum of its servers.
    pub(crate) fn bind(&mut self, id: NodeId, ram_mb: u32) {
        let node = self.node_mut(id);
        node.allocated_mb += u64::from(ram_mb);
        node.containers += 1;
        self.allocated_mb += u64::from(ram_mb);
        self.reindex(id);
    }

    pub(crate) fn unbind(&mut self, id: NodeId, ram_mb: u32, now: Millis) {
        let node = self.node_mut(id);
        assert!(node.allocated_mb >= u64::from(ram_mb) && node.containers > 0, "unbind below zero on {id}");
        node.allocated_mb -= u64::from(ram_mb);
        node.containers -= 1;
        if node.is_empty() {
            node.empty_since = now;
        }
        self.allocated_mb -= u64::from(ram_mb);
        self.reindex(id);
    }

    pub(crate) fn add_world(&mut self, id: NodeId) {
        self.node_mut(id).worlds += 1;
    }

    pub(crate) fn remove_world(&mut self, id: NodeId, now: Millis) {
        let node = self.node_mut(id);
        assert!(node.worlds > 0, "world count below zero on {id}");
        node.worlds -= 1;
        if node.is_empty() {
            node.empty_since = now;
        }
    }

    /// Remove a node for good. Panics if it still holds anything: callers check first.
    pub(crate) fn remove(&mut self, id: NodeId) -> Node {
        self.unindex(id);
        let node = self.nodes[id.0 as usize].take().expect("removing a registered node");
        assert!(node.is_empty() && node.allocated_mb == 0, "removing {id} that still holds servers or worlds");
        let i = self.live.binary_search(&id).expect("a registered node is in the live list");
        self.live.remove(i);
        node
    }

    /// Choose a node for `ram_mb` by the fleet's strategy. Does not book anything.
    pub fn place(&self, ram_mb: u32) -> Option<NodeId> {
        self.place_in_order(ram_mb, false)
    }

    /// [`Fleet::place`], trying rented (cloud) nodes before owned ones if `rented_first`.
    pub fn place_in_order(&self, ram_mb: u32, rented_first: bool) -> Option<NodeId> {
        let order =
            if rented_first { [NodeKind::Cloud, NodeKind::Dedicated] } else { [NodeKind::Dedicated, NodeKind::Cloud] };
        for kind in order {
            let idx = &self.index[slot(kind)];
            // The largest available RAM of this kind; the count-after rule can only
            // lower it, so a kind that fails this check has no candidate.
            match idx.by_avail.last() {
                Some(&(avail, _)) if avail >= u64::from(ram_mb) => {}
                _ => continue,
            }
            let found = match self.strategy {
                PlacementStrategy::Spread => {
                    idx.by_util.iter().map(|&(_, id)| id).find(|&id| self.node(id).fits(ram_mb, &self.reserve))
                }
                PlacementStrategy::BestFit => idx
                    .by_avail
                    .range((u64::from(ram_mb), NodeId(0))..)
                    .map(|&(_, id)| id)
                    .find(|&id| self.node(id).fits(ram_mb, &self.reserve)),
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Whether the placeable owned (dedicated) nodes' available RAM is below `percent` of
    /// their usable RAM. O(1).
    pub fn owned_free_below(&self, percent: f64) -> bool {
        let idx = &self.index[slot(NodeKind::Dedicated)];
        (idx.avail_sum as f64) < idx.usable_sum as f64 * percent / 100.0
    }

    /// Largest available RAM over placeable nodes.
    pub fn max_available_mb(&self) -> u64 {
        self.index.iter().filter_map(|i| i.by_avail.last().map(|&(a, _)| a)).max().unwrap_or(0)
    }

    /// Placeable nodes, for the invariant check.
    pub(crate) fn indexed(&self, id: NodeId) -> bool {
        self.keys.get(id.0 as usize).is_some_and(Option::is_some)
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.0 as usize].as_ref().expect("indexed node exists")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.0 as usize].as_mut().unwrap_or_else(|| panic!("{id} is not registered"))
    }

    fn unindex(&mut self, id: NodeId) {
        if let Some(k) = self.keys[id.0 as usize].take() {
            let idx = &mut self.index[k.slot];
            if self.strategy == PlacementStrategy::Spread {
                idx.by_util.remove(&(k.util_ppm, id));
            }
            idx.by_avail.remove(&(k.avail_mb, id));
            idx.avail_sum -= k.avail_mb;
            idx.usable_sum -= k.usable_mb;
        }
    }

    fn reindex(&mut self, id: NodeId) {
        let key = self.get(id).filter(|n| n.placeable()).map(|n| {
            let usable = n.usable_mb(&self.reserve);
            let util_ppm = match self.strategy {
                PlacementStrategy::BestFit => 0,
                PlacementStrategy::Spread if usable == 0 => u64::MAX,
                PlacementStrategy::Spread => n.allocated_mb.saturating_mul(1_000_000) / usable,
            };
            IndexKey { slot: slot(n.kind), util_ppm, avail_mb: n.available_mb(&self.reserve), usable_mb: usable }
        });
        if self.keys[id.0 as usize] == key {
            return;
        }
        self.unindex(id);
        if let Some(k) = key {
            let idx = &mut self.index[k.slot];
            if self.strategy == PlacementStrategy::Spread {
                idx.by_util.insert((k.util_ppm, id));
            }
            idx.by_avail.insert((k.avail_mb, id));
            idx.avail_sum += k.avail_mb;
            idx.usable_sum += k.usable_mb;
            self.keys[id.0 as usize] = Some(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Health;
    use std::collections::BTreeMap;

    pub(crate) fn spec(name: &str, kind: NodeKind, ram: u32) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            address: String::new(),
            kind,
            system: false,
            total_ram_mb: ram,
            cores: 4,
            hourly_eur: 0.0,
            labels: BTreeMap::new(),
            provider_id: None,
            server_type: None,
        }
    }

    fn healthy(f: &mut Fleet, s: NodeSpec) -> NodeId {
        let id = f.register(s, Millis::ZERO);
        f.update(id, |n| n.health = Health::Healthy);
        id
    }

    #[test]
    fn spread_prefers_dedicated_then_lowest_utilization_then_id() {
        let mut f = Fleet::new(ReserveConfig::default(), PlacementStrategy::Spread);
        let c = healthy(&mut f, spec("c", NodeKind::Cloud, 16384));
        let d1 = healthy(&mut f, spec("d1", NodeKind::Dedicated, 16384));
        let d2 = healthy(&mut f, spec("d2", NodeKind::Dedicated, 16384));
        assert_eq!(f.place(1024), Some(d1), "ties by id");
        f.bind(d1, 1024);
        assert_eq!(f.place(1024), Some(d2));
        f.bind(d2, 4096);
        assert_eq!(f.place(1024), Some(d1));
        // Dedicated full -> cloud.
        f.bind(d1, 12000);
        f.bind(d2, 9000);
        assert_eq!(f.place(1024), Some(c));
    }

    #[test]
    fn spread_skips_low_utilization_nodes_that_are_too_small() {
        let mut f = Fleet::new(ReserveConfig::default(), PlacementStrategy::Spread);
        let small = healthy(&mut f, spec("small", NodeKind::Dedicated, 4096));
        let big = healthy(&mut f, spec("big", NodeKind::Dedicated, 65536));
        f.bind(big, 40000);
        assert_eq!(f.place(2048), Some(small));
        assert_eq!(f.place(8192), Some(big));
    }

    #[test]
    fn owned_free_ram_is_summed_as_nodes_fill_and_rented_first_flips_the_kinds() {
        let mut f = Fleet::new(ReserveConfig::default(), PlacementStrategy::BestFit);
        let c = healthy(&mut f, spec("c", NodeKind::Cloud, 16384));
        let a = healthy(&mut f, spec("a", NodeKind::Dedicated, 16384));
        let usable = 16384 - 2457;
        assert!(!f.owned_free_below(100.0), "all free");
        f.bind(a, usable as u32 - 1000);
        // 1000 MB of 13927 free is 7.2 %.
        assert!(f.owned_free_below(7.5) && !f.owned_free_below(7.0));
        assert_eq!(f.place_in_order(512, false), Some(a));
        assert_eq!(f.place_in_order(512, true), Some(c));
        assert_eq!(f.place_in_order(2048, false), Some(c), "owned cannot hold it");
        f.unbind(a, usable as u32 - 1000, Millis(0));
        assert!(!f.owned_free_below(99.0), "freed again");
        f.bind(c, usable as u32);
        assert_eq!(f.place_in_order(512, true), Some(a), "rented full -> owned");
    }

    #[test]
    fn best_fit_takes_least_available_that_fits() {
        let mut f = Fleet::new(ReserveConfig::default(), PlacementStrategy::BestFit);
        let c = healthy(&mut f, spec("c", NodeKind::Cloud, 16384));
        let a = healthy(&mut f, spec("a", NodeKind::Dedicated, 16384));
        let b = healthy(&mut f, spec("b", NodeKind::Dedicated, 16384));
        f.bind(a, 8192);
        assert_eq!(f.place(4096), Some(a));
        assert_eq!(f.place(8192), Some(b));
        // The utilization index is not kept for best fit; the largest free block is.
        assert!(f.index.iter().all(|i| i.by_util.is_empty()));
        assert_eq!(f.max_available_mb(), 16384 - 2457, "15 % reserve above 8 GB");
        f.bind(b, 13000);
        assert_eq!(f.place(8192), Some(c), "dedicated full -> cloud");
    }

    #[test]
    fn only_healthy_active_non_system_nodes_are_placeable() {
        let mut f = Fleet::new(ReserveConfig::default(), PlacementStrategy::Spread);
        let mut s = spec("proxyman-1", NodeKind::Dedicated, 16384);
        let worker = f.register(s.clone(), Millis::ZERO);
        assert_eq!(f.place(1024), None, "unknown health");
        f.update(worker, |n| n.health = Health::Healthy);
        assert_eq!(f.place(1024), Some(worker), "the name means nothing");
        f.update(worker, |n| n.lifecycle = crate::node::Lifecycle::Draining);
        assert_eq!(f.place(1024), None, "draining");
        s.name = "worker".into();
        s.system = true;
        let sys = healthy(&mut f, s);
        assert_eq!(f.place(1024), None, "system node {sys}");
    }

    #[test]
    fn exact_fit_counts_the_reserve_after_placement() {
        for strategy in [PlacementStrategy::Spread, PlacementStrategy::BestFit] {
            let mut f = Fleet::new(ReserveConfig::default(), strategy);
            let n = healthy(&mut f, spec("n", NodeKind::Dedicated, 4096));
            // 4096 - 1000 = 3096 usable with up to 9 containers.
            for _ in 0..9 {
                f.bind(n, 300);
            }
            // 2700 allocated, 396 available; a 10th container raises the reserve by 50.
            assert_eq!(f.place(396), None, "{strategy:?}");
            assert_eq!(f.place(346), Some(n), "{strategy:?}");
        }
    }
}
