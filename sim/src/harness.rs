//! The discrete-event loop. It drives the unchanged core through the same calls the
//! live driver uses: `handle`, `handle_timeout`, `poll_command`, `poll_timeout`.
//!
//! Three sources feed it, merged by time: the engine's own next deadline, the world's
//! event queue (ordered by `(time, insertion sequence)`), and the trace, streamed one
//! row at a time. At equal times the engine's timers fire first, then world events,
//! then the trace row.

use crate::dense::Dense;
use crate::generate;
use crate::generate::{push_seconds, push_u64};
use crate::metrics::{round, CostStats, Summary, WaitHistogram, WaitStats};
use crate::report::{self, ReportInput, Sample};
use crate::scenario::{GenDef, Loaded, TraceSource};
use crate::trace::{Action, TraceReader};
use crate::world::{Host, Vm, World, HOUR_MS, MONTH_H};
use conductor_core::model::{NodeId, NodeKind, Plan, ServerId, UserId, WorldAction};
use conductor_core::node::{usable_mb, Lifecycle, NodeSpec};
use conductor_core::*;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// How often the default mode runs the full invariant check.
const FULL_CHECK_EVERY: u64 = 200_000;
/// Plot samples kept at most, unless `report.sample_s` asks for more.
const SAMPLES_MAX: usize = 4000;
/// Violations kept verbatim for the report (all are counted).
const VIOLATIONS_KEPT: usize = 20;

pub struct RunOptions {
    pub seed: Option<u64>,
    /// Run the O(n) invariant check after every event.
    pub check_full: bool,
    pub out: Option<PathBuf>,
    /// Called now and then with (simulated ms done, ms total).
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { seed: None, check_full: false, out: None, progress: None }
    }
}

#[derive(Debug)]
pub enum SimError {
    /// Bad trace, scenario or usage: exit code 2.
    Input(String),
    /// The run itself failed (IO while writing results): exit code 1.
    Run(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Input(m) | SimError::Run(m) => f.write_str(m),
        }
    }
}

pub struct RunResult {
    pub summary: Summary,
    pub violations: Vec<String>,
    /// Server-milliseconds from each start row to its stop row (or the end).
    pub demanded_ms: u128,
    /// Server-milliseconds from each placement to its stop.
    pub served_ms: u128,
    pub samples: Vec<Sample>,
    /// Trace rows replayed (the header not counted).
    pub trace_rows: u64,
}

enum Ev {
    /// Boxed: inputs are large and rare here, and heap items move on every sift.
    Deliver(Box<Input>),
    StartDone {
        server: ServerId,
        node: NodeId,
        ok: bool,
    },
    StopDone {
        server: ServerId,
        node: NodeId,
    },
    Booted(NodeId),
    Deleted(NodeId),
    /// A start that waited for the server's previous stop to complete.
    DeferredStart {
        server: ServerId,
        requested_at: u64,
        ram_mb: u32,
        plan: Plan,
    },
    Probe(Vec<NodeId>),
    Archived {
        server: ServerId,
        node: NodeId,
        generation: u64,
    },
    List(NodeId),
    Crash(NodeId),
    Repair(NodeId),
}

struct Item {
    t: u64,
    seq: u64,
    ev: Ev,
}

/// FxHash (as in rustc): the simulator's maps are keyed by ids and short server names
/// from a trusted trace, so SipHash's flooding resistance buys nothing here. Iteration
/// order never reaches an output (the few walks over these maps sort first).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply leaves the entropy in the high bits, but hashbrown picks a bucket by
        // the low ones: without this finalizer (MurmurHash3's fmix64) names that differ
        // only in their digits ("s76212", "s76213") share a few buckets and every lookup
        // walked long probe sequences (a tenth of the large trace's parsing thread).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub type FastSet<K> = std::collections::HashSet<K, BuildHasherDefault<FxHasher>>;

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

struct Row {
    at_ms: u64,
    server: ServerId,
    action: Action,
    ram_mb: u32,
    plan: Plan,
    players: u32,
}

/// Per-server bookkeeping of the measurements (only servers alive in the run; the
/// vector behind it grows to the largest interned id).
#[derive(Default)]
struct Tracked {
    ram_mb: u32,
    /// The open request's time, until it started, failed or was cancelled.
    requested_at: Option<u64>,
    waited: bool,
    served_since: Option<u64>,
    demanded_since: Option<u64>,
}

struct Sim<'a> {
    engine: Conductor,
    world: World,
    heap: BinaryHeap<Item>,
    /// World events due at the moment they were scheduled (probe answers, container
    /// lists): in `(t, seq)` order by construction, so they skip the heap and are merged
    /// with it by `(t, seq)`, which keeps the order exactly what the heap alone gave.
    now_queue: VecDeque<Item>,
    /// The time of the event being handled.
    clock: u64,
    seq: u64,
    /// Engine time = trace time + warmup (the engine runs its startup delay first).
    warmup_ms: u64,
    names: FastMap<NodeId, String>,
    /// Starts for servers whose previous stop had not completed: (requested at, RAM, plan),
    /// delivered when the exit is reported.
    deferred: FastMap<ServerId, (u64, u32, Plan)>,
    tracked: Dense<ServerId, Tracked>,
    waits: WaitHistogram,
    interval_waits: Vec<u64>,
    requests: u64,
    started: u64,
    timed_out: u64,
    cancelled: u64,
    rejected: u64,
    duplicate_starts: u64,
    ignored_rows: u64,
    over_30s: u64,
    idle_stops: u64,
    peak_cloud: u32,
    served_mb: u64,
    served_ms: u128,
    trace_rows: u64,
    demanded_ms: u128,
    bound: Bound,
    events: u64,
    violations: u64,
    violation_lines: Vec<String>,
    decisions: Box<dyn Write + 'a>,
    /// A reused buffer for one decisions.csv line.
    line: Vec<u8>,
    dedicated_eur_per_ms: f64,
}

/// The clairvoyant lower bound: owned hosts, plus every instant's served RAM beyond
/// the owned hosts' usable RAM at the catalogue's cheapest price per usable GB-hour.
struct Bound {
    owned_usable_mb: u64,
    eur_per_mb_ms: f64,
    last_ms: u64,
    acc_eur: f64,
}

impl Bound {
    fn advance(&mut self, now_ms: u64, served_mb: u64) {
        let excess = served_mb.saturating_sub(self.owned_usable_mb);
        self.acc_eur += (now_ms.saturating_sub(self.last_ms)) as f64 * excess as f64 * self.eur_per_mb_ms;
        self.last_ms = now_ms.max(self.last_ms);
    }
}

pub const SUMMARY_JSON: &str = "summary.json";
pub const DECISIONS_CSV: &str = "decisions.csv";

/// Files a run writes into its output directory.
pub const OUTPUT_FILES: &[&str] = &[
    SUMMARY_JSON,
    DECISIONS_CSV,
    report::REPORT_MD,
    report::DEMAND_CAPACITY_PNG,
    report::QUEUE_WAIT_PNG,
    report::NODES_PNG,
    report::COST_PNG,
];

