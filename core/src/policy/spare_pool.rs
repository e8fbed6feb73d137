//! Warm headroom (the design's spare pool, with Agones' buffer arithmetic).
//!
//! Headroom is usable RAM of healthy and coming workers minus allocated and queued RAM.
//! The target is the larger of `buffer_mb` and the percentage buffer: with P % the
//! fleet should hold allocated / (1 − P) (Agones' `ceil(allocated*100/(100-P))`), so the
//! headroom target is that minus allocated. A calendar override (weekday and UTC hour
//! window, the first that matches) replaces both numbers, e.g. the design's "3 spares
//! on Friday and Saturday, 1 otherwise". A trend can raise the target further: the
//! growth of queued plus booked RAM since the newest evaluation at least `trend_window_s`
//! ago, less `trend_noise_mb`, as a rate over at least the window, times `trend_lead_s`
//! (what arrives while a VM boots): it buys ahead of a rise instead of keeping a share of
//! the whole fleet idle. The trend is at most `trend_max_percent` of the load, is 0 for
//! `trend_warmup_s` after a first look at an empty fleet (the standing load coming up is
//! no rise) and, once a week of demand is recorded, stops at `trend_season_margin` times
//! last week's peak over the lead time.
//!
//! Buys while headroom is below the target or fewer than `min_nodes` cloud nodes exist
//! (up to `max_nodes` cloud nodes), as many VMs as the deficit (or the minimum) needs.
//! Releases an empty cloud node once headroom without it has stayed at or above the
//! target, and no less than the highest trend target of the last
//! `scaling.rebuy_cooldown_s`, for `scale_down_sustain_s`; vetoes other policies' sales
//! that would take headroom below that.

use super::{choose_for_demand, Policy, ScaleDown, ScaleUp, ScalingContext};
use crate::config::{SparePoolConfig, WEEKDAYS};
use crate::model::NodeKind;
use crate::node::{Lifecycle, Node};
use crate::time::Millis;
use std::collections::VecDeque;

pub struct SparePool {
    cfg: SparePoolConfig,
    /// Since when headroom has exceeded the target by at least the smallest cloud node.
    surplus_since: Option<Millis>,
    /// Demand (booked + queued) seen at each evaluation, oldest first: those within
    /// `trend_window_s` and the newest one before it.
    demand_seen: VecDeque<(Millis, u64)>,
    /// Trend targets of the last `scaling.rebuy_cooldown_s`, a sliding maximum (times
    /// ascending, values descending): capacity the trend asked for is not sold within
    /// the engine's anti-flapping window, so an oscillating load is not bought and sold
    /// each cycle.
    trend_seen: VecDeque<(Millis, u64)>,
    /// Whether an evaluation was seen yet.
    looked: bool,
    /// No trend before this: the pool's first look found an empty fleet (demand within
    /// `trend_noise_mb`), so what arrives next is the standing load coming up.
    cold_until: Millis,
}

impl SparePool {
    pub fn new(cfg: SparePoolConfig) -> SparePool {
        SparePool {
            cfg,
            surplus_since: None,
            demand_seen: VecDeque::new(),
            trend_seen: VecDeque::new(),
            looked: false,
            cold_until: Millis::ZERO,
        }
    }

    /// Cloud nodes that count towards `min_nodes`: coming and active ones, not those
    /// already being deleted (several sales in one evaluation would sell through it).
    fn kept_cloud_nodes(ctx: &ScalingContext) -> u32 {
        ctx.fleet.shape().cloud_kept
    }

