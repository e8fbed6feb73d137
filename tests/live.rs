//! `conductor run` for real: the binary against the local Docker daemon reached over
//! sshd on 127.0.0.2-6 (one sshd per simulated node, from scripts/prepare-live-tests.sh),
//! the Hetzner emulator subcommand, a real SQLite file and the real HTTP API.
//! All nodes share the one daemon, so every check filters on the node label.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-5f1c2b";
const IMAGE: &str = "conductor-test-mc:latest";

fn state_dir() -> PathBuf {
    PathBuf::from(std::env::var("CONDUCTOR_TEST_DIR").unwrap_or_else(|_| "/tmp/conductor-live-test".into()))
}

fn prepare_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prepare-live-tests.sh")
}

/// The live environment must exist (the README's test command prepares it); never skip.
fn require_env() {
    let ok = state_dir().join("nodes.tsv").exists()
        && Command::new("docker").args(["image", "inspect", IMAGE]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "live test environment missing: run `bash {}` first (as root)", prepare_script().display());
    // A crashed earlier run may have left a node's sshd stopped or frozen. Once per test process, before
    // any test goes on (every test calls this first), so that no test restores a node another test stopped.
    static RESTORE: std::sync::Once = std::sync::Once::new();
    RESTORE.call_once(|| {
        for addr in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
            node_ctl("thaw-node", addr);
            node_ctl("start-node", addr);
        }
    });
}

