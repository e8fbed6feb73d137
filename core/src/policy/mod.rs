//! Scaling policies behind one trait.
//!
//! The engine evaluates every `scaling.interval_s` and on demand (a start that has to
//! queue). Each evaluation first lets every policy observe the fleet, then asks for a
//! scale-up in priority order, then for a scale-down; the first answer is the one
//! action of that evaluation. The engine, not the policy, enforces safety: the cloud
//! node maximum, and that only empty, non-system, active cloud nodes are ever deleted.

mod agones;
mod cluster_autoscaler;
mod consolidation;
mod karpenter;
mod predictive;
mod reactive;
mod spare_pool;

pub use agones::AgonesBuffer;
pub use cluster_autoscaler::ClusterAutoscaler;
pub use consolidation::Consolidation;
pub use karpenter::Karpenter;
pub use predictive::Predictive;
pub use reactive::Reactive;
pub use spare_pool::SparePool;

use crate::config::{Config, ReserveConfig, ScalingConfig};
use crate::fleet::Fleet;
use crate::model::{NodeId, NodeKind, Plan, ServerId, ServerType};
use crate::node::{usable_mb, Health, Lifecycle, Node};
use crate::queue::StartQueue;
use crate::time::Millis;
use std::collections::BTreeSet;

/// Names accepted in `scaling.policies`.
pub const POLICY_NAMES: &[&str] = &[
    "seed",
    "reactive",
    "spare_pool",
    "predictive",
    "agones_buffer",
    "cluster_autoscaler",
    "karpenter",
    "consolidation",
];

static NO_NODES: BTreeSet<NodeId> = BTreeSet::new();

/// A running server, as consolidation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    pub id: ServerId,
    pub node: NodeId,
    pub ram_mb: u32,
    pub plan: Plan,
    /// Since when its last player report said 0; `None` if it has players or never
    /// reported (unknown is not zero).
    pub zero_players_since: Option<Millis>,
}

const DAY_S: u64 = 86_400;
const WEEK_S: u64 = 7 * DAY_S;

/// What a policy sees. All RAM figures are usable RAM (total minus system reserve).
pub struct ScalingContext<'a> {
    pub now: Millis,
    pub fleet: &'a Fleet,
    pub queue: &'a StartQueue,
    pub reserve: &'a ReserveConfig,
    pub catalogue: &'a [ServerType],
    pub scaling: &'a ScalingConfig,
    /// Per catalogue type: not bought before this (backoff after failed provisioning).
    pub type_backoff_until: &'a [Millis],
    /// Usable RAM of healthy, active worker nodes.
    pub healthy_usable_mb: u64,
    /// Usable RAM of worker nodes on their way (placeholders, booting VMs).
    pub coming_usable_mb: u64,
    /// RAM booked on healthy, active worker nodes.
    pub allocated_mb: u64,
    pub queued_count: usize,
    pub queued_ram_mb: u64,
    pub largest_queued_mb: u32,
    /// The largest server any healthy or coming worker node could hold when empty.
    pub largest_holdable_mb: u64,
    /// The largest server that fits somewhere right now: the most available RAM on a
    /// healthy node, or a coming node's usable RAM.
    pub largest_fit_mb: u64,
    pub cloud_nodes: u32,
    pub max_cloud_nodes: u32,
    /// Hourly price of every cloud node, placeholders and draining nodes included.
    pub cloud_eur_per_hour: f64,
    pub last_scale_up: Option<Millis>,
    pub last_scale_down: Option<Millis>,
    /// Peak demand over the sale window (below) when the last node was sold.
    pub demand_at_last_sale_mb: Option<u64>,
    /// Peak demand (allocated + queued RAM) over the sale window: the last
    /// `scaling.rebuy_cooldown_s`, or the longer hold learned from a flap while it lasts.
    pub recent_peak_demand_mb: u64,
    /// Peak demand one season (`scaling.cap_history_s`, a week) ago over the hours from
    /// now to `scaling.cap_horizon_s` ahead, once a whole season has been recorded.
    pub history_peak_demand_mb: Option<u64>,
    /// Peak demand one season ago over the hours from now to `spare_pool.trend_lead_s`
    /// ahead, once a season is known.
    pub season_ahead_mb: Option<u64>,
    /// The mean RAM of all start requests so far (0: none).
    pub mean_start_mb: u64,
    /// The last time a node's health changed.
    pub last_health_change: Option<Millis>,
    /// Nodes cordoned for consolidation (draining, not yet sold).
    pub consolidating: &'a BTreeSet<NodeId>,
    /// Nodes a server is being moved off right now.
    pub migrating_from: &'a BTreeSet<NodeId>,
    /// Running servers, by node then id; filled only when a policy asks
    /// ([`Policy::wants_servers`]), else empty.
    pub servers: &'a [ServerInfo],
}

