//! Forecast-driven provisioning with bounded memory.
//!
//! The policy records demand (allocated + queued RAM, the peak of each 5-minute bucket)
//! in `observe`, in a fixed ring of 8 days of buckets. Demand at a future time t is
//! forecast as demand now plus the change from the same moment to t one season ago:
//! a week ago when that history exists (weekday effects), else yesterday ("seasonal
//! naive with level correction"). A season's future values are the peak of three
//! neighbouring buckets (a burst a few minutes early or late last week still counts),
//! the level it rises from their lowest.
//!
//! Scale-up: when the peak forecast over the next `lead_s` (VM boot plus container
//! start) divided by `target_utilization_percent` exceeds usable plus coming RAM, one
//! VM is bought for that deficit. Servers that fit nowhere now are bought for at once.
//! Scale-down: an empty cloud node is released only if the peak forecast over
//! `scale_down_horizon_s` still fits without it at `scale_down_utilization_percent`,
//! below the target (hysteresis: demand noise lifts the next forecast by a tenth within
//! minutes, and a sale at the target was bought back that soon); other policies' sales
//! are vetoed by the same test. Until `warmup_s` of history exist (or the season's buckets
//! are missing) the reactive rules decide.

use super::{choose_for_demand, urgent_need, Policy, Reactive, ScaleDown, ScaleUp, ScalingContext};
use crate::config::{PredictiveConfig, ReactiveConfig};
use crate::node::Node;
use crate::time::Millis;

const BUCKET_MS: u64 = 5 * 60 * 1000;
const DAY_BUCKETS: u64 = 288;
const WEEK_BUCKETS: u64 = 7 * DAY_BUCKETS;
/// Eight days: a week back from any point of the next day.
const RING_LEN: usize = 8 * DAY_BUCKETS as usize;

pub struct Predictive {
    cfg: PredictiveConfig,
    fallback: Reactive,
    /// (bucket number, peak demand MB) per slot; a slot holds bucket b at b % RING_LEN.
    ring: Vec<(u64, u64)>,
    first_seen: Option<Millis>,
}

impl Predictive {
    pub fn new(cfg: PredictiveConfig, reactive: ReactiveConfig) -> Predictive {
        Predictive { cfg, fallback: Reactive::new(reactive), ring: vec![(u64::MAX, 0); RING_LEN], first_seen: None }
    }

    fn record(&mut self, now: Millis, demand_mb: u64) {
        let b = now.0 / BUCKET_MS;
        let slot = &mut self.ring[(b % RING_LEN as u64) as usize];
        if slot.0 == b {
            slot.1 = slot.1.max(demand_mb);
        } else {
            *slot = (b, demand_mb);
        }
        self.first_seen.get_or_insert(now);
    }

    fn bucket(&self, b: u64) -> Option<u64> {
        let slot = self.ring[(b % RING_LEN as u64) as usize];
        (slot.0 == b).then_some(slot.1)
    }

    /// The peak of bucket b and its neighbours.
    fn season_value(&self, b: u64) -> Option<u64> {
        [b.checked_sub(1), Some(b), Some(b + 1)].into_iter().flatten().filter_map(|x| self.bucket(x)).max()
    }

    /// The lowest of bucket b and its neighbours: the level a forecast rises from.
    fn season_base(&self, b: u64) -> Option<u64> {
        [b.checked_sub(1), Some(b), Some(b + 1)].into_iter().flatten().filter_map(|x| self.bucket(x)).min()
    }

    /// Peak forecast demand from now to `now + ahead_ms`, or `None` without the history.
    pub fn forecast_peak_mb(&self, now: Millis, demand_now_mb: u64, ahead_ms: u64) -> Option<u64> {
        if self.first_seen.is_none_or(|f| now.since(f) < self.cfg.warmup_s * 1000) {
            return None;
        }
        let b_now = now.0 / BUCKET_MS;
        let b_end = now.plus(ahead_ms).0 / BUCKET_MS;
        for season in [WEEK_BUCKETS, DAY_BUCKETS] {
            let Some(base) = b_now.checked_sub(season).and_then(|b| self.season_base(b)) else { continue };
            let mut peak = demand_now_mb;
            let mut complete = true;
            for b in b_now..=b_end {
                match self.season_value(b - season) {
                    Some(v) => peak = peak.max((demand_now_mb + v).saturating_sub(base)),
                    None => complete = false,
                }
            }
            if complete {
                return Some(peak);
            }
        }
        None
    }

