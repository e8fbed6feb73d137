//! Load generator for the live API (run by `scripts/bench-api.sh`, not by CI, which only builds it).
//!
//! N concurrent clients, each on its own server ids, run a start/stop mix for a fixed time: a
//! client starts a new server, and once it holds more than `--window` servers it stops the oldest
//! one, so in steady state half of all requests are starts and half stops. Afterwards it reports
//! requests/s, latency percentiles and errors, then checks consistency: the driver's queue and
//! fleet must agree with what the clients' answers said they left queued and placed.
//!
//! ```sh
//! CONDUCTOR_API_TOKEN=... cargo run --release --example api_load -- --url http://127.0.0.1:8080 \
//!     --clients 64 --duration-s 10 [--rate 5000]
//! ```
//!
//! Without `--rate` the clients are closed-loop (each sends its next request when the last is
//! answered: the throughput ceiling); with it they offer that many requests/s in all.
//!
//! Exit code 0 when there was no error and the state is consistent, 1 otherwise.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

struct Args {
    url: String,
    token: String,
    clients: usize,
    duration: Duration,
    window: usize,
    ram_mb: u32,
    prefix: String,
    /// Total requests/s to offer (open loop, paced per client); 0 = as fast as answers come.
    rate: f64,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        token: std::env::var("CONDUCTOR_API_TOKEN").unwrap_or_default(),
        clients: 64,
        duration: Duration::from_secs(10),
        window: 4,
        ram_mb: 512,
        prefix: format!("ld{}", std::process::id()),
        rate: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench`; ignore flags without a value we do not know.
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value(),
            "--token" => a.token = value(),
            "--clients" => a.clients = value().parse().expect("--clients N"),
            "--duration-s" => a.duration = Duration::from_secs_f64(value().parse().expect("--duration-s S")),
            "--window" => a.window = value().parse().expect("--window N"),
            "--ram-mb" => a.ram_mb = value().parse().expect("--ram-mb N"),
            "--prefix" => a.prefix = value(),
            "--rate" => a.rate = value().parse().expect("--rate REQUESTS_PER_S"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.token.is_empty(), "set CONDUCTOR_API_TOKEN or --token");
    a
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// Latency of every answered request, microseconds.
    latencies_us: Vec<u32>,
    starts: u64,
    stops: u64,
    errors: u64,
    first_errors: Vec<String>,
    /// Servers this client left placed (`started`) and queued, by its answers.
    placed: BTreeSet<String>,
    queued: BTreeSet<String>,
    /// Placed servers it stopped: in a dry run their containers never exit, so they stay booked.
    stopping: u64,
}

async fn client(id: usize, args: Arc<Args>, http: reqwest::Client, until: Instant) -> Tally {
    let mut t = Tally::default();
    let mut held: VecDeque<String> = VecDeque::new();
    let body = serde_json::json!({ "ram_mb": args.ram_mb, "user": format!("{}-u{id}", args.prefix) });
    let mut n = 0u64;
    // Paced clients send on a schedule and count latency from the scheduled time, so a slow
    // answer also charges the requests it delayed (no coordinated omission).
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.clients as f64 / args.rate));
    let mut next = Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(id as f64 / args.clients as f64));
    while Instant::now() < until {
        if interval.is_some() {
            tokio::time::sleep_until(next.into()).await;
            if next >= until {
                break;
            }
        }
        let (path, is_start, server) = if held.len() > args.window {
            let s = held.pop_front().expect("held");
            (format!("{}/v1/servers/{s}/stop", args.url), false, s)
        } else {
            n += 1;
            let s = format!("{}-c{id}-{n}", args.prefix);
            (format!("{}/v1/servers/{s}/start", args.url), true, s)
        };
        let mut req = http.post(&path).bearer_auth(&args.token);
        if is_start {
            req = req.json(&body);
        }
        let t0 = if interval.is_some() { next } else { Instant::now() };
        if let Some(i) = interval {
            next += i;
        }
        let res = req.send().await;
        let answer = match res {
            Ok(r) => {
                let status = r.status();
                match r.text().await {
                    Ok(text) => Ok((status, text)),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        t.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        let state = match answer {
            Ok((status, text)) if status.is_success() => {
                serde_json::from_str::<Value>(&text).ok().and_then(|v| v["state"].as_str().map(str::to_string))
            }
            Ok((status, text)) => {
                t.errors += 1;
                if t.first_errors.len() < 3 {
                    t.first_errors.push(format!("{path}: {status} {text}"));
                }
                None
            }
            Err(e) => {
                t.errors += 1;
                if t.first_errors.len() < 3 {
                    t.first_errors.push(format!("{path}: {e}"));
                }
                None
            }
        };
        if is_start {
            t.starts += 1;
            match state.as_deref() {
                Some("started") => {
                    t.placed.insert(server.clone());
                    held.push_back(server);
                }
                Some("queued") => {
                    t.queued.insert(server.clone());
                    held.push_back(server);
                }
                _ => {}
            }
        } else {
            t.stops += 1;
            match state.as_deref() {
                Some("cancelled") => {
                    t.queued.remove(&server);
                }
                Some("stopping") | Some("already_stopping") => {
                    // It may have been placed from the queue since; either way it is booked now.
                    t.placed.remove(&server);
                    t.queued.remove(&server);
                    t.stopping += 1;
                }
                _ => {}
            }
        }
    }
    t
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn get(http: &reqwest::Client, args: &Args, path: &str) -> Value {
    let r = http.get(format!("{}{path}", args.url)).bearer_auth(&args.token).send().await.expect("GET");
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.expect("JSON")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Arc::new(args());
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build().expect("client");
    let before = get(&http, &args, "/v1/fleet").await;
    let t0 = Instant::now();
    let until = t0 + args.duration;
    let tasks: Vec<_> =
        (0..args.clients).map(|id| tokio::spawn(client(id, args.clone(), http.clone(), until))).collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.expect("client task");
        all.latencies_us.extend(t.latencies_us);
        all.starts += t.starts;
        all.stops += t.stops;
        all.errors += t.errors;
        all.first_errors.extend(t.first_errors);
        all.placed.extend(t.placed);
        all.queued.extend(t.queued);
        all.stopping += t.stopping;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let l = &all.latencies_us;
    let requests = l.len() as f64;
    println!(
        "clients {}  duration {:.1} s  requests {} (starts {}, stops {})",
        args.clients,
        elapsed,
        l.len(),
        all.starts,
        all.stops
    );
    println!("throughput {:.0} requests/s", requests / elapsed);
    println!(
        "latency ms  p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        percentile(l, 0.50),
        percentile(l, 0.95),
        percentile(l, 0.99),
        percentile(l, 1.0)
    );
    println!("errors {}", all.errors);
    for e in &all.first_errors {
        println!("  {e}");
    }

    // Consistency: the driver's view against the clients' answers.
    let after = get(&http, &args, "/v1/fleet").await;
    let queue = get(&http, &args, "/v1/queue").await;
    let ours: BTreeSet<String> = queue
        .as_array()
        .expect("queue array")
        .iter()
        .filter_map(|e| e["server"].as_str())
        .filter(|s| s.starts_with(&format!("{}-", args.prefix)))
        .map(str::to_string)
        .collect();
    let running_delta =
        after["running_servers"].as_i64().unwrap_or(0) - before["running_servers"].as_i64().unwrap_or(0);
    let expected_running = (all.placed.len() as u64 + all.stopping) as i64;
    let queue_ok = ours == all.queued;
    let running_ok = running_delta == expected_running;
    println!(
        "consistency  queue {} (clients left {} queued){}  containers +{} (clients left {} placed + {} stopping){}",
        ours.len(),
        all.queued.len(),
        if queue_ok { " ok" } else { " MISMATCH" },
        running_delta,
        all.placed.len(),
        all.stopping,
        if running_ok { " ok" } else { " MISMATCH" },
    );
    if all.errors == 0 && queue_ok && running_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