    /// Headroom for the demand's recent rise: its growth since the newest sample at least
    /// a window old, less `trend_noise_mb`, as a rate (over at least the window), times
    /// the lead time. 0 when demand fell, grew by no more than the noise, or the trend is
    /// off.
    pub fn trend_mb(&self, ctx: &ScalingContext) -> u64 {
        if self.cfg.trend_lead_s == 0 {
            return 0;
        }
        if ctx.now < self.cold_until {
            return 0;
        }
        let Some(&(t0, d0)) = self.demand_seen.front() else { return 0 };
        // Never a rate over less than the window: a burst right after the first sample
        // (at start, after a pause) would otherwise be extrapolated many times over.
        let elapsed = ctx.now.since(t0).max(self.cfg.trend_window_s * 1000).max(1);
        let booked = Self::booked_mb(ctx);
        let growth = booked.saturating_sub(d0).saturating_sub(self.cfg.trend_noise_mb);
        let lead_ms = self.cfg.trend_lead_s * 1000;
        let trend = u64::try_from(u128::from(growth) * u128::from(lead_ms) / u128::from(elapsed)).unwrap_or(u64::MAX);
        let mut cap = (booked as f64 * self.cfg.trend_max_percent / 100.0) as u64;
        if let (Some(ahead), true) = (ctx.season_ahead_mb, self.cfg.trend_season_margin > 0.0) {
            // Last week's demand over the lead time says how far the rise goes.
            cap = cap.min(((ahead as f64 * self.cfg.trend_season_margin) as u64).saturating_sub(booked));
        }
        trend.min(cap)
    }

    /// Demand for the trend: queued RAM plus RAM booked on any node. Unlike the
    /// headroom's demand it does not dip when a node turns unhealthy, so servers coming
    /// back from a lost node are not read as a rise.
    fn booked_mb(ctx: &ScalingContext) -> u64 {
        ctx.queued_ram_mb + ctx.fleet.allocated_mb()
    }

    /// The headroom target in MB for this moment of the week: what a purchase aims at.
    pub fn target_mb(&self, ctx: &ScalingContext) -> u64 {
        self.base_mb(ctx).max(self.trend_mb(ctx))
    }

    /// The headroom a sale must leave: the target, and no less than any trend target of
    /// the last `scaling.rebuy_cooldown_s`.
    pub fn keep_target_mb(&self, ctx: &ScalingContext) -> u64 {
        let held = self
            .trend_seen
            .front()
            .filter(|&&(t, _)| ctx.now.since(t) < ctx.scaling.rebuy_cooldown_s * 1000)
            .map_or(0, |&(_, v)| v);
        self.target_mb(ctx).max(held)
    }

    /// The buffer and percentage part of the target.
    fn base_mb(&self, ctx: &ScalingContext) -> u64 {
        let (day, hour) = ctx.weekday_hour();
        let (buffer_mb, pct) = self
            .cfg
            .overrides
            .iter()
            .find(|o| {
                (o.days.is_empty() || o.days.iter().any(|d| d == WEEKDAYS[day as usize]))
                    && (o.hour_from..o.hour_to).contains(&hour)
            })
            .map_or((self.cfg.buffer_mb, self.cfg.buffer_percent), |o| (o.buffer_mb, o.buffer_percent));
        buffer_mb.max(percent_headroom_mb(ctx.allocated_mb, pct))
    }

    fn headroom_mb(ctx: &ScalingContext) -> i64 {
        ctx.worker_usable_mb() as i64 - ctx.demand_mb() as i64
    }

    /// The longest-empty cloud node whose removal keeps the headroom target; with
    /// `now` only one in its release window.
    fn spare<'a>(&self, ctx: &ScalingContext<'a>, target: u64, now: bool) -> Option<&'a Node> {
        let headroom = Self::headroom_mb(ctx);
        ctx.fleet
            .empty_cloud_nodes()
            .filter(|n| ctx.deletable(n) && (!now || ctx.release_window_open(n)))
            .filter(|n| headroom - ctx.node_usable_mb(n) as i64 >= target as i64)
            .min_by_key(|n| (n.empty_since, n.id))
    }
}

/// Headroom a percentage buffer asks for: allocated / (1 − pct) − allocated.
pub fn percent_headroom_mb(allocated_mb: u64, pct: f64) -> u64 {
    if pct <= 0.0 {
        return 0;
    }
    let desired = (allocated_mb as f64 * 100.0 / (100.0 - pct)).ceil() as u64;
    desired - allocated_mb
}

