//! The `conductor` binary: exit codes and error messages a user sees.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conductor"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("conductor-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const SCENARIO: &str = "duration = \"1h\"\ntrace = \"t.csv\"\n[[nodes]]\nid = \"h\"\nram_mb = 8192\n";

/// A fresh directory holding `SCENARIO` as s.toml and `trace` as its t.csv.
fn scenario_dir(name: &str, trace: &str) -> PathBuf {
    let d = tmp(name);
    std::fs::write(d.join("t.csv"), trace).unwrap();
    std::fs::write(d.join("s.toml"), SCENARIO).unwrap();
    d
}

#[test]
fn simulate_writes_results_and_exits_zero() {
    let d = scenario_dir("ok", "at_s,server,action,ram_mb\n0,a,start,1024\n60,a,stop,\n");
    let out = d.join("out");
    let o = bin().arg("simulate").arg(d.join("s.toml")).arg("--out").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("requests            1 (started 1"), "{stdout}");
    for f in
        ["summary.json", "decisions.csv", "report.md", "demand_capacity.png", "queue_wait.png", "nodes.png", "cost.png"]
    {
        assert!(out.join(f).exists(), "{f}");
    }
    assert!(String::from_utf8_lossy(&o.stderr).contains("wall time"), "timing goes to stderr");
}

