//! One node's Docker daemon, reached locally or through SSH.
//!
//! Architecture Invariant: this module never builds a shell command. Everything goes through the Docker HTTP API
//! (bollard); SSH is used only to forward a unix socket, and its arguments are paths we made plus the endpoint's
//! configured host, port and user.
//!
//! Architecture Invariant: a container is ours only if it carries `conductor.node=<this node>` and
//! `conductor.server`. [`DockerNode::list`] and [`DockerNode::stop`] filter by those labels (in the daemon and
//! again here), so containers of other nodes sharing one daemon, and containers without labels, are never
//! reported, stopped or removed.
//!
//! Memory rule: see [`memory_limit_mb`].

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, HostConfig, PortBinding};
use bollard::models::{PortSummaryTypeEnum, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptions, StartContainerOptions,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket};

/// Label holding the server id; its presence marks a container (or volume) as managed by conductor.
pub const LABEL_SERVER: &str = "conductor.server";
/// Label holding the node id the container was booked on. Several test nodes may share one daemon.
pub const LABEL_NODE: &str = "conductor.node";
/// Label holding the booked RAM in MiB (decimal).
pub const LABEL_RAM_MB: &str = "conductor.ram_mb";
/// Label holding the plan name.
pub const LABEL_PLAN: &str = "conductor.plan";

/// Longest accepted server or node id (a DNS label).
pub const ID_LEN_MAX: usize = 63;
/// Longest accepted plan name (it only ever becomes a label value).
pub const PLAN_LEN_MAX: usize = 64;
/// Longest accepted volume name: room for [`volume_name`] of two maximal ids.
pub const VOLUME_NAME_LEN_MAX: usize = 160;
/// Docker refuses memory limits below 6 MiB.
pub const DOCKER_MEMORY_MIN_MB: u64 = 6;
/// The Docker socket on every node, the far end of the SSH forward.
pub const REMOTE_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// How often the SSH client probes a silent server; three misses end the session.
const SSH_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// How to reach one node's Docker daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A daemon on this machine (`/var/run/docker.sock`).
    Local { socket: PathBuf },
    /// A daemon on another host, through OpenSSH with key authentication. A local unix socket in a private
    /// temporary directory is forwarded to the node's `/var/run/docker.sock` over one ControlMaster connection.
    Ssh {
        host: String,
        port: u16,
        user: String,
        /// Private key; only this key is offered (`IdentitiesOnly=yes`).
        key: PathBuf,
        /// The known_hosts file to check the node's host key against (`UserKnownHostsFile`).
        known_hosts: PathBuf,
        /// true: refuse unknown and changed host keys (`StrictHostKeyChecking=yes`).
        /// false: accept and record an unknown key, still refuse a changed one (`accept-new`).
        strict: bool,
    },
}

/// What to run for one server on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Server id, `[a-z0-9-]`, at most [`ID_LEN_MAX`] characters.
    pub server: String,
    /// Node id; must equal the id of the [`DockerNode`] that starts it.
    pub node: String,
    /// RAM booked for this server by the engine.
    pub ram_mb: u32,
    pub plan: String,
    /// A local image reference. The adapter never pulls: the image must already be on the node.
    pub image: String,
    pub env: Vec<(String, String)>,
    pub host_port: u16,
    pub container_port: u16,
    /// Address to publish `host_port` on; `None` means all addresses (0.0.0.0).
    pub host_ip: Option<IpAddr>,
    /// Named volume mounted at `/data`, created (with our labels) when missing and kept on stop.
    pub data_volume: Option<String>,
    /// Hard memory limit; at most `ram_mb`, normally `memory_limit_mb(ram_mb)`.
    pub memory_limit_mb: u64,
}

/// One of our containers as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub server: String,
    pub node: String,
    /// `None` when the label is missing or not a number (someone edited the container by hand).
    pub ram_mb: Option<u32>,
    pub plan: Option<String>,
    pub image: Option<String>,
    pub running: bool,
    /// Docker's state word: created, running, exited, ...
    pub state: String,
    /// The first published TCP host port.
    pub host_port: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("{op} on node {node} timed out after {after_ms} ms")]
    Timeout { node: String, op: &'static str, after_ms: u64 },
    #[error("ssh to node {node}: {source}")]
    Ssh {
        node: String,
        #[source]
        source: openssh::Error,
    },
    #[error("docker API on node {node} ({op}): {source}")]
    Api {
        node: String,
        op: &'static str,
        #[source]
        source: BollardError,
    },
    #[error("local tunnel directory for node {node}: {source}")]
    Io {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("image {image} is not present on node {node} (images are never pulled)")]
    ImageNotFound { node: String, image: String },
    #[error("container name {name} on node {node} belongs to a container without conductor labels; not touching it")]
    ForeignContainer { node: String, name: String },
    #[error(
        "server {server} already has container {id} on node {node} booked with {existing_ram_mb:?} MiB, not {ram_mb}"
    )]
    SpecMismatch { node: String, server: String, id: String, existing_ram_mb: Option<u32>, ram_mb: u32 },
    #[error("volume {volume} on node {node} exists without our labels for this node; not touching it")]
    ForeignVolume { node: String, volume: String },
    #[error("no world volume {volume} on node {node}")]
    NoWorld { node: String, volume: String },
    #[error("world transfer on node {node} ({op}): {message}")]
    Transfer { node: String, op: &'static str, message: String },
}

