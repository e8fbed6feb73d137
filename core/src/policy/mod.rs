//! Scaling policies behind one trait.
//!
//! The engine evaluates every `scaling.interval_s` and on demand (a start that has to
//! queue). Each evaluation first lets every policy observe the fleet, then asks for a
//! scale-up in priority order, then for a scale-down; the first answer is the one
//! action of that evaluation. The engine, not the policy, enforces safety: the cloud
//! node maximum, and that only empty, non-system, active cloud nodes are ever deleted.

mod reactive;

pub use reactive::Reactive;

use crate::config::{Config, ReserveConfig};
use crate::fleet::Fleet;
use crate::model::{NodeId, ServerType};
use crate::node::usable_mb;
use crate::time::Millis;

/// Names accepted in `scaling.policies`.
pub const POLICY_NAMES: &[&str] = &["reactive"];

/// What a policy sees. All RAM figures are usable RAM (total minus system reserve).
pub struct ScalingContext<'a> {
    pub now: Millis,
    pub fleet: &'a Fleet,
    pub reserve: &'a ReserveConfig,
    pub catalogue: &'a [ServerType],
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
    pub last_scale_up: Option<Millis>,
    pub last_scale_down: Option<Millis>,
}

impl ScalingContext<'_> {
    pub fn worker_usable_mb(&self) -> u64 {
        self.healthy_usable_mb + self.coming_usable_mb
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleUp {
    /// Index into the catalogue.
    pub server_type: usize,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScaleDown {
    pub node: NodeId,
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
}

/// The policies named in the configuration, highest priority first (stable for ties).
pub fn build(cfg: &Config) -> Vec<Box<dyn Policy>> {
    let mut out: Vec<Box<dyn Policy>> = cfg
        .scaling
        .policies
        .iter()
        .map(|name| -> Box<dyn Policy> {
            match name.as_str() {
                "reactive" => Box::new(Reactive::new(cfg.reactive.clone())),
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
) -> Option<usize> {
    let holds_largest = |t: &ServerType| type_usable_mb(t, reserve) >= u64::from(largest_mb);
    let whole = catalogue
        .iter()
        .enumerate()
        .filter(|(_, t)| holds_largest(t) && type_usable_mb(t, reserve) >= queued_ram_mb)
        .min_by(|(ia, a), (ib, b)| a.hourly_eur.total_cmp(&b.hourly_eur).then(ia.cmp(ib)));
    if let Some((i, _)) = whole {
        return Some(i);
    }
    best_per_gb(catalogue, reserve, u64::from(largest_mb))
}

/// The type with the lowest hourly price per usable GB among those with at least
/// `min_usable_mb` usable; ties break by catalogue order.
pub fn best_per_gb(catalogue: &[ServerType], reserve: &ReserveConfig, min_usable_mb: u64) -> Option<usize> {
    let per_gb = |t: &ServerType| t.hourly_eur / (type_usable_mb(t, reserve) as f64 / 1024.0);
    catalogue
        .iter()
        .enumerate()
        .filter(|(_, t)| type_usable_mb(t, reserve) >= min_usable_mb)
        .min_by(|(ia, a), (ib, b)| per_gb(a).total_cmp(&per_gb(b)).then(ia.cmp(ib)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::default_catalogue;

    #[test]
    fn type_choice_holds_the_whole_queue_or_the_largest_server() {
        let cat = default_catalogue();
        let r = ReserveConfig::default();
        let name = |i: Option<usize>| i.map(|i| cat[i].name.as_str());
        // cpx22 (4096) is usable 3096: one 2 GB server fits.
        assert_eq!(name(choose_type(&cat, &r, 2048, 2048)), Some("cpx22"));
        // 3 x 2 GB = 6 GB: cpx32 usable 8192-1228 = 6964.
        assert_eq!(name(choose_type(&cat, &r, 6144, 2048)), Some("cpx32"));
        // One 16 GB server: cpx42 usable 13927 is too small; cpx52 usable 20890 holds it.
        assert_eq!(name(choose_type(&cat, &r, 16384, 16384)), Some("cpx52"));
        // A 32 GB server: only ccx43 (usable 55706) holds it.
        assert_eq!(name(choose_type(&cat, &r, 32768, 32768)), Some("ccx43"));
        // 200 GB queued of 4 GB servers: nothing holds it all -> best price per usable GB.
        let best = choose_type(&cat, &r, 200 * 1024, 4096).unwrap();
        let per_gb = |t: &ServerType| t.hourly_eur / (type_usable_mb(t, &r) as f64 / 1024.0);
        for t in &cat {
            assert!(per_gb(&cat[best]) <= per_gb(t));
        }
        assert_eq!(choose_type(&cat, &r, 100_000, 100_000), None);
    }
}
