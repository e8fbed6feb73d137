//! `conductor compare`: every policy on every scenario with the same seed, and the
//! scoreboard check that `default` beats `seed` and every peer.

use crate::harness::{self, RunOptions, SimError};
use crate::metrics::Summary;
use crate::report;
use crate::scenario::{self, Loaded};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `--policies all`, in this order.
pub const ALL_POLICIES: &[&str] = &[
    "seed",
    "reactive",
    "spare_pool",
    "predictive",
    "consolidation",
    "agones_buffer",
    "cluster_autoscaler",
    "karpenter",
    "default",
];

/// The policy the scoreboard checks.
pub const CHALLENGER: &str = "default";

/// The policies `default` must beat (the "`seed` and every peer baseline"). Our
/// own policies are compared too, for information, but do not decide the verdict:
/// `default` is one of them (today `spare_pool` backed by `reactive`).
pub const RIVALS: &[&str] = &["seed", "agones_buffer", "cluster_autoscaler", "karpenter"];

/// What the "beats" rule looks at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub cost_eur: f64,
    pub p95_s: f64,
    pub timed_out: u64,
}

impl From<&Summary> for Score {
    fn from(s: &Summary) -> Self {
        Score { cost_eur: s.cost_eur.total, p95_s: s.wait_s.p95, timed_out: s.timed_out }
    }
}

/// Slack for comparing rounded summary numbers, so that boundaries hold exactly.
const EPS: f64 = 1e-9;

/// `a` beats `b`: no more timed-out requests, and either at least 20 % lower cost with a
/// p95 wait at most 1 s longer, or a p95 wait at most half as long (and at least 2 s
/// shorter) at equal or lower cost.
pub fn beats(a: Score, b: Score) -> bool {
    let le = |x: f64, y: f64| x <= y + EPS * y.abs().max(1.0);
    let cheaper = le(a.cost_eur, 0.8 * b.cost_eur) && le(a.p95_s, b.p95_s + 1.0);
    let faster = le(a.p95_s, b.p95_s / 2.0) && le(a.p95_s, b.p95_s - 2.0) && le(a.cost_eur, b.cost_eur);
    a.timed_out <= b.timed_out && (cheaper || faster)
}

/// One run of the scoreboard.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The scenario file, as given.
    pub file: PathBuf,
    pub summary: Summary,
}

/// Expands `all` and splits `a,b,c`; empty names are errors.
pub fn policy_list(spec: &str) -> Result<Vec<String>, String> {
    if spec.trim() == "all" {
        return Ok(ALL_POLICIES.iter().map(|p| p.to_string()).collect());
    }
    let names: Vec<String> = spec.split(',').map(|p| p.trim().to_string()).collect();
    if names.iter().any(String::is_empty) {
        return Err(format!("--policies {spec}: empty policy name"));
    }
    let mut seen = std::collections::BTreeSet::new();
    Ok(names.into_iter().filter(|n| seen.insert(n.clone())).collect())
}

/// Loads every (scenario, policy) pair, scenario-major; the first error stops (an unknown
/// policy too: a scoreboard silently missing a row would read as complete). `sets`
/// (`dotted.key=value`) apply to every scenario, as `simulate --set` does.
pub fn load_all(
    scenarios: &[PathBuf],
    policies: &[String],
    sets: &[String],
) -> Result<Vec<(PathBuf, Loaded)>, SimError> {
    if scenarios.is_empty() {
        return Err(SimError::Input("no scenario given".into()));
    }
    if let Some(p) = policies.iter().find(|p| !scenario::POLICIES.contains(&p.as_str())) {
        return Err(SimError::Input(format!(
            "--policies: unknown policy {p:?} (known: {})",
            scenario::POLICIES.join(", ")
        )));
    }
    // Named twice (even by two spellings of its path), a scenario's rows would repeat in
    // its table.
    let same_file = |a: &PathBuf, b: &PathBuf| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    for (i, s) in scenarios.iter().enumerate() {
        if scenarios[..i].iter().any(|o| same_file(o, s)) {
            return Err(SimError::Input(format!("{}: the scenario is named twice", s.display())));
        }
    }
    let mut out = Vec::new();
    for s in scenarios {
        for p in policies {
            let l = scenario::load(s, sets, Some(p)).map_err(SimError::Input)?;
            out.push((s.clone(), l));
        }
    }
    Ok(out)
}

/// Runs every loaded pair on the current rayon pool; results in input order.
pub fn run_all(
    loaded: &[(PathBuf, Loaded)],
    seed: Option<u64>,
    tick: &(dyn Fn() + Sync),
) -> Result<Vec<Entry>, SimError> {
    // rayon's indexed collect keeps input order; the first error in that order is reported.
    let results: Vec<Result<Entry, SimError>> = loaded
        .par_iter()
        .map(|(file, l)| {
            let r = harness::run(l, RunOptions { seed, ..Default::default() });
            tick();
            r.map(|r| Entry { file: file.clone(), summary: r.summary })
        })
        .collect();
    results.into_iter().collect()
}