pub fn run(loaded: &Loaded, opts: RunOptions) -> Result<RunResult, SimError> {
    let out = opts.out.clone();
    if let Some(dir) = &out {
        // An earlier run's files must not sit beside this one's: a run that fails leaves
        // none of them (and no partial decisions.csv) rather than a mix of two runs.
        // (decisions.csv is truncated when the run creates it.)
        for name in OUTPUT_FILES.iter().filter(|&&n| n != DECISIONS_CSV) {
            let p = dir.join(name);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SimError::Run(format!("{}: {e}", p.display())));
                }
                _ => {}
            }
        }
    }
    let r = run_to(loaded, opts);
    if let (Err(_), Some(dir)) = (&r, &out) {
        for name in OUTPUT_FILES {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    r
}

fn run_to(loaded: &Loaded, mut opts: RunOptions) -> Result<RunResult, SimError> {
    let sc = &loaded.scenario;
    let seed = opts.seed.unwrap_or(sc.seed);
    let reader = open_trace(loaded, seed)?;
    let cfg = sc.conductor.clone();
    let warmup_ms = cfg.startup_delay_s * 1000;
    let duration_ms = loaded.duration_ms().map_err(SimError::Input)?.unwrap_or(0);

    let decisions: Box<dyn Write> = match &opts.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| SimError::Run(format!("{}: {e}", dir.display())))?;
            let p = dir.join(DECISIONS_CSV);
            let f = std::fs::File::create(&p).map_err(|e| SimError::Run(format!("{}: {e}", p.display())))?;
            Box::new(WriterThread::spawn(f).map_err(|e| SimError::Run(format!("{}: {e}", p.display())))?)
        }
        None => Box::new(std::io::sink()),
    };

    let reserve = cfg.reserve.clone();
    let owned_usable_mb: u64 = sc.nodes.iter().filter(|n| !n.system).map(|n| usable_mb(n.ram_mb, 0, &reserve)).sum();
    let eur_per_mb_ms = cfg
        .catalogue
        .iter()
        .map(|t| {
            let hourly = t.monthly_cap_eur.map_or(t.hourly_eur, |cap| t.hourly_eur.min(cap / MONTH_H));
            hourly / usable_mb(t.ram_mb, 0, &reserve) as f64 / HOUR_MS as f64
        })
        .fold(f64::INFINITY, f64::min);
    let eur_per_mb_ms = if eur_per_mb_ms.is_finite() { eur_per_mb_ms } else { 0.0 };
    let dedicated_eur_per_ms = sc.nodes.iter().map(|n| n.monthly_eur).sum::<f64>() / MONTH_H / HOUR_MS as f64;

    let engine = Conductor::new(cfg.clone(), Millis(0)).map_err(|e| SimError::Input(format!("conductor.{e}")))?;
    let world = World::new(
        seed,
        sc.timing.clone(),
        sc.faults.clone(),
        (sc.cloud.boot_s_min, sc.cloud.boot_s_max),
        cfg.catalogue.clone(),
    );
    let mut sim = Sim {
        engine,
        world,
        heap: BinaryHeap::new(),
        now_queue: VecDeque::new(),
        clock: 0,
        seq: 0,
        warmup_ms,
        names: FastMap::default(),
        deferred: FastMap::default(),
        tracked: Dense::default(),
        waits: WaitHistogram::default(),
        interval_waits: Vec::new(),
        requests: 0,
        started: 0,
        timed_out: 0,
        cancelled: 0,
        rejected: 0,
        duplicate_starts: 0,
        ignored_rows: 0,
        over_30s: 0,
        idle_stops: 0,
        peak_cloud: 0,
        served_mb: 0,
        served_ms: 0,
        trace_rows: 0,
        demanded_ms: 0,
        bound: Bound { owned_usable_mb, eur_per_mb_ms, last_ms: warmup_ms, acc_eur: 0.0 },
        events: 0,
        violations: 0,
        violation_lines: Vec::new(),
        decisions,
        line: Vec::with_capacity(128),
        dedicated_eur_per_ms,
    };
    sim.write_decision_header();

    for n in &sc.nodes {
        let spec = NodeSpec {
            name: n.id.clone(),
            address: n.id.clone(),
            kind: n.kind,
            system: n.system,
            total_ram_mb: n.ram_mb,
            cores: n.cores,
            hourly_eur: n.monthly_eur / MONTH_H,
            labels: Default::default(),
            provider_id: None,
            server_type: None,
        };
        let Reply::NodeRegistered(id) = sim.engine.handle(Millis(0), Input::NodeRegistered(spec)) else {
            unreachable!("registration always answers with the id")
        };
        sim.names.insert(id, n.id.clone());
        sim.world.hosts.insert(id, Host { kind: n.kind, up: true, containers: Default::default(), vm: None });
        if let Some(dt) = sim.world.next_crash_in_ms() {
            sim.push(dt, Ev::Crash(id));
        }
        sim.drain(0);
    }

    // Plot samples: every `report.sample_s`, or about 2,000 over the run. A trace longer than
    // `duration` (or one without it) is only known at its end: past 4,000 samples every other
    // one is dropped and the interval doubled, so the plots stay 2,000-4,000 points.
    let expected_end = duration_ms.max(1);
    let thin = sc.report.sample_s == 0;
    let every_ms = if thin { (expected_end / 2000).max(60_000) } else { sc.report.sample_s * 1000 };
    let mut sampler = Sampler { samples: Vec::new(), next_ms: 0, every_ms, thin };
    let mut progress_at = 0u64;

    let last_row_ms = std::thread::scope(|scope| -> Result<u64, SimError> {
        let mut rows = Rows::spawn(scope, reader)?;
        let mut pending = rows.next()?;
        let mut last_row_ms = 0u64;
        loop {
            // u64::MAX stands for "none" (no simulated run reaches it).
            let t_engine = sim.engine.poll_timeout().map_or(u64::MAX, |m| m.0);
            let t_heap = sim.next_world_t().unwrap_or(u64::MAX);
            let t_row = pending.as_ref().map_or(u64::MAX, |r| r.at_ms + warmup_ms);
            let end = warmup_ms + duration_ms.max(last_row_ms);
            let t = t_engine.min(t_heap).min(t_row);
            if t == u64::MAX || (pending.is_none() && t > end) {
                break;
            }
            sim.clock = t;
            if t >= warmup_ms && t - warmup_ms >= sampler.next_ms {
                sampler.take_until(&mut sim, (t - warmup_ms).min(end - warmup_ms));
            }
            if t_engine == t {
                sim.engine.handle_timeout(Millis(t));
                sim.drain(t);
            } else if t_heap == t {
                let item = sim.pop_world().expect("peeked");
                sim.world_event(item.t, item.ev);
            } else {
                let row = pending.take().expect("row is next");
                last_row_ms = row.at_ms;
                sim.trace_rows += 1;
                sim.row(t, row);
                pending = rows.next()?;
            }
            sim.events += 1;
            sim.check_limits(t);
            if opts.check_full || sim.events % FULL_CHECK_EVERY == 0 {
                sim.check(t);
            }
            if let Some(cb) = opts.progress.as_mut() {
                if t >= progress_at {
                    cb(t.saturating_sub(warmup_ms), end.saturating_sub(warmup_ms).max(1));
                    progress_at = t + 3_600_000;
                }
            }
        }
        Ok(last_row_ms)
    })?;
    let end = warmup_ms + duration_ms.max(last_row_ms);
    sim.check(end);
    sampler.take_until(&mut sim, end - warmup_ms);
    let (result, written) = sim.finish(end, &sc.name, &sc.policy, seed, sampler.samples);
    if let Some(dir) = &opts.out {
        // A decisions.csv cut short (a full disk) fails the run rather than passing silently.
        written.map_err(|e| SimError::Run(format!("{}: {e}", dir.join(DECISIONS_CSV).display())))?;
        write_outputs(dir, &result, loaded, seed)?;
    }
    Ok(result)
}

