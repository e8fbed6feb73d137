//! `conductor.toml`: the live driver's configuration (see `conductor.example.toml`).
//! Secrets never live here: the API token comes from `CONDUCTOR_API_TOKEN` (or the
//! file `api.token_file`), the Hetzner token from `HCLOUD_TOKEN` (or
//! `hetzner.token_file`). Every error names the field.

use crate::control::{valid_host, valid_name};
use conductor_core::config::Config as CoreConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    pub api: ApiConfig,
    pub database: DatabaseConfig,
    pub containers: ContainerConfig,
    pub ssh: SshConfig,
    pub nodes: Vec<NodeConfig>,
    pub hetzner: HetznerConfig,
    pub players: PlayersConfig,
    pub archive: ArchiveConfig,
    /// The core's configuration (`[conductor]`, the same table as in scenarios).
    pub conductor: CoreConfig,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            api: ApiConfig::default(),
            database: DatabaseConfig::default(),
            containers: ContainerConfig::default(),
            ssh: SshConfig::default(),
            nodes: Vec::new(),
            hetzner: HetznerConfig::default(),
            players: PlayersConfig::default(),
            archive: ArchiveConfig::default(),
            conductor: CoreConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: String,
    /// A file holding the API token, used when `CONDUCTOR_API_TOKEN` is not set.
    pub token_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: "127.0.0.1:8080".into(), token_file: None }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The SQLite file (journal, queue, node registry); relative to the config file.
    pub path: PathBuf,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { path: "conductor.db".into() }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerConfig {
    pub image: String,
    /// The port the game listens on inside the container.
    pub container_port: u16,
    pub env: BTreeMap<String, String>,
    /// Seconds between SIGTERM and SIGKILL on stop.
    pub stop_grace_s: u64,
    /// A named Docker volume per server, mounted at /data (the world).
    pub data_volumes: bool,
    /// Default host port range of a node, `FROM-TO` inclusive.
    pub ports: String,
    /// Timeout of one Docker call (connect, start, list).
    pub docker_timeout_s: u64,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            image: "itzg/minecraft-server:latest".into(),
            container_port: 25565,
            env: BTreeMap::from([("EULA".to_string(), "TRUE".to_string())]),
            stop_grace_s: 30,
            data_volumes: true,
            ports: "25565-25664".into(),
            docker_timeout_s: 20,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConfig {
    pub user: String,
    /// Private key (key authentication only).
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// `true`: unknown and changed host keys are refused. `false`: unknown keys are
    /// accepted and remembered, changed keys are still refused.
    pub strict_host_keys: bool,
    pub port: u16,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            user: "root".into(),
            key: "/etc/conductor/id_ed25519".into(),
            known_hosts: "/etc/conductor/known_hosts".into(),
            strict_host_keys: true,
            port: 22,
        }
    }
}

/// An owned (dedicated) host.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    /// SSH host, or `local` for this machine's Docker socket.
    pub address: String,
    #[serde(default)]
    pub ssh_port: Option<u16>,
    /// SSH user for this host; defaults to `ssh.user`.
    #[serde(default)]
    pub ssh_user: Option<String>,
    /// Private key for this host; defaults to `ssh.key`.
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    pub ram_mb: u32,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub cores: u32,
    #[serde(default)]
    pub monthly_eur: f64,
    /// Host port range for servers; defaults to `containers.ports`.
    #[serde(default)]
    pub ports: Option<String>,
    /// The host name players connect to; defaults to `address` (127.0.0.1 for `local`).
    #[serde(default)]
    pub public_host: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HetznerConfig {
    /// Rent VMs; without it the core's scaling still runs but nothing is bought.
    pub enabled: bool,
    pub api_url: String,
    /// A file holding the token, used when `HCLOUD_TOKEN` is not set.
    pub token_file: Option<PathBuf>,
    pub location: String,
    pub image: String,
    /// Names of SSH keys stored in the Hetzner project, installed on new VMs.
    pub ssh_keys: Vec<String>,
    /// Public keys written into cloud-init (for the conductor's own key).
    pub authorized_keys: Vec<String>,
    /// SSH port of new VMs.
    pub ssh_port: u16,
    /// Seconds to wait for a created VM to report `running`.
    pub boot_timeout_s: u64,
    /// Every this many seconds the VMs labelled `managed_by=conductor` are listed, and one that
    /// is no node of this conductor (say, a create whose answer was lost) is deleted, so that no
    /// VM is billed for ever. `0` never sweeps (the start's reconciliation still runs). Only
    /// this instance's VMs are swept (see `instance`), and only after Hetzner was listed at start.
    pub orphan_sweep_s: u64,
    /// This conductor's name among others in the same Hetzner project: its VMs carry the label
    /// `conductor.instance=<instance>`, and it adopts and sweeps no other instance's VMs.
    pub instance: String,
}

