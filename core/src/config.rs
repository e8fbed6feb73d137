//! The engine's configuration: one serde struct with the design document's defaults.
//! Durations are whole seconds in the file (`_s`) and milliseconds inside the engine.
//! [`Config::validate`] names the offending field in every error.

use crate::model::{default_catalogue, ServerType, Storage};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// No queued start is placed before this long after the engine started (cloud-init
    /// time for nodes recovered at boot). Applies to queued starts too (the original's B5).
    pub startup_delay_s: u64,
    /// Failsafe queue pass interval; passes also run on every capacity change.
    pub queue_tick_s: u64,
    /// A placed start holds its RAM until the container reports; after this it is released.
    pub reservation_timeout_s: u64,
    /// A running server with 0 players for this long is stopped. Servers whose player
    /// count was never reported are never idle-stopped.
    pub idle_shutdown_s: u64,
    pub storage: Storage,
    /// Worlds on dedicated hosts are archived this long after their server stops
    /// (on cloud nodes archiving starts at once).
    pub archive_after_s: u64,
    /// Node names for bought VMs are `{cloud_name_prefix}-{n}`.
    pub cloud_name_prefix: String,
    pub debug_log_len: usize,
    pub reserve: ReserveConfig,
    pub placement: PlacementConfig,
    pub queue: QueueConfig,
    pub health: HealthConfig,
    pub scaling: ScalingConfig,
    pub reactive: ReactiveConfig,
    /// The VM types the cloud sells.
    pub catalogue: Vec<ServerType>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            startup_delay_s: 120,
            queue_tick_s: 30,
            reservation_timeout_s: 30 * 60,
            idle_shutdown_s: 5 * 60,
            storage: Storage::NodeLocal,
            archive_after_s: 48 * 3600,
            cloud_name_prefix: "cloud".to_string(),
            debug_log_len: 200,
            reserve: ReserveConfig::default(),
            placement: PlacementConfig::default(),
            queue: QueueConfig::default(),
            health: HealthConfig::default(),
            scaling: ScalingConfig::default(),
            reactive: ReactiveConfig::default(),
            catalogue: default_catalogue(),
        }
    }
}

/// The three-tier system reserve (see [`crate::node::system_reserve_mb`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReserveConfig {
    /// Nodes below this total RAM use the fixed tier, the others the percentage tier.
    pub small_node_mb: u32,
    pub base_mb: u32,
    /// Added per full 10 containers on small nodes.
    pub per_ten_containers_mb: u32,
    pub percent: f64,
}

