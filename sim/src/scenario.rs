//! Scenario files (TOML). Every table and key is optional; see `scenarios/README.md`.
//! `--set dotted.key=value` overrides are applied to the parsed TOML before it is
//! typed, so they reach every key, the engine's `[conductor]` table included.

use conductor_core::config::Config;
use conductor_core::model::{NodeKind, ServerType};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    /// The calendar time of the trace's t = 0, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub start: String,
    /// Run at least this long: `"36h"`, `"7d"`, `"90m"`, `"600s"`.
    pub duration: Option<String>,
    pub policy: String,
    pub trace: TraceSource,
    pub nodes: Vec<NodeDef>,
    pub cloud: CloudDef,
    pub timing: Timing,
    pub faults: Faults,
    pub report: ReportDef,
    pub conductor: Config,
    /// Taken in `conductor chaos`'s rotation when no scenario is named. A scenario too
    /// large for a full invariant check after every event over thousands of seeds says
    /// `false` and is run by naming it.
    pub chaos_rotation: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "unnamed".into(),
            seed: 1,
            start: "2026-01-05T00:00:00Z".into(),
            duration: None,
            policy: "default".into(),
            trace: TraceSource::default(),
            nodes: Vec::new(),
            cloud: CloudDef::default(),
            timing: Timing::default(),
            faults: Faults::default(),
            report: ReportDef::default(),
            chaos_rotation: true,
            conductor: Config::default(),
        }
    }
}

/// A trace file (relative to the scenario file) or a generator table.
#[derive(Clone, Debug)]
pub enum TraceSource {
    Path(String),
    Generate { generate: GenDef },
}

impl<'de> Deserialize<'de> for TraceSource {
    /// By hand rather than `untagged`, whose one error ("did not match any variant")
    /// names neither the key nor what is wrong with it.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            generate: GenDef,
        }
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::String(path) => Ok(TraceSource::Path(path)),
            t @ toml::Value::Table(_) => Table::deserialize(t)
                .map(|t| TraceSource::Generate { generate: t.generate })
                .map_err(|e| D::Error::custom(format!("trace: {}", e.to_string().trim()))),
            other => Err(D::Error::custom(format!(
                "trace: expected a file path (a string) or a [trace.generate] table, found {}",
                other.type_str()
            ))),
        }
    }
}