    fn needed_mb(&self, forecast_mb: u64) -> u64 {
        (forecast_mb as f64 * 100.0 / self.cfg.target_utilization_percent).ceil() as u64
    }

    /// What a sale must leave for the forecast peak: more than a purchase needs (the lower
    /// of the two shares applies, so a target set below the scale-down share keeps working).
    fn kept_mb(&self, peak_mb: u64) -> u64 {
        let share = self.cfg.scale_down_utilization_percent.min(self.cfg.target_utilization_percent);
        (peak_mb as f64 * 100.0 / share).ceil() as u64
    }
}

impl Policy for Predictive {
    fn name(&self) -> &'static str {
        "predictive"
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    fn observe(&mut self, ctx: &ScalingContext) {
        self.record(ctx.now, ctx.demand_mb());
        self.fallback.observe(ctx);
    }

    fn scale_up(&mut self, ctx: &ScalingContext) -> Option<ScaleUp> {
        let Some(peak) = self.forecast_peak_mb(ctx.now, ctx.demand_mb(), self.cfg.lead_s * 1000) else {
            return self
                .fallback
                .scale_up(ctx)
                .map(|up| ScaleUp { reason: format!("cold start: {}", up.reason), ..up });
        };
        if let Some(why) = urgent_need(ctx) {
            let i = choose_for_demand(ctx, ctx.queued_ram_mb, ctx.largest_queued_mb)?;
            return Some(ScaleUp { server_type: i, reason: why, count: super::vms_for_queue(ctx, i) });
        }
        let needed = self.needed_mb(peak);
        let usable = ctx.worker_usable_mb();
        if needed <= usable {
            return None;
        }
        let i = choose_for_demand(ctx, needed - usable, ctx.largest_queued_mb)?;
        Some(ScaleUp {
            server_type: i,
            count: super::vms_for_mb(ctx, i, needed - usable),
            reason: format!(
                "forecast {peak} MB within {} s needs {needed} MB at {:.0}%, have {usable} MB",
                self.cfg.lead_s, self.cfg.target_utilization_percent
            ),
        })
    }

    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown> {
        let Some(peak) = self.forecast_peak_mb(ctx.now, ctx.demand_mb(), self.cfg.scale_down_horizon_s * 1000) else {
            return self
                .fallback
                .scale_down(ctx)
                .map(|d| ScaleDown { reason: format!("cold start: {}", d.reason), ..d });
        };
        if ctx.queued_count > 0 {
            return None;
        }
        let needed = self.kept_mb(peak);
        let usable = ctx.worker_usable_mb();
        let node = ctx
            .releasable()
            .filter(|n| usable.saturating_sub(ctx.node_usable_mb(n)) >= needed)
            .min_by_key(|n| (n.empty_since, n.id))?;
        Some(ScaleDown {
            node: node.id,
            reason: format!(
                "forecast peak {peak} MB over {} min needs {needed} MB; {} MB without {}",
                self.cfg.scale_down_horizon_s / 60,
                usable - ctx.node_usable_mb(node),
                node.name
            ),
        })
    }