/// `compare.json`: an array of summary.json objects (each names its scenario and policy).
pub fn compare_json(entries: &[Entry]) -> String {
    let all: Vec<&Summary> = entries.iter().map(|e| &e.summary).collect();
    let mut json = serde_json::to_string_pretty(&all).expect("summaries serialize");
    json.push('\n');
    json
}

/// Groups of entries by scenario file, in first-seen order.
fn groups(entries: &[Entry]) -> Vec<(&Path, Vec<&Entry>)> {
    let mut out: Vec<(&Path, Vec<&Entry>)> = Vec::new();
    for e in entries {
        match out.iter_mut().find(|(f, _)| *f == e.file.as_path()) {
            Some((_, v)) => v.push(e),
            None => out.push((e.file.as_path(), vec![e])),
        }
    }
    out
}

/// The scoreboard check of one scenario: `(other policy, passes)` for every other policy,
/// or `None` when `default` did not run. Only [`RIVALS`] decide the verdict.
pub fn challenger_checks<'a>(group: &[&'a Entry]) -> Option<Vec<(&'a str, bool)>> {
    let me = group.iter().find(|e| e.summary.policy == CHALLENGER)?;
    Some(
        group
            .iter()
            .filter(|e| e.summary.policy != CHALLENGER)
            .map(|e| (e.summary.policy.as_str(), beats((&me.summary).into(), (&e.summary).into())))
            .collect(),
    )
}

/// `compare.md`: a table per scenario and the check that `default` beats every peer.
pub fn compare_md(entries: &[Entry]) -> String {
    let mut md = String::from("# Policy scoreboard\n\n");
    let _ = writeln!(md, "Every policy on every scenario with the same seed.\n\n![cost ratio](compare.png)\n");
    let _ = writeln!(
        md,
        "`{CHALLENGER}` beats a peer when it has no more timed-out requests and either costs at least 20 % less \
         with a p95 wait at most 1 s longer, or has a p95 wait at most half as long (and at least 2 s shorter) \
         at equal or lower cost.\n"
    );
    for (file, group) in groups(entries) {
        let first = &group[0].summary;
        let _ = writeln!(md, "## {} (`{}`, seed {})\n", first.scenario, file.display(), first.seed);
        let _ = writeln!(
            md,
            "| policy | cost € | cost / bound | p95 wait s | p99 wait s | joins over 30 s | timed out | churn / h | flaps |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for e in &group {
            let s = &e.summary;
            let _ = writeln!(
                md,
                "| {} | {:.2} | {} | {} | {} | {:.2} % | {} | {} | {} |",
                s.policy,
                s.cost_eur.total,
                s.cost_ratio.map_or("n/a".into(), |r| format!("{r:.3}")),
                s.wait_s.p95,
                s.wait_s.p99,
                s.joins_over_30s * 100.0,
                s.timed_out,
                s.churn_per_hour,
                s.flaps
            );
        }
        md.push('\n');
        match challenger_checks(&group) {
            None => {
                let _ = writeln!(md, "`{CHALLENGER}` was not run: no check.\n");
            }
            Some(checks) => {
                let judged: Vec<&(&str, bool)> = checks.iter().filter(|(p, _)| RIVALS.contains(p)).collect();
                let verdict = if judged.is_empty() {
                    "no rival ran"
                } else if judged.iter().all(|(_, ok)| *ok) {
                    "PASS"
                } else {
                    "FAIL"
                };
                let _ = writeln!(md, "**`{CHALLENGER}` beats seed and every peer: {verdict}**\n");
                for (peer, ok) in &checks {
                    let mark = if *ok { "pass" } else { "fail" };
                    if RIVALS.contains(peer) {
                        let _ = writeln!(md, "- {CHALLENGER} vs {peer}: {mark}");
                    } else {
                        let _ = writeln!(md, "- {CHALLENGER} vs {peer}: {mark} (ours, not judged)");
                    }
                }
                md.push('\n');
            }
        }
    }
    md
}