impl Policy for SparePool {
    fn name(&self) -> &'static str {
        "spare_pool"
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    fn observe(&mut self, ctx: &ScalingContext) {
        if !self.looked {
            self.looked = true;
            if Self::booked_mb(ctx) <= self.cfg.trend_noise_mb {
                self.cold_until = Millis(ctx.now.0 + self.cfg.trend_warmup_s * 1000);
            }
        }
        if self.cfg.trend_lead_s > 0 {
            // Keep the newest sample at least a window old as the reference.
            let window_ms = self.cfg.trend_window_s * 1000;
            while self.demand_seen.get(1).is_some_and(|&(t, _)| ctx.now.since(t) >= window_ms) {
                self.demand_seen.pop_front();
            }
            if self.demand_seen.back().is_none_or(|&(t, _)| t < ctx.now) {
                self.demand_seen.push_back((ctx.now, Self::booked_mb(ctx)));
            }
            let trend = self.trend_mb(ctx);
            let hold_ms = ctx.scaling.rebuy_cooldown_s * 1000;
            while self.trend_seen.front().is_some_and(|&(t, _)| ctx.now.since(t) >= hold_ms) {
                self.trend_seen.pop_front();
            }
            while self.trend_seen.back().is_some_and(|&(_, v)| v <= trend) {
                self.trend_seen.pop_back();
            }
            if trend > 0 {
                self.trend_seen.push_back((ctx.now, trend));
            }
        }
        let target = self.keep_target_mb(ctx);
        if ctx.queued_count == 0 && self.spare(ctx, target, false).is_some() {
            self.surplus_since.get_or_insert(ctx.now);
        } else {
            self.surplus_since = None;
        }
    }

    fn scale_up(&mut self, ctx: &ScalingContext) -> Option<ScaleUp> {
        let target = self.target_mb(ctx);
        let headroom = Self::headroom_mb(ctx);
        let short_nodes = self.cfg.min_nodes.min(self.cfg.max_nodes).saturating_sub(Self::kept_cloud_nodes(ctx));
        if (headroom >= target as i64 && short_nodes == 0) || ctx.cloud_nodes >= self.cfg.max_nodes {
            return None;
        }
        let deficit = (target as i64 - headroom).max(0) as u64;
        let i = choose_for_demand(ctx, deficit.max(1), ctx.largest_queued_mb)?;
        let count = super::vms_for_mb(ctx, i, deficit)
            .max(short_nodes)
            .min(self.cfg.max_nodes.saturating_sub(ctx.cloud_nodes).max(1));
        let reason = if headroom < target as i64 {
            format!("headroom {headroom} MB below the spare target {target} MB")
        } else {
            format!("{} cloud node(s), below spare_pool.min_nodes {}", ctx.cloud_nodes, self.cfg.min_nodes)
        };
        Some(ScaleUp { server_type: i, reason, count })
    }

    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown> {
        let since = self.surplus_since?;
        if ctx.now.since(since) < self.cfg.scale_down_sustain_s * 1000 {
            return None;
        }
        if Self::kept_cloud_nodes(ctx) <= self.cfg.min_nodes {
            return None;
        }
        let target = self.keep_target_mb(ctx);
        let node = self.spare(ctx, target, true)?;
        Some(ScaleDown {
            node: node.id,
            reason: format!(
                "headroom {} MB stays above the spare target {target} MB without {}",
                Self::headroom_mb(ctx),
                node.name
            ),
        })
    }

