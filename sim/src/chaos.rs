//! Chaos runs: the unchanged engine against a hostile simulated world.
//!
//! One run takes a random window (a start offset and a length) of a scenario's trace,
//! and drives a fresh engine through it while faults drawn from the seed hit the
//! world: failing, hanging and out-of-stock provisioning, slow boots, cloud API rate
//! limiting, node crashes, network partitions, container start failures, duplicated,
//! late and lost command completions, and crashes of the conductor itself followed by
//! a restart that rebuilds the engine the way the live driver does (known nodes, then
//! one `Recover` snapshot from the world's containers and the persisted request store).
//!
//! Each fault kind draws from its own ChaCha stream, so the same scenario and seed give
//! the same run. The run has a safety phase (faults on, checks after every event) and a
//! liveness phase (faults healed, no new requests): the queue must drain, every request
//! must end, and once every server is stopped the world must hold no container and no
//! rented VM may stay idle beyond the policy's idle time plus one billing hour.
//!
//! The world applies a command's effect when the command is executed (a container
//! exists from its `docker run`, a stopped one is gone) and reports the outcome later;
//! reports belong to the conductor process that sent the command and die with it.

use crate::generate;
use crate::harness::gen_params;
use crate::scenario::{Loaded, TraceSource};
use crate::trace::{Action, TraceReader};
use conductor_core::model::{NodeId, NodeKind, Plan, ServerId, UserId, WorldAction};
use conductor_core::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io::BufRead;

/// The fault kinds, in the order they are reported.
pub const FAULT_KINDS: [&str; 12] = [
    "provision_failure",
    "provision_timeout",
    "out_of_stock",
    "slow_boot",
    "rate_limit",
    "node_crash",
    "partition",
    "container_start_failure",
    "duplicate_completion",
    "late_completion",
    "lost_completion",
    "conductor_crash",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    ProvisionFailure = 0,
    ProvisionTimeout,
    OutOfStock,
    SlowBoot,
    RateLimit,
    NodeCrash,
    Partition,
    ContainerStartFailure,
    Duplicate,
    Late,
    Lost,
    ConductorCrash,
}

const N_FAULTS: usize = 12;
/// Streams beyond the faults: the window, ordinary latencies.
const STREAM_WINDOW: u64 = 100;
const STREAM_LATENCY: u64 = 101;
/// Violations kept per seed (all are counted).
const VIOLATIONS_KEPT: usize = 20;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut z = seed ^ (stream + 0x5EED).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

/// How long the windows are; everything else comes from the seed.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    pub window_min_s: u64,
    pub window_max_s: u64,
}

impl Default for ChaosConfig {
    /// One to three days.
    fn default() -> Self {
        ChaosConfig { window_min_s: 86_400, window_max_s: 3 * 86_400 }
    }
}

/// A scenario's trace, read once and shared by all its seeds.
pub struct ChaosTrace {
    rows: Vec<TraceRow>,
    end_ms: u64,
}

#[derive(Clone)]
struct TraceRow {
    at_ms: u64,
    server: ServerId,
    action: Action,
    ram_mb: u32,
    plan: Plan,
    players: u32,
}