impl Default for HetznerConfig {
    fn default() -> Self {
        HetznerConfig {
            enabled: false,
            api_url: "https://api.hetzner.cloud/v1".into(),
            token_file: None,
            location: "nbg1".into(),
            image: "debian-12".into(),
            ssh_keys: Vec::new(),
            authorized_keys: Vec::new(),
            ssh_port: 22,
            boot_timeout_s: 600,
            orphan_sweep_s: 600,
            instance: "default".into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayersConfig {
    /// Server List Ping of every running server this often (0 = never).
    pub interval_s: u64,
    pub timeout_s: u64,
}

impl Default for PlayersConfig {
    fn default() -> Self {
        PlayersConfig { interval_s: 60, timeout_s: 5 }
    }
}

/// Where worlds go when a stopped server's world leaves its node (`ArchiveWorld`), and
/// where `RestoreFromArchive` reads them from: `<dir>/<server>/<generation>.tar`, on the
/// conductor's own host. Without `dir`, worlds stay in their node's Docker volume and a
/// node holding one is never returned.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The archive folder (relative to the config file); absent = no archive.
    pub dir: Option<PathBuf>,
    /// Bound on one world transfer (archive, restore, or a move between nodes); 0 = 600 s.
    pub transfer_timeout_s: u64,
}

impl ArchiveConfig {
    pub fn transfer_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(if self.transfer_timeout_s == 0 { 600 } else { self.transfer_timeout_s })
    }
}

/// An inclusive host port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not FROM-TO"))?;
        let from: u16 = a.trim().parse().map_err(|_| format!("{a:?} is not a port"))?;
        let to: u16 = b.trim().parse().map_err(|_| format!("{b:?} is not a port"))?;
        if from == 0 || to < from {
            return Err(format!("{s:?} is empty or starts at 0"));
        }
        Ok(PortRange { from, to })
    }
}

impl LiveConfig {
    /// Reads and validates the file; relative paths are resolved against its folder.
    pub fn load(path: &Path) -> Result<LiveConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut cfg = LiveConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut cfg.database.path);
        rel(&mut cfg.ssh.key);
        rel(&mut cfg.ssh.known_hosts);
        if let Some(p) = cfg.api.token_file.as_mut() {
            rel(p);
        }
        if let Some(p) = cfg.hetzner.token_file.as_mut() {
            rel(p);
        }
        if let Some(p) = cfg.archive.dir.as_mut() {
            rel(p);
        }
        cfg.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Parses a configuration (not yet validated). Where `[conductor.scaling] policies` is
    /// left out, the core runs the default stack, as the simulator's `default` does
    /// ([`conductor_core::config::Config::use_default_stack`]).
    pub fn parse(text: &str) -> Result<LiveConfig, String> {
        // Deserialized from the text itself, so that errors keep their line and column.
        let mut cfg: LiveConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let named =
            |t: &str, key: &str| table.get("conductor").and_then(|c| c.get(t)).and_then(|p| p.get(key)).is_some();
        let (policies_named, threshold_named) =
            (named("scaling", "policies"), named("reactive", "scale_up_threshold_percent"));
        if !policies_named {
            cfg.conductor.use_default_stack(threshold_named);
        }
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.conductor.validate().map_err(|e| format!("conductor.{e}"))?;
        self.api.listen.parse::<std::net::SocketAddr>().map_err(|e| format!("api.listen: {e}"))?;
        if self.containers.image.is_empty() {
            return Err("containers.image: empty".into());
        }
        PortRange::parse(&self.containers.ports).map_err(|e| format!("containers.ports: {e}"))?;
        for (k, _) in &self.containers.env {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("containers.env: {k:?} is not a variable name"));
            }
        }
        if !valid_name(&self.hetzner.instance) {
            return Err(format!("hetzner.instance: {:?} must be [a-z0-9-], 1-63 characters", self.hetzner.instance));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let at = format!("nodes[{i}]");
            if !valid_name(&n.name) {
                return Err(format!("{at}.name: {:?} must be [a-z0-9-], 1-63 characters", n.name));
            }
            if !seen.insert(n.name.clone()) {
                return Err(format!("{at}.name: {:?} appears twice", n.name));
            }
            if !valid_host(&n.address) {
                return Err(format!("{at}.address: {:?} is not a host name or IP address", n.address));
            }
            if n.ram_mb == 0 {
                return Err(format!("{at}.ram_mb: must be above 0"));
            }
            if let Some(u) = &n.ssh_user {
                let ok = u.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
                    && u.len() <= 32
                    && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
                if !ok {
                    return Err(format!("{at}.ssh_user: {u:?} is not a user name ([a-z_][a-z0-9_-]*)"));
                }
            }
            if let Some(p) = &n.ports {
                PortRange::parse(p).map_err(|e| format!("{at}.ports: {e}"))?;
            }
        }
        if self.players.interval_s > 0 && self.players.timeout_s == 0 {
            return Err("players.timeout_s: must be above 0".into());
        }
        // A move exports and then imports, both before the container starts: the engine's
        // wait for the start must cover both.
        let transfer_s = self.archive.transfer_timeout().as_secs();
        if 2 * transfer_s >= self.conductor.reservation_timeout_s {
            return Err(format!(
                "archive.transfer_timeout_s: {transfer_s} s twice (a move) must stay below \
                 conductor.reservation_timeout_s ({} s)",
                self.conductor.reservation_timeout_s
            ));
        }
        Ok(())
    }
}