impl Default for ReserveConfig {
    fn default() -> Self {
        ReserveConfig { small_node_mb: 8192, base_mb: 1000, per_ten_containers_mb: 50, percent: 15.0 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// The design's rule: dedicated before cloud, then lowest utilization, ties by node id.
    #[default]
    Spread,
    /// Packing: dedicated before cloud, then the least available RAM that fits.
    BestFit,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementConfig {
    pub strategy: PlacementStrategy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrder {
    /// Only the head may be placed; everything waits behind it.
    StrictFifo,
    /// Later entries that fit may pass entries that do not, but a pass stops at the first
    /// entry that does not fit and has waited `skip_ahead_age_max_s`: nothing passes it
    /// any more, so the capacity that frees up goes to it.
    #[default]
    SkipAhead,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// A queued start fails with `start_failed` after waiting this long (counted from
    /// its first request; a failed attempt does not reset it).
    pub timeout_s: u64,
    pub order: QueueOrder,
    pub skip_ahead_age_max_s: u64,
    /// A start that failed on a node is retried no sooner than this. While it waits,
    /// later entries may take the capacity it freed, so the default (0) retries on the
    /// very next pass; each attempt costs a round trip to a node, so there is no spin.
    pub retry_backoff_s: u64,
    /// At most this many queued servers per user.
    pub per_user_max: u32,
    /// At most this many queued servers in all.
    pub len_max: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            timeout_s: 600,
            order: QueueOrder::SkipAhead,
            skip_ahead_age_max_s: 120,
            retry_backoff_s: 0,
            per_user_max: 10,
            len_max: 100_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    pub interval_s: u64,
    /// A failed probe is retried after this long.
    pub retry_spacing_s: u64,
    /// Consecutive failed probes before a healthy node becomes unhealthy.
    pub failures_max: u32,
    /// A probe with no answer after this long counts as failed.
    pub probe_timeout_s: u64,
    /// Servers on a node unhealthy this long are fenced and requeued (shared storage on
    /// a cloud node) or reported lost.
    pub lost_grace_s: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { interval_s: 60, retry_spacing_s: 5, failures_max: 3, probe_timeout_s: 15, lost_grace_s: 5 * 60 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalingConfig {
    pub enabled: bool,
    pub interval_s: u64,
    /// Policies by name, asked in the order of their priority.
    pub policies: Vec<String>,
    /// Cloud nodes, placeholders included, never exceed this.
    pub max_cloud_nodes: u32,
    /// A placeholder whose VM has not reported within this is given up (and deleted).
    pub provision_timeout_s: u64,
    /// A delete command is repeated if the node is not gone after this long.
    pub delete_timeout_s: u64,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            enabled: true,
            interval_s: 120,
            policies: vec!["reactive".to_string()],
            max_cloud_nodes: 10,
            provision_timeout_s: 10 * 60,
            delete_timeout_s: 5 * 60,
        }
    }
}

/// The design's reactive policy. Percentages are of the worker fleet's *usable* RAM
/// (total minus system reserve) over healthy worker nodes plus nodes on their way
/// (placeholders and booting VMs at their type's usable RAM); system nodes never count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReactiveConfig {
    /// Scale up when (allocated + queued) / usable is above this.
    pub scale_up_threshold_percent: f64,
    /// Scale down when allocated / usable has stayed below this for `scale_down_sustain_s`.
    pub scale_down_threshold_percent: f64,
    pub scale_down_sustain_s: u64,
    /// No scale-down within this of the last scale-up or scale-down.
    pub scale_down_cooldown_s: u64,
    /// No scale-up within this of the last scale-up (placeholders already count as
    /// capacity, so the default needs none).
    pub scale_up_cooldown_s: u64,
    /// Only cloud nodes empty for this long are returned.
    pub node_idle_s: u64,
}

impl Default for ReactiveConfig {
    fn default() -> Self {
        ReactiveConfig {
            scale_up_threshold_percent: 85.0,
            scale_down_threshold_percent: 30.0,
            scale_down_sustain_s: 30 * 60,
            scale_down_cooldown_s: 30 * 60,
            scale_up_cooldown_s: 0,
            node_idle_s: 15 * 60,
        }
    }
}

/// The longest duration any setting accepts: ten years, far from overflowing milliseconds.
pub const DURATION_S_MAX: u64 = 10 * 365 * 86_400;

/// A configuration value that cannot work, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), message: message.into() }
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("queue_tick_s", self.queue_tick_s),
            ("reservation_timeout_s", self.reservation_timeout_s),
            ("queue.timeout_s", self.queue.timeout_s),
            ("health.interval_s", self.health.interval_s),
            ("health.retry_spacing_s", self.health.retry_spacing_s),
            ("health.probe_timeout_s", self.health.probe_timeout_s),
            ("scaling.interval_s", self.scaling.interval_s),
            ("scaling.provision_timeout_s", self.scaling.provision_timeout_s),
            ("scaling.delete_timeout_s", self.scaling.delete_timeout_s),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(err(field, "must be at least 1"));
            }
        }
        let durations = [
            ("startup_delay_s", self.startup_delay_s),
            ("queue_tick_s", self.queue_tick_s),
            ("reservation_timeout_s", self.reservation_timeout_s),
            ("idle_shutdown_s", self.idle_shutdown_s),
            ("archive_after_s", self.archive_after_s),
            ("queue.timeout_s", self.queue.timeout_s),
            ("queue.skip_ahead_age_max_s", self.queue.skip_ahead_age_max_s),
            ("queue.retry_backoff_s", self.queue.retry_backoff_s),
            ("health.interval_s", self.health.interval_s),
            ("health.retry_spacing_s", self.health.retry_spacing_s),
            ("health.probe_timeout_s", self.health.probe_timeout_s),
            ("health.lost_grace_s", self.health.lost_grace_s),
            ("scaling.interval_s", self.scaling.interval_s),
            ("scaling.provision_timeout_s", self.scaling.provision_timeout_s),
            ("scaling.delete_timeout_s", self.scaling.delete_timeout_s),
            ("reactive.scale_down_sustain_s", self.reactive.scale_down_sustain_s),
            ("reactive.scale_down_cooldown_s", self.reactive.scale_down_cooldown_s),
            ("reactive.scale_up_cooldown_s", self.reactive.scale_up_cooldown_s),
            ("reactive.node_idle_s", self.reactive.node_idle_s),
        ];
        for (field, v) in durations {
            if v > DURATION_S_MAX {
                return Err(err(field, format!("{v} s is longer than {DURATION_S_MAX} s (ten years)")));
            }
        }
        if self.health.failures_max == 0 {
            return Err(err("health.failures_max", "must be at least 1"));
        }
        if self.queue.len_max == 0 {
            return Err(err("queue.len_max", "must be at least 1"));
        }
        if self.queue.per_user_max == 0 {
            return Err(err("queue.per_user_max", "must be at least 1"));
        }
        if self.debug_log_len == 0 {
            return Err(err("debug_log_len", "must be at least 1"));
        }
        let pct = |field: &str, v: f64| {
            if v.is_finite() && (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(err(field, format!("{v} is not a percentage between 0 and 100")))
            }
        };
        pct("reserve.percent", self.reserve.percent)?;
        pct("reactive.scale_up_threshold_percent", self.reactive.scale_up_threshold_percent)?;
        pct("reactive.scale_down_threshold_percent", self.reactive.scale_down_threshold_percent)?;
        if self.reactive.scale_down_threshold_percent >= self.reactive.scale_up_threshold_percent {
            return Err(err(
                "reactive.scale_down_threshold_percent",
                format!(
                    "{} must be below reactive.scale_up_threshold_percent ({})",
                    self.reactive.scale_down_threshold_percent, self.reactive.scale_up_threshold_percent
                ),
            ));
        }
        if self.cloud_name_prefix.is_empty()
            || !self.cloud_name_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(err("cloud_name_prefix", "must be non-empty ASCII letters, digits and '-'"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in self.catalogue.iter().enumerate() {
            let field = |k: &str| format!("catalogue[{i}].{k}");
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(err(&field("name"), format!("{:?} is empty or not unique", t.name)));
            }
            if t.ram_mb < 512 {
                return Err(err(&field("ram_mb"), format!("{} is below 512", t.ram_mb)));
            }
            if !(t.hourly_eur.is_finite() && t.hourly_eur >= 0.0) {
                return Err(err(&field("hourly_eur"), "must be a non-negative number"));
            }
            if let Some(cap) = t.monthly_cap_eur {
                if !(cap.is_finite() && cap >= 0.0) {
                    return Err(err(&field("monthly_cap_eur"), "must be a non-negative number"));
                }
            }
        }
        for p in &self.scaling.policies {
            if !crate::policy::POLICY_NAMES.contains(&p.as_str()) {
                return Err(err(
                    "scaling.policies",
                    format!("unknown policy {p:?} (known: {})", crate::policy::POLICY_NAMES.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_design_documents_and_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.startup_delay_s, 120);
        assert_eq!(c.queue.timeout_s, 600);
        assert_eq!(c.reactive.scale_up_threshold_percent, 85.0);
        assert_eq!(c.reactive.scale_down_threshold_percent, 30.0);
        assert_eq!(c.scaling.max_cloud_nodes, 10);
        assert_eq!(c.reserve.base_mb, 1000);
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = Config::default();
        c.reactive.scale_down_threshold_percent = 90.0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "reactive.scale_down_threshold_percent");
        assert!(e.to_string().contains("must be below reactive.scale_up_threshold_percent"), "{e}");

        let mut c = Config::default();
        c.catalogue[1].name = "cpx22".into();
        assert_eq!(c.validate().unwrap_err().field, "catalogue[1].name");

        let mut c = Config::default();
        c.reactive.node_idle_s = u64::MAX;
        assert_eq!(c.validate().unwrap_err().field, "reactive.node_idle_s");

        let mut c = Config::default();
        c.health.failures_max = 0;
        assert_eq!(c.validate().unwrap_err().field, "health.failures_max");

        let mut c = Config::default();
        c.scaling.policies = vec!["magic".into()];
        assert_eq!(c.validate().unwrap_err().field, "scaling.policies");
    }

    #[test]
    fn toml_round_trip_and_unknown_keys_are_rejected() {
        let c: Config = toml::from_str("[reactive]\nscale_up_threshold_percent = 80\n").unwrap();
        assert_eq!(c.reactive.scale_up_threshold_percent, 80.0);
        assert_eq!(c.queue.timeout_s, 600);
        let e = toml::from_str::<Config>("[reactive]\nscale_up_treshold = 80\n").unwrap_err();
        assert!(e.to_string().contains("scale_up_treshold"), "{e}");
    }
}