impl<'a> ScalingContext<'a> {
    /// Sum up the fleet and the queue for one evaluation.
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        now: Millis,
        fleet: &'a Fleet,
        queue: &'a StartQueue,
        cfg: &'a Config,
        type_backoff_until: &'a [Millis],
        last_scale_up: Option<Millis>,
        last_scale_down: Option<Millis>,
        demand_at_last_sale_mb: Option<u64>,
    ) -> ScalingContext<'a> {
        let reserve = fleet.reserve();
        // The fleet keeps these current as nodes change: O(1), not a walk per evaluation.
        let shape = fleet.shape();
        let allocated = fleet.placeable_allocated_mb();
        ScalingContext {
            now,
            fleet,
            queue,
            reserve,
            catalogue: &cfg.catalogue,
            scaling: &cfg.scaling,
            type_backoff_until,
            healthy_usable_mb: fleet.placeable_usable_mb(),
            coming_usable_mb: shape.coming_usable_mb,
            allocated_mb: allocated,
            queued_count: queue.len(),
            queued_ram_mb: queue.total_ram_mb(),
            largest_queued_mb: queue.max_ram_mb(),
            largest_holdable_mb: shape.largest_holdable_mb,
            largest_fit_mb: fleet.max_available_mb().max(shape.largest_coming_mb),
            cloud_nodes: shape.cloud_nodes,
            max_cloud_nodes: cfg.scaling.max_cloud_nodes,
            cloud_eur_per_hour: shape.cloud_eur_per_hour,
            last_scale_up,
            last_scale_down,
            demand_at_last_sale_mb,
            recent_peak_demand_mb: allocated + queue.total_ram_mb(),
            history_peak_demand_mb: None,
            season_ahead_mb: None,
            mean_start_mb: 0,
            last_health_change: None,
            consolidating: &NO_NODES,
            migrating_from: &NO_NODES,
            servers: &[],
        }
    }

    pub fn worker_usable_mb(&self) -> u64 {
        self.healthy_usable_mb + self.coming_usable_mb
    }

    /// Allocated plus queued RAM: what the fleet is asked to hold.
    pub fn demand_mb(&self) -> u64 {
        self.allocated_mb + self.queued_ram_mb
    }

    /// Seconds since Monday 00:00 UTC.
    pub fn week_s(&self) -> u64 {
        (self.now.0 / 1000 + self.scaling.calendar_week_offset_s) % WEEK_S
    }

    /// UTC weekday (Monday = 0) and hour.
    pub fn weekday_hour(&self) -> (u8, u8) {
        let w = self.week_s();
        ((w / DAY_S) as u8, ((w % DAY_S) / 3600) as u8)
    }

    /// Whether catalogue type `i` may be bought now: not in provisioning backoff.
    pub fn type_available(&self, i: usize) -> bool {
        self.type_backoff_until.get(i).is_none_or(|&t| self.now >= t)
    }

    /// Whether buying type `i` keeps rented nodes within `scaling.budget_eur_per_hour`.
    pub fn type_affordable(&self, i: usize) -> bool {
        self.scaling
            .budget_eur_per_hour
            .is_none_or(|cap| self.cloud_eur_per_hour + self.catalogue[i].hourly_eur <= cap + 1e-9)
    }

    /// Types a policy may choose from: available and affordable.
    pub fn type_ok(&self, i: usize) -> bool {
        self.type_available(i) && self.type_affordable(i)
    }

    /// `choose(type_ok)`, else `choose(type_available)`: if nothing is affordable the
    /// policy still names what it needs, and the engine refuses it and counts it.
    pub fn choose_with(&self, choose: impl Fn(&dyn Fn(usize) -> bool) -> Option<usize>) -> Option<usize> {
        choose(&|i| self.type_ok(i)).or_else(|| choose(&|i| self.type_available(i)))
    }

    /// Queued servers by RAM, largest first, as (size, count).
    /// Free RAM of every worker node that can take servers now or soon (booting ones
    /// included): the bins queued servers are packed into before new nodes.
    pub fn free_bins(&self) -> Vec<u64> {
        self.fleet
            .iter()
            .filter(|n| !n.system && n.lifecycle != Lifecycle::Draining && n.health != Health::Unhealthy)
            .map(|n| n.available_mb(self.reserve))
            .collect()
    }

    pub fn queued_sizes_desc(&self) -> Vec<(u32, u32)> {
        self.queue.sizes().rev().collect()
    }

    /// The engine would delete this node now: an empty, active, probed, non-system cloud
    /// node older than `scaling.min_node_lifetime_s`.
    pub fn deletable(&self, n: &Node) -> bool {
        n.kind == NodeKind::Cloud
            && !n.system
            && n.lifecycle == Lifecycle::Active
            && n.health != Health::Unknown
            && n.is_empty()
            && self.now.since(n.registered_at) >= self.scaling.min_node_lifetime_s * 1000
    }

    /// A node cordoned for consolidation that the engine would now sell: draining, healthy,
    /// empty, no move off it in flight, older than `scaling.min_node_lifetime_s`.
    pub fn emptied(&self, n: &Node) -> bool {
        self.consolidating.contains(&n.id)
            && n.lifecycle == Lifecycle::Draining
            && n.health == Health::Healthy
            && n.is_empty()
            && !self.migrating_from.contains(&n.id)
            && self.now.since(n.registered_at) >= self.scaling.min_node_lifetime_s * 1000
    }

    /// Billing-aware release: a VM billed per started period (from its provisioning) is
    /// released only near the end of a period, since returning it earlier saves nothing.
    /// Nodes with no known billing start (owned cloud nodes) may go at any time.
    pub fn release_window_open(&self, n: &Node) -> bool {
        let sc = self.scaling;
        let Some(start) = n.provisioned_at else { return true };
        if sc.billing_period_s == 0 {
            return true;
        }
        let period_ms = sc.billing_period_s * 1000;
        let into = self.now.since(start) % period_ms;
        into >= period_ms - sc.release_window_s * 1000 && into < period_ms - sc.release_margin_s * 1000
    }

    /// Nodes a policy may release now: deletable and in their release window.
    pub fn releasable(&self) -> impl Iterator<Item = &'a Node> + '_ {
        self.fleet.empty_cloud_nodes().filter(|n| self.deletable(n) && self.release_window_open(n))
    }

    /// Nodes the engine would delete now, whatever their billing: what the peer baselines
    /// release (no reference autoscaler waits for the end of a billed hour).
    pub fn deletable_nodes(&self) -> impl Iterator<Item = &'a Node> + '_ {
        self.fleet.empty_cloud_nodes().filter(|n| self.deletable(n))
    }

    /// Worker usable RAM without `node`, less half a server of `server_mb` on each node
    /// that adds any (what packing servers of that size loses on average at a node's end).
    pub fn packed_usable_without_mb(&self, node: NodeId, server_mb: u64) -> u64 {
        self.fleet
            .iter()
            .filter(|n| n.id != node && !n.system)
            .map(|n| self.node_usable_mb(n).saturating_sub(server_mb / 2))
            .sum()
    }

    /// The usable RAM a node adds to the worker fleet (0 unless healthy or coming).
    pub fn node_usable_mb(&self, n: &Node) -> u64 {
        if n.placeable() || (n.health == Health::Unknown && n.lifecycle != Lifecycle::Draining) {
            n.usable_mb(self.reserve)
        } else {
            0
        }
    }
}

