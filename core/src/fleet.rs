//! The node registry and its placement index.
//!
//! Placement must not scan and sort every node per request, so the fleet keeps, per
//! node kind (dedicated, cloud), sorted sets over the *placeable* nodes (healthy,
//! active, non-system): by available RAM always (best fit's range query, and the
//! largest free block), and by utilization only when the configured strategy is
//! `Spread` (an index nobody reads would cost a move per start and stop). Every change to
//! a node that could move it in those sets goes through a method here that re-indexes
//! it; a booking moves its entry in place.
//!
//! - `Spread` (the design's default): dedicated before cloud; within a kind, walk the
//!   nodes by ascending utilization (ties by node id) and take the first that fits. A
//!   kind whose largest available RAM is too small is skipped at once, so the walk
//!   only passes nodes that are less utilized *and* too small for this server, which
//!   takes a fleet of mixed sizes; in a fleet of one size the first node fits or none does.
//! - `BestFit`: dedicated before cloud; the node with the least available RAM that
//!   still fits (a range query), ties by node id.

use crate::config::{PlacementStrategy, ReserveConfig};
use crate::model::{NodeId, NodeKind};
use crate::node::{Lifecycle, Node, NodeSpec};
use crate::sorted::SortedSet;
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
    /// What the scaling context reads about the fleet's shape, kept current here so a
    /// scaling evaluation (one per queued start) does not walk every node.
    shape: Shape,
    /// Empty (no server, no world) non-system cloud nodes, ascending: the only nodes a
    /// policy may sell, so a sale decision walks these instead of the fleet.
    empty_cloud: BTreeSet<NodeId>,
}

/// Sums and maxima over the nodes that change only when a node is registered, removed
/// or updated (kind, health, lifecycle, price, size), or when a booking on a coming node
/// changes its usable RAM: [`Fleet::shape`]. Recomputed in node order, so the float sum
/// is the one a walk over the nodes gives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Shape {
    /// Rented (cloud) nodes, in any state.
    pub cloud_nodes: u32,
    /// Rented nodes not being deleted (draining).
    pub cloud_kept: u32,
    /// Their hourly prices, summed.
    pub cloud_eur_per_hour: f64,
    /// Usable RAM of worker nodes still coming up (health unknown, not draining).
    pub coming_usable_mb: u64,
    /// The largest usable RAM a placeable or coming worker node would have holding one
    /// server (the reserve's one-container tier): what the largest server may need.
    pub largest_holdable_mb: u64,
    /// The same over coming worker nodes only.
    pub largest_coming_mb: u64,
}