#[test]
fn a_decisions_file_that_cannot_be_written_fails_the_run() {
    // decisions.csv on a full disk (/dev/full): exit 1 naming the file, not a silent success.
    let d = scenario_dir("fulldisk", "at_s,server,action,ram_mb\n0,a,start,1024\n60,a,stop,\n");
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("decisions.csv")).unwrap();
    let o = bin().arg("simulate").arg(d.join("s.toml")).arg("--out").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("decisions.csv"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn malformed_trace_exits_two_with_file_and_line() {
    let d = scenario_dir("badtrace", "at_s,server,action,ram_mb\n0,a,start,1024\n-5,b,start,1024\n");
    let o = bin().arg("simulate").arg(d.join("s.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("t.csv:3: at_s"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_scenario_and_bad_set_exit_two_naming_the_field() {
    let d = scenario_dir("badsc", "at_s,server,action,ram_mb\n");
    let o = bin()
        .arg("simulate")
        .arg(d.join("s.toml"))
        .args(["--set", "conductor.reactive.scale_up_threshold_percent=20"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("conductor.reactive.scale_down_threshold_percent"));
    let o = bin().arg("simulate").arg(d.join("s.toml")).args(["--policy", "nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown policy"));
    let o = bin().arg("simulate").arg(d.join("missing.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = bin().arg("simulate").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "usage error");
}

#[test]
fn trace_generate_is_seeded() {
    let run = |seed: &str| {
        let o = bin()
            .args(["trace", "generate", "--days", "1", "--customers", "50", "--peak", "10", "--seed", seed])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
        o.stdout
    };
    let a = run("3");
    assert!(a.starts_with(b"at_s,server,action,ram_mb,plan,players\n"));
    assert_eq!(a, run("3"));
    assert_ne!(a, run("4"));
    // A flash crowd's start count beyond 32 bits is refused, not truncated to a small one.
    for flash in ["0:4294967297:3", "0:2000000:3"] {
        let o = bin().args(["trace", "generate", "--days", "1", "--flash", flash]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "--flash {flash}");
    }
}

#[test]
fn run_refuses_to_start_without_an_api_token_and_names_bad_config_fields() {
    let dir = tmp("run-no-token");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[database]\npath = \"c.db\"\n").unwrap();
    let o = bin().args(["run", "--config"]).arg(&cfg).env_remove("CONDUCTOR_API_TOKEN").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CONDUCTOR_API_TOKEN"), "{err}");
    std::fs::write(&cfg, "[[nodes]]\nname = \"Bad Name\"\naddress = \"x\"\nram_mb = 1\n").unwrap();
    let o = bin().args(["run", "--config"]).arg(&cfg).env("CONDUCTOR_API_TOKEN", "t").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nodes[0].name"));
}

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

fn tune(out: &std::path::Path, jobs: &str) -> std::process::Output {
    bin()
        .arg("tune")
        .arg(shipped("small-weekday.toml"))
        .args(["--grid", "conductor.reactive.scale_up_threshold_percent=70:90:20", "--grid", "cloud.max_nodes=2,10"])
        .args(["--jobs", jobs, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn tune_is_identical_for_any_jobs_and_best_toml_runs() {
    let d = tmp("tune");
    let (a, b) = (d.join("j1"), d.join("j2"));
    for (out, jobs) in [(&a, "1"), (&b, "2")] {
        let o = tune(out, jobs);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("wall time"), "timing goes to stderr");
        for f in ["sweep.csv", "pareto.png", "report.md", "best.toml"] {
            assert!(out.join(f).exists(), "{f}");
        }
    }
    for f in ["sweep.csv", "best.toml", "report.md"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    let csv = std::fs::read_to_string(a.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "a header and 2 × 2 configurations: {csv}");
    assert!(lines[0].starts_with("config,conductor.reactive.scale_up_threshold_percent,cloud.max_nodes,cost_eur,"));
    assert!(lines[1].starts_with("0,70,2,") && lines[4].starts_with("3,90,10,"), "{csv}");
    let report = std::fs::read_to_string(a.join("report.md")).unwrap();
    for t in ["≤ 10 s", "≤ 30 s", "≤ 60 s"] {
        assert!(report.contains(t), "{report}");
    }

    // best.toml runs from anywhere and reproduces its row of sweep.csv.
    let best = std::fs::read_to_string(a.join("best.toml")).unwrap();
    let index: usize = best.split("(configuration ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
    let sim = d.join("best");
    let o = bin().arg("simulate").arg(a.join("best.toml")).arg("--out").arg(&sim).current_dir(&d).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(sim.join("summary.json")).unwrap()).unwrap();
    let cost: f64 = lines[index + 1].split(',').nth(3).unwrap().parse().unwrap();
    assert_eq!(summary["cost_eur"]["total"].as_f64(), Some(cost), "best.toml is configuration {index}");
}

#[test]
fn bad_grids_exit_two_naming_the_grid() {
    let d = tmp("badgrid");
    for (grid, named) in [
        ("foo", "--grid foo"),
        ("x=1:0:1", "--grid x=1:0:1"),
        ("x.y=0:1:0", "--grid x.y=0:1:0: x.y: step 0"),
        ("conductor.reactive.scale_up_threshold_percent=10:20:10", "scale_up_threshold_percent=10"),
    ] {
        let o = bin()
            .arg("tune")
            .arg(shipped("small-weekday.toml"))
            .args(["--grid", grid, "--out"])
            .arg(d.join("out"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{grid}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(named), "{grid}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn tune_refuses_grids_whose_values_would_not_change_the_run_before_running_any() {
    let d = tmp("tune-noop");
    let out = d.join("out");
    for (args, named) in [
        (&["--grid", "policy=seed,reactive", "--policy", "default"][..], "--grid policy: two of its values"),
        (&["--grid", "seed=1:3:1", "--seed", "7"][..], "--grid seed: --seed names the seed too"),
        (
            &["--grid", "conductor.scaling.interval_s=10,60", "--policy", "karpenter"][..],
            "--grid conductor.scaling.interval_s",
        ),
        (
            &["--grid", "conductor.scaling.policies=[\"spare_pool\"],[\"predictive\"]", "--policy", "reactive"][..],
            "--grid conductor.scaling.policies",
        ),
        (
            &["--grid", "conductor.reactive.priority=1,2", "--seed", "18446744073709551615"][..],
            "--seed 18446744073709551615",
        ),
    ] {
        let o =
            bin().arg("tune").arg(shipped("small-weekday.toml")).args(args).arg("--out").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert!(!out.join("sweep.csv").exists(), "{args:?}: nothing written");
    }
    // A grid over the policy itself is fine, and the report says the policy varies.
    let o = bin()
        .arg("tune")
        .arg(shipped("small-weekday.toml"))
        .args(["--grid", "policy=seed,default", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("policy `per configuration`"), "{report}");
}

#[test]
fn compare_refuses_a_scenario_named_twice() {
    let d = tmp("compare-twice");
    let o = bin()
        .arg("compare")
        .arg(shipped("small-weekday.toml"))
        .arg(shipped("../scenarios/small-weekday.toml"))
        .args(["--policies", "seed", "--out"])
        .arg(d.join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("named twice"));
}

#[test]
fn compare_runs_every_policy_on_every_scenario_identically_for_any_jobs() {
    let d = scenario_dir("compare", "at_s,server,action,ram_mb\n0,a,start,1024\n0,b,start,4096\n600,a,stop,\n");
    let run = |jobs: &str| {
        let out = d.join(format!("j{jobs}"));
        let o = bin()
            .arg("compare")
            .arg(d.join("s.toml"))
            .arg(shipped("small-weekday.toml"))
            .args(["--policies", "seed,default", "--jobs", jobs, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        for f in ["compare.json", "compare.md", "compare.png"] {
            assert!(out.join(f).exists(), "{f}");
        }
        (std::fs::read(out.join("compare.json")).unwrap(), std::fs::read(out.join("compare.md")).unwrap())
    };
    let (json, md) = run("1");
    assert_eq!((json.clone(), md.clone()), run("2"), "identical for --jobs 1 and 2");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
    let pairs: Vec<(String, String)> =
        all.iter().map(|o| (o["scenario"].as_str().unwrap().into(), o["policy"].as_str().unwrap().into())).collect();
    let want = [("s", "seed"), ("s", "default"), ("small-weekday", "seed"), ("small-weekday", "default")];
    assert_eq!(pairs, want.map(|(a, b)| (a.to_string(), b.to_string())));
    for o in &all {
        for k in
            ["requests", "wait_s", "cost_eur", "cost_ratio", "churn_per_hour", "budget_refusals", "scale_down_vetoes"]
        {
            assert!(o.get(k).is_some(), "{k} in {o}");
        }
    }
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("default vs seed: "), "{md}");
}

#[test]
fn compare_refuses_an_unknown_policy_before_running_anything() {
    let d = tmp("compare-unknown");
    let out = d.join("out");
    let o = bin()
        .arg("compare")
        .arg(shipped("small-weekday.toml"))
        .args(["--policies", "seed,no_such_policy", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown policy \"no_such_policy\"") && err.contains("karpenter"), "{err}");
    assert!(!out.join("compare.json").exists(), "nothing written");
}

#[test]
fn simulate_warns_when_idle_shutdown_preempts_consolidation() {
    let run = |sets: &[&str]| {
        let mut cmd = bin();
        cmd.arg("simulate").arg(shipped("small-weekday.toml")).args(["--policy", "consolidation", "--quiet"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(&[]);
    assert!(
        err.contains("warning:") && err.contains("consolidation.node_min_idle_s") && err.contains("never acts"),
        "{err}"
    );
    assert!(!run(&["conductor.idle_shutdown_s=3600"]).contains("warning:"));
}