impl ChaosTrace {
    pub fn load(loaded: &Loaded) -> Result<ChaosTrace, String> {
        let seed = loaded.scenario.seed;
        let mut reader: TraceReader<Box<dyn BufRead>> = match &loaded.scenario.trace {
            TraceSource::Path(_) => {
                let path = loaded.trace_path().expect("path source");
                let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                TraceReader::new(path.display().to_string(), Box::new(std::io::BufReader::new(f)) as Box<dyn BufRead>)
                    .map_err(|e| e.to_string())?
            }
            TraceSource::Generate { generate: g } => {
                let mut buf = Vec::new();
                generate::generate(&gen_params(g, loaded), seed, &mut buf).map_err(|e| e.to_string())?;
                TraceReader::new(
                    format!("{}#generated", loaded.path.display()),
                    Box::new(std::io::Cursor::new(buf)) as Box<dyn BufRead>,
                )
                .map_err(|e| e.to_string())?
            }
        };
        let mut names: BTreeMap<String, u64> = BTreeMap::new();
        let mut rows = Vec::new();
        while let Some(r) = reader.next_row() {
            let r = r.map_err(|e| e.to_string())?;
            let next = names.len() as u64;
            let id = *names.entry(r.server.to_string()).or_insert(next);
            rows.push(TraceRow {
                at_ms: r.at_ms,
                server: ServerId(id),
                action: r.action,
                ram_mb: r.ram_mb,
                plan: r.plan.into(),
                players: r.players,
            });
        }
        let dur = loaded.duration_ms()?.unwrap_or(0);
        let end_ms = rows.last().map_or(0, |r| r.at_ms).max(dur);
        Ok(ChaosTrace { rows, end_ms })
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug, Serialize)]
pub struct SeedReport {
    pub scenario: String,
    /// The scenario file, as given.
    pub path: String,
    pub seed: u64,
    pub window: Window,
    pub faults: BTreeMap<String, u64>,
    pub requests: u64,
    pub events: u64,
    pub violation_count: u64,
    pub violations: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Window {
    pub start_s: u64,
    pub length_s: u64,
}

impl SeedReport {
    pub fn repro(&self) -> String {
        format!("conductor chaos {} --seed {}", self.path, self.seed)
    }
}

/// Per-seed fault intensities, drawn from each fault's own stream.
struct Rates {
    p: [f64; N_FAULTS],
}

// ------------------------------------------------------------------ the world

struct Host {
    kind: NodeKind,
    system: bool,
    ram_mb: u32,
    server_type: Option<String>,
    /// A VM reaches `booted` after its boot delay; owned hosts are booted.
    booted: bool,
    /// Not crashed.
    up: bool,
    partitioned: bool,
    containers: BTreeSet<ServerId>,
    /// When it last had no container and no world (rented VMs), for the idle check.
    idle_since: Option<u64>,
}

impl Host {
    fn reachable(&self) -> bool {
        self.booted && self.up && !self.partitioned
    }
}

#[derive(Clone, Copy)]
struct WorldCopy {
    host: u32,
    /// Written since its last archive.
    dirty: bool,
}

#[derive(Clone)]
struct StoreRow {
    ram_mb: u32,
    plan: Plan,
    user: UserId,
    state: &'static str,
    requested_at: Option<u64>,
    /// Where the current world is, like live's `servers.world_node`: the node a container
    /// last started on, the source while a move runs, `None` once archived or while a
    /// restore runs (the archive counts). A host, as live stores the node's name: node ids
    /// are the engine's and change with a restart.
    world_node: Option<u32>,
    /// The host its last placement went to (live: `servers.placed_node`).
    placed_on: Option<u32>,
}

enum Ev {
    /// A report for the engine of `epoch` (dropped if that engine crashed meanwhile).
    Report {
        epoch: u32,
        input: Box<Input>,
        faultable: bool,
        /// A late or duplicated container report: the number of container commands for
        /// its (server, node) when it was delayed. A driver answers each command once,
        /// in order, so such a copy is dropped once a newer command was issued for that
        /// container (it would otherwise pass for that command's answer).
        after: Option<u64>,
    },
    Booted(u32),
    Crash(u32),
    Repair(u32),
    Partition(u32),
    Heal(u32),
    ConductorCrash,
    Restart,
}

struct Item {
    t: u64,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

#[derive(PartialEq, Eq, Clone, Copy, PartialOrd, Ord)]
enum Phase {
    Safety,
    Drain,
    Settle,
}

struct Chaos<'a> {
    /// `CHAOS_DEBUG=<server id>`: print what concerns it (and crashes) to stderr.
    debug: Option<u64>,
    loaded: &'a Loaded,
    cfg: Config,
    engine: Option<Conductor>,
    epoch: u32,
    heap: BinaryHeap<Item>,
    seq: u64,
    clock: u64,
    phase: Phase,
    rates: Rates,
    fault_rng: Vec<ChaCha8Rng>,
    lat: ChaCha8Rng,
    faults: [u64; N_FAULTS],
    /// Hosts by a stable world id; names are what the engine and the store know.
    hosts: BTreeMap<u32, Host>,
    host_by_name: BTreeMap<String, u32>,
    host_names: BTreeMap<u32, String>,
    next_host: u32,
    /// The current engine's node ids.
    node_of: BTreeMap<u32, NodeId>,
    host_of: BTreeMap<NodeId, u32>,
    worlds: BTreeMap<ServerId, WorldCopy>,
    archives: BTreeSet<ServerId>,
    stock_out_until: BTreeMap<String, u64>,
    /// Container commands issued per (server, node), for `Ev::Report::after`.
    container_cmds: BTreeMap<(ServerId, NodeId), u64>,
    /// The persisted store, updated from the engine's events like live/src/store.rs.
    store: BTreeMap<ServerId, StoreRow>,
    /// Accepted requests (and requeues) not yet started, cancelled or failed.
    open: BTreeMap<ServerId, u64>,
    requests: u64,
    events: u64,
    /// Hosts that did not answer at the last restart and have not been listed since:
    /// the engine knows their containers and worlds only from the store (as live does).
    unlisted: BTreeSet<u32>,
    vms_at_settle: u64,
    violation_count: u64,
    violations: Vec<String>,
}

pub fn run_seed(loaded: &Loaded, path: &str, trace: &ChaosTrace, seed: u64, cc: &ChaosConfig) -> SeedReport {
    let mut wrng = rng(seed, STREAM_WINDOW);
    let len_ms = wrng.random_range(cc.window_min_s..=cc.window_max_s.max(cc.window_min_s)) * 1000;
    let start_ms = if trace.end_ms > len_ms { wrng.random_range(0..=(trace.end_ms - len_ms) / 1000) * 1000 } else { 0 };
    let mut fault_rng: Vec<ChaCha8Rng> = (0..N_FAULTS as u64).map(|k| rng(seed, k)).collect();
    // Intensities: each kind is off in about one seed in five, otherwise up to its maximum.
    let max = [0.3, 0.15, 0.1, 0.2, 0.2, 1.5, 1.5, 0.2, 0.1, 0.1, 0.05, 1.0];
    let mut p = [0.0; N_FAULTS];
    for k in 0..N_FAULTS {
        let r = &mut fault_rng[k];
        if r.random_bool(0.8) {
            p[k] = r.random_range(0.0..max[k]);
        }
    }
    let cfg = loaded.scenario.conductor.clone();
    let mut c = Chaos {
        debug: std::env::var("CHAOS_DEBUG").ok().and_then(|v| v.trim_start_matches('s').parse().ok()),
        loaded,
        cfg: cfg.clone(),
        engine: Some(Conductor::new(cfg, Millis(0)).expect("a validated scenario")),
        epoch: 0,
        heap: BinaryHeap::new(),
        seq: 0,
        clock: 0,
        phase: Phase::Safety,
        rates: Rates { p },
        fault_rng,
        lat: rng(seed, STREAM_LATENCY),
        faults: [0; N_FAULTS],
        hosts: BTreeMap::new(),
        host_by_name: BTreeMap::new(),
        host_names: BTreeMap::new(),
        next_host: 0,
        node_of: BTreeMap::new(),
        host_of: BTreeMap::new(),
        worlds: BTreeMap::new(),
        archives: BTreeSet::new(),
        stock_out_until: BTreeMap::new(),
        container_cmds: BTreeMap::new(),
        store: BTreeMap::new(),
        open: BTreeMap::new(),
        requests: 0,
        events: 0,
        unlisted: BTreeSet::new(),
        vms_at_settle: 0,
        violation_count: 0,
        violations: Vec::new(),
    };
    c.run(trace, start_ms, len_ms);
    let mut faults = BTreeMap::new();
    for (k, n) in FAULT_KINDS.iter().zip(c.faults) {
        faults.insert(k.to_string(), n);
    }
    SeedReport {
        scenario: loaded.scenario.name.clone(),
        path: path.to_string(),
        seed,
        window: Window { start_s: start_ms / 1000, length_s: len_ms / 1000 },
        faults,
        requests: c.requests,
        events: c.events,
        violation_count: c.violation_count,
        violations: c.violations,
    }
}

impl Chaos<'_> {
    fn warmup(&self) -> u64 {
        self.cfg.startup_delay_s * 1000
    }