/// Writes `compare.json`, `compare.md` and `compare.png` into `dir`.
pub fn write_outputs(dir: &Path, entries: &[Entry]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("compare.json", &compare_json(entries))?;
    write("compare.md", &compare_md(entries))?;
    let gs = groups(entries);
    let scenarios: Vec<String> = gs.iter().map(|(_, g)| g[0].summary.scenario.clone()).collect();
    let mut policies: Vec<String> = Vec::new();
    for e in entries {
        if !policies.contains(&e.summary.policy) {
            policies.push(e.summary.policy.clone());
        }
    }
    let ratios: Vec<Vec<Option<f64>>> = gs
        .iter()
        .map(|(_, g)| {
            policies
                .iter()
                .map(|p| g.iter().find(|e| &e.summary.policy == p).and_then(|e| e.summary.cost_ratio))
                .collect()
        })
        .collect();
    report::write_grouped_bars_png(
        &dir.join("compare.png"),
        "cost / lower bound per scenario and policy",
        &scenarios,
        &policies,
        &ratios,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(cost_eur: f64, p95_s: f64, timed_out: u64) -> Score {
        Score { cost_eur, p95_s, timed_out }
    }

    #[test]
    fn exactly_twenty_percent_cheaper_beats() {
        assert!(beats(s(80.0, 10.0, 0), s(100.0, 10.0, 0)));
        assert!(beats(s(9.872, 10.0, 0), s(12.34, 10.0, 0)), "0.8 × 12.34 in floating point");
        assert!(!beats(s(80.01, 10.0, 0), s(100.0, 10.0, 0)), "19.99 % cheaper is not enough");
    }

    #[test]
    fn cheaper_may_wait_at_most_one_second_longer() {
        assert!(beats(s(80.0, 11.0, 0), s(100.0, 10.0, 0)), "p95 exactly +1 s");
        assert!(beats(s(80.0, 10.3, 0), s(100.0, 9.3, 0)), "p95 +1 s in floating point");
        assert!(!beats(s(80.0, 11.001, 0), s(100.0, 10.0, 0)));
    }

    #[test]
    fn half_the_wait_and_two_seconds_shorter_at_no_more_cost_beats() {
        assert!(beats(s(100.0, 5.0, 0), s(100.0, 10.0, 0)), "exactly half, 5 s shorter, equal cost");
        assert!(beats(s(100.0, 2.0, 0), s(100.0, 4.0, 0)), "exactly half and exactly 2 s shorter");
        assert!(!beats(s(100.0, 1.5, 0), s(100.0, 3.0, 0)), "half but only 1.5 s shorter");
        assert!(!beats(s(100.0, 5.001, 0), s(100.0, 10.0, 0)), "not quite half");
        assert!(!beats(s(100.01, 5.0, 0), s(100.0, 10.0, 0)), "half the wait but dearer");
        assert!(!beats(s(100.0, 0.0, 0), s(100.0, 0.0, 0)), "equal is not a win");
    }

    #[test]
    fn more_timeouts_never_beat() {
        assert!(!beats(s(10.0, 1.0, 1), s(100.0, 60.0, 0)));
        assert!(beats(s(10.0, 1.0, 3), s(100.0, 60.0, 3)), "equal timeouts are fine");
    }

    fn entry(policy: &str, cost: f64, p95: f64) -> Entry {
        let mut summary = Summary { scenario: "x".into(), policy: policy.into(), ..Default::default() };
        summary.cost_eur.total = cost;
        summary.wait_s.p95 = p95;
        Entry { file: PathBuf::from("x.toml"), summary }
    }

    #[test]
    fn only_seed_and_the_peers_decide_the_verdict() {
        // default is spare_pool here: not beating itself must not fail the scoreboard.
        let mut entries = vec![
            entry("seed", 200.0, 0.0),
            entry("spare_pool", 100.0, 0.0),
            entry("agones_buffer", 130.0, 0.0),
            entry("cluster_autoscaler", 100.0, 60.0),
            entry("karpenter", 100.0, 100.0),
            entry("default", 100.0, 0.0),
        ];
        let md = compare_md(&entries);
        assert!(md.contains("every peer: PASS"), "{md}");
        assert!(md.contains("- default vs spare_pool: fail (ours, not judged)"), "{md}");
        assert!(md.contains("- default vs karpenter: pass\n"), "{md}");
        // A peer that is not beaten fails it.
        entries[2] = entry("agones_buffer", 110.0, 0.0);
        let md = compare_md(&entries);
        assert!(md.contains("every peer: FAIL"), "{md}");
        assert!(md.contains("- default vs agones_buffer: fail\n"), "{md}");
        // Without any rival there is nothing to judge.
        let md = compare_md(&[entry("reactive", 1.0, 0.0), entry("default", 1.0, 0.0)]);
        assert!(md.contains("every peer: no rival ran"), "{md}");
    }

    #[test]
    fn policy_lists() {
        assert_eq!(policy_list("all").unwrap().len(), ALL_POLICIES.len());
        assert_eq!(policy_list("seed, default,seed").unwrap(), ["seed", "default"]);
        assert!(policy_list("seed,").is_err());
    }
}