fn open_trace(loaded: &Loaded, seed: u64) -> Result<TraceReader<Box<dyn BufRead + Send>>, SimError> {
    match &loaded.scenario.trace {
        TraceSource::Path(_) => {
            let path = loaded.trace_path().expect("path source");
            let f = std::fs::File::open(&path).map_err(|e| SimError::Input(format!("{}: {e}", path.display())))?;
            let r: Box<dyn BufRead + Send> = Box::new(std::io::BufReader::with_capacity(1 << 16, f));
            TraceReader::new(path.display().to_string(), r).map_err(|e| SimError::Input(e.to_string()))
        }
        TraceSource::Generate { generate: g } => {
            let mut buf = Vec::new();
            generate::generate(&gen_params(g, loaded), seed, &mut buf)
                .map_err(|e| SimError::Run(format!("trace generator: {e}")))?;
            let r: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(buf));
            TraceReader::new(format!("{}#generated", loaded.path.display()), r)
                .map_err(|e| SimError::Input(e.to_string()))
        }
    }
}

pub fn gen_params(g: &GenDef, loaded: &Loaded) -> generate::GenParams {
    generate::GenParams {
        days: g.days,
        start_weekday: (loaded.start_week_offset_s / 86_400) as u8,
        customers: g.customers,
        peak_concurrent: g.peak_concurrent,
        tier_mix: g.tier_mix,
        always_on_fraction_large: g.always_on_fraction_large,
        flash_crowds: g
            .flash_crowds
            .iter()
            .map(|f| generate::FlashCrowd { at_s: f.at_s, starts: f.starts, within_s: f.within_s })
            .collect(),
        weekend_boost: g.weekend_boost,
        players: g.players,
    }
}

/// Dense ids for trace server names. Names of up to 15 bytes (nearly all) are packed
/// with their length into one `u128` key, so a lookup hashes two words and compares in
/// place instead of following a pointer to a heap string; longer names use a string map.
#[derive(Default)]
struct Interner {
    short: FastMap<u128, u64>,
    long: FastMap<String, u64>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u64 {
        let next = (self.short.len() + self.long.len()) as u64;
        let b = name.as_bytes();
        if b.len() < 16 {
            let mut buf = [0u8; 16];
            buf[..b.len()].copy_from_slice(b);
            buf[15] = b.len() as u8;
            return *self.short.entry(u128::from_le_bytes(buf)).or_insert(next);
        }
        if let Some(&id) = self.long.get(name) {
            return id;
        }
        self.long.insert(name.to_string(), next);
        next
    }
}

fn next_row(
    reader: &mut TraceReader<Box<dyn BufRead + Send>>,
    interner: &mut Interner,
) -> Result<Option<Row>, SimError> {
    let Some(r) = reader.next_row() else { return Ok(None) };
    let r = r.map_err(|e| SimError::Input(e.to_string()))?;
    let id = interner.id(r.server);
    Ok(Some(Row {
        at_ms: r.at_ms,
        server: ServerId(id),
        action: r.action,
        ram_mb: r.ram_mb,
        plan: r.plan.into(),
        players: r.players,
    }))
}

/// Writes the decisions.csv line of a placement into `l` (cleared first): the bytes of
/// `"{}.{:03},place,{server},{name},waited_ms={waited_ms};world={world:?}\n"`.
fn place_line(l: &mut Vec<u8>, at: u64, server: u64, name: &str, waited_ms: u64, world: &WorldAction) {
    l.clear();
    push_seconds(l, at);
    l.extend_from_slice(b",place,");
    push_u64(l, server);
    l.push(b',');
    l.extend_from_slice(name.as_bytes());
    l.extend_from_slice(b",waited_ms=");
    push_u64(l, waited_ms);
    l.extend_from_slice(b";world=");
    match world {
        WorldAction::InPlace => l.extend_from_slice(b"InPlace"),
        WorldAction::RestoreFromArchive => l.extend_from_slice(b"RestoreFromArchive"),
        WorldAction::MoveFrom(NodeId(n)) => {
            l.extend_from_slice(b"MoveFrom(NodeId(");
            push_u64(l, u64::from(*n));
            l.extend_from_slice(b"))");
        }
    }
    l.push(b'\n');
}

/// Bytes collected before a buffer is handed to the writing thread.
const WRITE_BUFFER: usize = 1 << 20;

/// A file written on a thread of its own (decisions.csv, tens of MB on a large run): the
/// event loop fills a buffer and hands it over when full, so the write system calls and
/// the kernel's copy overlap the loop. Buffers come back for reuse. `flush` waits until
/// everything handed over is written; the first write error is returned from then on.
struct WriterThread {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    back: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    in_flight: usize,
    failed: Option<std::io::ErrorKind>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl WriterThread {
    fn spawn(mut f: std::fs::File) -> std::io::Result<WriterThread> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (back_tx, back) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new().name("decisions-writer".into()).spawn(move || {
            for mut b in rx {
                let r = f.write_all(&b).map(|()| {
                    b.clear();
                    b
                });
                if back_tx.send(r).is_err() {
                    return;
                }
            }
        })?;
        Ok(WriterThread {
            buf: Vec::with_capacity(WRITE_BUFFER),
            tx: Some(tx),
            back,
            in_flight: 0,
            failed: None,
            handle: Some(handle),
        })
    }

    /// Note a buffer's return (or the writer's error).
    fn returned(&mut self, r: Option<std::io::Result<Vec<u8>>>) -> Option<Vec<u8>> {
        self.in_flight -= 1;
        match r {
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                self.failed = self.failed.or(Some(e.kind()));
                None
            }
            None => {
                self.failed = self.failed.or(Some(std::io::ErrorKind::BrokenPipe));
                None
            }
        }
    }

    /// Hand the buffer over, continuing in a returned one (or a new one).
    fn ship(&mut self) -> std::io::Result<()> {
        if let Some(kind) = self.failed {
            // The file is incomplete already: what follows is dropped, not hoarded.
            self.buf.clear();
            return Err(kind.into());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut spare = None;
        while let Ok(r) = self.back.try_recv() {
            spare = self.returned(Some(r)).or(spare);
        }
        let next = spare.unwrap_or_else(|| Vec::with_capacity(WRITE_BUFFER));
        let full = std::mem::replace(&mut self.buf, next);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(full).is_ok());
        if !sent {
            self.failed = self.failed.or(Some(std::io::ErrorKind::BrokenPipe));
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.in_flight += 1;
        Ok(())
    }
}

