//! The live driver: one task owns the engine. It waits on the engine's next deadline,
//! on adapter results and on API calls, feeds one input at a time (journaled first),
//! then drains the engine's commands and hands them to adapter tasks. An adapter
//! failure (or panic) becomes a failure input and a log line; it never ends the loop.

use crate::config::{read_secret, LiveConfig, PortRange};
use crate::control::{
    valid_host, valid_name, ApiCall, ApiError, Decision, FleetInfo, NewNode, NodeInfo, QueueEntry, ServerInfo,
    StartBody, StartOutcome, StopOutcome,
};
use crate::docker::{memory_limit_mb, volume_name, ContainerInfo, ContainerSpec, DockerNode, Endpoint, Worlds};
use crate::hetzner::{cloud_init, CloudInit, CreateServer, HetznerClient, ServerStatus as VmStatus, INSTANCE_LABEL};
use crate::metrics::Metrics;
use crate::store::Store;
use conductor_core::engine::{Conductor, ServerStatus};
use conductor_core::io::{
    Command, ContainerRecord, Event, Input, QueuedRecord, Rejection, Reply, Snapshot, StartReply, StopReason,
    StopReply, WorldRecord,
};
use conductor_core::node::{usable_mb, Health, Lifecycle, NodeSpec};
use conductor_core::time::Millis;
use conductor_core::{NodeId, NodeKind, Plan, ServerId, UserId, WorldAction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Mutex};

/// How `conductor run` was asked to behave.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Read real state, log every decision, execute no mutating call.
    pub dry_run: bool,
    /// Overrides `api.listen`.
    pub listen: Option<String>,
}

/// A log line on stderr (never carries a secret: tokens are not in any value logged).
macro_rules! log {
    ($($t:tt)*) => { eprintln!("conductor: {}", format!($($t)*)) };
}

/// Wall-clock Unix milliseconds: the engine's time in live mode (so request times
/// survive restarts).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A node as the driver knows it: how to reach its Docker daemon and its ports.
struct NodeRt {
    name: String,
    endpoint: Option<Endpoint>,
    conn: Arc<Mutex<Option<DockerNode>>>,
    ports: PortRange,
    public_host: String,
    /// Host ports in use by servers on this node.
    used_ports: BTreeMap<ServerId, u16>,
    /// Its containers were listed since start (else the first successful probe lists
    /// them and the engine adopts what it finds).
    listed: bool,
    /// Host ports found taken by something else, avoided until the Unix ms given.
    busy_ports: BTreeMap<u16, u64>,
    /// The last health probe error logged (a failing node logs once, not every probe).
    last_probe_error: Option<String>,
}

/// What a node row in the store holds (API-registered hosts and rented VMs).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredNode {
    name: String,
    kind: NodeKind,
    address: String,
    ssh_port: Option<u16>,
    ram_mb: u32,
    system: bool,
    ports: Option<String>,
    server_type: Option<String>,
    provider_id: Option<String>,
    hourly_eur: f64,
}

/// Results of adapter tasks, turned into inputs by the driver.
enum Done {
    Input(Input),
    Listed {
        node: NodeId,
        containers: Vec<ContainerInfo>,
        /// The servers with a world volume on the node (listed only to recover).
        worlds: Vec<String>,
        recover: bool,
    },
    AdapterError {
        adapter: &'static str,
        op: &'static str,
        message: String,
    },
    /// A health probe failed: logged once per distinct message (the core counts the failures).
    ProbeFailed {
        node: NodeId,
        message: String,
    },
    /// The host port picked for a start is taken by something else on the node: the
    /// server gets another port next time, and this one is avoided for a while.
    PortBusy {
        node: NodeId,
        server: ServerId,
        port: u16,
    },
    /// The VMs Hetzner lists as ours (orphan sweep): (id, name).
    ManagedVms(Vec<(i64, String)>),
    /// A world copy is in the archive store (the file is durable).
    Archived {
        server: ServerId,
        node: NodeId,
        generation: u64,
    },
}

/// How long a host port that something else holds is avoided on its node.
const BUSY_PORT_AVOID_MS: u64 = 10 * 60 * 1000;

pub struct Driver {
    cfg: LiveConfig,
    opts: RunOptions,
    engine: Conductor,
    store: Store,
    nodes: BTreeMap<NodeId, NodeRt>,
    by_name: BTreeMap<String, NodeId>,
    hetzner: Option<Arc<HetznerClient>>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    events: broadcast::Sender<String>,
    metrics: Arc<Metrics>,
    decisions: VecDeque<Decision>,
    players: BTreeMap<ServerId, u32>,
    /// Server names by id (a cache of the store's table).
    names: BTreeMap<ServerId, String>,
    in_flight: usize,
    last_now: u64,
    /// Per server, the end of its last world task (start, archive, world removal): world
    /// tasks of one server run one after the other, in the order the engine asked for them.
    world_tail: BTreeMap<ServerId, tokio::sync::watch::Receiver<()>>,
    /// Managed VMs found at start that could not be adopted (their type is not in the
    /// catalogue): reported as billed, and never deleted by the orphan sweep, since servers
    /// may still run on them.
    unadoptable: BTreeSet<String>,
    /// Hetzner's managed VMs were listed and matched to the registry at start.
    hetzner_reconciled: bool,
    /// Placeholders kept at start without a node (Hetzner could not say whether their VM exists).
    kept_names: Vec<String>,
}

/// Where a node's Docker daemon is and how to reach it, for a task.
#[derive(Clone)]
struct Target {
    name: String,
    conn: Arc<Mutex<Option<DockerNode>>>,
    endpoint: Option<Endpoint>,
}

impl Target {
    /// A world-transfer handle on the node (connecting first if needed).
    async fn worlds(&self, image: &str, limit: Duration, timeout: Duration) -> Result<Worlds, String> {
        let image = image.to_string();
        with_conn(&self.conn, &self.name, self.endpoint.as_ref(), timeout, move |d| {
            Box::pin(async move { Ok(d.worlds(&image, limit)) })
        })
        .await
    }
}

/// The newest world archive of a server in the archive folder: the `*.tar` modified last
/// (generations restart at 1 with the conductor, so their numbers do not order archives).
fn newest_archive(dir: &Path) -> Option<PathBuf> {
    archives_in(dir).pop()
}

/// How many archives of a server are kept (the newest, and the one before as a spare).
const ARCHIVES_KEPT: usize = 2;

/// Writes the world of `server` on `worlds`' node into `<root>/<server>/<generation>.tar`
/// atomically (a temporary file, synced, then renamed; the folder synced), then drops all
/// but the newest [`ARCHIVES_KEPT`] archives.
async fn archive_world(worlds: &Worlds, root: &Path, server: &str, generation: u64) -> Result<u64, String> {
    let dir = root.join(server);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
    let part = dir.join(format!(".{generation}.tar.part"));
    let size = match worlds.export(server, &part).await {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e.to_string());
        }
    };
    let done = dir.join(format!("{generation}.tar"));
    tokio::fs::rename(&part, &done).await.map_err(|e| format!("{}: {e}", done.display()))?;
    let sync_dir = dir.clone();
    tokio::task::spawn_blocking(move || std::fs::File::open(&sync_dir).and_then(|d| d.sync_all()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    prune_archives(&dir, &done);
    Ok(size)
}

/// The archives (`*.tar`, not temporary files) in a server's folder, oldest first.
fn archives_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".tar") && !n.starts_with('.')))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Removes all but the newest [`ARCHIVES_KEPT`] archives in `dir`, never `keep` (the one
/// just written).
fn prune_archives(dir: &Path, keep: &Path) {
    let archives = archives_in(dir);
    let old = archives.len().saturating_sub(ARCHIVES_KEPT);
    for p in archives.into_iter().take(old).filter(|p| p != keep) {
        let _ = std::fs::remove_file(p);
    }
}

const DECISIONS_KEPT: usize = 1000;

/// Most API calls handled under one store commit (a group commit); more wait for the next.
const CALLS_PER_COMMIT_MAX: usize = 256;

/// The answer to one API call, held back until the store has committed what the call wrote.
/// `Some(error)` replaces the answer when the commit failed.
type Pending = Box<dyn FnOnce(Option<ApiError>) + Send>;

fn pending<T: Send + 'static>(answer: crate::control::Answer<T>, result: Result<T, ApiError>) -> Pending {
    Box::new(move |failed| {
        // A send fails only when the handler gave up waiting; nothing to do then.
        let _ = answer.send(match failed {
            Some(e) => Err(e),
            None => result,
        });
    })
}

impl Driver {
    fn now(&mut self) -> Millis {
        self.last_now = self.last_now.max(unix_ms());
        Millis(self.last_now)
    }

    fn name_of(&mut self, id: ServerId) -> String {
        if let Some(n) = self.names.get(&id) {
            return n.clone();
        }
        let n = self.store.server_name(id).ok().flatten().unwrap_or_else(|| format!("server-{}", id.0));
        self.names.insert(id, n.clone());
        n
    }

    fn server_id(&mut self, name: &str) -> Result<ServerId, ApiError> {
        let id = self.store.server_id(name).map_err(|e| ApiError::Unavailable(e.to_string()))?;
        self.names.insert(id, name.to_string());
        Ok(id)
    }

    /// Feed one input: journal it, hand it to the engine, then run what it asks.
    fn feed(&mut self, input: Input) -> Reply {
        let now = self.now();
        if let Err(e) = self.store.journal(now.0, &input) {
            log!("journal write failed: {e}");
        }
        let reply = self.engine.handle(now, input);
        self.drain();
        reply
    }

    fn tick(&mut self) {
        let now = self.now();
        self.engine.handle_timeout(now);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(cmd) = self.engine.poll_command() {
            self.execute(cmd);
        }
        self.refresh_metrics();
    }

    fn register(
        &mut self,
        spec: NodeSpec,
        endpoint: Option<Endpoint>,
        ports: PortRange,
        public_host: String,
    ) -> NodeId {
        let name = spec.name.clone();
        let Reply::NodeRegistered(id) = self.feed(Input::NodeRegistered(spec)) else {
            unreachable!("registration always answers with the id")
        };
        self.nodes.insert(
            id,
            NodeRt {
                name: name.clone(),
                endpoint,
                conn: Arc::new(Mutex::new(None)),
                ports,
                public_host,
                used_ports: BTreeMap::new(),
                listed: false,
                busy_ports: BTreeMap::new(),
                last_probe_error: None,
            },
        );
        self.by_name.insert(name, id);
        id
    }

