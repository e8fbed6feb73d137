//! Karpenter's provisioning and consolidation (kubernetes-sigs/karpenter
//! `pkg/controllers/provisioning/scheduling`, `pkg/controllers/disruption`).
//!
//! Provisioning: queued servers are pending pods. They are packed largest first onto
//! the free RAM of existing and in-flight nodes; what is left goes onto one new node
//! claim, filled first-fit decreasing up to the largest type's usable RAM, and the
//! cheapest type (by hourly price) that holds what was packed onto it is launched.
//!
//! Consolidation (`WhenEmptyOrUnderutilized`), with nothing pending:
//! - an empty cloud node is deleted once it has been empty for `consolidate_after_s`
//!   (Karpenter's default 0 s, here a minute), whatever its billing;
//! - single-node consolidation: a cloud node whose servers all fit, best fit, in the free
//!   room of the other nodes is emptied (its servers migrate) and then deleted, the node
//!   with the fewest servers first (Karpenter orders candidates by disruption cost), one
//!   at a time. A server with players is a game in progress, which Karpenter's
//!   `karpenter.sh/do-not-disrupt` annotation protects (its docs cite "an interactive
//!   game"): only servers at 0 players for `consolidate_after_s` move, and never one on a
//!   reserved plan (the engine refuses those moves in any case).

use super::consolidation::best_fit_moves;
use super::{ffd, type_usable_mb, Consolidate, Policy, ScaleDown, ScaleUp, ScalingContext, ServerInfo};
use crate::config::KarpenterConfig;
use crate::model::{NodeId, NodeKind, Plan};
use crate::node::Node;
use std::collections::BTreeSet;

pub struct Karpenter {
    cfg: KarpenterConfig,
    /// Nodes this policy asked to empty (it sells only those, not another policy's).
    emptying: BTreeSet<NodeId>,
}

impl Karpenter {
    pub fn new(cfg: KarpenterConfig) -> Karpenter {
        Karpenter { cfg, emptying: BTreeSet::new() }
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
        // A node this policy emptied goes as soon as its last move is done.
        self.emptying.retain(|id| ctx.consolidating.contains(id));
        if let Some(n) = self.emptying.iter().filter_map(|&id| ctx.fleet.get(id)).find(|n| ctx.emptied(n)) {
            return Some(ScaleDown { node: n.id, reason: format!("{} emptied by consolidation", n.name) });
        }
        let after_ms = self.cfg.consolidate_after_s * 1000;
        let node = ctx
            .deletable_nodes()
            .filter(|n| ctx.now.since(n.empty_since) >= after_ms)
            .min_by_key(|n| (n.empty_since, n.id))?;
        Some(ScaleDown {
            node: node.id,
            reason: format!("{} empty for {} s", node.name, ctx.now.since(node.empty_since) / 1000),
        })
    }

    fn wants_servers(&self, ctx: &ScalingContext) -> bool {
        ctx.queued_count == 0 && ctx.consolidating.is_empty()
    }

    fn consolidate(&mut self, ctx: &ScalingContext) -> Option<Consolidate> {
        if !self.wants_servers(ctx) {
            return None;
        }
        let after_ms = self.cfg.consolidate_after_s * 1000;
        let disruptable = |s: &ServerInfo| {
            s.plan != Plan::Reserved && s.zero_players_since.is_some_and(|z| ctx.now.since(z) >= after_ms)
        };
        let mut best: Option<(_, &Node, Vec<_>)> = None;
        for group in ctx.servers.chunk_by(|a, b| a.node == b.node) {
            let Some(n) = ctx.fleet.get(group[0].node) else { continue };
            if n.kind != NodeKind::Cloud || n.system || !n.placeable() || n.containers() as usize != group.len() {
                continue;
            }
            if !group.iter().all(disruptable) {
                continue;
            }
            // Fewest servers, then the dearest node (in micro-euros an hour), then the id.
            let key = (group.len(), std::cmp::Reverse((n.hourly_eur * 1e6) as u64), n.id.0);
            if best.as_ref().is_some_and(|b| b.0 <= key) {
                continue;
            }
            let refs: Vec<&ServerInfo> = group.iter().collect();
            if let Some(moves) = best_fit_moves(ctx, n.id, &refs) {
                best = Some((key, n, moves));
            }
        }
        let (_, n, moves) = best?;
        self.emptying.insert(n.id);
        Some(Consolidate {
            node: n.id,
            reason: format!("underutilized: {} idle server(s) on {} fit elsewhere", moves.len(), n.name),
            moves,
        })
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
        let down = p.scale_down(&k.ctx(Millis(31 * MIN))).expect("empty for long enough");
        assert_eq!(down.node, empty);
        assert_eq!(p.scale_down(&k.ctx(Millis(50 * MIN))).map(|d| d.node), Some(empty), "whatever its billed hour");
        assert_eq!(p.scale_down(&k.ctx(Millis(29 * MIN))), None, "younger than the engine's minimum lifetime");
    }

    #[test]
    fn moves_idle_servers_off_the_node_with_the_fewest_and_never_a_busy_one() {
        use crate::model::ServerId;
        let mut k = Kit::new(Config::default());
        let owned = k.node(NodeKind::Dedicated, 65536, 0, Millis::ZERO);
        let one = k.node(NodeKind::Cloud, 16384, 2048, Millis::ZERO);
        let two = k.node(NodeKind::Cloud, 16384, 2048, Millis::ZERO);
        k.fleet.bind(two, 2048);
        let info = |id: u64, node: NodeId, zero: Option<Millis>| ServerInfo {
            id: ServerId(id),
            node,
            ram_mb: 2048,
            plan: Plan::PayPerPlay,
            zero_players_since: zero,
        };
        let idle = Some(Millis(MIN));
        let now = Millis(3 * MIN);
        let mut p = Karpenter::new(k.cfg.karpenter.clone());
        let consolidate = |p: &mut Karpenter, servers: &[ServerInfo], now: Millis| {
            let mut ctx = k.ctx(now);
            ctx.servers = servers;
            p.consolidate(&ctx)
        };
        // Both nodes idle: the one with one server goes first, onto the owned host.
        let all = [info(1, one, idle), info(2, two, idle), info(3, two, idle)];
        let c = consolidate(&mut p, &all, now).expect("both nodes fit elsewhere");
        assert_eq!((c.node, c.moves), (one, vec![(ServerId(1), owned)]));
        // A server with players (or never reported) is never moved: only the other node.
        let busy = [info(1, one, None), info(2, two, idle), info(3, two, idle)];
        let c = consolidate(&mut p, &busy, now).expect("the idle node");
        assert_eq!(c.node, two);
        assert_eq!(c.moves.len(), 2);
        // Idle for less than consolidate_after_s: not yet.
        let fresh = [info(1, one, Some(Millis(2 * MIN + 30_000))), info(2, two, None), info(3, two, idle)];
        assert_eq!(consolidate(&mut p, &fresh, now), None);
        // Nothing fits elsewhere with no other node: nothing.
        let mut lone = Kit::new(Config::default());
        let only = lone.node(NodeKind::Cloud, 16384, 2048, Millis::ZERO);
        let mut ctx = lone.ctx(now);
        let servers = [info(1, only, idle)];
        ctx.servers = &servers;
        assert_eq!(p.consolidate(&ctx), None);
    }
}
