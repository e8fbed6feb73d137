//! The O(n) invariant check the simulator runs after every event and the property
//! tests after every step.

use crate::engine::{Conductor, ServerStatus};
use crate::model::NodeId;
use crate::node::Lifecycle;
use crate::sorted::SortedSet;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn check(c: &Conductor) -> Vec<String> {
    let v = c.invariant_view();
    // `v.servers` is in id order: lookups by binary search keep the check O(n log n).
    let status = |id| v.servers.binary_search_by_key(&id, |s| s.id).ok().map(|i| &v.servers[i].status);
    let mut bad = Vec::new();
    let reserve = v.fleet.reserve();
    let mut sums: BTreeMap<NodeId, (u64, u32, u32)> = BTreeMap::new();
    // The per-node booking index agrees with the servers' own bookings.
    let indexed: usize = v.booked_on.iter().map(SortedSet::len).sum();
    let bound = v.servers.iter().filter(|s| s.bound.is_some()).count();
    if indexed != bound {
        bad.push(format!("booking index holds {indexed} servers, {bound} are bound"));
    }
    for s in &v.servers {
        if let Some(n) = s.bound {
            if !v.booked_on.get(n.0 as usize).is_some_and(|b| b.contains(&s.id)) {
                bad.push(format!("{} is bound to {n} but missing from its booking index", s.id));
            }
            let e = sums.entry(n).or_default();
            e.0 += u64::from(s.ram_mb);
            e.1 += 1;
        }
        if let Some(n) = s.world {
            sums.entry(n).or_default().2 += 1;
        }
        // Each server is in exactly one state, and its booking matches it.
        let node_of_state = match s.status {
            ServerStatus::Queued { .. } => {
                if !v.queue.contains(s.id) {
                    bad.push(format!("{} is queued but not in the queue", s.id));
                }
                // A reserved server keeps its booking while its start is retried.
                if s.plan == crate::model::Plan::Reserved {
                    s.bound
                } else {
                    None
                }
            }
            ServerStatus::Starting { node }
            | ServerStatus::Running { node }
            | ServerStatus::Stopping { node }
            | ServerStatus::Lost { node } => Some(node),
            ServerStatus::Stopped { booked_on, .. } => {
                if booked_on.is_some() && s.plan != crate::model::Plan::Reserved {
                    bad.push(format!("{} is stopped with RAM booked but is not on a reserved plan", s.id));
                }
                booked_on
            }
        };
        if node_of_state != s.bound {
            bad.push(format!("{} is {:?} but its RAM is booked on {:?}", s.id, s.status, s.bound));
        }
        if !matches!(s.status, ServerStatus::Queued { .. }) && v.queue.contains(s.id) {
            bad.push(format!("{} is in the queue but {:?}", s.id, s.status));
        }
        if let Some(n) = s.bound {
            match v.fleet.get(n) {
                None => bad.push(format!("{} is booked on {n}, which does not exist", s.id)),
                Some(node) if node.system => bad.push(format!("{} is on system node {}", s.id, node.name)),
                Some(node) if node.lifecycle == Lifecycle::AwaitingProvision => {
                    bad.push(format!("{} is on placeholder {}", s.id, node.name))
                }
                _ => {}
            }
        }
    }
    // A moving server's hold on its target counts like a booking there.
    for m in &v.migrations {
        let status = status(m.server).cloned();
        if m.starting {
            if status != Some(ServerStatus::Starting { node: m.to }) {
                bad.push(format!("{} is moving to {} but is {status:?}", m.server, m.to));
            }
        } else {
            if status != Some(ServerStatus::Stopping { node: m.from }) {
                bad.push(format!("{} is stopping to move off {} but is {status:?}", m.server, m.from));
            }
            if m.held {
                let e = sums.entry(m.to).or_default();
                e.0 += u64::from(m.ram_mb);
                e.1 += 1;
            }
        }
    }
    for &n in v.consolidating {
        if v.fleet.get(n).is_none_or(|n| n.lifecycle != Lifecycle::Draining) {
            bad.push(format!("{n} is being consolidated but is not cordoned"));
        }
    }
    let starting: BTreeSet<_> =
        v.servers.iter().filter(|s| matches!(s.status, ServerStatus::Starting { .. })).map(|s| s.id).collect();
    let reserved: BTreeSet<_> = v.reservations.iter().copied().collect();
    if starting != reserved || v.reservations.len() != reserved.len() {
        bad.push(format!("reservation timers {reserved:?} do not match starting servers {starting:?}"));
    }
    let mut queue_ram = 0u64;
    let mut seen = BTreeSet::new();
    for e in v.queue.iter() {
        queue_ram += u64::from(e.ram_mb);
        if !seen.insert(e.server) {
            bad.push(format!("{} is in the queue twice", e.server));
        }
        if !matches!(status(e.server), Some(ServerStatus::Queued { .. })) {
            bad.push(format!("queue entry {} has no queued server", e.server));
        }
    }
    if queue_ram != v.queue.total_ram_mb() {
        bad.push(format!("queue total {} MB != sum of entries {} MB", v.queue.total_ram_mb(), queue_ram));
    }
    let mut cloud = 0;
    for n in v.fleet.iter() {
        let (alloc, count, worlds) = sums.get(&n.id).copied().unwrap_or_default();
        if n.allocated_mb() != alloc || n.containers() != count {
            bad.push(format!(
                "{}: allocated {} MB / {} containers, but its servers sum to {} MB / {}",
                n.name,
                n.allocated_mb(),
                n.containers(),
                alloc,
                count
            ));
        }
        if n.worlds() != worlds {
            bad.push(format!("{}: {} worlds counted, {} found", n.name, n.worlds(), worlds));
        }
        if n.allocated_mb() > n.usable_mb(reserve) && !v.overcommitted.contains(&n.id) {
            bad.push(format!("{}: allocated {} MB > usable {} MB", n.name, n.allocated_mb(), n.usable_mb(reserve)));
        }
        if n.system && (n.containers() > 0 || n.worlds() > 0) {
            bad.push(format!("system node {} holds servers", n.name));
        }
        if v.fleet.indexed(n.id) != n.placeable() {
            bad.push(format!("{}: placement index disagrees with placeable={}", n.name, n.placeable()));
        }
        if n.kind == crate::model::NodeKind::Cloud {
            cloud += 1;
        }
    }
    let node_sum: u64 = v.fleet.iter().map(|n| n.allocated_mb()).sum();
    if node_sum != v.fleet.allocated_mb() {
        bad.push(format!("fleet total {} MB != sum over its nodes {} MB", v.fleet.allocated_mb(), node_sum));
    }
    // The totals the scaling context reads agree with a walk over the nodes.
    let (usable, booked) = v.fleet.walk_placeable_mb();
    if (usable, booked) != (v.fleet.placeable_usable_mb(), v.fleet.placeable_allocated_mb()) {
        bad.push(format!(
            "placeable nodes: usable {usable} MB, booked {booked} MB, but the fleet keeps {} / {} MB",
            v.fleet.placeable_usable_mb(),
            v.fleet.placeable_allocated_mb()
        ));
    }
    if !v.fleet.empty_cloud_agrees() {
        bad.push("the fleet's set of empty cloud nodes disagrees with its nodes".to_string());
    }
    if *v.fleet.shape() != v.fleet.walk_shape() {
        bad.push(format!("fleet shape {:?} != {:?} over its nodes", v.fleet.shape(), v.fleet.walk_shape()));
    }
    if cloud > v.cfg.scaling.max_cloud_nodes {
        bad.push(format!("{cloud} cloud nodes exceed the maximum {}", v.cfg.scaling.max_cloud_nodes));
    }
    bad
}
