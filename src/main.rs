//! `conductor`: clap subcommands only; the work lives in the crates.

use clap::{Parser, Subcommand};
use conductor_sim::{compare, harness, scenario, sweep, SimError};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "conductor", version, about = "Fleet orchestration for pay-per-play game servers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay a scenario's trace through the engine against a simulated fleet and cloud.
    Simulate {
        scenario: PathBuf,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        policy: Option<String>,
        /// `full`: the O(n) invariant check after every event (default: periodic, with O(1) assertions after every event).
        #[arg(long, value_parser = ["full", "periodic"])]
        check: Option<String>,
        /// Directory for summary.json, decisions.csv, report.md and plots.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override any scenario key: `--set conductor.reactive.scale_up_threshold_percent=80`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// No summary table on stdout.
        #[arg(long)]
        quiet: bool,
    },
    /// Run live: real Docker hosts (local or over SSH), Hetzner Cloud, the HTTP API.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Read real state and log every decision, but execute no mutating call.
        #[arg(long)]
        dry_run: bool,
        /// Override `api.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// A local stand-in for the Hetzner Cloud API (try live mode without an account).
    HetznerEmulator {
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: String,
        /// The Bearer token it accepts; from `HCLOUD_TOKEN` if not given; any if neither.
        #[arg(long)]
        token: Option<String>,
        /// How long a new VM takes to reach `running`.
        #[arg(long, default_value_t = 2000)]
        boot_ms: u64,
        /// The first IPv4 address handed to new VMs (e.g. 127.0.0.4 to reach a local sshd).
        #[arg(long)]
        ipv4_start: Option<std::net::Ipv4Addr>,
        /// Write each created server's cloud-init user data to DIR/NAME.user-data.
        #[arg(long, value_name = "DIR")]
        user_data_dir: Option<std::path::PathBuf>,
    },
    /// Replay a live journal (the SQLite file of `conductor run`) through the simulator.
    Replay {
        journal: PathBuf,
        #[arg(long)]
        policy: Option<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Directory for the exported scenario and the simulator's outputs.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sweep `--set` overrides over a grid in parallel: sweep.csv, pareto.png, report.md, best.toml.
    Tune {
        scenario: PathBuf,
        /// `dotted.key=from:to:step` (inclusive) or `dotted.key=a,b,c` (repeatable; the cartesian product is run).
        #[arg(long = "grid", value_name = "KEY=SPEC", required = true)]
        grids: Vec<String>,
        #[arg(long)]
        seed: Option<u64>,
        /// Parallel runs (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Overrides applied to every configuration, below the grid's.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        #[arg(long)]
        policy: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run every policy on every scenario with the same seed: compare.json, compare.md, compare.png.
    Compare {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// `a,b,c` or `all`.
        #[arg(long)]
        policies: String,
        /// Default: each scenario's own seed.
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        jobs: Option<usize>,
        #[arg(long)]
        out: PathBuf,
        /// Override a scenario key in every scenario (repeatable): `dotted.key=value`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Chaos runs: random windows of a scenario with injected faults, full invariant
    /// checks after every event, then a liveness phase. Exit code 1 on any violation.
    Chaos {
        /// A scenario file; all `scenarios/*.toml` in rotation when omitted.
        scenario: Option<PathBuf>,
        /// Run this one seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run seeds 0..N (default 100).
        #[arg(long)]
        seeds: Option<u64>,
        /// Window length range in hours, `MIN:MAX` (default 24:72).
        #[arg(long, default_value = "24:72")]
        window_hours: String,
        /// Parallel runs (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Directory for chaos.json.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load traces.
    Trace {
        #[command(subcommand)]
        cmd: TraceCmd,
    },
}

#[derive(Subcommand)]
enum TraceCmd {
    /// Write a seeded synthetic trace (CSV) to stdout or --out.
    Generate {
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 200)]
        customers: u32,
        #[arg(long, default_value_t = 40)]
        peak: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// 0 = Monday.
        #[arg(long, default_value_t = 0)]
        start_weekday: u8,
        /// Weights of the 2/4/8/16/32 GB tiers, e.g. `30,40,20,8,2`.
        #[arg(long, default_value = "30,40,20,8,2")]
        tier_mix: String,
        /// Fraction of 16/32 GB servers that run 24/7.
        #[arg(long, default_value_t = 0.3)]
        always_on: f64,
        /// Friday/Saturday evening demand multiplier.
        #[arg(long, default_value_t = 1.6)]
        weekend_boost: f64,
        /// Leave out `players` rows.
        #[arg(long)]
        no_players: bool,
        /// Flash crowd `AT_S:STARTS:WITHIN_S` (repeatable).
        #[arg(long = "flash")]
        flash: Vec<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.cmd {
        Cmd::Simulate { scenario, seed, policy, check, out, sets, quiet } => {
            simulate(scenario, seed, policy, check.as_deref() == Some("full"), out, sets, quiet)
        }
        Cmd::Run { config, dry_run, listen } => run_live(config, dry_run, listen),
        Cmd::HetznerEmulator { listen, token, boot_ms, ipv4_start, user_data_dir } => {
            hetzner_emulator(listen, token, boot_ms, ipv4_start, user_data_dir)
        }
        Cmd::Replay { journal, policy, sets, out } => {
            let dir = out
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join(format!("conductor-replay-{}", std::process::id())));
            match conductor_live::replay::export(&journal, &dir) {
                Ok(scenario) => simulate(scenario, None, policy, false, out, sets, false),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Tune { scenario, grids, seed, jobs, sets, policy, out } => {
            tune(scenario, grids, seed, jobs, sets, policy, out)
        }
        Cmd::Compare { scenarios, policies, seed, jobs, out, sets } => {
            compare(scenarios, policies, seed, jobs, out, sets)
        }
        Cmd::Chaos { scenario, seed, seeds, window_hours, jobs, out } => {
            chaos(scenario, seed, seeds, window_hours, jobs, out)
        }
        Cmd::Trace {
            cmd:
                TraceCmd::Generate {
                    days,
                    customers,
                    peak,
                    seed,
                    start_weekday,
                    tier_mix,
                    always_on,
                    weekend_boost,
                    no_players,
                    flash,
                    out,
                },
        } => {
            let mix: Vec<Option<u32>> = tier_mix.split(',').map(|w| w.trim().parse().ok()).collect();
            let tier_mix = match mix.as_slice() {
                [Some(a), Some(b), Some(c), Some(d), Some(e)] if [a, b, c, d, e].iter().any(|&&w| w > 0) => {
                    [*a, *b, *c, *d, *e]
                }
                _ => {
                    eprintln!("error: --tier-mix {tier_mix:?}: expected five non-negative weights, not all zero");
                    return ExitCode::from(2);
                }
            };
            if !(0.0..=1.0).contains(&always_on) || !(weekend_boost.is_finite() && weekend_boost > 0.0) {
                eprintln!("error: --always-on must be in 0..=1 and --weekend-boost positive");
                return ExitCode::from(2);
            }
            let params = conductor_sim::generate::GenParams {
                days,
                start_weekday,
                customers,
                peak_concurrent: peak,
                tier_mix,
                always_on_fraction_large: always_on,
                weekend_boost,
                players: !no_players,
                flash_crowds: Vec::new(),
            };
            generate(params, seed, flash, out)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime")
}

fn run_live(config: PathBuf, dry_run: bool, listen: Option<String>) -> ExitCode {
    let cfg = match conductor_live::config::LiveConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for w in cfg.conductor.warnings() {
        eprintln!("warning: {}: conductor.{w}", config.display());
    }
    let opts = conductor_live::driver::RunOptions { dry_run, listen };
    match runtime().block_on(conductor_live::driver::run(cfg, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn hetzner_emulator(
    listen: String,
    token: Option<String>,
    boot_ms: u64,
    ipv4_start: Option<std::net::Ipv4Addr>,
    user_data_dir: Option<std::path::PathBuf>,
) -> ExitCode {
    use conductor_live::hetzner::{serve, EmulatorConfig};
    let mut cfg = EmulatorConfig { boot_ms, user_data_dir, ..EmulatorConfig::default() };
    cfg.token = token.or_else(|| std::env::var("HCLOUD_TOKEN").ok()).filter(|t| !t.is_empty());
    if let Some(ip) = ipv4_start {
        cfg.ipv4_start = ip;
    }
    let res: std::io::Result<()> = runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("Hetzner Cloud API emulator on http://{}/v1", listener.local_addr()?);
        serve(listener, cfg).await
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn simulate(
    path: PathBuf,
    seed: Option<u64>,
    policy: Option<String>,
    check_full: bool,
    out: Option<PathBuf>,
    sets: Vec<String>,
    quiet: bool,
) -> ExitCode {
    let started = Instant::now();
    let loaded = match scenario::load(&path, &sets, policy.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for w in loaded.scenario.conductor.warnings() {
        eprintln!("warning: {}: conductor.{w}", path.display());
    }
    // A progress bar on long runs, only when stderr is a terminal.
    let bar = (std::io::stderr().is_terminal() && !quiet).then(|| {
        let bar = indicatif::ProgressBar::new(1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% simulated, {elapsed} elapsed")
                .expect("static template"),
        );
        bar
    });
    let progress: Option<Box<dyn FnMut(u64, u64)>> = bar.clone().map(|bar| -> Box<dyn FnMut(u64, u64)> {
        Box::new(move |done, total| bar.set_position(done.saturating_mul(1000) / total.max(1)))
    });
    let opts = harness::RunOptions { seed, check_full, out: out.clone(), progress };
    let result = match harness::run(&loaded, opts) {
        Ok(r) => r,
        Err(e) => {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let (SimError::Input(text) | SimError::Run(text)) = &e;
            eprintln!("error: {text}");
            return ExitCode::from(if matches!(e, SimError::Input(_)) { 2 } else { 1 });
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let s = &result.summary;
    if !quiet {
        println!("scenario            {}", s.scenario);
        println!("policy / seed       {} / {}", s.policy, s.seed);
        println!("simulated           {:.1} h, {} events", s.duration_s / 3600.0, s.events);
        println!(
            "requests            {} (started {}, timed out {}, cancelled {}, queued at end {}, rejected {})",
            s.requests, s.started, s.timed_out, s.cancelled, s.queued_at_end, s.rejected
        );
        println!("duplicates/ignored  {} / {}", s.duplicate_starts, s.ignored_rows);
        println!(
            "wait s              p50 {}  p95 {}  p99 {}  max {}  mean {}",
            s.wait_s.p50, s.wait_s.p95, s.wait_s.p99, s.wait_s.max, s.wait_s.mean
        );
        println!("joins over 30 s     {:.2} %", s.joins_over_30s * 100.0);
        println!(
            "cost                €{:.2} (dedicated €{:.2}, cloud €{:.2})",
            s.cost_eur.total, s.cost_eur.dedicated, s.cost_eur.cloud
        );
        println!(
            "lower bound         €{:.2}  (ratio {})",
            s.lower_bound_eur,
            s.cost_ratio.map_or("n/a".to_string(), |r| format!("{r:.3}"))
        );
        println!(
            "scale ups / downs   {} / {} (peak {} cloud nodes, {} bought back within the cooldown)",
            s.scale_ups, s.scale_downs, s.peak_cloud_nodes, s.flaps
        );
        println!(
            "refusals / vetoes   budget {} / rebuy {} / scale-down vetoes {}",
            s.budget_refusals, s.rebuy_refusals, s.scale_down_vetoes
        );
        println!("invariant violations {}", s.invariant_violations);
        if let Some(dir) = &out {
            println!("results             {}", dir.display());
        }
    }
    for v in &result.violations {
        eprintln!("violation: {v}");
    }
    let wall = started.elapsed().as_secs_f64();
    let per_s = |n: u64| n as f64 / wall.max(1e-9) / 1e6;
    eprintln!(
        "wall time {wall:.3} s ({} trace rows, {:.2} M rows/s; {} events, {:.2} M events/s)",
        result.trace_rows,
        per_s(result.trace_rows),
        s.events,
        per_s(s.events)
    );
    if s.invariant_violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// A rayon pool of `jobs` threads (default: the CPUs).
fn pool(jobs: Option<usize>) -> Result<rayon::ThreadPool, ExitCode> {
    if jobs == Some(0) {
        eprintln!("error: --jobs must be at least 1");
        return Err(ExitCode::from(2));
    }
    rayon::ThreadPoolBuilder::new().num_threads(jobs.unwrap_or(0)).build().map_err(|e| {
        eprintln!("error: thread pool: {e}");
        ExitCode::from(1)
    })
}

/// A bar over `n` runs, only when stderr is a terminal.
fn runs_bar(n: usize) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(n as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} elapsed")
                .expect("static template"),
        );
        bar
    })
}

fn sim_exit(e: SimError) -> ExitCode {
    match e {
        SimError::Input(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        SimError::Run(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn tune(
    path: PathBuf,
    grid_specs: Vec<String>,
    seed: Option<u64>,
    jobs: Option<usize>,
    sets: Vec<String>,
    policy: Option<String>,
    out: PathBuf,
) -> ExitCode {
    let started = Instant::now();
    let grids: Vec<sweep::Grid> = match grid_specs.iter().map(|g| sweep::parse_grid(g)).collect() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let n = match sweep::configurations(&grids) {
        Ok(c) => c.len(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let pool = match pool(jobs) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let sw = sweep::Sweep { scenario: &path, sets: &sets, policy: policy.as_deref(), seed, grids: &grids };
    let bar = runs_bar(n);
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let points = match pool.install(|| sw.run(&tick)) {
        Ok(p) => p,
        Err(e) => return sim_exit(e),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Err(e) = sweep::write_outputs(&out, &sw, &points) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    for t in sweep::WAIT_TARGETS_S {
        match sweep::cheapest_within(&points, t) {
            Some(p) => println!(
                "p95 <= {t:>2} s  configuration {} ({}): cost {:.2} €, p95 {} s, timed out {}",
                p.index,
                sweep::describe(&grids, &p.values),
                p.summary.cost_eur.total,
                p.summary.wait_s.p95,
                p.summary.timed_out
            ),
            None => println!("p95 <= {t:>2} s  none"),
        }
    }
    println!("results             {}", out.display());
    eprintln!("wall time {:.3} s ({n} runs)", started.elapsed().as_secs_f64());
    violations_exit(points.iter().map(|p| (format!("configuration {}", p.index), p.summary.invariant_violations)))
}

/// Exit 1 when a run found invariant violations (as `simulate` does), naming the runs.
fn violations_exit(runs: impl Iterator<Item = (String, u64)>) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for (run, n) in runs.filter(|(_, n)| *n > 0) {
        eprintln!("violation: {run}: {n} invariant violation(s)");
        code = ExitCode::from(1);
    }
    code
}

fn compare(
    scenarios: Vec<PathBuf>,
    policies: String,
    seed: Option<u64>,
    jobs: Option<usize>,
    out: PathBuf,
    sets: Vec<String>,
) -> ExitCode {
    let started = Instant::now();
    let policies = match compare::policy_list(&policies) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = match compare::load_all(&scenarios, &policies, &sets) {
        Ok(l) => l,
        Err(e) => return sim_exit(e),
    };
    // Once per policy and warning, not once per scenario.
    let mut warned = std::collections::BTreeSet::new();
    for (_, l) in &loaded {
        for w in l.scenario.conductor.warnings() {
            if warned.insert((l.scenario.policy.clone(), w.clone())) {
                eprintln!("warning: policy {}: conductor.{w}", l.scenario.policy);
            }
        }
    }
    let pool = match pool(jobs) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let bar = runs_bar(loaded.len());
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let entries = match pool.install(|| compare::run_all(&loaded, seed, &tick)) {
        Ok(e) => e,
        Err(e) => return sim_exit(e),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Err(e) = compare::write_outputs(&out, &entries) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    for e in &entries {
        let s = &e.summary;
        println!(
            "{:<20} {:<20} cost {:>10.2} €  ratio {:>7}  p95 {:>7} s  timed out {}",
            s.scenario,
            s.policy,
            s.cost_eur.total,
            s.cost_ratio.map_or("n/a".into(), |r| format!("{r:.3}")),
            s.wait_s.p95,
            s.timed_out
        );
    }
    println!("results             {}", out.display());
    eprintln!("wall time {:.3} s ({} runs)", started.elapsed().as_secs_f64(), entries.len());
    violations_exit(
        entries
            .iter()
            .map(|e| (format!("{} / {}", e.summary.scenario, e.summary.policy), e.summary.invariant_violations)),
    )
}

fn chaos(
    scenario: Option<PathBuf>,
    seed: Option<u64>,
    seeds: Option<u64>,
    window_hours: String,
    jobs: Option<usize>,
    out: Option<PathBuf>,
) -> ExitCode {
    use conductor_sim::chaos::{self, ChaosConfig, ChaosTrace, Totals};
    let started = Instant::now();
    let window: Vec<Option<u64>> = window_hours.split(':').map(|h| h.trim().parse().ok()).collect();
    let cc = match window.as_slice() {
        [Some(a), Some(b)] if *a > 0 && a <= b => ChaosConfig { window_min_s: a * 3600, window_max_s: b * 3600 },
        _ => {
            eprintln!("error: --window-hours {window_hours:?}: expected MIN:MAX hours, 0 < MIN <= MAX");
            return ExitCode::from(2);
        }
    };
    let named = scenario.is_some();
    let paths: Vec<PathBuf> = match scenario {
        Some(p) => vec![p],
        None => {
            let mut v: Vec<PathBuf> = match std::fs::read_dir("scenarios") {
                Ok(d) => d
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect(),
                Err(e) => {
                    eprintln!("error: scenarios/: {e} (run from the repository or name a scenario)");
                    return ExitCode::from(2);
                }
            };
            v.sort();
            v
        }
    };
    let mut scenarios = Vec::new();
    for p in &paths {
        let loaded = match scenario::load(p, &[], None) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if !named && !loaded.scenario.chaos_rotation {
            eprintln!("{}: chaos_rotation = false: not in the rotation (name it to run it)", p.display());
            continue;
        }
        let trace = match ChaosTrace::load(&loaded) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        scenarios.push((p.display().to_string(), loaded, trace));
    }
    if scenarios.is_empty() {
        eprintln!("error: no scenarios");
        return ExitCode::from(2);
    }
    let n = scenarios.len() as u64;
    let runs: Vec<(usize, u64)> = match seed {
        Some(s) => vec![((s % n) as usize, s)],
        None => (0..seeds.unwrap_or(100)).map(|s| ((s % n) as usize, s)).collect(),
    };
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let reports = chaos::run_many(&scenarios, &runs, &cc, jobs);
    let mut totals = Totals::default();
    for r in &reports {
        totals.add(r);
        if r.violation_count > 0 {
            println!(
                "FAIL {} ({} violations; window {} s + {} s): reproduce with `{}`",
                r.scenario,
                r.violation_count,
                r.window.start_s,
                r.window.length_s,
                r.repro()
            );
            for v in &r.violations {
                println!("  {v}");
            }
        }
    }
    println!("seeds run           {}", totals.seeds);
    println!("failing seeds       {}", totals.failed_seeds);
    println!("violations          {}", totals.violations);
    println!("requests            {}", reports.iter().map(|r| r.requests).sum::<u64>());
    println!("events              {}", reports.iter().map(|r| r.events).sum::<u64>());
    println!("faults injected");
    for k in chaos::FAULT_KINDS {
        println!("  {k:<24}{}", totals.faults.get(k).copied().unwrap_or(0));
    }
    if let Some(dir) = &out {
        let json = serde_json::json!({ "totals": &totals, "seeds": &reports });
        let p = dir.join("chaos.json");
        let res = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&p, serde_json::to_string_pretty(&json).expect("serializes") + "\n"));
        if let Err(e) = res {
            eprintln!("error: {}: {e}", p.display());
            return ExitCode::from(1);
        }
        println!("results             {}", p.display());
    }
    eprintln!("wall time {:.3} s", started.elapsed().as_secs_f64());
    if totals.violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn generate(
    mut params: conductor_sim::generate::GenParams,
    seed: u64,
    flash: Vec<String>,
    out: Option<PathBuf>,
) -> ExitCode {
    for f in &flash {
        let parts: Vec<Result<u64, _>> = f.split(':').map(str::parse::<u64>).collect();
        match parts.as_slice() {
            [Ok(at_s), Ok(starts), Ok(within_s)] if u32::try_from(*starts).is_ok() => params
                .flash_crowds
                .push(conductor_sim::generate::FlashCrowd { at_s: *at_s, starts: *starts as u32, within_s: *within_s }),
            _ => {
                eprintln!("error: --flash {f:?}: expected AT_S:STARTS:WITHIN_S");
                return ExitCode::from(2);
            }
        }
    }
    if params.days == 0 || params.days > 366 || params.start_weekday > 6 {
        eprintln!("error: --days must be 1..=366 and --start-weekday 0..=6");
        return ExitCode::from(2);
    }
    let res = match &out {
        Some(p) => std::fs::File::create(p)
            .and_then(|f| conductor_sim::generate::generate(&params, seed, std::io::BufWriter::new(f))),
        None => conductor_sim::generate::generate(&params, seed, std::io::stdout().lock()),
    };
    match res {
        Ok(stats) => {
            eprintln!(
                "{} rows ({} starts, {} stops, {} player rows)",
                stats.rows, stats.starts, stats.stops, stats.players_rows
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            // Parameters the generator refuses are bad input; a failed write is not.
            ExitCode::from(if e.kind() == std::io::ErrorKind::InvalidInput { 2 } else { 1 })
        }
    }
}