impl Write for WriterThread {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= WRITE_BUFFER {
            self.ship()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ship()?;
        while self.in_flight > 0 {
            let r = self.back.recv().ok();
            self.returned(r);
        }
        match self.failed {
            Some(kind) => Err(kind.into()),
            None => Ok(()),
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        let _ = self.ship();
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Rows per batch handed from the parsing thread to the event loop.
const ROW_BATCH: usize = 4096;
/// Batches in flight: bounds the memory the parser may run ahead by.
const BATCHES_IN_FLIGHT: usize = 4;

/// The trace's rows, parsed and interned on a thread of their own so that parsing
/// overlaps the event loop. Rows arrive in file order; the first error ends the stream
/// after the rows before it, exactly as a sequential reader would. Interning happens on
/// that one thread in file order, so ids do not depend on timing.
struct Rows {
    /// Batches in file order; `Ok(None)` marks the end of the trace, so a parser that
    /// died (a panic) is told apart from one that finished.
    rx: std::sync::mpsc::Receiver<Result<Option<Vec<Row>>, SimError>>,
    batch: std::vec::IntoIter<Row>,
    /// The stream ended or failed.
    done: bool,
}

impl Rows {
    fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        mut reader: TraceReader<Box<dyn BufRead + Send>>,
    ) -> Result<Rows, SimError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        std::thread::Builder::new()
            .name("trace-parser".into())
            .spawn_scoped(scope, move || {
                let mut interner = Interner::default();
                loop {
                    let mut batch = Vec::with_capacity(ROW_BATCH);
                    let mut failed = None;
                    while batch.len() < ROW_BATCH {
                        match next_row(&mut reader, &mut interner) {
                            Ok(Some(r)) => batch.push(r),
                            Ok(None) => break,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    let last = batch.len() < ROW_BATCH;
                    // A closed channel means the event loop stopped: so does parsing.
                    if !batch.is_empty() && tx.send(Ok(Some(batch))).is_err() {
                        return;
                    }
                    if let Some(e) = failed {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    if last {
                        let _ = tx.send(Ok(None));
                        return;
                    }
                }
            })
            .map_err(|e| SimError::Run(format!("cannot start the trace parser: {e}")))?;
        Ok(Rows { rx, batch: Vec::new().into_iter(), done: false })
    }

    fn next(&mut self) -> Result<Option<Row>, SimError> {
        loop {
            if let Some(r) = self.batch.next() {
                return Ok(Some(r));
            }
            if self.done {
                return Ok(None);
            }
            match self.rx.recv() {
                Ok(Ok(Some(batch))) => self.batch = batch.into_iter(),
                Ok(Ok(None)) => self.done = true,
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(SimError::Run("the trace parser stopped before the end of the trace".into()));
                }
            }
        }
    }
}

impl Sim<'_> {
    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        let item = Item { t, seq: self.seq, ev };
        if t == self.clock {
            self.now_queue.push_back(item);
        } else {
            self.heap.push(item);
        }
    }

    /// The next world event's time, from the heap and the same-time queue.
    fn next_world_t(&self) -> Option<u64> {
        match (self.heap.peek(), self.now_queue.front()) {
            (Some(h), Some(q)) => Some(h.t.min(q.t)),
            (h, q) => h.or(q).map(|i| i.t),
        }
    }

    fn pop_world(&mut self) -> Option<Item> {
        let from_queue = match (self.heap.peek(), self.now_queue.front()) {
            (Some(h), Some(q)) => (q.t, q.seq) < (h.t, h.seq),
            (None, Some(_)) => true,
            _ => false,
        };
        if from_queue {
            self.now_queue.pop_front()
        } else {
            self.heap.pop()
        }
    }

    fn deliver(&mut self, t: u64, input: Input) {
        self.engine.handle(Millis(t), input);
        self.drain(t);
    }

    fn row(&mut self, t: u64, row: Row) {
        match row.action {
            Action::Start => {
                if self.deferred.contains_key(&row.server) {
                    self.duplicate_starts += 1;
                    return;
                }
                let status = self.engine.server_status(row.server);
                if matches!(status, Some(ServerStatus::Stopping { .. })) {
                    // Its previous stop has not completed: the start waits for the exit, as
                    // a customer's restart would, and its wait counts from now.
                    self.deferred.insert(row.server, (t, row.ram_mb, row.plan));
                } else {
                    self.start(t, t, row.server, row.ram_mb, row.plan, status);
                }
            }
            Action::Stop => {
                if let Some((at, _, _)) = self.deferred.remove(&row.server) {
                    // The waiting restart is withdrawn before it reached the engine.
                    self.requests += 1;
                    self.cancelled += 1;
                    self.record_wait(t - at);
                    self.demanded_ms += u128::from(t - at);
                    return;
                }
                let reply = self.engine.handle(Millis(t), Input::StopRequested { server: row.server });
                match reply {
                    Reply::Stop(StopReply::Cancelled | StopReply::Stopping) => {
                        // Serving ends with the demand; the exit that follows only
                        // frees the node.
                        self.serve(t, row.server, 0, false);
                        if let Some(tr) = self.tracked.get_mut(&row.server) {
                            if let Some(since) = tr.demanded_since.take() {
                                self.demanded_ms += u128::from(t - since);
                            }
                        }
                    }
                    _ => self.ignored_rows += 1,
                }
                self.drain(t);
            }
            Action::Players => {
                self.engine.handle(Millis(t), Input::Players { server: row.server, count: row.players });
                self.drain(t);
            }
        }
    }

    /// A start request reaching the engine at `t`, requested at `requested_at`, for a
    /// server whose status is `status`.
    fn start(
        &mut self,
        t: u64,
        requested_at: u64,
        server: ServerId,
        ram_mb: u32,
        plan: Plan,
        status: Option<ServerStatus>,
    ) {
        let input = Input::StartRequested { server, ram_mb, plan, user: UserId(server.0) };
        // Account the request before the engine's events about it arrive.
        let fresh = !status.is_some_and(|s| !matches!(s, ServerStatus::Stopped { .. }));
        if fresh {
            let tr = self.tracked.entry_or_default(server);
            tr.ram_mb = ram_mb;
            tr.requested_at = Some(requested_at);
            tr.waited = false;
            if tr.demanded_since.is_none() {
                tr.demanded_since = Some(requested_at);
            }
        }
        let reply = self.engine.handle(Millis(t), input);
        match reply {
            Reply::Start(StartReply::Placed { .. } | StartReply::Queued { .. }) => self.requests += 1,
            Reply::Start(
                StartReply::AlreadyQueued { .. }
                | StartReply::AlreadyStarting { .. }
                | StartReply::AlreadyRunning { .. }
                | StartReply::Busy,
            ) => self.duplicate_starts += 1,
            _ => {
                self.rejected += 1;
                if let Some(tr) = self.tracked.get_mut(&server) {
                    tr.requested_at = None;
                    tr.demanded_since = None;
                }
                self.forget(server);
            }
        }
        self.drain(t);
    }

    fn drain(&mut self, now: u64) {
        while let Some(cmd) = self.engine.poll_command() {
            self.command(now, cmd);
        }
    }

    fn command(&mut self, now: u64, cmd: Command) {
        let api_ms = self.world.timing.api_s * 1000;
        match cmd {
            Command::StartContainer { server, node, world, .. } => {
                let delay = self.world.start_delay_ms(world);
                let ok = !self.world.start_fails();
                self.push(now + delay, Ev::StartDone { server, node, ok });
            }
            Command::StopContainer { server, node, .. } => {
                let delay = self.world.timing.container_stop_s * 1000;
                self.push(now + delay, Ev::StopDone { server, node });
            }
            Command::ProvisionNode { node, name, server_type } => {
                self.names.insert(node, name);
                if self.world.provision_fails() {
                    let reason = "provisioning failed (simulated)".to_string();
                    self.push(now + api_ms, Ev::Deliver(Box::new(Input::ProvisionFailed { node, reason })));
                    return;
                }
                let t = self.world.server_type(&server_type).cloned().expect("the engine buys catalogue types");
                let vm = Vm { created_ms: now, hourly_eur: t.hourly_eur, monthly_cap_eur: t.monthly_cap_eur };
                self.world.hosts.insert(
                    node,
                    Host { kind: NodeKind::Cloud, up: false, containers: Default::default(), vm: Some(vm) },
                );
                let input =
                    Input::NodeProvisioned { node, provider_id: format!("sim-{}", node.0), address: String::new() };
                self.push(now + api_ms, Ev::Deliver(Box::new(input)));
                let boot = self.world.boot_delay_ms();
                self.push(now + api_ms + boot, Ev::Booted(node));
            }
            Command::DeleteNode { node, .. } => self.push(now + api_ms, Ev::Deleted(node)),
            Command::ProbeHealth { nodes } => self.push(now, Ev::Probe(nodes)),
            // The simulated world keeps no world copies beyond the engine's own record.
            Command::DeleteWorld { .. } => {}
            Command::ArchiveWorld { server, node, generation } => {
                let delay = self.world.timing.archive_s * 1000;
                self.push(now + delay, Ev::Archived { server, node, generation });
            }
            Command::ListContainers { node } => self.push(now, Ev::List(node)),
            Command::Publish(e) => self.event(now, e),
        }
    }

