//! The engine's face: inputs in, commands (and published events) out.

use crate::model::{NodeId, NodeKind, Plan, ServerId, UserId, WorldAction};
use crate::node::{Health, NodeSpec};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Everything that can happen to the engine, apart from time passing. Drivers journal
/// these (with their `now`) so that a live day can be replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    StartRequested {
        server: ServerId,
        ram_mb: u32,
        plan: Plan,
        user: UserId,
    },
    StopRequested {
        server: ServerId,
    },
    ContainerStarted {
        server: ServerId,
        node: NodeId,
    },
    /// A start failed, or a stop found no container of the server on the node (it never
    /// ran there, so no newer world was written there).
    ContainerFailed {
        server: ServerId,
        node: NodeId,
        reason: String,
    },
    /// The container is gone (stopped on request, or crashed). For a stop: a container of
    /// the server existed on the node (running or exited), so it ran there.
    ContainerExited {
        server: ServerId,
        node: NodeId,
    },
    NodeRegistered(NodeSpec),
    NodeProvisioned {
        node: NodeId,
        provider_id: String,
        address: String,
    },
    ProvisionFailed {
        node: NodeId,
        reason: String,
    },
    /// The result of probing one node: one attempt.
    HealthProbe {
        node: NodeId,
        ok: bool,
    },
    /// The results of one `ProbeHealth` command (or part of it), one attempt per node:
    /// a driver probes a round's nodes concurrently and reports them together.
    HealthProbes {
        results: Vec<(NodeId, bool)>,
    },
    NodeDeleted {
        node: NodeId,
    },
    NodeCpu {
        node: NodeId,
        percent: f32,
    },
    Players {
        server: ServerId,
        count: u32,
    },
    /// The archive of world copy `generation` is complete.
    WorldArchived {
        server: ServerId,
        generation: u64,
    },
    /// The answer to `ListContainers`: the servers with a container on the node.
    NodeContainers {
        node: NodeId,
        servers: Vec<ServerId>,
    },
    /// An operator declares a lost server's container dead, so it may start elsewhere.
    ReleaseLost {
        server: ServerId,
    },
    /// An operator drains a node: nothing new is placed on it; a drained cloud node is
    /// returned once it is empty, a dedicated one waits for `RemoveNode`.
    DrainNode {
        node: NodeId,
    },
    /// An operator removes a dedicated host that holds no container and no world.
    RemoveNode {
        node: NodeId,
    },
    /// An operator pauses (false) or resumes (true) autoscaling.
    SetScaling {
        enabled: bool,
    },
    /// An operator deletes a stopped server and its world (`DeleteWorld` follows if a
    /// copy is on a node).
    DeleteServer {
        server: ServerId,
    },
    Recover(Snapshot),
}

/// The typed recovery snapshot: what exists in the world after a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub containers: Vec<ContainerRecord>,
    pub queued: Vec<QueuedRecord>,
    /// Servers whose world is in the archive: a restart restores them from there
    /// rather than starting them with an empty world.
    #[serde(default)]
    pub archived: Vec<ServerId>,
    /// World copies found on nodes (node-local storage): a stopped server's world lives
    /// there even without a container. See `WorldRecord` for which copy wins.
    #[serde(default)]
    pub worlds: Vec<WorldRecord>,
    /// Starts placed on a node that could not be listed at recovery: their container may
    /// or may not have come up there. Each is held on its node (RAM booked, like a start
    /// whose node was lost before it reported) until the node's listing says; the same
    /// server in `queued` is used only if the engine cannot hold it there. `running` is
    /// ignored.
    #[serde(default)]
    pub starting: Vec<ContainerRecord>,
    /// Names of VMs that exist (or may) but are no node: a placeholder whose VM the cloud
    /// could not confirm, a VM that could not be adopted. A new VM never gets one of them.
    #[serde(default)]
    pub names_in_use: Vec<String>,
}

/// A server's world copy found on a node at recovery (its data volume), with what the
/// engine needs to track the server. Which copy the engine takes, per server: the node of
/// a container record in the same recovery; else a `current` copy (lowest node id among
/// several); else, if the server is archived, none (the archive is the authority: the
/// copy may be an interrupted restore); else the lowest node id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldRecord {
    pub server: ServerId,
    pub node: NodeId,
    pub ram_mb: u32,
    pub plan: Plan,
    pub user: UserId,
    /// The driver knows this copy is the one the server last started from (its store
    /// recorded the start on this node, and no transfer has written into it since). An
    /// interrupted move leaves a non-current copy on the target next to the current source.
    #[serde(default)]
    pub current: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub server: ServerId,
    pub node: NodeId,
    pub ram_mb: u32,
    pub plan: Plan,
    pub user: UserId,
    /// A stopped container: its world is on the node (and a reserved plan keeps its RAM).
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuedRecord {
    pub server: ServerId,
    pub ram_mb: u32,
    pub plan: Plan,
    pub user: UserId,
    pub queued_at: Millis,
}

