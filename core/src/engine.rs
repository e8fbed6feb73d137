//! [`Conductor`], the state machine. See the crate documentation for the call contract.

use crate::config::Config;
use crate::fleet::Fleet;
use crate::idmap::{IdMap, IdSet};
use crate::io::*;
use crate::log::DebugLog;
use crate::model::{NodeId, NodeKind, Plan, ServerId, Storage, UserId, WorldAction};
use crate::node::{Health, Lifecycle, NodeSpec};
use crate::policy::{self, Consolidate, Policy, ScalingContext, ServerInfo};
use crate::queue::{QueueEntry, StartQueue};
use crate::sorted::SortedSet;
use crate::time::Millis;
use crate::timers::{FifoTimers, Rounds, Ticket, TimerSet};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Stop commands are repeated this often until the container reports its exit.
const STOP_RETRY_MS: u64 = 2 * 60 * 1000;
/// Archive commands are repeated this often until the archive reports done.
const ARCHIVE_RETRY_MS: u64 = 30 * 60 * 1000;

/// The timers. Each has one deadline (the earliest of its kind); an early wake-up is
/// harmless because every handler re-checks what is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    StartupDelay,
    QueueTick,
    QueueDeadline,
    Scaling,
    Probe,
    ProbeTimeout,
    LostGrace,
    Reservation,
    StopRetry,
    IdleShutdown,
    Archive,
    Provision,
    Delete,
}

impl Timer {
    /// Every timer, in declaration order.
    pub const ALL: [Timer; 13] = [
        Timer::StartupDelay,
        Timer::QueueTick,
        Timer::QueueDeadline,
        Timer::Scaling,
        Timer::Probe,
        Timer::ProbeTimeout,
        Timer::LostGrace,
        Timer::Reservation,
        Timer::StopRetry,
        Timer::IdleShutdown,
        Timer::Archive,
        Timer::Provision,
        Timer::Delete,
    ];
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Queued,
    /// Placed; the start command is out and its RAM is booked (its start timeout is the
    /// server's `reservation`).
    AwaitingStart {
        node: NodeId,
    },
    Running {
        node: NodeId,
    },
    /// The stop command is out; RAM stays booked until the exit is reported.
    AwaitingExit {
        node: NodeId,
        kind: ExitKind,
    },
    /// Its node was unhealthy past the grace period; waits for the node or an operator.
    Lost {
        node: NodeId,
        /// It was still starting (its request not yet confirmed) when its node was lost.
        starting: bool,
    },
    Stopped,
}

#[derive(Clone, Debug)]
struct Server {
    ram_mb: u32,
    plan: Plan,
    user: UserId,
    state: State,
    /// The node this server's RAM is booked on; written only by `bind`/`unbind`.
    bound: Option<NodeId>,
    /// The node holding its un-archived world (node-local storage only). Set when a
    /// container has started there (after any copy), not at placement.
    world: Option<NodeId>,
    /// Which copy of the world that is: a fresh number each time the server starts.
    world_gen: u64,
    /// Queue identity kept through a placement, so a failed start keeps its place.
    seq: i64,
    queued_at: Millis,
    deadline: Millis,
    zero_players_since: Option<Millis>,
    archive_due: Option<Ticket>,
    /// Its entry in `reservations` (only while awaiting its start).
    reservation: Option<Ticket>,
    /// Its entry in `stop_retries` (only while awaiting its exit).
    stop_retry_at: Option<Ticket>,
    /// Requeue it once its exit is confirmed (a move whose start timed out: it was
    /// running and nobody asked it to stop).
    requeue_after_exit: bool,
    /// An archive of this world generation asked for at that time and not confirmed yet:
    /// if the node holding the world goes away meanwhile, the archive may still hold it,
    /// so a start waits for the report (up to the archive retry time) before it begins
    /// with a new world.
    archive_sent: Option<(u64, Millis)>,
}

impl Server {
    /// A server known from a recovery record: nothing booked, no world yet.
    fn recovered((ram_mb, plan, user): (u32, Plan, UserId), state: State, seq: i64, now: Millis) -> Server {
        Server {
            ram_mb,
            plan,
            user,
            state,
            bound: None,
            world: None,
            world_gen: 0,
            seq,
            queued_at: now,
            deadline: now,
            zero_players_since: None,
            archive_due: None,
            reservation: None,
            stop_retry_at: None,
            requeue_after_exit: false,
            archive_sent: None,
        }
    }
}

/// One node's health-probe state. A probe is either due (`due`) or outstanding (`out`),
/// never both.
#[derive(Clone, Copy, Debug, Default)]
struct ProbeState {
    due: Option<Millis>,
    /// When the outstanding probe was sent.
    out: Option<Millis>,
    /// Consecutive failed probes, below `health.failures_max`.
    failures: u32,
}

/// A server being moved by consolidation. While it stops (`starting == false`) its RAM
/// is booked twice: on `from` by the server, and on `to` by this hold, so that nothing
/// takes the room it is moving into. Once it has stopped, the hold becomes its booking
/// and it starts on `to` (`starting == true`) until its start is reported.
#[derive(Clone, Debug)]
struct Migration {
    from: NodeId,
    to: NodeId,
    ram_mb: u32,
    starting: bool,
    /// The hold on `to` is booked (it goes when `to` is deleted under it).
    held: bool,
    /// Why it must not move after all (players joined, the target went away).
    abort: Option<String>,
}

/// Counters over the engine's life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub placed: u64,
    pub started: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub scale_ups: u64,
    pub scale_downs: u64,
    /// Scale-ups refused because of `scaling.budget_eur_per_hour`.
    pub budget_refusals: u64,
    /// Scale-ups refused within `scaling.rebuy_cooldown_s` of a sale at the same demand.
    pub rebuy_refusals: u64,
    /// Nodes bought back within `scaling.rebuy_cooldown_s` of a sale (flaps): each VM of
    /// a scale-up counts while as many nodes were sold within the cooldown before it.
    pub rebuys: u64,
    /// Scale-downs and consolidations another policy vetoed.
    pub scale_down_vetoes: u64,
    /// Nodes cordoned for consolidation.
    pub consolidations: u64,
    /// Servers that now run on their migration's target.
    pub migrations: u64,
    /// Migrations that did not move their server.
    pub migrations_aborted: u64,
}

/// The fleet orchestration engine. Pure: no IO, no clock, no randomness.
///
/// # Contract
/// - Every call takes `now`; it must never go backwards (asserted).
/// - [`Conductor::handle`] feeds one [`Input`] and returns its synchronous [`Reply`].
/// - [`Conductor::handle_timeout`] tells the engine that time has passed; call it when
///   [`Conductor::poll_timeout`]'s deadline is reached (calling it early is harmless).
/// - After any `handle*` call, drain [`Conductor::poll_command`] until `None`, execute
///   each command (one attempt each) and feed its outcome back as an input later, then
///   ask `poll_timeout` again.
pub struct Conductor {
    cfg: Config,
    now: Millis,
    started_at: Millis,
    fleet: Fleet,
    queue: StartQueue,
    servers: IdMap<Server>,
    policies: Vec<Box<dyn Policy>>,
    out: VecDeque<Command>,
    log: DebugLog,
    counters: Counters,
    cloud_seq: u64,
    largest_holdable_mb: u64,
    last_scale_up: Option<Millis>,
    last_scale_down: Option<Millis>,
    /// Demand (allocated + queued RAM) at the last sale, for the rebuy check.
    demand_at_last_sale_mb: Option<u64>,
    /// Peak demand per minute over the last `scaling.rebuy_cooldown_s`, or over
    /// `scaling.flap_hold_max_s` when flaps are learned, oldest first (bounded by the
    /// minutes in that window).
    demand_peaks: VecDeque<(u64, u64)>,
    /// Peak demand per hour over the last `scaling.cap_history_s` and an hour, oldest
    /// first, and the first hour demand was recorded in: the history that type choice
    /// under the node maximum and the spare pool's trend look a season back into.
    hourly_peaks: VecDeque<(u64, u64)>,
    first_demand_hour: Option<u64>,
    /// The hold learned from the last flaps, in minutes (0: none), and when it last kept a
    /// node or was learned; it lapses `scaling.flap_memory_s` after that.
    flap_hold_min: u64,
    flap_hold_used: Millis,
    /// Sales within the rebuy cooldown not yet counted as flaps, one per node sold.
    recent_sales: VecDeque<Millis>,
    /// RAM and count of all start requests: their mean is the server size the
    /// no-flapping check packs the peak with.
    start_sizes: (u64, u64),
    /// Per catalogue type: not bought before this; and the next backoff if it fails again.
    type_backoff_until: Vec<Millis>,
    type_backoff_next_ms: Vec<u64>,
    /// When each type's current backoff began (`None`: never failed).
    type_backoff_since: Vec<Option<Millis>>,
    overcommitted: BTreeSet<NodeId>,
    /// Servers whose world has an archive copy. Kept after their record is dropped (it
    /// grows with customers, not with the trace), so a restart restores it.
    archived: IdSet,
    world_gen_next: u64,
    // Timers.
    startup_pending: bool,
    next_queue_tick: Millis,
    next_scaling: Millis,
    /// Health probing, per node (indexed by node id): when the next probe is due, when
    /// the outstanding one was sent, consecutive failures.
    probes: Vec<ProbeState>,
    /// The servers booked on each node (indexed by node id), in id order: kept by
    /// `bind`/`unbind`, so that reconciling a node does not scan every server.
    booked_on: Vec<SortedSet<ServerId>>,
    /// Nodes by the time their next probe is due: nodes that came up together are probed
    /// in one round per `health.interval_s`; a node that failed is retried on its own.
    probe_rounds: Rounds<NodeId>,
    /// Outstanding probes by the time they time out (sent + `health.probe_timeout_s`).
    probe_timeouts: Rounds<NodeId>,
    /// A reused buffer for `on_probes`.
    probe_scratch: Vec<NodeId>,
    /// Nodes an operator drained (cloud ones are returned once empty).
    operator_drained: BTreeSet<NodeId>,
    /// Autoscaling paused by an operator.
    scaling_paused: bool,
    grace: TimerSet<NodeId>,
    reservations: FifoTimers<ServerId>,
    stop_retries: FifoTimers<ServerId>,
    idle: TimerSet<ServerId>,
    archives: FifoTimers<ServerId>,
    provisions: TimerSet<NodeId>,
    deletes: TimerSet<NodeId>,
    queue_pass_wanted: bool,
    scaling_wanted: bool,
    /// The last time a node's health changed (consolidation waits for stability).
    last_health_change: Option<Millis>,
    /// Nodes cordoned (draining) for consolidation, until sold or given up.
    consolidating: BTreeSet<NodeId>,
    migrations: BTreeMap<ServerId, Migration>,
}

fn stop_reason(kind: ExitKind) -> StopReason {
    match kind {
        ExitKind::Idle => StopReason::Idle,
        ExitKind::Migrate => StopReason::Migrate,
        ExitKind::StartTimedOut | ExitKind::NodeLost => StopReason::Cleanup,
        _ => StopReason::Requested,
    }
}

fn s_to_ms(s: u64) -> u64 {
    s.saturating_mul(1000)
}

impl Conductor {
    /// A new engine started at `now`. The configuration is validated first.
    pub fn new(cfg: Config, now: Millis) -> Result<Conductor, crate::config::ConfigError> {
        cfg.validate()?;
        let policies = policy::build(&cfg);
        let largest = Self::catalogue_largest(&cfg);
        Ok(Conductor {
            fleet: Fleet::new(cfg.reserve.clone(), cfg.placement.strategy),
            queue: StartQueue::new(),
            servers: IdMap::new(),
            policies,
            out: VecDeque::new(),
            log: DebugLog::new(cfg.debug_log_len),
            counters: Counters::default(),
            cloud_seq: 0,
            largest_holdable_mb: largest,
            last_scale_up: None,
            last_scale_down: None,
            demand_at_last_sale_mb: None,
            demand_peaks: VecDeque::new(),
            hourly_peaks: VecDeque::new(),
            first_demand_hour: None,
            flap_hold_min: 0,
            flap_hold_used: Millis(0),
            recent_sales: VecDeque::new(),
            start_sizes: (0, 0),
            type_backoff_until: vec![Millis::ZERO; cfg.catalogue.len()],
            type_backoff_next_ms: vec![s_to_ms(cfg.scaling.type_backoff_s); cfg.catalogue.len()],
            type_backoff_since: vec![None; cfg.catalogue.len()],
            overcommitted: BTreeSet::new(),
            archived: IdSet::new(),
            world_gen_next: 1,
            startup_pending: true,
            next_queue_tick: now.plus(s_to_ms(cfg.queue_tick_s)),
            next_scaling: now.plus(s_to_ms(cfg.scaling.interval_s)),
            probes: Vec::new(),
            booked_on: Vec::new(),
            probe_rounds: Rounds::new(),
            probe_timeouts: Rounds::new(),
            probe_scratch: Vec::new(),
            operator_drained: BTreeSet::new(),
            scaling_paused: false,
            grace: TimerSet::new(),
            reservations: FifoTimers::new(),
            stop_retries: FifoTimers::new(),
            idle: TimerSet::new(),
            archives: FifoTimers::new(),
            provisions: TimerSet::new(),
            deletes: TimerSet::new(),
            queue_pass_wanted: false,
            scaling_wanted: false,
            last_health_change: None,
            consolidating: BTreeSet::new(),
            migrations: BTreeMap::new(),
            now,
            started_at: now,
            cfg,
        })
    }

    // ---------------------------------------------------------------- public face