    fn ssh_endpoint(&self, host: &str, port: Option<u16>) -> Endpoint {
        if host == "local" {
            return Endpoint::Local { socket: "/var/run/docker.sock".into() };
        }
        Endpoint::Ssh {
            host: host.to_string(),
            port: port.unwrap_or(self.cfg.ssh.port),
            user: self.cfg.ssh.user.clone(),
            key: self.cfg.ssh.key.clone(),
            known_hosts: self.cfg.ssh.known_hosts.clone(),
            strict: self.cfg.ssh.strict_host_keys,
        }
    }

    fn default_ports(&self) -> PortRange {
        PortRange::parse(&self.cfg.containers.ports).expect("validated")
    }

    fn docker_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.containers.docker_timeout_s.max(1))
    }

    // ------------------------------------------------------------ commands

    fn spawn<F>(&mut self, fut: F)
    where
        F: std::future::Future<Output = Vec<Done>> + Send + 'static,
    {
        self.spawn_or(fut, Vec::new);
    }

    /// Like [`Driver::spawn`]; should the task panic, `on_panic` (the command's failure
    /// inputs) is reported after the adapter error, so the engine need not wait for a timeout.
    fn spawn_or<F, P>(&mut self, fut: F, on_panic: P)
    where
        F: std::future::Future<Output = Vec<Done>> + Send + 'static,
        P: FnOnce() -> Vec<Done> + Send + 'static,
    {
        let tx = self.done_tx.clone();
        self.in_flight += 1;
        tokio::spawn(async move {
            let out = guarded(fut, on_panic).await;
            for d in out {
                let _ = tx.send(d);
            }
            let _ = tx.send(Done::Input(Input::NodeCpu { node: NodeId(u32::MAX), percent: 0.0 }));
        });
    }

    fn execute(&mut self, cmd: Command) {
        let mutating = matches!(
            cmd,
            Command::StartContainer { .. }
                | Command::StopContainer { .. }
                | Command::ProvisionNode { .. }
                | Command::DeleteNode { .. }
                | Command::DeleteWorld { .. }
                | Command::ArchiveWorld { .. }
        );
        if self.opts.dry_run && mutating {
            let what = self.describe(&cmd);
            self.dry_run_decision(what);
            return;
        }
        match cmd {
            Command::Publish(e) => self.on_event(e),
            Command::StartContainer { server, node, ram_mb, plan, world } => {
                self.start_container(server, node, ram_mb, plan, world)
            }
            Command::StopContainer { server, node, reason } => self.stop_container(server, node, reason),
            Command::ProbeHealth { nodes } => self.probe(nodes),
            Command::ListContainers { node } => self.list(node, false),
            Command::ArchiveWorld { server, node, generation } => self.archive(server, node, generation),
            Command::DeleteWorld { server, node } => self.remove_world(server, node, "delete_world"),
            Command::ProvisionNode { node, name, server_type } => self.provision(node, name, server_type),
            Command::DeleteNode { node, name, provider_id } => self.delete_node(node, name, provider_id),
        }
    }

    /// Runs `fut` after the server's previous world task, as a driver task.
    fn spawn_world<F>(&mut self, server: ServerId, fut: F)
    where
        F: std::future::Future<Output = Vec<Done>> + Send + 'static,
    {
        self.spawn_world_or(server, fut, Vec::new);
    }

    /// [`Driver::spawn_world`] with failure inputs for a panic (see [`Driver::spawn_or`]).
    fn spawn_world_or<F, P>(&mut self, server: ServerId, fut: F, on_panic: P)
    where
        F: std::future::Future<Output = Vec<Done>> + Send + 'static,
        P: FnOnce() -> Vec<Done> + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::watch::channel(());
        let prev = self.world_tail.insert(server, done_rx);
        self.spawn_or(
            async move {
                if let Some(mut prev) = prev {
                    // Ends when the previous task drops its sender (finished, failed or panicked).
                    while prev.changed().await.is_ok() {}
                }
                let out = fut.await;
                drop(done_tx);
                out
            },
            on_panic,
        );
    }

    fn target(&self, node: NodeId) -> Option<Target> {
        let rt = self.nodes.get(&node)?;
        Some(Target { name: rt.name.clone(), conn: rt.conn.clone(), endpoint: rt.endpoint.clone() })
    }

    fn archive(&mut self, server: ServerId, node: NodeId, generation: u64) {
        let name = self.name_of(server);
        let Some(root) = self.cfg.archive.dir.clone() else {
            // Worlds stay in their node's Docker volume (no archive storage is
            // configured): the engine keeps such a node non-empty, so it is never
            // returned with a world on it.
            self.decide("archive_skipped", format!("{name}: world stays on its node (no archive storage)"));
            return;
        };
        let Some(target) = self.target(node) else { return };
        let (image, limit, timeout) =
            (self.cfg.containers.image.clone(), self.cfg.archive.transfer_timeout(), self.docker_timeout());
        self.spawn_world(server, async move {
            let res = match target.worlds(&image, limit, timeout).await {
                Ok(w) => archive_world(&w, &root, &name, generation).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(_) => vec![Done::Archived { server, node, generation }],
                // No confirmation: the engine asks again and keeps the node non-empty.
                Err(e) => vec![Done::AdapterError { adapter: "docker", op: "archive_world", message: e }],
            }
        });
    }

    fn describe(&mut self, cmd: &Command) -> String {
        match cmd {
            Command::StartContainer { server, node, ram_mb, .. } => {
                format!("start {} ({ram_mb} MB) on {}", self.name_of(*server), self.node_name(*node))
            }
            Command::StopContainer { server, node, reason } => {
                format!("stop {} on {} ({reason:?})", self.name_of(*server), self.node_name(*node))
            }
            Command::ProvisionNode { name, server_type, .. } => format!("buy VM {name} ({server_type})"),
            Command::DeleteNode { name, .. } => format!("delete VM {name}"),
            Command::DeleteWorld { server, node } => {
                format!("delete the world of {} on {}", self.name_of(*server), self.node_name(*node))
            }
            other => format!("{other:?}"),
        }
    }

    fn node_name(&self, id: NodeId) -> String {
        match (self.nodes.get(&id), self.engine.fleet().get(id)) {
            (Some(n), _) => n.name.clone(),
            (None, Some(n)) => n.name.clone(),
            (None, None) => format!("node-{}", id.0),
        }
    }

    fn start_container(&mut self, server: ServerId, node: NodeId, ram_mb: u32, plan: Plan, world: WorldAction) {
        let name = self.name_of(server);
        let source = match world {
            WorldAction::MoveFrom(src) => self.target(src),
            _ => None,
        };
        let archive_root = self.cfg.archive.dir.clone();
        let limit = self.cfg.archive.transfer_timeout();
        let c = self.cfg.containers.clone();
        let timeout = self.docker_timeout();
        let Some(rt) = self.nodes.get_mut(&node) else { return };
        let port = match rt.used_ports.get(&server) {
            Some(&p) => Some(p),
            None => {
                let now = unix_ms();
                rt.busy_ports.retain(|_, until| *until > now);
                let used: BTreeSet<u16> = rt.used_ports.values().copied().collect();
                (rt.ports.from..=rt.ports.to).find(|p| !used.contains(p) && !rt.busy_ports.contains_key(p))
            }
        };
        let Some(port) = port else {
            let input = Input::ContainerFailed { server, node, reason: "no free host port on the node".into() };
            let _ = self.done_tx.send(Done::Input(input));
            return;
        };
        rt.used_ports.insert(server, port);
        let mut spec = ContainerSpec::new(&name, &rt.name, ram_mb, plan.as_str(), &c.image, port);
        spec.container_port = c.container_port;
        spec.env = c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        spec.env.push(("PORT".into(), c.container_port.to_string()));
        spec.data_volume = c.data_volumes.then(|| volume_name(&rt.name, &name));
        spec.memory_limit_mb = memory_limit_mb(ram_mb);
        let (conn, endpoint, node_name) = (rt.conn.clone(), rt.endpoint.clone(), rt.name.clone());
        let target = Target { name: node_name.clone(), conn: conn.clone(), endpoint: endpoint.clone() };
        // Without data volumes there is no world to carry.
        let world = if c.data_volumes { world } else { WorldAction::InPlace };
        if let WorldAction::MoveFrom(src) = world {
            if source.is_none() {
                let reason = format!("world source node {} is unknown", src.0);
                let _ = self.done_tx.send(Done::Input(Input::ContainerFailed { server, node, reason }));
                return;
            }
        }
        let image = c.image.clone();
        // The transfer rewrites the target's volume: until a start there succeeds, the
        // current world is the source's copy, or the archive ("").
        let authority = match world {
            WorldAction::InPlace => None,
            WorldAction::MoveFrom(_) => source.as_ref().map(|t| t.name.clone()),
            WorldAction::RestoreFromArchive => Some(String::new()),
        };
        if let Some(a) = authority {
            if let Err(e) = self.store.set_world_node(server, Some(&a)) {
                log!("store: {e}");
            }
        }
        // A panic before the start call: the start failed. After it, the container may run:
        // nothing is said, and the engine's start timeout stops it and learns where it was.
        let start_called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let called = start_called.clone();
        let on_panic = move || {
            if start_called.load(std::sync::atomic::Ordering::SeqCst) {
                Vec::new()
            } else {
                let reason = "the adapter task panicked".to_string();
                vec![Done::Input(Input::ContainerFailed { server, node, reason })]
            }
        };
        self.spawn_world_or(
            server,
            async move {
                // The world first: restored from the archive, or copied from the node holding it.
                let prepared = match world {
                    WorldAction::InPlace => Ok(None),
                    WorldAction::RestoreFromArchive => {
                        restore_world(&target, archive_root.as_deref(), &name, &image, limit, timeout)
                            .await
                            .map(|_| None)
                    }
                    WorldAction::MoveFrom(_) => {
                        let src = source.expect("checked above");
                        copy_world(&src, &target, archive_root.as_deref(), &name, &image, limit, timeout)
                            .await
                            .map(|_| Some(src))
                    }
                };
                let moved_from = match prepared {
                    Ok(src) => src,
                    Err(e) => {
                        let reason = format!("world not ready on {node_name}: {e}");
                        return vec![
                            Done::AdapterError { adapter: "docker", op: "world", message: reason.clone() },
                            Done::Input(Input::ContainerFailed { server, node, reason }),
                        ];
                    }
                };
                called.store(true, std::sync::atomic::Ordering::SeqCst);
                let res = with_conn(&conn, &node_name, endpoint.as_ref(), timeout, |d| {
                    Box::pin(async move { d.start(&spec).await.map(|_| ()) })
                })
                .await;
                match res {
                    Ok(()) => {
                        let mut out = vec![Done::Input(Input::ContainerStarted { server, node })];
                        // A move: the source copy goes once the container runs on the target
                        // (in its own task: a panic there must not lose the start report).
                        if let Some(src) = moved_from {
                            let src_name = src.name.clone();
                            let world = name.clone();
                            let removed = tokio::spawn(async move {
                                match src.worlds(&image, limit, timeout).await {
                                    Ok(w) => w.remove(&world).await.map_err(|e| e.to_string()),
                                    Err(e) => Err(e),
                                }
                            })
                            .await
                            .unwrap_or_else(|e| Err(format!("task failed: {e}")));
                            if let Err(e) = removed {
                                let message = format!("{name}: source copy on {src_name} not removed: {e}");
                                out.push(Done::AdapterError { adapter: "docker", op: "remove_moved_world", message });
                            }
                        }
                        out
                    }
                    Err(e) => {
                        let mut out = vec![Done::AdapterError { adapter: "docker", op: "start", message: e.clone() }];
                        if port_taken(&e) {
                            out.push(Done::PortBusy { node, server, port });
                        }
                        out.push(Done::Input(Input::ContainerFailed { server, node, reason: e }));
                        out
                    }
                }
            },
            on_panic,
        );
    }

    fn stop_container(&mut self, server: ServerId, node: NodeId, _reason: StopReason) {
        let name = self.name_of(server);
        let grace = Duration::from_secs(self.cfg.containers.stop_grace_s);
        let timeout = self.docker_timeout();
        let Some(rt) = self.nodes.get(&node) else { return };
        let (conn, endpoint, node_name) = (rt.conn.clone(), rt.endpoint.clone(), rt.name.clone());
        self.spawn(async move {
            let res = with_conn(&conn, &node_name, endpoint.as_ref(), timeout + grace, |d| {
                Box::pin(async move { d.stop(&name, grace).await })
            })
            .await;
            match res {
                Ok(true) => vec![Done::Input(Input::ContainerExited { server, node })],
                // No container: it never ran there (the engine learns its world is not there).
                Ok(false) => {
                    let reason = "no such container".to_string();
                    vec![Done::Input(Input::ContainerFailed { server, node, reason })]
                }
                // The engine retries stops; a lost one is reconciled when the node is listed.
                Err(e) => vec![Done::AdapterError { adapter: "docker", op: "stop", message: e }],
            }
        });
    }

    fn probe(&mut self, nodes: Vec<NodeId>) {
        let timeout = self.docker_timeout().min(Duration::from_secs(10));
        let targets: Vec<(NodeId, String, Option<Endpoint>, Arc<Mutex<Option<DockerNode>>>, bool)> = nodes
            .iter()
            .filter_map(|id| {
                self.nodes.get(id).map(|rt| (*id, rt.name.clone(), rt.endpoint.clone(), rt.conn.clone(), rt.listed))
            })
            .collect();
        // A panicking probe task counts as one failed attempt for each of its nodes.
        let results = targets.iter().map(|t| (t.0, false)).collect();
        let on_panic = move || vec![Done::Input(Input::HealthProbes { results })];
        self.spawn_or(
            async move {
                let probes = targets.into_iter().map(|(id, name, ep, conn, listed)| async move {
                    let probe = with_conn(&conn, &name, ep.as_ref(), timeout, |d| Box::pin(d.info())).await;
                    let ok = probe.is_ok();
                    let failed = probe.err().map(|message| Done::ProbeFailed { node: id, message });
                    // A node first reached after start: list it so the engine adopts its containers.
                    let listing = if ok && !listed {
                        let r = with_conn(&conn, &name, ep.as_ref(), timeout, |d| Box::pin(list_all(d))).await;
                        r.ok().map(|(containers, worlds)| Done::Listed { node: id, containers, worlds, recover: true })
                    } else {
                        None
                    };
                    ((id, ok), listing.or(failed))
                });
                let results = futures_util::future::join_all(probes).await;
                let mut out = Vec::new();
                let mut probes = Vec::new();
                for (r, extra) in results {
                    probes.push(r);
                    out.extend(extra);
                }
                // Listings first: a node's containers are adopted before it turns healthy.
                out.push(Done::Input(Input::HealthProbes { results: probes }));
                out
            },
            on_panic,
        );
    }

    fn list(&mut self, node: NodeId, recover: bool) {
        let timeout = self.docker_timeout();
        let Some(rt) = self.nodes.get(&node) else { return };
        let (conn, endpoint, name) = (rt.conn.clone(), rt.endpoint.clone(), rt.name.clone());
        self.spawn(async move {
            match with_conn(&conn, &name, endpoint.as_ref(), timeout, |d| Box::pin(d.list())).await {
                Ok(containers) => vec![Done::Listed { node, containers, worlds: Vec::new(), recover }],
                Err(e) => vec![Done::AdapterError { adapter: "docker", op: "list", message: e }],
            }
        });
    }

    fn provision(&mut self, node: NodeId, name: String, server_type: String) {
        // The engine registered the placeholder itself; the driver learns its address
        // once the VM runs.
        let ports = self.default_ports();
        self.nodes.insert(
            node,
            NodeRt {
                name: name.clone(),
                endpoint: None,
                conn: Arc::new(Mutex::new(None)),
                ports,
                public_host: String::new(),
                used_ports: BTreeMap::new(),
                listed: true,
                busy_ports: BTreeMap::new(),
                last_probe_error: None,
            },
        );
        self.by_name.insert(name.clone(), node);
        let stored = StoredNode {
            name: name.clone(),
            kind: NodeKind::Cloud,
            address: String::new(),
            ssh_port: Some(self.cfg.hetzner.ssh_port),
            ram_mb: self.engine.fleet().get(node).map_or(0, |n| n.total_ram_mb),
            system: false,
            ports: None,
            server_type: Some(server_type.clone()),
            provider_id: None,
            hourly_eur: self.engine.fleet().get(node).map_or(0.0, |n| n.hourly_eur),
        };
        let _ = self.store.put_node(&name, &serde_json::to_string(&stored).expect("serializes"));
        let Some(client) = self.hetzner.clone() else {
            let reason = "no cloud configured (hetzner.enabled = false)".to_string();
            let _ = self.done_tx.send(Done::Input(Input::ProvisionFailed { node, reason }));
            return;
        };
        let h = self.cfg.hetzner.clone();
        let req = CreateServer {
            name: name.clone(),
            server_type,
            image: h.image.clone(),
            location: Some(h.location.clone()),
            ssh_keys: h.ssh_keys.clone(),
            labels: BTreeMap::from([
                ("conductor.node".to_string(), name.clone()),
                (INSTANCE_LABEL.to_string(), h.instance.clone()),
            ]),
            user_data: Some(cloud_init(&CloudInit {
                ssh_authorized_keys: h.authorized_keys.clone(),
                ..Default::default()
            })),
        };
        let boot = Duration::from_secs(h.boot_timeout_s);
        let on_panic =
            move || vec![Done::Input(Input::ProvisionFailed { node, reason: "the adapter task panicked".to_string() })];
        self.spawn_or(
            async move {
                let created = match client.create_server(&req).await {
                    Ok(c) => c,
                    Err(e) => {
                        return vec![
                            Done::AdapterError { adapter: "hetzner", op: "create", message: e.to_string() },
                            Done::Input(Input::ProvisionFailed { node, reason: e.to_string() }),
                        ]
                    }
                };
                let id = created.server.id;
                let deadline = tokio::time::Instant::now() + boot;
                loop {
                    match client.get_server(id).await {
                        Ok(Some(s)) if s.status == VmStatus::Running => {
                            let address = s.ipv4.map(|ip| ip.to_string()).unwrap_or_default();
                            return vec![Done::Input(Input::NodeProvisioned {
                                node,
                                provider_id: id.to_string(),
                                address,
                            })];
                        }
                        Ok(None) => {
                            return vec![Done::Input(Input::ProvisionFailed {
                                node,
                                reason: "VM vanished while booting".into(),
                            })]
                        }
                        _ if tokio::time::Instant::now() >= deadline => {
                            // Give it back rather than pay for a VM that never came up.
                            let _ = client.delete_server(id).await;
                            return vec![Done::Input(Input::ProvisionFailed {
                                node,
                                reason: "VM never reached running".into(),
                            })];
                        }
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            },
            on_panic,
        );
    }

    /// Lists our VMs; [`Driver::delete_orphans`] gets the answer.
    fn sweep_orphans(&mut self) {
        let Some(client) = self.hetzner.clone() else { return };
        if !self.hetzner_reconciled {
            // What a VM not in the registry is (to adopt, or an orphan) is decided by the
            // start's reconciliation; without it, nothing is deleted.
            log!("hetzner: not reconciled at start; the orphan sweep deletes nothing until a restart reconciles");
            return;
        }
        let instance = self.cfg.hetzner.instance.clone();
        self.spawn(async move {
            match client.list_instance(&instance).await {
                Ok(vms) => vec![Done::ManagedVms(vms.into_iter().map(|v| (v.id, v.name)).collect())],
                Err(e) => vec![Done::AdapterError { adapter: "hetzner", op: "list", message: e.to_string() }],
            }
        });
    }

    /// Deletes the listed VMs that are no node of this conductor. A VM being created is
    /// already a node (its placeholder is registered before the create call), so only VMs
    /// nobody will ever use or return are deleted.
    fn delete_orphans(&mut self, vms: Vec<(i64, String)>) {
        for (id, name) in vms {
            if self.by_name.contains_key(&name) || self.unadoptable.contains(&name) {
                continue;
            }
            let line = format!("VM {name} ({id}) is labelled managed_by=conductor but is no node of ours");
            if self.opts.dry_run {
                self.dry_run_decision(format!("delete {line}"));
                continue;
            }
            log!("hetzner: deleting orphan: {line}");
            self.decide("orphan_vm_deleted", line);
            let Some(client) = self.hetzner.clone() else { return };
            self.spawn(async move {
                match client.delete_server(id).await {
                    Ok(()) => Vec::new(),
                    Err(e) => vec![Done::AdapterError { adapter: "hetzner", op: "delete", message: e.to_string() }],
                }
            });
        }
    }

    fn delete_node(&mut self, node: NodeId, name: String, provider_id: Option<String>) {
        let Some(client) = self.hetzner.clone() else {
            let _ = self.done_tx.send(Done::Input(Input::NodeDeleted { node }));
            return;
        };
        self.spawn(async move {
            let id = match provider_id.as_deref().and_then(|p| p.parse::<i64>().ok()) {
                Some(id) => Some(id),
                None => match client.list_managed().await {
                    Ok(vms) => vms.into_iter().find(|v| v.name == name).map(|v| v.id),
                    Err(e) => {
                        return vec![Done::AdapterError { adapter: "hetzner", op: "list", message: e.to_string() }]
                    }
                },
            };
            if let Some(id) = id {
                if let Err(e) = client.delete_server(id).await {
                    // The engine's delete timeout asks again.
                    return vec![Done::AdapterError { adapter: "hetzner", op: "delete", message: e.to_string() }];
                }
            }
            vec![Done::Input(Input::NodeDeleted { node })]
        });
    }

    // ------------------------------------------------------------ results

    fn on_done(&mut self, d: Done) {
        match d {
            Done::Input(Input::NodeCpu { node: NodeId(u32::MAX), .. }) => {
                self.in_flight = self.in_flight.saturating_sub(1)
            }
            Done::Input(input) => {
                if let Input::Players { server, count } = &input {
                    // Shown by GET /v1/servers/{id}; only for a server still running (a late
                    // answer must not resurrect the count of a stopped one).
                    if matches!(self.engine.server_status(*server), Some(ServerStatus::Running { .. })) {
                        self.players.insert(*server, *count);
                    }
                }
                if let Input::NodeProvisioned { node, provider_id, address } = &input {
                    let port = Some(self.cfg.hetzner.ssh_port);
                    let ep = self.ssh_endpoint(address, port);
                    if let Some(rt) = self.nodes.get_mut(node) {
                        rt.endpoint = Some(ep);
                        rt.public_host = address.clone();
                        let name = rt.name.clone();
                        if let Some(mut s) = self.stored_node(&name) {
                            s.provider_id = Some(provider_id.clone());
                            s.address = address.clone();
                            let _ = self.store.put_node(&name, &serde_json::to_string(&s).expect("serializes"));
                        }
                    }
                }
                self.feed(input);
            }
            Done::ManagedVms(vms) => self.delete_orphans(vms),
            Done::ProbeFailed { node, message } => {
                let Some(rt) = self.nodes.get_mut(&node) else { return };
                if rt.last_probe_error.as_deref() != Some(message.as_str()) {
                    log!("node {}: health probe failed: {message}", rt.name);
                    rt.last_probe_error = Some(message);
                }
            }
            Done::PortBusy { node, server, port } => {
                let Some(rt) = self.nodes.get_mut(&node) else { return };
                log!("node {}: host port {port} is taken by something else; avoided for 10 min", rt.name);
                rt.busy_ports.insert(port, unix_ms() + BUSY_PORT_AVOID_MS);
                if rt.used_ports.get(&server) == Some(&port) {
                    rt.used_ports.remove(&server);
                }
            }
            Done::Listed { node, containers, worlds, recover } => {
                let Some(rt) = self.nodes.get_mut(&node) else { return };
                rt.listed = true;
                let node_name = rt.name.clone();
                for c in &containers {
                    if let Some(p) = c.host_port {
                        if let Ok(id) = self.store.server_id(&c.server) {
                            self.nodes.get_mut(&node).expect("present").used_ports.insert(id, p);
                        }
                    }
                }
                if recover {
                    let records = self.records(node, &containers);
                    let worlds = self.world_records(node, &worlds);
                    log!("node {node_name}: adopting {} container(s) and {} world(s)", records.len(), worlds.len());
                    self.feed(Input::Recover(Snapshot { containers: records, worlds, ..Default::default() }));
                }
                // What runs there, authoritatively (after an adoption too: a server believed
                // to run there from the store that is gone has exited).
                let servers: Vec<ServerId> = containers
                    .iter()
                    .filter(|c| c.running)
                    .filter_map(|c| self.store.server_id(&c.server).ok())
                    .collect();
                self.feed(Input::NodeContainers { node, servers });
            }
            Done::AdapterError { adapter, op, message } => {
                log!("{adapter} {op}: {message}");
                self.metrics.inc_adapter_error(adapter, op);
            }
            Done::Archived { server, node, generation } => self.on_archived(server, node, generation),
        }
    }

    /// Confirms an archive to the engine; once the engine no longer counts the world on
    /// the node, the node's copy is removed (after any world task of the server already
    /// asked for, and before any later one).
    fn on_archived(&mut self, server: ServerId, node: NodeId, generation: u64) {
        let name = self.name_of(server);
        let reply = self.feed(Input::WorldArchived { server, generation });
        self.decide("world_archived", format!("{name}: generation {generation} archived ({reply:?})"));
        let off_node = match self.engine.server_status(server) {
            None => true,
            Some(ServerStatus::Stopped { world_on, .. }) => world_on != Some(node),
            Some(_) => false,
        };
        if reply != Reply::Ok || !off_node {
            return;
        }
        // The archive is the current world now (the node's copy goes next).
        if let Err(e) = self.store.set_world_node(server, Some("")) {
            log!("store: {e}");
        }
        self.remove_world(server, node, "remove_archived_world");
    }

    /// Removes the server's world volume on `node`, after the server's earlier world tasks.
    fn remove_world(&mut self, server: ServerId, node: NodeId, op: &'static str) {
        let name = self.name_of(server);
        let Some(target) = self.target(node) else { return };
        let (image, limit, timeout) =
            (self.cfg.containers.image.clone(), self.cfg.archive.transfer_timeout(), self.docker_timeout());
        self.spawn_world(server, async move {
            let removed = match target.worlds(&image, limit, timeout).await {
                Ok(w) => w.remove(&name).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => vec![],
                Err(e) => {
                    vec![Done::AdapterError {
                        adapter: "docker",
                        op,
                        message: format!("{name} on {}: {e}", target.name),
                    }]
                }
            }
        });
    }

    fn stored_node(&self, name: &str) -> Option<StoredNode> {
        self.store.nodes().ok()?.into_iter().find(|n| n.name == name).and_then(|n| serde_json::from_str(&n.spec).ok())
    }

    /// World records for a recovery snapshot: the node's world volumes, with RAM, plan and
    /// user from the store. A copy is `current` when the store's world node is this node
    /// (its last start, or the source of a transfer under way), or when the store does not
    /// know (a server last started before the column existed: the node copy is trusted over
    /// the archive, as a stopped container was); not when it names another node or the
    /// archive ("", a restore under way).
    fn world_records(&mut self, node: NodeId, servers: &[String]) -> Vec<WorldRecord> {
        let node_name = self.node_name(node);
        let rows: BTreeMap<String, (u32, Plan, UserId, Option<String>)> = self
            .store
            .servers()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.name.clone(), (r.ram_mb, r.plan, r.user, r.world_node.clone())))
            .collect();
        servers
            .iter()
            .filter_map(|name| {
                let server = self.server_id(name).ok()?;
                let (ram_mb, plan, user, world_node) =
                    rows.get(name).cloned().unwrap_or((0, Plan::PayPerPlay, UserId(server.0), None));
                let current = world_node.as_deref().is_none_or(|n| n == node_name);
                Some(WorldRecord { server, node, ram_mb, plan, user, current })
            })
            .collect()
    }

    /// Container records for a recovery snapshot; user and plan come from the store.
    fn records(&mut self, node: NodeId, containers: &[ContainerInfo]) -> Vec<ContainerRecord> {
        let rows: BTreeMap<String, (u32, Plan, UserId)> = self
            .store
            .servers()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.name.clone(), (r.ram_mb, r.plan, r.user)))
            .collect();
        containers
            .iter()
            .filter_map(|c| {
                let id = self.server_id(&c.server).ok()?;
                let (ram, plan, user) = rows.get(&c.server).copied().unwrap_or((0, Plan::PayPerPlay, UserId(id.0)));
                let ram_mb = c.ram_mb.unwrap_or(ram);
                let plan = match c.plan.as_deref() {
                    Some("balanced") => Plan::Balanced,
                    Some("reserved") => Plan::Reserved,
                    Some(_) => Plan::PayPerPlay,
                    None => plan,
                };
                Some(ContainerRecord { server: id, node, ram_mb, plan, user, running: c.running })
            })
            .collect()
    }

    /// A dry run's mutating step, logged and recorded instead of done.
    fn dry_run_decision(&mut self, what: String) {
        let line = format!("dry-run: would {what}");
        log!("{line}");
        self.decide("dry_run", line);
    }

    fn decide(&mut self, kind: &str, detail: String) {
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        self.decisions.push_back(Decision { at_ms: self.last_now, kind: kind.to_string(), detail });
    }

    fn on_event(&mut self, e: Event) {
        let json = self.event_json(&e);
        let _ = self.events.send(json.to_string());
        let store = |s: &Store, id: ServerId, state: &str| {
            if let Err(err) = s.set_state(id, state) {
                log!("store: {err}");
            }
        };
        match &e {
            Event::Placed { server, node, waited_ms, .. } => {
                store(&self.store, *server, "placed");
                if let Err(err) = self.store.set_placed_node(*server, &self.node_name(*node)) {
                    log!("store: {err}");
                }
                self.metrics.observe_queue_wait(*waited_ms as f64 / 1000.0);
                let d = format!("{} on {} after {} ms", self.name_of(*server), self.node_name(*node), waited_ms);
                self.decide("placed", d);
            }
            // Where it runs, and with node-local storage where its newest world is now
            // (a recovery prefers this copy), whether or not its start was reported.
            Event::Started { server, node } => {
                store(&self.store, *server, "running");
                if let Err(err) = self.store.set_world_node(*server, Some(&self.node_name(*node))) {
                    log!("store: {err}");
                }
            }
            Event::WorldOn { server, node } => {
                if let Err(err) = self.store.set_world_node(*server, Some(&self.node_name(*node))) {
                    log!("store: {err}");
                }
            }
            Event::Requeued { server, .. } | Event::Queued { server, .. } => {
                if let Err(err) = self.store.requeued(*server, self.last_now) {
                    log!("store: {err}");
                }
            }
            Event::Stopped { server, node, .. } => {
                store(&self.store, *server, "stopped");
                self.players.remove(server);
                let reserved = matches!(
                    self.engine.server_status(*server),
                    Some(ServerStatus::Stopped { booked_on: Some(_), .. })
                );
                if !reserved {
                    if let Some(rt) = self.nodes.get_mut(node) {
                        rt.used_ports.remove(server);
                    }
                }
            }
            Event::StartAttemptFailed { server, node, reason } => {
                let d = format!("{} on {}: {reason}", self.name_of(*server), self.node_name(*node));
                self.decide("start_attempt_failed", d);
            }
            Event::StartFailed { server, reason } => {
                store(&self.store, *server, "stopped");
                let d = format!("{}: {reason}", self.name_of(*server));
                self.decide("start_failed", d);
            }
            Event::Cancelled { server } => store(&self.store, *server, "stopped"),
            Event::ScaleUp { server_type, policy, reason, node } => {
                self.metrics.inc_scaling_action("up", policy);
                let d = format!("{} ({server_type}) by {policy}: {reason}", self.node_name(*node));
                log!("scale up: {d}");
                self.decide("scale_up", d);
            }
            Event::ScaleDown { node, policy, reason } => {
                self.metrics.inc_scaling_action("down", policy);
                let d = format!("{} by {policy}: {reason}", self.node_name(*node));
                log!("scale down: {d}");
                self.decide("scale_down", d);
            }
            Event::NodeRemoved { node, .. } => {
                if let Some(rt) = self.nodes.remove(node) {
                    self.by_name.remove(&rt.name);
                    let _ = self.store.remove_node(&rt.name);
                    let conn = rt.conn.clone();
                    tokio::spawn(async move {
                        if let Some(d) = conn.lock().await.take() {
                            let _ = d.close().await;
                        }
                    });
                }
            }
            Event::NodeHealthChanged { node, from, to } => {
                let d = format!("{}: {from:?} -> {to:?}", self.node_name(*node));
                log!("node {d}");
                self.decide("node_health", d);
                if *to == Health::Healthy {
                    if let Some(rt) = self.nodes.get_mut(node) {
                        rt.last_probe_error = None;
                    }
                }
            }
            Event::ProvisionFailed { node, reason } => {
                let d = format!("{}: {reason}", self.node_name(*node));
                log!("provisioning failed: {d}");
                self.decide("provision_failed", d);
            }
            Event::NodeProvisioned { node } => {
                let d = self.node_name(*node);
                log!("VM {d} provisioned");
                self.decide("provisioned", d);
            }
            Event::ServerLost { server, node } => {
                let d = format!("{} on {}", self.name_of(*server), self.node_name(*node));
                log!("server lost: {d}");
                self.decide("server_lost", d);
            }
            _ => {}
        }
    }

    fn event_json(&mut self, e: &Event) -> serde_json::Value {
        let mut v = serde_json::to_value(e).unwrap_or(serde_json::Value::Null);
        // Replace numeric ids by names for API clients.
        if let serde_json::Value::Object(outer) = &mut v {
            for (_, inner) in outer.iter_mut() {
                if let serde_json::Value::Object(fields) = inner {
                    if let Some(id) = fields.get("server").and_then(|s| s.as_u64()) {
                        let name = self.name_of(ServerId(id));
                        fields.insert("server".into(), name.into());
                    }
                    if let Some(id) = fields.get("node").and_then(|s| s.as_u64()) {
                        fields.insert("node".into(), self.node_name(NodeId(id as u32)).into());
                    }
                }
            }
        }
        serde_json::json!({ "at_ms": self.last_now, "event": v })
    }

    fn refresh_metrics(&mut self) {
        let reserve = self.engine.fleet().reserve().clone();
        let (mut total, mut usable, mut allocated) = (0u64, 0u64, 0u64);
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        for n in self.engine.fleet().iter() {
            total += u64::from(n.total_ram_mb);
            if !n.system {
                usable += n.usable_mb(&reserve);
                allocated += n.allocated_mb();
            }
            let state = match (n.lifecycle, n.health) {
                (Lifecycle::AwaitingProvision, _) => "provisioning",
                (Lifecycle::Draining, _) => "draining",
                (_, Health::Healthy) => "healthy",
                (_, Health::Unhealthy) => "unhealthy",
                (_, Health::Unknown) => "unknown",
            };
            *counts.entry((kind_str(n.kind).to_string(), state.to_string())).or_default() += 1;
        }
        self.metrics.set_fleet(total, usable, allocated);
        let counts: Vec<(&str, &str, u64)> = counts.iter().map(|((k, s), c)| (k.as_str(), s.as_str(), *c)).collect();
        self.metrics.set_nodes(&counts);
        self.metrics.set_queue_length(self.engine.queue().len());
        self.metrics.set_running_servers(self.engine.fleet().iter().map(|n| n.containers() as usize).sum());
    }

    // ------------------------------------------------------------ API

    /// Handles `first` and the calls already waiting behind it (up to [`CALLS_PER_COMMIT_MAX`]) in
    /// one store transaction, then answers them: every answer goes out after the commit, so an
    /// accepted start is on disk before its client hears of it, at one WAL commit per group
    /// rather than several per call.
    fn on_calls(&mut self, first: ApiCall, calls: &mut mpsc::Receiver<ApiCall>) {
        let in_transaction = match self.store.begin() {
            Ok(()) => true,
            Err(e) => {
                log!("store: cannot open a transaction ({e}); writing call by call");
                false
            }
        };
        let mut answers = vec![self.on_call(first)];
        while answers.len() < CALLS_PER_COMMIT_MAX {
            match calls.try_recv() {
                Ok(call) => answers.push(self.on_call(call)),
                Err(_) => break,
            }
        }
        let failed = match in_transaction.then(|| self.store.commit()) {
            Some(Err(e)) => {
                log!("store: commit failed: {e}");
                self.store.rollback();
                Some(e.to_string())
            }
            _ => None,
        };
        for answer in answers {
            answer(failed.as_ref().map(|e| ApiError::Unavailable(format!("not persisted: {e}"))));
        }
    }

    /// Handles one call; its answer is returned, to be sent once the store has committed.
    fn on_call(&mut self, call: ApiCall) -> Pending {
        match call {
            ApiCall::Start { server, body, answer } => {
                let r = self.api_start(&server, body);
                pending(answer, r)
            }
            ApiCall::Stop { server, answer } => {
                let r = self.api_stop(&server);
                pending(answer, r)
            }
            ApiCall::Server { server, answer } => {
                let r = self.known(&server).and_then(|id| self.info(id, &server));
                pending(answer, r)
            }
            ApiCall::Delete { server, answer } => {
                let r = self.known_or_archived(&server).and_then(|id| {
                    match self.feed(Input::DeleteServer { server: id }) {
                        Reply::Ok => {
                            if self.opts.dry_run {
                                self.dry_run_decision(format!("delete the world archive of {server}"));
                            } else if let Some(root) = &self.cfg.archive.dir {
                                // `server` passed `known()`'s name check: one plain path component.
                                let dir = root.join(&server);
                                if let Err(e) = std::fs::remove_dir_all(&dir) {
                                    if e.kind() != std::io::ErrorKind::NotFound {
                                        log!("archive: cannot remove {}: {e}", dir.display());
                                    }
                                }
                            }
                            let _ = self.store.delete_server(id);
                            for rt in self.nodes.values_mut() {
                                rt.used_ports.remove(&id);
                            }
                            Ok(())
                        }
                        Reply::Refused(m) => {
                            Err(ApiError::Conflict { message: m.to_string(), server: self.info(id, &server).ok() })
                        }
                        other => Err(ApiError::Conflict { message: format!("{other:?}"), server: None }),
                    }
                });
                pending(answer, r)
            }
            ApiCall::Fleet { answer } => pending(answer, Ok(self.fleet_info())),
            ApiCall::Nodes { answer } => pending(answer, Ok(self.node_infos())),
            ApiCall::Queue { answer } => {
                let now = self.now();
                let entries: Vec<(ServerId, u32, Plan, Millis)> =
                    self.engine.queue().iter().map(|e| (e.server, e.ram_mb, e.plan, e.queued_at)).collect();
                let out = entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, (id, ram_mb, plan, at))| QueueEntry {
                        server: self.name_of(id),
                        position: i + 1,
                        ram_mb,
                        plan,
                        waited_s: now.since(at) / 1000,
                    })
                    .collect();
                pending(answer, Ok(out))
            }
            ApiCall::Decisions { answer } => pending(answer, Ok(self.decisions.iter().cloned().collect())),
            ApiCall::AddNode { node, answer } => {
                let r = self.api_add_node(node);
                pending(answer, r)
            }
            ApiCall::RemoveNode { node, answer } => {
                let r = self.node_id(&node).and_then(|id| match self.feed(Input::RemoveNode { node: id }) {
                    Reply::Ok => Ok(()),
                    Reply::Refused(m) => Err(ApiError::Conflict { message: m.to_string(), server: None }),
                    other => Err(ApiError::Conflict { message: format!("{other:?}"), server: None }),
                });
                pending(answer, r)
            }
            ApiCall::DrainNode { node, answer } => {
                let r = self.node_id(&node).and_then(|id| match self.feed(Input::DrainNode { node: id }) {
                    Reply::Ok => Ok(()),
                    Reply::Refused(m) => Err(ApiError::Conflict { message: m.to_string(), server: None }),
                    other => Err(ApiError::Conflict { message: format!("{other:?}"), server: None }),
                });
                pending(answer, r)
            }
            ApiCall::SetScaling { enabled, answer } => {
                self.feed(Input::SetScaling { enabled });
                pending(answer, Ok(()))
            }
        }
    }

    fn known(&mut self, name: &str) -> Result<ServerId, ApiError> {
        if !valid_name(name) {
            return Err(ApiError::BadRequest(format!("server id {name:?} must be [a-z0-9-], 1-63 characters")));
        }
        let id = self.store.find_server(name).map_err(|e| ApiError::Unavailable(e.to_string()))?;
        match id {
            Some(id) if self.engine.server_status(id).is_some() => Ok(id),
            _ => Err(ApiError::NotFound(format!("no server {name:?}"))),
        }
    }

    /// `known`, or a stopped server the engine no longer tracks because its world is only
    /// in the archive (it can still be deleted).
    fn known_or_archived(&mut self, name: &str) -> Result<ServerId, ApiError> {
        match self.known(name) {
            Err(ApiError::NotFound(m)) => match self.store.find_server(name) {
                Ok(Some(id)) if self.engine.is_archived(id) => Ok(id),
                _ => Err(ApiError::NotFound(m)),
            },
            other => other,
        }
    }

    fn node_id(&self, name: &str) -> Result<NodeId, ApiError> {
        if !valid_name(name) {
            return Err(ApiError::BadRequest(format!("node id {name:?} must be [a-z0-9-], 1-63 characters")));
        }
        self.by_name.get(name).copied().ok_or_else(|| ApiError::NotFound(format!("no node {name:?}")))
    }

    fn info(&mut self, id: ServerId, name: &str) -> Result<ServerInfo, ApiError> {
        let status = self.engine.server_status(id).ok_or_else(|| ApiError::NotFound(format!("no server {name:?}")))?;
        let row = self.store.server(id).ok().flatten();
        let (ram_mb, plan) = row.map_or((0, Plan::PayPerPlay), |r| (r.ram_mb, r.plan));
        let (state, node, position) = match status {
            ServerStatus::Queued { position } => ("queued", None, Some(position)),
            ServerStatus::Starting { node } => ("starting", Some(node), None),
            ServerStatus::Running { node } => ("running", Some(node), None),
            ServerStatus::Stopping { node } => ("stopping", Some(node), None),
            ServerStatus::Lost { node } => ("lost", Some(node), None),
            ServerStatus::Stopped { .. } => ("stopped", None, None),
        };
        let join_address = node.and_then(|n| {
            let rt = self.nodes.get(&n)?;
            rt.used_ports.get(&id).map(|p| format!("{}:{p}", rt.public_host))
        });
        Ok(ServerInfo {
            server: name.to_string(),
            state: state.to_string(),
            ram_mb,
            plan,
            node: node.map(|n| self.node_name(n)),
            position,
            join_address,
            players: self.players.get(&id).copied(),
        })
    }

    fn api_start(&mut self, name: &str, body: StartBody) -> Result<StartOutcome, ApiError> {
        if !valid_name(name) {
            return Err(ApiError::BadRequest(format!("server id {name:?} must be [a-z0-9-], 1-63 characters")));
        }
        if body.ram_mb == 0 {
            return Err(ApiError::BadRequest("ram_mb: must be above 0".into()));
        }
        let user_name = body.user.clone().unwrap_or_else(|| name.to_string());
        if user_name.is_empty() || user_name.len() > 128 || user_name.chars().any(char::is_control) {
            return Err(ApiError::BadRequest("user: 1-128 printable characters".into()));
        }
        let id = self.server_id(name)?;
        if let Some(s) = self.engine.server_status(id) {
            if !matches!(s, ServerStatus::Stopped { .. }) {
                let info = self.info(id, name).ok();
                return Err(ApiError::Conflict {
                    message: format!("server {name:?} is already {}", state_word(&s)),
                    server: info,
                });
            }
        }
        let user = self.store.user_id(&user_name).map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let now = self.now();
        let reply = self.feed(Input::StartRequested { server: id, ram_mb: body.ram_mb, plan: body.plan, user });
        let accepted = |s: &Store, state: &str| s.requested(id, body.ram_mb, body.plan, user, state, now.0);
        match reply {
            Reply::Start(StartReply::Placed { node }) => {
                accepted(&self.store, "placed").map_err(|e| ApiError::Unavailable(e.to_string()))?;
                Ok(StartOutcome {
                    server: name.into(),
                    state: "started".into(),
                    node: Some(self.node_name(node)),
                    position: None,
                })
            }
            Reply::Start(StartReply::Queued { position }) => {
                accepted(&self.store, "queued").map_err(|e| ApiError::Unavailable(e.to_string()))?;
                Ok(StartOutcome { server: name.into(), state: "queued".into(), node: None, position: Some(position) })
            }
            Reply::Start(StartReply::Failed(reason)) => Err(ApiError::BadRequest(reason.to_string())),
            // A full queue is the service's limit (503, try later); the others are the request's.
            Reply::Start(StartReply::Rejected(Rejection::QueueFull { len_max })) => Err(ApiError::Unavailable(
                format!("the start queue is full ({len_max} starts waiting, queue.len_max); try again later"),
            )),
            Reply::Start(StartReply::Rejected(Rejection::UserQueueFull { per_user_max })) => {
                Err(ApiError::BadRequest(format!("user: already {per_user_max} starts queued (queue.per_user_max)")))
            }
            Reply::Start(StartReply::Rejected(Rejection::InvalidRam)) => {
                Err(ApiError::BadRequest("ram_mb: must be above 0".into()))
            }
            Reply::Start(_) => {
                let info = self.info(id, name).ok();
                Err(ApiError::Conflict { message: format!("server {name:?} is busy"), server: info })
            }
            other => Err(ApiError::Unavailable(format!("unexpected engine reply {other:?}"))),
        }
    }

    fn api_stop(&mut self, name: &str) -> Result<StopOutcome, ApiError> {
        let id = self.known(name)?;
        let state = match self.feed(Input::StopRequested { server: id }) {
            Reply::Stop(StopReply::Cancelled) => "cancelled",
            Reply::Stop(StopReply::Stopping) => "stopping",
            Reply::Stop(StopReply::AlreadyStopping) => "already_stopping",
            Reply::Stop(StopReply::NotRunning) => {
                let info = self.info(id, name).ok();
                return Err(ApiError::Conflict { message: format!("server {name:?} is not running"), server: info });
            }
            _ => return Err(ApiError::NotFound(format!("no server {name:?}"))),
        };
        Ok(StopOutcome { server: name.into(), state: state.into() })
    }

    fn api_add_node(&mut self, n: NewNode) -> Result<NodeInfo, ApiError> {
        if !valid_name(&n.node) {
            return Err(ApiError::BadRequest(format!("node: {:?} must be [a-z0-9-], 1-63 characters", n.node)));
        }
        if self.by_name.contains_key(&n.node) {
            return Err(ApiError::Conflict { message: format!("node {:?} exists", n.node), server: None });
        }
        if !valid_host(&n.address) {
            return Err(ApiError::BadRequest(format!("address: {:?} is not a host name or IP address", n.address)));
        }
        if n.ram_mb == 0 {
            return Err(ApiError::BadRequest("ram_mb: must be above 0".into()));
        }
        let ports = match &n.ports {
            Some(p) => PortRange::parse(p).map_err(|e| ApiError::BadRequest(format!("ports: {e}")))?,
            None => self.default_ports(),
        };
        let stored = StoredNode {
            name: n.node.clone(),
            kind: NodeKind::Dedicated,
            address: n.address.clone(),
            ssh_port: n.ssh_port,
            ram_mb: n.ram_mb,
            system: n.system,
            ports: n.ports.clone(),
            server_type: None,
            provider_id: None,
            hourly_eur: 0.0,
        };
        self.store
            .put_node(&n.node, &serde_json::to_string(&stored).expect("serializes"))
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        self.register_stored(stored, ports);
        Ok(self.node_infos().into_iter().find(|i| i.node == n.node).expect("just registered"))
    }

    fn register_stored(&mut self, s: StoredNode, ports: PortRange) -> NodeId {
        let endpoint = (!s.address.is_empty()).then(|| self.ssh_endpoint(&s.address, s.ssh_port));
        let public_host = if s.address == "local" { "127.0.0.1".into() } else { s.address.clone() };
        self.register(
            NodeSpec {
                name: s.name.clone(),
                address: s.address.clone(),
                kind: s.kind,
                system: s.system,
                total_ram_mb: s.ram_mb,
                cores: 0,
                hourly_eur: s.hourly_eur,
                labels: Default::default(),
                provider_id: s.provider_id.clone(),
                server_type: s.server_type.clone(),
            },
            endpoint,
            ports,
            public_host,
        )
    }

    fn fleet_info(&self) -> FleetInfo {
        let reserve = self.engine.fleet().reserve();
        let mut f = FleetInfo {
            nodes: 0,
            healthy_nodes: 0,
            total_ram_mb: 0,
            usable_ram_mb: 0,
            allocated_ram_mb: 0,
            queue_length: self.engine.queue().len(),
            running_servers: 0,
            scaling_enabled: self.engine.scaling_enabled(),
        };
        for n in self.engine.fleet().iter() {
            f.nodes += 1;
            f.healthy_nodes += usize::from(n.health == Health::Healthy);
            f.total_ram_mb += u64::from(n.total_ram_mb);
            if !n.system {
                f.usable_ram_mb += n.usable_mb(reserve);
                f.allocated_ram_mb += n.allocated_mb();
            }
            f.running_servers += n.containers() as usize;
        }
        f
    }

    fn node_infos(&self) -> Vec<NodeInfo> {
        let reserve = self.engine.fleet().reserve();
        self.engine
            .fleet()
            .iter()
            .map(|n| NodeInfo {
                node: n.name.clone(),
                kind: kind_str(n.kind).into(),
                system: n.system,
                address: n.address.clone(),
                health: format!("{:?}", n.health).to_lowercase(),
                lifecycle: match n.lifecycle {
                    Lifecycle::AwaitingProvision => "awaiting_provision",
                    Lifecycle::Active => "active",
                    Lifecycle::Draining => "draining",
                }
                .into(),
                ram_mb: n.total_ram_mb,
                usable_mb: if n.system { 0 } else { usable_mb(n.total_ram_mb, n.containers(), reserve) },
                allocated_mb: n.allocated_mb(),
                containers: n.containers(),
            })
            .collect()
    }

    // ------------------------------------------------------------ players

    fn poll_players(&mut self) {
        let timeout = Duration::from_secs(self.cfg.players.timeout_s.max(1));
        let mut targets = Vec::new();
        for (&node, rt) in &self.nodes {
            for (&server, &port) in &rt.used_ports {
                if matches!(self.engine.server_status(server), Some(ServerStatus::Running { node: n }) if n == node) {
                    let host = if rt.public_host == "local" { "127.0.0.1" } else { rt.public_host.as_str() };
                    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                        targets.push((server, SocketAddr::new(ip, port)));
                    }
                }
            }
        }
        if targets.is_empty() {
            return;
        }
        self.spawn(async move {
            let pings = targets.into_iter().map(|(server, addr)| async move {
                match crate::slp::ping(addr, timeout).await {
                    Ok(s) => Some(Done::Input(Input::Players { server, count: s.online })),
                    Err(_) => None,
                }
            });
            futures_util::future::join_all(pings).await.into_iter().flatten().collect()
        });
    }
}

