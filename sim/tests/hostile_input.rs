//! Hostile input for the simulator's parsers, with proptest (fixed seeds, a few hundred
//! cases each): the trace reader and the scenario loader (`load`, `--set`) never panic,
//! name the file and line (traces) or the key (scenarios), and a bad trace line loses none
//! of the rows around it.

use conductor_sim::scenario::{self, apply_set};
use conductor_sim::trace::{Action, TracePlan, TraceReader, LINE_LEN_MAX};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const HEADER: &str = "at_s,server,action,ram_mb,plan,players\n";

/// A deterministic runner: the same cases on every machine and every run.
fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
}

/// (line, at_ms, server, action, ram_mb, plan, players), errors as their display text.
type Owned = (u64, u64, String, Action, u32, TracePlan, u32);

fn read_all(path: &str, data: &[u8]) -> Result<Vec<Result<Owned, String>>, String> {
    let mut r = TraceReader::new(path, data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(res) = r.next_row() {
        out.push(
            res.map(|x| (x.line, x.at_ms, x.server.to_string(), x.action, x.ram_mb, x.plan, x.players))
                .map_err(|e| e.to_string()),
        );
        assert!(out.len() <= data.len() + 1, "more results than bytes");
    }
    Ok(out)
}

/// `path:LINE: message` with LINE within the file.
fn assert_located(err: &str, path: &str, data: &[u8]) -> u64 {
    let rest = err.strip_prefix(&format!("{path}:")).unwrap_or_else(|| panic!("no path in {err:?}"));
    let (line, message) = rest.split_once(": ").unwrap_or_else(|| panic!("no line in {err:?}"));
    let line: u64 = line.parse().unwrap_or_else(|_| panic!("no line number in {err:?}"));
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    assert!(line >= 1 && line <= lines, "line {line} of {lines}: {err:?}");
    assert!(!message.is_empty(), "{err:?}");
    line
}

/// Checks every result of a run: errors located, rows and errors in line order.
fn check_any(data: &[u8]) {
    match read_all("t.csv", data) {
        Err(e) => {
            assert_eq!(assert_located(&e, "t.csv", data), 1, "header errors are at line 1: {e}");
        }
        Ok(results) => {
            let mut last = 1;
            for r in results {
                let line = match r {
                    Ok(row) => row.0,
                    Err(e) => assert_located(&e, "t.csv", data),
                };
                assert!(line > last, "lines go forward: {line} after {last}");
                last = line;
            }
        }
    }
}

#[derive(Clone, Debug)]
struct GoodRow {
    gap_ms: u64,
    server: String,
    action: Action,
    ram_mb: u32,
    plan: TracePlan,
    players: u32,
}

fn good_row() -> impl Strategy<Value = GoodRow> {
    (
        0u64..5_000_000,
        "[a-z][a-z0-9_-]{0,20}",
        prop_oneof![Just(Action::Start), Just(Action::Stop), Just(Action::Players)],
        1u32..=1_048_576,
        prop_oneof![Just(TracePlan::PayPerPlay), Just(TracePlan::Balanced), Just(TracePlan::Reserved)],
        0u32..=100_000,
    )
        .prop_map(|(gap_ms, server, action, ram_mb, plan, players)| GoodRow {
            gap_ms,
            server,
            action,
            ram_mb,
            plan,
            players,
        })
}

/// Lines the reader must refuse, whatever precedes them.
fn bad_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-5,s,start,1024,,".to_string()),
        Just("1e3,s,start,1024,,".to_string()),
        Just("nan,s,stop,,,".to_string()),
        Just("0,s,launch,,,".to_string()),
        Just("0,s,start,abc,,".to_string()),
        Just("0,s,start,0,,".to_string()),
        Just("0,s,start,99999999999,,".to_string()),
        Just("0,s,start,1024,gold,".to_string()),
        Just("0,s,players,,,-1".to_string()),
        Just("0,,stop,,,".to_string()),
        Just("0,s,stop,,".to_string()),
        Just("0,s,stop,,,,".to_string()),
        Just("0,\"s,t\",stop,,,".to_string()),
        Just(format!("0,{},stop,,,", "s".repeat(200))),
        // Oversized lines: the documented limit, LINE_LEN_MAX bytes without the line ending.
        (LINE_LEN_MAX + 1..3 * LINE_LEN_MAX).prop_map(|n| format!("0,{},stop,,,", "x".repeat(n))),
        // Arbitrary text that contains a quote, which no valid line has.
        "[^\n\r]{0,40}\"[^\n\r]{0,40}",
    ]
}