/// What the engine asks the driver to do. Each command is one attempt; the engine
/// keeps its own timeouts and tolerates late, duplicated and missing completions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    StartContainer {
        server: ServerId,
        node: NodeId,
        ram_mb: u32,
        plan: Plan,
        world: WorldAction,
    },
    StopContainer {
        server: ServerId,
        node: NodeId,
        reason: StopReason,
    },
    /// Buy a VM. The node is already registered as a placeholder under `name`.
    ProvisionNode {
        node: NodeId,
        name: String,
        server_type: String,
    },
    /// Return a VM. `provider_id` is `None` if the VM was never reported; the driver
    /// then deletes by name if one exists.
    DeleteNode {
        node: NodeId,
        name: String,
        provider_id: Option<String>,
    },
    /// Probe these nodes once each (one round: nodes due at the same time). Answer with
    /// `HealthProbes` (or one `HealthProbe` per node); a node not answered within
    /// `health.probe_timeout_s` counts as a failed attempt.
    ProbeHealth {
        nodes: Vec<NodeId>,
    },
    /// Archive the server's world. `generation` names this copy: a server that ran
    /// again since has a newer one, and a late report about the old copy is ignored.
    ArchiveWorld {
        server: ServerId,
        node: NodeId,
        generation: u64,
    },
    ListContainers {
        node: NodeId,
    },
    /// Delete the server's world copy on the node (after `DeleteServer`).
    DeleteWorld {
        server: ServerId,
        node: NodeId,
    },
    Publish(Event),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Requested,
    Idle,
    /// A container whose start the engine gave up on, or a second copy.
    Cleanup,
    /// Stopped at 0 players to move to another node (consolidation).
    Migrate,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// Waited `queue.timeout_s` without a placement that succeeded.
    QueueTimeout { waited_ms: u64 },
    /// Larger than any node in the fleet or catalogue could ever hold.
    TooLarge { ram_mb: u32, largest_mb: u64 },
    /// A placed start never reported within `reservation_timeout_s`.
    ReservationTimeout,
    /// Its node was lost before the start reported, and the container was not there.
    NodeLost,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::QueueTimeout { waited_ms } => {
                write!(f, "no capacity after {} s in the queue", waited_ms / 1000)
            }
            FailReason::TooLarge { ram_mb, largest_mb } => {
                write!(f, "{ram_mb} MB is larger than any node could hold ({largest_mb} MB usable)")
            }
            FailReason::ReservationTimeout => write!(f, "the container never reported after placement"),
            FailReason::NodeLost => write!(f, "its node was lost before the container reported"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    Requested,
    Idle,
    /// The container exited without being asked to.
    Crashed,
    /// Its node was lost and reconciliation found no container.
    NodeLost,
    /// Stopped to move to another node (consolidation).
    Migrate,
    /// Its start was not reported within `reservation_timeout_s`: stopped, whether it
    /// came up or not (the stop's answer tells where its world is).
    StartTimedOut,
}

/// What the engine publishes for operators, billing and the simulator's reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Queued {
        server: ServerId,
        position: usize,
    },
    Placed {
        server: ServerId,
        node: NodeId,
        waited_ms: u64,
        world: WorldAction,
    },
    Started {
        server: ServerId,
        node: NodeId,
    },
    StartAttemptFailed {
        server: ServerId,
        node: NodeId,
        reason: String,
    },
    StartFailed {
        server: ServerId,
        reason: FailReason,
    },
    Cancelled {
        server: ServerId,
    },
    Stopped {
        server: ServerId,
        node: NodeId,
        kind: ExitKind,
    },
    ServerLost {
        server: ServerId,
        node: NodeId,
    },
    Requeued {
        server: ServerId,
        node: NodeId,
    },
    NodeHealthChanged {
        node: NodeId,
        from: Health,
        to: Health,
    },
    ScaleUp {
        node: NodeId,
        server_type: String,
        policy: String,
        reason: String,
    },
    ScaleDown {
        node: NodeId,
        policy: String,
        reason: String,
    },
    NodeProvisioned {
        node: NodeId,
    },
    ProvisionFailed {
        node: NodeId,
        reason: String,
    },
    NodeFenced {
        node: NodeId,
    },
    NodeRemoved {
        node: NodeId,
        kind: NodeKind,
    },
    NodeDrained {
        node: NodeId,
    },
    ScalingSet {
        enabled: bool,
    },
    ServerDeleted {
        server: ServerId,
    },
    WorldArchived {
        server: ServerId,
        node: NodeId,
    },
    /// The server's current world is now the copy on `node` (node-local storage): a
    /// container ran there, reported or not. A driver that journals where worlds are
    /// follows this (and `WorldArchived`).
    WorldOn {
        server: ServerId,
        node: NodeId,
    },
    /// Consolidation cordoned `node` and stops its idle servers to move them.
    ConsolidationStarted {
        node: NodeId,
        policy: String,
        reason: String,
    },
    /// A server at 0 players is stopped to move from `from` to `to` (RAM booked there).
    MigrationStarted {
        server: ServerId,
        from: NodeId,
        to: NodeId,
    },
    /// It runs on `to` now.
    Migrated {
        server: ServerId,
        from: NodeId,
        to: NodeId,
    },
    /// It was not moved (players joined, a stop was requested, the target went away, or
    /// the start there failed).
    MigrationAborted {
        server: ServerId,
        from: NodeId,
        to: NodeId,
        reason: String,
    },
}

/// The synchronous answer to an input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Ok,
    Start(StartReply),
    Stop(StopReply),
    NodeRegistered(NodeId),
    /// The input referred to something the engine does not know or is in the wrong
    /// state for it (late or duplicated completions land here); nothing changed
    /// beyond a possible cleanup command.
    Ignored(&'static str),
    /// An operator request that the engine refuses in this state (nothing changed).
    Refused(&'static str),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StartReply {
    Placed {
        node: NodeId,
    },
    Queued {
        position: usize,
    },
    AlreadyQueued {
        position: usize,
    },
    AlreadyStarting {
        node: NodeId,
    },
    AlreadyRunning {
        node: NodeId,
    },
    /// Stopping, or lost with its node: ask again once it has stopped.
    Busy,
    Failed(FailReason),
    Rejected(Rejection),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Rejection {
    InvalidRam,
    QueueFull { len_max: u32 },
    UserQueueFull { per_user_max: u32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StopReply {
    Cancelled,
    Stopping,
    AlreadyStopping,
    NotRunning,
    Unknown,
}
