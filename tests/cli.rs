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

#[test]
fn simulate_writes_results_and_exits_zero() {
    let d = tmp("ok");
    std::fs::write(d.join("t.csv"), "at_s,server,action,ram_mb\n0,a,start,1024\n60,a,stop,\n").unwrap();
    std::fs::write(d.join("s.toml"), SCENARIO).unwrap();
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
fn malformed_trace_exits_two_with_file_and_line() {
    let d = tmp("badtrace");
    std::fs::write(d.join("t.csv"), "at_s,server,action,ram_mb\n0,a,start,1024\n-5,b,start,1024\n").unwrap();
    std::fs::write(d.join("s.toml"), SCENARIO).unwrap();
    let o = bin().arg("simulate").arg(d.join("s.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("t.csv:3: at_s"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_scenario_and_bad_set_exit_two_naming_the_field() {
    let d = tmp("badsc");
    std::fs::write(d.join("t.csv"), "at_s,server,action,ram_mb\n").unwrap();
    std::fs::write(d.join("s.toml"), SCENARIO).unwrap();
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