    pub fn handle(&mut self, now: Millis, input: Input) -> Reply {
        self.advance(now);
        let reply = match input {
            Input::StartRequested { server, ram_mb, plan, user } => {
                Reply::Start(self.on_start(server, ram_mb, plan, user))
            }
            Input::StopRequested { server } => Reply::Stop(self.on_stop(server)),
            Input::ContainerStarted { server, node } => self.on_container_started(server, node),
            Input::ContainerFailed { server, node, reason } => self.on_container_failed(server, node, reason),
            Input::ContainerExited { server, node } => self.on_container_exited(server, node),
            Input::NodeRegistered(spec) => Reply::NodeRegistered(self.register(spec)),
            Input::NodeProvisioned { node, provider_id, address } => self.on_provisioned(node, provider_id, address),
            Input::ProvisionFailed { node, reason } => self.on_provision_failed(node, reason),
            Input::HealthProbe { node, ok } => self.on_probe(node, ok),
            Input::HealthProbes { results } => self.on_probes(results),
            Input::NodeDeleted { node } => self.on_node_deleted(node),
            Input::NodeCpu { node, percent } => match self.fleet.update(node, |n| n.cpu_percent = percent) {
                Some(()) => Reply::Ok,
                None => Reply::Ignored("unknown node"),
            },
            Input::Players { server, count } => self.on_players(server, count),
            Input::DrainNode { node } => self.on_drain_node(node),
            Input::RemoveNode { node } => self.on_remove_node(node),
            Input::SetScaling { enabled } => {
                self.scaling_paused = !enabled;
                self.log.add(self.now, "info", format!("autoscaling {}", if enabled { "resumed" } else { "paused" }));
                self.publish(Event::ScalingSet { enabled });
                Reply::Ok
            }
            Input::DeleteServer { server } => self.on_delete_server(server),
            Input::WorldArchived { server, generation } => self.on_world_archived(server, generation),
            Input::NodeContainers { node, servers } => self.on_node_containers(node, servers),
            Input::ReleaseLost { server } => self.on_release_lost(server),
            Input::Recover(snapshot) => self.on_recover(snapshot),
        };
        self.settle();
        reply
    }

