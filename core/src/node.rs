//! The node model and the three-tier system reserve.

use crate::config::ReserveConfig;
use crate::model::{NodeId, NodeKind};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the engine knows of a node's health from its own probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No successful probe yet (a new or booting node).
    Unknown,
    Healthy,
    /// `health.failures_max` consecutive probes failed.
    Unhealthy,
}

/// Where a node is in its life. Only `Active` nodes take new servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// A placeholder: the provision command is out, the VM does not exist yet.
    AwaitingProvision,
    Active,
    /// Marked for deletion; nothing new lands here. The delete command is out.
    Draining,
}

/// The status the design document names: unknown / healthy / unhealthy / draining.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Unknown,
    Healthy,
    Unhealthy,
    Draining,
}

/// What a driver says about a node when it registers one (owned hosts from the
/// configuration, or nodes found at recovery).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub name: String,
    pub address: String,
    pub kind: NodeKind,
    /// Control plane and proxy nodes: never host servers. Explicit, never inferred from
    /// the name (a worker called `proxyman-1` is a worker).
    pub system: bool,
    pub total_ram_mb: u32,
    pub cores: u32,
    pub hourly_eur: f64,
    pub labels: BTreeMap<String, String>,
    pub provider_id: Option<String>,
    /// The catalogue type of a rented node, if known.
    pub server_type: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub id: NodeId,
    pub name: String,
    pub address: String,
    pub kind: NodeKind,
    pub system: bool,
    pub total_ram_mb: u32,
    pub cores: u32,
    pub cpu_percent: f32,
    pub health: Health,
    pub lifecycle: Lifecycle,
    pub labels: BTreeMap<String, String>,
    pub hourly_eur: f64,
    pub provider_id: Option<String>,
    pub server_type: Option<String>,
    pub registered_at: Millis,
    pub provisioned_at: Option<Millis>,
    pub healthy_since: Option<Millis>,
    pub unhealthy_since: Option<Millis>,
    pub last_probe_at: Option<Millis>,
    /// When the node last became empty (or was registered empty).
    pub empty_since: Millis,
    pub draining_since: Option<Millis>,
    // Bookkeeping below is written only by `Fleet::bind` / `Fleet::unbind` and the
    // world counters, and `check_invariants` recomputes it from the servers.
    pub(crate) allocated_mb: u64,
    pub(crate) containers: u32,
    /// Worlds stored here and not archived: such a node is not empty.
    pub(crate) worlds: u32,
}

/// The system reserve of a node with `total_mb` RAM hosting `containers` containers:
/// below `small_node_mb`, `base_mb` plus `per_ten_containers_mb` per full ten containers;
/// otherwise the larger of `base_mb` and `percent` of the total; never more than half
/// the node (integer division, rounded down).
pub fn system_reserve_mb(total_mb: u32, containers: u32, cfg: &ReserveConfig) -> u64 {
    let total = u64::from(total_mb);
    let reserve = if total_mb < cfg.small_node_mb {
        u64::from(cfg.base_mb) + u64::from(containers / 10) * u64::from(cfg.per_ten_containers_mb)
    } else {
        // `as` truncates toward zero (and saturates), which is the floor for the
        // non-negative product; `f64::floor` would be a libm call on every placement.
        let pct = (total as f64 * cfg.percent / 100.0) as u64;
        pct.max(u64::from(cfg.base_mb))
    };
    reserve.min(total / 2)
}

/// Usable RAM of a node with `containers` containers.
pub fn usable_mb(total_mb: u32, containers: u32, cfg: &ReserveConfig) -> u64 {
    u64::from(total_mb) - system_reserve_mb(total_mb, containers, cfg)
}

impl Node {
    pub(crate) fn new(id: NodeId, spec: NodeSpec, now: Millis) -> Node {
        Node {
            id,
            name: spec.name,
            address: spec.address,
            kind: spec.kind,
            system: spec.system,
            total_ram_mb: spec.total_ram_mb,
            cores: spec.cores,
            cpu_percent: 0.0,
            health: Health::Unknown,
            lifecycle: Lifecycle::Active,
            labels: spec.labels,
            hourly_eur: spec.hourly_eur,
            provider_id: spec.provider_id,
            server_type: spec.server_type,
            registered_at: now,
            provisioned_at: None,
            healthy_since: None,
            unhealthy_since: None,
            last_probe_at: None,
            empty_since: now,
            draining_since: None,
            allocated_mb: 0,
            containers: 0,
            worlds: 0,
        }
    }

    pub fn status(&self) -> NodeStatus {
        if self.lifecycle == Lifecycle::Draining {
            return NodeStatus::Draining;
        }
        match self.health {
            Health::Unknown => NodeStatus::Unknown,
            Health::Healthy => NodeStatus::Healthy,
            Health::Unhealthy => NodeStatus::Unhealthy,
        }
    }

    pub fn allocated_mb(&self) -> u64 {
        self.allocated_mb
    }