/// A secret from an environment variable or, failing that, a file (trimmed). `None`
/// if neither is set. The value is never logged.
pub fn read_secret(env: &str, file: Option<&Path>) -> Result<Option<String>, String> {
    if let Ok(v) = std::env::var(env) {
        if !v.trim().is_empty() {
            return Ok(Some(v.trim().to_string()));
        }
    }
    match file {
        Some(p) => {
            let v = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let v = v.trim().to_string();
            Ok(if v.is_empty() { None } else { Some(v) })
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let parse = |s: &str| -> Result<LiveConfig, String> {
            let c = LiveConfig::parse(s)?;
            c.validate().map(|_| c)
        };
        assert!(parse("").is_ok());
        let e = parse("[[nodes]]\nname = \"A b\"\naddress = \"x\"\nram_mb = 1\n").unwrap_err();
        assert!(e.starts_with("nodes[0].name"), "{e}");
        let e = parse("[[nodes]]\nname = \"a\"\naddress = \"-oProxyCommand=x\"\nram_mb = 1\n").unwrap_err();
        assert!(e.starts_with("nodes[0].address"), "{e}");
        let e = parse("[[nodes]]\nname = \"a\"\naddress = \"x\"\nssh_user = \"-oProxyCommand=x\"\nram_mb = 1\n")
            .unwrap_err();
        assert!(e.starts_with("nodes[0].ssh_user"), "{e}");
        let ok =
            parse("[[nodes]]\nname = \"a\"\naddress = \"x\"\nssh_user = \"deploy\"\nssh_key = \"k\"\nram_mb = 1\n")
                .expect("per-node SSH user and key");
        assert_eq!(ok.nodes[0].ssh_user.as_deref(), Some("deploy"));
        let e = parse("[containers]\nports = \"10-5\"\n").unwrap_err();
        assert!(e.starts_with("containers.ports"), "{e}");
        let e = parse("[api]\nlisten = \"nope\"\n").unwrap_err();
        assert!(e.starts_with("api.listen"), "{e}");
        let e = parse("[conductor.queue]\nlen_max = 0\n").unwrap_err();
        assert!(e.starts_with("conductor."), "{e}");
        let e = parse("[api]\ntoken = \"secret\"\n").unwrap_err();
        assert!(e.contains("unknown field"), "tokens are never read from the config: {e}");
        let e = parse("[archive]\ntransfer_timeout_s = 900\n").unwrap_err();
        assert!(e.starts_with("archive.transfer_timeout_s"), "a move could outlast the start's wait: {e}");
        let ok = parse("[archive]\ndir = \"w\"\ntransfer_timeout_s = 899\n").expect("within the wait");
        assert_eq!(ok.archive.transfer_timeout(), std::time::Duration::from_secs(899));
        assert_eq!(parse("").expect("defaults").archive.transfer_timeout(), std::time::Duration::from_secs(600));
    }

    #[test]
    fn without_named_policies_the_default_stack_runs() {
        use conductor_core::config::{ReactiveConfig, DEFAULT_STACK, DEFAULT_STACK_REACTIVE_THRESHOLD};
        let c = LiveConfig::parse("").unwrap();
        assert_eq!(c.conductor.scaling.policies, DEFAULT_STACK);
        assert_eq!(c.conductor.reactive.scale_up_threshold_percent, DEFAULT_STACK_REACTIVE_THRESHOLD);
        let c = LiveConfig::parse("[conductor.reactive]\nscale_up_threshold_percent = 90\n").unwrap();
        assert_eq!(c.conductor.scaling.policies, DEFAULT_STACK);
        assert_eq!(c.conductor.reactive.scale_up_threshold_percent, 90.0, "a named threshold is kept");
        let c = LiveConfig::parse("[conductor.scaling]\npolicies = [\"reactive\"]\n").unwrap();
        assert_eq!(c.conductor.scaling.policies, ["reactive"], "named policies are kept");
        assert_eq!(c.conductor.reactive, ReactiveConfig::default());
        assert!(LiveConfig::parse("[api]\ntoken = \"x\"\n").unwrap_err().contains("unknown field"));
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::parse("25565-25664"), Ok(PortRange { from: 25565, to: 25664 }));
        assert!(PortRange::parse("0-5").is_err());
        assert!(PortRange::parse("5").is_err());
        assert!(PortRange::parse("a-b").is_err());
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_committed_example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conductor.example.toml");
        let cfg = super::LiveConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.nodes[0].address, "local");
        assert!(!cfg.hetzner.enabled);
    }
}
