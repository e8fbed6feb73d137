//! The Agones Fleet Autoscaler's `Buffer` policy, translated from GameServer replicas to
//! RAM slots of `replica_mb`.
//!
//! Source: googleforgames/agones `pkg/fleetautoscalers/fleetautoscalers.go`
//! (`applyBufferPolicy`) and `pkg/apis/autoscaling/v1/fleetautoscaler.go`
//! (`ValidateBufferPolicy`), documented at agones.dev "Fleet Autoscaler Specification":
//!
//! ```text
//! integer bufferSize B:  replicas = allocated + B
//! percent bufferSize P:  replicas = ceil(allocated * 100 / (100 - P))
//! replicas < minReplicas → minReplicas; replicas > maxReplicas → maxReplicas (max wins)
//! ```
//!
//! evaluated every `sync.fixedInterval.seconds` (default 30 s), with no cooldown.
//! Here "allocated" counts allocated and queued RAM in replicas (rounded up), the
//! fleet's current size is the workers' usable RAM in replicas (rounded down, coming
//! nodes included), a scale-up buys one VM for the missing replicas and a scale-down
//! releases an empty cloud node whose replicas the desired size does not need, at once
//! (Agones deletes Ready GameServers at once, and no node autoscaler under it waits for
//! the end of a billed hour).

use super::{choose_for_demand, Policy, ScaleDown, ScaleUp, ScalingContext};
use crate::config::{AgonesBufferConfig, BufferSize};
use crate::node::Node;
use crate::time::Millis;

pub struct AgonesBuffer {
    cfg: AgonesBufferConfig,
    buffer: BufferSize,
    last_sync: Option<Millis>,
    /// Whether this evaluation is a sync (at most one per `sync_interval_s`).
    syncing: bool,
}

/// Agones' `applyBufferPolicy`: the desired replica count and whether a limit applied.
pub fn desired_replicas(allocated: u64, buffer: BufferSize, min: u32, max: u32) -> (u64, bool) {
    let mut replicas = match buffer {
        BufferSize::Replicas(b) => allocated + u64::from(b),
        BufferSize::Percent(p) => (allocated * 100).div_ceil(100 - u64::from(p)),
    };
    let mut limited = false;
    if replicas < u64::from(min) {
        replicas = u64::from(min);
        limited = true;
    }
    if replicas > u64::from(max) {
        replicas = u64::from(max);
        limited = true;
    }
    (replicas, limited)
}

impl AgonesBuffer {
    pub fn new(cfg: AgonesBufferConfig) -> AgonesBuffer {
        // Config::validate checked it.
        let buffer = cfg.buffer().expect("validated buffer_size");
        AgonesBuffer { cfg, buffer, last_sync: None, syncing: false }
    }

    /// (allocated replicas, current replicas, desired replicas).
    fn replicas(&self, ctx: &ScalingContext) -> (u64, u64, u64) {
        let r = u64::from(self.cfg.replica_mb);
        let allocated = ctx.demand_mb().div_ceil(r);
        let current = ctx.worker_usable_mb() / r;
        let (desired, _) = desired_replicas(allocated, self.buffer, self.cfg.min_replicas, self.cfg.max_replicas);
        (allocated, current, desired)
    }
}

