//! The Kubernetes Cluster Autoscaler's rules (kubernetes/autoscaler `cluster-autoscaler/FAQ.md`).
//!
//! Scale-up: queued servers are CA's unschedulable pods. The binpacking estimator packs
//! them, largest first (first-fit decreasing), onto the free RAM of nodes on their way
//! and then onto new nodes of the chosen type; if any new node is needed, one is bought
//! (one action per evaluation; the next evaluation packs again with it as a coming node).
//! Node groups are VM types: the engine's type backoff (5 min doubling to 30 min) is
//! CA's node-group backoff.
//!
//! Scale-down: a cloud node whose allocated RAM is below
//! `scale_down_utilization_threshold_percent` (50 %) of its usable RAM is *unneeded*;
//! after `scale_down_unneeded_s` (10 min) unneeded and not within
//! `scale_down_delay_after_add_s` (10 min) of a scale-up, CA would drain it. Game server
//! pods carry `cluster-autoscaler.kubernetes.io/safe-to-evict: "false"` (Agones sets it),
//! so CA never evicts them: an unneeded node is deleted only once it is empty (its
//! unneeded clock keeps running while it drains naturally), as soon as that happens,
//! whatever its billed hour.

use super::{choose_for_demand, ffd, type_usable_mb, Policy, ScaleDown, ScaleUp, ScalingContext};
use crate::config::ClusterAutoscalerConfig;
use crate::model::{NodeId, NodeKind};
use crate::time::Millis;
use std::collections::BTreeMap;

pub struct ClusterAutoscaler {
    cfg: ClusterAutoscalerConfig,
    /// Cloud nodes below the utilization threshold, since when.
    unneeded: BTreeMap<NodeId, Millis>,
}

impl ClusterAutoscaler {
    pub fn new(cfg: ClusterAutoscalerConfig) -> ClusterAutoscaler {
        ClusterAutoscaler { cfg, unneeded: BTreeMap::new() }
    }
}

impl Policy for ClusterAutoscaler {
    fn name(&self) -> &'static str {
        "cluster_autoscaler"
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    fn observe(&mut self, ctx: &ScalingContext) {
        let mut still = BTreeMap::new();
        for n in ctx.fleet.iter().filter(|n| n.kind == NodeKind::Cloud && !n.system && n.placeable()) {
            if n.utilization_percent(ctx.reserve) < self.cfg.scale_down_utilization_threshold_percent {
                still.insert(n.id, self.unneeded.get(&n.id).copied().unwrap_or(ctx.now));
            }
        }
        self.unneeded = still;
    }

    fn scale_up(&mut self, ctx: &ScalingContext) -> Option<ScaleUp> {
        if ctx.queued_count == 0 {
            return None;
        }
        let sizes = ctx.queued_sizes_desc();
        let i = choose_for_demand(ctx, ctx.queued_ram_mb, ctx.largest_queued_mb)?;
        let new_mb = type_usable_mb(&ctx.catalogue[i], ctx.reserve);
        // Pending pods first go to nodes already on their way and to free room on healthy
        // nodes (a queue pass places them there).
        let mut bins = ctx.free_bins();
        let (new_nodes, _) = ffd(&sizes, &mut bins, new_mb);
        if new_nodes == 0 {
            return None;
        }
        // The Cluster Autoscaler adds every node its estimate needs in one scale-up
        // (bounded by the group's maximum).
        Some(ScaleUp {
            server_type: i,
            count: new_nodes,
            reason: format!(
                "{} queued server(s) ({} MB) need {new_nodes} more {} node(s) by binpacking",
                ctx.queued_count, ctx.queued_ram_mb, ctx.catalogue[i].name
            ),
        })
    }

    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown> {
        if ctx.last_scale_up.is_some_and(|t| ctx.now.since(t) < self.cfg.scale_down_delay_after_add_s * 1000) {
            return None;
        }
        let unneeded_ms = self.cfg.scale_down_unneeded_s * 1000;
        let node = ctx
            .deletable_nodes()
            .filter(|n| self.unneeded.get(&n.id).is_some_and(|&t| ctx.now.since(t) >= unneeded_ms))
            .min_by_key(|n| (self.unneeded[&n.id], n.id))?;
        Some(ScaleDown {
            node: node.id,
            reason: format!(
                "{} unneeded (below {:.0}% utilization) for {} min and empty",
                node.name,
                self.cfg.scale_down_utilization_threshold_percent,
                ctx.now.since(self.unneeded[&node.id]) / 60_000
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use super::*;
    use crate::config::Config;

    const MIN: u64 = 60_000;

    #[test]
    fn binpacks_the_queue_and_deletes_nodes_unneeded_for_ten_minutes() {
        let mut k = Kit::new(Config::default());
        k.node(NodeKind::Dedicated, 8192, 5000, Millis::ZERO); // usable 6964 - 5000 = 1964 free
        k.queue(1000);
        let mut p = ClusterAutoscaler::new(k.cfg.cluster_autoscaler.clone());
        let ctx = k.ctx(Millis(MIN));
        p.observe(&ctx);
        assert_eq!(p.scale_up(&ctx), None, "the queued server fits the free room");
        k.queue(4096);
        k.queue(4096);
        let ctx = k.ctx(Millis(MIN));
        let up = p.scale_up(&ctx).expect("8 GB does not fit");
        // Best price per GB the 9 GB fill is cpx32 (6964 usable): two 4 GB servers need two.
        assert!(up.reason.contains("need 2 more cpx32"), "{}", up.reason);

        let mut k = Kit::new(Config::default());
        let cloud = k.node(NodeKind::Cloud, 8192, 0, Millis::ZERO);
        k.last_up = Some(Millis::ZERO);
        let mut p = ClusterAutoscaler::new(k.cfg.cluster_autoscaler.clone());
        p.observe(&k.ctx(Millis(40 * MIN)));
        let ctx = k.ctx(Millis(49 * MIN));
        p.observe(&ctx);
        assert_eq!(p.scale_down(&ctx), None, "unneeded for 9 min");
        let ctx = k.ctx(Millis(56 * MIN));
        p.observe(&ctx);
        assert_eq!(p.scale_down(&ctx).map(|d| d.node), Some(cloud));
        k.last_up = Some(Millis(50 * MIN));
        assert_eq!(p.scale_down(&k.ctx(Millis(56 * MIN))), None, "delay after add");
    }
}