/// Why the engine refuses a policy's scale-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The type is in provisioning backoff.
    Backoff,
    /// It would push rented nodes past `scaling.budget_eur_per_hour`.
    Budget,
    /// A node was sold within `scaling.rebuy_cooldown_s` at the same or higher demand.
    Rebuy,
}

/// The engine's own checks on a scale-up, whatever the policy says.
pub fn refusal(ctx: &ScalingContext, up: &ScaleUp) -> Option<(Refusal, String)> {
    let t = &ctx.catalogue[up.server_type];
    if !ctx.type_available(up.server_type) {
        return Some((Refusal::Backoff, format!("{} is in provisioning backoff", t.name)));
    }
    if !ctx.type_affordable(up.server_type) {
        let cap = ctx.scaling.budget_eur_per_hour.unwrap_or(0.0);
        return Some((
            Refusal::Budget,
            format!(
                "{} at {:.4} EUR/h on top of {:.4} EUR/h exceeds the budget of {cap:.4} EUR/h",
                t.name, t.hourly_eur, ctx.cloud_eur_per_hour
            ),
        ));
    }
    if let (Some(sold), Some(demand)) = (ctx.last_scale_down, ctx.demand_at_last_sale_mb) {
        let fits_nowhere = u64::from(ctx.largest_queued_mb) > ctx.largest_fit_mb;
        if ctx.now.since(sold) < ctx.scaling.rebuy_cooldown_s * 1000 && ctx.demand_mb() <= demand && !fits_nowhere {
            return Some((
                Refusal::Rebuy,
                format!(
                    "a node was sold {} s ago at demand {demand} MB; demand is {} MB",
                    ctx.now.since(sold) / 1000,
                    ctx.demand_mb()
                ),
            ));
        }
    }
    None
}