impl Policy for AgonesBuffer {
    fn name(&self) -> &'static str {
        "agones_buffer"
    }

    fn priority(&self) -> i32 {
        self.cfg.priority
    }

    fn observe(&mut self, ctx: &ScalingContext) {
        self.syncing = self.last_sync.is_none_or(|t| ctx.now.since(t) >= self.cfg.sync_interval_s * 1000);
        if self.syncing {
            self.last_sync = Some(ctx.now);
        }
    }

    fn scale_up(&mut self, ctx: &ScalingContext) -> Option<ScaleUp> {
        if !self.syncing {
            return None;
        }
        let (allocated, current, desired) = self.replicas(ctx);
        if desired <= current {
            return None;
        }
        let missing_mb = (desired - current) * u64::from(self.cfg.replica_mb);
        let i = choose_for_demand(ctx, missing_mb, ctx.largest_queued_mb.max(self.cfg.replica_mb))?;
        Some(ScaleUp {
            server_type: i,
            count: super::vms_for_mb(ctx, i, missing_mb),
            reason: format!(
                "{current} replicas < desired {desired} ({allocated} allocated, buffer {})",
                self.cfg.buffer_size
            ),
        })
    }

    fn scale_down(&mut self, ctx: &ScalingContext) -> Option<ScaleDown> {
        if !self.syncing {
            return None;
        }
        let (_, current, desired) = self.replicas(ctx);
        let r = u64::from(self.cfg.replica_mb);
        let node = ctx
            .deletable_nodes()
            .filter(|n| current.saturating_sub(ctx.node_usable_mb(n).div_ceil(r)) >= desired)
            .min_by_key(|n| (n.empty_since, n.id))?;
        Some(ScaleDown {
            node: node.id,
            reason: format!("{current} replicas > desired {desired} without {}", node.name),
        })
    }

    fn keep(&self, ctx: &ScalingContext, node: &Node) -> Option<String> {
        let (_, current, desired) = self.replicas(ctx);
        let left = current.saturating_sub(ctx.node_usable_mb(node).div_ceil(u64::from(self.cfg.replica_mb)));
        (left < desired).then(|| format!("agones_buffer: {left} replicas without it < desired {desired}"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use super::*;
    use crate::config::Config;
    use crate::model::NodeKind;

    #[test]
    fn buffer_arithmetic_matches_agones() {
        use BufferSize::*;
        // Agones' own table cases: integer buffer, percent buffer, min and max limits.
        assert_eq!(desired_replicas(5, Replicas(5), 0, 100), (10, false));
        assert_eq!(desired_replicas(0, Replicas(5), 0, 100), (5, false));
        assert_eq!(desired_replicas(7, Percent(30), 1, 100), (10, false), "ceil(700 / 70)");
        assert_eq!(desired_replicas(8, Percent(20), 1, 100), (10, false));
        assert_eq!(desired_replicas(9, Percent(20), 1, 100), (12, false), "ceil(900 / 80) = 12");
        assert_eq!(desired_replicas(0, Percent(20), 1, 100), (1, true), "min applies");
        assert_eq!(desired_replicas(2, Replicas(5), 10, 100), (10, true));
        assert_eq!(desired_replicas(50, Replicas(5), 60, 40), (40, true), "max is checked last and wins");
    }

    #[test]
    fn validation_follows_agones() {
        let check = |buffer: &str, min: u32, max: u32| {
            let c = AgonesBufferConfig {
                buffer_size: buffer.into(),
                min_replicas: min,
                max_replicas: max,
                ..Default::default()
            };
            c.validate().map_err(|e| e.field)
        };
        assert_eq!(check("5", 0, 10), Ok(()));
        assert_eq!(check("5", 5, 10), Ok(()));
        assert_eq!(check("20%", 1, 10), Ok(()));
        assert_eq!(check("0", 0, 10), Err("agones_buffer.buffer_size".into()));
        assert_eq!(check("5", 3, 10), Err("agones_buffer.min_replicas".into()), "min must be 0 or >= buffer");
        assert_eq!(check("5", 0, 4), Err("agones_buffer.max_replicas".into()), "max must be >= buffer");
        assert_eq!(check("5", 11, 10), Err("agones_buffer.min_replicas".into()), "min <= max");
        assert_eq!(check("20%", 0, 10), Err("agones_buffer.min_replicas".into()), "percent needs min >= 1");
        assert_eq!(check("100%", 1, 10), Err("agones_buffer.buffer_size".into()));
        assert_eq!(check("0%", 1, 10), Err("agones_buffer.buffer_size".into()));
        assert_eq!(check("five", 0, 10), Err("agones_buffer.buffer_size".into()));
        assert_eq!(check("20%", 1, 0), Err("agones_buffer.min_replicas".into()));
    }

    #[test]
    fn syncs_every_30_s_and_buys_the_missing_replicas() {
        let mut k = Kit::new(Config::default());
        // Usable 17000 = 8 replicas of 2048; 12000 allocated = 6 replicas; desired 11.
        k.node(NodeKind::Dedicated, 20000, 12000, Millis::ZERO);
        let mut p = AgonesBuffer::new(k.cfg.agones_buffer.clone());
        let ctx = k.ctx(Millis(1000));
        p.observe(&ctx);
        let up = p.scale_up(&ctx).expect("3 replicas missing");
        assert!(up.reason.contains("8 replicas < desired 11"), "{}", up.reason);
        let ctx = k.ctx(Millis(20_000));
        p.observe(&ctx);
        assert_eq!(p.scale_up(&ctx), None, "no sync within 30 s");
        let ctx = k.ctx(Millis(31_000));
        p.observe(&ctx);
        assert!(p.scale_up(&ctx).is_some());
    }
}
