//! Runs tests/hcloud_python.py (Hetzner's official Python client) against an in-process emulator.
//!
//! The interpreter is `$HCLOUD_PYTHON`, else `.venv/bin/python` in the crate, else `python3`. When it cannot
//! import `hcloud` the test is skipped with a message, except under `CI=true`, where it fails.

use std::path::Path;
use std::process::Command;

use conductor_live::hetzner::{Emulator, EmulatorConfig};

fn python() -> String {
    if let Ok(p) = std::env::var("HCLOUD_PYTHON") {
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "python3".to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_works_against_the_emulator() {
    let py = python();
    let has_hcloud = Command::new(&py).args(["-c", "import hcloud"]).output().map(|o| o.status.success());
    if !matches!(has_hcloud, Ok(true)) {
        let msg = format!("{py} cannot import hcloud: pip install hcloud (see README)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let emu = Emulator::new(EmulatorConfig { token: Some("py-token".into()), boot_ms: 300, ..Default::default() });
    let addr = emu.spawn_local().await.expect("bind");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hcloud_python.py");
    let endpoint = format!("http://{addr}/v1");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py).arg(script).args(["--endpoint", &endpoint, "--token", "py-token"]).output()
    })
    .await
    .expect("join")
    .expect("run python");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "python failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(emu.servers().is_empty());
    assert!(emu.mutating_calls() >= 10);
}
