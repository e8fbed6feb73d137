//! The simulated world the engine's commands act on: hosts and their containers, a
//! cloud that boots VMs after a seeded delay and bills like Hetzner (per started hour,
//! capped at the monthly price), and seeded faults. Each concern draws from its own
//! random stream, so changing one knob does not reshuffle the others.

use crate::dense::Dense;
use crate::harness::FastSet;
use crate::scenario::{Faults, Timing};
use conductor_core::model::{NodeId, NodeKind, ServerId, ServerType, WorldAction};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const HOUR_MS: u64 = 3_600_000;
/// Hours in a billing month (Hetzner and the design document use 730).
pub const MONTH_H: f64 = 730.0;

/// Random streams, one per component.
#[derive(Clone, Copy)]
pub enum Stream {
    Boot = 1,
    Provision = 2,
    ContainerLatency = 3,
    ContainerFailure = 4,
    Crash = 5,
}

pub fn stream(seed: u64, s: Stream) -> ChaCha8Rng {
    // SplitMix64 of (seed, stream): independent, well-mixed seeds per component.
    let mut z = seed ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

pub struct Vm {
    pub created_ms: u64,
    pub hourly_eur: f64,
    pub monthly_cap_eur: Option<f64>,
}

impl Vm {
    /// Hetzner bills every started hour, at most the monthly cap per billing month of
    /// 730 hours: full months cost the cap, the rest its hours up to the cap.
    pub fn bill(&self, until_ms: u64) -> f64 {
        let lifetime = until_ms.saturating_sub(self.created_ms);
        let hours = lifetime.div_ceil(HOUR_MS).max(1);
        match self.monthly_cap_eur {
            Some(cap) => {
                let month_h = MONTH_H as u64;
                let (months, rest) = (hours / month_h, hours % month_h);
                months as f64 * cap.min(month_h as f64 * self.hourly_eur) + (rest as f64 * self.hourly_eur).min(cap)
            }
            None => hours as f64 * self.hourly_eur,
        }
    }
}

pub struct Host {
    pub kind: NodeKind,
    /// Booted (for VMs) and not crashed: answers probes, runs containers.
    pub up: bool,
    /// Unordered: whoever lists them sorts.
    pub containers: FastSet<ServerId>,
    pub vm: Option<Vm>,
}

pub struct World {
    pub hosts: Dense<NodeId, Host>,
    pub timing: Timing,
    pub faults: Faults,
    pub boot_ms: (u64, u64),
    pub catalogue: Vec<ServerType>,
    /// Cost of VMs already returned.
    pub cloud_closed_eur: f64,
    pub crashes: u64,
    rng_boot: ChaCha8Rng,
    rng_provision: ChaCha8Rng,
    rng_latency: ChaCha8Rng,
    rng_failure: ChaCha8Rng,
    rng_crash: ChaCha8Rng,
}

impl World {
    pub fn new(seed: u64, timing: Timing, faults: Faults, boot_s: (u64, u64), catalogue: Vec<ServerType>) -> World {
        World {
            hosts: Dense::default(),
            timing,
            faults,
            boot_ms: (boot_s.0 * 1000, boot_s.1 * 1000),
            catalogue,
            cloud_closed_eur: 0.0,
            crashes: 0,
            rng_boot: stream(seed, Stream::Boot),
            rng_provision: stream(seed, Stream::Provision),
            rng_latency: stream(seed, Stream::ContainerLatency),
            rng_failure: stream(seed, Stream::ContainerFailure),
            rng_crash: stream(seed, Stream::Crash),
        }
    }

    pub fn boot_delay_ms(&mut self) -> u64 {
        self.rng_boot.random_range(self.boot_ms.0..=self.boot_ms.1)
    }

    pub fn provision_fails(&mut self) -> bool {
        let p = self.faults.provision_failure_rate;
        p > 0.0 && self.rng_provision.random_bool(p)
    }

    /// Time from the start command to the container reporting, world copy included.
    pub fn start_delay_ms(&mut self, world: WorldAction) -> u64 {
        let t = &self.timing;
        let base = self.rng_latency.random_range(t.container_start_s_min * 1000..=t.container_start_s_max * 1000);
        base + match world {
            WorldAction::InPlace => 0,
            WorldAction::RestoreFromArchive => t.world_restore_s * 1000,
            WorldAction::MoveFrom(_) => t.world_move_s * 1000,
        }
    }

    pub fn start_fails(&mut self) -> bool {
        let p = self.faults.container_start_failure_rate;
        p > 0.0 && self.rng_failure.random_bool(p)
    }

    /// Time until this host's next crash, if crashes are on (exponential).
    pub fn next_crash_in_ms(&mut self) -> Option<u64> {
        let per_day = self.faults.node_crashes_per_day;
        if per_day <= 0.0 {
            return None;
        }
        let u: f64 = self.rng_crash.random_range(f64::EPSILON..1.0);
        let days = -u.ln() / per_day;
        Some((days * 86_400_000.0).min(1e15) as u64 + 1)
    }

    /// Cloud cost so far: returned VMs plus the running ones billed up to `now`.
    pub fn cloud_cost_eur(&self, now_ms: u64) -> f64 {
        self.cloud_closed_eur + self.hosts.values().filter_map(|h| h.vm.as_ref()).map(|vm| vm.bill(now_ms)).sum::<f64>()
    }

    pub fn server_type(&self, name: &str) -> Option<&ServerType> {
        self.catalogue.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_per_started_hour_with_monthly_cap() {
        let vm = Vm { created_ms: 0, hourly_eur: 0.01, monthly_cap_eur: Some(5.0) };
        assert_eq!(vm.bill(1), 0.01);
        assert_eq!(vm.bill(HOUR_MS), 0.01);
        assert_eq!(vm.bill(HOUR_MS + 1), 0.02);
        assert_eq!(vm.bill(700 * HOUR_MS), 5.0);
        // Each billing month of 730 h is capped on its own.
        assert_eq!(vm.bill(730 * HOUR_MS), 5.0);
        assert_eq!(vm.bill(731 * HOUR_MS), 5.01);
        assert_eq!(vm.bill(2 * 730 * HOUR_MS + 600 * HOUR_MS), 15.0);
    }

    #[test]
    fn streams_are_independent_and_reproducible() {
        let a: Vec<u64> = (0..4).map(|_| stream(7, Stream::Boot).random_range(0..1_000_000)).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same seed, same stream");
        let mut b = stream(7, Stream::Boot);
        let mut c = stream(7, Stream::Crash);
        let bv: Vec<u32> = (0..8).map(|_| b.random()).collect();
        let cv: Vec<u32> = (0..8).map(|_| c.random()).collect();
        assert_ne!(bv, cv);
    }
}