/// Why a queued server needs a VM now, whatever the policy's thresholds say: no worker
/// capacity at all, a server no node could ever hold, or one no node has room for now.
pub fn urgent_need(ctx: &ScalingContext) -> Option<String> {
    if ctx.queued_count == 0 {
        return None;
    }
    if ctx.worker_usable_mb() == 0 {
        return Some(format!("{} queued server(s) and no worker capacity", ctx.queued_count));
    }
    if u64::from(ctx.largest_queued_mb) > ctx.largest_holdable_mb {
        return Some(format!(
            "queued {} MB server fits no node (largest holds {} MB)",
            ctx.largest_queued_mb, ctx.largest_holdable_mb
        ));
    }
    if u64::from(ctx.largest_queued_mb) > ctx.largest_fit_mb {
        return Some(format!(
            "queued {} MB server fits no node now (most free {} MB)",
            ctx.largest_queued_mb, ctx.largest_fit_mb
        ));
    }
    None
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleUp {
    /// Index into the catalogue.
    pub server_type: usize,
    pub reason: String,
    /// How many VMs of that type (at least one). The engine buys fewer when the cloud
    /// node maximum or the budget leaves room for fewer; `seed` always asks for one (the
    /// design's one action per cycle).
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleDown {
    pub node: NodeId,
    pub reason: String,
}

/// Empty `node`: cordon it and move each of its servers to its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Consolidate {
    pub node: NodeId,
    /// (server, target node), one per server booked on `node`.
    pub moves: Vec<(ServerId, NodeId)>,
    pub reason: String,
}

pub trait Policy {
    fn name(&self) -> &'static str;
    /// Higher is asked first.
    fn priority(&self) -> i32;
    /// Called once per evaluation before any question, so that policies can keep
    /// time-based state (e.g. how long utilization has been low).
    fn observe(&mut self, _ctx: &ScalingContext) {}
    fn scale_up(&mut self, ctx: &ScalingContext) -> Option<ScaleUp>;
    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown>;
    /// Asked before another policy's scale-down is executed: a reason to keep the node
    /// vetoes it, so that combined policies do not sell what one of them would rebuy.
    fn keep(&self, _ctx: &ScalingContext, _node: &Node) -> Option<String> {
        None
    }
    /// Whether the next `consolidate` needs `ScalingContext::servers` (gathering them
    /// costs a pass over all servers, so the engine asks first).
    fn wants_servers(&self, _ctx: &ScalingContext) -> bool {
        false
    }
    /// Asked when no policy scales up or down: a node to empty by moving its servers.
    fn consolidate(&mut self, _ctx: &ScalingContext) -> Option<Consolidate> {
        None
    }
}

/// The policies named in the configuration, highest priority first (stable for ties).
pub fn build(cfg: &Config) -> Vec<Box<dyn Policy>> {
    let mut out: Vec<Box<dyn Policy>> = cfg
        .scaling
        .policies
        .iter()
        .map(|name| -> Box<dyn Policy> {
            match name.as_str() {
                "seed" => Box::new(Reactive::seed(cfg.seed.clone())),
                "reactive" => Box::new(Reactive::new(cfg.reactive.clone())),
                "spare_pool" => Box::new(SparePool::new(cfg.spare_pool.clone())),
                "agones_buffer" => Box::new(AgonesBuffer::new(cfg.agones_buffer.clone())),
                "cluster_autoscaler" => Box::new(ClusterAutoscaler::new(cfg.cluster_autoscaler.clone())),
                "karpenter" => Box::new(Karpenter::new(cfg.karpenter.clone())),
                "predictive" => Box::new(Predictive::new(cfg.predictive.clone(), cfg.reactive.clone())),
                "consolidation" => Box::new(Consolidation::new(cfg.consolidation.clone())),
                other => unreachable!("Config::validate rejects unknown policy {other:?}"),
            }
        })
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.priority()));
    out
}