    /// Let time pass: fire every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.advance(now);
        self.fire_timers();
        self.settle();
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// The earliest moment the engine wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Millis> {
        // Every timer keeps its earliest deadline in a field, so this is a few loads and
        // compares, straight-line (it runs once per simulator event); must agree with
        // `deadline` for every `Timer` (debug builds check at every call).
        let at = |d: Option<Millis>| d.map_or(u64::MAX, |m| m.0);
        let earliest = at(self.startup_pending.then(|| self.startup_end()))
            .min(self.next_queue_tick.0)
            .min(at(self.queue.next_deadline()))
            .min(at(self.cfg.scaling.enabled.then_some(self.next_scaling)))
            .min(at(self.probe_rounds.first()))
            .min(at(self.probe_timeouts.first()))
            .min(at(self.grace.first()))
            .min(at(self.reservations.first()))
            .min(at(self.stop_retries.first()))
            .min(at(self.idle.first()))
            .min(at(self.archives.first()))
            .min(at(self.provisions.first()))
            .min(at(self.deletes.first()));
        debug_assert_eq!(
            Some(Millis(earliest)),
            Timer::ALL.into_iter().filter_map(|t| self.deadline(t)).min(),
            "poll_timeout disagrees with the timers' deadlines"
        );
        // The queue tick is always set, so there is always a deadline.
        Some(Millis(earliest))
    }

    #[inline]
    pub fn deadline(&self, timer: Timer) -> Option<Millis> {
        match timer {
            Timer::StartupDelay => self.startup_pending.then(|| self.startup_end()),
            Timer::QueueTick => Some(self.next_queue_tick),
            Timer::QueueDeadline => self.queue.next_deadline(),
            Timer::Scaling => self.cfg.scaling.enabled.then_some(self.next_scaling),
            Timer::Probe => self.probe_rounds.first(),
            Timer::ProbeTimeout => self.probe_timeouts.first(),
            Timer::LostGrace => self.grace.first(),
            Timer::Reservation => self.reservations.first(),
            Timer::StopRetry => self.stop_retries.first(),
            Timer::IdleShutdown => self.idle.first(),
            Timer::Archive => self.archives.first(),
            Timer::Provision => self.provisions.first(),
            Timer::Delete => self.deletes.first(),
        }
    }

    pub fn now(&self) -> Millis {
        self.now
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn queue(&self) -> &StartQueue {
        &self.queue
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn debug_log(&self) -> &DebugLog {
        &self.log
    }

    pub fn cloud_nodes(&self) -> u32 {
        self.fleet.shape().cloud_nodes
    }

    /// Servers the engine tracks (queued, placed, running, stopping, lost, or stopped
    /// with a booking or an un-archived world).
    /// Whether autoscaling runs: enabled in the config and not paused by an operator.
    pub fn scaling_enabled(&self) -> bool {
        self.cfg.scaling.enabled && !self.scaling_paused
    }

    pub fn tracked_servers(&self) -> usize {
        self.servers.len()
    }

    /// A server's externally visible status, for APIs and tests.
    pub fn server_status(&self, id: ServerId) -> Option<ServerStatus> {
        let s = self.servers.get(&id)?;
        Some(match s.state {
            State::Queued => ServerStatus::Queued { position: self.queue.position(id).unwrap_or(0) },
            _ => Self::status_of(s),
        })
    }

    /// A server's status, queue position 0 (finding the position is O(position)).
    fn status_of(s: &Server) -> ServerStatus {
        match s.state {
            State::Queued => ServerStatus::Queued { position: 0 },
            State::AwaitingStart { node, .. } => ServerStatus::Starting { node },
            State::Running { node } => ServerStatus::Running { node },
            State::AwaitingExit { node, .. } => ServerStatus::Stopping { node },
            State::Lost { node, .. } => ServerStatus::Lost { node },
            State::Stopped => ServerStatus::Stopped { booked_on: s.bound, world_on: s.world },
        }
    }

    /// Its world is in the archive (a start restores it from there unless a node holds a newer copy).
    pub fn is_archived(&self, id: ServerId) -> bool {
        self.archived.contains(&id)
    }

    /// RAM of placed servers (starting, running, stopping, booked), over all nodes.
    pub fn allocated_mb(&self) -> u64 {
        self.fleet.allocated_mb()
    }

    // ---------------------------------------------------------------- start / stop

    fn on_start(&mut self, id: ServerId, ram_mb: u32, plan: Plan, user: UserId) -> StartReply {
        if ram_mb == 0 {
            return StartReply::Rejected(Rejection::InvalidRam);
        }
        self.start_sizes.0 = self.start_sizes.0.saturating_add(u64::from(ram_mb));
        self.start_sizes.1 += 1;
        if let Some(s) = self.servers.get(&id) {
            match s.state {
                State::Queued => {
                    return StartReply::AlreadyQueued {
                        position: self.queue.position(id).expect("queued server is in the queue"),
                    }
                }
                State::AwaitingStart { node, .. } => return StartReply::AlreadyStarting { node },
                State::Running { node } => return StartReply::AlreadyRunning { node },
                State::AwaitingExit { .. } | State::Lost { .. } => return StartReply::Busy,
                State::Stopped => {}
            }
        }
        if self.queue.len() >= self.cfg.queue.len_max as usize {
            return StartReply::Rejected(Rejection::QueueFull { len_max: self.cfg.queue.len_max });
        }
        if self.queue.user_count(user) >= self.cfg.queue.per_user_max {
            return StartReply::Rejected(Rejection::UserQueueFull { per_user_max: self.cfg.queue.per_user_max });
        }
        self.counters.requests += 1;
        if u64::from(ram_mb) > self.largest_holdable_mb {
            let reason = FailReason::TooLarge { ram_mb, largest_mb: self.largest_holdable_mb };
            self.counters.failed += 1;
            self.publish(Event::StartFailed { server: id, reason: reason.clone() });
            return StartReply::Failed(reason);
        }
        let now = self.now;
        let seq = self.queue.tail_seq();
        let deadline = now.plus(s_to_ms(self.cfg.queue.timeout_s));
        let s = self.servers.get_or_insert_with(id, || Server {
            ram_mb,
            plan,
            user,
            state: State::Stopped,
            bound: None,
            world: None,
            world_gen: 0,
            seq,
            queued_at: now,
            deadline,
            zero_players_since: None,
            archive_due: None,
            reservation: None,
            stop_retry_at: None,
            requeue_after_exit: false,
            archive_sent: None,
        });
        s.seq = seq;
        s.queued_at = now;
        s.deadline = deadline;
        s.user = user;
        s.plan = plan;
        s.zero_players_since = None;
        // A reserved server whose booking still matches starts on its node directly.
        if let Some(node) = s.bound {
            let ram_unchanged = s.ram_mb == ram_mb;
            let world = self.world_for(id, node);
            if ram_unchanged && self.fleet.get(node).is_some_and(|n| n.placeable()) && self.past_startup() {
                if let Some(world) = world {
                    self.counters.placed += 1;
                    self.begin_start(id, node, world, 0);
                    return StartReply::Placed { node };
                }
            }
            // Its node cannot take it right now: it waits in the queue for that node,
            // its RAM still booked there. A new size (or plan) books anew.
            if !ram_unchanged || plan != Plan::Reserved {
                self.unbind(id);
            }
        }
        let s = self.servers.get_mut(&id).expect("just inserted");
        s.ram_mb = ram_mb;
        s.state = State::Queued;
        self.unschedule_archive(id);
        let alone = self.queue.is_empty() && self.past_startup();
        if alone {
            // The queue pass would see this entry alone: place it without the round trip
            // through the queue's indexes (same sequence number, same outcome).
            self.queue_pass_wanted = false;
            if let Some((node, world)) = self.choose_node(id, ram_mb) {
                self.counters.placed += 1;
                self.begin_start(id, node, world, 0);
                return StartReply::Placed { node };
            }
        }
        self.queue.insert(QueueEntry {
            server: id,
            ram_mb,
            plan,
            user,
            seq,
            queued_at: now,
            deadline,
            not_before: now,
        });
        if !alone {
            self.process_queue();
        }
        match self.servers[&id].state {
            State::AwaitingStart { node, .. } => StartReply::Placed { node },
            _ => {
                let position = self.queue.position(id).expect("still queued");
                self.publish(Event::Queued { server: id, position });
                self.scaling_wanted = true;
                StartReply::Queued { position }
            }
        }
    }

    fn on_stop(&mut self, id: ServerId) -> StopReply {
        let Some(s) = self.servers.get(&id) else { return StopReply::Unknown };
        match s.state.clone() {
            State::Queued => {
                self.queue.remove(id);
                self.counters.cancelled += 1;
                self.set_stopped(id);
                self.publish(Event::Cancelled { server: id });
                StopReply::Cancelled
            }
            State::AwaitingStart { node, .. } => {
                if self.migrations.remove(&id).is_some() {
                    // Moved, not yet reported up: no user request to cancel.
                    self.request_exit(id, node, ExitKind::Requested);
                    return StopReply::Stopping;
                }
                // The request ends here, cancelled by its user; the container that may
                // be coming up is stopped.
                self.counters.cancelled += 1;
                self.publish(Event::Cancelled { server: id });
                self.request_exit(id, node, ExitKind::Requested);
                StopReply::Stopping
            }
            State::Running { node } | State::Lost { node, .. } => {
                if matches!(s.state, State::Lost { starting: true, .. }) {
                    // Its request ends here, cancelled by its user.
                    self.counters.cancelled += 1;
                    self.publish(Event::Cancelled { server: id });
                }
                self.request_exit(id, node, ExitKind::Requested);
                StopReply::Stopping
            }
            State::AwaitingExit { node, kind: ExitKind::Migrate } => {
                // Stopping only to move: the user's stop wins, the move is off.
                if let Some(m) = self.migrations.get_mut(&id) {
                    m.abort.get_or_insert_with(|| "stop requested".into());
                }
                self.servers.get_mut(&id).expect("known").state =
                    State::AwaitingExit { node, kind: ExitKind::Requested };
                StopReply::Stopping
            }
            State::AwaitingExit { .. } if s.requeue_after_exit => {
                // A move that timed out would start again: the user's stop wins.
                self.servers.get_mut(&id).expect("known").requeue_after_exit = false;
                StopReply::Stopping
            }
            State::AwaitingExit { .. } => StopReply::AlreadyStopping,
            State::Stopped => StopReply::NotRunning,
        }
    }

    /// Send the stop command and wait for the exit, keeping the RAM booked meanwhile.
    fn request_exit(&mut self, id: ServerId, node: NodeId, kind: ExitKind) {
        self.unreserve(id);
        let s = self.servers.get_mut(&id).expect("known server");
        s.state = State::AwaitingExit { node, kind };
        let retry = self.now.plus(STOP_RETRY_MS);
        debug_assert!(s.stop_retry_at.is_none(), "{id} has a stop retry already");
        s.stop_retry_at = Some(self.stop_retries.insert(retry, id));
        self.clear_idle(id);
        let reason = stop_reason(kind);
        self.out.push_back(Command::StopContainer { server: id, node, reason });
    }

    // ---------------------------------------------------------------- container completions

    fn on_container_started(&mut self, id: ServerId, node: NodeId) -> Reply {
        let state = self.servers.get(&id).map(|s| s.state.clone());
        match state {
            Some(State::AwaitingStart { node: n, .. }) if n == node => {
                self.unreserve(id);
                self.servers.get_mut(&id).expect("known").state = State::Running { node };
                self.world_started(id, node);
                if let Some(m) = self.migrations.remove(&id) {
                    // The move is done: it runs on the target, and only now may its old
                    // node become empty (the world moved with this start).
                    self.counters.migrations += 1;
                    self.publish(Event::Migrated { server: id, from: m.from, to: node });
                    self.scaling_wanted = true;
                    return Reply::Ok;
                }
                self.counters.started += 1;
                self.publish(Event::Started { server: id, node });
                Reply::Ok
            }
            Some(State::Running { node: n }) if n == node => Reply::Ignored("duplicate start report"),
            Some(State::AwaitingExit { node: n, .. }) if n == node => Reply::Ignored("start report while stopping"),
            Some(State::Lost { node: n, starting }) if n == node => {
                self.migrations.remove(&id);
                self.servers.get_mut(&id).expect("known").state = State::Running { node };
                self.world_started(id, node);
                if starting {
                    self.counters.started += 1;
                    self.publish(Event::Started { server: id, node });
                }
                Reply::Ok
            }
            _ => {
                // A container the engine does not expect here: a late start after a
                // timeout, or a second copy. Never let a server run twice.
                if !self.servers.contains_key(&id) && self.cfg.storage == Storage::NodeLocal {
                    // Forgotten since (its world archived): the copy it writes here is newer
                    // than the archive, so the server is known again, stopped, world here.
                    if self.fleet.get(node).is_some() {
                        let seq = self.queue.tail_seq();
                        let unknown = (0, Plan::PayPerPlay, UserId(0));
                        self.servers.insert(id, Server::recovered(unknown, State::Stopped, seq, self.now));
                    }
                }
                if let Some(s) = self.servers.get(&id) {
                    // A stopped server's container came up after all: it wrote its newest
                    // world here.
                    let here = s.bound.is_none_or(|b| b == node) && s.world != Some(node);
                    if s.state == State::Stopped && here && self.fleet.get(node).is_some() {
                        self.unschedule_archive(id);
                        self.world_started(id, node);
                        self.schedule_archive(id);
                    }
                }
                self.log.add(self.now, "warn", format!("unexpected container {id} on {node}: stopping it"));
                self.out.push_back(Command::StopContainer { server: id, node, reason: StopReason::Cleanup });
                Reply::Ignored("unexpected container; stop sent")
            }
        }
    }

    fn on_container_failed(&mut self, id: ServerId, node: NodeId, reason: String) -> Reply {
        let state = self.servers.get(&id).map(|s| s.state.clone());
        match state {
            Some(State::AwaitingStart { node: n, .. }) if n == node => {
                self.unreserve(id);
                // A reserved server keeps its booking while it waits for the retry.
                if self.servers[&id].plan != Plan::Reserved || self.migrations.contains_key(&id) {
                    self.unbind(id);
                }
                if let Some(m) = self.migrations.remove(&id) {
                    // Its old deadline means nothing here: back to the head of the queue.
                    self.counters.migrations_aborted += 1;
                    self.publish(Event::MigrationAborted { server: id, from: m.from, to: node, reason });
                    self.requeue_at_head(id, node);
                    return Reply::Ok;
                }
                self.publish(Event::StartAttemptFailed { server: id, node, reason });
                self.requeue_in_place(id);
                self.queue_pass_wanted = true;
                Reply::Ok
            }
            Some(State::AwaitingExit { node: n, kind }) if n == node => {
                // It never ran: no new world here.
                self.finish_exit(id, node, kind);
                Reply::Ok
            }
            _ => Reply::Ignored("failure report for no pending start"),
        }
    }

    fn on_container_exited(&mut self, id: ServerId, node: NodeId) -> Reply {
        let state = self.servers.get(&id).map(|s| s.state.clone());
        let kind = match state {
            Some(State::Running { node: n }) if n == node => ExitKind::Crashed,
            Some(State::Lost { node: n, starting }) if n == node => {
                if starting {
                    self.start_lost(id);
                }
                ExitKind::Crashed
            }
            Some(State::AwaitingExit { node: n, kind }) if n == node => kind,
            Some(State::AwaitingStart { node: n, .. }) if n == node => {
                // It ran (and wrote its world there) before it could report.
                self.world_started(id, node);
                return self.on_container_failed(id, node, "exited before it reported started".into());
            }
            _ => return Reply::Ignored("exit report for no container the engine tracks"),
        };
        // A container that ran there and exited leaves the newest world on that node,
        // even if its start report never arrived (stopped while starting).
        if self.servers[&id].world != Some(node) {
            self.world_started(id, node);
        }
        self.finish_exit(id, node, kind);
        Reply::Ok
    }

    /// A start whose node was lost before it reported, and that turned out not to run
    /// there: its request ends failed, with that reason (not silently stopped).
    fn start_lost(&mut self, id: ServerId) {
        self.counters.failed += 1;
        self.publish(Event::StartFailed { server: id, reason: FailReason::NodeLost });
    }

    fn finish_exit(&mut self, id: ServerId, node: NodeId, kind: ExitKind) {
        if self.migrations.get(&id).is_some_and(|m| !m.starting && m.from == node) && self.migration_stopped(id, kind) {
            return;
        }
        let s = self.servers.get_mut(&id).expect("known");
        let reserved = s.plan == Plan::Reserved;
        let requeue = std::mem::take(&mut s.requeue_after_exit);
        s.state = State::Stopped;
        self.clear_idle(id);
        self.unschedule_stop_retry(id);
        if requeue {
            // Nobody asked it to stop: it starts again, wherever its world now is.
            self.unbind(id);
            self.requeue_at_head(id, node);
            return;
        }
        if !reserved {
            self.unbind(id);
        }
        self.publish(Event::Stopped { server: id, node, kind });
        self.schedule_archive(id);
        self.forget_if_idle(id);
        self.queue_pass_wanted = true;
    }

    // ---------------------------------------------------------------- consolidation

    /// Release a migration's hold on its target.
    fn release_hold(&mut self, m: &Migration) {
        if m.held && !m.starting {
            self.fleet.unbind(m.to, m.ram_mb, self.now);
        }
    }

    /// Give up emptying a node: it takes servers again.
    fn uncordon(&mut self, node: NodeId) {
        if self.consolidating.remove(&node) {
            self.fleet.update(node, |n| {
                n.lifecycle = Lifecycle::Active;
                n.draining_since = None;
            });
            self.queue_pass_wanted = true;
        }
    }

    /// Start a server on `node` (its RAM booked there) without a new request: the second
    /// half of a move, or a restart where it was. No `Placed` event: nobody waited.
    fn start_quietly(&mut self, id: ServerId, node: NodeId, world: WorldAction) {
        if self.servers[&id].bound != Some(node) {
            self.bind(id, node);
        }
        self.unschedule_archive(id);
        let now = self.now;
        let s = self.servers.get_mut(&id).expect("known");
        s.state = State::AwaitingStart { node };
        // Should it be requeued later, it waits from now, with a fresh deadline.
        s.queued_at = now;
        s.deadline = now.plus(s_to_ms(self.cfg.queue.timeout_s));
        let (ram_mb, plan) = (s.ram_mb, s.plan);
        debug_assert!(s.reservation.is_none(), "{id} reserved twice");
        s.reservation = Some(self.reservations.insert(now.plus(s_to_ms(self.cfg.reservation_timeout_s)), id));
        self.out.push_back(Command::StartContainer { server: id, node, ram_mb, plan, world });
    }

    /// A migrating server has stopped on its old node. Returns whether it was handled
    /// (started on the target, or restarted); `false` lets a requested stop finish.
    fn migration_stopped(&mut self, id: ServerId, kind: ExitKind) -> bool {
        let m = self.migrations.remove(&id).expect("checked");
        self.release_hold(&m);
        self.clear_idle(id);
        self.unschedule_stop_retry(id);
        let abort = |engine: &mut Conductor, reason: String| {
            engine.counters.migrations_aborted += 1;
            engine.log.add(engine.now, "info", format!("migration of {id} off {} aborted: {reason}", m.from));
            engine.publish(Event::MigrationAborted { server: id, from: m.from, to: m.to, reason });
            engine.uncordon(m.from);
        };
        if kind != ExitKind::Migrate {
            abort(self, m.abort.clone().unwrap_or_else(|| "stop requested".into()));
            return false;
        }
        let reserve = self.fleet.reserve();
        let target_ok = m.held && self.fleet.get(m.to).is_some_and(|n| n.placeable() && n.fits(m.ram_mb, reserve));
        if let (true, None) = (target_ok, &m.abort) {
            self.unbind(id);
            let s = &self.servers[&id];
            let world = match s.world {
                Some(w) if w != m.to => WorldAction::MoveFrom(w),
                Some(_) => WorldAction::InPlace,
                None if self.archived.contains(&id) && self.cfg.storage == Storage::NodeLocal => {
                    WorldAction::RestoreFromArchive
                }
                None => WorldAction::InPlace,
            };
            self.migrations.insert(id, Migration { starting: true, held: false, ..m.clone() });
            self.start_quietly(id, m.to, world);
            return true;
        }
        abort(self, m.abort.clone().unwrap_or_else(|| "the target has no room any more".into()));
        // Not moved: it starts again where it was, or anywhere if that node is unwell.
        if self.fleet.get(m.from).is_some_and(|n| n.placeable()) {
            self.start_quietly(id, m.from, WorldAction::InPlace);
        } else {
            self.unbind(id);
            self.requeue_at_head(id, m.from);
        }
        true
    }

    /// Carry out a policy's consolidation: check everything again, book the targets,
    /// cordon the node, stop its servers. Refused whole if anything does not hold.
    fn consolidate(&mut self, policy: &'static str, c: Consolidate) {
        let refuse = |engine: &mut Conductor, why: &str| {
            engine.log.add(engine.now, "warn", format!("consolidation of {} by {policy} refused: {why}", c.node));
        };
        let Some(n) = self.fleet.get(c.node) else { return refuse(self, "unknown node") };
        if self.consolidating.len() >= self.cfg.consolidation.max_draining_nodes as usize {
            return refuse(self, "consolidation.max_draining_nodes nodes are being emptied");
        }
        if n.kind != NodeKind::Cloud || n.system || !n.placeable() {
            return refuse(self, "not an active healthy cloud node");
        }
        if c.moves.len() != n.containers() as usize || c.moves.is_empty() {
            return refuse(self, "the moves do not cover the node's servers");
        }
        let mut seen = BTreeSet::new();
        for &(sid, to) in &c.moves {
            let movable = self.servers.get(&sid).is_some_and(|s| {
                s.state == State::Running { node: c.node }
                    && s.plan != Plan::Reserved
                    && s.zero_players_since.is_some()
                    && !self.migrations.contains_key(&sid)
            });
            let target_ok = to != c.node && self.fleet.get(to).is_some_and(|t| t.placeable());
            if !movable || !target_ok || !seen.insert(sid) {
                return refuse(self, &format!("{sid} cannot move to {to}"));
            }
        }
        let mut held: Vec<(NodeId, u32)> = Vec::new();
        for &(sid, to) in &c.moves {
            let ram = self.servers[&sid].ram_mb;
            if !self.fleet.get(to).expect("checked").fits(ram, self.fleet.reserve()) {
                for (t, r) in held {
                    self.fleet.unbind(t, r, self.now);
                }
                return refuse(self, &format!("{sid} does not fit on {to}"));
            }
            self.fleet.bind(to, ram);
            held.push((to, ram));
        }
        let now = self.now;
        self.fleet.update(c.node, |n| {
            n.lifecycle = Lifecycle::Draining;
            n.draining_since = Some(now);
        });
        self.consolidating.insert(c.node);
        self.counters.consolidations += 1;
        self.log.add(now, "info", format!("consolidate {} by {policy}: {}", c.node, c.reason));
        self.publish(Event::ConsolidationStarted { node: c.node, policy: policy.to_string(), reason: c.reason });
        for (sid, to) in c.moves {
            let ram_mb = self.servers[&sid].ram_mb;
            self.migrations
                .insert(sid, Migration { from: c.node, to, ram_mb, starting: false, held: true, abort: None });
            self.publish(Event::MigrationStarted { server: sid, from: c.node, to });
            self.request_exit(sid, c.node, ExitKind::Migrate);
        }
    }

    /// Running servers for consolidation, by node then id.
    /// The running servers by (node, id), from the booking index (a running server is booked
    /// on its node): proportional to the bookings, not to every server the engine knows.
    fn running_servers(&self) -> Vec<ServerInfo> {
        let mut v = Vec::new();
        for (i, booked) in self.booked_on.iter().enumerate() {
            for &id in booked.iter() {
                let s = &self.servers[&id];
                if let State::Running { node } = s.state {
                    if node.0 as usize == i {
                        let (ram_mb, plan, zero_players_since) = (s.ram_mb, s.plan, s.zero_players_since);
                        v.push(ServerInfo { id, node, ram_mb, plan, zero_players_since });
                    }
                }
            }
        }
        v
    }

    // ---------------------------------------------------------------- operator

    fn on_drain_node(&mut self, id: NodeId) -> Reply {
        let Some(n) = self.fleet.get(id) else { return Reply::Refused("unknown node") };
        if n.lifecycle != Lifecycle::Active {
            return Reply::Refused("node is not active (provisioning or already draining)");
        }
        let now = self.now;
        self.fleet.update(id, |n| {
            n.lifecycle = Lifecycle::Draining;
            n.draining_since = Some(now);
        });
        self.operator_drained.insert(id);
        self.log.add(now, "info", format!("node {id} drained by the operator"));
        self.publish(Event::NodeDrained { node: id });
        self.scaling_wanted = true;
        Reply::Ok
    }

    fn on_remove_node(&mut self, id: NodeId) -> Reply {
        let Some(n) = self.fleet.get(id) else { return Reply::Refused("unknown node") };
        if n.kind == NodeKind::Cloud {
            return Reply::Refused("cloud nodes are returned by scaling: drain it instead");
        }
        if n.containers() > 0 || n.worlds() > 0 || n.allocated_mb() > 0 {
            return Reply::Refused("node holds containers, bookings or un-archived worlds: drain it first");
        }
        self.operator_drained.remove(&id);
        self.remove_node(id);
        Reply::Ok
    }

    fn on_delete_server(&mut self, id: ServerId) -> Reply {
        let Some(s) = self.servers.get(&id) else {
            // A stopped server whose world is only in the archive is no longer tracked,
            // but it is remembered as archived: deleting it forgets that (the driver
            // deletes the archive).
            if self.archived.remove(&id) {
                self.publish(Event::ServerDeleted { server: id });
                return Reply::Ok;
            }
            return Reply::Refused("unknown server");
        };
        if s.state != State::Stopped {
            return Reply::Refused("server is not stopped");
        }
        let world = s.world;
        self.unschedule_archive(id);
        self.unbind(id);
        self.set_world(id, None);
        self.servers.remove(&id);
        self.archived.remove(&id);
        if let Some(node) = world {
            self.out.push_back(Command::DeleteWorld { server: id, node });
        }
        self.publish(Event::ServerDeleted { server: id });
        Reply::Ok
    }

    /// Operator-drained cloud nodes are returned once empty (checked at each evaluation).
    fn return_drained(&mut self) {
        let ready: Vec<NodeId> = self
            .operator_drained
            .iter()
            .copied()
            .filter(|&id| self.fleet.get(id).is_some_and(|n| n.kind == NodeKind::Cloud && n.is_empty()))
            .collect();
        for id in ready {
            self.operator_drained.remove(&id);
            let n = self.fleet.get(id).expect("filtered");
            let (name, provider_id) = (n.name.clone(), n.provider_id.clone());
            self.deletes.insert(self.now.plus(s_to_ms(self.cfg.scaling.delete_timeout_s)), id);
            self.counters.scale_downs += 1;
            self.publish(Event::ScaleDown {
                node: id,
                policy: "operator".into(),
                reason: "drained by the operator".into(),
            });
            self.out.push_back(Command::DeleteNode { node: id, name, provider_id });
        }
    }

    fn on_players(&mut self, id: ServerId, count: u32) -> Reply {
        if count > 0 {
            if let Some(m) = self.migrations.get_mut(&id).filter(|m| !m.starting) {
                // Players joined between the decision and the stop: it must not move.
                m.abort.get_or_insert_with(|| format!("{count} player(s) joined"));
                return Reply::Ok;
            }
        }
        let Some(s) = self.servers.get_mut(&id) else { return Reply::Ignored("unknown server") };
        if !matches!(s.state, State::Running { .. }) {
            return Reply::Ignored("player count for a server that is not running");
        }
        if count > 0 {
            self.clear_idle(id);
        } else if s.zero_players_since.is_none() {
            s.zero_players_since = Some(self.now);
            self.idle.insert(self.now.plus(s_to_ms(self.cfg.idle_shutdown_s)), id);
        }
        Reply::Ok
    }

    fn clear_idle(&mut self, id: ServerId) {
        // The idle set holds at most one entry per server.
        if let Some(s) = self.servers.get_mut(&id) {
            if let Some(since) = s.zero_players_since.take() {
                self.idle.remove(since.plus(s_to_ms(self.cfg.idle_shutdown_s)), id);
            }
        }
    }

    // ---------------------------------------------------------------- the queue

    fn past_startup(&self) -> bool {
        self.now >= self.startup_end()
    }

    fn startup_end(&self) -> Millis {
        self.started_at.plus(s_to_ms(self.cfg.startup_delay_s))
    }

    /// One pass over the queue in order, placing what fits (see [`crate::config::QueueOrder`]).
    fn process_queue(&mut self) {
        self.queue_pass_wanted = false;
        if !self.past_startup() || self.queue.is_empty() {
            return;
        }
        let strict = self.cfg.queue.order == crate::config::QueueOrder::StrictFifo;
        let age_max_ms = s_to_ms(self.cfg.queue.skip_ahead_age_max_s);
        // Walk by sequence number; placing removes only the entry at hand, so this visits
        // exactly the entries queued when the pass began, in order.
        let mut after = None;
        while let Some(e) = self.queue.next_after(after) {
            let (id, e) = (e.server, e.clone());
            after = Some(e.seq);
            if e.not_before > self.now {
                // In backoff after a failed attempt: it keeps its place but does not
                // block the others meanwhile.
                continue;
            }
            if let Some((node, world)) = self.choose_node(id, e.ram_mb) {
                self.queue.remove(id);
                self.counters.placed += 1;
                self.begin_start(id, node, world, self.now.since(e.queued_at));
                continue;
            }
            if strict || self.now.since(e.queued_at) >= age_max_ms {
                break;
            }
            // Nothing left in the queue fits any node: stop instead of walking the rest
            // (a long queue would otherwise cost O(queue) on every capacity change).
            if self.fleet.max_available_mb() < u64::from(self.queue.min_ram_mb()) {
                break;
            }
        }
    }

    /// Where a server should start: its world's node when that has room; otherwise any
    /// node, moving or restoring the world first; nowhere while its only world copy is
    /// on a node that cannot be reached.
    fn choose_node(&self, id: ServerId, ram_mb: u32) -> Option<(NodeId, WorldAction)> {
        let s = &self.servers[&id];
        if let Some(b) = s.bound {
            // A reserved server retrying a failed start: its RAM is booked on `b`.
            if !self.fleet.get(b).is_some_and(|n| n.placeable()) {
                return None;
            }
            return Some((b, self.world_for(id, b)?));
        }
        match s.world {
            Some(w) => {
                let wn = self.fleet.get(w)?;
                if wn.placeable() && wn.fits(ram_mb, self.fleet.reserve()) {
                    return Some((w, WorldAction::InPlace));
                }
                if wn.health != Health::Healthy {
                    return None;
                }
                let node = self.place(ram_mb)?;
                Some((node, WorldAction::MoveFrom(w)))
            }
            None => {
                if self.awaiting_archive(s) && !self.archived.contains(&id) {
                    return None;
                }
                let node = self.place(ram_mb)?;
                let world = if self.archived.contains(&id) && self.cfg.storage == Storage::NodeLocal {
                    WorldAction::RestoreFromArchive
                } else {
                    WorldAction::InPlace
                };
                Some((node, world))
            }
        }
    }

    /// A node for a new placement of `ram_mb`: owned first, unless owned RAM is scarce
    /// and the server is a short stay (see `placement.owned_low_water_percent`): then a
    /// rented node with room first.
    fn place(&self, ram_mb: u32) -> Option<NodeId> {
        let p = &self.cfg.placement;
        // At 0 % owned RAM is never scarce: the rule is off.
        let rented_first = ram_mb <= p.rented_first_max_mb && self.fleet.owned_free_below(p.owned_low_water_percent);
        self.fleet.place_in_order(ram_mb, rented_first)
    }

    /// How a server's world gets to `node` for a start there: already there, moved from
    /// the node holding it, restored from the archive, or a new world; `None` while its
    /// only copy is on a node that cannot be reached.
    fn world_for(&self, id: ServerId, node: NodeId) -> Option<WorldAction> {
        Some(match self.servers[&id].world {
            Some(w) if w == node => WorldAction::InPlace,
            Some(w) if self.fleet.get(w).is_some_and(|n| n.health == Health::Healthy) => WorldAction::MoveFrom(w),
            Some(_) => return None,
            None if self.archived.contains(&id) && self.cfg.storage == Storage::NodeLocal => {
                WorldAction::RestoreFromArchive
            }
            None if self.awaiting_archive(&self.servers[&id]) => return None,
            None => WorldAction::InPlace,
        })
    }

    /// Its world's node went away while an archive of that world was under way: the
    /// archive's report decides whether the world survives.
    fn awaiting_archive(&self, s: &Server) -> bool {
        s.world.is_none()
            && s.archive_sent.is_some_and(|(g, at)| g == s.world_gen && self.now < at.plus(ARCHIVE_RETRY_MS))
    }

    fn begin_start(&mut self, id: ServerId, node: NodeId, world: WorldAction, waited_ms: u64) {
        // A reserved server's booking already holds its RAM on this node.
        if self.servers[&id].bound != Some(node) {
            self.bind(id, node);
        }
        self.unschedule_archive(id);
        let s = self.servers.get_mut(&id).expect("known");
        s.state = State::AwaitingStart { node };
        let (ram_mb, plan) = (s.ram_mb, s.plan);
        debug_assert!(s.reservation.is_none(), "{id} reserved twice");
        s.reservation = Some(self.reservations.insert(self.now.plus(s_to_ms(self.cfg.reservation_timeout_s)), id));
        self.publish(Event::Placed { server: id, node, waited_ms, world });
        self.out.push_back(Command::StartContainer { server: id, node, ram_mb, plan, world });
    }

    /// Back into the queue with its original place and queue time, after a failed attempt.
    fn requeue_in_place(&mut self, id: ServerId) {
        let s = self.servers.get_mut(&id).expect("known");
        if s.deadline <= self.now {
            let waited_ms = self.now.since(s.queued_at);
            self.fail(id, FailReason::QueueTimeout { waited_ms });
            return;
        }
        s.state = State::Queued;
        let e = QueueEntry {
            server: id,
            ram_mb: s.ram_mb,
            plan: s.plan,
            user: s.user,
            seq: s.seq,
            queued_at: s.queued_at,
            deadline: s.deadline,
            not_before: self.now.plus(s_to_ms(self.cfg.queue.retry_backoff_s)),
        };
        self.queue.insert(e);
    }

    /// To the head of the queue with a fresh deadline (its node was fenced or released).
    fn requeue_at_head(&mut self, id: ServerId, from: NodeId) {
        let seq = self.queue.head_seq();
        let now = self.now;
        let deadline = now.plus(s_to_ms(self.cfg.queue.timeout_s));
        let s = self.servers.get_mut(&id).expect("known");
        s.state = State::Queued;
        s.seq = seq;
        s.deadline = deadline;
        let e = QueueEntry {
            server: id,
            ram_mb: s.ram_mb,
            plan: s.plan,
            user: s.user,
            seq,
            queued_at: s.queued_at,
            deadline,
            not_before: now,
        };
        self.queue.insert(e);
        self.publish(Event::Requeued { server: id, node: from });
        self.queue_pass_wanted = true;
        self.scaling_wanted = true;
    }

    fn fail(&mut self, id: ServerId, reason: FailReason) {
        self.counters.failed += 1;
        self.set_stopped(id);
        self.publish(Event::StartFailed { server: id, reason });
    }

    fn set_stopped(&mut self, id: ServerId) {
        let s = self.servers.get_mut(&id).expect("known");
        s.state = State::Stopped;
        self.schedule_archive(id);
        self.forget_if_idle(id);
    }

    /// Drop the record of a stopped server that holds nothing, so memory follows the
    /// servers alive, not the trace.
    fn forget_if_idle(&mut self, id: ServerId) {
        let s = &self.servers[&id];
        if s.state == State::Stopped && s.bound.is_none() && s.world.is_none() && !self.awaiting_archive(s) {
            self.servers.remove(&id);
        }
    }

    // ---------------------------------------------------------------- bookkeeping writers

    fn bind(&mut self, id: ServerId, node: NodeId) {
        let s = self.servers.get_mut(&id).expect("known");
        assert!(s.bound.is_none(), "{id} bound twice");
        s.bound = Some(node);
        self.fleet.bind(node, s.ram_mb);
        let slot = node.0 as usize;
        if self.booked_on.len() <= slot {
            self.booked_on.resize_with(slot + 1, SortedSet::default);
        }
        self.booked_on[slot].insert(id);
    }

    /// The servers booked on `node`, in id order.
    fn booked_on(&self, node: NodeId) -> impl Iterator<Item = ServerId> + '_ {
        self.booked_on.get(node.0 as usize).into_iter().flat_map(SortedSet::iter).copied()
    }

    fn unbind(&mut self, id: ServerId) {
        let s = self.servers.get_mut(&id).expect("known");
        if let Some(node) = s.bound.take() {
            self.fleet.unbind(node, s.ram_mb, self.now);
            self.booked_on[node.0 as usize].remove(&id);
            if self.overcommitted.contains(&node) {
                let n = self.fleet.get(node).expect("bound node exists");
                if n.allocated_mb() <= n.usable_mb(self.fleet.reserve()) {
                    self.overcommitted.remove(&node);
                }
            }
        }
    }

    fn set_world(&mut self, id: ServerId, node: Option<NodeId>) {
        let s = self.servers.get_mut(&id).expect("known");
        if s.world == node {
            return;
        }
        let old = std::mem::replace(&mut s.world, node);
        if let Some(o) = old {
            self.fleet.remove_world(o, self.now);
        }
        if let Some(n) = node {
            self.fleet.add_world(n);
            self.publish(Event::WorldOn { server: id, node: n });
        }
    }

    fn schedule_archive(&mut self, id: ServerId) {
        let s = &self.servers[&id];
        let (Some(node), State::Stopped, None) = (s.world, &s.state, s.bound) else { return };
        if s.archive_due.is_some() {
            return;
        }
        let Some(n) = self.fleet.get(node) else { return };
        let delay = if n.kind == NodeKind::Cloud { 0 } else { s_to_ms(self.cfg.archive_after_s) };
        let ticket = self.archives.insert(self.now.plus(delay), id);
        self.servers.get_mut(&id).expect("known").archive_due = Some(ticket);
    }

    fn unschedule_stop_retry(&mut self, id: ServerId) {
        if let Some(ticket) = self.servers.get_mut(&id).and_then(|s| s.stop_retry_at.take()) {
            self.stop_retries.remove(ticket, id);
        }
    }

    /// Withdraw its start reservation's timeout (it started, failed, or is stopping).
    fn unreserve(&mut self, id: ServerId) {
        if let Some(ticket) = self.servers.get_mut(&id).and_then(|s| s.reservation.take()) {
            self.reservations.remove(ticket, id);
        }
    }

    fn unschedule_archive(&mut self, id: ServerId) {
        if let Some(ticket) = self.servers.get_mut(&id).and_then(|s| s.archive_due.take()) {
            self.archives.remove(ticket, id);
        }
    }

    /// A container started: with node-local storage its world now lives on that node,
    /// as a new generation (any copy it was moved or restored from is older).
    fn world_started(&mut self, id: ServerId, node: NodeId) {
        if self.cfg.storage != Storage::NodeLocal {
            return;
        }
        self.set_world(id, Some(node));
        let gen = self.world_gen_next;
        self.world_gen_next += 1;
        self.servers.get_mut(&id).expect("known").world_gen = gen;
    }

    fn on_world_archived(&mut self, id: ServerId, generation: u64) -> Reply {
        let Some(s) = self.servers.get(&id) else {
            // Forgotten while the report was on its way (the copy it was made from went
            // with its node): the archive is the newest copy there is.
            self.archived.insert(id);
            return Reply::Ok;
        };
        if s.world_gen != generation {
            return Reply::Ignored("archive report for an older copy of the world");
        }
        self.archived.insert(id);
        self.servers.get_mut(&id).expect("known").archive_sent = None;
        let s = &self.servers[&id];
        if s.world.is_none() {
            // Its node's copy is gone: the archive holds that version (a start waiting
            // for this report restores it).
            self.queue_pass_wanted = true;
            self.forget_if_idle(id);
            return Reply::Ok;
        }
        let node = s.world;
        if s.state == State::Stopped && s.bound.is_none() {
            // The archive is now the authoritative copy; the node no longer holds it.
            self.unschedule_archive(id);
            self.set_world(id, None);
            if let Some(node) = node {
                self.publish(Event::WorldArchived { server: id, node });
            }
            self.forget_if_idle(id);
        }
        Reply::Ok
    }

    // ---------------------------------------------------------------- nodes

    /// A name in use (a node's, or a VM's that is no node) is never given to a new VM.
    fn name_in_use(&mut self, name: &str) {
        if let Some(n) = name
            .strip_prefix(self.cfg.cloud_name_prefix.as_str())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.parse::<u64>().ok())
        {
            self.cloud_seq = self.cloud_seq.max(n);
        }
    }

    fn register(&mut self, spec: NodeSpec) -> NodeId {
        // A VM bought before a restart keeps its name: new ones must not reuse it.
        self.name_in_use(&spec.name);
        let system = spec.system;
        let total = spec.total_ram_mb;
        let id = self.fleet.register(spec, self.now);
        let slot = id.0 as usize;
        if self.probes.len() <= slot {
            self.probes.resize(slot + 1, ProbeState::default());
        }
        if !system {
            let usable = crate::node::usable_mb(total, 1, self.fleet.reserve());
            self.largest_holdable_mb = self.largest_holdable_mb.max(usable);
        }
        self.schedule_probe(id, self.now);
        id
    }

    fn catalogue_largest(cfg: &Config) -> u64 {
        if cfg.scaling.max_cloud_nodes == 0 || !cfg.scaling.enabled {
            return 0;
        }
        cfg.catalogue.iter().map(|t| policy::type_usable_mb(t, &cfg.reserve)).max().unwrap_or(0)
    }

    fn recompute_largest(&mut self) {
        let reserve = self.fleet.reserve().clone();
        let nodes = self
            .fleet
            .iter()
            .filter(|n| !n.system)
            .map(|n| crate::node::usable_mb(n.total_ram_mb, 1, &reserve))
            .max()
            .unwrap_or(0);
        self.largest_holdable_mb = nodes.max(Self::catalogue_largest(&self.cfg));
    }

    fn remove_node(&mut self, id: NodeId) {
        let node = self.fleet.remove(id);
        self.unschedule_probe(id);
        self.probes[id.0 as usize].failures = 0;
        self.grace.retain(|&(_, n)| n != id);
        self.provisions.retain(|&(_, n)| n != id);
        self.deletes.retain(|&(_, n)| n != id);
        self.overcommitted.remove(&id);
        self.consolidating.remove(&id);
        self.recompute_largest();
        self.publish(Event::NodeRemoved { node: id, kind: node.kind });
    }

    fn on_provisioned(&mut self, id: NodeId, provider_id: String, address: String) -> Reply {
        let Some(n) = self.fleet.get(id) else {
            // We gave up on this VM already: return it so it is not billed for ever.
            let name = format!("{}-late-{}", self.cfg.cloud_name_prefix, id.0);
            self.out.push_back(Command::DeleteNode { node: id, name, provider_id: Some(provider_id) });
            return Reply::Ignored("provisioned after the placeholder was given up; delete sent");
        };
        if n.lifecycle != Lifecycle::AwaitingProvision {
            return Reply::Ignored("duplicate provision report");
        }
        let now = self.now;
        let server_type = n.server_type.clone();
        self.type_succeeded(server_type.as_deref());
        self.fleet.update(id, |n| {
            n.lifecycle = Lifecycle::Active;
            n.provider_id = Some(provider_id);
            n.address = address;
            n.provisioned_at = Some(now);
        });
        // Booting: it must turn healthy within the provision timeout.
        self.provisions.retain(|&(_, n)| n != id);
        self.provisions.insert(now.plus(s_to_ms(self.cfg.scaling.provision_timeout_s)), id);
        self.schedule_probe(id, now);
        self.publish(Event::NodeProvisioned { node: id });
        Reply::Ok
    }

    fn on_provision_failed(&mut self, id: NodeId, reason: String) -> Reply {
        match self.fleet.get(id) {
            Some(n) if n.lifecycle == Lifecycle::AwaitingProvision => {
                let (server_type, bought) = (n.server_type.clone(), n.registered_at);
                self.type_failed(server_type.as_deref(), bought);
                self.publish(Event::ProvisionFailed { node: id, reason });
                self.remove_node(id);
                self.scaling_wanted = true;
                Reply::Ok
            }
            _ => Reply::Ignored("provision failure for no placeholder"),
        }
    }

    fn on_node_deleted(&mut self, id: NodeId) -> Reply {
        let Some(n) = self.fleet.get(id) else { return Reply::Ignored("unknown node") };
        if n.lifecycle != Lifecycle::Draining {
            // Deleted behind our back (or a crash): whatever ran there is gone.
            self.log.add(self.now, "warn", format!("node {} deleted without a delete command", n.name));
        }
        // Moves into it are off: their holds go with it.
        let into: Vec<ServerId> =
            self.migrations.iter().filter(|(_, m)| !m.starting && m.to == id).map(|(&sid, _)| sid).collect();
        for sid in into {
            let m = self.migrations.get_mut(&sid).expect("listed");
            m.abort.get_or_insert_with(|| "target node deleted".into());
            let ram = m.ram_mb;
            m.held = false;
            self.fleet.unbind(id, ram, self.now);
        }
        let Some(n) = self.fleet.get(id) else { return Reply::Ignored("unknown node") };
        // Everything on it is gone for certain now. An empty node (the usual scale-down)
        // has no server booked and no world stored, so there is nothing to look for.
        if n.is_empty() {
            self.remove_node(id);
            return Reply::Ok;
        }
        let mut on_node: Vec<(Millis, ServerId)> = self
            .servers
            .iter()
            .filter(|(_, s)| s.bound == Some(id) || s.world == Some(id))
            .map(|(sid, s)| (s.queued_at, sid))
            .collect();
        // Each requeue goes before everything, so walk newest first: the oldest
        // request ends up at the head.
        on_node.sort();
        for (_, sid) in on_node.into_iter().rev() {
            self.evict(sid, id);
        }
        self.remove_node(id);
        Reply::Ok
    }

    /// A server's node is gone for certain: requeue what wanted to run, drop the rest.
    fn evict(&mut self, sid: ServerId, node: NodeId) {
        let mut state = self.servers[&sid].state.clone();
        if let Some(m) = self.migrations.get(&sid).cloned() {
            if m.starting && m.to == node {
                self.migrations.remove(&sid);
            } else if !m.starting && m.from == node {
                // Its node vanished while it stopped to move: it wanted to run, so it
                // is requeued like a running server.
                self.migrations.remove(&sid);
                self.release_hold(&m);
                self.counters.migrations_aborted += 1;
                self.publish(Event::MigrationAborted {
                    server: sid,
                    from: m.from,
                    to: m.to,
                    reason: "node deleted".into(),
                });
                state = State::Running { node };
            }
        }
        let s = &self.servers[&sid];
        let world_here = s.world == Some(node);
        if s.bound != Some(node) {
            // Only its world was there (it runs or starts elsewhere): that copy is gone.
            if world_here {
                self.set_world(sid, None);
                self.unschedule_archive(sid);
                self.forget_if_idle(sid);
            }
            return;
        }
        // A start under way has its timeout withdrawn (a no-op otherwise).
        self.unreserve(sid);
        self.unbind(sid);
        if world_here {
            self.set_world(sid, None);
            self.unschedule_archive(sid);
        }
        self.clear_idle(sid);
        self.unschedule_stop_retry(sid);
        let requeue = std::mem::take(&mut self.servers.get_mut(&sid).expect("known").requeue_after_exit);
        match state {
            State::AwaitingStart { .. } | State::Running { .. } | State::Lost { .. } => self.requeue_at_head(sid, node),
            // A move whose start timed out: it wanted to run.
            State::AwaitingExit { .. } if requeue => self.requeue_at_head(sid, node),
            State::AwaitingExit { kind, .. } => {
                self.servers.get_mut(&sid).expect("known").state = State::Stopped;
                self.publish(Event::Stopped { server: sid, node, kind });
                self.forget_if_idle(sid);
            }
            State::Stopped => self.forget_if_idle(sid),
            State::Queued => {}
        }
    }

    // ---------------------------------------------------------------- health

    /// Regular probes run on a grid of `health.interval_s` (the next grid point after
    /// now), so that all healthy nodes are probed in one round: one command and one
    /// answer per interval, however many nodes. Retries after a failure keep their own
    /// `retry_spacing_s` schedule.
    fn next_probe_round(&self) -> Millis {
        let interval = s_to_ms(self.cfg.health.interval_s).max(1);
        Millis((self.now.0 / interval + 1) * interval)
    }

    fn schedule_probe(&mut self, id: NodeId, at: Millis) {
        self.unschedule_probe(id);
        self.probes[id.0 as usize].due = Some(at);
        self.probe_rounds.insert(at, id);
    }

    fn unschedule_probe(&mut self, id: NodeId) {
        let Some(p) = self.probes.get_mut(id.0 as usize) else { return };
        if let Some(at) = p.due.take() {
            self.probe_rounds.cancel(at);
        }
        if let Some(sent) = p.out.take() {
            self.probe_timeouts.cancel(sent.plus(s_to_ms(self.cfg.health.probe_timeout_s)));
        }
    }

    fn send_probes(&mut self) {
        let now = self.now;
        let timeout_at = now.plus(s_to_ms(self.cfg.health.probe_timeout_s));
        while let Some((at, mut nodes)) = self.probe_rounds.pop_due(now) {
            nodes.retain(|&id| {
                let p = &mut self.probes[id.0 as usize];
                if p.due != Some(at) {
                    return false; // rescheduled or removed since it joined this round
                }
                p.due = None;
                let Some(n) = self.fleet.get(id) else { return false };
                if n.lifecycle == Lifecycle::AwaitingProvision {
                    return false;
                }
                // A due probe and an outstanding one exclude each other (scheduling
                // clears the outstanding one), so no earlier timeout is overwritten.
                debug_assert!(p.out.is_none(), "probe of {id} sent twice");
                p.out = Some(now);
                true
            });
            if nodes.is_empty() {
                self.probe_rounds.recycle(nodes);
                continue;
            }
            self.probe_timeouts.insert_many(timeout_at, &nodes);
            self.out.push_back(Command::ProbeHealth { nodes });
        }
    }

    fn on_probe(&mut self, id: NodeId, ok: bool) -> Reply {
        let Some(sent) = self.probes.get_mut(id.0 as usize).and_then(|p| p.out.take()) else {
            return Reply::Ignored("no probe outstanding");
        };
        self.probe_timeouts.cancel(sent.plus(s_to_ms(self.cfg.health.probe_timeout_s)));
        self.probe_result(id, ok);
        Reply::Ok
    }

    /// A round's results. The common case (a healthy node answers) is handled in bulk:
    /// its timeout is cancelled and its next probe joins one round, without a lookup per
    /// node in the timer maps.
    fn on_probes(&mut self, results: Vec<(NodeId, bool)>) -> Reply {
        let now = self.now;
        let timeout_ms = s_to_ms(self.cfg.health.probe_timeout_s);
        let next = self.next_probe_round();
        let mut again = std::mem::take(&mut self.probe_scratch);
        let mut cancels: Vec<(Millis, usize)> = Vec::new();
        let mut answered = 0;
        for (id, ok) in results {
            let Some(sent) = self.probes.get_mut(id.0 as usize).and_then(|p| p.out.take()) else { continue };
            answered += 1;
            let t = sent.plus(timeout_ms);
            match cancels.iter_mut().find(|(at, _)| *at == t) {
                Some((_, n)) => *n += 1,
                None => cancels.push((t, 1)),
            }
            let healthy = self.fleet.get(id).is_some_and(|n| n.health == Health::Healthy);
            if ok && healthy {
                let p = &mut self.probes[id.0 as usize];
                p.failures = 0;
                p.due = Some(next);
                self.fleet.set_last_probe_at(id, now);
                again.push(id);
            } else {
                self.probe_result(id, ok);
            }
        }
        for (t, n) in cancels {
            self.probe_timeouts.cancel_n(t, n);
        }
        self.probe_rounds.insert_many(next, &again);
        again.clear();
        self.probe_scratch = again;
        if answered == 0 {
            Reply::Ignored("no probe outstanding")
        } else {
            Reply::Ok
        }
    }

    fn probe_result(&mut self, id: NodeId, ok: bool) {
        let Some(n) = self.fleet.get(id) else { return };
        let from = n.health;
        let now = self.now;
        self.fleet.set_last_probe_at(id, now);
        if ok {
            self.probes[id.0 as usize].failures = 0;
            if from != Health::Healthy {
                self.fleet.update(id, |n| {
                    n.health = Health::Healthy;
                    n.healthy_since = Some(now);
                    n.unhealthy_since = None;
                });
                self.grace.retain(|&(_, n)| n != id);
                self.provisions.retain(|&(_, n)| n != id);
                self.last_health_change = Some(now);
                self.publish(Event::NodeHealthChanged { node: id, from, to: Health::Healthy });
                // Whatever it runs is reconciled: servers booked on it, containers that
                // ran on while it was unreachable, and (on its first answer, e.g. after a
                // restart it did not answer) containers the engine has not heard of.
                self.out.push_back(Command::ListContainers { node: id });
                // Should that listing be lost, servers lost there are listed again.
                self.grace.insert(now.plus(s_to_ms(self.cfg.health.lost_grace_s)), id);
                self.queue_pass_wanted = true;
            }
            self.schedule_probe(id, self.next_probe_round());
            return;
        }
        let failures = {
            let f = &mut self.probes[id.0 as usize].failures;
            *f += 1;
            *f
        };
        if failures < self.cfg.health.failures_max {
            self.schedule_probe(id, now.plus(s_to_ms(self.cfg.health.retry_spacing_s)));
            return;
        }
        self.probes[id.0 as usize].failures = 0;
        if from == Health::Healthy {
            self.fleet.update(id, |n| {
                n.health = Health::Unhealthy;
                n.unhealthy_since = Some(now);
            });
            self.grace.insert(now.plus(s_to_ms(self.cfg.health.lost_grace_s)), id);
            self.last_health_change = Some(now);
            self.publish(Event::NodeHealthChanged { node: id, from, to: Health::Unhealthy });
            self.scaling_wanted = true;
        }
        self.schedule_probe(id, self.next_probe_round());
    }

    /// The node stayed unhealthy past the grace period.
    fn node_lost(&mut self, id: NodeId) {
        let Some(n) = self.fleet.get(id) else { return };
        if n.health == Health::Healthy {
            // Back, but servers still wait as lost there: its listing went missing.
            // A lost server keeps its booking on its node.
            let lost_here = self.booked_on(id).any(|sid| matches!(self.servers[&sid].state, State::Lost { .. }));
            if lost_here {
                self.out.push_back(Command::ListContainers { node: id });
                self.grace.insert(self.now.plus(s_to_ms(self.cfg.health.lost_grace_s)), id);
            }
            return;
        }
        if n.health != Health::Unhealthy || (n.lifecycle == Lifecycle::Draining && !self.consolidating.contains(&id)) {
            return;
        }
        let affected: Vec<ServerId> = self
            .booked_on(id)
            .filter(|sid| matches!(self.servers[sid].state, State::Running { .. } | State::AwaitingStart { .. }))
            .collect();
        if n.kind == NodeKind::Cloud && self.cfg.storage == Storage::Shared {
            // Fence: once the delete completes its containers are gone for certain, and
            // `on_node_deleted` requeues its servers at the head.
            let name = n.name.clone();
            let provider_id = n.provider_id.clone();
            self.fleet.update(id, |n| n.lifecycle = Lifecycle::Draining);
            self.publish(Event::NodeFenced { node: id });
            self.out.push_back(Command::DeleteNode { node: id, name, provider_id });
            self.deletes.insert(self.now.plus(s_to_ms(self.cfg.scaling.delete_timeout_s)), id);
            return;
        }
        for sid in affected {
            self.unreserve(sid);
            let s = self.servers.get_mut(&sid).expect("known");
            let starting = matches!(s.state, State::AwaitingStart { .. });
            s.state = State::Lost { node: id, starting };
            self.clear_idle(sid);
            self.publish(Event::ServerLost { server: sid, node: id });
        }
    }

    /// Reconcile a node's containers with what the engine believes.
    fn on_node_containers(&mut self, id: NodeId, listed: Vec<ServerId>) -> Reply {
        if self.fleet.get(id).is_none() {
            return Reply::Ignored("unknown node");
        }
        let listed: BTreeSet<ServerId> = listed.into_iter().collect();
        let ours: Vec<(ServerId, State)> =
            self.booked_on(id).map(|sid| (sid, self.servers[&sid].state.clone())).collect();
        for (sid, state) in &ours {
            let present = listed.contains(sid);
            match state {
                State::Lost { starting, .. } if present => {
                    self.servers.get_mut(sid).expect("known").state = State::Running { node: id };
                    if *starting {
                        self.world_started(*sid, id);
                        self.counters.started += 1;
                        self.publish(Event::Started { server: *sid, node: id });
                    }
                }
                State::Lost { starting: true, .. } if !present => {
                    // Its start may have run here before the node went away (its report
                    // lost): the request ends now, and the stop's answer says whether its
                    // world is here.
                    self.start_lost(*sid);
                    self.request_exit(*sid, id, ExitKind::NodeLost);
                }
                State::Lost { .. } | State::Running { .. } if !present => {
                    self.servers.get_mut(sid).expect("known").state =
                        State::AwaitingExit { node: id, kind: ExitKind::NodeLost };
                    self.finish_exit(*sid, id, ExitKind::NodeLost);
                    // A start that was still on its way to the node must not come up
                    // unseen after the server restarts elsewhere.
                    self.out.push_back(Command::StopContainer { server: *sid, node: id, reason: StopReason::Cleanup });
                }
                // Not running. If it may have run here without the engine knowing (a
                // start that timed out or was cancelled), the stop's answer says whether
                // its world is here; otherwise nothing is left to learn.
                State::AwaitingExit { kind, .. } if !present => {
                    let known = self.cfg.storage != Storage::NodeLocal || self.servers[sid].world == Some(id);
                    if known {
                        self.finish_exit(*sid, id, *kind);
                    }
                }
                _ => {}
            }
        }
        for sid in listed {
            let expected = self
                .servers
                .get(&sid)
                .is_some_and(|s| s.bound == Some(id) && !matches!(s.state, State::Stopped | State::Queued));
            if !expected {
                self.out.push_back(Command::StopContainer { server: sid, node: id, reason: StopReason::Cleanup });
            }
        }
        self.queue_pass_wanted = true;
        Reply::Ok
    }

    fn on_release_lost(&mut self, id: ServerId) -> Reply {
        let Some(s) = self.servers.get(&id) else { return Reply::Ignored("unknown server") };
        let (node, stopping) = match s.state {
            State::Lost { node, .. } => (node, None),
            // Asked to stop while its node was lost: the stop can never be confirmed.
            State::AwaitingExit { node, kind }
                if self.fleet.get(node).is_some_and(|n| n.health == Health::Unhealthy) =>
            {
                (node, Some(kind))
            }
            _ => return Reply::Ignored("server is not lost"),
        };
        // The world on that node is given up (not a copy elsewhere, e.g. the source of a
        // move that never happened).
        if self.servers[&id].world == Some(node) {
            self.set_world(id, None);
        }
        if let Some(kind) = stopping {
            self.out.push_back(Command::StopContainer { server: id, node, reason: StopReason::Cleanup });
            self.finish_exit(id, node, kind);
            return Reply::Ok;
        }
        // The operator vouches that the container is dead (a restore from the archive,
        // if any, follows).
        self.unbind(id);
        // Best effort, should the node come back with a late start.
        self.out.push_back(Command::StopContainer { server: id, node, reason: StopReason::Cleanup });
        self.requeue_at_head(id, node);
        Reply::Ok
    }

    // ---------------------------------------------------------------- recovery

    fn on_recover(&mut self, snap: Snapshot) -> Reply {
        for name in &snap.names_in_use {
            self.name_in_use(name);
        }
        for id in snap.archived {
            self.archived.insert(id);
        }
        let mut containers = snap.containers;
        containers.sort_by_key(|c| (c.server, !c.running, c.node));
        for c in containers {
            if self.fleet.get(c.node).is_none_or(|n| n.system || n.lifecycle != Lifecycle::Active) {
                self.log.add(self.now, "warn", format!("recovery: {} on unknown or system node {}", c.server, c.node));
                self.out.push_back(Command::StopContainer {
                    server: c.server,
                    node: c.node,
                    reason: StopReason::Cleanup,
                });
                continue;
            }
            if let Some((world, bound)) = self.servers.get(&c.server).map(|s| (s.world, s.bound)) {
                // A container of a server whose world the engine does not know (a node
                // first reached after a restart): its newest world is there.
                if self.cfg.storage == Storage::NodeLocal && world.is_none() {
                    self.set_world(c.server, Some(c.node));
                    self.schedule_archive(c.server);
                }
                // A second container of one server: keep the first (running first, then
                // lowest node id) and stop this one.
                if bound != Some(c.node) {
                    self.out.push_back(Command::StopContainer {
                        server: c.server,
                        node: c.node,
                        reason: StopReason::Cleanup,
                    });
                }
                continue;
            }
            let seq = self.queue.tail_seq();
            self.servers.insert(
                c.server,
                Server::recovered(
                    (c.ram_mb, c.plan, c.user),
                    if c.running { State::Running { node: c.node } } else { State::Stopped },
                    seq,
                    self.now,
                ),
            );
            if c.running || c.plan == Plan::Reserved {
                self.bind(c.server, c.node);
            }
            if self.cfg.storage == Storage::NodeLocal {
                self.set_world(c.server, Some(c.node));
            }
            self.schedule_archive(c.server);
            let n = self.fleet.get(c.node).expect("checked");
            if n.allocated_mb() > n.usable_mb(self.fleet.reserve()) {
                self.overcommitted.insert(c.node);
            }
        }
        self.recover_worlds(snap.worlds);
        for c in snap.starting {
            let known = self.servers.get(&c.server).is_some_and(|s| s.state != State::Stopped || s.bound.is_some());
            let node_ok = self.fleet.get(c.node).is_some_and(|n| !n.system && n.lifecycle == Lifecycle::Active);
            if known || !node_ok {
                continue; // its queued record (if any) requeues it
            }
            let seq = self.queue.tail_seq();
            let state = State::Lost { node: c.node, starting: true };
            let s = self.servers.get_or_insert_with(c.server, || {
                Server::recovered((c.ram_mb, c.plan, c.user), State::Stopped, seq, self.now)
            });
            (s.ram_mb, s.plan, s.user, s.state) = (c.ram_mb, c.plan, c.user, state);
            self.unschedule_archive(c.server);
            self.bind(c.server, c.node);
            self.counters.requests += 1;
        }
        let mut queued = snap.queued;
        queued.sort_by_key(|q| (q.queued_at, q.server));
        for q in queued {
            if self.servers.get(&q.server).is_some_and(|s| s.state != State::Stopped) || q.ram_mb == 0 {
                continue;
            }
            // Keep the original queue time (waits stay honest) but give the restarted
            // engine a full startup delay and one timeout before giving up.
            let deadline = q
                .queued_at
                .plus(s_to_ms(self.cfg.queue.timeout_s))
                .max(self.startup_end().plus(s_to_ms(self.cfg.queue.timeout_s)));
            let seq = self.queue.tail_seq();
            let s = self.servers.get_or_insert_with(q.server, || Server {
                ram_mb: q.ram_mb,
                plan: q.plan,
                user: q.user,
                state: State::Stopped,
                bound: None,
                world: None,
                world_gen: 0,
                seq,
                queued_at: q.queued_at,
                deadline,
                zero_players_since: None,
                archive_due: None,
                reservation: None,
                stop_retry_at: None,
                requeue_after_exit: false,
                archive_sent: None,
            });
            s.state = State::Queued;
            s.seq = seq;
            s.queued_at = q.queued_at;
            s.deadline = deadline;
            self.unbind(q.server);
            let s = self.servers.get_mut(&q.server).expect("just inserted");
            (s.ram_mb, s.plan, s.user) = (q.ram_mb, q.plan, q.user);
            self.unschedule_archive(q.server);
            self.counters.requests += 1;
            self.queue.insert(QueueEntry {
                server: q.server,
                ram_mb: q.ram_mb,
                plan: q.plan,
                user: q.user,
                seq,
                queued_at: q.queued_at,
                deadline,
                not_before: self.now,
            });
        }
        self.queue_pass_wanted = true;
        self.scaling_wanted = true;
        Reply::Ok
    }

    /// World copies found on nodes at recovery; which copy counts is documented on
    /// `WorldRecord`. A server the engine already places (a container record in this
    /// recovery, or it runs or starts somewhere) keeps its world where the engine has it.
    fn recover_worlds(&mut self, mut worlds: Vec<WorldRecord>) {
        if self.cfg.storage != Storage::NodeLocal {
            return;
        }
        worlds.sort_by_key(|w| (w.server, !w.current, w.node));
        let mut last = None;
        for w in worlds {
            let usable = self
                .fleet
                .get(w.node)
                .is_some_and(|n| !n.system && matches!(n.lifecycle, Lifecycle::Active | Lifecycle::Draining));
            if !usable {
                self.log.add(
                    self.now,
                    "warn",
                    format!("recovery: world of {} on unknown or system node {}", w.server, w.node),
                );
                continue;
            }
            if last == Some(w.server) {
                self.log.add(
                    self.now,
                    "warn",
                    format!("recovery: older copy of {}'s world on {} ignored", w.server, w.node),
                );
                continue;
            }
            last = Some(w.server);
            if !w.current && self.archived.contains(&w.server) {
                // Possibly an interrupted restore: the archive is the authority.
                self.log.add(
                    self.now,
                    "warn",
                    format!("recovery: {}'s copy on {} is not current; archive kept", w.server, w.node),
                );
                continue;
            }
            match self.servers.get(&w.server) {
                Some(s) if s.world.is_some() || !matches!(s.state, State::Stopped | State::Queued) => continue,
                Some(_) => {}
                None => {
                    let seq = self.queue.tail_seq();
                    self.servers
                        .insert(w.server, Server::recovered((w.ram_mb, w.plan, w.user), State::Stopped, seq, self.now));
                }
            }
            self.set_world(w.server, Some(w.node));
            // A stopped reserved server keeps its RAM where its world is, as with a
            // stopped container.
            let s = &self.servers[&w.server];
            if s.plan == Plan::Reserved && s.state == State::Stopped && s.bound.is_none() {
                self.bind(w.server, w.node);
                let n = self.fleet.get(w.node).expect("checked");
                if n.allocated_mb() > n.usable_mb(self.fleet.reserve()) {
                    self.overcommitted.insert(w.node);
                }
            }
            self.schedule_archive(w.server);
        }
    }

    // ---------------------------------------------------------------- scaling

    fn scaling_context(&self) -> ScalingContext<'_> {
        let recent_peak = self.peak_demand_mb(self.peak_window_min());
        let mut ctx = ScalingContext::gather(
            self.now,
            &self.fleet,
            &self.queue,
            &self.cfg,
            &self.type_backoff_until,
            self.last_scale_up,
            self.last_scale_down,
            self.demand_at_last_sale_mb,
        );
        ctx.recent_peak_demand_mb = recent_peak.max(ctx.demand_mb());
        ctx.history_peak_demand_mb = self.season_peak_mb(s_to_ms(self.cfg.scaling.cap_horizon_s));
        ctx.season_ahead_mb = self.season_peak_mb(s_to_ms(self.cfg.spare_pool.trend_lead_s));
        ctx.mean_start_mb = self.start_sizes.0.checked_div(self.start_sizes.1).unwrap_or(0);
        ctx.last_health_change = self.last_health_change;
        ctx.consolidating = &self.consolidating;
        ctx
    }

    /// Remember this minute's demand; forget minutes older than any window may need.
    fn record_demand(&mut self, demand_mb: u64) {
        let minute = self.now.0 / 60_000;
        match self.demand_peaks.back_mut() {
            Some((m, d)) if *m == minute => *d = (*d).max(demand_mb),
            _ => self.demand_peaks.push_back((minute, demand_mb)),
        }
        let s = &self.cfg.scaling;
        let mut keep_min = s.rebuy_cooldown_s.div_ceil(60);
        if s.flap_memory_s > 0 {
            keep_min = keep_min.max(s.flap_hold_max_s.div_ceil(60));
        }
        while self.demand_peaks.front().is_some_and(|&(m, _)| m + keep_min < minute) {
            self.demand_peaks.pop_front();
        }
        let hour = minute / 60;
        self.first_demand_hour.get_or_insert(hour);
        match self.hourly_peaks.back_mut() {
            Some((h, d)) if *h == hour => *d = (*d).max(demand_mb),
            _ => self.hourly_peaks.push_back((hour, demand_mb)),
        }
        let keep_h = s.cap_history_s / 3600 + 1;
        while self.hourly_peaks.front().is_some_and(|&(h, _)| h + keep_h <= hour) {
            self.hourly_peaks.pop_front();
        }
    }

    /// The peak demand one season ago (`scaling.cap_history_s`, a week) over the hours
    /// from now to `horizon_ms` ahead: what that stretch asked for last week. `None` until
    /// a season has been recorded, or when off.
    fn season_peak_mb(&self, horizon_ms: u64) -> Option<u64> {
        let season_h = self.cfg.scaling.cap_history_s / 3600;
        let hour = self.now.0 / 3_600_000;
        let first = self.first_demand_hour?;
        if season_h == 0 || hour < first + season_h {
            return None;
        }
        let from = hour - season_h;
        // The hour the horizon ends in (an end on the hour is the hour before it).
        let to = (self.now.plus(horizon_ms).0.saturating_sub(1) / 3_600_000).max(hour) - season_h;
        // Hours ascend: a binary search finds the window (called at every evaluation).
        let lo = self.hourly_peaks.partition_point(|&(h, _)| h < from);
        let hi = self.hourly_peaks.partition_point(|&(h, _)| h <= to);
        self.hourly_peaks.range(lo..hi).map(|&(_, d)| d).max()
    }

    /// Drop the sales older than the rebuy cooldown: no purchase can be a flap of them.
    fn forget_old_sales(&mut self) {
        let (now, cooldown_ms) = (self.now, s_to_ms(self.cfg.scaling.rebuy_cooldown_s));
        self.recent_sales.retain(|&t| now.since(t) < cooldown_ms);
    }

    /// The minutes a sale must look back over: the rebuy cooldown, or the hold learned from
    /// a flap while it lasts.
    fn peak_window_min(&self) -> u64 {
        let cooldown = self.cfg.scaling.rebuy_cooldown_s.div_ceil(60);
        if self.flap_hold_active() {
            cooldown.max(self.flap_hold_min)
        } else {
            cooldown
        }
    }

    /// A hold learned from a flap that has kept a node within `scaling.flap_memory_s`.
    fn flap_hold_active(&self) -> bool {
        self.flap_hold_min > 0 && self.now.since(self.flap_hold_used) < s_to_ms(self.cfg.scaling.flap_memory_s)
    }

    /// The peak demand of the last `window_min` minutes (the current one included).
    fn peak_demand_mb(&self, window_min: u64) -> u64 {
        let minute = self.now.0 / 60_000;
        self.demand_peaks
            .iter()
            .rev()
            .take_while(|&&(m, _)| m + window_min >= minute)
            .map(|&(_, d)| d)
            .max()
            .unwrap_or(0)
    }

    /// A purchase within the rebuy cooldown of the sale at `sold`: demand came back as high
    /// as `demand_mb` after a lull longer than the sale's window. Learn to hold nodes
    /// through a lull that long (from the last minute before the sale with demand this
    /// high, plus 5 minutes), so that the same oscillation does not flap again.
    fn learn_flap(&mut self, sold: Millis, demand_mb: u64, bought: u32) {
        // Each VM bought back for a node sold within the cooldown counts once.
        self.forget_old_sales();
        let now = self.now;
        let back = self.recent_sales.len().min(bought as usize);
        self.counters.rebuys += back as u64;
        self.recent_sales.drain(..back);
        let s = &self.cfg.scaling;
        if s.flap_memory_s == 0 {
            return;
        }
        // A hold that has lapsed is forgotten, not revived by a short flap.
        let active = self.flap_hold_active();
        if !active {
            self.flap_hold_min = 0;
        }
        let (minute, sold_min) = (now.0 / 60_000, sold.0 / 60_000);
        let Some(&(high, _)) = self.demand_peaks.iter().rev().find(|&&(m, d)| m <= sold_min && d >= demand_mb) else {
            return;
        };
        let hold = (minute - high + 5).min(s.flap_hold_max_s / 60);
        if hold <= self.peak_window_min() {
            if active {
                self.flap_hold_used = now;
            }
            return;
        }
        self.log.add(
            now,
            "info",
            format!(
                "bought {} s after a sale at demand {demand_mb} MB, last seen {} min ago: sales now wait for the peak of the last {hold} min",
                now.since(sold) / 1000,
                minute - high
            ),
        );
        self.flap_hold_min = hold;
        self.flap_hold_used = now;
    }

    /// One evaluation: one action, except that after a sale the policies are asked
    /// again, up to `scaling.max_sales_per_evaluation` sales (`seed`, the design's
    /// algorithm, sells one): nodes empty at the same time are returned together instead
    /// of one per interval, which would miss their billing windows.
    fn evaluate_scaling(&mut self) {
        self.scaling_wanted = false;
        if !self.operator_drained.is_empty() {
            self.return_drained();
        }
        // Demand history is kept while scaling is paused too: a week later the seasonal
        // peaks must not have a hole where the pause was.
        let demand_now = self.queue.total_ram_mb() + self.allocated_mb();
        self.record_demand(demand_now);
        if !self.cfg.scaling.enabled || self.scaling_paused {
            return;
        }
        let mut sales = 0;
        while let Some(policy) = self.evaluate_once(sales == 0) {
            sales += 1;
            if policy == "seed" || sales >= self.cfg.scaling.max_sales_per_evaluation {
                break;
            }
        }
    }

    /// One round of [`Conductor::evaluate_scaling`]: at most one action. A scale-up the
    /// engine refuses (type in backoff, over budget, a rebuy too soon after a sale) passes
    /// the question to the next policy; so does a scale-down another policy vetoes.
    /// Returns the selling policy when the action was a sale. Rounds after the `first`
    /// only sell (no buy or move right after a sale) and count no refusal or veto again.
    fn evaluate_once(&mut self, first: bool) -> Option<&'static str> {
        let mut policies = std::mem::take(&mut self.policies);
        let mut refusals = Vec::new();
        let mut vetoes = 0;
        // Recorded once per evaluation by `evaluate_scaling`; a sale changes neither.
        let demand_now = self.queue.total_ram_mb() + self.allocated_mb();
        // What the cooldown's window alone would keep: a node kept beyond it is kept by
        // the learned hold, which then stays.
        let cooldown_peak = self.peak_demand_mb(self.cfg.scaling.rebuy_cooldown_s.div_ceil(60)).max(demand_now);
        let mut hold_used = false;
        let migrating_from: BTreeSet<NodeId> = self.migrations.values().map(|m| m.from).collect();
        let servers_buf: Vec<ServerInfo>;
        let (decision, demand) = {
            let mut ctx = self.scaling_context();
            ctx.migrating_from = &migrating_from;
            for p in policies.iter_mut() {
                p.observe(&ctx);
            }
            let at_max = ctx.cloud_nodes >= ctx.max_cloud_nodes;
            let mut decision = None;
            // Only the first round may buy.
            for p in policies.iter_mut().filter(|_| first) {
                if let Some(mut up) = p.scale_up(&ctx) {
                    if at_max {
                        continue;
                    }
                    if let Some((kind, why)) = policy::refusal(&ctx, &up) {
                        refusals.push((p.name(), kind, why));
                        continue;
                    }
                    // Several VMs at once only within the node maximum and the budget.
                    let slots = ctx.max_cloud_nodes - ctx.cloud_nodes;
                    let price = ctx.catalogue[up.server_type].hourly_eur;
                    let affordable = match ctx.scaling.budget_eur_per_hour {
                        Some(cap) if price > 0.0 => ((cap + 1e-9 - ctx.cloud_eur_per_hour) / price).floor().max(1.0),
                        _ => f64::from(u32::MAX),
                    };
                    up.count = up.count.clamp(1, slots.min(affordable as u32).max(1));
                    decision = Some((p.name(), Decision::Up(up)));
                    break;
                }
            }
            if decision.is_none() {
                for i in 0..policies.len() {
                    let Some(down) = policies[i].scale_down(&ctx) else { continue };
                    let Some(node) = ctx.fleet.get(down.node) else { continue };
                    // No flapping: the rest must hold the peak demand of the last
                    // rebuy cooldown, each node losing half a server of the mean start
                    // size to fragmentation, and no other policy may want the node kept.
                    // A node cordoned by consolidation adds no capacity: selling it
                    // takes nothing from anyone.
                    let rest = ctx.packed_usable_without_mb(node.id, ctx.mean_start_mb);
                    let kept = !ctx.consolidating.contains(&node.id)
                        && (rest < ctx.recent_peak_demand_mb
                            || policies.iter().enumerate().any(|(j, q)| j != i && q.keep(&ctx, node).is_some()));
                    if kept {
                        hold_used |= rest < ctx.recent_peak_demand_mb && rest >= cooldown_peak;
                        vetoes += 1;
                        continue;
                    }
                    decision = Some((policies[i].name(), Decision::Down(down)));
                    break;
                }
            }
            if first && decision.is_none() && policies.iter().any(|p| p.wants_servers(&ctx)) {
                servers_buf = self.running_servers();
                ctx.servers = &servers_buf;
                for i in 0..policies.len() {
                    let Some(c) = policies[i].consolidate(&ctx) else { continue };
                    // Emptying a node sells it: another policy that keeps it (a spare
                    // pool's minimum or headroom) vetoes the move as it would the sale.
                    let kept = ctx
                        .fleet
                        .get(c.node)
                        .is_some_and(|n| policies.iter().enumerate().any(|(j, q)| j != i && q.keep(&ctx, n).is_some()));
                    if kept {
                        vetoes += 1;
                        continue;
                    }
                    decision = Some((policies[i].name(), Decision::Consolidate(c)));
                    break;
                }
            }
            (decision, ctx.recent_peak_demand_mb)
        };
        self.policies = policies;
        if hold_used {
            self.flap_hold_used = self.now;
        }
        // Later rounds ask for no purchase (so refuse none) and meet the same vetoes again.
        if first {
            self.counters.scale_down_vetoes += vetoes;
        }
        for (name, kind, why) in refusals {
            match kind {
                policy::Refusal::Budget => self.counters.budget_refusals += 1,
                policy::Refusal::Rebuy => self.counters.rebuy_refusals += 1,
                policy::Refusal::Backoff => {}
            }
            self.log.add(self.now, "warn", format!("scale-up by {name} refused: {why}"));
        }
        match decision {
            Some((name, Decision::Up(up))) => {
                let cooldown_ms = s_to_ms(self.cfg.scaling.rebuy_cooldown_s);
                if let Some(sold) = self.last_scale_down.filter(|&t| self.now.since(t) < cooldown_ms) {
                    self.learn_flap(sold, demand_now, up.count);
                }
                for _ in 0..up.count {
                    self.scale_up(name, up.clone());
                }
            }
            Some((name, Decision::Down(down))) => {
                if self.scale_down(name, down) {
                    self.forget_old_sales();
                    self.recent_sales.push_back(self.now);
                    self.demand_at_last_sale_mb = Some(demand);
                    return Some(name);
                }
            }
            Some((name, Decision::Consolidate(c))) => self.consolidate(name, c),
            None => {}
        }
        None
    }

    /// A provisioning of `server_type`, bought at `bought`, failed: back the type off,
    /// doubling with each failed scale-up (as the Cluster Autoscaler backs off a node
    /// group). The other VMs of a scale-up already backed off for (bought no later than the
    /// backoff began) add nothing: one out-of-stock purchase of five VMs is one failure.
    fn type_failed(&mut self, server_type: Option<&str>, bought: Millis) {
        let Some(i) = server_type.and_then(|t| self.cfg.catalogue.iter().position(|c| c.name == t)) else { return };
        if self.type_backoff_since[i].is_some_and(|since| bought <= since) {
            return;
        }
        self.type_backoff_since[i] = Some(self.now);
        let wait = self.type_backoff_next_ms[i];
        self.type_backoff_until[i] = self.now.plus(wait);
        self.type_backoff_next_ms[i] = wait.saturating_mul(2).min(s_to_ms(self.cfg.scaling.type_backoff_max_s));
        let name = self.cfg.catalogue[i].name.clone();
        self.log.add(self.now, "warn", format!("{name} backs off for {} s after a failed provisioning", wait / 1000));
    }

    /// A VM of `server_type` came up: its backoff starts over.
    fn type_succeeded(&mut self, server_type: Option<&str>) {
        if let Some(i) = server_type.and_then(|t| self.cfg.catalogue.iter().position(|c| c.name == t)) {
            self.type_backoff_next_ms[i] = s_to_ms(self.cfg.scaling.type_backoff_s);
        }
    }

    fn scale_up(&mut self, policy: &'static str, up: policy::ScaleUp) {
        assert!(self.cloud_nodes() < self.cfg.scaling.max_cloud_nodes, "scale-up past the cloud node maximum");
        let t = self.cfg.catalogue[up.server_type].clone();
        self.cloud_seq += 1;
        let name = format!("{}-{}", self.cfg.cloud_name_prefix, self.cloud_seq);
        let id = self.register(NodeSpec {
            name: name.clone(),
            address: String::new(),
            kind: NodeKind::Cloud,
            system: false,
            total_ram_mb: t.ram_mb,
            cores: t.cores,
            hourly_eur: t.hourly_eur,
            labels: BTreeMap::from([("managed_by".to_string(), "conductor".to_string())]),
            provider_id: None,
            server_type: Some(t.name.clone()),
        });
        self.unschedule_probe(id);
        self.fleet.update(id, |n| n.lifecycle = Lifecycle::AwaitingProvision);
        self.provisions.insert(self.now.plus(s_to_ms(self.cfg.scaling.provision_timeout_s)), id);
        self.last_scale_up = Some(self.now);
        self.counters.scale_ups += 1;
        self.log.add(self.now, "info", format!("scale up {name} ({}) by {policy}: {}", t.name, up.reason));
        self.publish(Event::ScaleUp {
            node: id,
            server_type: t.name.clone(),
            policy: policy.to_string(),
            reason: up.reason,
        });
        self.out.push_back(Command::ProvisionNode { node: id, name, server_type: t.name });
    }

    /// Whether the node was released.
    fn scale_down(&mut self, policy: &'static str, down: policy::ScaleDown) -> bool {
        let Some(n) = self.fleet.get(down.node) else { return false };
        // The engine's own safety check, whatever the policy says.
        // A node cordoned by consolidation is sold once empty and no move off it is in
        // flight (its servers run on their targets).
        let cordoned = self.consolidating.contains(&down.node)
            && n.lifecycle == Lifecycle::Draining
            && !self.migrations.values().any(|m| m.from == down.node);
        if n.kind != NodeKind::Cloud || n.system || !n.is_empty() || !(n.lifecycle == Lifecycle::Active || cordoned) {
            self.log.add(
                self.now,
                "warn",
                format!("{policy} asked to delete {} which is not an empty active cloud node", n.name),
            );
            return false;
        }
        if self.now.since(n.registered_at) < s_to_ms(self.cfg.scaling.min_node_lifetime_s) {
            self.log.add(
                self.now,
                "warn",
                format!("{policy} asked to delete {} younger than scaling.min_node_lifetime_s", n.name),
            );
            return false;
        }
        let (name, provider_id) = (n.name.clone(), n.provider_id.clone());
        let now = self.now;
        self.fleet.update(down.node, |n| {
            n.lifecycle = Lifecycle::Draining;
            n.draining_since = Some(now);
        });
        self.deletes.insert(now.plus(s_to_ms(self.cfg.scaling.delete_timeout_s)), down.node);
        self.consolidating.remove(&down.node);
        self.last_scale_down = Some(now);
        self.counters.scale_downs += 1;
        self.log.add(now, "info", format!("scale down {name} by {policy}: {}", down.reason));
        self.publish(Event::ScaleDown { node: down.node, policy: policy.to_string(), reason: down.reason });
        self.out.push_back(Command::DeleteNode { node: down.node, name, provider_id });
        true
    }

    // ---------------------------------------------------------------- time

    fn advance(&mut self, now: Millis) {
        assert!(now >= self.now, "time went backwards: {} after {}", now, self.now);
        self.now = now;
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        if self.startup_pending && now >= self.startup_end() {
            self.startup_pending = false;
            self.queue_pass_wanted = true;
        }
        if now >= self.next_queue_tick {
            self.next_queue_tick = now.plus(s_to_ms(self.cfg.queue_tick_s));
            self.queue_pass_wanted = true;
        }
        if self.cfg.scaling.enabled && now >= self.next_scaling {
            self.next_scaling = now.plus(s_to_ms(self.cfg.scaling.interval_s));
            self.scaling_wanted = true;
        }
        for e in self.queue.expire(now) {
            let waited_ms = now.since(e.queued_at);
            self.fail(e.server, FailReason::QueueTimeout { waited_ms });
        }
        let timeout_ms = s_to_ms(self.cfg.health.probe_timeout_s);
        while let Some((t, nodes)) = self.probe_timeouts.pop_due(now) {
            for &id in &nodes {
                let p = &mut self.probes[id.0 as usize];
                if p.out.map(|sent| sent.plus(timeout_ms)) != Some(t) {
                    continue; // answered (or unscheduled) since
                }
                p.out = None;
                self.probe_result(id, false);
            }
            self.probe_timeouts.recycle(nodes);
        }
        self.send_probes();
        while let Some((_, id)) = self.grace.pop_due(now) {
            self.node_lost(id);
        }
        while let Some((_, id)) = self.reservations.pop_due(now) {
            if let Some(s) = self.servers.get_mut(&id) {
                s.reservation = None;
            }
            if let Some(State::AwaitingStart { node, .. }) = self.servers.get(&id).map(|s| s.state.clone()) {
                // It may be up there without having reported (and then its newest world
                // is there): its RAM stays booked and it is stopped, repeatedly until the
                // node answers; the stop's answer says whether it ran there.
                if let Some(m) = self.migrations.remove(&id) {
                    self.counters.migrations_aborted += 1;
                    let reason = "no start report on the target".to_string();
                    self.publish(Event::MigrationAborted { server: id, from: m.from, to: node, reason });
                    self.servers.get_mut(&id).expect("known").requeue_after_exit = true;
                } else {
                    // The request ends now; the server is busy until the stop is answered.
                    self.counters.failed += 1;
                    self.publish(Event::StartFailed { server: id, reason: FailReason::ReservationTimeout });
                }
                self.request_exit(id, node, ExitKind::StartTimedOut);
            }
        }
        while let Some((_, id)) = self.stop_retries.pop_due(now) {
            let Some(s) = self.servers.get_mut(&id) else { continue };
            s.stop_retry_at = None;
            if let State::AwaitingExit { node, kind } = s.state {
                let reason = stop_reason(kind);
                s.stop_retry_at = Some(self.stop_retries.insert(now.plus(STOP_RETRY_MS), id));
                self.out.push_back(Command::StopContainer { server: id, node, reason });
            }
        }
        while let Some((t, id)) = self.idle.pop_due(now) {
            let idle_ms = s_to_ms(self.cfg.idle_shutdown_s);
            let due = |s: &Server| s.zero_players_since.is_some_and(|z| z.plus(idle_ms) == t);
            if let Some(State::Running { node }) = self.servers.get(&id).filter(|s| due(s)).map(|s| s.state.clone()) {
                self.servers.get_mut(&id).expect("known").zero_players_since = None;
                self.request_exit(id, node, ExitKind::Idle);
            }
        }
        while let Some((_, id)) = self.archives.pop_due(now) {
            let Some(s) = self.servers.get_mut(&id) else { continue };
            s.archive_due = None;
            if let (Some(node), State::Stopped, None) = (s.world, &s.state, s.bound) {
                let retry = now.plus(ARCHIVE_RETRY_MS);
                s.archive_due = Some(self.archives.insert(retry, id));
                let generation = s.world_gen;
                s.archive_sent = Some((generation, now));
                self.out.push_back(Command::ArchiveWorld { server: id, node, generation });
            }
        }
        while let Some((_, id)) = self.provisions.pop_due(now) {
            let Some(n) = self.fleet.get(id) else { continue };
            if n.health == Health::Healthy {
                continue;
            }
            let (name, provider_id, lifecycle, empty) =
                (n.name.clone(), n.provider_id.clone(), n.lifecycle, n.is_empty());
            let (server_type, bought) = (n.server_type.clone(), n.registered_at);
            self.type_failed(server_type.as_deref(), bought);
            self.publish(Event::ProvisionFailed {
                node: id,
                reason: "no healthy report before the provision timeout".into(),
            });
            if lifecycle == Lifecycle::AwaitingProvision {
                // The VM may exist without having been reported: delete it by name and
                // repeat until the delete is confirmed (a refused call would leave it
                // billed for ever).
                self.fleet.update(id, |n| n.lifecycle = Lifecycle::Draining);
                self.out.push_back(Command::DeleteNode { node: id, name, provider_id });
                self.deletes.insert(now.plus(s_to_ms(self.cfg.scaling.delete_timeout_s)), id);
            } else if empty {
                self.fleet.update(id, |n| n.lifecycle = Lifecycle::Draining);
                self.out.push_back(Command::DeleteNode { node: id, name, provider_id });
                self.deletes.insert(now.plus(s_to_ms(self.cfg.scaling.delete_timeout_s)), id);
            }
            self.scaling_wanted = true;
        }
        while let Some((_, id)) = self.deletes.pop_due(now) {
            let Some(n) = self.fleet.get(id) else { continue };
            let (name, provider_id) = (n.name.clone(), n.provider_id.clone());
            self.out.push_back(Command::DeleteNode { node: id, name, provider_id });
            self.deletes.insert(now.plus(s_to_ms(self.cfg.scaling.delete_timeout_s)), id);
        }
    }

    /// Run the passes an input or timer asked for: scaling first (so a placeholder is
    /// there before anyone asks again), then the queue.
    fn settle(&mut self) {
        if self.scaling_wanted {
            self.evaluate_scaling();
        }
        if self.queue_pass_wanted {
            self.process_queue();
        }
    }

    fn publish(&mut self, e: Event) {
        self.log.event(self.now, &e);
        self.out.push_back(Command::Publish(e));
    }

    // ---------------------------------------------------------------- invariants

    /// The O(n) check of every invariant; returns one line per violation.
    pub fn check_invariants(&self) -> Vec<String> {
        crate::invariants::check(self)
    }

    pub(crate) fn invariant_view(&self) -> InvariantView<'_> {
        InvariantView {
            fleet: &self.fleet,
            queue: &self.queue,
            cfg: &self.cfg,
            overcommitted: &self.overcommitted,
            servers: self
                .servers
                .iter()
                .map(|(id, s)| ServerView {
                    id,
                    ram_mb: s.ram_mb,
                    plan: s.plan,
                    bound: s.bound,
                    world: s.world,
                    status: Self::status_of(s),
                })
                .collect(),
            reservations: self.reservations.keys().collect(),
            migrations: self
                .migrations
                .iter()
                .map(|(&id, m)| MigrationView {
                    server: id,
                    from: m.from,
                    to: m.to,
                    ram_mb: m.ram_mb,
                    starting: m.starting,
                    held: m.held,
                })
                .collect(),
            consolidating: &self.consolidating,
            booked_on: &self.booked_on,
        }
    }
}