#[derive(Default)]
struct KindIndex {
    /// Empty unless the strategy is `Spread`.
    by_util: SortedSet<(u64, NodeId)>,
    by_avail: SortedSet<(u64, NodeId)>,
    /// Sums over the indexed nodes, for [`Fleet::owned_free_below`] and the scaling
    /// context.
    avail_sum: u64,
    usable_sum: u64,
    alloc_sum: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct IndexKey {
    slot: usize,
    util_ppm: u64,
    avail_mb: u64,
    usable_mb: u64,
    alloc_mb: u64,
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
            shape: Shape::default(),
            empty_cloud: BTreeSet::new(),
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
        self.reshape();
        self.refile(id);
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

    /// Usable RAM of the placeable nodes (healthy, active workers), O(1).
    pub fn placeable_usable_mb(&self) -> u64 {
        self.index.iter().map(|i| i.usable_sum).sum()
    }

    /// RAM booked on the placeable nodes, O(1).
    pub fn placeable_allocated_mb(&self) -> u64 {
        self.index.iter().map(|i| i.alloc_sum).sum()
    }

    /// Empty non-system cloud nodes in id order (those a policy may sell).
    pub fn empty_cloud_nodes(&self) -> impl Iterator<Item = &Node> {
        self.empty_cloud.iter().map(|&id| self.node(id))
    }

    /// The empty-cloud-node set computed afresh (for the invariant check).
    pub(crate) fn empty_cloud_agrees(&self) -> bool {
        self.iter().filter(|n| Self::empty_cloud_member(n)).map(|n| n.id).eq(self.empty_cloud.iter().copied())
    }

    fn empty_cloud_member(n: &Node) -> bool {
        n.kind == NodeKind::Cloud && !n.system && n.is_empty()
    }

    /// File a node in or out of the empty-cloud-node set after a change.
    fn refile(&mut self, id: NodeId) {
        match self.get(id).map(Self::empty_cloud_member) {
            Some(true) => self.empty_cloud.insert(id),
            _ => self.empty_cloud.remove(&id),
        };
    }

    /// The fleet's shape for the scaling context, O(1).
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Usable and booked RAM of the placeable nodes, summed afresh by a walk over them
    /// (for the invariant check).
    pub(crate) fn walk_placeable_mb(&self) -> (u64, u64) {
        let placeable = self.iter().filter(|n| n.placeable());
        placeable.fold((0, 0), |(u, b), n| (u + n.usable_mb(&self.reserve), b + n.allocated_mb()))
    }

    /// The shape computed afresh by a walk over the nodes (for the invariant check).
    pub(crate) fn walk_shape(&self) -> Shape {
        let mut s = Shape::default();
        for n in self.iter() {
            if n.kind == NodeKind::Cloud {
                s.cloud_nodes += 1;
                s.cloud_eur_per_hour += n.hourly_eur;
                s.cloud_kept += u32::from(n.lifecycle != Lifecycle::Draining);
            }
            if n.system {
                continue;
            }
            let fresh = crate::node::usable_mb(n.total_ram_mb, 1, &self.reserve);
            if n.placeable() {
                s.largest_holdable_mb = s.largest_holdable_mb.max(fresh);
            } else if n.coming() {
                s.coming_usable_mb += n.usable_mb(&self.reserve);
                s.largest_holdable_mb = s.largest_holdable_mb.max(fresh);
                s.largest_coming_mb = s.largest_coming_mb.max(fresh);
            }
        }
        s
    }

    /// The node's fields the shape and the empty-cloud set read, besides its bookings
    /// (an update that changes none of them, e.g. a CPU reading, walks nothing).
    fn shaping(n: &Node) -> (NodeKind, bool, crate::node::Health, Lifecycle, u64, u32) {
        (n.kind, n.system, n.health, n.lifecycle, n.hourly_eur.to_bits(), n.total_ram_mb)
    }

    fn reshape(&mut self) {
        self.shape = self.walk_shape();
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
        let shaped = Self::shaping(node);
        let out = f(node);
        debug_assert!(
            (alloc, count, worlds) == (node.allocated_mb, node.containers, node.worlds),
            "Fleet::update must not write bookkeeping"
        );
        let reshape = Self::shaping(node) != shaped;
        self.reindex(id);
        if reshape {
            self.reshape();
            self.refile(id);
        }
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
        let coming = node.coming();
        self.allocated_mb += u64::from(ram_mb);
        self.reindex(id);
        if coming {
            // A coming node's usable RAM depends on what it holds.
            self.reshape();
        }
        self.empty_cloud.remove(&id);
    }

    pub(crate) fn unbind(&mut self, id: NodeId, ram_mb: u32, now: Millis) {
        let node = self.node_mut(id);
        assert!(node.allocated_mb >= u64::from(ram_mb) && node.containers > 0, "unbind below zero on {id}");
        node.allocated_mb -= u64::from(ram_mb);
        node.containers -= 1;
        let emptied = node.is_empty();
        if emptied {
            node.empty_since = now;
        }
        let coming = node.coming();
        self.allocated_mb -= u64::from(ram_mb);
        self.reindex(id);
        if coming {
            self.reshape();
        }
        if emptied {
            self.refile(id);
        }
    }

    pub(crate) fn add_world(&mut self, id: NodeId) {
        self.node_mut(id).worlds += 1;
        self.empty_cloud.remove(&id);
    }

    pub(crate) fn remove_world(&mut self, id: NodeId, now: Millis) {
        let node = self.node_mut(id);
        assert!(node.worlds > 0, "world count below zero on {id}");
        node.worlds -= 1;
        if node.is_empty() {
            node.empty_since = now;
        }
        self.refile(id);
    }

    /// Remove a node for good. Panics if it still holds anything: callers check first.
    pub(crate) fn remove(&mut self, id: NodeId) -> Node {
        self.unindex(id);
        let node = self.nodes[id.0 as usize].take().expect("removing a registered node");
        assert!(node.is_empty() && node.allocated_mb == 0, "removing {id} that still holds servers or worlds");
        let i = self.live.binary_search(&id).expect("a registered node is in the live list");
        self.live.remove(i);
        self.reshape();
        self.empty_cloud.remove(&id);
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
                    .range_from((u64::from(ram_mb), NodeId(0)))
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
            idx.alloc_sum -= k.alloc_mb;
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
            IndexKey {
                slot: slot(n.kind),
                util_ppm,
                avail_mb: n.available_mb(&self.reserve),
                usable_mb: usable,
                alloc_mb: n.allocated_mb,
            }
        });
        let old = self.keys[id.0 as usize];
        if old == key {
            return;
        }
        if let (Some(o), Some(k)) = (old, key) {
            if o.slot == k.slot {
                // The common case, a booking: move the node's entries, no removal.
                let idx = &mut self.index[k.slot];
                if self.strategy == PlacementStrategy::Spread && o.util_ppm != k.util_ppm {
                    idx.by_util.replace((o.util_ppm, id), (k.util_ppm, id));
                }
                if o.avail_mb != k.avail_mb {
                    idx.by_avail.replace((o.avail_mb, id), (k.avail_mb, id));
                }
                idx.avail_sum = idx.avail_sum - o.avail_mb + k.avail_mb;
                idx.usable_sum = idx.usable_sum - o.usable_mb + k.usable_mb;
                idx.alloc_sum = idx.alloc_sum - o.alloc_mb + k.alloc_mb;
                self.keys[id.0 as usize] = key;
                return;
            }
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
            idx.alloc_sum += k.alloc_mb;
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
    fn kept_totals_follow_every_kind_of_change() {
        let mut f = Fleet::new(ReserveConfig::default(), PlacementStrategy::BestFit);
        let agree = |f: &Fleet, what: &str| {
            assert_eq!(*f.shape(), f.walk_shape(), "{what}");
            assert!(f.empty_cloud_agrees(), "{what}");
            assert_eq!((f.placeable_usable_mb(), f.placeable_allocated_mb()), f.walk_placeable_mb(), "{what}");
        };
        let d = healthy(&mut f, spec("d", NodeKind::Dedicated, 65536));
        let mut c = spec("c", NodeKind::Cloud, 16384);
        c.hourly_eur = 0.05;
        let coming = f.register(c.clone(), Millis::ZERO);
        agree(&f, "a coming cloud node");
        assert_eq!((f.shape().cloud_nodes, f.shape().cloud_kept), (1, 1));
        assert!(f.shape().coming_usable_mb > 0);
        assert_eq!(f.empty_cloud_nodes().map(|n| n.id).collect::<Vec<_>>(), vec![coming]);
        // Booked on while coming (a recovered reserved server): its usable RAM shrinks.
        f.bind(coming, 2048);
        agree(&f, "booked on a coming node");
        assert_eq!(f.empty_cloud_nodes().count(), 0);
        f.unbind(coming, 2048, Millis(1));
        agree(&f, "freed again");
        f.update(coming, |n| n.health = Health::Healthy);
        agree(&f, "probed healthy");
        assert_eq!(f.shape().coming_usable_mb, 0);
        f.bind(d, 8192);
        f.bind(coming, 4096);
        agree(&f, "booked on both");
        f.add_world(d);
        f.unbind(coming, 4096, Millis(2));
        f.add_world(coming);
        agree(&f, "a world keeps the cloud node from being empty");
        assert_eq!(f.empty_cloud_nodes().count(), 0);
        f.remove_world(coming, Millis(3));
        agree(&f, "its world archived");
        let second = f.register(c, Millis(4));
        f.update(second, |n| n.lifecycle = Lifecycle::Draining);
        agree(&f, "a second one draining");
        assert_eq!((f.shape().cloud_nodes, f.shape().cloud_kept), (2, 1));
        assert!((f.shape().cloud_eur_per_hour - 0.10).abs() < 1e-12);
        f.update(coming, |n| n.health = Health::Unhealthy);
        agree(&f, "one lost");
        f.remove(second);
        f.remove(coming);
        agree(&f, "both gone");
        assert_eq!(f.empty_cloud_nodes().count(), 0);
        let d_holds = crate::node::usable_mb(65536, 1, f.reserve());
        assert_eq!(*f.shape(), Shape { largest_holdable_mb: d_holds, ..Shape::default() });
        // An update that changes nothing the shape reads (a CPU reading) keeps it.
        f.update(d, |n| n.cpu_percent = 50.0);
        agree(&f, "a CPU reading");
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