/// Usable RAM of an empty node of this type hosting one server.
pub fn type_usable_mb(t: &ServerType, reserve: &ReserveConfig) -> u64 {
    usable_mb(t.ram_mb, 1, reserve)
}

/// The VM type to buy for the queued demand: the cheapest (hourly) type whose usable
/// RAM holds all queued RAM; if none does, the best price per usable GB among the
/// types that hold the largest queued server. `None` if no type holds it. Ties break
/// by catalogue order.
pub fn choose_type(
    catalogue: &[ServerType],
    reserve: &ReserveConfig,
    queued_ram_mb: u64,
    largest_mb: u32,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let holds_largest = |t: &ServerType| type_usable_mb(t, reserve) >= u64::from(largest_mb);
    let whole = catalogue
        .iter()
        .enumerate()
        .filter(|&(i, t)| ok(i) && holds_largest(t) && type_usable_mb(t, reserve) >= queued_ram_mb)
        .min_by(|(ia, a), (ib, b)| a.hourly_eur.total_cmp(&b.hourly_eur).then(ia.cmp(ib)));
    if let Some((i, _)) = whole {
        return Some(i);
    }
    best_per_gb(catalogue, reserve, u64::from(largest_mb), ok)
}

/// The type with the lowest hourly price per usable GB among those with at least
/// `min_usable_mb` usable; ties break by catalogue order.
pub fn best_per_gb(
    catalogue: &[ServerType],
    reserve: &ReserveConfig,
    min_usable_mb: u64,
    ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let per_gb = |t: &ServerType| t.hourly_eur / (type_usable_mb(t, reserve) as f64 / 1024.0);
    catalogue
        .iter()
        .enumerate()
        .filter(|&(i, t)| ok(i) && type_usable_mb(t, reserve) >= min_usable_mb)
        .min_by(|(ia, a), (ib, b)| per_gb(a).total_cmp(&per_gb(b)).then(ia.cmp(ib)))
        .map(|(i, _)| i)
}

