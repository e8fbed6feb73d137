//! Hetzner's own command-line tool (`hcloud`, Debian's `hcloud-cli`) against an in-process
//! emulator: it lists server types, creates, lists, describes and deletes servers.
//!
//! When `hcloud` is not installed the test is skipped with a message, except under `CI=true`
//! (scripts/test.sh installs it), where it fails.

use std::process::{Command, Output};

use conductor_live::hetzner::{Emulator, EmulatorConfig};

fn hcloud(endpoint: &str, args: &[&str]) -> Output {
    Command::new("hcloud")
        .args(args)
        .env("HCLOUD_ENDPOINT", endpoint)
        .env("HCLOUD_TOKEN", "cli-token")
        // No configuration file of the machine's user is read.
        .env("HCLOUD_CONFIG", "/nonexistent/hcloud-cli.toml")
        .output()
        .expect("run hcloud")
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hcloud failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hetzners_command_line_tool_works_against_the_emulator() {
    if Command::new("hcloud").arg("version").output().is_err() {
        let msg = "hcloud (Debian: hcloud-cli) is not installed";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let emu = Emulator::new(EmulatorConfig { token: Some("cli-token".into()), boot_ms: 300, ..Default::default() });
    let addr = emu.spawn_local().await.expect("bind");
    let endpoint = format!("http://{addr}/v1");
    let run = |args: Vec<&'static str>| {
        let endpoint = endpoint.clone();
        tokio::task::spawn_blocking(move || hcloud(&endpoint, &args))
    };
    let types = ok(&run(vec!["server-type", "list", "-o", "columns=name,memory"]).await.unwrap());
    assert!(types.contains("cpx22"), "{types}");

    let created = run(vec![
        "server",
        "create",
        "--name",
        "cli-1",
        "--type",
        "cpx22",
        "--image",
        "debian-12",
        "--location",
        "nbg1",
        "--label",
        "managed_by=conductor",
    ])
    .await
    .unwrap();
    let created = ok(&created);
    assert!(created.contains("created"), "{created}");
    assert_eq!(emu.servers().len(), 1);

    let listed = ok(&run(vec!["server", "list", "-l", "managed_by=conductor", "-o", "noheader"]).await.unwrap());
    assert!(listed.contains("cli-1") && listed.contains("running"), "{listed}");
    let json = ok(&run(vec!["server", "describe", "cli-1", "-o", "json"]).await.unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).expect("describe -o json is JSON");
    assert_eq!(v["server_type"]["name"], "cpx22");
    assert_eq!(v["labels"]["managed_by"], "conductor");

    // A wrong token is refused with Hetzner's error, which the tool reports.
    let endpoint2 = endpoint.clone();
    let bad = tokio::task::spawn_blocking(move || {
        Command::new("hcloud")
            .args(["server", "list"])
            .env("HCLOUD_ENDPOINT", &endpoint2)
            .env("HCLOUD_TOKEN", "wrong")
            .env("HCLOUD_CONFIG", "/nonexistent/hcloud-cli.toml")
            .output()
            .expect("run hcloud")
    })
    .await
    .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unauthorized"), "{bad:?}");

    ok(&run(vec!["server", "delete", "cli-1"]).await.unwrap());
    assert!(emu.servers().is_empty());
    let listed = ok(&run(vec!["server", "list", "-o", "noheader"]).await.unwrap());
    assert!(listed.trim().is_empty(), "{listed}");
}