/// Runs an adapter call as its own task. A panic inside becomes an adapter error (logged
/// and counted), never a dead driver; the command's answer is then missing, which the
/// engine treats like a lost report: its timeouts retry or give up (a start is stopped and
/// the stop's answer says where the world is), never assuming an outcome it cannot know.
async fn guarded<F, P>(fut: F, on_panic: P) -> Vec<Done>
where
    F: std::future::Future<Output = Vec<Done>> + Send + 'static,
    P: FnOnce() -> Vec<Done>,
{
    match tokio::spawn(fut).await {
        Ok(out) => out,
        Err(e) => {
            let mut out =
                vec![Done::AdapterError { adapter: "driver", op: "task", message: format!("task failed: {e}") }];
            out.extend(on_panic());
            out
        }
    }
}

/// A timer ticking every `secs` (`0`: never), first at once or one period from now.
fn every(secs: u64, first_after_a_period: bool) -> tokio::time::Interval {
    let period = Duration::from_secs(if secs == 0 { u64::MAX / 4_000 } else { secs });
    let first = tokio::time::Instant::now() + if first_after_a_period { period } else { Duration::ZERO };
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Whether a Docker start error says the host port is held by something else.
fn port_taken(error: &str) -> bool {
    error.contains("port is already allocated") || error.contains("address already in use")
}

/// Replaces the server's volume on `target` with its newest archive.
async fn restore_world(
    target: &Target,
    root: Option<&Path>,
    server: &str,
    image: &str,
    limit: Duration,
    timeout: Duration,
) -> Result<(), String> {
    let root = root.ok_or("no archive store configured (archive.dir)")?;
    let dir = root.join(server);
    let file = newest_archive(&dir).ok_or_else(|| format!("no archive in {}", dir.display()))?;
    let worlds = target.worlds(image, limit, timeout).await?;
    worlds.import(server, &file).await.map_err(|e| e.to_string())
}

/// Copies the server's volume from `src` to `dst` through a temporary tar on this host
/// (in the archive folder when there is one). The source copy is left in place.
async fn copy_world(
    src: &Target,
    dst: &Target,
    root: Option<&Path>,
    server: &str,
    image: &str,
    limit: Duration,
    timeout: Duration,
) -> Result<(), String> {
    let spool = match root {
        Some(r) => {
            std::fs::create_dir_all(r).map_err(|e| format!("{}: {e}", r.display()))?;
            tempfile::Builder::new().prefix(".move-").tempdir_in(r)
        }
        None => tempfile::Builder::new().prefix("conductor-move-").tempdir(),
    }
    .map_err(|e| format!("temporary folder for the move: {e}"))?;
    let tar = spool.path().join("world.tar");
    let from = src.worlds(image, limit, timeout).await.map_err(|e| format!("source {}: {e}", src.name))?;
    from.export(server, &tar).await.map_err(|e| format!("copy from {}: {e}", src.name))?;
    let to = dst.worlds(image, limit, timeout).await?;
    to.import(server, &tar).await.map_err(|e| format!("copy to {}: {e}", dst.name))
}

/// A node's containers and the servers with a world volume there (for recovery).
async fn list_all(d: &DockerNode) -> Result<(Vec<ContainerInfo>, Vec<String>), crate::docker::DockerError> {
    let containers = d.list().await?;
    let worlds = d.list_worlds().await?;
    Ok((containers, worlds))
}

type BoxFut<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, crate::docker::DockerError>> + Send + 'a>>;

/// Run `f` on the node's Docker connection, connecting first if needed; a failed call
/// drops the connection so that the next one reconnects.
async fn with_conn<T>(
    conn: &Mutex<Option<DockerNode>>,
    name: &str,
    endpoint: Option<&Endpoint>,
    timeout: Duration,
    f: impl for<'a> FnOnce(&'a DockerNode) -> BoxFut<'a, T>,
) -> Result<T, String> {
    let Some(endpoint) = endpoint else { return Err("node has no address yet".into()) };
    let mut guard = conn.lock().await;
    if guard.is_none() {
        let node = tokio::time::timeout(timeout, DockerNode::connect(name, endpoint, timeout))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        *guard = Some(node);
    }
    let res = tokio::time::timeout(timeout, f(guard.as_ref().expect("connected"))).await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            *guard = None;
            Err(e.to_string())
        }
        Err(_) => {
            *guard = None;
            Err("timed out".into())
        }
    }
}