/// The VM type for `demand_mb` of new capacity (at least one server of `largest_mb`):
/// the lowest price per usable GB *that the demand fills*, i.e. price / min(usable,
/// demand). A type larger than the demand pays for RAM nobody asked for; once no type
/// holds the demand this is plain price per usable GB. Only types the context allows
/// (not in backoff, within budget) are chosen; ties go to the cheaper, then catalogue order.
///
/// Under the cloud node maximum small types can leave demand unservable: the fleet that
/// the remaining node slots allow, filled with the chosen type, must hold
/// `scaling.cap_headroom` times today's demand (allocated + queued, or the recent peak) and
/// this request's demand. When the best-scoring type cannot, the choice is restricted to
/// types that can (the best score among them), or else the type with the most usable RAM.
/// Once the engine has a season of demand history (`scaling.cap_history_s`, a week), the
/// fleet must instead hold `scaling.cap_history_margin` times the peak demand the coming
/// `scaling.cap_horizon_s` had one season ago (or today's, if higher): the peak that comes
/// back is known, so no guess about it is needed.
pub fn choose_for_demand(ctx: &ScalingContext, demand_mb: u64, largest_mb: u32) -> Option<usize> {
    let need = demand_mb.max(u64::from(largest_mb)).max(1);
    let slots = u64::from(ctx.max_cloud_nodes.saturating_sub(ctx.cloud_nodes).max(1));
    let today = ctx.demand_mb().max(ctx.recent_peak_demand_mb);
    let expected = match ctx.history_peak_demand_mb {
        Some(peak) => peak.max(today) as f64 * ctx.scaling.cap_history_margin,
        None => {
            // The fewer slots are left, the more each one must hold: the headroom grows
            // from `cap_headroom` with no cloud node to twice that at the maximum.
            let used = f64::from(ctx.cloud_nodes) / f64::from(ctx.max_cloud_nodes.max(1));
            today as f64 * ctx.scaling.cap_headroom * (1.0 + used.min(1.0))
        }
    };
    let must_hold = (expected as u64).max(ctx.worker_usable_mb() + need);
    let reachable = |t: &ServerType| ctx.worker_usable_mb() + slots * type_usable_mb(t, ctx.reserve);
    let score = |t: &ServerType| t.hourly_eur / (type_usable_mb(t, ctx.reserve).min(need) as f64 / 1024.0);
    let best = |ok: &dyn Fn(usize) -> bool, within_slots: bool| {
        ctx.catalogue
            .iter()
            .enumerate()
            .filter(|&(i, t)| ok(i) && type_usable_mb(t, ctx.reserve) >= u64::from(largest_mb))
            .filter(|&(_, t)| !within_slots || reachable(t) >= must_hold)
            .min_by(|(ia, a), (ib, b)| {
                score(a).total_cmp(&score(b)).then(a.hourly_eur.total_cmp(&b.hourly_eur)).then(ia.cmp(ib))
            })
            .map(|(i, _)| i)
    };
    let largest = |ok: &dyn Fn(usize) -> bool| {
        ctx.catalogue
            .iter()
            .enumerate()
            .filter(|&(i, t)| ok(i) && type_usable_mb(t, ctx.reserve) >= u64::from(largest_mb))
            .max_by(|(ia, a), (ib, b)| {
                type_usable_mb(a, ctx.reserve).cmp(&type_usable_mb(b, ctx.reserve)).then(ib.cmp(ia))
            })
            .map(|(i, _)| i)
    };
    ctx.choose_with(|ok| best(&ok, true).or_else(|| largest(&ok)))
}

/// How many new VMs of type `i` the queued servers need: first-fit decreasing into the
/// free room of the nodes that can take servers (booting ones included), then into new
/// nodes of that type. At least one.
pub fn vms_for_queue(ctx: &ScalingContext, i: usize) -> u32 {
    let (new_nodes, _) =
        ffd(&ctx.queued_sizes_desc(), &mut ctx.free_bins(), type_usable_mb(&ctx.catalogue[i], ctx.reserve));
    new_nodes.max(1)
}