enum Decision {
    Up(policy::ScaleUp),
    Down(policy::ScaleDown),
    Consolidate(Consolidate),
}

/// A server as the outside sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerStatus {
    Queued { position: usize },
    Starting { node: NodeId },
    Running { node: NodeId },
    Stopping { node: NodeId },
    Lost { node: NodeId },
    Stopped { booked_on: Option<NodeId>, world_on: Option<NodeId> },
}

pub(crate) struct ServerView {
    pub id: ServerId,
    pub ram_mb: u32,
    pub plan: Plan,
    pub bound: Option<NodeId>,
    pub world: Option<NodeId>,
    pub status: ServerStatus,
}

pub(crate) struct InvariantView<'a> {
    pub fleet: &'a Fleet,
    pub queue: &'a StartQueue,
    pub cfg: &'a Config,
    pub overcommitted: &'a BTreeSet<NodeId>,
    pub servers: Vec<ServerView>,
    pub reservations: Vec<ServerId>,
    pub migrations: Vec<MigrationView>,
    pub consolidating: &'a BTreeSet<NodeId>,
    pub booked_on: &'a [SortedSet<ServerId>],
}

pub(crate) struct MigrationView {
    pub server: ServerId,
    pub from: NodeId,
    pub to: NodeId,
    pub ram_mb: u32,
    pub starting: bool,
    pub held: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Demand recorded every hour up to hour `at_h` (`demand(h)` in hour h), then the
    /// seasonal peak over `horizon_h` hours ahead and how many hours are kept.
    fn history_at(cfg: Config, demand: impl Fn(u64) -> u64, at_h: u64, horizon_h: u64) -> (Option<u64>, usize) {
        let mut c = Conductor::new(cfg, Millis(0)).expect("valid config");
        for h in 0..=at_h {
            c.now = Millis(h * 3_600_000);
            c.record_demand(demand(h));
        }
        (c.season_peak_mb(horizon_h * 3_600_000), c.hourly_peaks.len())
    }