fn kind_str(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Dedicated => "dedicated",
        NodeKind::Cloud => "cloud",
    }
}

fn state_word(s: &ServerStatus) -> &'static str {
    match s {
        ServerStatus::Queued { .. } => "queued",
        ServerStatus::Starting { .. } => "starting",
        ServerStatus::Running { .. } => "running",
        ServerStatus::Stopping { .. } => "stopping",
        ServerStatus::Lost { .. } => "lost",
        ServerStatus::Stopped { .. } => "stopped",
    }
}

/// `conductor run`: serve the API, recover, then drive the engine until SIGTERM/SIGINT.
pub async fn run(cfg: LiveConfig, opts: RunOptions) -> Result<(), String> {
    // SIGTERM is honoured from the first moment: before the API is served, and during recovery.
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    let token = read_secret("CONDUCTOR_API_TOKEN", cfg.api.token_file.as_deref())?.ok_or_else(|| {
        "no API token: set CONDUCTOR_API_TOKEN (or api.token_file in the config); refusing to serve an open API"
            .to_string()
    })?;
    let hetzner = if cfg.hetzner.enabled {
        let t = read_secret("HCLOUD_TOKEN", cfg.hetzner.token_file.as_deref())?
            .ok_or_else(|| "hetzner.enabled but no token: set HCLOUD_TOKEN (or hetzner.token_file)".to_string())?;
        Some(Arc::new(HetznerClient::new(&cfg.hetzner.api_url, t).with_location(&cfg.hetzner.location)))
    } else {
        None
    };
    // A dry run works on a private copy of the store: it must not leave requests behind
    // that a real run would recover and start.
    let reaped = crate::docker::reap_stale_ssh_masters();
    if reaped > 0 {
        log!("ended the SSH masters of {reaped} connection(s) left by conductor processes that are gone");
    }
    let store = if opts.dry_run {
        Store::open_copy(&cfg.database.path)
    } else {
        Store::open_with_checkpointer(&cfg.database.path, Duration::from_secs(1))
    }
    .map_err(|e| format!("{}: {e}", cfg.database.path.display()))?;
    let listen = opts.listen.clone().unwrap_or_else(|| cfg.api.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let (call_tx, mut call_rx) = mpsc::channel::<ApiCall>(4096);
    let (events, _) = broadcast::channel::<String>(1024);
    let metrics = Arc::new(Metrics::new());
    let state = crate::api::ApiState {
        calls: call_tx,
        events: events.clone(),
        metrics: metrics.clone(),
        token: Arc::new(token),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|s| *s).await;
        };
        axum::serve(listener, crate::api::router(state)).with_graceful_shutdown(shutdown).await
    });
    log!("listening on http://{addr}{}", if opts.dry_run { " (dry run: no mutating call is executed)" } else { "" });

    let now = unix_ms();
    let engine = Conductor::new(cfg.conductor.clone(), Millis(now)).map_err(|e| format!("conductor.{e}"))?;
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut d = Driver {
        cfg,
        opts,
        engine,
        store,
        nodes: BTreeMap::new(),
        by_name: BTreeMap::new(),
        hetzner,
        done_tx,
        done_rx,
        events,
        metrics,
        decisions: VecDeque::new(),
        players: BTreeMap::new(),
        names: BTreeMap::new(),
        in_flight: 0,
        last_now: now,
        world_tail: BTreeMap::new(),
        unadoptable: BTreeSet::new(),
        hetzner_reconciled: false,
        kept_names: Vec::new(),
    };
    // Recovery can be abandoned at its awaits (listing Hetzner and the nodes): what it wrote by
    // then (registered nodes, the registry) is consistent, and the engine has not yet seen the
    // snapshot, so no request is answered by it (see the shutdown below).
    let recovered = tokio::select! {
        _ = d.recover() => true,
        _ = term.recv() => false,
        _ = tokio::signal::ctrl_c() => false,
    };

    // Player counts from the start on; the first orphan sweep one period after it.
    let mut players_tick = every(d.cfg.players.interval_s, false);
    let mut sweep_tick = every(d.cfg.hetzner.orphan_sweep_s, true);
    while recovered {
        let wait = d
            .engine
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| Duration::from_millis(t.0.saturating_sub(unix_ms())));
        tokio::select! {
            _ = tokio::time::sleep(wait) => d.tick(),
            Some(call) = call_rx.recv() => d.on_calls(call, &mut call_rx),
            Some(done) = d.done_rx.recv() => d.on_done(done),
            _ = players_tick.tick() => d.poll_players(),
            _ = sweep_tick.tick() => d.sweep_orphans(),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    log!("shutting down: no new requests; finishing {} call(s) in flight", d.in_flight);
    let _ = stop_tx.send(true);
    call_rx.close();
    // Answer what the API had already accepted into the channel, once the engine holds the
    // recovered state; before that, the calls are dropped unanswered (the API says 503).
    if recovered {
        if let Ok(call) = call_rx.try_recv() {
            d.on_calls(call, &mut call_rx);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while d.in_flight > 0 {
        match tokio::time::timeout_at(deadline, d.done_rx.recv()).await {
            Ok(Some(done)) => d.on_done(done),
            _ => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    log!("stopped; running servers keep running");
    Ok(())
}

impl Driver {
    /// Servers with a world in the archive store (a folder named after a known server,
    /// holding at least one archive).
    fn archived_servers(&mut self) -> Vec<ServerId> {
        let Some(root) = self.cfg.archive.dir.clone() else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(&root) else { return Vec::new() };
        let mut out = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
            if !valid_name(&name) || newest_archive(&e.path()).is_none() {
                continue;
            }
            if let Ok(Some(id)) = self.store.find_server(&name) {
                self.names.insert(id, name);
                out.push(id);
            }
        }
        out.sort();
        out
    }

    /// Load the node registry and the queue, then reconcile with what Docker and
    /// Hetzner report. Nodes that do not answer within a few seconds are adopted later
    /// (their first successful probe lists them).
    async fn recover(&mut self) {
        for n in self.cfg.nodes.clone() {
            let ports =
                n.ports.as_deref().map_or_else(|| self.default_ports(), |p| PortRange::parse(p).expect("validated"));
            let public_host = n.public_host.clone().unwrap_or_else(|| {
                if n.address == "local" {
                    "127.0.0.1".into()
                } else {
                    n.address.clone()
                }
            });
            let mut endpoint = self.ssh_endpoint(&n.address, n.ssh_port);
            if let Endpoint::Ssh { user, key, .. } = &mut endpoint {
                if let Some(u) = &n.ssh_user {
                    user.clone_from(u);
                }
                if let Some(k) = &n.ssh_key {
                    key.clone_from(k);
                }
            }
            let endpoint = Some(endpoint);
            self.register(
                NodeSpec {
                    name: n.name.clone(),
                    address: n.address.clone(),
                    kind: NodeKind::Dedicated,
                    system: n.system,
                    total_ram_mb: n.ram_mb,
                    cores: n.cores,
                    hourly_eur: n.monthly_eur / 730.0,
                    labels: Default::default(),
                    provider_id: None,
                    server_type: None,
                },
                endpoint,
                ports,
                public_host,
            );
        }
        // Rented VMs Hetzner reports with our label, matched to the stored registry.
        let vms = match &self.hetzner {
            Some(h) => match tokio::time::timeout(Duration::from_secs(4), h.list_managed()).await {
                Ok(Ok(vms)) => {
                    // Another conductor's VMs (another `hetzner.instance`) are not ours to
                    // adopt; VMs from before the instance label are.
                    let ours = |v: &crate::hetzner::ServerState| {
                        v.labels.get(INSTANCE_LABEL).is_none_or(|i| *i == self.cfg.hetzner.instance)
                    };
                    Some(vms.into_iter().filter(ours).collect::<Vec<_>>())
                }
                Ok(Err(e)) => {
                    log!("hetzner: cannot list VMs at start: {e}");
                    None
                }
                Err(_) => {
                    log!("hetzner: listing VMs timed out at start");
                    None
                }
            },
            None => None,
        };
        self.hetzner_reconciled = vms.is_some();
        let stored: Vec<StoredNode> = self
            .store
            .nodes()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| serde_json::from_str(&r.spec).ok())
            .collect();
        for mut s in stored {
            if self.by_name.contains_key(&s.name) {
                continue;
            }
            if s.kind == NodeKind::Cloud {
                let vm = vms.as_ref().and_then(|v| v.iter().find(|vm| vm.name == s.name));
                match (vm, &vms) {
                    (Some(vm), _) => {
                        s.provider_id = Some(vm.id.to_string());
                        if let Some(ip) = vm.ipv4 {
                            s.address = ip.to_string();
                        }
                    }
                    // The VM is gone (or was never created): a placeholder that outlived
                    // its provisioning is dropped.
                    (None, Some(_)) => {
                        log!("node {}: no such VM any more; dropped", s.name);
                        let _ = self.store.remove_node(&s.name);
                        continue;
                    }
                    // Hetzner did not answer: the placeholder's VM may exist. It stays in
                    // the registry (the next start asks again) but is not a node now.
                    (None, None) if s.provider_id.is_none() => {
                        log!("node {}: placeholder kept until Hetzner can say whether its VM exists", s.name);
                        self.kept_names.push(s.name.clone());
                        continue;
                    }
                    (None, None) => {}
                }
            }
            let ports =
                s.ports.as_deref().and_then(|p| PortRange::parse(p).ok()).unwrap_or_else(|| self.default_ports());
            let _ = self.store.put_node(&s.name, &serde_json::to_string(&s).expect("serializes"));
            self.register_stored(s, ports);
        }
        for vm in vms.unwrap_or_default() {
            if !self.by_name.contains_key(&vm.name) {
                let s = StoredNode {
                    name: vm.name.clone(),
                    kind: NodeKind::Cloud,
                    address: vm.ipv4.map(|i| i.to_string()).unwrap_or_default(),
                    ssh_port: Some(self.cfg.hetzner.ssh_port),
                    ram_mb: self
                        .cfg
                        .conductor
                        .catalogue
                        .iter()
                        .find(|t| t.name == vm.server_type)
                        .map_or(0, |t| t.ram_mb),
                    system: false,
                    ports: None,
                    server_type: Some(vm.server_type.clone()),
                    provider_id: Some(vm.id.to_string()),
                    hourly_eur: self
                        .cfg
                        .conductor
                        .catalogue
                        .iter()
                        .find(|t| t.name == vm.server_type)
                        .map_or(0.0, |t| t.hourly_eur),
                };
                if s.ram_mb == 0 || !valid_name(&s.name) {
                    log!(
                        "hetzner: managed VM {} ({}, type {}) is not in the registry and cannot be adopted \
                         (its type is not in conductor.catalogue or its name is not valid); it is billed \
                         until deleted by hand",
                        vm.name,
                        vm.id,
                        vm.server_type
                    );
                    self.unadoptable.insert(vm.name.clone());
                } else {
                    log!(
                        "hetzner: managed VM {} ({}) is not in the registry; adopting it as a cloud node",
                        vm.name,
                        vm.id
                    );
                    let _ = self.store.put_node(&s.name, &serde_json::to_string(&s).expect("serializes"));
                    let ports = self.default_ports();
                    self.register_stored(s, ports);
                }
            }
        }
        // List every node's containers concurrently, a few seconds at most.
        let timeout = self.docker_timeout().min(Duration::from_secs(4));
        let lists = self.nodes.iter().map(|(&id, rt)| {
            let (conn, ep, name) = (rt.conn.clone(), rt.endpoint.clone(), rt.name.clone());
            async move { (id, with_conn(&conn, &name, ep.as_ref(), timeout, |d| Box::pin(list_all(d))).await) }
        });
        let listed = futures_util::future::join_all(lists).await;
        let mut containers = Vec::new();
        let mut worlds = Vec::new();
        let mut present: BTreeSet<String> = BTreeSet::new();
        let mut unreachable: BTreeMap<String, NodeId> = BTreeMap::new();
        for (node, res) in listed {
            match res {
                Ok((cs, ws)) => {
                    worlds.extend(self.world_records(node, &ws));
                    for c in &cs {
                        // A stopped container is a world left on the node, not a start:
                        // its server's queued request must still be requeued.
                        if c.running {
                            present.insert(c.server.clone());
                        }
                        if let (Some(p), Ok(id)) = (c.host_port, self.store.server_id(&c.server)) {
                            self.nodes.get_mut(&node).expect("listed").used_ports.insert(id, p);
                        }
                    }
                    containers.extend(self.records(node, &cs));
                    self.nodes.get_mut(&node).expect("listed").listed = true;
                }
                Err(e) => {
                    log!("node {}: not reachable at start ({e}); adopted when it answers", self.node_name(node));
                    unreachable.insert(self.node_name(node), node);
                }
            }
        }
        // A node that does not answer yet: the store's word stands until the node is listed.
        // A server stored running there is believed to run there, so that a new start request
        // never starts it a second time elsewhere (the node's listing, when it answers, says
        // whether it still runs); a stopped server whose current world is there waits for
        // that node rather than starting elsewhere with an empty world.
        let mut found: BTreeSet<ServerId> = containers.iter().map(|c| c.server).collect();
        found.extend(worlds.iter().filter(|w| w.current).map(|w| w.server));
        for r in self.store.servers().unwrap_or_default() {
            let Some(&node) = r.world_node.as_deref().and_then(|n| unreachable.get(n)) else { continue };
            if found.contains(&r.id) {
                continue;
            }
            self.names.insert(r.id, r.name.clone());
            if r.state == "running" {
                log!("{}: believed running on {} (not reachable yet)", r.name, self.node_name(node));
                present.insert(r.name.clone());
                containers.push(ContainerRecord {
                    server: r.id,
                    node,
                    ram_mb: r.ram_mb,
                    plan: r.plan,
                    user: r.user,
                    running: true,
                });
            } else if self.cfg.containers.data_volumes {
                log!("{}: its world is on {} (not reachable yet)", r.name, self.node_name(node));
                worlds.push(WorldRecord {
                    server: r.id,
                    node,
                    ram_mb: r.ram_mb,
                    plan: r.plan,
                    user: r.user,
                    current: true,
                });
            }
        }
        // Queued and placed requests that have no container: back in the queue at their
        // original request time.
        let queued: Vec<QueuedRecord> = self
            .store
            .servers()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| matches!(r.state.as_str(), "queued" | "placed") && !present.contains(&r.name))
            .map(|r| QueuedRecord {
                server: r.id,
                ram_mb: r.ram_mb,
                plan: r.plan,
                user: r.user,
                queued_at: Millis(r.requested_at.unwrap_or(self.last_now)),
            })
            .collect();
        log!(
            "recovered {} container(s), {} world(s) on nodes and {} queued request(s)",
            containers.len(),
            worlds.len(),
            queued.len()
        );
        // A start placed on a node that does not answer may have come up there: held on
        // that node until its listing says (its queued record above is the fallback).
        let mut starting = Vec::new();
        for r in self.store.servers().unwrap_or_default() {
            let Some(&node) = r.placed_node.as_deref().and_then(|n| unreachable.get(n)) else { continue };
            if r.state == "placed" && !found.contains(&r.id) && !present.contains(&r.name) {
                log!("{}: its start on {} may have come up (not reachable yet)", r.name, self.node_name(node));
                self.names.insert(r.id, r.name.clone());
                let (ram_mb, plan, user) = (r.ram_mb, r.plan, r.user);
                starting.push(ContainerRecord { server: r.id, node, ram_mb, plan, user, running: false });
            }
        }
        let mut queued = queued;
        queued.sort_by_key(|q| (q.queued_at, q.server));
        let archived = self.archived_servers();
        // Names a new VM must not take: kept placeholders, VMs that could not be adopted.
        let names_in_use =
            std::mem::take(&mut self.kept_names).into_iter().chain(self.unadoptable.iter().cloned()).collect();
        self.feed(Input::Recover(Snapshot { containers, queued, archived, worlds, starting, names_in_use }));
        self.tick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[tokio::test]
    async fn a_panicking_adapter_call_becomes_an_adapter_error_and_its_failure_input() {
        let failure = Done::Input(Input::ProvisionFailed { node: NodeId(3), reason: "panicked".into() });
        let out = guarded(async { panic!("adapter exploded") }, move || vec![failure]).await;
        assert_eq!(out.len(), 2);
        match &out[0] {
            Done::AdapterError { adapter: "driver", op: "task", message } => {
                assert!(message.contains("panicked"), "{message}")
            }
            _ => panic!("expected an adapter error"),
        }
        assert!(matches!(&out[1], Done::Input(Input::ProvisionFailed { node: NodeId(3), .. })), "the engine is told");
        let ok = guarded(async { vec![Done::ProbeFailed { node: NodeId(1), message: "x".into() }] }, Vec::new).await;
        assert!(matches!(ok.as_slice(), [Done::ProbeFailed { .. }]));
    }

    fn archive(dir: &Path, name: &str, age_s: u64) -> PathBuf {
        let p = dir.join(name);
        let f = std::fs::File::create(&p).expect("create (test setup)");
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s)).expect("set mtime (test setup)");
        p
    }

    #[test]
    fn the_newest_archive_is_the_last_modified_and_pruning_keeps_two() {
        let dir = tempfile::tempdir().expect("temp dir (test setup)");
        assert_eq!(newest_archive(dir.path()), None);
        assert_eq!(newest_archive(&dir.path().join("missing")), None);
        // Generation 9 from before a restart is older than generation 2 written after it.
        let old = archive(dir.path(), "9.tar", 300);
        let older = archive(dir.path(), "7.tar", 400);
        let new = archive(dir.path(), "2.tar", 10);
        archive(dir.path(), ".3.tar.part", 0);
        archive(dir.path(), "notes.txt", 0);
        assert_eq!(newest_archive(dir.path()), Some(new.clone()));
        prune_archives(dir.path(), &new);
        assert_eq!(archives_in(dir.path()), vec![old, new.clone()], "the newest two are kept");
        assert!(!older.exists());
        assert!(dir.path().join("notes.txt").exists() && dir.path().join(".3.tar.part").exists(), "only archives");
        // The one just written is never pruned, even with an old clock.
        let just_written = archive(dir.path(), "3.tar", 1000);
        prune_archives(dir.path(), &just_written);
        assert!(just_written.exists());
        assert_eq!(newest_archive(dir.path()), Some(new));
    }
}