impl Default for TraceSource {
    fn default() -> Self {
        TraceSource::Generate { generate: GenDef::default() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenDef {
    pub days: u32,
    pub customers: u32,
    pub peak_concurrent: u32,
    pub tier_mix: [u32; 5],
    pub always_on_fraction_large: f64,
    pub weekend_boost: f64,
    pub players: bool,
    pub flash_crowds: Vec<FlashDef>,
}

impl Default for GenDef {
    fn default() -> Self {
        GenDef {
            days: 1,
            customers: 200,
            peak_concurrent: 40,
            tier_mix: [30, 40, 20, 8, 2],
            always_on_fraction_large: 0.3,
            weekend_boost: 1.6,
            players: true,
            flash_crowds: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashDef {
    pub at_s: u64,
    pub starts: u32,
    pub within_s: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    pub id: String,
    #[serde(default = "dedicated")]
    pub kind: NodeKind,
    pub ram_mb: u32,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub monthly_eur: f64,
    #[serde(default = "four")]
    pub cores: u32,
}

fn dedicated() -> NodeKind {
    NodeKind::Dedicated
}

fn four() -> u32 {
    4
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudDef {
    /// Overrides `conductor.scaling.max_cloud_nodes` when set.
    pub max_nodes: Option<u32>,
    /// VM boot time (API call to a healthy Docker daemon), uniform in this range.
    pub boot_s_min: u64,
    pub boot_s_max: u64,
    /// Overrides `conductor.catalogue` when non-empty.
    pub types: Vec<ServerType>,
}

impl Default for CloudDef {
    fn default() -> Self {
        CloudDef { max_nodes: None, boot_s_min: 40, boot_s_max: 180, types: Vec::new() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    pub container_start_s_min: u64,
    pub container_start_s_max: u64,
    pub container_stop_s: u64,
    /// Copying a world from the archive or another node before a start.
    pub world_restore_s: u64,
    pub world_move_s: u64,
    pub archive_s: u64,
    /// Cloud API latency of create and delete calls.
    pub api_s: u64,
    /// Node crash to the host being back (dedicated hosts reboot; VMs too).
    pub node_repair_s: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            container_start_s_min: 10,
            container_start_s_max: 60,
            container_stop_s: 5,
            world_restore_s: 30,
            world_move_s: 45,
            archive_s: 60,
            api_s: 2,
            node_repair_s: 900,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability that one provision call fails.
    pub provision_failure_rate: f64,
    /// Probability that one container start fails.
    pub container_start_failure_rate: f64,
    /// Expected crashes per node and day.
    pub node_crashes_per_day: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportDef {
    /// Seconds between plot samples; 0 = about 2,000 samples over the run.
    pub sample_s: u64,
}

impl Default for ReportDef {
    fn default() -> Self {
        ReportDef { sample_s: 0 }
    }
}

/// A loaded scenario with its file's location, for relative trace paths.
pub struct Loaded {
    pub scenario: Scenario,
    pub path: PathBuf,
    /// Hours since the Monday 00:00 UTC before `start`, for weekday/hour knowledge.
    pub start_week_offset_s: u64,
    /// The `--set` overrides it was loaded with, in order (for the report's reproduce line).
    pub sets: Vec<String>,
}

impl Loaded {
    pub fn trace_path(&self) -> Option<PathBuf> {
        match &self.scenario.trace {
            TraceSource::Path(p) => Some(self.path.parent().unwrap_or(Path::new(".")).join(p)),
            TraceSource::Generate { .. } => None,
        }
    }

    pub fn duration_ms(&self) -> Result<Option<u64>, String> {
        self.scenario
            .duration
            .as_deref()
            .map(|d| parse_duration_ms(d).map_err(|e| format!("duration: {e}")))
            .transpose()
    }
}

/// Load, apply overrides, type-check and validate. Errors name the file and the key.
pub fn load(path: &Path, sets: &[String], policy: Option<&str>) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("{}: {}", path.display(), e))?;
    for s in sets {
        apply_set(&mut value, s).map_err(|e| format!("--set {s}: {e}"))?;
    }
    if let Some(p) = policy {
        value.insert("policy".into(), toml::Value::String(p.into()));
    }
    // A placement (or reactive threshold) the scenario or `--set` names is kept,
    // whatever the policy.
    let named =
        |table: &str, key: &str| value.get("conductor").and_then(|c| c.get(table)).and_then(|p| p.get(key)).is_some();
    let kept = Named {
        strategy: named("placement", "strategy"),
        low_water: named("placement", "owned_low_water_percent"),
        flap_memory: named("scaling", "flap_memory_s"),
        cap_history: named("scaling", "cap_history_s"),
        threshold: named("reactive", "scale_up_threshold_percent"),
        policies: named("scaling", "policies"),
    };
    let mut scenario: Scenario = toml::Value::Table(value).try_into().map_err(|e: toml::de::Error| {
        let e = e.to_string();
        // Whose fault: the file's, unless the file alone types and the overrides broke it.
        let file_alone =
            text.parse::<toml::Table>().ok().and_then(|t| toml::Value::Table(t).try_into::<Scenario>().ok());
        match file_alone {
            Some(_) if !sets.is_empty() => {
                format!("{} with --set {}: {}", path.display(), sets.join(" --set "), e.trim())
            }
            _ => format!("{}: {}", path.display(), e.trim()),
        }
    })?;
    if scenario.name == "unnamed" {
        scenario.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    apply_policy(&mut scenario, kept).map_err(|e| format!("{}: policy: {e}", path.display()))?;
    let start_week_offset_s = parse_start(&scenario.start).map_err(|e| format!("{}: start: {e}", path.display()))?;
    scenario.conductor.scaling.calendar_week_offset_s = start_week_offset_s;
    // The generator's day curve starts at midnight: a later hour would shift the evening
    // peak against the engine's calendar (weekday schedules, predictive seasonality).
    if matches!(scenario.trace, TraceSource::Generate { .. }) && start_week_offset_s % 86_400 != 0 {
        return Err(format!(
            "{}: start: {:?} is not at 00:00:00, where a generated trace begins",
            path.display(),
            scenario.start
        ));
    }
    if let Some(max) = scenario.cloud.max_nodes {
        scenario.conductor.scaling.max_cloud_nodes = max;
    }
    if !scenario.cloud.types.is_empty() {
        scenario.conductor.catalogue = scenario.cloud.types.clone();
    }
    scenario.conductor.validate().map_err(|e| format!("{}: conductor.{e}", path.display()))?;
    validate(&scenario).map_err(|e| format!("{}: {e}", path.display()))?;
    let loaded = Loaded { scenario, path: path.to_path_buf(), start_week_offset_s, sets: sets.to_vec() };
    loaded.duration_ms().map_err(|e| format!("{}: {e}", path.display()))?;
    // The generator's own checks, so that a bad table is bad input (exit 2) before any run.
    if let TraceSource::Generate { generate: g } = &loaded.scenario.trace {
        crate::generate::validate(&crate::harness::gen_params(g, &loaded))
            .map_err(|e| format!("{}: trace.generate.{e}", path.display()))?;
    }
    Ok(loaded)
}

/// Policy names the simulator accepts. Each maps to a stack of engine policies
/// (`conductor.scaling.policies`); `default` is the best stack measured so far, unless
/// `[conductor.scaling] policies` names other policies, which are then kept as written.
pub const POLICIES: &[&str] = &[
    "default",
    "seed",
    "reactive",
    "spare_pool",
    "predictive",
    "agones_buffer",
    "cluster_autoscaler",
    "karpenter",
    "consolidation",
];

pub use conductor_core::config::{DEFAULT_STACK, DEFAULT_STACK_REACTIVE_THRESHOLD};

/// Which of the keys a policy would set the scenario (or `--set`) names itself.
#[derive(Clone, Copy)]
struct Named {
    strategy: bool,
    low_water: bool,
    flap_memory: bool,
    cap_history: bool,
    threshold: bool,
    policies: bool,
}

fn apply_policy(s: &mut Scenario, named: Named) -> Result<(), String> {
    let scaling = &mut s.conductor.scaling;
    let stack: &[&str] = match s.policy.as_str() {
        "default" => {
            // `[conductor.scaling] policies` named in the scenario are kept as written.
            if !named.policies {
                s.conductor.use_default_stack(named.threshold);
            }
            return Ok(());
        }
        "seed" => &["seed"],
        "reactive" => &["reactive"],
        // A spare pool alone never reacts to a queue it did not foresee: reactive backs it.
        "spare_pool" => &["spare_pool", "reactive"],
        "predictive" => &["predictive"],
        // Consolidation only moves servers and sells what it emptied: reactive buys.
        "consolidation" => &["consolidation", "reactive"],
        "agones_buffer" => {
            // Agones syncs every 30 s.
            scaling.interval_s = scaling.interval_s.min(s.conductor.agones_buffer.sync_interval_s);
            &["agones_buffer"]
        }
        "cluster_autoscaler" | "karpenter" => {
            // Both scan every 10 s.
            scaling.interval_s = scaling.interval_s.min(10);
            if s.policy == "karpenter" {
                &["karpenter"]
            } else {
                &["cluster_autoscaler"]
            }
        }
        other => return Err(format!("unknown policy {other:?} (known: {})", POLICIES.join(", "))),
    };
    // Placement as each baseline has it, unless the scenario names one: `seed` the
    // design's spread; the Cluster Autoscaler and Karpenter run beside the Kubernetes
    // scheduler, whose default scoring (LeastAllocated) spreads. (Agones' default,
    // Packed, is our default best fit.)
    if !named.strategy && matches!(s.policy.as_str(), "seed" | "cluster_autoscaler" | "karpenter") {
        s.conductor.placement.strategy = conductor_core::config::PlacementStrategy::Spread;
    }
    // Sending short stays to rented nodes is ours: the design and the peers always place
    // owned first.
    let baseline = matches!(s.policy.as_str(), "seed" | "agones_buffer" | "cluster_autoscaler" | "karpenter");
    if !named.low_water && baseline {
        s.conductor.placement.owned_low_water_percent = 0.0;
    }
    // So is learning from flaps: the baselines keep the engine's fixed rebuy cooldown.
    if !named.flap_memory && baseline {
        s.conductor.scaling.flap_memory_s = 0;
    }
    // And sizing VMs under the node maximum by last week's demand: the baselines guess
    // with `cap_headroom` (`seed` does not size by it at all).
    if !named.cap_history && baseline {
        s.conductor.scaling.cap_history_s = 0;
    }
    s.conductor.scaling.policies = stack.iter().map(|p| p.to_string()).collect();
    Ok(())
}

fn validate(s: &Scenario) -> Result<(), String> {
    let mut ids = std::collections::BTreeSet::new();
    for (i, n) in s.nodes.iter().enumerate() {
        if n.id.is_empty() || !ids.insert(n.id.as_str()) {
            return Err(format!("nodes[{i}].id: {:?} is empty or not unique", n.id));
        }
        // Ids are written into decisions.csv as they are.
        if n.id.chars().any(|c| c == ',' || c == '"' || c.is_control()) {
            return Err(format!("nodes[{i}].id: {:?} holds a comma, quote or control character", n.id));
        }
        if n.ram_mb < 512 {
            return Err(format!("nodes[{i}].ram_mb: {} is below 512", n.ram_mb));
        }
        if !(n.monthly_eur.is_finite() && n.monthly_eur >= 0.0) {
            return Err(format!("nodes[{i}].monthly_eur: must be a non-negative number"));
        }
    }
    let t = &s.timing;
    let secs = [
        ("cloud.boot_s_min", s.cloud.boot_s_min),
        ("cloud.boot_s_max", s.cloud.boot_s_max),
        ("timing.container_start_s_min", t.container_start_s_min),
        ("timing.container_start_s_max", t.container_start_s_max),
        ("timing.container_stop_s", t.container_stop_s),
        ("timing.world_restore_s", t.world_restore_s),
        ("timing.world_move_s", t.world_move_s),
        ("timing.archive_s", t.archive_s),
        ("timing.api_s", t.api_s),
        ("timing.node_repair_s", t.node_repair_s),
        ("report.sample_s", s.report.sample_s),
    ];
    for (name, v) in secs {
        if v > conductor_core::config::DURATION_S_MAX {
            return Err(format!("{name}: {v} s is longer than ten years"));
        }
    }
    let owned_cloud = s.nodes.iter().filter(|n| n.kind == NodeKind::Cloud).count();
    if owned_cloud > s.conductor.scaling.max_cloud_nodes as usize {
        return Err(format!(
            "nodes: {owned_cloud} cloud nodes exceed cloud.max_nodes / conductor.scaling.max_cloud_nodes ({})",
            s.conductor.scaling.max_cloud_nodes
        ));
    }
    if s.cloud.boot_s_min > s.cloud.boot_s_max {
        return Err("cloud.boot_s_min: must not exceed cloud.boot_s_max".into());
    }
    if s.timing.container_start_s_min > s.timing.container_start_s_max {
        return Err("timing.container_start_s_min: must not exceed timing.container_start_s_max".into());
    }
    let rate = |name: &str, v: f64| {
        if v.is_finite() && (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(format!("faults.{name}: {v} is not a probability between 0 and 1"))
        }
    };
    rate("provision_failure_rate", s.faults.provision_failure_rate)?;
    rate("container_start_failure_rate", s.faults.container_start_failure_rate)?;
    if !(s.faults.node_crashes_per_day.is_finite() && s.faults.node_crashes_per_day >= 0.0) {
        return Err("faults.node_crashes_per_day: must be a non-negative number".into());
    }
    if let TraceSource::Generate { generate: g } = &s.trace {
        if g.days == 0 || g.days > 366 {
            return Err("trace.generate.days: must be between 1 and 366".into());
        }
    }
    Ok(())
}

/// `a.b.c=value`: value is TOML if it parses as one (number, bool, array, quoted
/// string), otherwise a bare string.
pub fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), String> {
    let (key, raw) = set.split_once('=').ok_or("expected dotted.key=value")?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err("empty key".into());
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    // Tables are walked (and made) by name, arrays of tables by index from 0:
    // `nodes.1.ram_mb` is the second `[[nodes]]`'s `ram_mb`.
    let mut root = toml::Value::Table(std::mem::take(table));
    let r = set_path(&mut root, &key.split('.').collect::<Vec<_>>(), value);
    let toml::Value::Table(t) = root else { unreachable!("the root stays a table") };
    *table = t;
    r
}

fn set_path(root: &mut toml::Value, parts: &[&str], value: toml::Value) -> Result<(), String> {
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let walked = parts[..i].join(".");
        cur = match cur {
            toml::Value::Table(t) if last => {
                t.insert(p.to_string(), value);
                return Ok(());
            }
            toml::Value::Table(t) => t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())),
            toml::Value::Array(a) => {
                let n = a.len();
                let slot = p
                    .parse::<usize>()
                    .ok()
                    .and_then(|j| a.get_mut(j))
                    .ok_or_else(|| format!("{walked} is an array of {n}: {p:?} is not an index below {n}"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => return Err(format!("{walked} is not a table")),
        };
    }
    unreachable!("a key has at least one part")
}

/// `"36h"`, `"7d"`, `"90m"`, `"600s"` or a bare number of seconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 36h, 7d, 90m or 600s"))?;
    let mul = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    n.checked_mul(mul).filter(|&v| v <= 400 * 86_400_000).ok_or_else(|| format!("{s:?} is longer than 400 days"))
}

/// Seconds from the Monday 00:00 UTC on or before `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_start(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a UTC time like 2026-01-05T00:00:00Z");
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().map_err(|_| bad());
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=month_days).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    // Days since 1970-01-01 (Howard Hinnant's civil-from-days inverse).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // 1970-01-01 was a Thursday: weekday index with Monday = 0 is (days + 3) mod 7.
    let weekday = (days + 3).rem_euclid(7);
    Ok((weekday * 86_400 + h * 3600 + mi * 60 + se) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_weekday_offsets() {
        assert_eq!(parse_start("2026-01-05T00:00:00Z").unwrap(), 0, "a Monday");
        assert_eq!(parse_start("2026-01-09T19:00:00Z").unwrap(), 4 * 86_400 + 19 * 3600, "Friday 19:00");
        assert_eq!(parse_start("2024-02-29T00:00:00Z").unwrap(), 3 * 86_400, "leap day was a Thursday");
        assert!(parse_start("2026-13-01T00:00:00Z").is_err());
        assert!(parse_start("2026-02-29T00:00:00Z").is_err(), "2026 is no leap year");
        assert!(parse_start("2026-04-31T00:00:00Z").is_err());
        assert!(parse_start("2100-02-29T00:00:00Z").is_err(), "centuries are leap years only by 400");
        assert!(parse_start("2000-02-29T00:00:00Z").is_ok());
        assert!(parse_start("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("36h").unwrap(), 36 * 3_600_000);
        assert_eq!(parse_duration_ms("600").unwrap(), 600_000);
        assert!(parse_duration_ms("3w").is_err());
        assert!(parse_duration_ms("").is_err());
    }

    #[test]
    fn set_overrides_nested_keys_with_typed_values() {
        let mut t: toml::Table = "[conductor.reactive]\nscale_up_threshold_percent = 85.0\n".parse().unwrap();
        apply_set(&mut t, "conductor.reactive.scale_up_threshold_percent=80").unwrap();
        apply_set(&mut t, "name=hello world").unwrap();
        apply_set(&mut t, "cloud.max_nodes=3").unwrap();
        assert_eq!(t["conductor"]["reactive"]["scale_up_threshold_percent"].as_integer(), Some(80));
        assert_eq!(t["name"].as_str(), Some("hello world"));
        assert_eq!(t["cloud"]["max_nodes"].as_integer(), Some(3));
        assert!(apply_set(&mut t, "name.x=1").is_err(), "name is not a table");
        assert!(apply_set(&mut t, "novalue").is_err());
        // Arrays of tables by index: `[[nodes]]` and `[[cloud.types]]` entries.
        let mut t: toml::Table = "[[nodes]]\nid = \"a\"\n[[nodes]]\nid = \"b\"\nram_mb = 1024\n".parse().unwrap();
        apply_set(&mut t, "nodes.1.ram_mb=65536").unwrap();
        apply_set(&mut t, "nodes.0.id=\"first\"").unwrap();
        assert_eq!(t["nodes"][1]["ram_mb"].as_integer(), Some(65536));
        assert_eq!(t["nodes"][0]["id"].as_str(), Some("first"));
        assert_eq!(t["nodes"][1]["id"].as_str(), Some("b"), "the rest of the entry is kept");
        let e = apply_set(&mut t, "nodes.2.ram_mb=1").unwrap_err();
        assert_eq!(e, "nodes is an array of 2: \"2\" is not an index below 2");
        assert!(apply_set(&mut t, "nodes.x.ram_mb=1").is_err());
        assert_eq!(t["nodes"].as_array().map(Vec::len), Some(2), "a refused --set changes nothing");
    }

    #[test]
    fn the_default_stack_runs_reactive_at_its_own_threshold_unless_one_is_named() {
        let dir = std::env::temp_dir().join(format!("conductor-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.toml");
        std::fs::write(&file, "trace = \"t.csv\"\n").unwrap();
        let threshold = |sets: &[&str], policy: &str| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let l = load(&file, &sets, Some(policy)).unwrap();
            (l.scenario.conductor.scaling.policies.clone(), l.scenario.conductor.reactive.scale_up_threshold_percent)
        };
        let (stack, t) = threshold(&[], "default");
        assert_eq!(stack, DEFAULT_STACK);
        assert_eq!(t, DEFAULT_STACK_REACTIVE_THRESHOLD);
        assert_eq!(threshold(&["conductor.reactive.scale_up_threshold_percent=91"], "default").1, 91.0);
        let reactive = conductor_core::config::ReactiveConfig::default().scale_up_threshold_percent;
        assert_eq!(threshold(&[], "reactive").1, reactive, "reactive alone keeps its default");
        // Policies the scenario names are kept as written, even the core's own default.
        let named = threshold(&["conductor.scaling.policies=[\"reactive\"]"], "default");
        assert_eq!(named, (vec!["reactive".to_string()], reactive));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