    fn keep(&self, ctx: &ScalingContext, node: &Node) -> Option<String> {
        if self.cfg.min_nodes > 0 && node.kind == NodeKind::Cloud && node.lifecycle != Lifecycle::Draining {
            let cloud = Self::kept_cloud_nodes(ctx);
            if cloud <= self.cfg.min_nodes {
                return Some(format!("spare_pool: {cloud} cloud node(s), min_nodes {}", self.cfg.min_nodes));
            }
        }
        let target = self.keep_target_mb(ctx);
        let without = Self::headroom_mb(ctx) - ctx.node_usable_mb(node) as i64;
        (without < target as i64).then(|| format!("spare_pool: headroom without it {without} MB < {target} MB"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use super::*;
    use crate::config::{Config, SpareOverride};

    const MIN: u64 = 60_000;
    const DAY: u64 = 24 * 60 * MIN;

    #[test]
    fn percentage_buffer_is_agones_arithmetic() {
        assert_eq!(percent_headroom_mb(0, 20.0), 0);
        // 8000 allocated at 20 %: desired 10000, headroom 2000.
        assert_eq!(percent_headroom_mb(8000, 20.0), 2000);
        assert_eq!(percent_headroom_mb(1000, 0.0), 0);
        // ceil(1000 * 100 / 70) = 1429.
        assert_eq!(percent_headroom_mb(1000, 30.0), 429);
    }

    #[test]
    fn min_nodes_are_bought_and_kept_whatever_the_headroom() {
        let mut cfg = Config::default();
        cfg.spare_pool.overrides.clear();
        cfg.spare_pool.min_nodes = 2;
        let mut k = Kit::new(cfg);
        // Plenty of owned headroom: only the minimum asks for VMs.
        k.node(NodeKind::Dedicated, 65536, 0, Millis::ZERO);
        let mut p = SparePool::new(k.cfg.spare_pool.clone());
        let up = p.scale_up(&k.ctx(Millis(10 * MIN))).expect("no cloud node, min_nodes 2");
        assert_eq!(up.count, 2, "{}", up.reason);
        assert!(up.reason.contains("min_nodes 2"), "{}", up.reason);
        let a = k.node(NodeKind::Cloud, 8192, 0, Millis::ZERO);
        let up = p.scale_up(&k.ctx(Millis(10 * MIN))).expect("one short");
        assert_eq!(up.count, 1);
        k.node(NodeKind::Cloud, 8192, 0, Millis::ZERO);
        let ctx = k.ctx(Millis(10 * MIN));
        assert_eq!(p.scale_up(&ctx), None);
        assert!(p.keep(&ctx, ctx.fleet.get(a).unwrap()).is_some(), "another policy may not sell below the minimum");
        // A third node while one is being deleted: the two others are the minimum.
        let c = k.node(NodeKind::Cloud, 8192, 0, Millis::ZERO);
        let ctx = k.ctx(Millis(10 * MIN));
        assert!(p.keep(&ctx, ctx.fleet.get(c).unwrap()).is_none(), "three nodes, one above the minimum");
        k.fleet.update(c, |n| n.lifecycle = Lifecycle::Draining);
        let ctx = k.ctx(Millis(10 * MIN));
        assert!(p.keep(&ctx, ctx.fleet.get(a).unwrap()).is_some(), "the draining node is already gone");
        // Never past max_nodes.
        let mut cfg = Config::default();
        cfg.spare_pool.min_nodes = 5;
        cfg.spare_pool.max_nodes = 1;
        let mut k = Kit::new(cfg);
        k.node(NodeKind::Dedicated, 65536, 0, Millis::ZERO);
        let mut p = SparePool::new(k.cfg.spare_pool.clone());
        assert_eq!(p.scale_up(&k.ctx(Millis(10 * MIN))).map(|u| u.count), Some(1));
    }

    #[test]
    fn buys_below_the_calendar_target_and_releases_only_surplus() {
        let mut cfg = Config::default();
        cfg.spare_pool.overrides = vec![SpareOverride {
            days: vec!["fri".into(), "sat".into()],
            hour_from: 0,
            hour_to: 24,
            buffer_mb: 3 * 4096,
            buffer_percent: 0.0,
        }];
        let mut k = Kit::new(cfg);
        // Usable 20000 - 3000 = 17000, 9000 allocated: 8000 headroom.
        k.node(NodeKind::Dedicated, 20000, 9000, Millis::ZERO);
        let mut p = SparePool::new(k.cfg.spare_pool.clone());
        // Monday (engine time 0 is a Monday 00:00): 4096 target, 8000 headroom.
        let ctx = k.ctx(Millis(10 * MIN));
        assert_eq!(p.target_mb(&ctx), 4096);
        assert_eq!(p.scale_up(&ctx), None);
        // Friday: 12288 target.
        let ctx = k.ctx(Millis(4 * DAY + 10 * MIN));
        assert_eq!(p.target_mb(&ctx), 12288);
        let up = p.scale_up(&ctx).expect("deficit 4288 MB");
        assert!(up.reason.contains("below the spare target 12288"), "{}", up.reason);
        // A queued server eats headroom.
        k.queue(6000);
        assert!(p.scale_up(&k.ctx(Millis(10 * MIN))).is_some(), "2000 MB headroom on a Monday");

        // Monday with a 16 GB cloud node on top: 8000 + 13926 headroom, target 4096.
        let mut k = Kit::new(Config::default());
        k.node(NodeKind::Dedicated, 20000, 9000, Millis::ZERO);
        let cloud = k.node(NodeKind::Cloud, 16384, 0, Millis::ZERO);
        let mut p = SparePool::new(k.cfg.spare_pool.clone());
        for m in [40, 50] {
            let ctx = k.ctx(Millis(m * MIN));
            p.observe(&ctx);
            assert_eq!(p.scale_down(&ctx), None, "at {m} min: not sustained or outside the release window");
        }
        let ctx = k.ctx(Millis(56 * MIN));
        p.observe(&ctx);
        assert_eq!(p.scale_down(&ctx).map(|d| d.node), Some(cloud));
        // On Friday the node is needed: no release, and other policies' sales are vetoed.
        let ctx = k.ctx(Millis(4 * DAY + 56 * MIN));
        let node = k.fleet.get(cloud).unwrap();
        assert!(p.keep(&ctx, node).is_some());
    }

    /// A 1000 MB buffer and a trend of growth over 5 minutes, 7.5 minutes ahead, no
    /// noise, capped at the load itself.
    fn trend_cfg() -> Config {
        let mut cfg = Config::default();
        cfg.spare_pool.buffer_mb = 1000;
        cfg.spare_pool.overrides.clear();
        cfg.spare_pool.trend_lead_s = 450;
        cfg.spare_pool.trend_window_s = 300;
        cfg.spare_pool.trend_noise_mb = 0;
        cfg.spare_pool.trend_max_percent = 100.0;
        cfg
    }

    #[test]
    fn a_rise_is_extrapolated_over_the_lead_time_and_a_fall_or_a_lull_asks_nothing() {
        let mut cfg = trend_cfg();
        cfg.spare_pool.trend_warmup_s = 0;
        let mut k = Kit::new(cfg);
        k.node(NodeKind::Dedicated, 100_000, 10_000, Millis::ZERO);
        let mut p = SparePool::new(k.cfg.spare_pool.clone());
        p.observe(&k.ctx(Millis::ZERO));
        assert_eq!(p.target_mb(&k.ctx(Millis::ZERO)), 1000, "no history: the buffer");
        // 6000 MB more demand (queued) in 300 s: 20 MB/s for 450 s.
        k.queue(6000);
        let ctx = k.ctx(Millis(5 * MIN));
        assert_eq!(p.trend_mb(&ctx), 9000);
        assert_eq!(p.target_mb(&ctx), 9000);
        // The same fleet before the queue, for policies that first observe it then.
        let mut k0 = Kit::new(k.cfg.clone());
        k0.node(NodeKind::Dedicated, 100_000, 10_000, Millis::ZERO);
        // Never more than trend_max_percent of the load (16000 MB booked and queued).
        let mut capped = p.cfg.clone();
        capped.trend_max_percent = 25.0;
        let mut c = SparePool::new(capped);
        c.observe(&k.ctx(Millis::ZERO));
        assert_eq!(c.trend_mb(&ctx), 0, "the queue was there at 0 in this kit");
        let mut c = SparePool::new(c.cfg.clone());
        c.observe(&k0.ctx(Millis::ZERO));
        assert_eq!(c.trend_mb(&ctx), 4000, "25 % of 16000, not 9000");
        // Last week's demand over the lead time caps it: at most 0.9 x 20000 = 18000 MB
        // of load, i.e. 2000 MB above the 16000 booked and queued now; no history, no cap.
        let mut seasonal = k.ctx(Millis(5 * MIN));
        seasonal.season_ahead_mb = Some(20_000);
        assert_eq!(p.trend_mb(&seasonal), 2000, "the rise stops where it stopped last week");
        seasonal.season_ahead_mb = Some(15_000);
        assert_eq!(p.trend_mb(&seasonal), 0, "already past last week's demand");
        let mut unseasonal = p.cfg.clone();
        unseasonal.trend_season_margin = 0.0;
        let mut u = SparePool::new(unseasonal);
        u.observe(&k0.ctx(Millis::ZERO));
        assert_eq!(u.trend_mb(&seasonal), 9000, "margin 0: the cap is off");
        // With 2000 MB of it noise: 4000 MB in 300 s.
        let mut noisy = p.cfg.clone();
        noisy.trend_noise_mb = 2000;
        let mut q = SparePool::new(noisy);
        q.observe(&k.ctx(Millis::ZERO));
        assert_eq!(q.trend_mb(&ctx), 0, "the queue was there at 0 in this kit");
        let mut q = SparePool::new(q.cfg.clone());
        q.observe(&k0.ctx(Millis::ZERO));
        assert_eq!(q.trend_mb(&ctx), 6000);
        // A burst a second after the first sample is a rate over the window, not over 1 s.
        let mut r = SparePool::new(p.cfg.clone());
        r.observe(&k0.ctx(Millis::ZERO));
        assert_eq!(r.trend_mb(&k.ctx(Millis(1000))), 9000);
        // The headroom (100000 - 15000 reserve - 16000 demand) covers it: no purchase.
        assert_eq!(p.scale_up(&ctx), None);
        p.observe(&ctx);
        // At 15 min, 3000 MB more: the reference is the newest sample at least a window old
        // (5 min, 16000 MB) and the rate is over the 10 minutes since: 3000 x 450 / 600.
        k.queue(3000);
        let ctx = k.ctx(Millis(15 * MIN));
        p.observe(&ctx);
        assert_eq!(p.trend_mb(&ctx), 2250);
        // Ten minutes more without a change: purchases aim at the buffer again, but a sale
        // must leave the trend's 9000 MB of 5 minutes ago until the rebuy cooldown (30
        // min) has passed since: capacity bought for a rise is not sold and bought again.
        let ctx = k.ctx(Millis(25 * MIN));
        p.observe(&ctx);
        assert_eq!(p.trend_mb(&ctx), 0);
        assert_eq!(p.target_mb(&ctx), 1000);
        assert_eq!(p.keep_target_mb(&ctx), 9000);
        let ctx = k.ctx(Millis(35 * MIN + 1));
        p.observe(&ctx);
        assert_eq!(p.keep_target_mb(&ctx), 2250, "the 15-minute trend is held until 45 min");
        let ctx = k.ctx(Millis(45 * MIN + 1));
        p.observe(&ctx);
        assert_eq!(p.keep_target_mb(&ctx), 1000);
        // A fall asks for nothing either.
        let mut k2 = Kit::new(k.cfg.clone());
        k2.node(NodeKind::Dedicated, 100_000, 10_000, Millis::ZERO);
        k2.queue(6000);
        let mut p = SparePool::new(k.cfg.spare_pool.clone());
        p.observe(&k2.ctx(Millis::ZERO));
        let mut k3 = Kit::new(k.cfg.clone());
        k3.node(NodeKind::Dedicated, 100_000, 10_000, Millis::ZERO);
        assert_eq!(p.trend_mb(&k3.ctx(Millis(2 * MIN))), 0);
        // Off: nothing, whatever the history.
        let mut off = k.cfg.spare_pool.clone();
        off.trend_lead_s = 0;
        let mut p = SparePool::new(off);
        p.observe(&k3.ctx(Millis::ZERO));
        assert_eq!(p.trend_mb(&k.ctx(Millis(MIN))), 0);
    }

    #[test]
    fn a_steep_rise_buys_before_anything_is_queued() {
        let mut cfg = Config::default();
        cfg.spare_pool.buffer_mb = 0;
        cfg.spare_pool.overrides.clear();
        cfg.spare_pool.trend_warmup_s = 0;
        let mut k = Kit::new(cfg);
        // Usable 40000 - 6000 = 34000.
        k.node(NodeKind::Dedicated, 40000, 4000, Millis::ZERO);
        let mut p = SparePool::new(k.cfg.spare_pool.clone());
        p.observe(&k.ctx(Millis::ZERO));
        // 24384 MB more allocated in 5 minutes, 8192 of it noise: (24384 - 8192) x 450 / 300
        // = 24288 MB expected over the lead time, capped at half the load (14192 MB);
        // 5616 MB of headroom left.
        let mut k2 = Kit::new(k.cfg.clone());
        k2.node(NodeKind::Dedicated, 40000, 28384, Millis::ZERO);
        let up = p.scale_up(&k2.ctx(Millis(5 * MIN))).expect("the rise outruns the headroom");
        assert!(up.reason.contains("below the spare target 14192 MB"), "{}", up.reason);
        // A rise within the noise buys nothing.
        let mut k3 = Kit::new(k.cfg.clone());
        k3.node(NodeKind::Dedicated, 40000, 12000, Millis::ZERO);
        assert_eq!(p.scale_up(&k3.ctx(Millis(5 * MIN))), None);
    }

    #[test]
    fn the_standing_load_coming_up_on_an_empty_fleet_is_no_trend() {
        let cfg = trend_cfg();
        assert_eq!(cfg.spare_pool.trend_warmup_s, 30 * 60, "the shipped default");
        let at = |m: u64, allocated: u32| {
            let mut k = Kit::new(cfg.clone());
            k.node(NodeKind::Dedicated, 200_000, allocated, Millis::ZERO);
            (Millis(m * MIN), k)
        };
        // The pool first looks at 10 min (an engine started then) at an empty fleet;
        // servers come up: 6000 MB in 5 minutes, a rise worth 9000 MB once warm.
        let mut p = SparePool::new(cfg.spare_pool.clone());
        for (m, mb, trend) in [
            (10, 0, 0),
            (15, 6000, 0),      // within the warm-up
            (35, 12_000, 0),    // 25 minutes after the first look: still
            (40, 18_000, 9000), // 30 minutes after it: the rise since 35 min counts
            (45, 18_000, 0),    // flat
        ] {
            let (t, k) = at(m, mb);
            p.observe(&k.ctx(t));
            assert_eq!(p.trend_mb(&k.ctx(t)), trend, "at {m} min");
            if m < 40 {
                assert_eq!(p.keep_target_mb(&k.ctx(t)), 1000, "at {m} min: the buffer alone, nothing held");
            }
        }
        // A first look at a loaded fleet (an engine restarted with its servers
        // recovered): the same rise counts at once.
        let mut p = SparePool::new(cfg.spare_pool.clone());
        let (t, k) = at(10, 6000);
        p.observe(&k.ctx(t));
        let (t, k) = at(15, 12_000);
        p.observe(&k.ctx(t));
        assert_eq!(p.trend_mb(&k.ctx(t)), 9000);
        // Off: the first minutes on an empty fleet count too.
        let mut off = cfg.spare_pool.clone();
        off.trend_warmup_s = 0;
        let mut p = SparePool::new(off);
        let (t, k) = at(10, 0);
        p.observe(&k.ctx(t));
        let (t, k) = at(15, 6000);
        assert_eq!(p.trend_mb(&k.ctx(t)), 6000, "9000, capped at the load itself");
    }
}