    fn world_event(&mut self, t: u64, ev: Ev) {
        match ev {
            Ev::Deliver(input) => self.deliver(t, *input),
            Ev::StartDone { server, node, ok } => {
                let host = self.world.hosts.get_mut(&node).filter(|h| h.up);
                match host {
                    Some(h) if ok => {
                        h.containers.insert(server);
                        self.deliver(t, Input::ContainerStarted { server, node });
                    }
                    _ => {
                        let reason = if ok { "node unreachable" } else { "container failed to start (simulated)" };
                        self.deliver(t, Input::ContainerFailed { server, node, reason: reason.into() });
                    }
                }
            }
            Ev::StopDone { server, node } => {
                if let Some(h) = self.world.hosts.get_mut(&node).filter(|h| h.up) {
                    // The stop answers whether a container was there at all.
                    if h.containers.remove(&server) {
                        self.deliver(t, Input::ContainerExited { server, node });
                    } else {
                        let reason = "no such container".to_string();
                        self.deliver(t, Input::ContainerFailed { server, node, reason });
                    }
                }
            }
            Ev::DeferredStart { server, requested_at, ram_mb, plan } => {
                let status = self.engine.server_status(server);
                self.start(t, requested_at, server, ram_mb, plan, status)
            }
            Ev::Booted(node) => {
                if let Some(h) = self.world.hosts.get_mut(&node) {
                    h.up = true;
                    if let Some(dt) = self.world.next_crash_in_ms() {
                        self.push(t + dt, Ev::Crash(node));
                    }
                }
            }
            Ev::Deleted(node) => {
                if let Some(h) = self.world.hosts.remove(&node) {
                    if let Some(vm) = h.vm {
                        self.world.cloud_closed_eur += vm.bill(t);
                    }
                }
                self.deliver(t, Input::NodeDeleted { node });
            }
            Ev::Probe(nodes) => {
                let results = nodes.into_iter().map(|node| (node, self.world.hosts.get(&node).is_some_and(|h| h.up)));
                let input = Input::HealthProbes { results: results.collect() };
                self.deliver(t, input);
            }
            Ev::Archived { server, node, generation } => {
                if self.world.hosts.get(&node).is_some_and(|h| h.up) {
                    self.deliver(t, Input::WorldArchived { server, generation });
                }
            }
            Ev::List(node) => {
                if let Some(h) = self.world.hosts.get(&node).filter(|h| h.up) {
                    let mut servers: Vec<ServerId> = h.containers.iter().copied().collect();
                    servers.sort_unstable();
                    self.deliver(t, Input::NodeContainers { node, servers });
                }
            }
            Ev::Crash(node) => {
                if let Some(h) = self.world.hosts.get_mut(&node).filter(|h| h.up) {
                    h.up = false;
                    h.containers.clear();
                    self.world.crashes += 1;
                    let repair = self.world.timing.node_repair_s * 1000;
                    self.push(t + repair, Ev::Repair(node));
                    let name = self.names.get(&node).cloned().unwrap_or_default();
                    self.decision(t, "node_crash", None, Some(&name), "");
                }
            }
            Ev::Repair(node) => {
                if let Some(h) = self.world.hosts.get_mut(&node) {
                    h.up = true;
                    if let Some(dt) = self.world.next_crash_in_ms() {
                        self.push(t + dt, Ev::Crash(node));
                    }
                }
            }
        }
    }