    fn keep(&self, ctx: &ScalingContext, node: &Node) -> Option<String> {
        let peak = self.forecast_peak_mb(ctx.now, ctx.demand_mb(), self.cfg.scale_down_horizon_s * 1000)?;
        let left = ctx.worker_usable_mb().saturating_sub(ctx.node_usable_mb(node));
        let needed = self.kept_mb(peak);
        (left < needed).then(|| format!("predictive: forecast needs {needed} MB, {left} MB without it"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use super::*;
    use crate::config::Config;
    use crate::model::NodeKind;

    const MIN: u64 = 60_000;
    const DAY: u64 = 24 * 60 * MIN;

    #[test]
    fn forecast_uses_yesterday_then_last_week_with_the_level_now() {
        let cfg = Config::default();
        let mut p = Predictive::new(cfg.predictive.clone(), cfg.reactive.clone());
        assert_eq!(p.forecast_peak_mb(Millis(0), 1000, 10 * MIN), None);
        // Eight days of a daily evening peak: 1000 MB, 9000 MB from 19:00 to 22:00;
        // Saturdays (day 5) peak at 20000.
        for b in 0..(8 * DAY / BUCKET_MS) {
            let t = b * BUCKET_MS;
            let h = (t % DAY) / (60 * MIN);
            let peak = if (t / DAY) % 7 == 5 { 20000 } else { 9000 };
            p.record(Millis(t), if (19..22).contains(&h) { peak } else { 1000 });
        }
        // Day 8 (a Tuesday) 18:50: in 15 min last Tuesday went from 1000 to 9000.
        let now = Millis(8 * DAY + 18 * 60 * MIN + 50 * MIN);
        assert_eq!(p.forecast_peak_mb(now, 1500, 15 * MIN), Some(9500), "level 1500 + rise 8000");
        let earlier = Millis(8 * DAY + 18 * 60 * MIN + 40 * MIN);
        assert_eq!(p.forecast_peak_mb(earlier, 1500, 5 * MIN), Some(1500), "no rise within 5 min of 18:40");
        // Memory is bounded: the ring never grows.
        assert_eq!(p.ring.len(), RING_LEN);
    }

    #[test]
    fn cold_start_falls_back_to_reactive_and_forecast_deficit_buys() {
        let mut k = Kit::new(Config::default());
        k.node(NodeKind::Dedicated, 20000, 16000, Millis::ZERO); // 94 % of 17000
        let mut p = Predictive::new(k.cfg.predictive.clone(), k.cfg.reactive.clone());
        let ctx = k.ctx(Millis(MIN));
        p.observe(&ctx);
        let up = p.scale_up(&ctx).expect("reactive rules while cold");
        assert!(up.reason.starts_with("cold start"), "{}", up.reason);

        let mut k = Kit::new(Config::default());
        k.node(NodeKind::Dedicated, 20000, 2000, Millis::ZERO);
        let mut p = Predictive::new(k.cfg.predictive.clone(), k.cfg.reactive.clone());
        for b in 0..(2 * DAY / BUCKET_MS) {
            let t = b * BUCKET_MS;
            let h = (t % DAY) / (60 * MIN);
            p.record(Millis(t), if h == 19 { 16000 } else { 2000 });
        }
        let now = Millis(2 * DAY + 18 * 60 * MIN + 57 * MIN);
        let ctx = k.ctx(now);
        let up = p.scale_up(&ctx).expect("forecast 16000 MB / 80 % = 20000 > 17000");
        assert!(up.reason.contains("forecast 16000 MB"), "{}", up.reason);
        assert_eq!(p.scale_up(&k.ctx(Millis(2 * DAY + 12 * 60 * MIN))), None, "quiet at noon");
    }

    #[test]
    fn a_sale_must_leave_more_room_than_a_purchase_needs() {
        // Flat demand at 78 % of the owned host's usable RAM and an empty VM: the host
        // alone is enough not to buy (80 %), not enough to sell (76 %).
        for (scale_down_percent, kept) in [(76.0, true), (80.0, false)] {
            let mut cfg = Config::default();
            cfg.predictive.scale_down_utilization_percent = scale_down_percent;
            let mut k = Kit::new(cfg.clone());
            let usable = crate::node::usable_mb(20000, 1, &cfg.reserve);
            let demand = (usable as f64 * 0.78) as u32;
            k.node(NodeKind::Dedicated, 20000, demand, Millis::ZERO);
            let vm = k.node(NodeKind::Cloud, 8192, 0, Millis::ZERO);
            let mut p = Predictive::new(k.cfg.predictive.clone(), k.cfg.reactive.clone());
            for b in 0..(2 * DAY / BUCKET_MS) {
                p.record(Millis(b * BUCKET_MS), u64::from(demand));
            }
            let ctx = k.ctx(Millis(2 * DAY + 12 * 60 * MIN));
            assert_eq!(p.scale_up(&ctx), None, "{scale_down_percent}");
            let node = ctx.fleet.get(vm).unwrap();
            assert_eq!(p.keep(&ctx, node).is_some(), kept, "{scale_down_percent}");
        }
        let mut cfg = Config::default();
        cfg.predictive.scale_down_utilization_percent = 0.5;
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().contains("predictive.scale_down_utilization_percent"), "{e}");
    }
}