fn render(rows: &[GoodRow]) -> (Vec<String>, Vec<Owned>) {
    let mut at_ms = 0;
    let mut lines = Vec::new();
    let mut want = Vec::new();
    for r in rows {
        at_ms += r.gap_ms;
        let plan = match r.plan {
            TracePlan::PayPerPlay => "payperplay",
            TracePlan::Balanced => "balanced",
            TracePlan::Reserved => "reserved",
        };
        let (action, ram, plan_cell, players) = match r.action {
            Action::Start => ("start", r.ram_mb.to_string(), plan, String::new()),
            Action::Stop => ("stop", String::new(), "", String::new()),
            Action::Players => ("players", String::new(), "", r.players.to_string()),
        };
        lines.push(format!("{}.{:03},{},{action},{ram},{plan_cell},{players}", at_ms / 1000, at_ms % 1000, r.server));
        let (ram_mb, plan, players) = match r.action {
            Action::Start => (r.ram_mb, r.plan, 0),
            Action::Stop => (0, TracePlan::PayPerPlay, 0),
            Action::Players => (0, TracePlan::PayPerPlay, r.players),
        };
        want.push((0, at_ms, r.server.clone(), r.action, ram_mb, plan, players));
    }
    (lines, want)
}

#[test]
fn trace_arbitrary_bytes_never_panic_and_errors_name_file_and_line() {
    runner(400, 1)
        .run(&prop::collection::vec(any::<u8>(), 0..600), |data| {
            check_any(&data);
            // The same bytes behind a valid header reach the row parser.
            let mut with_header = HEADER.as_bytes().to_vec();
            with_header.extend_from_slice(&data);
            check_any(&with_header);
            Ok(())
        })
        .unwrap();
}

