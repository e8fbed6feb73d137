//! The design document's reactive policy, with the original's bugs fixed (sizing by
//! queued RAM rather than server count, a scale-down that must be sustained, cooldowns
//! set only when an action is executed).

use super::{best_per_gb, choose_type, Policy, ScaleDown, ScaleUp, ScalingContext};
use crate::config::ReactiveConfig;
use crate::model::NodeKind;
use crate::node::{Health, Lifecycle};
use crate::time::Millis;

pub struct Reactive {
    cfg: ReactiveConfig,
    /// Since when utilization has been below the scale-down threshold.
    low_since: Option<Millis>,
}

impl Reactive {
    pub fn new(cfg: ReactiveConfig) -> Reactive {
        Reactive { cfg, low_since: None }
    }

    fn buy(&self, ctx: &ScalingContext, why: String) -> Option<ScaleUp> {
        if ctx.queued_count > 0 {
            // The design's rule, sized by queued RAM (not by server count, the original's B8).
            let i = choose_type(ctx.catalogue, ctx.reserve, ctx.queued_ram_mb, ctx.largest_queued_mb)?;
            return Some(ScaleUp { server_type: i, reason: why });
        }
        // Nothing queued: the threshold fired on allocation alone. The cheapest type would
        // add a sliver of capacity per cloud node slot, so buy the best price per usable
        // GB among the types that cover the deficit to the threshold.
        let threshold = self.cfg.scale_up_threshold_percent.max(1.0) / 100.0;
        let needed = (ctx.allocated_mb as f64 / threshold).ceil() as u64;
        let deficit = needed.saturating_sub(ctx.worker_usable_mb());
        let i = best_per_gb(ctx.catalogue, ctx.reserve, deficit)?;
        Some(ScaleUp { server_type: i, reason: why })
    }
}

impl Policy for Reactive {
    fn name(&self) -> &'static str {
        "reactive"
    }

    fn priority(&self) -> i32 {
        10
    }

    fn observe(&mut self, ctx: &ScalingContext) {
        let low = ctx.healthy_usable_mb > 0
            && (ctx.allocated_mb as f64 * 100.0 / ctx.healthy_usable_mb as f64) < self.cfg.scale_down_threshold_percent;
        if !low {
            self.low_since = None;
        } else if self.low_since.is_none() {
            self.low_since = Some(ctx.now);
        }
    }

    fn scale_up(&mut self, ctx: &ScalingContext) -> Option<ScaleUp> {
        let usable = ctx.worker_usable_mb();
        if ctx.queued_count > 0 && usable == 0 {
            // The zero-worker rule: no worker capacity at all (healthy or coming).
            return self.buy(ctx, format!("{} queued server(s) and no worker capacity", ctx.queued_count));
        }
        if ctx.queued_count > 0 && u64::from(ctx.largest_queued_mb) > ctx.largest_holdable_mb {
            // No node in the fleet could ever hold the largest queued server: waiting for
            // utilization to rise would never help it.
            return self.buy(
                ctx,
                format!(
                    "queued {} MB server fits no node (largest holds {} MB)",
                    ctx.largest_queued_mb, ctx.largest_holdable_mb
                ),
            );
        }
        if ctx.queued_count > 0 && u64::from(ctx.largest_queued_mb) > ctx.largest_fit_mb {
            // Fragmentation: the fleet has room in sum but no node (and no coming node)
            // has room for the largest queued server, so the aggregate threshold alone
            // might never fire while it times out.
            return self.buy(
                ctx,
                format!(
                    "queued {} MB server fits no node now (most free {} MB)",
                    ctx.largest_queued_mb, ctx.largest_fit_mb
                ),
            );
        }
        if ctx.last_scale_up.is_some_and(|t| ctx.now.since(t) < self.cfg.scale_up_cooldown_s * 1000) {
            return None;
        }
        if usable == 0 {
            return None;
        }
        let pct = (ctx.allocated_mb + ctx.queued_ram_mb) as f64 * 100.0 / usable as f64;
        if pct > self.cfg.scale_up_threshold_percent {
            return self.buy(
                ctx,
                format!(
                    "(allocated {} + queued {} MB) / usable {} MB = {:.1}% > {:.1}%",
                    ctx.allocated_mb, ctx.queued_ram_mb, usable, pct, self.cfg.scale_up_threshold_percent
                ),
            );
        }
        None
    }

    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown> {
        let since = self.low_since?;
        if ctx.queued_count > 0 || ctx.now.since(since) < self.cfg.scale_down_sustain_s * 1000 {
            return None;
        }
        let cooldown_ms = self.cfg.scale_down_cooldown_s * 1000;
        let recent = |t: Option<Millis>| t.is_some_and(|t| ctx.now.since(t) < cooldown_ms);
        if recent(ctx.last_scale_down) || recent(ctx.last_scale_up) {
            return None;
        }
        let idle_ms = self.cfg.node_idle_s * 1000;
        let node = ctx
            .fleet
            .iter()
            .filter(|n| {
                n.kind == NodeKind::Cloud
                    && !n.system
                    && n.lifecycle == Lifecycle::Active
                    && n.health != Health::Unknown
                    && n.is_empty()
                    && ctx.now.since(n.empty_since) >= idle_ms
            })
            .min_by_key(|n| (n.empty_since, n.id))?;
        // Removing it must not push the rest over the scale-up threshold (no flapping).
        let node_usable = if node.health == Health::Healthy { node.usable_mb(ctx.reserve) } else { 0 };
        let rest = ctx.healthy_usable_mb.saturating_sub(node_usable) + ctx.coming_usable_mb;
        if rest > 0 && ctx.allocated_mb as f64 * 100.0 / rest as f64 > self.cfg.scale_up_threshold_percent {
            return None;
        }
        Some(ScaleDown {
            node: node.id,
            reason: format!(
                "utilization below {:.1}% for {} min; {} empty for {} min",
                self.cfg.scale_down_threshold_percent,
                ctx.now.since(since) / 60_000,
                node.name,
                ctx.now.since(node.empty_since) / 60_000
            ),
        })
    }
}