/// The container memory limit for a server that booked `booked_ram_mb` MiB.
///
/// The one rule: **the limit equals the booked RAM, never more** (and swap is capped at the same value, so no
/// swap on top). The engine books at most a node's usable RAM, so the sum of the limits on a node never exceeds
/// its usable RAM, and a server that outgrows its booking is killed by the kernel inside its own cgroup instead
/// of squeezing its neighbours. The JVM heap (the image's `MEMORY`/`-Xmx`) must be set below this limit to leave
/// room for the JVM's own overhead; that is the caller's choice of env, not this function's.
/// Names of the private directories holding an SSH master's control socket and the forwarded
/// Docker socket: `conductor-ssh-<pid>-<random>` in the temporary directory.
const SSH_DIR_PREFIX: &str = "conductor-ssh-";

/// Ends the SSH masters (and removes the directories) that conductor processes no longer
/// running left behind: a SIGKILLed conductor cannot end them, and each holds a connection to
/// its node. Only directories named after a dead process id are touched; returns how many.
pub fn reap_stale_ssh_masters() -> usize {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else { return 0 };
    let mut reaped = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SSH_DIR_PREFIX))
            .and_then(|r| r.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = e.path();
        // The control sockets sit one level down (`.ssh-connection*/master`).
        for sub in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let socket = sub.path().join("master");
            if socket.exists() {
                // No shell: the socket path is an argument, and the host name is a placeholder.
                let _ = std::process::Command::new("ssh")
                    .arg("-S")
                    .arg(&socket)
                    .args(["-O", "exit", "stale-conductor-master"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            reaped += 1;
        }
    }
    reaped
}

pub fn memory_limit_mb(booked_ram_mb: u32) -> u64 {
    u64::from(booked_ram_mb)
}

/// `conductor-<node>-<server>-data`: a server's world volume on one node. The node is part of the name, as in
/// the container's, so that nodes sharing one daemon (the tests' simulated nodes) never share a world.
pub fn volume_name(node: &str, server: &str) -> String {
    format!("conductor-{node}-{server}-data")
}

/// Label on the short-lived helper containers that read and write world volumes (value: the server). They carry
/// no `conductor.server` label, so they are never listed, adopted or reported as a server's container.
pub const LABEL_WORLD_HELPER: &str = "conductor.world-helper";

/// `conductor-<node>-<server>`, from ids that [`ContainerSpec::validate`] accepted.
pub fn container_name(node: &str, server: &str) -> String {
    format!("conductor-{node}-{server}")
}

impl ContainerSpec {
    /// A spec with the usual defaults: game port 25565 in the container, memory limit by [`memory_limit_mb`],
    /// no env, no volume, published on all addresses.
    pub fn new(server: &str, node: &str, ram_mb: u32, plan: &str, image: &str, host_port: u16) -> Self {
        ContainerSpec {
            server: server.to_string(),
            node: node.to_string(),
            ram_mb,
            plan: plan.to_string(),
            image: image.to_string(),
            env: Vec::new(),
            host_port,
            container_port: 25565,
            host_ip: None,
            data_volume: None,
            memory_limit_mb: memory_limit_mb(ram_mb),
        }
    }

    /// Checks everything that reaches the daemon. Ids become part of a URL path and a container name, so they
    /// are held to `[a-z0-9-]` here even though the engine validates them too.
    pub fn validate(&self) -> Result<(), DockerError> {
        validate_id("server", &self.server)?;
        validate_id("node", &self.node)?;
        if self.plan.is_empty() || self.plan.len() > PLAN_LEN_MAX || self.plan.chars().any(char::is_control) {
            return Err(invalid(format!("plan must be 1..={PLAN_LEN_MAX} printable characters")));
        }
        if self.image.is_empty() || self.image.len() > 255 || self.image.chars().any(|c| c.is_whitespace()) {
            return Err(invalid("image must be a non-empty reference without whitespace".to_string()));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(invalid(format!("bad env entry {key:?}")));
            }
        }
        if self.host_port == 0 || self.container_port == 0 {
            return Err(invalid("ports must be non-zero".to_string()));
        }
        if let Some(volume) = &self.data_volume {
            validate_volume_name(volume)?;
        }
        if self.memory_limit_mb > u64::from(self.ram_mb) {
            return Err(invalid(format!(
                "memory limit {} MiB exceeds the booked {} MiB",
                self.memory_limit_mb, self.ram_mb
            )));
        }
        if self.memory_limit_mb < DOCKER_MEMORY_MIN_MB {
            return Err(invalid(format!("memory limit must be at least {DOCKER_MEMORY_MIN_MB} MiB")));
        }
        Ok(())
    }
}