    fn violation(&mut self, what: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT {
            let at = self.clock.saturating_sub(self.warmup());
            self.violations.push(format!("t={}: {what}", Millis(at)));
        }
    }

    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Item { t, seq: self.seq, ev });
    }

    /// Draws whether a fault of this kind happens now (never after the safety phase).
    fn roll(&mut self, f: Fault) -> bool {
        if self.phase != Phase::Safety {
            return false;
        }
        let p = self.rates.p[f as usize];
        let hit = p > 0.0 && self.fault_rng[f as usize].random_bool(p.min(1.0));
        if hit {
            self.faults[f as usize] += 1;
        }
        hit
    }

    fn frng(&mut self, f: Fault) -> &mut ChaCha8Rng {
        &mut self.fault_rng[f as usize]
    }

    /// Exponential time to the next event at `per_day` (None when off).
    fn next_in(&mut self, f: Fault) -> Option<u64> {
        let per_day = self.rates.p[f as usize];
        if per_day <= 0.0 {
            return None;
        }
        let u: f64 = self.frng(f).random_range(f64::EPSILON..1.0);
        Some(((-u.ln() / per_day) * 86_400_000.0).min(1e15) as u64 + 1)
    }

    fn add_host(
        &mut self,
        name: &str,
        kind: NodeKind,
        system: bool,
        ram_mb: u32,
        st: Option<String>,
        booted: bool,
    ) -> u32 {
        let h = self.next_host;
        self.next_host += 1;
        self.hosts.insert(
            h,
            Host {
                kind,
                system,
                ram_mb,
                server_type: st,
                booted,
                up: true,
                partitioned: false,
                containers: BTreeSet::new(),
                idle_since: Some(self.clock),
            },
        );
        self.host_by_name.insert(name.to_string(), h);
        self.host_names.insert(h, name.to_string());
        if !system {
            if let Some(dt) = self.next_in(Fault::NodeCrash) {
                self.push(self.clock + dt, Ev::Crash(h));
            }
            if let Some(dt) = self.next_in(Fault::Partition) {
                self.push(self.clock + dt, Ev::Partition(h));
            }
        }
        h
    }

    fn register(&mut self, h: u32, provider: bool) {
        let host = &self.hosts[&h];
        let name = self.host_names[&h].clone();
        let monthly = self.loaded.scenario.nodes.iter().find(|n| n.id == name).map_or(0.0, |n| n.monthly_eur);
        let hourly = match &host.server_type {
            Some(t) => self.cfg.catalogue.iter().find(|c| &c.name == t).map_or(0.0, |c| c.hourly_eur),
            None => monthly / 730.0,
        };
        let cores = self.loaded.scenario.nodes.iter().find(|n| n.id == name).map_or(4, |n| n.cores);
        let spec = NodeSpec {
            name: name.clone(),
            address: name.clone(),
            kind: host.kind,
            system: host.system,
            total_ram_mb: host.ram_mb,
            cores,
            hourly_eur: hourly,
            labels: Default::default(),
            provider_id: provider.then(|| format!("sim-{h}")),
            server_type: host.server_type.clone(),
        };
        let now = Millis(self.clock);
        let engine = self.engine.as_mut().expect("engine up");
        let Reply::NodeRegistered(id) = engine.handle(now, Input::NodeRegistered(spec)) else {
            unreachable!("registration answers with the id")
        };
        self.node_of.insert(h, id);
        self.host_of.insert(id, h);
        self.drain();
    }

    fn run(&mut self, trace: &ChaosTrace, start_ms: u64, len_ms: u64) {
        let warm = self.warmup();
        let nodes = self.loaded.scenario.nodes.clone();
        for n in &nodes {
            let h = self.add_host(&n.id, n.kind, n.system, n.ram_mb, None, true);
            self.register(h, false);
        }
        // Conductor crashes: a Poisson count over the window at arbitrary instants.
        let crash_rate = self.rates.p[Fault::ConductorCrash as usize] * 3.0 * (len_ms as f64 / 86_400_000.0);
        let mut t = 0u64;
        if crash_rate > 0.0 {
            loop {
                let u: f64 = self.frng(Fault::ConductorCrash).random_range(f64::EPSILON..1.0);
                t += ((-u.ln() / crash_rate) * len_ms as f64) as u64 + 1;
                if t >= len_ms {
                    break;
                }
                self.push(warm + t, Ev::ConductorCrash);
            }
        }
        let lo = trace.rows.partition_point(|r| r.at_ms < start_ms);
        let hi = trace.rows.partition_point(|r| r.at_ms < start_ms + len_ms);
        let rows = &trace.rows[lo..hi];
        let mut next_row = 0usize;
        let safety_end = warm + len_ms;
        let c = &self.cfg;
        let drain_ms =
            (c.queue.timeout_s.max(c.reservation_timeout_s) + c.startup_delay_s + c.health.lost_grace_s + 900) * 1000
                + 3_600_000;
        let drain_end = safety_end + drain_ms;
        let settle_end =
            drain_end + self.idle_allow_ms() + 3_600_000 + self.serial_ms() * self.cfg.scaling.max_cloud_nodes as u64;
        loop {
            let t_engine = self.engine.as_ref().and_then(|e| e.poll_timeout()).map(|m| m.0);
            let t_heap = self.heap.peek().map(|i| i.t);
            let t_row = rows.get(next_row).map(|r| r.at_ms - start_ms + warm);
            let t_phase = match self.phase {
                Phase::Safety => safety_end,
                Phase::Drain => drain_end,
                Phase::Settle => settle_end,
            };
            let t = [t_engine, t_heap, t_row, Some(t_phase)].into_iter().flatten().min().expect("phase end");
            self.clock = t;
            if t_engine == Some(t) {
                self.engine.as_mut().expect("up").handle_timeout(Millis(t));
                self.drain();
            } else if t_heap == Some(t) {
                let item = self.heap.pop().expect("peeked");
                self.world_event(item.ev);
            } else if t_row == Some(t) {
                let r = rows[next_row].clone();
                next_row += 1;
                self.row(r);
            } else {
                // A phase ends.
                match self.phase {
                    Phase::Safety => self.heal(),
                    Phase::Drain => self.check_drained(),
                    Phase::Settle => {
                        self.check_settled();
                        break;
                    }
                }
                continue;
            }
            self.events += 1;
            self.check();
        }
    }

    fn idle_allow_ms(&self) -> u64 {
        let c = &self.cfg;
        let s = &c.scaling;
        let idle_s = [
            c.reactive.node_idle_s,
            c.reactive.scale_down_sustain_s + c.reactive.scale_down_cooldown_s,
            c.seed.node_idle_s,
            c.seed.scale_down_sustain_s + c.seed.scale_down_cooldown_s,
            c.spare_pool.scale_down_sustain_s,
            c.cluster_autoscaler.scale_down_unneeded_s + c.cluster_autoscaler.scale_down_delay_after_add_s,
            c.karpenter.consolidate_after_s,
            s.rebuy_cooldown_s,
            s.min_node_lifetime_s,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        (idle_s + s.billing_period_s + s.interval_s + s.delete_timeout_s) * 1000
    }

    fn check(&mut self) {
        let Some(e) = self.engine.as_ref() else { return };
        let bad = e.check_invariants();
        for b in bad {
            self.violation(format!("invariant: {b}"));
        }
    }

    // -------------------------------------------------------------- phases

    /// The safety phase ends: partitions heal, crashed nodes come back, no more faults.
    fn heal(&mut self) {
        self.phase = Phase::Drain;
        let hs: Vec<u32> = self.hosts.keys().copied().collect();
        for h in hs {
            let host = self.hosts.get_mut(&h).expect("listed");
            host.partitioned = false;
            host.up = true;
        }
        if self.engine.is_none() {
            self.restart();
        }
    }

    fn check_drained(&mut self) {
        self.phase = Phase::Settle;
        self.vms_at_settle = self.hosts.values().filter(|h| h.kind == NodeKind::Cloud).count() as u64;
        let e = self.engine.as_ref().expect("up after heal");
        let mut bad = Vec::new();
        if !e.queue().is_empty() {
            bad.push(format!("queue not drained after the liveness phase: {} entries", e.queue().len()));
        }
        for (&s, &at) in &self.open {
            let st = e.server_status(s);
            bad.push(format!(
                "request for {s} (at t={}) neither started, cancelled nor failed: {st:?}",
                Millis(at.saturating_sub(self.warmup()))
            ));
        }
        for b in bad {
            self.violation(b);
        }
        // The users leave: every server still up is stopped.
        let servers: Vec<ServerId> = self.store.keys().copied().collect();
        for s in servers {
            let engine = self.engine.as_mut().expect("up");
            engine.handle(Millis(self.clock), Input::StopRequested { server: s });
            self.drain();
        }
    }

    /// Scale-downs are one at a time, a cooldown apart: the k-th idle VM may wait k cooldowns.
    fn serial_ms(&self) -> u64 {
        let c = &self.cfg;
        c.reactive.scale_down_cooldown_s.max(c.seed.scale_down_cooldown_s).max(c.scaling.interval_s) * 1000
    }

    fn check_settled(&mut self) {
        let now = self.clock;
        let vms = self.vms_at_settle;
        let allow = self.idle_allow_ms() + self.serial_ms() * vms.saturating_sub(1);
        let mut bad = Vec::new();
        for (h, host) in &self.hosts {
            let name = &self.host_names[h];
            if !host.containers.is_empty() {
                bad.push(format!("{name} still runs {:?} after every server was stopped", host.containers));
            }
            if host.kind == NodeKind::Cloud {
                if let Some(since) = host.idle_since {
                    if now - since > allow {
                        bad.push(format!(
                            "rented VM {name} idle for {} s (allowed {} s)",
                            (now - since) / 1000,
                            allow / 1000
                        ));
                    }
                }
            }
        }
        // Reserved servers keep their booking while stopped.
        let e = self.engine.as_ref().expect("up");
        for (s, row) in &self.store {
            if row.plan == Plan::Reserved {
                if let (Some(c), Some(ServerStatus::Stopped { booked_on: None, .. })) =
                    (self.worlds.get(s), e.server_status(*s))
                {
                    bad.push(format!(
                        "reserved {s} stopped with its world on {} but no RAM booked",
                        self.host_names[&c.host]
                    ));
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
    }

    // -------------------------------------------------------------- trace

    fn row(&mut self, r: TraceRow) {
        if self.phase != Phase::Safety {
            return;
        }
        let now = Millis(self.clock);
        let Some(engine) = self.engine.as_mut() else { return }; // the API is down
        match r.action {
            Action::Start => {
                let user = UserId(r.server.0);
                let reply = engine
                    .handle(now, Input::StartRequested { server: r.server, ram_mb: r.ram_mb, plan: r.plan, user });
                let state = match reply {
                    Reply::Start(StartReply::Placed { .. }) => Some("placed"),
                    Reply::Start(StartReply::Queued { .. }) => Some("queued"),
                    _ => None,
                };
                if let Some(state) = state {
                    self.requests += 1;
                    self.open.insert(r.server, self.clock);
                    // Like live's upsert: where its world is stays known.
                    let world_node = self.store.get(&r.server).and_then(|old| old.world_node);
                    self.store.insert(
                        r.server,
                        StoreRow {
                            ram_mb: r.ram_mb,
                            plan: r.plan,
                            user,
                            state,
                            requested_at: Some(self.clock),
                            world_node,
                            placed_on: None,
                        },
                    );
                }
                self.drain();
            }
            Action::Stop => {
                engine.handle(now, Input::StopRequested { server: r.server });
                self.drain();
            }
            Action::Players => {
                engine.handle(now, Input::Players { server: r.server, count: r.players });
                self.drain();
            }
        }
    }

    // -------------------------------------------------------------- engine output

    fn drain(&mut self) {
        loop {
            let Some(cmd) = self.engine.as_mut().and_then(|e| e.poll_command()) else { break };
            self.command(cmd);
        }
    }

    fn deliver(&mut self, input: Input) {
        let Some(engine) = self.engine.as_mut() else { return };
        engine.handle(Millis(self.clock), input);
        self.drain();
    }

    /// Schedule a completion report, with the completion faults.
    fn report(&mut self, delay: u64, input: Input) {
        let epoch = self.epoch;
        self.push(self.clock + delay, Ev::Report { epoch, input: Box::new(input), faultable: true, after: None });
    }

    fn report_plain(&mut self, delay: u64, input: Input) {
        let epoch = self.epoch;
        self.push(self.clock + delay, Ev::Report { epoch, input: Box::new(input), faultable: false, after: None });
    }

    fn api_ms(&mut self) -> u64 {
        let base = self.loaded.scenario.timing.api_s * 1000;
        if self.roll(Fault::RateLimit) {
            base + self.frng(Fault::RateLimit).random_range(5_000..=60_000)
        } else {
            base
        }
    }

    fn dbg(&self, what: &dyn std::fmt::Debug, about: Option<ServerId>) {
        if let Some(d) = self.debug {
            if about.is_none_or(|s| s.0 == d) {
                eprintln!("{} e{} {what:?}", Millis(self.clock.saturating_sub(self.warmup())), self.epoch);
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        if self.debug.is_some() {
            let about = match &cmd {
                Command::StartContainer { server, .. }
                | Command::StopContainer { server, .. }
                | Command::ArchiveWorld { server, .. }
                | Command::DeleteWorld { server, .. } => Some(*server),
                Command::Publish(
                    Event::Placed { server, .. }
                    | Event::Started { server, .. }
                    | Event::StartFailed { server, .. }
                    | Event::Cancelled { server }
                    | Event::Stopped { server, .. }
                    | Event::Requeued { server, .. }
                    | Event::Queued { server, .. }
                    | Event::ServerLost { server, .. }
                    | Event::StartAttemptFailed { server, .. }
                    | Event::WorldArchived { server, .. }
                    | Event::WorldOn { server, .. },
                ) => Some(*server),
                Command::Publish(Event::NodeHealthChanged { .. } | Event::NodeFenced { .. }) => None,
                _ => Some(ServerId(u64::MAX)),
            };
            self.dbg(&cmd, about);
        }
        let t = self.loaded.scenario.timing.clone();
        if let Command::StartContainer { server, node, .. } | Command::StopContainer { server, node, .. } = &cmd {
            *self.container_cmds.entry((*server, *node)).or_default() += 1;
        }
        match cmd {
            Command::Publish(e) => self.event(e),
            Command::StartContainer { server, node, ram_mb: _, plan: _, world } => {
                // Like live: while a move runs its source counts, while a restore runs the archive.
                match world {
                    WorldAction::MoveFrom(src) => self.set_world_node(server, Some(src)),
                    WorldAction::RestoreFromArchive => self.set_world_node(server, None),
                    WorldAction::InPlace => {}
                }
                self.start(server, node, world)
            }
            Command::StopContainer { server, node, .. } => {
                let Some(&h) = self.host_of.get(&node) else { return };
                if !self.hosts[&h].reachable() {
                    return; // no answer; the engine repeats its stop
                }
                // Like `docker stop` + `rm`: it answers whether a container of the server
                // was there, running or exited (Docker keeps an exited container, and
                // its volume, where the world was left).
                let ran = self.hosts.get_mut(&h).expect("known").containers.remove(&server)
                    || self.worlds.get(&server).is_some_and(|w| w.host == h);
                self.touch_idle(h);
                let input = if ran {
                    Input::ContainerExited { server, node }
                } else {
                    Input::ContainerFailed { server, node, reason: "no such container (simulated)".into() }
                };
                self.report(t.container_stop_s * 1000, input);
            }
            Command::ProvisionNode { node, name, server_type } => self.provision(node, name, server_type),
            Command::DeleteNode { node, name, .. } => {
                if self.roll(Fault::RateLimit) && self.frng(Fault::RateLimit).random_bool(0.5) {
                    return; // a 429: the engine repeats the delete after its timeout
                }
                let api = self.api_ms();
                if let Some(h) = self.host_by_name.get(&name).copied() {
                    let (not_vm, cs) = {
                        let host = &self.hosts[&h];
                        (host.system || host.kind != NodeKind::Cloud, host.containers.clone())
                    };
                    if not_vm {
                        self.violation(format!("delete of {name}, which is not a rented VM"));
                    }
                    if !cs.is_empty() {
                        self.violation(format!("{name} deleted while running {cs:?}"));
                    }
                    let dirty: Vec<ServerId> =
                        self.worlds.iter().filter(|(_, w)| w.host == h && w.dirty).map(|(s, _)| *s).collect();
                    if !dirty.is_empty() {
                        self.violation(format!("{name} deleted while holding un-archived worlds {dirty:?}"));
                    }
                    self.worlds.retain(|_, w| w.host != h);
                    self.hosts.remove(&h);
                    self.host_by_name.remove(&name);
                }
                self.report_plain(api, Input::NodeDeleted { node });
            }
            Command::ProbeHealth { nodes } => {
                let results: Vec<(NodeId, bool)> = nodes
                    .iter()
                    .map(|n| (*n, self.host_of.get(n).is_some_and(|h| self.hosts.get(h).is_some_and(Host::reachable))))
                    .collect();
                // Like live/src/driver.rs: a node first reached after a restart has its
                // containers and worlds adopted by a `Recover` before it turns healthy.
                for &(n, ok) in &results {
                    let Some(&h) = self.host_of.get(&n) else { continue };
                    if ok && self.unlisted.contains(&h) {
                        let (containers, worlds) = self.host_records(h, &mut BTreeSet::new());
                        let snap = Snapshot { containers, worlds, ..Default::default() };
                        self.report_plain(0, Input::Recover(snap));
                        // Then what runs there, authoritatively: a server believed to run
                        // there from the store that is gone has exited.
                        let servers: Vec<ServerId> = self.hosts[&h].containers.iter().copied().collect();
                        self.report_plain(0, Input::NodeContainers { node: n, servers });
                        self.unlisted.remove(&h);
                    }
                }
                self.report_plain(0, Input::HealthProbes { results });
            }
            Command::ArchiveWorld { server, node, generation } => {
                let Some(&h) = self.host_of.get(&node) else { return };
                if !self.hosts.get(&h).is_some_and(Host::reachable) {
                    return;
                }
                match self.worlds.get_mut(&server) {
                    Some(w) if w.host == h => {
                        w.dirty = false;
                        self.archives.insert(server);
                        self.touch_idle(h);
                        self.report(t.archive_s * 1000, Input::WorldArchived { server, generation });
                    }
                    _ => {}
                }
            }
            Command::ListContainers { node } => {
                let Some(&h) = self.host_of.get(&node) else { return };
                let Some(host) = self.hosts.get(&h).filter(|h| h.reachable()) else { return };
                let servers = host.containers.iter().copied().collect();
                self.report(0, Input::NodeContainers { node, servers });
            }
            Command::DeleteWorld { server, node } => {
                if let Some(&h) = self.host_of.get(&node) {
                    if self.worlds.get(&server).is_some_and(|w| w.host == h) {
                        self.worlds.remove(&server);
                        self.touch_idle(h);
                    }
                }
            }
        }
    }

    fn start(&mut self, server: ServerId, node: NodeId, world: WorldAction) {
        let t = self.loaded.scenario.timing.clone();
        let Some(&h) = self.host_of.get(&node) else {
            self.violation(format!("start of {server} on unknown node {node}"));
            return;
        };
        let name = self.host_names[&h].clone();
        // The engine's own view must allow this placement.
        if let Some(n) = self.engine.as_ref().and_then(|e| e.fleet().get(node)) {
            if n.system || n.health != Health::Healthy || n.lifecycle != Lifecycle::Active {
                let what = format!(
                    "{server} placed on {name}: system {} health {:?} lifecycle {:?}",
                    n.system, n.health, n.lifecycle
                );
                self.violation(what);
            }
        }
        let delay = self.lat.random_range(t.container_start_s_min * 1000..=t.container_start_s_max * 1000)
            + match world {
                WorldAction::InPlace => 0,
                WorldAction::RestoreFromArchive => t.world_restore_s * 1000,
                WorldAction::MoveFrom(_) => t.world_move_s * 1000,
            };
        let src = match world {
            WorldAction::MoveFrom(from) => Some(self.host_of.get(&from).copied()),
            _ => None,
        };
        let reachable = self.hosts[&h].reachable()
            && src.is_none_or(|s| s.is_some_and(|s| self.hosts.get(&s).is_some_and(Host::reachable)));
        if !reachable {
            let input = Input::ContainerFailed { server, node, reason: "node unreachable (simulated)".into() };
            self.report(delay.min(self.cfg.health.probe_timeout_s * 1000), input);
            return;
        }
        if self.roll(Fault::ContainerStartFailure) {
            let input = Input::ContainerFailed { server, node, reason: "container failed to start (simulated)".into() };
            self.report(delay, input);
            return;
        }
        // Never two containers of one server.
        let others: Vec<String> = self
            .hosts
            .iter()
            .filter(|(&o, host)| o != h && host.containers.contains(&server))
            .map(|(o, _)| self.host_names[o].clone())
            .collect();
        if !others.is_empty() {
            self.violation(format!("{server} started on {name} while it runs on {others:?}"));
        }
        // Its data: the newest copy must come along.
        let copy = self.worlds.get(&server).copied();
        let ok = match (copy, world) {
            (Some(c), WorldAction::InPlace) => c.host == h,
            (Some(c), WorldAction::MoveFrom(_)) => src == Some(Some(c.host)),
            (Some(c), WorldAction::RestoreFromArchive) => !c.dirty || c.host == h,
            (None, WorldAction::InPlace) => !self.archives.contains(&server),
            (None, WorldAction::MoveFrom(_)) => false,
            (None, WorldAction::RestoreFromArchive) => self.archives.contains(&server),
        };
        if !ok {
            let have = match copy {
                Some(c) => format!(
                    "its world is on {} ({})",
                    self.host_names[&c.host],
                    if c.dirty { "not archived" } else { "archived" }
                ),
                None => format!("no copy on a node, archived: {}", self.archives.contains(&server)),
            };
            self.violation(format!("{server} started on {name} with {world:?}, but {have}"));
        }
        let host = self.hosts.get_mut(&h).expect("known");
        host.containers.insert(server);
        host.idle_since = None;
        let old = self.worlds.insert(server, WorldCopy { host: h, dirty: true });
        if let Some(o) = old {
            if o.host != h {
                self.touch_idle(o.host);
            }
        }
        self.report(delay, Input::ContainerStarted { server, node });
    }

    /// A VM's idle clock: it is idle while it holds no container and no world the
    /// engine must keep (not archived, or a reserved server's).
    fn touch_idle(&mut self, h: u32) {
        let holds_world = self
            .worlds
            .iter()
            .any(|(s, w)| w.host == h && (w.dirty || self.store.get(s).is_some_and(|r| r.plan == Plan::Reserved)));
        let Some(host) = self.hosts.get_mut(&h) else { return };
        let idle = host.containers.is_empty() && !holds_world;
        match (idle, host.idle_since) {
            (true, None) => host.idle_since = Some(self.clock),
            (false, Some(_)) => host.idle_since = None,
            _ => {}
        }
    }

    fn provision(&mut self, node: NodeId, name: String, server_type: String) {
        let api = self.api_ms();
        let fail = |reason: &str| Input::ProvisionFailed { node, reason: reason.to_string() };
        if self.host_by_name.contains_key(&name) {
            self.violation(format!("provisioning {name}: a VM of that name exists (names must be unique)"));
            self.report_plain(api, fail("uniqueness_error (simulated)"));
            return;
        }
        if self.roll(Fault::RateLimit) {
            self.report_plain(api, fail("rate limited (simulated 429)"));
            return;
        }
        if self.stock_out_until.get(&server_type).is_some_and(|&u| u > self.clock) {
            self.report_plain(api, fail("resource_unavailable (simulated)"));
            return;
        }
        if self.roll(Fault::OutOfStock) {
            let until = self.clock + self.frng(Fault::OutOfStock).random_range(600_000..=3_600_000);
            self.stock_out_until.insert(server_type.clone(), until);
            self.report_plain(api, fail("resource_unavailable (simulated)"));
            return;
        }
        if self.roll(Fault::ProvisionFailure) {
            self.report_plain(api, fail("provisioning failed (simulated)"));
            return;
        }
        let Some(ty) = self.cfg.catalogue.iter().find(|c| c.name == server_type).cloned() else {
            self.violation(format!("provisioning unknown type {server_type}"));
            return;
        };
        let h = self.add_host(&name, NodeKind::Cloud, false, ty.ram_mb, Some(server_type), false);
        // The VM exists (and bills) from now; the engine learns of it when the report comes.
        if self.roll(Fault::ProvisionTimeout) {
            // Never answered: the engine gives up and deletes it by name.
        } else {
            let input = Input::NodeProvisioned { node, provider_id: format!("sim-{h}"), address: String::new() };
            self.report_plain(api, input);
        }
        let (lo, hi) = (self.loaded.scenario.cloud.boot_s_min * 1000, self.loaded.scenario.cloud.boot_s_max * 1000);
        let mut boot = self.lat.random_range(lo..=hi.max(lo));
        if self.roll(Fault::SlowBoot) {
            boot += self.frng(Fault::SlowBoot).random_range(300_000..=900_000);
        }
        self.push(self.clock + api + boot, Ev::Booted(h));
    }

    // -------------------------------------------------------------- world events

    fn world_event(&mut self, ev: Ev) {
        match ev {
            Ev::Report { epoch, input, faultable, after } => {
                if self.debug.is_some() {
                    let about = match &*input {
                        Input::ContainerStarted { server, .. }
                        | Input::ContainerFailed { server, .. }
                        | Input::ContainerExited { server, .. }
                        | Input::WorldArchived { server, .. } => Some(*server),
                        Input::NodeContainers { .. } => None,
                        _ => Some(ServerId(u64::MAX)),
                    };
                    self.dbg(&(epoch, &input), about);
                }
                if epoch != self.epoch || self.engine.is_none() {
                    return; // the process that asked is gone
                }
                let input = *input;
                let key = container_key(&input);
                let count = key.map(|k| self.container_cmds.get(&k).copied().unwrap_or(0));
                if after.is_some() && after != count {
                    return; // superseded: a newer command for this container was issued
                }
                if faultable {
                    if self.roll(Fault::Lost) {
                        return;
                    }
                    if self.roll(Fault::Late) {
                        // Late, so reordered with later reports; kept below the shortest
                        // container start, and dropped once a newer command for the same
                        // container was issued (`after`), so that one container's reports
                        // never cross the next container's on the same node.
                        let max =
                            (self.loaded.scenario.timing.container_start_s_min * 1000).saturating_sub(2000).max(1000);
                        let d = self.frng(Fault::Late).random_range(500..=max);
                        let ev = Ev::Report { epoch, input: Box::new(input), faultable: false, after: count };
                        self.push(self.clock + d, ev);
                        return;
                    }
                    if self.roll(Fault::Duplicate) {
                        let max =
                            (self.loaded.scenario.timing.container_start_s_min * 1000).saturating_sub(2000).max(1000);
                        let d = self.frng(Fault::Duplicate).random_range(0..=max);
                        let dup = input.clone();
                        let ev = Ev::Report { epoch, input: Box::new(dup), faultable: false, after: count };
                        self.push(self.clock + d, ev);
                    }
                }
                if let Input::NodeContainers { node, .. } = &input {
                    if let Some(h) = self.host_of.get(node) {
                        self.unlisted.remove(h);
                    }
                }
                self.deliver(input);
            }
            Ev::Booted(h) => {
                if let Some(host) = self.hosts.get_mut(&h) {
                    host.booted = true;
                }
            }
            Ev::Crash(h) => {
                let Some(host) = self.hosts.get_mut(&h) else { return };
                if self.phase == Phase::Safety && host.up {
                    host.up = false;
                    let gone = std::mem::take(&mut host.containers);
                    self.dbg(&("node crash", &self.host_names[&h], gone), None);
                    self.faults[Fault::NodeCrash as usize] += 1;
                    let d = self.frng(Fault::NodeCrash).random_range(300_000..=1_800_000);
                    self.push(self.clock + d, Ev::Repair(h));
                    self.touch_idle(h);
                }
            }
            Ev::Repair(h) => {
                if let Some(host) = self.hosts.get_mut(&h) {
                    host.up = true;
                    if let Some(dt) = self.next_in(Fault::NodeCrash) {
                        self.push(self.clock + dt, Ev::Crash(h));
                    }
                }
            }
            Ev::Partition(h) => {
                let Some(host) = self.hosts.get_mut(&h) else { return };
                if self.phase == Phase::Safety && !host.partitioned {
                    host.partitioned = true;
                    self.faults[Fault::Partition as usize] += 1;
                    self.dbg(&("partition", &self.host_names[&h]), None);
                    let d = self.frng(Fault::Partition).random_range(60_000..=1_200_000);
                    self.push(self.clock + d, Ev::Heal(h));
                }
            }
            Ev::Heal(h) => {
                if let Some(host) = self.hosts.get_mut(&h) {
                    host.partitioned = false;
                    if let Some(dt) = self.next_in(Fault::Partition) {
                        self.push(self.clock + dt, Ev::Partition(h));
                    }
                }
            }
            Ev::ConductorCrash => {
                if self.phase == Phase::Safety && self.engine.is_some() {
                    self.faults[Fault::ConductorCrash as usize] += 1;
                    self.dbg(&"conductor crash", None);
                    self.engine = None;
                    self.epoch += 1;
                    let d = self.frng(Fault::ConductorCrash).random_range(1_000..=180_000);
                    self.push(self.clock + d, Ev::Restart);
                }
            }
            Ev::Restart => {
                if self.engine.is_none() {
                    self.restart();
                }
            }
        }
    }

    /// A fresh engine rebuilt like live/src/driver.rs `recover()`: the known nodes (the
    /// scenario's, then the rented VMs the cloud lists), then one snapshot of what the
    /// reachable nodes run and the stored requests that were queued or placed and have
    /// no container, at their original request times.
    fn restart(&mut self) {
        self.container_cmds.clear();
        self.engine = Some(Conductor::new(self.cfg.clone(), Millis(self.clock)).expect("validated"));
        self.node_of.clear();
        self.host_of.clear();
        let owned: Vec<u32> =
            self.loaded.scenario.nodes.iter().filter_map(|n| self.host_by_name.get(&n.id).copied()).collect();
        for h in &owned {
            self.register(*h, false);
        }
        let vms: Vec<u32> = self.hosts.keys().copied().filter(|h| !owned.contains(h)).collect();
        for h in vms {
            self.register(h, true);
        }
        let mut containers = Vec::new();
        let mut worlds = Vec::new();
        let mut present = BTreeSet::new();
        self.unlisted.clear();
        for (h, host) in &self.hosts {
            if !host.reachable() {
                self.unlisted.insert(*h);
                continue; // listed at its first good probe
            }
            let (cs, ws) = self.host_records(*h, &mut present);
            containers.extend(cs);
            worlds.extend(ws);
        }
        // Like live: for a node that does not answer, the store's word stands until it is
        // listed. A server stored running there is believed to run there (never started a
        // second time elsewhere); a stopped server's world is there.
        let found: BTreeSet<ServerId> =
            containers.iter().map(|c| c.server).chain(worlds.iter().filter(|w| w.current).map(|w| w.server)).collect();
        for (s, r) in &self.store {
            let Some(h) = r.world_node.filter(|h| self.unlisted.contains(h)) else { continue };
            if found.contains(s) {
                continue;
            }
            let node = self.node_of[&h];
            let (ram_mb, plan, user) = (r.ram_mb, r.plan, r.user);
            if r.state == "running" {
                present.insert(*s);
                containers.push(ContainerRecord { server: *s, node, ram_mb, plan, user, running: true });
            } else {
                worlds.push(WorldRecord { server: *s, node, ram_mb, plan, user, current: true });
            }
        }
        let mut queued: Vec<QueuedRecord> = self
            .store
            .iter()
            .filter(|(s, r)| matches!(r.state, "queued" | "placed") && !present.contains(*s))
            .map(|(s, r)| QueuedRecord {
                server: *s,
                ram_mb: r.ram_mb,
                plan: r.plan,
                user: r.user,
                queued_at: Millis(r.requested_at.unwrap_or(self.clock)),
            })
            .collect();
        queued.sort_by_key(|q| (q.queued_at, q.server));
        // Like live, which lists its archive directory: what was written counts, reported or not.
        let archived = self.archives.iter().copied().collect();
        // Like live: a start placed on a node that does not answer may have come up there.
        let starting: Vec<ContainerRecord> = self
            .store
            .iter()
            .filter(|(s, r)| r.state == "placed" && !present.contains(*s) && !found.contains(*s))
            .filter_map(|(s, r)| {
                let h = r.placed_on.filter(|h| self.unlisted.contains(h))?;
                let node = self.node_of[&h];
                Some(ContainerRecord { server: *s, node, ram_mb: r.ram_mb, plan: r.plan, user: r.user, running: false })
            })
            .collect();
        let snap = Snapshot { containers, queued, archived, worlds, starting, names_in_use: Vec::new() };
        self.dbg(&snap, None);
        self.deliver(Input::Recover(snap));
        // Requests whose container came up while the conductor was away have started.
        let e = self.engine.as_ref().expect("up");
        let started: Vec<ServerId> = self
            .open
            .keys()
            .copied()
            .filter(|s| matches!(e.server_status(*s), Some(ServerStatus::Running { .. })))
            .collect();
        for s in started {
            self.open.remove(&s);
            if let Some(r) = self.store.get_mut(&s) {
                r.state = "running";
                r.requested_at = None;
            }
        }
    }

    /// What live reports for a node it lists at recovery: its running containers, and the
    /// worlds (data volumes) of servers without a container there (`Worlds::list`; the model
    /// keeps one copy per server: the current one).
    fn host_records(&self, h: u32, present: &mut BTreeSet<ServerId>) -> (Vec<ContainerRecord>, Vec<WorldRecord>) {
        let node = self.node_of[&h];
        let host = &self.hosts[&h];
        let row =
            |s: &ServerId| self.store.get(s).map_or((0, Plan::PayPerPlay, UserId(s.0)), |r| (r.ram_mb, r.plan, r.user));
        let mut containers = Vec::new();
        for &s in &host.containers {
            present.insert(s);
            let (ram_mb, plan, user) = row(&s);
            containers.push(ContainerRecord { server: s, node, ram_mb, plan, user, running: true });
        }
        let mut worlds = Vec::new();
        for (s, w) in &self.worlds {
            if w.host == h && !host.containers.contains(s) {
                let (ram_mb, plan, user) = row(s);
                worlds.push(WorldRecord { server: *s, node, ram_mb, plan, user, current: true });
            }
        }
        (containers, worlds)
    }

    // -------------------------------------------------------------- published events

    fn set_state(&mut self, s: ServerId, state: &'static str) {
        if let Some(r) = self.store.get_mut(&s) {
            r.state = state;
            if matches!(state, "running" | "stopped") {
                r.requested_at = None;
            }
        }
    }

    fn set_world_node(&mut self, s: ServerId, node: Option<NodeId>) {
        let host = node.and_then(|n| self.host_of.get(&n).copied());
        if let Some(r) = self.store.get_mut(&s) {
            r.world_node = host;
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Placed { server, node, .. } => {
                self.set_state(server, "placed");
                let host = self.host_of.get(&node).copied();
                if let Some(r) = self.store.get_mut(&server) {
                    r.placed_on = host;
                }
            }
            Event::Started { server, node } => {
                self.set_state(server, "running");
                self.open.remove(&server);
                self.set_world_node(server, Some(node));
            }
            Event::Migrated { server, to, .. } => self.set_world_node(server, Some(to)),
            Event::Queued { server, .. } | Event::Requeued { server, .. } => {
                if let Some(r) = self.store.get_mut(&server) {
                    r.state = "queued";
                    r.requested_at = r.requested_at.or(Some(self.clock));
                }
                self.open.entry(server).or_insert(self.clock);
            }
            Event::Stopped { server, node, kind } => {
                self.set_state(server, "stopped");
                let reserved = self.store.get(&server).is_some_and(|r| r.plan == Plan::Reserved);
                if reserved && matches!(kind, ExitKind::Requested | ExitKind::Idle | ExitKind::Crashed) {
                    let booked = self.engine.as_ref().and_then(|e| e.server_status(server));
                    if !matches!(booked, Some(ServerStatus::Stopped { booked_on: Some(n), .. }) if n == node) {
                        self.violation(format!(
                            "reserved {server} stopped ({kind:?}) without keeping its RAM: {booked:?}"
                        ));
                    }
                }
            }
            Event::StartFailed { server, .. } | Event::Cancelled { server } => {
                self.set_state(server, "stopped");
                self.open.remove(&server);
            }
            Event::WorldArchived { server, .. } => self.set_world_node(server, None),
            Event::WorldOn { server, node } => self.set_world_node(server, Some(node)),
            _ => {}
        }
    }
}

/// The container a report is about.
fn container_key(input: &Input) -> Option<(ServerId, NodeId)> {
    match input {
        Input::ContainerStarted { server, node }
        | Input::ContainerFailed { server, node, .. }
        | Input::ContainerExited { server, node } => Some((*server, *node)),
        _ => None,
    }
}

/// A summary over many seeds.
#[derive(Default, Serialize)]
pub struct Totals {
    pub seeds: u64,
    pub failed_seeds: u64,
    pub violations: u64,
    pub faults: BTreeMap<String, u64>,
}

impl Totals {
    pub fn add(&mut self, r: &SeedReport) {
        self.seeds += 1;
        self.violations += r.violation_count;
        if r.violation_count > 0 {
            self.failed_seeds += 1;
        }
        for (k, n) in &r.faults {
            *self.faults.entry(k.clone()).or_default() += n;
        }
    }
}

/// Run seeds over scenarios on `jobs` threads; `pick(i)` names the scenario index and
/// seed of the i-th run. Reports come back in run order.
pub fn run_many(
    scenarios: &[(String, Loaded, ChaosTrace)],
    runs: &[(usize, u64)],
    cc: &ChaosConfig,
    jobs: usize,
) -> Vec<SeedReport> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<SeedReport>> = vec![None; runs.len()];
    let results = std::sync::Mutex::new(&mut out);
    std::thread::scope(|sc| {
        for _ in 0..jobs.max(1) {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(k, seed)) = runs.get(i) else { break };
                let (path, loaded, trace) = &scenarios[k];
                let r = run_seed(loaded, path, trace, seed, cc);
                results.lock().expect("no panics while holding it")[i] = Some(r);
            });
        }
    });
    out.into_iter().map(|r| r.expect("every run done")).collect()
}