    /// Measurements from the engine's published events.
    fn event(&mut self, t: u64, e: Event) {
        match &e {
            Event::Placed { server, node, waited_ms, world } => {
                // Placed again without an exit in between (a move): a start that waited for
                // the exit was a duplicate after all.
                if !self.deferred.is_empty() && self.deferred.remove(server).is_some() {
                    self.duplicate_starts += 1;
                }
                let ram = self.tracked.get(server).map_or(0, |tr| tr.ram_mb);
                let tr = self.tracked.entry_or_default(*server);
                if tr.requested_at.is_some() && !tr.waited {
                    tr.waited = true;
                    let w = t - tr.requested_at.expect("checked");
                    self.record_wait(w);
                }
                self.serve(t, *server, ram, true);
                self.check_placement(t, *node);
                // The most frequent decision, written without intermediate strings.
                let at = t.saturating_sub(self.warmup_ms);
                // Formatted by hand: `fmt` costs more than the rest of the placement.
                let name = self.names.get(node).map_or("", String::as_str);
                place_line(&mut self.line, at, server.0, name, *waited_ms, world);
                let _ = self.decisions.write_all(&self.line);
            }
            Event::Started { server, .. } => {
                if let Some(tr) = self.tracked.get_mut(server) {
                    if tr.requested_at.take().is_some() {
                        self.started += 1;
                    }
                }
            }
            Event::StartFailed { server, reason } => {
                if matches!(reason, FailReason::TooLarge { .. }) {
                    self.decision(t, "start_failed", Some(*server), None, &reason.to_string());
                    return;
                }
                if self.close_unstarted(t, *server) {
                    self.timed_out += 1;
                }
                self.serve(t, *server, 0, false);
                self.end_demand(t, *server);
                self.decision(t, "start_failed", Some(*server), None, &reason.to_string());
                self.forget(*server);
            }
            Event::Cancelled { server } => {
                if self.close_unstarted(t, *server) {
                    self.cancelled += 1;
                }
                self.forget(*server);
            }
            Event::StartAttemptFailed { server, node, reason } => {
                self.serve(t, *server, 0, false);
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "start_attempt_failed", Some(*server), Some(&name), reason);
            }
            Event::Stopped { server, kind, node } => {
                self.serve(t, *server, 0, false);
                self.end_demand(t, *server);
                if *kind == ExitKind::Idle {
                    self.idle_stops += 1;
                }
                if *kind != ExitKind::Requested {
                    let name = self.names.get(node).cloned().unwrap_or_default();
                    self.decision(t, "stopped", Some(*server), Some(&name), &format!("{kind:?}"));
                }
                self.forget(*server);
                if let Some((requested_at, ram_mb, plan)) = self.deferred.remove(server) {
                    self.push(t, Ev::DeferredStart { server: *server, requested_at, ram_mb, plan });
                }
            }
            Event::Requeued { server, node } => {
                self.serve(t, *server, 0, false);
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "requeued", Some(*server), Some(&name), "node fenced or released");
            }
            Event::ScaleUp { node, server_type, policy, reason } => {
                self.peak_cloud = self.peak_cloud.max(self.engine.cloud_nodes());
                // The event comes before the command that names the VM: the engine knows its name.
                let name = self.engine.fleet().get(*node).map(|n| n.name.clone()).unwrap_or_else(|| format!("{node}"));
                self.decision(t, "scale_up", None, Some(&name), &format!("{server_type} by {policy}: {reason}"));
            }
            Event::ScaleDown { node, policy, reason } => {
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "scale_down", None, Some(&name), &format!("by {policy}: {reason}"));
            }
            Event::ServerLost { server, node } => {
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "server_lost", Some(*server), Some(&name), "");
            }
            Event::NodeHealthChanged { node, from, to } => {
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "node_health", None, Some(&name), &format!("{from:?}->{to:?}"));
            }
            Event::ProvisionFailed { node, reason } => {
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "provision_failed", None, Some(&name), reason);
            }
            Event::NodeFenced { node } => {
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "node_fenced", None, Some(&name), "");
            }
            Event::ConsolidationStarted { node, policy, reason } => {
                let name = self.names.get(node).cloned().unwrap_or_default();
                self.decision(t, "consolidate", None, Some(&name), &format!("by {policy}: {reason}"));
            }
            Event::MigrationStarted { server, from, to } => {
                let name = self.names.get(from).cloned().unwrap_or_default();
                let to = self.names.get(to).cloned().unwrap_or_default();
                self.decision(t, "migrate", Some(*server), Some(&name), &format!("to {to}"));
            }
            Event::Migrated { server, to, .. } => {
                let name = self.names.get(to).cloned().unwrap_or_default();
                self.decision(t, "migrated", Some(*server), Some(&name), "");
            }
            Event::MigrationAborted { server, from, reason, .. } => {
                let name = self.names.get(from).cloned().unwrap_or_default();
                self.decision(t, "migration_aborted", Some(*server), Some(&name), reason);
            }
            Event::Queued { .. }
            | Event::NodeProvisioned { .. }
            | Event::NodeRemoved { .. }
            | Event::NodeDrained { .. }
            | Event::ScalingSet { .. }
            | Event::ServerDeleted { .. }
            | Event::WorldArchived { .. }
            | Event::WorldOn { .. } => {}
        }
    }

    fn record_wait(&mut self, w: u64) {
        self.waits.add(w);
        self.interval_waits.push(w);
        if w > 30_000 {
            self.over_30s += 1;
        }
    }

    /// A request ends without a start: it counts with the time it waited, unless it
    /// already had a placement (whose wait was recorded then).
    /// Returns whether a request was open (requeued servers that had started are not a
    /// new request, so their end is not counted again).
    fn close_unstarted(&mut self, t: u64, server: ServerId) -> bool {
        let Some(tr) = self.tracked.get_mut(&server) else { return false };
        let Some(at) = tr.requested_at.take() else { return false };
        if !tr.waited {
            tr.waited = true;
            self.record_wait(t - at);
        }
        true
    }

    fn serve(&mut self, t: u64, server: ServerId, ram: u32, on: bool) {
        let Some(tr) = self.tracked.get_mut(&server) else { return };
        let ram = if on { ram } else { tr.ram_mb };
        match (on, tr.served_since) {
            (true, None) => {
                self.bound.advance(t, self.served_mb);
                tr.served_since = Some(t);
                self.served_mb += u64::from(ram);
            }
            (false, Some(since)) => {
                self.bound.advance(t, self.served_mb);
                tr.served_since = None;
                self.served_mb -= u64::from(ram);
                self.served_ms += u128::from(t - since);
            }
            _ => {}
        }
    }

    fn end_demand(&mut self, t: u64, server: ServerId) {
        if let Some(since) = self.tracked.get_mut(&server).and_then(|tr| tr.demanded_since.take()) {
            self.demanded_ms += u128::from(t - since);
        }
    }

    /// Drop the measurement record of a server the engine no longer runs.
    fn forget(&mut self, server: ServerId) {
        let done = self
            .tracked
            .get(&server)
            .is_some_and(|tr| tr.requested_at.is_none() && tr.served_since.is_none() && tr.demanded_since.is_none());
        if done {
            self.tracked.remove(&server);
        }
    }

    fn check(&mut self, t: u64) {
        for b in self.engine.check_invariants() {
            self.violation(t, b);
        }
    }

    /// The cheap per-event assertions (O(1), after every event whatever `--check` says).
    fn check_limits(&mut self, t: u64) {
        let cfg = self.engine.config();
        let limits =
            (self.engine.cloud_nodes(), cfg.scaling.max_cloud_nodes, self.engine.queue().len(), cfg.queue.len_max);
        if let Some(p) = limit_problem(limits.0, limits.1, limits.2, limits.3) {
            self.violation(t, p);
        }
    }

    /// The cheap assertion of a placement, right after it.
    fn check_placement(&mut self, t: u64, node: NodeId) {
        let fleet = self.engine.fleet();
        if let Some(p) = placement_problem(node, fleet.get(node), fleet.reserve()) {
            self.violation(t, p);
        }
    }

    fn violation(&mut self, t: u64, what: String) {
        self.violations += 1;
        if self.violation_lines.len() < VIOLATIONS_KEPT {
            self.violation_lines.push(format!("t={}: {what}", Millis(t.saturating_sub(self.warmup_ms))));
        }
    }

    fn write_decision_header(&mut self) {
        let _ = writeln!(self.decisions, "at_s,decision,server,node,detail");
    }

    fn decision(&mut self, t: u64, kind: &str, server: Option<ServerId>, node: Option<&str>, detail: &str) {
        let at = t.saturating_sub(self.warmup_ms);
        let server = server.map(|s| s.0.to_string()).unwrap_or_default();
        let detail = detail.replace(',', ";");
        let _ =
            writeln!(self.decisions, "{}.{:03},{kind},{server},{},{detail}", at / 1000, at % 1000, node.unwrap_or(""));
    }

    fn sample(&mut self, t: u64, trace_t: u64) -> Sample {
        self.bound.advance(t, self.served_mb);
        let reserve = self.engine.config().reserve.clone();
        let (mut capacity, mut ded, mut cloud, mut pending, mut allocated) = (0u64, 0u32, 0u32, 0u32, 0u64);
        for n in self.engine.fleet().iter().filter(|n| !n.system) {
            allocated += n.allocated_mb();
            if n.placeable() {
                capacity += n.usable_mb(&reserve);
            }
            match (n.kind, n.lifecycle) {
                (NodeKind::Dedicated, _) => ded += 1,
                (NodeKind::Cloud, Lifecycle::AwaitingProvision) => pending += 1,
                (NodeKind::Cloud, _) => cloud += 1,
            }
        }
        let wait_p95_s = if self.interval_waits.is_empty() {
            0.0
        } else {
            self.interval_waits.sort_unstable();
            let rank = ((0.95 * self.interval_waits.len() as f64).ceil() as usize).max(1);
            self.interval_waits[rank - 1] as f64 / 1000.0
        };
        self.interval_waits.clear();
        let dedicated = trace_t as f64 * self.dedicated_eur_per_ms;
        Sample {
            t_ms: trace_t,
            demand_mb: self.engine.queue().total_ram_mb() + self.served_mb,
            allocated_mb: allocated,
            capacity_mb: capacity,
            queue_len: self.engine.queue().len() as u32,
            wait_p95_s,
            nodes_dedicated: ded,
            nodes_cloud: cloud,
            nodes_pending: pending,
            cost_eur: dedicated + self.world.cloud_cost_eur(t),
            bound_eur: dedicated + self.bound.acc_eur,
        }
    }

    /// The run's result, and whether `decisions.csv` was written in full.
    fn finish(
        mut self,
        end: u64,
        scenario: &str,
        policy: &str,
        seed: u64,
        samples: Vec<Sample>,
    ) -> (RunResult, std::io::Result<()>) {
        // Requests still open wait until the end; servers still served are served to the end.
        // In server id order (the map iterates that way).
        let open: Vec<(ServerId, u64, bool)> =
            self.tracked.iter().filter_map(|(s, tr)| tr.requested_at.map(|at| (s, at, tr.waited))).collect();
        for (_, at, waited) in &open {
            if !waited {
                self.record_wait(end - at);
            }
        }
        // Restarts still waiting for their server's exit are requests queued at the end.
        let deferred: Vec<u64> = self.deferred.values().map(|&(at, _, _)| at).collect();
        for at in &deferred {
            self.record_wait(end - at);
        }
        self.requests += deferred.len() as u64;
        let queued_at_end = (open.len() + deferred.len()) as u64;
        let still: Vec<ServerId> = self.tracked.iter().map(|(s, _)| s).collect();
        for s in still {
            self.serve(end, s, 0, false);
            self.end_demand(end, s);
        }
        self.bound.advance(end, self.served_mb);
        let run_ms = end - self.warmup_ms;
        let dedicated = run_ms as f64 * self.dedicated_eur_per_ms;
        let cloud = self.world.cloud_cost_eur(end);
        let total = dedicated + cloud;
        let lower = dedicated + self.bound.acc_eur;
        let counters = self.engine.counters().clone();
        let hours = run_ms as f64 / HOUR_MS as f64;
        let s = |ms: u64| round(ms as f64 / 1000.0, 3);
        let summary = Summary {
            scenario: scenario.to_string(),
            policy: policy.to_string(),
            seed,
            duration_s: s(run_ms),
            requests: self.requests,
            started: self.started,
            timed_out: self.timed_out,
            cancelled: self.cancelled,
            queued_at_end,
            rejected: self.rejected,
            duplicate_starts: self.duplicate_starts,
            ignored_rows: self.ignored_rows,
            wait_s: WaitStats {
                p50: s(self.waits.percentile_ms(50.0)),
                p95: s(self.waits.percentile_ms(95.0)),
                p99: s(self.waits.percentile_ms(99.0)),
                max: s(self.waits.max_ms()),
                mean: round(self.waits.mean_ms() / 1000.0, 3),
            },
            joins_over_30s: if self.waits.count() == 0 {
                0.0
            } else {
                round(self.over_30s as f64 / self.waits.count() as f64, 6)
            },
            cost_eur: CostStats { total: round(total, 4), dedicated: round(dedicated, 4), cloud: round(cloud, 4) },
            lower_bound_eur: round(lower, 4),
            cost_ratio: (lower > 0.0).then(|| round(total / lower, 4)),
            scale_ups: counters.scale_ups,
            scale_downs: counters.scale_downs,
            peak_cloud_nodes: self.peak_cloud,
            churn_per_hour: if hours > 0.0 {
                round((counters.scale_ups + counters.scale_downs) as f64 / hours, 4)
            } else {
                0.0
            },
            budget_refusals: counters.budget_refusals,
            rebuy_refusals: counters.rebuy_refusals,
            flaps: counters.rebuys,
            scale_down_vetoes: counters.scale_down_vetoes,
            idle_stops: self.idle_stops,
            crashes: self.world.crashes,
            invariant_violations: self.violations,
            events: self.events,
        };
        let written = self.decisions.flush();
        let result = RunResult {
            summary,
            violations: self.violation_lines,
            demanded_ms: self.demanded_ms,
            served_ms: self.served_ms,
            trace_rows: self.trace_rows,
            samples,
        };
        (result, written)
    }
}

