//! Consolidation: empty a rented node whose servers are all idle by moving them onto
//! the free room of other nodes, then sell it (the design's `ConsolidationPolicy`, done
//! as the original never managed: it was disabled there and only ever found empty nodes).
//!
//! A node is emptied only if all of these hold:
//! - the system is stable: no scale action and no node health change for `stable_s`,
//!   nothing queued, fewer than `max_draining_nodes` nodes already being emptied;
//! - it is an active, healthy, rented (cloud) node whose hourly price (the saving) is
//!   above `min_savings_eur_per_hour`, healthy for at least `node_min_uptime_s`;
//! - every server booked on it is running, not on a reserved plan, within
//!   `server_min_ram_mb..=server_max_ram_mb`, and has reported 0 players for at least
//!   `node_min_idle_s` (a server that never reported counts as having players);
//! - all of them fit, best fit largest first, on other placeable nodes (owned hosts first).
//!
//! Among those it picks the dearest node (then the fewest servers, then the lowest id).
//! The engine cordons the node, books each server's RAM on its target, stops it, moves
//! its world and starts it there; a server that gets players meanwhile is not moved.
//! Once the cordoned node is empty and no move from it is in flight this policy sells
//! it, billing-aware (in its release window).

use super::{Consolidate, Policy, ScaleDown, ScaleUp, ScalingContext, ServerInfo};
use crate::config::ConsolidationConfig;
use crate::model::{NodeId, NodeKind, Plan, ServerId};
use crate::node::{usable_mb, Node};

pub struct Consolidation {
    cfg: ConsolidationConfig,
}

impl Consolidation {
    pub fn new(cfg: ConsolidationConfig) -> Consolidation {
        Consolidation { cfg }
    }

    /// Why no node may be emptied now, if so (the system-wide conditions).
    pub fn blocked(&self, ctx: &ScalingContext) -> Option<String> {
        if ctx.consolidating.len() >= self.cfg.max_draining_nodes as usize {
            return Some(format!("{} node(s) already being emptied", ctx.consolidating.len()));
        }
        if ctx.queued_count > 0 {
            return Some(format!("{} server(s) queued", ctx.queued_count));
        }
        let stable_ms = self.cfg.stable_s * 1000;
        let last = [ctx.last_scale_up, ctx.last_scale_down, ctx.last_health_change].into_iter().flatten().max();
        if let Some(t) = last {
            if ctx.now.since(t) < stable_ms {
                return Some(format!("last scale action or health change {} s ago", ctx.now.since(t) / 1000));
            }
        }
        None
    }

    /// Why this node may not be emptied, if so (the node's own conditions).
    pub fn node_blocked(&self, ctx: &ScalingContext, n: &Node, servers: &[&ServerInfo]) -> Option<String> {
        if n.kind != NodeKind::Cloud || n.system || !n.placeable() {
            return Some("not an active healthy rented node".into());
        }
        if n.hourly_eur <= self.cfg.min_savings_eur_per_hour {
            return Some(format!(
                "saving {:.4} EUR/h is not above {:.4}",
                n.hourly_eur, self.cfg.min_savings_eur_per_hour
            ));
        }
        let up_since = n.healthy_since.unwrap_or(n.registered_at);
        if ctx.now.since(up_since) < self.cfg.node_min_uptime_s * 1000 {
            return Some("up for less than node_min_uptime_s".into());
        }
        if n.containers() == 0 {
            return Some("empty (the scale-down policies release it)".into());
        }
        if servers.len() != n.containers() as usize {
            return Some("holds servers that are not running".into());
        }
        let idle_ms = self.cfg.node_min_idle_s * 1000;
        for s in servers {
            if s.plan == Plan::Reserved {
                return Some(format!("{} is on a reserved plan", s.id));
            }
            if !(self.cfg.server_min_ram_mb..=self.cfg.server_max_ram_mb).contains(&s.ram_mb) {
                return Some(format!("{} ({} MB) is outside the movable tiers", s.id, s.ram_mb));
            }
            match s.zero_players_since {
                Some(z) if ctx.now.since(z) >= idle_ms => {}
                Some(_) => return Some(format!("{} has had 0 players for less than node_min_idle_s", s.id)),
                None => return Some(format!("{} has players (or never reported)", s.id)),
            }
        }
        None
    }
}

