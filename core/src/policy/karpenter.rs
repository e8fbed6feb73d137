//! Karpenter's provisioning and consolidation (kubernetes-sigs/karpenter
//! `pkg/controllers/provisioning/scheduling`, `pkg/controllers/disruption`).
//!
//! Provisioning: queued servers are pending pods. They are packed largest first onto
//! the free RAM of existing and in-flight nodes; what is left goes onto one new node
//! claim, filled first-fit decreasing up to the largest type's usable RAM, and the
//! cheapest type (by hourly price) that holds what was packed onto it is launched.
//!
//! Consolidation (`WhenEmptyOrUnderutilized`): an empty cloud node is deleted once it
//! has been empty for `consolidate_after_s` (Karpenter's default 0 s, here a minute). A
//! non-empty node whose servers would fit in the free room of the other nodes is a
//! *delete candidate*; moving servers is not this policy's job, so candidates are only
//! named in the reason of the next empty-node deletion.

use super::{ffd, type_usable_mb, Policy, ScaleDown, ScaleUp, ScalingContext};
use crate::config::KarpenterConfig;
use crate::model::NodeKind;

pub struct Karpenter {
    cfg: KarpenterConfig,
}

impl Karpenter {
    pub fn new(cfg: KarpenterConfig) -> Karpenter {
        Karpenter { cfg }
    }
}

impl Policy for Karpenter {
    fn name(&self) -> &'static str {
        "karpenter"
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    fn scale_up(&mut self, ctx: &ScalingContext) -> Option<ScaleUp> {
        if ctx.queued_count == 0 {
            return None;
        }
        let mut bins = ctx.free_bins();
        let largest_type_mb = (0..ctx.catalogue.len())
            .filter(|&i| ctx.type_ok(i))
            .map(|i| type_usable_mb(&ctx.catalogue[i], ctx.reserve))
            .max()?;
        let (new_nodes, packed_mb) = ffd(&ctx.queued_sizes_desc(), &mut bins, largest_type_mb);
        if new_nodes == 0 {
            return None;
        }
        let need = packed_mb.max(u64::from(ctx.largest_queued_mb));
        let i = ctx.choose_with(|ok| {
            (0..ctx.catalogue.len())
                .filter(|&i| ok(i) && type_usable_mb(&ctx.catalogue[i], ctx.reserve) >= need)
                .min_by(|&a, &b| ctx.catalogue[a].hourly_eur.total_cmp(&ctx.catalogue[b].hourly_eur).then(a.cmp(&b)))
        })?;
        // Karpenter launches capacity for every pending pod at once.
        Some(ScaleUp {
            server_type: i,
            count: super::vms_for_queue(ctx, i),
            reason: format!(
                "{} queued server(s): {packed_mb} MB pack onto a new node, cheapest fit {}",
                ctx.queued_count, ctx.catalogue[i].name
            ),
        })
    }

    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown> {
        let after_ms = self.cfg.consolidate_after_s * 1000;
        let node = ctx
            .releasable()
            .filter(|n| ctx.now.since(n.empty_since) >= after_ms)
            .min_by_key(|n| (n.empty_since, n.id))?;
        // Underutilized candidates: a non-empty cloud node whose allocation fits in the
        // free room of the other placeable nodes (an aggregate estimate).
        let free_mb: u64 = ctx.fleet.iter().filter(|n| n.placeable()).map(|n| n.available_mb(ctx.reserve)).sum();
        let candidates: Vec<&str> = ctx
            .fleet
            .iter()
            .filter(|n| n.kind == NodeKind::Cloud && n.placeable() && !n.is_empty() && n.id != node.id)
            .filter(|n| n.allocated_mb() <= free_mb - n.available_mb(ctx.reserve))
            .map(|n| n.name.as_str())
            .take(3)
            .collect();
        let mut reason = format!("{} empty for {} s", node.name, ctx.now.since(node.empty_since) / 1000);
        if !candidates.is_empty() {
            reason.push_str(&format!("; consolidation candidates (would fit elsewhere): {}", candidates.join(", ")));
        }
        Some(ScaleDown { node: node.id, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use super::*;
    use crate::config::Config;
    use crate::time::Millis;

    const MIN: u64 = 60_000;

    #[test]
    fn launches_the_cheapest_type_holding_the_packed_servers_and_deletes_empty_nodes() {
        let mut k = Kit::new(Config::default());
        k.queue(2048);
        k.queue(1024);
        let mut p = Karpenter::new(k.cfg.karpenter.clone());
        let up = p.scale_up(&k.ctx(Millis(0))).expect("nothing to run on");
        // 3 GB packed: cpx22 (usable 3096) is the cheapest that holds it.
        assert_eq!(k.cfg.catalogue[up.server_type].name, "cpx22", "{}", up.reason);
        k.queue(3072);
        let up = p.scale_up(&k.ctx(Millis(0))).unwrap();
        assert_eq!(k.cfg.catalogue[up.server_type].name, "cpx32", "6 GB packed");

        let mut k = Kit::new(Config::default());
        let empty = k.node(NodeKind::Cloud, 8192, 0, Millis::ZERO);
        k.node(NodeKind::Dedicated, 65536, 0, Millis::ZERO);
        k.node(NodeKind::Cloud, 8192, 1000, Millis::ZERO);
        let down = p.scale_down(&k.ctx(Millis(56 * MIN))).expect("empty for long enough, in its window");
        assert_eq!(down.node, empty);
        assert!(down.reason.contains("consolidation candidates"), "{}", down.reason);
        assert_eq!(p.scale_down(&k.ctx(Millis(50 * MIN))), None, "outside the release window");
    }
}