/// How many VMs of type `i` cover `deficit_mb` of usable RAM. At least one.
pub fn vms_for_mb(ctx: &ScalingContext, i: usize, deficit_mb: u64) -> u32 {
    let usable = type_usable_mb(&ctx.catalogue[i], ctx.reserve).max(1);
    u32::try_from(deficit_mb.div_ceil(usable)).unwrap_or(u32::MAX).max(1)
}

/// First-fit decreasing of `sizes` (size, count; largest first) into `bins` (free MB
/// each), opening new bins of `new_bin_mb`; returns how many new bins were opened and
/// the RAM placed in the first new one. Sizes larger than a new bin are skipped.
pub fn ffd(sizes: &[(u32, u32)], bins: &mut Vec<u64>, new_bin_mb: u64) -> (u32, u64) {
    let existing = bins.len();
    let mut first_new_mb = 0;
    for &(size, count) in sizes {
        let size = u64::from(size);
        // Bins before `i` cannot hold `size`, and bins only shrink: each size's scan
        // resumes where the last one of that size stopped (the same first fit, in
        // O(bins + count) per size instead of O(bins * count)).
        let mut i = 0;
        for _ in 0..count {
            while i < bins.len() && bins[i] < size {
                i += 1;
            }
            if let Some(b) = bins.get_mut(i) {
                *b -= size;
                continue;
            }
            if size > new_bin_mb {
                break;
            }
            bins.push(new_bin_mb - size);
        }
    }
    if bins.len() > existing {
        first_new_mb = new_bin_mb - bins[existing];
    }
    ((bins.len() - existing) as u32, first_new_mb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::default_catalogue;

    /// The textbook first fit decreasing, one scan from the first bin per item.
    fn ffd_naive(sizes: &[(u32, u32)], bins: &mut Vec<u64>, new_bin_mb: u64) -> (u32, u64) {
        let existing = bins.len();
        for &(size, count) in sizes {
            let size = u64::from(size);
            for _ in 0..count {
                if let Some(b) = bins.iter_mut().find(|b| **b >= size) {
                    *b -= size;
                    continue;
                }
                if size > new_bin_mb {
                    break;
                }
                bins.push(new_bin_mb - size);
            }
        }
        let first = if bins.len() > existing { new_bin_mb - bins[existing] } else { 0 };
        ((bins.len() - existing) as u32, first)
    }

    #[test]
    fn ffd_with_resumed_scans_packs_exactly_like_the_textbook_one() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..2_000 {
            let tiers = [2048u32, 4096, 8192, 16384, 32768];
            let mut sizes: Vec<(u32, u32)> = Vec::new();
            for &t in &tiers {
                if next(2) == 0 {
                    sizes.push((t, next(40) as u32));
                }
            }
            sizes.sort_by(|a, b| b.0.cmp(&a.0));
            let n = next(30);
            let bins: Vec<u64> = (0..n).map(|_| next(40_000)).collect();
            let new_bin = [3096u64, 6964, 13927, 55706][next(4) as usize];
            let (mut a, mut b) = (bins.clone(), bins);
            assert_eq!(ffd(&sizes, &mut a, new_bin), ffd_naive(&sizes, &mut b, new_bin), "{sizes:?}");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn the_rest_of_the_fleet_loses_half_a_server_per_node_to_fragmentation() {
        use super::testkit::Kit;
        let mut k = Kit::new(Config::default());
        // Usable 20000 - 3000 = 17000 and 8192 - 1228 = 6964.
        let a = k.node(NodeKind::Dedicated, 20000, 0, Millis::ZERO);
        let b = k.node(NodeKind::Cloud, 8192, 0, Millis::ZERO);
        let ctx = k.ctx(Millis::ZERO);
        assert_eq!(ctx.packed_usable_without_mb(b, 0), 17000);
        assert_eq!(ctx.packed_usable_without_mb(b, 4096), 17000 - 2048);
        assert_eq!(ctx.packed_usable_without_mb(a, 4096), 6964 - 2048);
        assert_eq!(ctx.packed_usable_without_mb(NodeId(99), 2048), 17000 - 1024 + 6964 - 1024);
    }

    #[test]
    fn type_choice_holds_the_whole_queue_or_the_largest_server() {
        let cat = default_catalogue();
        let r = ReserveConfig::default();
        let name = |i: Option<usize>| i.map(|i| cat[i].name.as_str());
        // cpx22 (4096) is usable 3096: one 2 GB server fits.
        let choose_type = |q, l| super::choose_type(&cat, &r, q, l, |_| true);
        assert_eq!(name(choose_type(2048, 2048)), Some("cpx22"));
        // 3 x 2 GB = 6 GB: cpx32 usable 8192-1228 = 6964.
        assert_eq!(name(choose_type(6144, 2048)), Some("cpx32"));
        // One 16 GB server: cpx42 usable 13927 is too small; cpx52 usable 20890 holds it.
        assert_eq!(name(choose_type(16384, 16384)), Some("cpx52"));
        // A 32 GB server: only ccx43 (usable 55706) holds it.
        assert_eq!(name(choose_type(32768, 32768)), Some("ccx43"));
        // 200 GB queued of 4 GB servers: nothing holds it all -> best price per usable GB.
        let best = choose_type(200 * 1024, 4096).unwrap();
        let per_gb = |t: &ServerType| t.hourly_eur / (type_usable_mb(t, &r) as f64 / 1024.0);
        for t in &cat {
            assert!(per_gb(&cat[best]) <= per_gb(t));
        }
        assert_eq!(choose_type(100_000, 100_000), None);
    }
}

/// A fleet, a queue and a configuration to build contexts from in policy unit tests.
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    use crate::model::{Plan, ServerId, UserId};
    use crate::node::NodeSpec;
    use crate::queue::QueueEntry;
    use std::collections::BTreeMap;

    pub struct Kit {
        pub fleet: Fleet,
        pub queue: StartQueue,
        pub cfg: Config,
        pub backoff: Vec<Millis>,
        pub last_up: Option<Millis>,
        pub last_down: Option<Millis>,
        next_server: u64,
    }

    impl Kit {
        pub fn new(cfg: Config) -> Kit {
            let backoff = vec![Millis::ZERO; cfg.catalogue.len()];
            Kit {
                fleet: Fleet::new(cfg.reserve.clone(), cfg.placement.strategy),
                queue: StartQueue::new(),
                cfg,
                backoff,
                last_up: None,
                last_down: None,
                next_server: 1,
            }
        }

        /// A healthy worker with `allocated_mb` booked in one server.
        pub fn node(&mut self, kind: NodeKind, ram_mb: u32, allocated_mb: u32, at: Millis) -> NodeId {
            let spec = NodeSpec {
                name: format!("n{}", self.fleet.len()),
                address: String::new(),
                kind,
                system: false,
                total_ram_mb: ram_mb,
                cores: 4,
                hourly_eur: if kind == NodeKind::Cloud { 0.03 } else { 0.0 },
                labels: BTreeMap::new(),
                provider_id: None,
                server_type: None,
            };
            let id = self.fleet.register(spec, at);
            self.fleet.update(id, |n| {
                n.health = Health::Healthy;
                if kind == NodeKind::Cloud {
                    n.provisioned_at = Some(at);
                }
            });
            if allocated_mb > 0 {
                self.fleet.bind(id, allocated_mb);
            }
            id
        }

        pub fn queue(&mut self, ram_mb: u32) {
            let seq = self.queue.tail_seq();
            let id = self.next_server;
            self.next_server += 1;
            self.queue.insert(QueueEntry {
                server: ServerId(id),
                ram_mb,
                plan: Plan::PayPerPlay,
                user: UserId(id),
                seq,
                queued_at: Millis::ZERO,
                deadline: Millis::MAX,
                not_before: Millis::ZERO,
            });
        }

        pub fn ctx(&self, now: Millis) -> ScalingContext<'_> {
            ScalingContext::gather(
                now,
                &self.fleet,
                &self.queue,
                &self.cfg,
                &self.backoff,
                self.last_up,
                self.last_down,
                None,
            )
        }
    }
}