fn node_ctl(verb: &str, addr: &str) {
    let st = Command::new("bash").arg(prepare_script()).args([verb, addr]).status().expect("run prepare script");
    assert!(st.success(), "{verb} {addr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Conductor {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Conductor {
    fn start(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Conductor {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_conductor"));
        cmd.args(["run", "--config"]).arg(config).args(["--listen", &listen]).args(extra);
        cmd.env("CONDUCTOR_API_TOKEN", TOKEN).env_remove("HCLOUD_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Logs outlive the test's temporary folder, for post-mortems.
        let logs = state_dir().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log_path = logs.join(format!("conductor-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        eprintln!("conductor log: {}", log_path.display());
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("spawn conductor");
        let c = Conductor { child, url: format!("http://{listen}"), log: log_path };
        let t0 = Instant::now();
        while get(&format!("{}/healthz", c.url), None).0 != 200 {
            assert!(t0.elapsed() < Duration::from_secs(20), "API did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// SIGTERM, then the exit status (within 20 s).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        // Only a conductor still running here: one killed earlier in the test left its
        // masters to the next conductor's reaper, and its pid may belong to another
        // process by now.
        let alive = matches!(self.child.try_wait(), Ok(None));
        let pid = self.child.id();
        self.kill9();
        // A killed conductor cannot end its SSH masters (the recovery test relies on that):
        // end them here, so that no test leaves node connections running after it. Their
        // command lines name the conductor's pid.
        if alive {
            let _ = Command::new("pkill").args(["-f", "--", &format!("conductor-ssh-{pid}-")]).status();
        }
        // A failing test shows what conductor said (CI keeps only the test output).
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- {} ----\n{text}---- end of log ----", self.log.display());
        }
    }
}

fn http(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut args = vec!["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url, "-m", "10"];
    let auth;
    if let Some(t) = token {
        auth = format!("Authorization: Bearer {t}");
        args.extend(["-H", auth.as_str()]);
    }
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = Command::new("curl").args(&args).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    http("GET", url, token, None)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A node's `health` as `GET /v1/nodes` reports it (empty if it is not listed).
fn node_health(c: &Conductor, node: &str) -> String {
    json(&get(&format!("{}/v1/nodes", c.url), Some(TOKEN)).1)
        .as_array()
        .and_then(|a| a.iter().find(|x| x["node"] == node).map(|x| x["health"].as_str().unwrap_or("").to_string()))
        .unwrap_or_default()
}

fn server_state(c: &Conductor, s: &str) -> String {
    let (code, body) = get(&format!("{}/v1/servers/{s}", c.url), Some(TOKEN));
    if code != 200 {
        return format!("http {code}");
    }
    json(&body)["state"].as_str().unwrap_or("").to_string()
}

/// Our containers for a server on any node: (node label, memory limit, running).
fn containers_of(server: &str) -> Vec<(String, u64, bool)> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label=conductor.server={server}"), "-q"])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
    ids.iter()
        .map(|id| {
            let o = Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{index .Config.Labels \"conductor.node\"}} {{.HostConfig.Memory}} {{.State.Running}}",
                    id,
                ])
                .output()
                .unwrap();
            let t = String::from_utf8_lossy(&o.stdout).to_string();
            let f: Vec<&str> = t.split_whitespace().collect();
            (f[0].to_string(), f[1].parse().unwrap_or(0), f[2] == "true")
        })
        .collect()
}

/// Removes the containers of servers named `prefix…` (on any node: a bought VM's name does not
/// carry the test's prefix), the helper containers of the test's nodes, and their volumes.
fn cleanup_prefix(prefix: &str) {
    let out =
        Command::new("docker").args(["ps", "-aq", "--filter", &format!("name=conductor-{prefix}")]).output().unwrap();
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", "label=conductor.server", "--format", "{{.ID}} {{.Label \"conductor.server\"}}"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((id, server)) = line.split_once(' ') {
            if server.starts_with(prefix) {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
    let out =
        Command::new("docker").args(["volume", "ls", "-q", "--filter", "label=conductor.server"]).output().unwrap();
    for v in String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|v| v.contains(prefix)) {
        let _ = Command::new("docker").args(["volume", "rm", "-f", v]).output();
    }
}

/// Host ports of a test's servers: all simulated nodes share one Docker daemon, so each
/// test (`lvN-` names) gets its own range, 32000 + 100·N (tests that set per-node
/// ranges use 31200-31549).
fn port_base(nodes: &str) -> u16 {
    let n = nodes.split("name = \"lv").nth(1).and_then(|r| r.split('-').next()).and_then(|d| d.parse::<u16>().ok());
    32000 + 100 * n.unwrap_or(0)
}

/// The sshd port of a test node, from the prepare script's `nodes.tsv`: 22 when it was free on that
/// address, else 2200 + last octet (a CI machine may have something else on port 22).
fn ssh_port(addr: &str) -> u16 {
    let tsv = std::fs::read_to_string(state_dir().join("nodes.tsv")).expect("nodes.tsv (prepare script)");
    tsv.lines()
        .find_map(|l| l.strip_prefix(addr).and_then(|r| r.strip_prefix('\t')).map(|p| p.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("{addr} in nodes.tsv"))
}

/// Every `address = "A"` line of the nodes gets `ssh_port` of that test node, and a `[hetzner]`
/// section the port of 127.0.0.4 (the emulator's VMs): never assume port 22.
fn with_ssh_ports(nodes: &str, extra: &str) -> (String, String) {
    let mut out = String::new();
    for line in nodes.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(addr) = line.strip_prefix("address = \"").and_then(|r| r.strip_suffix('"')) {
            out.push_str(&format!("ssh_port = {}\n", ssh_port(addr)));
        }
    }
    let extra = if extra.contains("ssh_port") {
        extra.to_string()
    } else {
        extra.replace("[hetzner]\n", &format!("[hetzner]\nssh_port = {}\n", ssh_port("127.0.0.4")))
    };
    (out, extra)
}

fn write_config(dir: &Path, nodes: &str, extra: &str) -> PathBuf {
    let sd = state_dir();
    let base = port_base(nodes);
    let (nodes, extra) = with_ssh_ports(nodes, extra);
    let cfg = format!(
        r#"[database]
path = "conductor.db"

[containers]
image = "{IMAGE}"
container_port = 25565
stop_grace_s = 1
ports = "{base}-{last}"
docker_timeout_s = 5

[ssh]
user = "root"
key = "{key}"
known_hosts = "{kh}"
strict_host_keys = true

[players]
interval_s = 0

{nodes}

[conductor]
startup_delay_s = 0
queue_tick_s = 1

[conductor.health]
interval_s = 1
retry_spacing_s = 1
failures_max = 2
probe_timeout_s = 5
lost_grace_s = 3

{extra}
"#,
        key = sd.join("id_ed25519").display(),
        kh = sd.join("known_hosts").display(),
        last = base + 99,
    );
    let path = dir.join("conductor.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[test]
fn start_queue_stop_api_errors_and_recovery_after_sigkill() {
    require_env();
    cleanup_prefix("lv1-");
    let dir = tempfile::tempdir().unwrap();
    // One 2 GB node: usable 2048 - 1000 = 1048 MB, so one 600 MB server at a time.
    let nodes = "[[nodes]]\nname = \"lv1-a\"\naddress = \"127.0.0.2\"\nram_mb = 2048\n";
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    let mut c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);

    // Auth and bad input.
    assert_eq!(get(&u("/v1/fleet"), None).0, 401);
    assert_eq!(get(&u("/v1/fleet"), Some("wrong")).0, 401);
    let (code, body) = http("POST", &u("/v1/servers/lv1-s1/start"), Some(TOKEN), Some("{\"ram_mb\": "));
    assert_eq!(code, 400, "{body}");
    assert!(json(&body)["error"]["message"].is_string());
    assert_eq!(get(&u("/v1/servers/lv1-nope"), Some(TOKEN)).0, 404);
    wait_for("node healthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));

    // Start: a real container on the node with our labels and the booked memory limit.
    let (code, body) = http("POST", &u("/v1/servers/lv1-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 600}"));
    assert_eq!(code, 202, "{body}");
    assert_eq!(json(&body)["state"], "started");
    wait_for("lv1-s1 running", 30, || server_state(&c, "lv1-s1") == "running");
    assert_eq!(containers_of("lv1-s1"), vec![("lv1-a".to_string(), 600 * 1024 * 1024, true)]);
    let info = json(&get(&u("/v1/servers/lv1-s1"), Some(TOKEN)).1);
    assert!(info["join_address"].as_str().unwrap().starts_with("127.0.0.2:321"), "{info}");
    let (code, body) = http("POST", &u("/v1/servers/lv1-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 600}"));
    assert_eq!(code, 409, "a second start answers with the current state: {body}");
    assert_eq!(json(&body)["server"]["state"], "running");

    // Full: the next start queues and the API reports its position.
    let (code, body) = http("POST", &u("/v1/servers/lv1-s2/start"), Some(TOKEN), Some("{\"ram_mb\": 600}"));
    assert_eq!((code, json(&body)["state"].clone()), (202, "queued".into()), "{body}");
    assert_eq!(json(&body)["position"], 1);
    let q = json(&get(&u("/v1/queue"), Some(TOKEN)).1);
    assert_eq!(q[0]["server"], "lv1-s2");

    // Stop frees the RAM: the queued server starts.
    let (code, _) = http("POST", &u("/v1/servers/lv1-s1/stop"), Some(TOKEN), None);
    assert_eq!(code, 202);
    wait_for("lv1-s2 running", 30, || server_state(&c, "lv1-s2") == "running");
    wait_for("lv1-s1 container gone", 30, || containers_of("lv1-s1").is_empty());
    assert_eq!(server_state(&c, "lv1-s1"), "stopped");

    // SIGKILL with one running and one queued server; everything is recovered.
    let (code, body) = http("POST", &u("/v1/servers/lv1-s3/start"), Some(TOKEN), Some("{\"ram_mb\": 600}"));
    assert_eq!((code, json(&body)["state"].clone()), (202, "queued".into()), "{body}");
    // The killed process's SSH master (its node connection) outlives it until the next start.
    let masters_of = |pid: u32| -> usize {
        let pattern = format!("conductor-ssh-{pid}-[^ ]*/master -M");
        let out = Command::new("pgrep").args(["-f", "--", &pattern]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let old_pid = c.child.id();
    assert!(masters_of(old_pid) >= 1, "the node is reached through an SSH master named after its process");
    c.kill9();
    assert!(masters_of(old_pid) >= 1, "a SIGKILLed conductor cannot end its SSH master");
    let c2 = Conductor::start(&cfg, &[], &[]);
    let u2 = |p: &str| format!("{}{p}", c2.url);
    wait_for("the dead conductor's SSH master ended", 10, || masters_of(old_pid) == 0);
    wait_for("lv1-s2 adopted", 30, || server_state(&c2, "lv1-s2") == "running");
    let q = json(&get(&u2("/v1/queue"), Some(TOKEN)).1);
    assert_eq!(q[0]["server"], "lv1-s3", "the queued start survived: {q}");
    assert_eq!(q[0]["position"], 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(containers_of("lv1-s2").len(), 1, "nothing runs twice");
    assert!(containers_of("lv1-s3").is_empty(), "no room yet");
    let (code, _) = http("POST", &u2("/v1/servers/lv1-s2/stop"), Some(TOKEN), None);
    assert_eq!(code, 202);
    wait_for("lv1-s3 running after recovery", 30, || server_state(&c2, "lv1-s3") == "running");
    assert_eq!(containers_of("lv1-s3").len(), 1);
    drop(c2);
    cleanup_prefix("lv1-");

    // The journal of that live run replays through the simulator.
    let out = dir.path().join("replay");
    let o = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .arg("replay")
        .arg(dir.path().join("conductor.db"))
        .arg("--out")
        .arg(&out)
        .args(["--set", "conductor.scaling.enabled=false"])
        .output()
        .unwrap();
    assert!(o.status.success(), "replay: {}", String::from_utf8_lossy(&o.stderr));
    let trace = std::fs::read_to_string(out.join("trace.csv")).unwrap();
    assert_eq!(trace.lines().filter(|l| l.contains(",start,")).count(), 3, "{trace}");
    assert!(trace.contains("lv1-s1,stop"), "{trace}");
    let summary = json(&std::fs::read_to_string(out.join("summary.json")).unwrap());
    assert_eq!(summary["requests"], 3, "{summary}");
    let ended = ["started", "timed_out", "cancelled", "queued_at_end"]
        .iter()
        .map(|k| summary[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(ended, 3, "every replayed request is accounted for: {summary}");
}

/// The tests of this process that stop 127.0.0.6's sshd take turns.
static NODE_6: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_node_whose_sshd_stops_turns_unhealthy_and_is_reconciled_when_it_returns() {
    require_env();
    let _node6 = NODE_6.lock().unwrap_or_else(|e| e.into_inner());
    cleanup_prefix("lv2-");
    let dir = tempfile::tempdir().unwrap();
    let nodes = "[[nodes]]\nname = \"lv2-b\"\naddress = \"127.0.0.6\"\nram_mb = 4096\n";
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    wait_for("node healthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    let (code, _) = http("POST", &u("/v1/servers/lv2-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 512}"));
    assert_eq!(code, 202);
    wait_for("lv2-s1 running", 30, || server_state(&c, "lv2-s1") == "running");

    node_ctl("stop-node", "127.0.0.6");
    let restore = scopeguard(|| node_ctl("start-node", "127.0.0.6"));
    wait_for("node unhealthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"unhealthy\""));
    // Node-local worlds: the server is reported lost, never started twice.
    wait_for("lv2-s1 lost", 30, || server_state(&c, "lv2-s1") == "lost");
    let (code, body) = http("POST", &u("/v1/servers/lv2-s2/start"), Some(TOKEN), Some("{\"ram_mb\": 512}"));
    assert_eq!(
        (code, json(&body)["state"].clone()),
        (202, "queued".into()),
        "nothing new on an unhealthy node: {body}"
    );
    drop(restore);
    wait_for("node healthy again", 60, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    wait_for("lv2-s1 reconciled", 30, || server_state(&c, "lv2-s1") == "running");
    wait_for("lv2-s2 placed", 30, || server_state(&c, "lv2-s2") == "running");
    assert_eq!(containers_of("lv2-s1").len(), 1, "nothing runs twice");
    drop(c);
    cleanup_prefix("lv2-");
}

#[test]
fn a_host_port_held_by_another_process_is_skipped() {
    require_env();
    cleanup_prefix("lv10-");
    let dir = tempfile::tempdir().unwrap();
    let nodes = "[[nodes]]\nname = \"lv10-p\"\naddress = \"127.0.0.2\"\nram_mb = 4096\n";
    let base = port_base(nodes);
    // Something that is not ours holds the first port of the node's range.
    let _squatter = std::net::TcpListener::bind(("0.0.0.0", base)).expect("bind the first port of the range");
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    wait_for("node healthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    let (code, body) = http("POST", &u("/v1/servers/lv10-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 512}"));
    assert_eq!(code, 202, "{body}");
    wait_for("lv10-s1 running", 30, || server_state(&c, "lv10-s1") == "running");
    let info = json(&get(&u("/v1/servers/lv10-s1"), Some(TOKEN)).1);
    assert_eq!(info["join_address"], format!("127.0.0.2:{}", base + 1), "the held port is skipped: {info}");
    assert_eq!(containers_of("lv10-s1").len(), 1);
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains(&format!("host port {base} is taken")), "{log}");
    drop(c);
    cleanup_prefix("lv10-");
}

/// The committed example configuration runs as shipped (in a scratch folder, so that its
/// relative database path lands there): the API answers, the local node turns healthy,
/// SIGTERM ends the process cleanly.
#[test]
fn the_example_config_serves_the_api() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("conductor.toml");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("conductor.example.toml"), &cfg).unwrap();
    let mut c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    assert_eq!(get(&u("/healthz"), None).0, 200);
    assert_eq!(get(&u("/v1/nodes"), None).0, 401);
    wait_for("the local node healthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    let (code, body) = get(&u("/v1/fleet"), Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    assert!(dir.path().join("conductor.db").exists(), "the database lives beside the config");
    let status = c.terminate();
    assert!(status.success(), "SIGTERM ends conductor cleanly: {status:?}");
}

#[test]
fn a_node_with_a_changed_host_key_never_turns_healthy() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.3's entry carries 127.0.0.4's real key: to conductor, the host key changed.
    let sd = state_dir();
    let port = ssh_port("127.0.0.3");
    let pattern = if port == 22 { "127.0.0.3".to_string() } else { format!("[127.0.0.3]:{port}") };
    let other = std::fs::read_to_string(sd.join("nodes/127.0.0.4/ssh_host_ed25519_key.pub")).unwrap();
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    let wrong = dir.path().join("wrong_known_hosts");
    std::fs::write(&wrong, format!("{pattern} {}\n", other.join(" "))).unwrap();
    let nodes = "[[nodes]]\nname = \"lv4-k\"\naddress = \"127.0.0.3\"\nram_mb = 4096\n";
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(&sd.join("known_hosts").display().to_string(), &wrong.display().to_string());
    assert!(text.contains("wrong_known_hosts"));
    std::fs::write(&cfg, text).unwrap();
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    // Health probes every second, two failures make a node unhealthy: 6 s is plenty.
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < Duration::from_secs(6) {
        let nodes = json(&get(&u("/v1/nodes"), Some(TOKEN)).1);
        last = nodes[0]["health"].as_str().unwrap_or_default().to_string();
        assert_ne!(last, "healthy", "a node behind a changed host key turned healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Never reached, so never known to be healthy: `unknown` (or `unhealthy` after a good probe).
    assert!(matches!(last.as_str(), "unknown" | "unhealthy"), "{last}");
    let (code, body) = http("POST", &u("/v1/servers/lv4-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 512}"));
    assert_eq!((code, json(&body)["state"].clone()), (202, "queued".into()), "nothing placed there: {body}");
    assert!(containers_of("lv4-s1").is_empty());
}

struct Guard<F: FnMut()>(F);
impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

/// The emulator subcommand on a free port; its VMs get 127.0.0.4 (a test sshd).
fn emulator(user_data_dir: &Path) -> (Child, String) {
    emulator_at("127.0.0.4", user_data_dir)
}

/// The emulator, its VMs from `first_ip` on.
fn emulator_at(first_ip: &str, user_data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args(["hetzner-emulator", "--listen", "127.0.0.1:0", "--token", "hz-secret", "--boot-ms", "500"])
        .args(["--ipv4-start", first_ip, "--user-data-dir"])
        .arg(user_data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    (child, url)
}

fn emulator_servers(url: &str) -> serde_json::Value {
    json(&get(&format!("{url}/servers"), Some("hz-secret")).1)["servers"].clone()
}

#[test]
fn scale_up_buys_a_vm_on_the_emulator_that_joins_and_scale_down_returns_it_and_dry_run_mutates_nothing() {
    require_env();
    cleanup_prefix("lv3-");
    let dir = tempfile::tempdir().unwrap();
    let user_data = dir.path().join("user-data");
    std::fs::create_dir(&user_data).unwrap();
    let (mut emu, emu_url) = emulator(&user_data);
    let _emu_guard = scopeguard(move || {
        let _ = emu.kill();
    });
    // Only a system node: the first start needs a VM (the zero-worker rule).
    let nodes = "[[nodes]]\nname = \"lv3-sys\"\naddress = \"127.0.0.2\"\nram_mb = 2048\nsystem = true\n";
    let extra = format!(
        r#"[hetzner]
enabled = true
api_url = "{emu_url}"
location = "nbg1"
image = "debian-12"
boot_timeout_s = 30
orphan_sweep_s = 1

[conductor.scaling]
interval_s = 1
policies = ["reactive"]
billing_period_s = 0
min_node_lifetime_s = 0
rebuy_cooldown_s = 0

[conductor.reactive]
scale_down_sustain_s = 1
scale_down_cooldown_s = 0
scale_up_cooldown_s = 0
node_idle_s = 2

[[conductor.catalogue]]
name = "cpx22"
ram_mb = 4096
cores = 2
hourly_eur = 0.01
"#
    );
    let cfg = write_config(dir.path(), nodes, &extra);

    // A VM labelled as ours that is no node of ours (say, a create whose answer was lost).
    let orphan = |name: &str, instance: &str| {
        let body = format!(
            r#"{{"name": "{name}", "server_type": "cpx22", "image": "debian-12", "location": "nbg1", "labels": {{"managed_by": "conductor", "conductor.instance": "{instance}"}}}}"#
        );
        let (code, body) = http("POST", &format!("{emu_url}/servers"), Some("hz-secret"), Some(&body));
        assert_eq!(code, 201, "{body}");
        json(&body)["server"]["id"].as_i64().unwrap()
    };
    let vm_names = || -> Vec<String> {
        emulator_servers(&emu_url).as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect()
    };
    // Dry run first: decisions are logged, nothing is bought, started or deleted.
    let early;
    {
        let c = Conductor::start(&cfg, &["--dry-run"], &[("HCLOUD_TOKEN", "hz-secret")]);
        // After recovery (the API answers once it is done), which would adopt it.
        assert_eq!(get(&format!("{}/v1/nodes", c.url), Some(TOKEN)).0, 200);
        early = orphan("lv3-orphan-early", "default");
        let (code, body) =
            http("POST", &format!("{}/v1/servers/lv3-dry/start", c.url), Some(TOKEN), Some("{\"ram_mb\": 512}"));
        assert_eq!(code, 202, "{body}");
        std::thread::sleep(Duration::from_secs(4));
        let d = get(&format!("{}/v1/decisions", c.url), Some(TOKEN)).1;
        assert!(d.contains("would buy VM"), "the decision is logged: {d}");
        assert!(d.contains("would delete VM lv3-orphan-early"), "the orphan sweep ran: {d}");
        assert_eq!(vm_names(), ["lv3-orphan-early"], "no VM bought or deleted in a dry run");
        assert!(containers_of("lv3-dry").is_empty());
        assert_eq!(std::fs::read_dir(&user_data).unwrap().count(), 0, "no create call reached the emulator");
    }
    // The dry run worked on a copy of the store: it wrote no database a real run would recover.
    for f in ["conductor.db", "conductor.db-wal", "conductor.db-shm"] {
        assert!(!dir.path().join(f).exists(), "a dry run wrote {f}");
    }

    let (code, _) = http("DELETE", &format!("{emu_url}/servers/{early}"), Some("hz-secret"), None);
    assert_eq!(code, 200);

    let c = Conductor::start(&cfg, &[], &[("HCLOUD_TOKEN", "hz-secret")]);
    let u = |p: &str| format!("{}{p}", c.url);
    assert_eq!(get(&u("/v1/servers/lv3-dry"), Some(TOKEN)).0, 404, "the dry run's request is not recovered");
    let (code, body) = http("POST", &u("/v1/servers/lv3-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 512}"));
    assert_eq!((code, json(&body)["state"].clone()), (202, "queued".into()), "{body}");
    wait_for("a VM on the emulator", 30, || emulator_servers(&emu_url).as_array().is_some_and(|a| a.len() == 1));
    let vm = &emulator_servers(&emu_url)[0];
    assert_eq!(vm["server_type"]["name"], "cpx22");
    assert_eq!(vm["labels"]["managed_by"], "conductor");
    assert!(vm["labels"]["conductor.node"].is_string(), "{vm}");
    // Its cloud-init installs Docker and reports readiness.
    let ud = std::fs::read_to_string(user_data.join(format!("{}.user-data", vm["name"].as_str().unwrap()))).unwrap();
    assert!(ud.starts_with("#cloud-config\n"), "{ud}");
    assert!(ud.contains("docker"), "{ud}");
    wait_for("lv3-s1 running on the VM", 60, || server_state(&c, "lv3-s1") == "running");
    let node = json(&get(&u("/v1/servers/lv3-s1"), Some(TOKEN)).1)["node"].as_str().unwrap().to_string();
    assert_eq!(Some(node.as_str()), vm["name"].as_str(), "the server runs on the bought VM");
    assert_eq!(containers_of("lv3-s1").len(), 1);
    // An orphan appearing while it runs is deleted by the sweep; the conductor's own VM stays.
    // Another conductor's VM (another hetzner.instance) in the same project is left alone.
    orphan("lv3-other-instance", "staging");
    orphan("lv3-orphan-late", "default");
    wait_for("the orphan deleted", 20, || !vm_names().contains(&"lv3-orphan-late".to_string()));
    let mut names = vm_names();
    names.sort();
    let mut expected = vec!["lv3-other-instance".to_string(), node.clone()];
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(server_state(&c, "lv3-s1"), "running");
    // Stop it and delete its world: the VM is empty and is returned.
    let (code, _) = http("POST", &u("/v1/servers/lv3-s1/stop"), Some(TOKEN), None);
    assert_eq!(code, 202);
    wait_for("lv3-s1 stopped", 30, || server_state(&c, "lv3-s1") == "stopped");
    let (code, body) = http("DELETE", &u("/v1/servers/lv3-s1"), Some(TOKEN), None);
    assert_eq!(code, 204, "{body}");
    wait_for("the VM deleted", 60, || vm_names() == ["lv3-other-instance"]);
    drop(c);
    cleanup_prefix("lv3-");
}

/// Writes `value` into a file of a running container through `docker exec -i … tee` (no shell involved).
fn write_in_container(container: &str, path: &str, value: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["exec", "-i", container, "tee", path])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "docker exec {container} tee {path}");
}

fn players_of(c: &Conductor, s: &str) -> Option<u64> {
    json(&get(&format!("{}/v1/servers/{s}", c.url), Some(TOKEN)).1)["players"].as_u64()
}

#[test]
fn player_counts_from_server_list_ping_reach_the_api_and_zero_players_stop_the_server_after_idle_time() {
    require_env();
    cleanup_prefix("lv5-");
    let dir = tempfile::tempdir().unwrap();
    let nodes = "[[nodes]]\nname = \"lv5-a\"\naddress = \"127.0.0.2\"\nram_mb = 4096\n";
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    const IDLE_S: u64 = 6;
    // Host ports of its own: tests run in parallel on one daemon.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("31000-31099", "31100-31199");
    let text = text.replace("[players]\ninterval_s = 0\n", "[players]\ninterval_s = 1\ntimeout_s = 2\n");
    let text = text.replace("queue_tick_s = 1\n", &format!("queue_tick_s = 1\nidle_shutdown_s = {IDLE_S}\n"));
    assert!(text.contains("interval_s = 1\ntimeout_s = 2") && text.contains("idle_shutdown_s = 6"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    wait_for("node healthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    let (code, body) = http("POST", &u("/v1/servers/lv5-p1/start"), Some(TOKEN), Some("{\"ram_mb\": 256}"));
    assert_eq!(code, 202, "{body}");
    wait_for("lv5-p1 running", 30, || server_state(&c, "lv5-p1") == "running");
    let container = "conductor-lv5-a-lv5-p1";
    // Players join: the count polled from the container reaches the API (and keeps the server up).
    write_in_container(container, "/data/players", "3\n");
    wait_for("3 players reported", 10, || players_of(&c, "lv5-p1") == Some(3));
    std::thread::sleep(Duration::from_secs(IDLE_S + 2));
    assert_eq!(server_state(&c, "lv5-p1"), "running", "a server with players is never idle-stopped");
    assert_eq!(players_of(&c, "lv5-p1"), Some(3));

    // Everyone leaves: 0 is reported, and idle shutdown stops it, not before IDLE_S.
    let left = Instant::now();
    write_in_container(container, "/data/players", "0\n");
    wait_for("0 players reported", 10, || players_of(&c, "lv5-p1") == Some(0));
    while left.elapsed() < Duration::from_secs(IDLE_S - 1) {
        assert_eq!(server_state(&c, "lv5-p1"), "running", "idle-stopped after {:?}", left.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("lv5-p1 idle-stopped", 15, || server_state(&c, "lv5-p1") == "stopped");
    let after = left.elapsed();
    assert!(after >= Duration::from_secs(IDLE_S), "stopped after {after:?}, before the idle time");
    wait_for("lv5-p1 container gone", 15, || containers_of("lv5-p1").is_empty());
    let info = json(&get(&u("/v1/servers/lv5-p1"), Some(TOKEN)).1);
    assert!(info["players"].is_null(), "a stopped server reports no players: {info}");
    drop(c);
    cleanup_prefix("lv5-");
}

fn read_in_container(container: &str, path: &str) -> Option<String> {
    let out = Command::new("docker").args(["exec", container, "cat", path]).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

fn volume_exists(volume: &str) -> bool {
    Command::new("docker").args(["volume", "inspect", volume]).output().is_ok_and(|o| o.status.success())
}

fn start_server(c: &Conductor, s: &str, ram_mb: u32) -> serde_json::Value {
    let body = format!("{{\"ram_mb\": {ram_mb}}}");
    let (code, body) = http("POST", &format!("{}/v1/servers/{s}/start", c.url), Some(TOKEN), Some(&body));
    assert_eq!(code, 202, "{body}");
    json(&body)
}

fn stop_server(c: &Conductor, s: &str) {
    let (code, body) = http("POST", &format!("{}/v1/servers/{s}/stop", c.url), Some(TOKEN), None);
    assert_eq!(code, 202, "{body}");
    // A stopped server whose world went to the archive is no longer tracked: 404.
    wait_for(&format!("{s} stopped"), 30, || matches!(server_state(c, s).as_str(), "stopped" | "http 404"));
}

fn node_of(c: &Conductor, s: &str) -> String {
    json(&get(&format!("{}/v1/servers/{s}", c.url), Some(TOKEN)).1)["node"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_world_moves_to_another_node_when_its_node_is_full_and_the_source_copy_is_removed() {
    require_env();
    cleanup_prefix("lv6-");
    let dir = tempfile::tempdir().unwrap();
    // a: 2048 MB (1048 usable: one 600 MB server); b: 4096 MB. Ties go to a (registered first). The two nodes
    // share this machine's ports, so each gets its own range.
    let nodes = "[[nodes]]\nname = \"lv6-a\"\naddress = \"127.0.0.2\"\nram_mb = 2048\nports = \"31200-31249\"\n\n\
                 [[nodes]]\nname = \"lv6-b\"\naddress = \"127.0.0.3\"\nram_mb = 4096\nports = \"31250-31299\"\n";
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    wait_for("nodes healthy", 30, || {
        json(&get(&u("/v1/nodes"), Some(TOKEN)).1).as_array().unwrap().iter().all(|n| n["health"] == "healthy")
    });
    start_server(&c, "lv6-s1", 600);
    wait_for("lv6-s1 running", 30, || server_state(&c, "lv6-s1") == "running");
    assert_eq!(node_of(&c, "lv6-s1"), "lv6-a");
    let marker = format!("lv6 world {}\n", std::process::id());
    write_in_container("conductor-lv6-a-lv6-s1", "/data/marker", &marker);
    stop_server(&c, "lv6-s1");
    assert!(volume_exists("conductor-lv6-a-lv6-s1-data"), "the world stays on a after the stop");

    // Another server takes a's room; lv6-s1 must start on b, with its world moved there.
    start_server(&c, "lv6-s2", 600);
    wait_for("lv6-s2 running", 30, || server_state(&c, "lv6-s2") == "running");
    assert_eq!(node_of(&c, "lv6-s2"), "lv6-a");
    let t0 = Instant::now();
    start_server(&c, "lv6-s1", 600);
    wait_for("lv6-s1 running again", 60, || server_state(&c, "lv6-s1") == "running");
    eprintln!("move and start took {:?}", t0.elapsed());
    assert_eq!(node_of(&c, "lv6-s1"), "lv6-b");
    assert_eq!(read_in_container("conductor-lv6-b-lv6-s1", "/data/marker").as_deref(), Some(marker.as_str()));
    wait_for("the source copy removed", 10, || !volume_exists("conductor-lv6-a-lv6-s1-data"));
    assert!(volume_exists("conductor-lv6-b-lv6-s1-data"));
    let d = get(&u("/v1/decisions"), Some(TOKEN)).1;
    assert!(d.contains("lv6-s1 on lv6-b"), "{d}");
    // Deleting the stopped server deletes its world on the node that holds it.
    stop_server(&c, "lv6-s1");
    assert!(volume_exists("conductor-lv6-b-lv6-s1-data"), "no archive store: the world stays on b");
    let (code, body) = http("DELETE", &u("/v1/servers/lv6-s1"), Some(TOKEN), None);
    assert_eq!(code, 204, "{body}");
    wait_for("the world deleted", 15, || !volume_exists("conductor-lv6-b-lv6-s1-data"));
    drop(c);
    cleanup_prefix("lv6-");
}

#[test]
fn a_stopped_world_is_archived_on_the_conductor_host_and_restored_after_a_restart() {
    require_env();
    cleanup_prefix("lv7-");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let nodes = "[[nodes]]\nname = \"lv7-a\"\naddress = \"127.0.0.4\"\nram_mb = 4096\n";
    let extra = format!("[conductor.scaling]\nenabled = false\n\n[archive]\ndir = \"{}\"\n", archive.display());
    let cfg = write_config(dir.path(), nodes, &extra);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("queue_tick_s = 1\n", "queue_tick_s = 1\narchive_after_s = 0\n")
        .replace("31000-31099", "31300-31399");
    std::fs::write(&cfg, text).unwrap();
    let mut c = Conductor::start(&cfg, &[], &[]);
    let u = |c: &Conductor, p: &str| format!("{}{p}", c.url);
    wait_for("node healthy", 30, || get(&u(&c, "/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    start_server(&c, "lv7-s1", 512);
    wait_for("lv7-s1 running", 30, || server_state(&c, "lv7-s1") == "running");
    let marker = format!("lv7 world {}\n", std::process::id());
    write_in_container("conductor-lv7-a-lv7-s1", "/data/marker", &marker);
    let t0 = Instant::now();
    stop_server(&c, "lv7-s1");

    // Archived at once (archive_after_s = 0): one tar named by generation, no temporary file left, and the
    // node's copy removed once the engine has the confirmation.
    let tars = || -> Vec<String> {
        std::fs::read_dir(archive.join("lv7-s1"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default()
    };
    wait_for("the archive written", 30, || tars().iter().any(|n| n.ends_with(".tar")));
    wait_for("the node's copy removed", 30, || !volume_exists("conductor-lv7-a-lv7-s1-data"));
    eprintln!("archived and removed from the node in {:?}", t0.elapsed());
    let files = tars();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].trim_end_matches(".tar").parse::<u64>().is_ok(), "{files:?}");
    let listing = Command::new("tar").arg("-tf").arg(archive.join("lv7-s1").join(&files[0])).output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).lines().any(|l| l == "data/marker"));
    let d = get(&u(&c, "/v1/decisions"), Some(TOKEN)).1;
    assert!(d.contains("world_archived"), "{d}");

    // A restart knows the archive; the next start restores it before the container starts.
    c.kill9();
    let c = Conductor::start(&cfg, &[], &[]);
    wait_for("node healthy again", 30, || get(&u(&c, "/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    let t0 = Instant::now();
    start_server(&c, "lv7-s1", 512);
    wait_for("lv7-s1 running from the archive", 60, || server_state(&c, "lv7-s1") == "running");
    eprintln!("restore and start took {:?}", t0.elapsed());
    assert_eq!(read_in_container("conductor-lv7-a-lv7-s1", "/data/marker").as_deref(), Some(marker.as_str()));

    // Deleting the server deletes its archive too.
    stop_server(&c, "lv7-s1");
    wait_for("archived again", 30, || !volume_exists("conductor-lv7-a-lv7-s1-data"));
    let (code, body) = http("DELETE", &u(&c, "/v1/servers/lv7-s1"), Some(TOKEN), None);
    assert_eq!(code, 204, "{body}");
    assert!(!archive.join("lv7-s1").exists(), "the archive outlived the server");
    drop(c);
    cleanup_prefix("lv7-");
}

#[test]
fn a_world_whose_source_copy_is_gone_is_never_started_empty_elsewhere() {
    require_env();
    cleanup_prefix("lv8-");
    let dir = tempfile::tempdir().unwrap();
    let nodes = "[[nodes]]\nname = \"lv8-a\"\naddress = \"127.0.0.2\"\nram_mb = 2048\nports = \"31400-31449\"\n\n\
                 [[nodes]]\nname = \"lv8-b\"\naddress = \"127.0.0.3\"\nram_mb = 4096\nports = \"31450-31499\"\n";
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    wait_for("nodes healthy", 30, || {
        json(&get(&u("/v1/nodes"), Some(TOKEN)).1).as_array().unwrap().iter().all(|n| n["health"] == "healthy")
    });
    start_server(&c, "lv8-s1", 600);
    wait_for("lv8-s1 running", 30, || server_state(&c, "lv8-s1") == "running");
    assert_eq!(node_of(&c, "lv8-s1"), "lv8-a");
    stop_server(&c, "lv8-s1");
    // The copy on a disappears behind conductor's back.
    let rm = Command::new("docker").args(["volume", "rm", "conductor-lv8-a-lv8-s1-data"]).output().unwrap();
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    start_server(&c, "lv8-s2", 600);
    wait_for("lv8-s2 running", 30, || server_state(&c, "lv8-s2") == "running");

    // The move to b fails with a reason, and lv8-s1 never runs there with an empty world.
    start_server(&c, "lv8-s1", 600);
    wait_for("the failed move reported", 30, || {
        get(&u("/v1/decisions"), Some(TOKEN)).1.contains("no world volume conductor-lv8-a-lv8-s1-data")
    });
    let d = json(&get(&u("/v1/decisions"), Some(TOKEN)).1);
    let failed: Vec<&serde_json::Value> =
        d.as_array().unwrap().iter().filter(|e| e["kind"] == "start_attempt_failed").collect();
    assert!(failed[0]["detail"].as_str().unwrap().starts_with("lv8-s1 on lv8-b: world not ready on lv8-b"), "{d}");
    for _ in 0..10 {
        assert_ne!(server_state(&c, "lv8-s1"), "running");
        assert!(containers_of("lv8-s1").is_empty(), "started without its world");
        assert!(!volume_exists("conductor-lv8-b-lv8-s1-data"), "an empty world was made on b");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, body) = http("POST", &u("/v1/servers/lv8-s1/stop"), Some(TOKEN), None);
    assert_eq!(code, 202, "{body}");
    drop(c);
    cleanup_prefix("lv8-");
}

#[test]
fn an_archive_that_cannot_be_written_is_not_confirmed_and_the_world_stays_on_its_node() {
    require_env();
    cleanup_prefix("lv9-");
    let dir = tempfile::tempdir().unwrap();
    // The archive "folder" is a regular file: every archive attempt fails.
    let archive = dir.path().join("not-a-folder");
    std::fs::write(&archive, "x").unwrap();
    let nodes = "[[nodes]]\nname = \"lv9-a\"\naddress = \"127.0.0.4\"\nram_mb = 4096\nports = \"31500-31549\"\n";
    let extra = format!("[conductor.scaling]\nenabled = false\n\n[archive]\ndir = \"{}\"\n", archive.display());
    let cfg = write_config(dir.path(), nodes, &extra);
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("queue_tick_s = 1\n", "queue_tick_s = 1\narchive_after_s = 0\n");
    std::fs::write(&cfg, text).unwrap();
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    wait_for("node healthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    start_server(&c, "lv9-s1", 512);
    wait_for("lv9-s1 running", 30, || server_state(&c, "lv9-s1") == "running");
    write_in_container("conductor-lv9-a-lv9-s1", "/data/marker", "kept\n");
    stop_server(&c, "lv9-s1");
    let errors = || {
        get(&u("/metrics"), Some(TOKEN))
            .1
            .lines()
            .find(|l| l.starts_with("conductor_adapter_errors_total") && l.contains("archive_world"))
            .map(str::to_string)
    };
    wait_for("the archive failure counted", 30, || errors().is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server_state(&c, "lv9-s1"), "stopped", "still tracked: the world is on its node");
    assert!(volume_exists("conductor-lv9-a-lv9-s1-data"), "the only copy was removed");
    assert!(!get(&u("/v1/decisions"), Some(TOKEN)).1.contains("world_archived"));
    // The world is still there for the next start on the node.
    start_server(&c, "lv9-s1", 512);
    wait_for("lv9-s1 running again", 30, || server_state(&c, "lv9-s1") == "running");
    assert_eq!(read_in_container("conductor-lv9-a-lv9-s1", "/data/marker").as_deref(), Some("kept\n"));
    drop(c);
    cleanup_prefix("lv9-");
}

#[test]
fn a_stopped_servers_world_on_a_node_is_recovered_after_sigkill_and_the_next_start_runs_there_not_on_a_stale_copy() {
    require_env();
    cleanup_prefix("lv11-");
    let dir = tempfile::tempdir().unwrap();
    // a: 2048 MB (1048 usable: one 600 MB server); b: 4096 MB. Ties go to a (registered first), so a
    // server conductor knows nothing about would start on an empty a.
    let nodes = "[[nodes]]\nname = \"lv11-a\"\naddress = \"127.0.0.2\"\nram_mb = 2048\nports = \"33100-33149\"\n\n\
                 [[nodes]]\nname = \"lv11-b\"\naddress = \"127.0.0.3\"\nram_mb = 4096\nports = \"33150-33199\"\n";
    let cfg = write_config(dir.path(), nodes, "[conductor.scaling]\nenabled = false\n");
    let mut c = Conductor::start(&cfg, &[], &[]);
    let u = |c: &Conductor, p: &str| format!("{}{p}", c.url);
    let healthy = |c: &Conductor| {
        json(&get(&u(c, "/v1/nodes"), Some(TOKEN)).1).as_array().unwrap().iter().all(|n| n["health"] == "healthy")
    };
    wait_for("nodes healthy", 30, || healthy(&c));
    // A filler on a sends lv11-s1 to b.
    start_server(&c, "lv11-f", 600);
    wait_for("lv11-f running", 30, || server_state(&c, "lv11-f") == "running");
    assert_eq!(node_of(&c, "lv11-f"), "lv11-a");
    start_server(&c, "lv11-s1", 600);
    wait_for("lv11-s1 running", 30, || server_state(&c, "lv11-s1") == "running");
    assert_eq!(node_of(&c, "lv11-s1"), "lv11-b");
    let marker = format!("lv11 world {}\n", std::process::id());
    write_in_container("conductor-lv11-b-lv11-s1", "/data/marker", &marker);
    stop_server(&c, "lv11-s1");
    stop_server(&c, "lv11-f");
    wait_for("containers gone", 30, || containers_of("lv11-s1").is_empty() && containers_of("lv11-f").is_empty());
    assert!(volume_exists("conductor-lv11-b-lv11-s1-data"), "the world stays on b after the stop");

    // SIGKILL: no container of lv11-s1 anywhere, only its volume on b, and an empty labelled copy on a, as a
    // move to a interrupted by the crash would leave (a has the lower id, but b is where it last started).
    c.kill9();
    let stale = Command::new("docker")
        .args(["volume", "create", "--label", "conductor.node=lv11-a", "--label", "conductor.server=lv11-s1"])
        .arg("conductor-lv11-a-lv11-s1-data")
        .output()
        .unwrap();
    assert!(stale.status.success(), "{}", String::from_utf8_lossy(&stale.stderr));
    let c = Conductor::start(&cfg, &[], &[]);
    wait_for("nodes healthy again", 30, || healthy(&c));
    assert_eq!(server_state(&c, "lv11-s1"), "stopped", "the recovered world keeps the server known");
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains("world(s) on nodes"), "{log}");
    // a is empty and first in line; lv11-s1 goes where its world is.
    let t0 = Instant::now();
    start_server(&c, "lv11-s1", 600);
    wait_for("lv11-s1 running again", 30, || server_state(&c, "lv11-s1") == "running");
    eprintln!("start after recovery took {:?}", t0.elapsed());
    assert_eq!(node_of(&c, "lv11-s1"), "lv11-b");
    assert_eq!(read_in_container("conductor-lv11-b-lv11-s1", "/data/marker").as_deref(), Some(marker.as_str()));
    assert!(volume_exists("conductor-lv11-a-lv11-s1-data"), "a copy that does not count is left alone");

    // Stopped again, then a restart where b does not answer (its address points nowhere): the store's word
    // that the world is on b stands, so the start waits for b instead of going to a with the stale copy.
    stop_server(&c, "lv11-s1");
    let mut c = c;
    c.kill9();
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("address = \"127.0.0.3\"", "address = \"127.0.0.9\"")).unwrap();
    let mut c = Conductor::start(&cfg, &[], &[]);
    wait_for("a healthy", 30, || get(&u(&c, "/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    assert_eq!(server_state(&c, "lv11-s1"), "stopped", "known by the store's world node");
    let body = start_server(&c, "lv11-s1", 600);
    assert_eq!(body["state"], "queued", "{body}");
    for _ in 0..10 {
        assert_eq!(server_state(&c, "lv11-s1"), "queued");
        assert!(containers_of("lv11-s1").is_empty(), "started away from its world");
        std::thread::sleep(Duration::from_millis(300));
    }
    // b is back: the queued start runs there, with the world.
    c.kill9();
    std::fs::write(&cfg, good).unwrap();
    let c = Conductor::start(&cfg, &[], &[]);
    wait_for("lv11-s1 running on b", 30, || server_state(&c, "lv11-s1") == "running");
    assert_eq!(node_of(&c, "lv11-s1"), "lv11-b");
    assert_eq!(read_in_container("conductor-lv11-b-lv11-s1", "/data/marker").as_deref(), Some(marker.as_str()));
    drop(c);
    cleanup_prefix("lv11-");
}

#[test]
fn a_copy_left_by_an_interrupted_restore_loses_to_the_archive_after_sigkill() {
    require_env();
    cleanup_prefix("lv12-");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let nodes = "[[nodes]]\nname = \"lv12-a\"\naddress = \"127.0.0.4\"\nram_mb = 4096\n";
    let extra = format!("[conductor.scaling]\nenabled = false\n\n[archive]\ndir = \"{}\"\n", archive.display());
    let cfg = write_config(dir.path(), nodes, &extra);
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("queue_tick_s = 1\n", "queue_tick_s = 1\narchive_after_s = 0\n");
    std::fs::write(&cfg, text).unwrap();
    let mut c = Conductor::start(&cfg, &[], &[]);
    let healthy = |c: &Conductor| get(&format!("{}/v1/nodes", c.url), Some(TOKEN)).1.contains("\"healthy\"");
    wait_for("node healthy", 30, || healthy(&c));
    start_server(&c, "lv12-s1", 512);
    wait_for("lv12-s1 running", 30, || server_state(&c, "lv12-s1") == "running");
    let marker = format!("lv12 world {}\n", std::process::id());
    write_in_container("conductor-lv12-a-lv12-s1", "/data/marker", &marker);
    stop_server(&c, "lv12-s1");
    wait_for("archived and removed from the node", 30, || !volume_exists("conductor-lv12-a-lv12-s1-data"));

    // A restart in the middle of a restore onto a: the volume is there (empty here: a partial copy). The store
    // names the archive as the current world (written when the archive was confirmed, and again when a
    // restore begins).
    c.kill9();
    let partial = Command::new("docker")
        .args(["volume", "create", "--label", "conductor.node=lv12-a", "--label", "conductor.server=lv12-s1"])
        .arg("conductor-lv12-a-lv12-s1-data")
        .output()
        .unwrap();
    assert!(partial.status.success(), "{}", String::from_utf8_lossy(&partial.stderr));
    {
        let store = conductor_live::store::Store::open(&dir.path().join("conductor.db")).unwrap();
        let id = store.find_server("lv12-s1").unwrap().expect("lv12-s1 in the store");
        assert_eq!(store.server(id).unwrap().unwrap().world_node.as_deref(), Some(""));
    }
    let c = Conductor::start(&cfg, &[], &[]);
    wait_for("node healthy again", 30, || healthy(&c));
    // Not tracked as stopped on a: its world is the archive, and the next start restores it over the copy.
    assert_eq!(server_state(&c, "lv12-s1"), "http 404");
    start_server(&c, "lv12-s1", 512);
    wait_for("lv12-s1 running from the archive", 60, || server_state(&c, "lv12-s1") == "running");
    assert_eq!(read_in_container("conductor-lv12-a-lv12-s1", "/data/marker").as_deref(), Some(marker.as_str()));
    stop_server(&c, "lv12-s1");
    drop(c);
    cleanup_prefix("lv12-");
}

/// A server running on a node that does not answer when conductor restarts is believed to run there (the
/// store's word stands until the node is listed): a new start request never starts a second copy elsewhere,
/// and when the node answers its listing confirms the container.
#[test]
fn a_server_running_on_a_node_unreachable_at_restart_is_never_started_twice() {
    require_env();
    cleanup_prefix("lv13-");
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.5: this process's other tests never stop it (live/tests/docker.rs runs in another process).
    let a = "[[nodes]]\nname = \"lv13-a\"\naddress = \"127.0.0.5\"\nram_mb = 4096\nports = \"33300-33349\"\n";
    let b = "\n[[nodes]]\nname = \"lv13-b\"\naddress = \"127.0.0.2\"\nram_mb = 4096\nports = \"33350-33399\"\n";
    let extra = "[conductor.scaling]\nenabled = false\n";
    let cfg = write_config(dir.path(), a, extra);
    let mut c = Conductor::start(&cfg, &[], &[]);
    let u = |c: &Conductor, p: &str| format!("{}{p}", c.url);
    let health = |c: &Conductor, node: &str| {
        let nodes = json(&get(&u(c, "/v1/nodes"), Some(TOKEN)).1);
        let found = nodes.as_array().unwrap().iter().find(|n| n["node"] == node).map(|n| n["health"].clone());
        found.and_then(|h| h.as_str().map(str::to_string)).unwrap_or_default()
    };
    wait_for("a healthy", 30, || health(&c, "lv13-a") == "healthy");
    start_server(&c, "lv13-s1", 512);
    wait_for("lv13-s1 running", 30, || server_state(&c, "lv13-s1") == "running");

    // SIGKILL, then a's sshd goes away (its container keeps running); conductor comes back with b as well.
    c.kill9();
    node_ctl("stop-node", "127.0.0.5");
    let restore = scopeguard(|| node_ctl("start-node", "127.0.0.5"));
    let cfg = write_config(dir.path(), &format!("{a}{b}"), extra);
    let c = Conductor::start(&cfg, &[], &[]);
    wait_for("b healthy", 30, || health(&c, "lv13-b") == "healthy");
    assert!(matches!(server_state(&c, "lv13-s1").as_str(), "running" | "lost"), "known on a");
    assert_eq!(node_of(&c, "lv13-s1"), "lv13-a");
    let (code, body) = http("POST", &u(&c, "/v1/servers/lv13-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 512}"));
    assert!(code < 500, "{code} {body}");
    std::thread::sleep(Duration::from_secs(3));
    let copies = containers_of("lv13-s1");
    assert_eq!(copies.len(), 1, "never a second copy: {copies:?} (start answered {code} {body})");
    assert_eq!(copies[0].0, "lv13-a");

    // a answers again: its listing confirms what runs there.
    drop(restore);
    wait_for("a healthy again", 60, || health(&c, "lv13-a") == "healthy");
    wait_for("lv13-s1 running on a", 30, || server_state(&c, "lv13-s1") == "running");
    assert_eq!(node_of(&c, "lv13-s1"), "lv13-a");
    assert_eq!(containers_of("lv13-s1").len(), 1);
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains("lv13-s1: believed running on lv13-a"), "{log}");
    drop(c);
    cleanup_prefix("lv13-");
}

/// A node and a Hetzner API that accept connections but never answer (listeners nobody
/// accepts on): the API still answers within seconds of the start, the node is reported, and
/// a SIGTERM while recovery is still waiting for them ends the process cleanly.
#[test]
fn the_api_answers_within_seconds_when_nodes_and_hetzner_do_not_and_sigterm_during_recovery_is_clean() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let silent_ssh = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sd = state_dir();
    let cfg = format!(
        r#"[database]
path = "conductor.db"

[containers]
image = "{IMAGE}"
ports = "33400-33499"

[ssh]
user = "root"
key = "{key}"
known_hosts = "{kh}"
strict_host_keys = true

[[nodes]]
name = "lv14-silent"
address = "127.0.0.1"
ssh_port = {ssh_port}
ram_mb = 4096

[hetzner]
enabled = true
api_url = "http://{api}/v1"
"#,
        key = sd.join("id_ed25519").display(),
        kh = sd.join("known_hosts").display(),
        ssh_port = silent_ssh.local_addr().unwrap().port(),
        api = silent_api.local_addr().unwrap(),
    );
    let path = dir.path().join("conductor.toml");
    std::fs::write(&path, cfg).unwrap();

    let t0 = Instant::now();
    let c = Conductor::start(&path, &[], &[("HCLOUD_TOKEN", "hz-secret")]);
    let (code, body) = get(&format!("{}/v1/nodes", c.url), Some(TOKEN));
    let took = t0.elapsed();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("lv14-silent"), "the node is reported: {body}");
    // Recovery waits at most 4 s for Hetzner and 4 s for the nodes (it used to wait up to 15 s).
    assert!(took < Duration::from_secs(12), "the API answered only after {took:?}");
    drop(c);

    let mut c = Conductor::start(&path, &[], &[("HCLOUD_TOKEN", "hz-secret")]);
    let status = c.terminate();
    assert!(status.success(), "a SIGTERM during recovery ends conductor cleanly: {status:?}");
    let log = std::fs::read_to_string(&c.log).unwrap();
    assert!(log.contains("stopped; running servers keep running"), "{log}");
}

/// Shared storage: a rented VM that stops answering is fenced (deleted through the Hetzner API,
/// which takes its containers with it), its server goes back to the head of the queue and runs
/// again on a new VM, once.
#[test]
fn with_shared_storage_a_vm_that_stops_answering_is_fenced_and_its_server_runs_again_elsewhere_once() {
    require_env();
    let _node6 = NODE_6.lock().unwrap_or_else(|e| e.into_inner());
    cleanup_prefix("lv15-");
    let dir = tempfile::tempdir().unwrap();
    let user_data = dir.path().join("user-data");
    std::fs::create_dir(&user_data).unwrap();
    // The emulator's VMs get 127.0.0.6 (this test may stop that sshd).
    let (mut emu, emu_url) = emulator_at("127.0.0.6", &user_data);
    let _emu_guard = scopeguard(move || {
        let _ = emu.kill();
    });
    let nodes = "[[nodes]]\nname = \"lv15-sys\"\naddress = \"127.0.0.2\"\nram_mb = 2048\nsystem = true\n";
    let extra = format!(
        r#"[hetzner]
ssh_port = {ssh6}
enabled = true
api_url = "{emu_url}"
location = "nbg1"
image = "debian-12"
boot_timeout_s = 30

[conductor.scaling]
interval_s = 1
policies = ["reactive"]
billing_period_s = 0
min_node_lifetime_s = 0
rebuy_cooldown_s = 0

[conductor.reactive]
scale_up_cooldown_s = 0

[[conductor.catalogue]]
name = "cpx22"
ram_mb = 4096
cores = 2
hourly_eur = 0.01
"#,
        ssh6 = ssh_port("127.0.0.6")
    );
    let cfg = write_config(dir.path(), nodes, &extra);
    // Shared storage: a key of the `[conductor]` table write_config writes.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replacen("[conductor]\n", "[conductor]\nstorage = \"shared\"\n", 1)).unwrap();
    let c = Conductor::start(&cfg, &[], &[("HCLOUD_TOKEN", "hz-secret")]);
    let u = |p: &str| format!("{}{p}", c.url);
    let (code, body) = http("POST", &u("/v1/servers/lv15-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 512}"));
    assert_eq!(code, 202, "{body}");
    wait_for("lv15-s1 running on a VM", 60, || server_state(&c, "lv15-s1") == "running");
    let first = node_of(&c, "lv15-s1");
    assert!(emulator_servers(&emu_url).as_array().unwrap().iter().any(|v| v["name"] == first.as_str()));

    node_ctl("stop-node", "127.0.0.6");
    let restore = scopeguard(|| node_ctl("start-node", "127.0.0.6"));
    // Fenced: the VM is deleted through the API.
    wait_for("the silent VM deleted", 60, || {
        !emulator_servers(&emu_url).as_array().unwrap().iter().any(|v| v["name"] == first.as_str())
    });
    // What deleting a real VM does to its containers (here all nodes share one Docker daemon).
    for (node, _, _) in containers_of("lv15-s1") {
        assert_eq!(node, first, "no second container while the first VM was being fenced");
    }
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=conductor.node={first}")])
        .output()
        .unwrap();
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
    drop(restore);
    // Requeued at the head: a new VM is bought and the server runs there, once.
    wait_for("lv15-s1 running again on a new VM", 90, || {
        server_state(&c, "lv15-s1") == "running" && node_of(&c, "lv15-s1") != first
    });
    let cs = containers_of("lv15-s1");
    assert_eq!(cs.len(), 1, "{cs:?}");
    assert_eq!(cs[0].0, node_of(&c, "lv15-s1"));
    drop(c);
    cleanup_prefix("lv15-");
}

/// The operator routes, the event stream and the metrics of a real run: `promtool` accepts the
/// exposition, a drained node takes nothing new, a node registered through the API takes the
/// next server, a node with a server is not removed, an empty one is.
#[test]
fn operator_routes_events_and_metrics_of_a_real_run() {
    require_env();
    cleanup_prefix("lv16-");
    let dir = tempfile::tempdir().unwrap();
    let nodes = "[[nodes]]\nname = \"lv16-a\"\naddress = \"127.0.0.2\"\nram_mb = 4096\nports = \"33600-33639\"\n";
    let cfg = write_config(dir.path(), nodes, "");
    let c = Conductor::start(&cfg, &[], &[]);
    let u = |p: &str| format!("{}{p}", c.url);
    wait_for("lv16-a healthy", 30, || get(&u("/v1/nodes"), Some(TOKEN)).1.contains("\"healthy\""));
    let events_file = dir.path().join("events.txt");
    let mut events = Command::new("curl")
        .args(["-sN", "-m", "20", "-H", &format!("Authorization: Bearer {TOKEN}"), &u("/v1/events")])
        .stdout(std::fs::File::create(&events_file).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (code, body) = http("POST", &u("/v1/servers/lv16-s1/start"), Some(TOKEN), Some("{\"ram_mb\": 256}"));
    assert_eq!(code, 202, "{body}");
    wait_for("lv16-s1 running", 30, || server_state(&c, "lv16-s1") == "running");

    let (code, metrics) = get(&u("/metrics"), Some(TOKEN));
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("conductor_queue_length"), "{metrics}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test.sh installs it)");
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, body) = http("POST", &u("/v1/scaling/pause"), Some(TOKEN), None);
    assert_eq!((code, json(&body)["scaling_enabled"].clone()), (202, false.into()), "{body}");
    let (code, body) = http("POST", &u("/v1/scaling/resume"), Some(TOKEN), None);
    assert_eq!((code, json(&body)["scaling_enabled"].clone()), (202, true.into()), "{body}");

    let add = |name: &str, ports: &str| {
        let b = format!(
            r#"{{"node": "{name}", "address": "127.0.0.2", "ssh_port": {}, "ram_mb": 4096, "ports": "{ports}"}}"#,
            ssh_port("127.0.0.2")
        );
        http("POST", &u("/v1/nodes"), Some(TOKEN), Some(&b))
    };
    let (code, body) = add("lv16-b", "33640-33669");
    assert_eq!(code, 201, "{body}");
    wait_for("lv16-b healthy", 30, || node_health(&c, "lv16-b") == "healthy");
    let (code, body) = http("POST", &u("/v1/nodes/lv16-a/drain"), Some(TOKEN), None);
    assert_eq!((code, json(&body)["lifecycle"].clone()), (202, "draining".into()), "{body}");
    let (code, body) = http("POST", &u("/v1/servers/lv16-s2/start"), Some(TOKEN), Some("{\"ram_mb\": 256}"));
    assert_eq!(code, 202, "{body}");
    wait_for("lv16-s2 running", 30, || server_state(&c, "lv16-s2") == "running");
    assert_eq!(node_of(&c, "lv16-s2"), "lv16-b", "nothing new on a draining node");
    assert_eq!(node_of(&c, "lv16-s1"), "lv16-a", "running servers stay on a draining node");
    let (code, body) = http("DELETE", &u("/v1/nodes/lv16-b"), Some(TOKEN), None);
    assert_eq!(code, 409, "a node with a server is not removed: {body}");
    let (code, body) = add("lv16-c", "33670-33699");
    assert_eq!(code, 201, "{body}");
    let (code, body) = http("DELETE", &u("/v1/nodes/lv16-c"), Some(TOKEN), None);
    assert_eq!(code, 204, "{body}");
    assert!(!get(&u("/v1/nodes"), Some(TOKEN)).1.contains("lv16-c"));

    let _ = events.kill();
    let _ = events.wait();
    let stream = std::fs::read_to_string(&events_file).unwrap();
    assert!(stream.contains("event: engine\ndata: {"), "{stream}");
    assert!(stream.contains("lv16-s1"), "the start is in the event stream: {stream}");
    drop(c);
    cleanup_prefix("lv16-");
}

/// A node's own `ssh_user` and `ssh_key` replace `[ssh]`'s: with a default key that does not
/// exist, only the node that names the real key becomes healthy (a node never reached stays
/// `unknown`).
#[test]
fn a_nodes_own_ssh_user_and_key_replace_the_defaults() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let real_key = state_dir().join("id_ed25519");
    let nodes = format!(
        "[[nodes]]\nname = \"lv17-own\"\naddress = \"127.0.0.2\"\nram_mb = 4096\nssh_user = \"root\"\nssh_key = \"{}\"\n\n\
         [[nodes]]\nname = \"lv17-default\"\naddress = \"127.0.0.3\"\nram_mb = 4096\n",
        real_key.display()
    );
    let cfg = write_config(dir.path(), &nodes, "[conductor.scaling]\nenabled = false\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let default_key = format!("key = \"{}\"", real_key.display());
    assert!(text.contains(&default_key));
    // `[ssh]` comes first; the node's `ssh_key = …` line also contains the text.
    let text = text.replacen(&default_key, "key = \"/nonexistent/id_ed25519\"", 1);
    // And a default user that does not exist on the nodes: the node's own user must be used.
    assert!(text.contains("user = \"root\"\n"));
    std::fs::write(&cfg, text.replacen("user = \"root\"\n", "user = \"nobody-here\"\n", 1)).unwrap();
    let c = Conductor::start(&cfg, &[], &[]);
    let health = |n: &str| node_health(&c, n);
    wait_for("lv17-own healthy", 30, || health("lv17-own") == "healthy");
    // Probed every second: a few rounds later the other node has still not answered.
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(health("lv17-default"), "healthy", "the default key does not exist");
    assert_eq!(health("lv17-own"), "healthy");
}