/// Best fit, largest first, of `servers` onto the placeable nodes other than `from`:
/// each server goes to an owned host if one has room, else a rented one, where it
/// leaves the least room. `None` if one fits nowhere.
pub fn best_fit_moves(ctx: &ScalingContext, from: NodeId, servers: &[&ServerInfo]) -> Option<Vec<(ServerId, NodeId)>> {
    // (id, total, containers, allocated, rented) of each possible target. Owned hosts
    // are paid for anyway, so they are filled first.
    let mut bins: Vec<(NodeId, u32, u32, u64, bool)> = ctx
        .fleet
        .iter()
        .filter(|n| n.id != from && n.placeable())
        .map(|n| (n.id, n.total_ram_mb, n.containers(), n.allocated_mb(), n.kind == NodeKind::Cloud))
        .collect();
    let mut order: Vec<&ServerInfo> = servers.to_vec();
    order.sort_by_key(|s| (std::cmp::Reverse(s.ram_mb), s.id));
    let mut moves = Vec::with_capacity(order.len());
    for s in order {
        let room_after = |b: &(NodeId, u32, u32, u64, bool)| {
            (usable_mb(b.1, b.2 + 1, ctx.reserve) as i64) - (b.3 + u64::from(s.ram_mb)) as i64
        };
        let best = bins.iter_mut().filter(|b| room_after(b) >= 0).min_by_key(|b| (b.4, room_after(b), b.0))?;
        best.2 += 1;
        best.3 += u64::from(s.ram_mb);
        moves.push((s.id, best.0));
    }
    Some(moves)
}

impl Policy for Consolidation {
    fn name(&self) -> &'static str {
        "consolidation"
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    fn scale_up(&mut self, _ctx: &ScalingContext) -> Option<ScaleUp> {
        None
    }

    /// Sell a cordoned node once it is empty, no move from it is in flight, and its
    /// billed hour is about to end.
    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown> {
        ctx.consolidating
            .iter()
            .filter_map(|&id| ctx.fleet.get(id))
            .filter(|n| ctx.emptied(n) && ctx.release_window_open(n))
            .map(|n| ScaleDown {
                node: n.id,
                reason: format!("emptied by consolidation, saves {:.4} EUR/h", n.hourly_eur),
            })
            .next()
    }

    fn wants_servers(&self, ctx: &ScalingContext) -> bool {
        self.blocked(ctx).is_none()
    }