fn write_outputs(dir: &Path, r: &RunResult, loaded: &Loaded, seed: u64) -> Result<(), SimError> {
    let (scenario, policy) = (loaded.scenario.name.as_str(), loaded.scenario.policy.as_str());
    let io = |p: &Path, e: std::io::Error| SimError::Run(format!("{}: {e}", p.display()));
    let p = dir.join(SUMMARY_JSON);
    let mut json = serde_json::to_string_pretty(&r.summary).expect("summary serializes");
    json.push('\n');
    std::fs::write(&p, json).map_err(|e| io(&p, e))?;
    let s = &r.summary;
    let rows: Vec<(String, String)> = vec![
        ("requests".into(), s.requests.to_string()),
        ("started".into(), s.started.to_string()),
        ("timed out".into(), s.timed_out.to_string()),
        ("cancelled".into(), s.cancelled.to_string()),
        ("queued at end".into(), s.queued_at_end.to_string()),
        (
            "wait p50 / p95 / p99 / max (s)".into(),
            format!("{} / {} / {} / {}", s.wait_s.p50, s.wait_s.p95, s.wait_s.p99, s.wait_s.max),
        ),
        ("joins over 30 s".into(), format!("{:.2} %", s.joins_over_30s * 100.0)),
        (
            "cost (€)".into(),
            format!("{:.2} (dedicated {:.2}, cloud {:.2})", s.cost_eur.total, s.cost_eur.dedicated, s.cost_eur.cloud),
        ),
        ("lower bound (€)".into(), format!("{:.2}", s.lower_bound_eur)),
        ("cost / bound".into(), s.cost_ratio.map_or("n/a".into(), |r| format!("{r:.3}"))),
        ("scale ups / downs, flaps".into(), format!("{} / {}, {}", s.scale_ups, s.scale_downs, s.flaps)),
        (
            "refusals budget / rebuy, scale-down vetoes".into(),
            format!("{} / {}, {}", s.budget_refusals, s.rebuy_refusals, s.scale_down_vetoes),
        ),
        ("peak cloud nodes".into(), s.peak_cloud_nodes.to_string()),
        ("invariant violations".into(), s.invariant_violations.to_string()),
    ];
    let mut notes = vec![format!(
        "Reproduce: `{}`. Same scenario and seed give byte-identical summary.json and decisions.csv.",
        reproduce_command(loaded, seed)
    )];
    notes.extend(r.violations.iter().map(|v| format!("violation: {v}")));
    report::write_report(
        dir,
        &ReportInput { title: scenario, policy, seed, samples: &r.samples, summary_rows: &rows, notes: &notes },
    )
    .map_err(|e| SimError::Run(e.to_string()))
}