    /// Servers holding RAM here: starting, running, stopping, booked (reserved plan) or lost.
    pub fn containers(&self) -> u32 {
        self.containers
    }

    pub fn worlds(&self) -> u32 {
        self.worlds
    }

    pub fn reserve_mb(&self, cfg: &ReserveConfig) -> u64 {
        system_reserve_mb(self.total_ram_mb, self.containers, cfg)
    }

    pub fn usable_mb(&self, cfg: &ReserveConfig) -> u64 {
        usable_mb(self.total_ram_mb, self.containers, cfg)
    }

    pub fn available_mb(&self, cfg: &ReserveConfig) -> u64 {
        self.usable_mb(cfg).saturating_sub(self.allocated_mb)
    }

    /// Allocated RAM relative to usable RAM, in percent.
    pub fn utilization_percent(&self, cfg: &ReserveConfig) -> f64 {
        let usable = self.usable_mb(cfg);
        if usable == 0 {
            return 100.0;
        }
        self.allocated_mb as f64 * 100.0 / usable as f64
    }

    /// Whether a server of `ram_mb` fits. The reserve is computed with the container
    /// count *after* the placement, so placing the 10th container on a small node
    /// already pays its 50 MB and `allocated <= usable` holds afterwards.
    pub fn fits(&self, ram_mb: u32, cfg: &ReserveConfig) -> bool {
        let usable_after = usable_mb(self.total_ram_mb, self.containers + 1, cfg);
        self.allocated_mb + u64::from(ram_mb) <= usable_after
    }

    /// May new servers be placed here at all (ignoring room)?
    pub fn placeable(&self) -> bool {
        !self.system && self.health == Health::Healthy && self.lifecycle == Lifecycle::Active
    }

    /// A worker still coming up: not yet probed healthy, not being deleted. Its usable RAM
    /// counts as capacity on the way.
    pub fn coming(&self) -> bool {
        !self.system && self.health == Health::Unknown && self.lifecycle != Lifecycle::Draining
    }

    /// Holds nothing: no server's RAM and no un-archived world.
    pub fn is_empty(&self) -> bool {
        self.containers == 0 && self.worlds == 0
    }

    pub fn is_worker(&self) -> bool {
        !self.system
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(total: u32, containers: u32) -> u64 {
        system_reserve_mb(total, containers, &ReserveConfig::default())
    }

    #[test]
    fn small_tier_is_base_plus_fifty_per_full_ten_containers() {
        assert_eq!(r(4096, 0), 1000);
        assert_eq!(r(4096, 9), 1000);
        assert_eq!(r(4096, 10), 1050);
        assert_eq!(r(4096, 19), 1050);
        assert_eq!(r(4096, 20), 1100);
        // Just below the tier boundary.
        assert_eq!(r(8191, 0), 1000);
        assert_eq!(r(8191, 30), 1150);
    }

    #[test]
    fn large_tier_is_fifteen_percent_with_the_base_as_floor() {
        // At the boundary the percentage tier starts: 15 % of 8192 = 1228.8 -> 1228.
        assert_eq!(r(8192, 0), 1228);
        assert_eq!(r(8192, 50), 1228, "container count does not matter on large nodes");
        assert_eq!(r(16384, 0), 2457);
        assert_eq!(r(32768, 0), 4915);
        let mut cfg = ReserveConfig::default();
        cfg.percent = 5.0;
        // 5 % of 8192 = 409 < base 1000, so the base wins.
        assert_eq!(system_reserve_mb(8192, 0, &cfg), 1000);
    }

    #[test]
    fn reserve_never_exceeds_half_the_node() {
        assert_eq!(r(1500, 0), 750);
        assert_eq!(r(2000, 0), 1000);
        assert_eq!(r(2001, 0), 1000);
        assert_eq!(r(1999, 200), 999);
        assert_eq!(usable_mb(1500, 0, &ReserveConfig::default()), 750);
    }

    #[test]
    fn fits_uses_the_count_after_placement() {
        let cfg = ReserveConfig::default();
        let spec = NodeSpec {
            name: "n".into(),
            address: String::new(),
            kind: NodeKind::Dedicated,
            system: false,
            total_ram_mb: 4096,
            cores: 2,
            hourly_eur: 0.0,
            labels: BTreeMap::new(),
            provider_id: None,
            server_type: None,
        };
        let mut n = Node::new(NodeId(0), spec, Millis::ZERO);
        n.containers = 9;
        n.allocated_mb = 3000;
        // Usable now: 4096 - 1000 = 3096, available 96. The 10th container raises the
        // reserve to 1050, so usable becomes 3046 and only 46 MB fit.
        assert_eq!(n.available_mb(&cfg), 96);
        assert!(n.fits(46, &cfg));
        assert!(!n.fits(47, &cfg));
        assert!((n.utilization_percent(&cfg) - 3000.0 * 100.0 / 3096.0).abs() < 1e-9);
    }
}