#[test]
fn trace_arbitrary_text_never_panics() {
    runner(300, 2)
        .run(&"(at_s,server,action,ram_mb(,plan)?(,players)?\r?\n)?[0-9a-z.,\"\r\n \t-]{0,400}", |text| {
            check_any(text.as_bytes());
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_bad_line_loses_no_row_before_or_after_it() {
    let strategy = (prop::collection::vec(good_row(), 1..30), any::<prop::sample::Index>(), bad_line(), any::<bool>());
    runner(300, 3)
        .run(&strategy, |(rows, at, bad, crlf)| {
            let (mut lines, mut want) = render(&rows);
            let k = at.index(lines.len() + 1);
            lines.insert(k, bad.clone());
            let eol = if crlf { "\r\n" } else { "\n" };
            let text = format!("{HEADER}{}{eol}", lines.join(eol));
            // Line numbers: header 1, data from 2; the bad line is line k + 2.
            for (i, w) in want.iter_mut().enumerate() {
                w.0 = (i + 2 + usize::from(i >= k)) as u64;
            }
            let results = read_all("trace.csv", text.as_bytes()).expect("valid header");
            let bad_line_no = k as u64 + 2;
            let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            prop_assert_eq!(errors.len(), 1, "{:?} in\n{}", errors, text);
            prop_assert!(errors[0].starts_with(&format!("trace.csv:{bad_line_no}: ")), "{}", errors[0]);
            if bad.len() > LINE_LEN_MAX {
                prop_assert!(errors[0].contains(&LINE_LEN_MAX.to_string()), "the limit is named: {}", errors[0]);
            }
            let rows: Vec<Owned> = results.into_iter().filter_map(Result::ok).collect();
            prop_assert_eq!(rows, want, "every valid row, before and after the bad one");
            Ok(())
        })
        .unwrap();
}

#[test]
fn trace_mutations_of_valid_input_never_panic() {
    let mutation = (any::<prop::sample::Index>(), 0u8..4, any::<u8>());
    let strategy = (prop::collection::vec(good_row(), 1..12), prop::collection::vec(mutation, 1..8));
    runner(400, 4)
        .run(&strategy, |(rows, mutations)| {
            let (lines, want) = render(&rows);
            let mut data = format!("{HEADER}{}\n", lines.join("\n")).into_bytes();
            let mut first_touched = data.len();
            for (at, op, byte) in mutations {
                let i = at.index(data.len());
                first_touched = first_touched.min(i);
                match op {
                    0 => data[i] = byte,
                    1 => {
                        data.remove(i);
                    }
                    2 => data.insert(i, byte),
                    // A structural byte: separators, quotes and line ends are where parsers break.
                    _ => data.insert(i, b",\"\r\n\t.-"[usize::from(byte) % 7]),
                }
            }
            check_any(&data);
            // The rows on lines wholly before the first mutated byte are delivered unchanged.
            let intact_lines = data[..first_touched].iter().filter(|&&b| b == b'\n').count() as u64;
            if let Ok(results) = read_all("t.csv", &data) {
                let delivered: Vec<Owned> =
                    results.into_iter().filter_map(Result::ok).filter(|r| r.0 <= intact_lines).collect();
                let expected: Vec<Owned> = want
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut w)| {
                        w.0 = i as u64 + 2;
                        w
                    })
                    .filter(|w| w.0 <= intact_lines)
                    .collect();
                prop_assert_eq!(delivered, expected);
            }
            Ok(())
        })
        .unwrap();
}

// ---- Scenarios ------------------------------------------------------------------------------

const SCENARIO: &str = r#"name = "fuzz"
seed = 7
duration = "2h"
trace = "t.csv"
policy = "reactive"

[[nodes]]
id = "h1"
ram_mb = 65536
monthly_eur = 60.0

[cloud]
boot_s_min = 30
boot_s_max = 90

[timing]
container_start_s_min = 5
container_start_s_max = 20

[faults]
provision_failure_rate = 0.1

[conductor.queue]
len_max = 1000
per_user_max = 3
timeout_s = 600

[conductor.reactive]
scale_up_threshold_percent = 85.0
scale_down_threshold_percent = 30.0

[conductor.scaling]
max_cloud_nodes = 5
"#;

/// Keys of the valid scenario above, plus a few it does not set.
const KEYS: &[&str] = &[
    "name",
    "seed",
    "duration",
    "trace",
    "policy",
    "start",
    "nodes",
    "cloud.boot_s_min",
    "cloud.boot_s_max",
    "cloud.max_nodes",
    "timing.container_start_s_min",
    "timing.node_repair_s",
    "faults.provision_failure_rate",
    "faults.node_crashes_per_day",
    "report.sample_s",
    "conductor.queue.len_max",
    "conductor.queue.per_user_max",
    "conductor.queue.timeout_s",
    "conductor.reactive.scale_up_threshold_percent",
    "conductor.reactive.scale_down_threshold_percent",
    "conductor.scaling.max_cloud_nodes",
    "conductor.scaling.interval_s",
    "conductor.health.interval_s",
    "conductor.placement",
];

/// Values that are wrong for most keys.
const HOSTILE: &[&str] = &[
    "-1",
    "0",
    "1e309",
    "-0.5",
    "nan",
    "inf",
    "18446744073709551616",
    "9223372036854775807",
    "\"\"",
    "\"$(id)\"",
    "[]",
    "[1, \"a\"]",
    "{}",
    "{ x = 1 }",
    "true",
    "1979-05-27T07:32:00Z",
    "\"../../etc/passwd\"",
];

fn scenario_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn load_text(dir: &std::path::Path, text: &str, sets: &[String]) -> Result<scenario::Loaded, String> {
    let path = dir.join("s.toml");
    std::fs::write(&path, text).unwrap();
    scenario::load(&path, sets, None)
}

#[test]
fn the_fuzz_base_scenario_is_valid() {
    let dir = scenario_dir();
    load_text(dir.path(), SCENARIO, &[]).unwrap();
}

#[test]
fn scenario_arbitrary_text_never_panics_and_errors_name_the_file() {
    let dir = scenario_dir();
    let path = dir.path().join("s.toml").display().to_string();
    let strategy = prop_oneof![
        ".{0,300}",
        "([a-z._]{1,20} = (\"[^\"\n]{0,10}\"|-?[0-9]{1,25}|\\[\\]|\\{\\}|true)\n|\\[[a-z._]{1,20}\\]\n){0,10}",
    ];
    runner(300, 5)
        .run(&strategy, |text| {
            if let Err(e) = load_text(dir.path(), &text, &[]) {
                prop_assert!(e.starts_with(&path), "{}", e);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn scenario_mutated_keys_are_named_in_the_error() {
    let dir = scenario_dir();
    let strategy = (prop::sample::select(KEYS), prop::sample::select(HOSTILE));
    let mut refused = 0;
    runner(300, 6)
        .run(&strategy, |(key, value)| {
            // The mutation goes into the file itself (not through --set) ...
            let mut table: toml::Table = SCENARIO.parse().unwrap();
            apply_set(&mut table, &format!("{key}={value}")).unwrap();
            let leaf = key.rsplit('.').next().unwrap();
            if let Err(e) = load_text(dir.path(), &toml::to_string(&table).unwrap(), &[]) {
                prop_assert!(e.contains(leaf), "{key}={value}: the error does not name {leaf:?}: {e}");
            }
            // ... and through --set, whose errors name the override too.
            if let Err(e) = load_text(dir.path(), SCENARIO, &[format!("{key}={value}")]) {
                prop_assert!(e.contains(leaf), "--set {key}={value}: {e}");
            }
            Ok(())
        })
        .unwrap();
    // Not every pair is wrong ("0" is a fine seed), but most are.
    for key in KEYS {
        if load_text(dir.path(), SCENARIO, &[format!("{key}=[1, \"a\"]")]).is_err() {
            refused += 1;
        }
    }
    assert!(refused >= KEYS.len() - 1, "a mixed array is refused almost everywhere ({refused})");
}

#[test]
fn scenario_arbitrary_set_overrides_never_panic() {
    let dir = scenario_dir();
    runner(300, 7)
        .run(&prop::collection::vec(".{0,60}", 0..4), |sets| {
            if let Err(e) = load_text(dir.path(), SCENARIO, &sets) {
                let named = e.starts_with("--set ") || e.starts_with(&dir.path().display().to_string());
                prop_assert!(named, "{}", e);
            }
            Ok(())
        })
        .unwrap();
}
