//! Prometheus metrics. The driver task calls the `set_*`/`inc_*`/`observe_*` methods after it
//! drains the engine's outputs; the API serves [`Metrics::encode`] at `GET /metrics`.
//!
//! Every metric lives in one `prometheus_client` registry and is encoded by the crate's
//! standard OpenMetrics encoder. Each metric handle is internally atomic, so updates need
//! `&self` only and never wait on a scrape.
//!
//! Names follow the Prometheus conventions: base units (bytes, seconds) last in the name,
//! counters end in `_total`. RAM arrives from the engine in MiB (the `_mb` fields) and is
//! exported in bytes.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of [`Metrics::encode_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the queue-wait histogram, in seconds: half a second (a start that waited
/// one placement pass) up to ten minutes (a cloud VM bought and booted).
pub const QUEUE_WAIT_BUCKETS_S: [f64; 11] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0];

const BYTES_PER_MB: i64 = 1024 * 1024;

/// All metrics of one conductor process.
pub struct Metrics {
    registry: Registry,
    fleet_ram_bytes: Family<KindLabel, Gauge>,
    nodes: Family<NodeLabels, Gauge>,
    /// Label sets `set_nodes` has reported, so a (kind, state) pair that empties drops to 0
    /// instead of keeping its last count or vanishing between two scrapes.
    nodes_seen: Mutex<BTreeSet<(String, String)>>,
    queue_length: Gauge,
    queue_wait_seconds: Histogram,
    running_servers: Gauge,
    scaling_actions: Family<ScalingLabels, Counter>,
    adapter_errors: Family<AdapterLabels, Counter>,
    http_requests: Family<RequestLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let fleet_ram_bytes = Family::<KindLabel, Gauge>::default();
        registry.register(
            "conductor_fleet_ram_bytes",
            "RAM of the fleet by kind: total (installed), usable (after the per-node reserve), allocated (booked by servers)",
            fleet_ram_bytes.clone(),
        );
        let nodes = Family::<NodeLabels, Gauge>::default();
        registry.register("conductor_nodes", "Nodes by kind (dedicated, cloud) and lifecycle state", nodes.clone());
        let queue_length = Gauge::default();
        registry.register("conductor_queue_length", "Server starts waiting in the queue", queue_length.clone());
        let queue_wait_seconds = Histogram::new(QUEUE_WAIT_BUCKETS_S);
        registry.register(
            "conductor_queue_wait_seconds",
            "Time from a start request to its placement, for starts that were queued",
            queue_wait_seconds.clone(),
        );
        let running_servers = Gauge::default();
        registry.register("conductor_running_servers", "Servers placed on a node", running_servers.clone());
        // prometheus_client appends `_total` to counter names itself.
        let scaling_actions = Family::<ScalingLabels, Counter>::default();
        registry.register(
            "conductor_scaling_actions",
            "Scaling actions by direction (up: buy a VM, down: release one) and policy",
            scaling_actions.clone(),
        );
        let adapter_errors = Family::<AdapterLabels, Counter>::default();
        registry.register(
            "conductor_adapter_errors",
            "Failed calls to the outside world by adapter (docker, hetzner, slp) and operation",
            adapter_errors.clone(),
        );
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "conductor_http_requests",
            "HTTP API requests by route and status code",
            http_requests.clone(),
        );
        Metrics {
            registry,
            fleet_ram_bytes,
            nodes,
            nodes_seen: Mutex::new(BTreeSet::new()),
            queue_length,
            queue_wait_seconds,
            running_servers,
            scaling_actions,
            adapter_errors,
            http_requests,
        }
    }

    /// The OpenMetrics 1.0 text exposition, as `prometheus_client` encodes it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and every metric here encodes without error.
        encode(&mut out, &self.registry).expect("encoding metrics into a String cannot fail");
        out
    }

    /// The Prometheus text format 0.0.4, for scrapers and tools (`promtool check metrics`)
    /// that do not read OpenMetrics. The two formats differ, for what this registry holds,
    /// in three places only: OpenMetrics names a counter family without its `_total` suffix
    /// in `# HELP`/`# TYPE`, and it has `# UNIT` and `# EOF` lines. This rewrites those lines
    /// and copies every sample line unchanged.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    /// RAM of the fleet, in MiB as the engine counts it.
    pub fn set_fleet(&self, total_ram_mb: u64, usable_ram_mb: u64, allocated_ram_mb: u64) {
        for (kind, mb) in [("total", total_ram_mb), ("usable", usable_ram_mb), ("allocated", allocated_ram_mb)] {
            let bytes = i64::try_from(mb).unwrap_or(i64::MAX / BYTES_PER_MB).saturating_mul(BYTES_PER_MB);
            self.fleet_ram_bytes.get_or_create(&KindLabel { kind: kind.to_string() }).set(bytes);
        }
    }

    /// The node count of every (kind, state) pair. Pairs reported before and missing now are set to 0.
    pub fn set_nodes(&self, counts: &[(&str, &str, u64)]) {
        // A poisoned lock only means another thread panicked mid-update; the set is still usable.
        let mut seen = self.nodes_seen.lock().unwrap_or_else(|e| e.into_inner());
        let now: BTreeSet<(String, String)> = counts.iter().map(|(k, s, _)| (k.to_string(), s.to_string())).collect();
        for (kind, state) in seen.iter().filter(|pair| !now.contains(*pair)) {
            self.nodes.get_or_create(&NodeLabels { kind: kind.clone(), state: state.clone() }).set(0);
        }
        for (kind, state, count) in counts {
            let labels = NodeLabels { kind: kind.to_string(), state: state.to_string() };
            self.nodes.get_or_create(&labels).set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        seen.extend(now);
    }

    pub fn set_queue_length(&self, n: usize) {
        self.queue_length.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn observe_queue_wait(&self, seconds: f64) {
        self.queue_wait_seconds.observe(seconds);
    }

    pub fn set_running_servers(&self, n: usize) {
        self.running_servers.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `direction` is `up` or `down`; `policy` names the scaling policy that decided.
    pub fn inc_scaling_action(&self, direction: &str, policy: &str) {
        let labels = ScalingLabels { direction: direction.to_string(), policy: policy.to_string() };
        self.scaling_actions.get_or_create(&labels).inc();
    }

    /// `adapter` is `docker`, `hetzner` or `slp`; `op` names the operation that failed.
    pub fn inc_adapter_error(&self, adapter: &str, op: &str) {
        let labels = AdapterLabels { adapter: adapter.to_string(), op: op.to_string() };
        self.adapter_errors.get_or_create(&labels).inc();
    }

    /// `route` is a fixed route name (never a raw path, which would make one series per id).
    pub fn inc_requests(&self, route: &str, status: u16) {
        let labels = RequestLabels { route: route.to_string(), status: status.to_string() };
        self.http_requests.get_or_create(&labels).inc();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScalingLabels {
    direction: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    adapter: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: String,
}

/// See [`Metrics::encode_text`].
fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut counters = BTreeSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|rest| rest.strip_suffix(" counter")) {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match header {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let name = rest.split(' ').next().unwrap_or_default();
                if counters.contains(name) {
                    out.push_str(prefix);
                    out.push_str(name);
                    out.push_str("_total");
                    out.push_str(&rest[name.len()..]);
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> Metrics {
        let m = Metrics::new();
        m.set_fleet(65536, 60000, 12288);
        m.set_nodes(&[("dedicated", "active", 3), ("cloud", "awaiting_provision", 1)]);
        m.set_queue_length(4);
        m.observe_queue_wait(0.2);
        m.observe_queue_wait(42.0);
        m.set_running_servers(7);
        m.inc_scaling_action("up", "headroom");
        m.inc_adapter_error("docker", "start");
        m.inc_adapter_error("hetzner", "create_server");
        m.inc_requests("server_start", 202);
        m
    }

    #[test]
    fn encoding_has_every_family() {
        let text = filled().encode();
        for needle in [
            "# TYPE conductor_fleet_ram_bytes gauge",
            r#"conductor_fleet_ram_bytes{kind="total"} 68719476736"#,
            r#"conductor_fleet_ram_bytes{kind="allocated"} 12884901888"#,
            r#"conductor_nodes{kind="dedicated",state="active"} 3"#,
            "conductor_queue_length 4",
            "# TYPE conductor_queue_wait_seconds histogram",
            r#"conductor_queue_wait_seconds_bucket{le="0.5"} 1"#,
            r#"conductor_queue_wait_seconds_bucket{le="600.0"} 2"#,
            "conductor_queue_wait_seconds_count 2",
            "conductor_running_servers 7",
            r#"conductor_scaling_actions_total{direction="up",policy="headroom"} 1"#,
            r#"conductor_adapter_errors_total{adapter="docker",op="start"} 1"#,
            r#"conductor_http_requests_total{route="server_start",status="202"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn nodes_that_empty_drop_to_zero() {
        let m = filled();
        m.set_nodes(&[("dedicated", "active", 2)]);
        let text = m.encode();
        assert!(text.contains(r#"conductor_nodes{kind="dedicated",state="active"} 2"#), "{text}");
        assert!(text.contains(r#"conductor_nodes{kind="cloud",state="awaiting_provision"} 0"#), "{text}");
    }

    #[test]
    fn text_format_names_counters_with_total_and_has_no_openmetrics_lines() {
        // Series order within a family follows a HashMap, so both texts come from one encoding.
        let openmetrics = filled().encode();
        let text = openmetrics_to_text(&openmetrics);
        assert!(text.contains("# TYPE conductor_scaling_actions_total counter\n"), "{text}");
        assert!(text.contains("# HELP conductor_adapter_errors_total Failed calls"), "{text}");
        assert!(text.contains("# TYPE conductor_queue_length gauge\n"), "{text}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        // Every sample line is copied unchanged.
        let samples = |s: &str| s.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect::<Vec<_>>();
        assert_eq!(samples(&text), samples(&openmetrics));
    }

    /// `promtool check metrics` lints the 0.0.4 text when promtool is on the PATH (Debian:
    /// `apt-get install prometheus`; `scripts/test.sh` installs it and sets
    /// `CONDUCTOR_REQUIRE_PROMTOOL`, which turns a missing promtool into a failure). Without it
    /// this test only checks that there is an exposition, and says so on stderr. (promtool reads 0.0.4 only: fed the OpenMetrics text,
    /// it takes each `_total` sample for an untyped family without help text.)
    #[test]
    fn promtool_accepts_the_text_format() {
        let text = filled().encode_text();
        assert!(!text.is_empty());
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            assert!(
                std::env::var_os("CONDUCTOR_REQUIRE_PROMTOOL").is_none(),
                "CONDUCTOR_REQUIRE_PROMTOOL is set but promtool cannot be run"
            );
            eprintln!("promtool not installed; skipping `promtool check metrics`");
            return;
        };
        use std::io::Write;
        // The child was spawned with a piped stdin, so it is there.
        child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool rejected the exposition:\n{}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