/// One node's Docker daemon connection. For an SSH endpoint it owns the SSH session (closed on drop) and the
/// temporary directory with the forwarded socket.
pub struct DockerNode {
    node_id: String,
    endpoint: Endpoint,
    timeout: Duration,
    docker: Docker,
    // Declared after `docker` so the HTTP client goes first, then the session, then the socket directory.
    tunnel: Option<SshTunnel>,
}

struct SshTunnel {
    session: Session,
    local_socket: PathBuf,
    // Removed after the session is closed (field order).
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for DockerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerNode").field("node_id", &self.node_id).field("endpoint", &self.endpoint).finish()
    }
}

impl DockerNode {
    /// Connects and negotiates the API version with the daemon, all within `timeout`. `timeout` also bounds
    /// every later call (stop adds its grace period).
    pub async fn connect(node_id: &str, ep: &Endpoint, timeout: Duration) -> Result<Self, DockerError> {
        validate_id("node", node_id)?;
        let attempt = async {
            match ep {
                Endpoint::Local { socket } => {
                    let docker = open_unix(node_id, socket, timeout).await?;
                    Ok((docker, None))
                }
                Endpoint::Ssh { .. } => {
                    let tunnel = open_tunnel(node_id, ep, timeout).await?;
                    let docker = open_unix(node_id, &tunnel.local_socket, timeout).await?;
                    Ok((docker, Some(tunnel)))
                }
            }
        };
        let (docker, tunnel) = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(DockerError::Timeout { node: node_id.to_string(), op: "connect", after_ms: ms(timeout) })
            }
        };
        Ok(DockerNode { node_id: node_id.to_string(), endpoint: ep.clone(), timeout, docker, tunnel })
    }

    /// Drops the current connection (and SSH session) and connects again to the same endpoint.
    pub async fn reconnect(&mut self) -> Result<(), DockerError> {
        let fresh = DockerNode::connect(&self.node_id, &self.endpoint, self.timeout).await?;
        *self = fresh;
        Ok(())
    }

    /// Closes the SSH session, if any, waiting for the master to exit.
    pub async fn close(mut self) -> Result<(), DockerError> {
        if let Some(tunnel) = self.tunnel.take() {
            let node = self.node_id.clone();
            tunnel.session.close().await.map_err(|source| DockerError::Ssh { node, source })?;
        }
        Ok(())
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The health probe: one `docker info`. Fails (never hangs past the timeout) when the daemon or the SSH
    /// connection to the node is gone.
    pub async fn info(&self) -> Result<(), DockerError> {
        self.bounded("info", self.timeout, self.docker.info()).await.map(|_| ())
    }

    /// Creates and starts the server's container, or adopts the one that already runs for this node and
    /// server. A stopped leftover (an earlier run, or a start that failed half way) is removed first: it may
    /// carry an old port, image or environment. Returns the container id. Calling it twice never makes two.
    pub async fn start(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        spec.validate()?;
        if spec.node != self.node_id {
            return Err(invalid(format!("spec is for node {} but this is node {}", spec.node, self.node_id)));
        }
        if let Some(existing) = self.find(&spec.server).await?.into_iter().next() {
            if existing.running {
                return self.adopt(spec, existing).await;
            }
            self.remove_id(&existing.id).await?;
        }
        if let Some(volume) = &spec.data_volume {
            self.ensure_volume(volume, &spec.server).await?;
        }
        let name = container_name(&self.node_id, &spec.server);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = self.docker.create_container(Some(options), self.create_body(spec));
        let id = match tokio::time::timeout(self.timeout, created).await {
            Err(_) => return Err(self.timeout_err("create", self.timeout)),
            Ok(Ok(response)) => response.id,
            Ok(Err(e)) if status(&e) == Some(404) => {
                return Err(DockerError::ImageNotFound { node: self.node_id.clone(), image: spec.image.clone() })
            }
            Ok(Err(e)) if status(&e) == Some(409) => {
                // Lost a race with another start, or the name is held by a container that is not ours.
                return match self.find(&spec.server).await?.into_iter().next() {
                    Some(existing) => self.adopt(spec, existing).await,
                    None => Err(DockerError::ForeignContainer { node: self.node_id.clone(), name }),
                };
            }
            Ok(Err(e)) => return Err(self.api_err("create", e)),
        };
        if let Err(e) = self.start_id(&id).await {
            // Never leave a created-but-dead container behind (e.g. its host port was taken).
            let _ = self.remove_id(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    async fn remove_id(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match tokio::time::timeout(self.timeout, self.docker.remove_container(id, Some(options))).await {
            Err(_) => Err(self.timeout_err("remove", self.timeout)),
            // 404: already gone; 409: a removal is already in progress.
            Ok(Err(e)) if matches!(status(&e), Some(404 | 409)) => Ok(()),
            Ok(Err(e)) => Err(self.api_err("remove", e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Stops (SIGTERM, then SIGKILL after `grace`) and removes the server's container on this node. A server
    /// without a container is already stopped: Ok. The data volume is kept. Returns whether a container of
    /// the server (running or exited) was there, i.e. whether it ran on this node.
    pub async fn stop(&self, server: &str, grace: Duration) -> Result<bool, DockerError> {
        validate_id("server", server)?;
        let found = self.find(server).await?;
        let any = !found.is_empty();
        for info in found {
            if info.running {
                let grace_s = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
                let options = StopContainerOptionsBuilder::default().t(grace_s).build();
                let limit = self.timeout + grace;
                match tokio::time::timeout(limit, self.docker.stop_container(&info.id, Some(options))).await {
                    Err(_) => return Err(self.timeout_err("stop", limit)),
                    // 304: already stopped; 404: already gone.
                    Ok(Err(e)) if matches!(status(&e), Some(304 | 404)) => {}
                    Ok(Err(e)) => return Err(self.api_err("stop", e)),
                    Ok(Ok(())) => {}
                }
            }
            self.remove_id(&info.id).await?;
        }
        Ok(any)
    }

    /// Our containers on this node (label `conductor.node=<this node>`), running or not, sorted by server.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        self.list_filtered(None).await
    }

    /// The servers with a world volume on this node: volumes labelled `conductor.node=<this node>` and
    /// `conductor.server=<server>` and named `volume_name(node, server)` (labels re-checked here), sorted.
    pub async fn list_worlds(&self) -> Result<Vec<String>, DockerError> {
        let filters =
            HashMap::from([("label", vec![format!("{LABEL_NODE}={}", self.node_id), LABEL_SERVER.to_string()])]);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let listed = self.bounded("list volumes", self.timeout, self.docker.list_volumes(Some(options))).await?;
        let mut servers: Vec<String> = listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| self.is_ours(&v.labels))
            .filter_map(|v| {
                let server = v.labels.get(LABEL_SERVER)?.clone();
                (validate_id("server", &server).is_ok() && v.name == volume_name(&self.node_id, &server))
                    .then_some(server)
            })
            .collect();
        servers.sort();
        servers.dedup();
        Ok(servers)
    }

    /// Removes a data volume, but only one created by this node for some server. Absent = Ok.
    pub async fn remove_data_volume(&self, volume: &str) -> Result<(), DockerError> {
        validate_volume_name(volume)?;
        let inspected = match tokio::time::timeout(self.timeout, self.docker.inspect_volume(volume)).await {
            Err(_) => return Err(self.timeout_err("inspect volume", self.timeout)),
            Ok(Err(e)) if status(&e) == Some(404) => return Ok(()),
            Ok(Err(e)) => return Err(self.api_err("inspect volume", e)),
            Ok(Ok(v)) => v,
        };
        if !self.is_ours(&inspected.labels) {
            return Err(DockerError::ForeignVolume { node: self.node_id.clone(), volume: volume.to_string() });
        }
        match tokio::time::timeout(self.timeout, self.docker.remove_volume(volume, None::<RemoveVolumeOptions>)).await {
            Err(_) => Err(self.timeout_err("remove volume", self.timeout)),
            Ok(Err(e)) if status(&e) == Some(404) => Ok(()),
            Ok(Err(e)) => Err(self.api_err("remove volume", e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// A handle for world transfers on this node. It shares the daemon connection but does not borrow the node,
    /// so a long transfer does not hold up other calls; `limit` bounds each transfer as a whole.
    pub fn worlds(&self, image: &str, limit: Duration) -> Worlds {
        Worlds {
            node_id: self.node_id.clone(),
            docker: self.docker.clone(),
            timeout: self.timeout,
            limit,
            image: image.to_string(),
        }
    }

    /// The underlying bollard client, for inspection in tests and tools. Bypasses the label rules.
    pub fn raw(&self) -> &Docker {
        &self.docker
    }

    async fn adopt(&self, spec: &ContainerSpec, existing: ContainerInfo) -> Result<String, DockerError> {
        if existing.ram_mb != Some(spec.ram_mb) {
            return Err(DockerError::SpecMismatch {
                node: self.node_id.clone(),
                server: spec.server.clone(),
                id: existing.id,
                existing_ram_mb: existing.ram_mb,
                ram_mb: spec.ram_mb,
            });
        }
        if !existing.running {
            // Lost a race with another start that has not started it yet.
            self.start_id(&existing.id).await?;
        }
        Ok(existing.id)
    }

    async fn start_id(&self, id: &str) -> Result<(), DockerError> {
        match tokio::time::timeout(self.timeout, self.docker.start_container(id, None::<StartContainerOptions>)).await {
            Err(_) => Err(self.timeout_err("start", self.timeout)),
            // 304: already running.
            Ok(Err(e)) if status(&e) == Some(304) => Ok(()),
            Ok(Err(e)) => Err(self.api_err("start", e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn find(&self, server: &str) -> Result<Vec<ContainerInfo>, DockerError> {
        self.list_filtered(Some(server)).await
    }

    async fn list_filtered(&self, server: Option<&str>) -> Result<Vec<ContainerInfo>, DockerError> {
        let node_filter = format!("{LABEL_NODE}={}", self.node_id);
        let server_filter = match server {
            Some(s) => format!("{LABEL_SERVER}={s}"),
            None => LABEL_SERVER.to_string(),
        };
        // Several label filters are ANDed by the daemon.
        let filters = HashMap::from([("label", vec![node_filter, server_filter])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let summaries = self.bounded("list", self.timeout, self.docker.list_containers(Some(options))).await?;
        let mut infos: Vec<ContainerInfo> = summaries
            .into_iter()
            .filter_map(|s| self.to_info(s))
            .filter(|info| server.is_none_or(|wanted| info.server == wanted))
            .collect();
        infos.sort_by(|a, b| (&a.server, &a.id).cmp(&(&b.server, &b.id)));
        Ok(infos)
    }

    /// Converts a summary, re-checking the labels: the daemon's filter is trusted but verified.
    fn to_info(&self, summary: ContainerSummary) -> Option<ContainerInfo> {
        let labels = summary.labels.unwrap_or_default();
        if labels.get(LABEL_NODE).map(String::as_str) != Some(self.node_id.as_str()) {
            return None;
        }
        let server = labels.get(LABEL_SERVER)?.clone();
        let id = summary.id?;
        let state = summary.state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
        let host_port = summary
            .ports
            .unwrap_or_default()
            .iter()
            .filter(|p| p.typ.is_none_or(|t| t == PortSummaryTypeEnum::TCP))
            .find_map(|p| p.public_port);
        let name = summary
            .names
            .and_then(|names| names.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default();
        Some(ContainerInfo {
            id,
            name,
            node: self.node_id.clone(),
            ram_mb: labels.get(LABEL_RAM_MB).and_then(|v| v.parse().ok()),
            plan: labels.get(LABEL_PLAN).cloned(),
            image: summary.image,
            running: state == ContainerSummaryStateEnum::RUNNING,
            state: state.to_string(),
            host_port,
            server,
        })
    }

    fn create_body(&self, spec: &ContainerSpec) -> ContainerCreateBody {
        let port_key = format!("{}/tcp", spec.container_port);
        let binding = PortBinding {
            host_ip: Some(spec.host_ip.map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string())),
            host_port: Some(spec.host_port.to_string()),
        };
        let labels = HashMap::from([
            (LABEL_SERVER.to_string(), spec.server.clone()),
            (LABEL_NODE.to_string(), self.node_id.clone()),
            (LABEL_RAM_MB.to_string(), spec.ram_mb.to_string()),
            (LABEL_PLAN.to_string(), spec.plan.clone()),
        ]);
        // validate() bounds the limit by a u32 of MiB, so the byte count fits an i64.
        let memory_bytes = i64::try_from(spec.memory_limit_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
        let host_config = HostConfig {
            memory: Some(memory_bytes),
            // Equal to `memory`: no swap on top of the limit.
            memory_swap: Some(memory_bytes),
            port_bindings: Some(HashMap::from([(port_key.clone(), Some(vec![binding]))])),
            binds: spec.data_volume.as_ref().map(|v| vec![format!("{v}:/data")]),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    async fn ensure_volume(&self, volume: &str, server: &str) -> Result<(), DockerError> {
        match tokio::time::timeout(self.timeout, self.docker.inspect_volume(volume)).await {
            Err(_) => return Err(self.timeout_err("inspect volume", self.timeout)),
            Ok(Ok(existing)) if self.is_ours(&existing.labels) => return Ok(()),
            Ok(Ok(_)) => {
                return Err(DockerError::ForeignVolume { node: self.node_id.clone(), volume: volume.to_string() })
            }
            Ok(Err(e)) if status(&e) == Some(404) => {}
            Ok(Err(e)) => return Err(self.api_err("inspect volume", e)),
        }
        let request = VolumeCreateRequest {
            name: Some(volume.to_string()),
            labels: Some(HashMap::from([
                (LABEL_SERVER.to_string(), server.to_string()),
                (LABEL_NODE.to_string(), self.node_id.clone()),
            ])),
            ..Default::default()
        };
        self.bounded("create volume", self.timeout, self.docker.create_volume(request)).await.map(|_| ())
    }

    fn is_ours(&self, labels: &HashMap<String, String>) -> bool {
        labels.get(LABEL_NODE) == Some(&self.node_id) && labels.contains_key(LABEL_SERVER)
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        limit: Duration,
        fut: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, DockerError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.api_err(op, e)),
            Err(_) => Err(self.timeout_err(op, limit)),
        }
    }

    fn api_err(&self, op: &'static str, source: BollardError) -> DockerError {
        if matches!(source, BollardError::RequestTimeoutError) {
            return self.timeout_err(op, self.timeout);
        }
        DockerError::Api { node: self.node_id.clone(), op, source }
    }

    fn timeout_err(&self, op: &'static str, limit: Duration) -> DockerError {
        DockerError::Timeout { node: self.node_id.clone(), op, after_ms: ms(limit) }
    }
}

/// World volumes on one node, read and written as tar streams through a stopped helper container (the Docker
/// archive API), so nothing runs on the node and no shell is involved. Made by [`DockerNode::worlds`].
///
/// A tar holds the volume as `data/...` (the helper mounts it at `/data`), the layout `import` expects.
#[derive(Clone)]
pub struct Worlds {
    node_id: String,
    docker: Docker,
    timeout: Duration,
    limit: Duration,
    image: String,
}

/// Size of the chunks a tar file is uploaded in.
const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

impl Worlds {
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether the server's world volume exists on this node (a volume without our labels is an error).
    pub async fn exists(&self, server: &str) -> Result<bool, DockerError> {
        validate_id("server", server)?;
        let volume = volume_name(&self.node_id, server);
        match tokio::time::timeout(self.timeout, self.docker.inspect_volume(&volume)).await {
            Err(_) => Err(self.timeout_err("inspect volume", self.timeout)),
            Ok(Err(e)) if status(&e) == Some(404) => Ok(false),
            Ok(Err(e)) => Err(self.api_err("inspect volume", e)),
            Ok(Ok(v)) if self.is_ours(&v.labels) => Ok(true),
            Ok(Ok(_)) => Err(DockerError::ForeignVolume { node: self.node_id.clone(), volume }),
        }
    }

    /// Writes the server's world volume as a tar into `dest` (created or truncated, synced). Returns its size.
    /// A missing volume is [`DockerError::NoWorld`]: an empty world is never exported as if it were the world.
    pub async fn export(&self, server: &str, dest: &Path) -> Result<u64, DockerError> {
        if !self.exists(server).await? {
            return Err(DockerError::NoWorld {
                node: self.node_id.clone(),
                volume: volume_name(&self.node_id, server),
            });
        }
        let helper = self.helper(server).await?;
        let res = match tokio::time::timeout(self.limit, self.download(&helper, dest)).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_err("export world", self.limit)),
        };
        let removed = self.remove_helper(&helper).await;
        let size = res?;
        removed?;
        Ok(size)
    }

    /// Replaces the server's world volume on this node with the tar in `src` (made by [`Worlds::export`]): an
    /// existing volume is removed first (refused by the daemon while a container uses it), so no stale file
    /// survives. On failure the volume may be partial; the next import replaces it again.
    pub async fn import(&self, server: &str, src: &Path) -> Result<(), DockerError> {
        validate_id("server", server)?;
        let volume = volume_name(&self.node_id, server);
        self.remove(server).await?;
        let request = VolumeCreateRequest {
            name: Some(volume),
            labels: Some(HashMap::from([
                (LABEL_SERVER.to_string(), server.to_string()),
                (LABEL_NODE.to_string(), self.node_id.clone()),
            ])),
            ..Default::default()
        };
        self.bounded("create volume", self.timeout, self.docker.create_volume(request)).await?;
        let helper = self.helper(server).await?;
        let res = match tokio::time::timeout(self.limit, self.upload(&helper, src)).await {
            Ok(r) => r,
            Err(_) => Err(self.timeout_err("import world", self.limit)),
        };
        let removed = self.remove_helper(&helper).await;
        res?;
        removed
    }

    /// Removes the server's world volume on this node, and first any container of the server there that is not
    /// running (a failed start leaves one created, and it would hold the volume). Absent = Ok; a volume without our
    /// labels, or a running container of the server, is refused.
    pub async fn remove(&self, server: &str) -> Result<(), DockerError> {
        if !self.exists(server).await? {
            return Ok(());
        }
        self.remove_stopped_containers(server).await?;
        let volume = volume_name(&self.node_id, server);
        match tokio::time::timeout(self.timeout, self.docker.remove_volume(&volume, None::<RemoveVolumeOptions>)).await
        {
            Err(_) => Err(self.timeout_err("remove volume", self.timeout)),
            Ok(Err(e)) if status(&e) == Some(404) => Ok(()),
            Ok(Err(e)) => Err(self.api_err("remove volume", e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn remove_stopped_containers(&self, server: &str) -> Result<(), DockerError> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{LABEL_NODE}={}", self.node_id), format!("{LABEL_SERVER}={server}")],
        )]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let found = self.bounded("list", self.timeout, self.docker.list_containers(Some(options))).await?;
        for c in found {
            let labels = c.labels.unwrap_or_default();
            if labels.get(LABEL_NODE) != Some(&self.node_id)
                || labels.get(LABEL_SERVER).map(String::as_str) != Some(server)
            {
                continue;
            }
            if c.state == Some(ContainerSummaryStateEnum::RUNNING) {
                let message = format!("a container of {server} is running here; its world is not replaced");
                return Err(self.transfer_err("replace world", message));
            }
            if let Some(id) = c.id {
                self.remove_helper(&id).await?;
            }
        }
        Ok(())
    }

    async fn download(&self, helper: &str, dest: &Path) -> Result<u64, DockerError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| self.transfer_err("write tar", format!("{}: {e}", dest.display()));
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let options = DownloadFromContainerOptionsBuilder::default().path("/data").build();
        let mut stream = self.docker.download_from_container(helper, Some(options));
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.api_err("download world", e))?;
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        if size == 0 {
            return Err(self.transfer_err("download world", "the daemon sent an empty archive".into()));
        }
        Ok(size)
    }

    async fn upload(&self, helper: &str, src: &Path) -> Result<(), DockerError> {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(src)
            .await
            .map_err(|e| self.transfer_err("read tar", format!("{}: {e}", src.display())))?;
        let chunks = futures_util::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; UPLOAD_CHUNK_BYTES];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.docker
            .upload_to_container(helper, Some(options), bollard::body_try_stream(chunks))
            .await
            .map_err(|e| self.api_err("upload world", e))
    }

    /// Creates (never starts) `conductor-<node>-<server>-world` with the volume at `/data`. A leftover helper
    /// of an interrupted transfer (same name, our labels) is removed first.
    async fn helper(&self, server: &str) -> Result<String, DockerError> {
        let name = format!("{}-world", container_name(&self.node_id, server));
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            labels: Some(HashMap::from([
                (LABEL_WORLD_HELPER.to_string(), server.to_string()),
                (LABEL_NODE.to_string(), self.node_id.clone()),
            ])),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:/data", volume_name(&self.node_id, server))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        for attempt in 0..2 {
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            let created = self.docker.create_container(Some(options), body.clone());
            match tokio::time::timeout(self.timeout, created).await {
                Err(_) => return Err(self.timeout_err("create helper", self.timeout)),
                Ok(Ok(r)) => return Ok(r.id),
                Ok(Err(e)) if status(&e) == Some(404) => {
                    return Err(DockerError::ImageNotFound { node: self.node_id.clone(), image: self.image.clone() })
                }
                Ok(Err(e)) if status(&e) == Some(409) && attempt == 0 => {
                    let existing =
                        self.bounded("inspect helper", self.timeout, self.docker.inspect_container(&name, None));
                    let labels = existing.await?.config.and_then(|c| c.labels).unwrap_or_default();
                    let ours = labels.get(LABEL_NODE) == Some(&self.node_id)
                        && labels.get(LABEL_WORLD_HELPER).map(String::as_str) == Some(server);
                    if !ours {
                        return Err(DockerError::ForeignContainer { node: self.node_id.clone(), name });
                    }
                    self.remove_helper(&name).await?;
                }
                Ok(Err(e)) => return Err(self.api_err("create helper", e)),
            }
        }
        Err(self.transfer_err("create helper", format!("{name} exists and could not be replaced")))
    }

    async fn remove_helper(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match tokio::time::timeout(self.timeout, self.docker.remove_container(id, Some(options))).await {
            Err(_) => Err(self.timeout_err("remove helper", self.timeout)),
            Ok(Err(e)) if matches!(status(&e), Some(404 | 409)) => Ok(()),
            Ok(Err(e)) => Err(self.api_err("remove helper", e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    fn is_ours(&self, labels: &HashMap<String, String>) -> bool {
        labels.get(LABEL_NODE) == Some(&self.node_id) && labels.contains_key(LABEL_SERVER)
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        limit: Duration,
        fut: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, DockerError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.api_err(op, e)),
            Err(_) => Err(self.timeout_err(op, limit)),
        }
    }

    fn api_err(&self, op: &'static str, source: BollardError) -> DockerError {
        DockerError::Api { node: self.node_id.clone(), op, source }
    }

    fn timeout_err(&self, op: &'static str, limit: Duration) -> DockerError {
        DockerError::Timeout { node: self.node_id.clone(), op, after_ms: ms(limit) }
    }

    fn transfer_err(&self, op: &'static str, message: String) -> DockerError {
        DockerError::Transfer { node: self.node_id.clone(), op, message }
    }
}

async fn open_unix(node: &str, socket: &Path, timeout: Duration) -> Result<Docker, DockerError> {
    let api_err = |op, source| DockerError::Api { node: node.to_string(), op, source };
    let socket_str = socket.to_str().ok_or_else(|| invalid(format!("socket path {socket:?} is not UTF-8")))?;
    // bollard's own per-request timeout, in whole seconds; our tokio timeouts are the real bound.
    let secs = timeout.as_secs().saturating_add(1);
    let docker =
        Docker::connect_with_unix(socket_str, secs, bollard::API_DEFAULT_VERSION).map_err(|e| api_err("connect", e))?;
    // The daemon may be older than bollard's default API version (Debian 12 ships 1.41): step down to it.
    docker.negotiate_version().await.map_err(|e| api_err("negotiate version", e))
}

async fn open_tunnel(node: &str, ep: &Endpoint, timeout: Duration) -> Result<SshTunnel, DockerError> {
    let Endpoint::Ssh { host, port, user, key, known_hosts, strict } = ep else {
        return Err(invalid("open_tunnel needs an SSH endpoint".to_string()));
    };
    let io_err = |source| DockerError::Io { node: node.to_string(), source };
    let ssh_err = |source| DockerError::Ssh { node: node.to_string(), source };
    // Short, private path: unix socket paths are limited to ~107 bytes and the forward must not be reachable by
    // other users.
    // The process id in the name lets a later conductor end the masters a killed one left.
    let prefix = format!("{SSH_DIR_PREFIX}{}-", std::process::id());
    let dir = tempfile::Builder::new().prefix(&prefix).tempdir().map_err(io_err)?;
    let mut builder = SessionBuilder::default();
    builder
        .user(user.clone())
        .port(*port)
        .keyfile(key)
        .user_known_hosts_file(known_hosts)
        .known_hosts_check(if *strict { KnownHosts::Strict } else { KnownHosts::Add })
        // Ignore ~/.ssh/config: the endpoint alone decides how we connect.
        .config_file("/dev/null")
        .control_directory(dir.path())
        .connect_timeout(timeout.max(Duration::from_secs(1)))
        .server_alive_interval(SSH_ALIVE_INTERVAL);
    let session = builder.connect(host).await.map_err(ssh_err)?;
    let local_socket = dir.path().join("docker.sock");
    session
        .request_port_forward(
            ForwardType::Local,
            Socket::UnixSocket { path: local_socket.as_path().into() },
            Socket::UnixSocket { path: Path::new(REMOTE_DOCKER_SOCKET).into() },
        )
        .await
        .map_err(ssh_err)?;
    // The master binds the socket while handling the forward request; wait briefly in case it lags.
    while !local_socket.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(SshTunnel { session, local_socket, _dir: dir })
}

fn validate_id(what: &str, id: &str) -> Result<(), DockerError> {
    let ok = !id.is_empty()
        && id.len() <= ID_LEN_MAX
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{what} id {id:?} must be 1..={ID_LEN_MAX} of [a-z0-9-], not starting with '-'")))
    }
}

fn validate_volume_name(name: &str) -> Result<(), DockerError> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && name.len() <= VOLUME_NAME_LEN_MAX {
        Ok(())
    } else {
        Err(invalid(format!(
            "volume name {name:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most {VOLUME_NAME_LEN_MAX})"
        )))
    }
}

fn invalid(msg: String) -> DockerError {
    DockerError::InvalidSpec(msg)
}

fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec::new("mc-1", "node-a", 2048, "small", "conductor-test-mc:latest", 30000)
    }

    #[test]
    fn memory_limit_equals_booking() {
        assert_eq!(memory_limit_mb(0), 0);
        assert_eq!(memory_limit_mb(4096), 4096);
        assert_eq!(memory_limit_mb(u32::MAX), u64::from(u32::MAX));
        assert_eq!(spec().memory_limit_mb, 2048);
    }

    #[test]
    fn container_name_joins_node_and_server() {
        assert_eq!(container_name("node-a", "mc-1"), "conductor-node-a-mc-1");
    }

    #[test]
    fn validate_accepts_default_spec() {
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn validate_rejects_bad_input() {
        type Mutation = fn(&mut ContainerSpec);
        let cases: Vec<(&str, Mutation)> = vec![
            ("uppercase server", |s| s.server = "MC".into()),
            ("slash in server", |s| s.server = "../x".into()),
            ("shell in server", |s| s.server = "a;rm -rf".into()),
            ("empty server", |s| s.server.clear()),
            ("leading dash", |s| s.node = "-a".into()),
            ("long id", |s| s.server = "a".repeat(ID_LEN_MAX + 1)),
            ("limit above booking", |s| s.memory_limit_mb = 2049),
            ("tiny limit", |s| s.memory_limit_mb = 1),
            ("volume with colon", |s| s.data_volume = Some("v:/etc".into())),
            ("volume with slash", |s| s.data_volume = Some("/etc".into())),
            ("env key with =", |s| s.env.push(("A=B".into(), "c".into()))),
            ("zero port", |s| s.host_port = 0),
            ("image with space", |s| s.image = "a b".into()),
            ("control char in plan", |s| s.plan = "a\nb".into()),
        ];
        for (name, mutate) in cases {
            let mut s = spec();
            mutate(&mut s);
            assert!(matches!(s.validate(), Err(DockerError::InvalidSpec(_))), "{name} was accepted");
        }
    }
}