    fn consolidate(&mut self, ctx: &ScalingContext) -> Option<Consolidate> {
        if self.blocked(ctx).is_some() {
            return None;
        }
        let mut best: Option<(&Node, Vec<(ServerId, NodeId)>)> = None;
        let mut i = 0;
        let all = ctx.servers;
        while i < all.len() {
            let node = all[i].node;
            let j = i + all[i..].iter().take_while(|s| s.node == node).count();
            let group: Vec<&ServerInfo> = all[i..j].iter().collect();
            i = j;
            let Some(n) = ctx.fleet.get(node) else { continue };
            if ctx.consolidating.contains(&node) || self.node_blocked(ctx, n, &group).is_some() {
                continue;
            }
            let better = |b: &(&Node, Vec<(ServerId, NodeId)>)| {
                (n.hourly_eur, std::cmp::Reverse(group.len()), std::cmp::Reverse(n.id))
                    .partial_cmp(&(b.0.hourly_eur, std::cmp::Reverse(b.1.len()), std::cmp::Reverse(b.0.id)))
                    .is_some_and(|o| o.is_gt())
            };
            if best.as_ref().is_some_and(|b| !better(b)) {
                continue;
            }
            if let Some(moves) = best_fit_moves(ctx, node, &group) {
                best = Some((n, moves));
            }
        }
        let (n, moves) = best?;
        Some(Consolidate {
            node: n.id,
            reason: format!(
                "{} idle server(s) fit elsewhere; selling {} saves {:.4} EUR/h",
                moves.len(),
                n.name,
                n.hourly_eur
            ),
            moves,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use super::*;
    use crate::config::Config;
    use crate::node::Lifecycle;
    use crate::time::Millis;
    use std::collections::BTreeSet;

    const MIN: u64 = 60_000;
    const NOW: Millis = Millis(3 * 60 * MIN);

    struct Case {
        k: Kit,
        from: NodeId,
        to: NodeId,
        servers: Vec<ServerInfo>,
        consolidating: BTreeSet<NodeId>,
        last_health_change: Option<Millis>,
    }

    /// A rented 32 GB node at 0.20 EUR/h with one idle 4 GB server, and an empty 64 GB
    /// dedicated host it fits on: everything allows the move.
    fn case() -> Case {
        let mut k = Kit::new(Config::default());
        let from = k.node(NodeKind::Cloud, 32768, 4096, Millis::ZERO);
        k.fleet.update(from, |n| n.hourly_eur = 0.2);
        let to = k.node(NodeKind::Dedicated, 65536, 0, Millis::ZERO);
        let servers = vec![ServerInfo {
            id: ServerId(1),
            node: from,
            ram_mb: 4096,
            plan: Plan::PayPerPlay,
            zero_players_since: Some(Millis(MIN)),
        }];
        Case { k, from, to, servers, consolidating: BTreeSet::new(), last_health_change: None }
    }

    fn decide(c: &Case) -> Option<Consolidate> {
        let mut ctx = c.k.ctx(NOW);
        ctx.servers = &c.servers;
        ctx.consolidating = &c.consolidating;
        ctx.last_health_change = c.last_health_change;
        let mut p = Consolidation::new(c.k.cfg.consolidation.clone());
        p.consolidate(&ctx)
    }

    #[test]
    fn moves_idle_servers_off_a_dear_node() {
        let c = case();
        let d = decide(&c).expect("all conditions hold");
        assert_eq!(d.node, c.from);
        assert_eq!(d.moves, vec![(ServerId(1), c.to)]);
        assert!(d.reason.contains("0.2000 EUR/h"), "{}", d.reason);
    }

    #[test]
    fn each_condition_blocks() {
        let blocked: Vec<(&str, Box<dyn Fn(&mut Case)>)> = vec![
            ("a scale-up within 2 h", Box::new(|c| c.k.last_up = Some(Millis(NOW.0 - 60 * MIN)))),
            ("a scale-down within 2 h", Box::new(|c| c.k.last_down = Some(Millis(NOW.0 - 60 * MIN)))),
            ("a health change within 2 h", Box::new(|c| c.last_health_change = Some(Millis(NOW.0 - 60 * MIN)))),
            ("a queued server", Box::new(|c| c.k.queue(2048))),
            ("max draining nodes reached", Box::new(|c| _ = c.consolidating.insert(NodeId(99)))),
            ("saving not above 0.10 EUR/h", Box::new(|c| _ = c.k.fleet.update(c.from, |n| n.hourly_eur = 0.10))),
            ("a dedicated node", Box::new(|c| _ = c.k.fleet.update(c.from, |n| n.kind = NodeKind::Dedicated))),
            (
                "uptime below 30 min",
                Box::new(|c| _ = c.k.fleet.update(c.from, |n| n.healthy_since = Some(Millis(NOW.0 - 20 * MIN)))),
            ),
            ("idle below 15 min", Box::new(|c| c.servers[0].zero_players_since = Some(Millis(NOW.0 - 10 * MIN)))),
            ("players (or no report)", Box::new(|c| c.servers[0].zero_players_since = None)),
            ("a reserved plan", Box::new(|c| c.servers[0].plan = Plan::Reserved)),
            ("a large-tier server", Box::new(|c| c.servers[0].ram_mb = 16384)),
            ("a server that is not running", Box::new(|c| c.k.fleet.bind(c.from, 2048))),
            ("no room elsewhere", Box::new(|c| c.k.fleet.bind(c.to, 60000))),
        ];
        for (what, change) in blocked {
            let mut c = case();
            change(&mut c);
            assert_eq!(decide(&c), None, "{what} must block consolidation");
        }
    }

    #[test]
    fn best_fit_packs_largest_first_into_the_tightest_room() {
        let mut c = case();
        // A second target with just room for 4 GB: best fit prefers it to the big host.
        let tight = c.k.node(NodeKind::Dedicated, 5120, 0, Millis::ZERO);
        c.k.fleet.bind(c.from, 2048);
        c.servers.push(ServerInfo { id: ServerId(2), ram_mb: 2048, ..c.servers[0].clone() });
        let d = decide(&c).expect("both fit");
        assert_eq!(d.moves, vec![(ServerId(1), tight), (ServerId(2), c.to)]);
    }

    #[test]
    fn sells_a_cordoned_node_once_empty_in_its_release_window() {
        let mut k = Kit::new(Config::default());
        let n = k.node(NodeKind::Cloud, 32768, 0, Millis::ZERO);
        k.fleet.update(n, |n| n.lifecycle = Lifecycle::Draining);
        let cordoned = BTreeSet::from([n]);
        let mut p = Consolidation::new(k.cfg.consolidation.clone());
        let mut ctx = k.ctx(Millis(56 * MIN));
        assert_eq!(p.scale_down(&ctx), None, "not cordoned by consolidation");
        ctx.consolidating = &cordoned;
        assert_eq!(p.scale_down(&ctx).map(|d| d.node), Some(n));
        ctx.migrating_from = &cordoned;
        assert_eq!(p.scale_down(&ctx), None, "a move off it is in flight");
        let mut ctx = k.ctx(Millis(40 * MIN));
        ctx.consolidating = &cordoned;
        assert_eq!(p.scale_down(&ctx), None, "outside its release window");
    }
}