/// The command line that runs this simulation again: the scenario's path as it was given,
/// its seed and policy, and every `--set` (quoted for a POSIX shell where needed).
fn reproduce_command(loaded: &Loaded, seed: u64) -> String {
    let quote = |a: &str| {
        if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    let sc = &loaded.scenario;
    let mut cmd = format!(
        "conductor simulate {} --seed {seed} --policy {}",
        quote(&loaded.path.display().to_string()),
        quote(&sc.policy)
    );
    for s in &loaded.sets {
        cmd.push_str(" --set ");
        cmd.push_str(&quote(s));
    }
    cmd
}

/// Plot samples every `every_ms` of trace time; with `thin`, reaching [`SAMPLES_MAX`] drops
/// every other one and doubles the interval.
struct Sampler {
    samples: Vec<Sample>,
    next_ms: u64,
    every_ms: u64,
    thin: bool,
}

impl Sampler {
    /// Takes every sample due up to trace time `until_ms`.
    fn take_until(&mut self, sim: &mut Sim, until_ms: u64) {
        while self.next_ms <= until_ms {
            self.samples.push(sim.sample(self.next_ms + sim.warmup_ms, self.next_ms));
            self.next_ms += self.every_ms;
            if self.thin && self.samples.len() >= SAMPLES_MAX {
                self.samples = std::mem::take(&mut self.samples).into_iter().step_by(2).collect();
                self.every_ms *= 2;
            }
        }
    }
}

/// The engine keeps within its cloud-node and queue limits.
fn limit_problem(cloud: u32, max_cloud: u32, queued: usize, max_queued: u32) -> Option<String> {
    if cloud > max_cloud {
        Some(format!("{cloud} cloud nodes, above the maximum of {max_cloud}"))
    } else if queued > max_queued as usize {
        Some(format!("{queued} queued starts, above the queue's limit of {max_queued}"))
    } else {
        None
    }
}

/// A server was just placed on `id`: the node exists, is a worker, and what is booked on it
/// fits its usable RAM.
fn placement_problem(
    id: NodeId,
    node: Option<&conductor_core::node::Node>,
    reserve: &conductor_core::config::ReserveConfig,
) -> Option<String> {
    match node {
        None => Some(format!("placed on unknown node {id}")),
        Some(n) if n.system => Some(format!("placed on system node {}", n.name)),
        Some(n) => {
            let (booked, usable) = (n.allocated_mb(), n.usable_mb(reserve));
            (booked > usable).then(|| format!("{} books {booked} MB of {usable} MB usable", n.name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything written, in chunks small and large across buffer boundaries, is in the
    /// file after a flush, in order; a write error (a full disk) comes back from `flush`.
    #[test]
    fn the_writer_thread_writes_everything_in_order_and_reports_errors() {
        let path = std::env::temp_dir().join(format!("conductor-writer-{}.txt", std::process::id()));
        let mut w = WriterThread::spawn(std::fs::File::create(&path).unwrap()).unwrap();
        let mut want = Vec::new();
        for i in 0..200_000u32 {
            let chunk = if i % 1000 == 0 { vec![b'x'; 70_000] } else { format!("{i},").into_bytes() };
            w.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        w.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want, "after flush");
        w.write_all(b"tail").unwrap();
        drop(w);
        want.extend_from_slice(b"tail");
        assert_eq!(std::fs::read(&path).unwrap(), want, "after drop");
        std::fs::remove_file(&path).unwrap();

        let mut full = WriterThread::spawn(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()).unwrap();
        for _ in 0..3 {
            let _ = full.write_all(&vec![b'y'; WRITE_BUFFER]);
        }
        assert!(full.flush().is_err(), "a full disk is reported");
    }

    #[test]
    fn the_reproduce_line_names_the_path_and_every_override() {
        let dir = std::env::temp_dir().join(format!("conductor-repro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("my scenario.toml");
        std::fs::write(&file, "trace = \"t.csv\"\n").unwrap();
        let sets = vec!["conductor.reactive.scale_up_threshold_percent=80".to_string(), "trace=\"it's.csv\"".into()];
        let loaded = crate::scenario::load(&file, &sets, Some("seed")).unwrap();
        let cmd = reproduce_command(&loaded, 7);
        let want = format!(
            "conductor simulate '{}' --seed 7 --policy seed --set conductor.reactive.scale_up_threshold_percent=80 --set 'trace=\"it'\\''s.csv\"'",
            file.display()
        );
        assert_eq!(cmd, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_cheap_checks_flag_what_they_stand_for() {
        assert_eq!(limit_problem(10, 10, 5, 5), None);
        assert!(limit_problem(11, 10, 0, 5).unwrap().contains("cloud nodes"));
        assert!(limit_problem(0, 10, 6, 5).unwrap().contains("queued"));
        let reserve = conductor_core::config::ReserveConfig::default();
        let mut fleet =
            conductor_core::fleet::Fleet::new(reserve.clone(), conductor_core::config::PlacementStrategy::BestFit);
        let spec = |name: &str, system: bool| NodeSpec {
            name: name.into(),
            address: name.into(),
            kind: NodeKind::Dedicated,
            system,
            total_ram_mb: 4096,
            cores: 4,
            hourly_eur: 0.1,
            labels: Default::default(),
            provider_id: None,
            server_type: None,
        };
        let (worker, system) =
            (fleet.register(spec("w", false), Millis(0)), fleet.register(spec("s", true), Millis(0)));
        assert_eq!(placement_problem(worker, fleet.get(worker), &reserve), None);
        assert!(placement_problem(system, fleet.get(system), &reserve).unwrap().contains("system node"));
        assert!(placement_problem(NodeId(99), None, &reserve).unwrap().contains("unknown node"));
    }

    #[test]
    fn a_placement_line_has_the_bytes_fmt_would_write() {
        let worlds = [WorldAction::InPlace, WorldAction::RestoreFromArchive, WorldAction::MoveFrom(NodeId(7))];
        let mut l = Vec::new();
        for at in [0u64, 5, 50, 999, 1_000, 1_001, 86_399_999, u64::MAX] {
            for (server, waited_ms) in [(0u64, 0u64), (9, 10), (421_801, 599_999), (u64::MAX, u64::MAX)] {
                for world in &worlds {
                    place_line(&mut l, at, server, "cloud-12", waited_ms, world);
                    let want = format!(
                        "{}.{:03},place,{server},cloud-12,waited_ms={waited_ms};world={world:?}\n",
                        at / 1000,
                        at % 1000
                    );
                    assert_eq!(String::from_utf8_lossy(&l), want);
                }
            }
        }
    }

    fn trace(rows: usize, bad_after: Option<usize>) -> TraceReader<Box<dyn BufRead + Send>> {
        let mut text = String::from("at_s,server,action,ram_mb\n");
        for i in 0..rows {
            text.push_str(&format!("{i},s{},start,1024\n", i % 5_000));
            if bad_after == Some(i + 1) {
                text.push_str("oops\n");
            }
        }
        let r: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.into_bytes()));
        TraceReader::new("t.csv", r).unwrap()
    }

    #[test]
    fn the_parser_thread_yields_every_row_in_order_across_batches_and_then_its_first_error() {
        for rows in [0, 1, ROW_BATCH - 1, ROW_BATCH, ROW_BATCH + 1, 3 * ROW_BATCH + 17] {
            let got = std::thread::scope(|scope| {
                let mut r = Rows::spawn(scope, trace(rows, None)).unwrap();
                let mut got = Vec::new();
                while let Some(row) = r.next().unwrap() {
                    got.push((row.at_ms, row.server.0));
                }
                got
            });
            let want: Vec<(u64, u64)> = (0..rows).map(|i| (i as u64 * 1000, (i % 5_000) as u64)).collect();
            assert_eq!(got, want, "{rows} rows: ids in order of first appearance");
        }
        // An error at a batch boundary and inside a batch: the rows before it, then it.
        for bad_after in [ROW_BATCH, ROW_BATCH + 3] {
            let (n, err) = std::thread::scope(|scope| {
                let mut r = Rows::spawn(scope, trace(2 * ROW_BATCH, Some(bad_after))).unwrap();
                let mut n = 0;
                loop {
                    match r.next() {
                        Ok(Some(_)) => n += 1,
                        Ok(None) => panic!("no error after {n} rows"),
                        Err(e) => break (n, e.to_string()),
                    }
                }
            });
            assert_eq!(n, bad_after);
            assert!(err.contains(&format!("t.csv:{}:", bad_after + 2)), "{err}");
        }
    }
}