    #[test]
    fn the_seasonal_peak_is_the_coming_hours_one_week_ago() {
        let week = 7 * 24;
        let cfg = Config::default();
        // For now = day 8, 06:00 the window is the 24 hours from day 1, 06:00. Spikes in
        // the hour before it and the hour after it never count; spikes in its first and
        // its last hour do.
        let now = 8 * 24 + 6;
        let (first, last) = (now - week, now - week + 23);
        let spikes = |at_first: bool, at_last: bool| {
            move |h: u64| match h {
                _ if h == first - 1 => 9_000,
                _ if h == last + 1 => 8_000,
                _ if h == first && at_first => 5_000,
                _ if h == last && at_last => 6_000,
                _ => 1,
            }
        };
        assert_eq!(history_at(cfg.clone(), spikes(false, false), now, 24).0, Some(1), "outside the window");
        assert_eq!(history_at(cfg.clone(), spikes(true, false), now, 24).0, Some(5_000), "its first hour");
        assert_eq!(history_at(cfg.clone(), spikes(false, true), now, 24).0, Some(6_000), "its last hour");
        let (_, kept) = history_at(cfg.clone(), |h| h, now, 24);
        assert_eq!(kept, week as usize + 1, "a week and the current hour");
        // A horizon ending on the next hour looks at this hour of last week alone.
        assert_eq!(history_at(cfg.clone(), |h| if h == first + 1 { 7_000 } else { 1 }, now, 1).0, Some(1));
        assert_eq!(history_at(cfg.clone(), |h| if h == first { 7_000 } else { 1 }, now, 1).0, Some(7_000));
        assert_eq!(history_at(cfg.clone(), |h| h, week - 1, 24).0, None, "less than a week recorded");
        let mut off = cfg;
        off.scaling.cap_history_s = 0;
        assert_eq!(history_at(off, |h| h, now, 24).0, None, "turned off");
    }

    #[test]
    fn demand_history_is_kept_while_scaling_is_paused() {
        let mut c = Conductor::new(Config::default(), Millis(0)).expect("valid config");
        c.scaling_paused = true;
        c.now = Millis(3 * 3_600_000);
        c.evaluate_scaling();
        assert_eq!(c.hourly_peaks.back(), Some(&(3, 0)), "the paused hour is recorded");
    }
}
