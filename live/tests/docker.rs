//! Live tests against the real Docker daemon on this machine, directly and through sshd "nodes" on 127.0.0.2-6.
//!
//! They need `scripts/prepare-live-tests.sh` to have run (as root): it builds the `conductor-test-mc:latest`
//! image and starts the sshd nodes. A missing environment is a failure with instructions, never a silent skip.
//! Each test uses its own node ids (so `list` scopes never overlap) and unique server names, and removes what it
//! creates; it also clears leftovers of its node ids from an earlier crashed run first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use conductor_live::{
    container_name, volume_name, ContainerSpec, DockerError, DockerNode, Endpoint, LABEL_NODE, LABEL_PLAN,
    LABEL_RAM_MB, LABEL_SERVER, LABEL_WORLD_HELPER,
};

const IMAGE: &str = "conductor-test-mc:latest";
const TIMEOUT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(2);

struct LiveEnv {
    state_dir: PathBuf,
    script: PathBuf,
    ssh_ports: HashMap<String, u16>,
}

impl LiveEnv {
    /// Loads the prepared environment or fails the test with what to run.
    fn load() -> LiveEnv {
        let state_dir =
            PathBuf::from(std::env::var("CONDUCTOR_TEST_DIR").unwrap_or_else(|_| "/tmp/conductor-live-test".into()));
        let script = find_script();
        let nodes = std::fs::read_to_string(state_dir.join("nodes.tsv"));
        let image_ok = Command::new("docker")
            .args(["image", "inspect", "--format", "ok", IMAGE])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let (Ok(nodes), true, true) = (nodes, image_ok, Path::new("/var/run/docker.sock").exists()) else {
            panic!(
                "live Docker test environment is missing (CI={}): need /var/run/docker.sock, image {IMAGE} and \
                 {}/nodes.tsv. Run `sudo {}` first (it is idempotent).",
                std::env::var("CI").unwrap_or_default(),
                state_dir.display(),
                script.display()
            );
        };
        let mut ssh_ports = HashMap::new();
        for line in nodes.lines() {
            let mut fields = line.split('\t');
            if let (Some(addr), Some(Ok(port))) = (fields.next(), fields.next().map(str::parse::<u16>)) {
                ssh_ports.insert(addr.to_string(), port);
            }
        }
        let env = LiveEnv { state_dir, script, ssh_ports };
        // A crashed earlier run may have left a node's sshd stopped; starting a running node is a no-op.
        // Once per test process, before any test runs on: a later test must not thaw or restart the node
        // that a running test froze or stopped on purpose.
        static RESTORE: std::sync::Once = std::sync::Once::new();
        RESTORE.call_once(|| {
            for addr in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
                env.node_ctl("thaw-node", addr);
                env.node_ctl("start-node", addr);
            }
        });
        env
    }

    fn node_ctl(&self, verb: &str, addr: &str) {
        let out = Command::new("bash").arg(&self.script).args([verb, addr]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("{} {verb} {addr} failed: {}", self.script.display(), String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("cannot run {}: {e}", self.script.display()),
        }
    }

    fn ssh(&self, addr: &str, known_hosts: PathBuf, strict: bool) -> Endpoint {
        let port = *self.ssh_ports.get(addr).unwrap_or_else(|| panic!("{addr} missing from nodes.tsv"));
        Endpoint::Ssh {
            host: addr.to_string(),
            port,
            user: "root".to_string(),
            key: self.state_dir.join("id_ed25519"),
            known_hosts,
            strict,
        }
    }

    fn known_hosts(&self) -> PathBuf {
        self.state_dir.join("known_hosts")
    }
}

fn find_script() -> PathBuf {
    if let Ok(p) = std::env::var("CONDUCTOR_PREPARE_SCRIPT") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Standalone crate, or a workspace member with the script at the workspace root.
    [manifest.join("scripts/prepare-live-tests.sh"), manifest.join("../scripts/prepare-live-tests.sh")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| manifest.join("scripts/prepare-live-tests.sh"))
}

fn local() -> Endpoint {
    Endpoint::Local { socket: PathBuf::from("/var/run/docker.sock") }
}

fn unique(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port (test setup)");
    listener.local_addr().expect("local addr (test setup)").port()
}

fn spec(node: &str, server: &str, ram_mb: u32) -> ContainerSpec {
    let mut spec = ContainerSpec::new(server, node, ram_mb, "test-plan", IMAGE, free_port());
    spec.host_ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    spec.env = vec![("SERVER_NAME".into(), server.into())];
    spec
}

async fn connect(node: &str, ep: &Endpoint) -> DockerNode {
    match DockerNode::connect(node, ep, TIMEOUT).await {
        Ok(n) => n,
        Err(e) => panic!("connect {node} via {ep:?}: {e}"),
    }
}

/// Removes every container this node id owns (leftovers of a crashed run).
async fn clear(node: &DockerNode) {
    for info in node.list().await.expect("list for cleanup") {
        node.stop(&info.server, Duration::ZERO).await.expect("cleanup stop");
    }
}

/// Starts, checks labels, memory limit, published port and listing, checks idempotence, stops.
async fn lifecycle(node: &DockerNode, server: &str) {
    let node_id = node.node_id().to_string();
    let spec = spec(&node_id, server, 96);
    let id = node.start(&spec).await.unwrap_or_else(|e| panic!("start {server}: {e}"));

    let inspected = node.raw().inspect_container(&id, None).await.expect("inspect started container");
    let labels = inspected.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
    assert_eq!(labels.get(LABEL_SERVER), Some(&server.to_string()));
    assert_eq!(labels.get(LABEL_NODE), Some(&node_id));
    assert_eq!(labels.get(LABEL_RAM_MB), Some(&"96".to_string()));
    assert_eq!(labels.get(LABEL_PLAN), Some(&"test-plan".to_string()));
    assert_eq!(inspected.name.as_deref(), Some(format!("/{}", container_name(&node_id, server)).as_str()));
    let memory = inspected.host_config.as_ref().and_then(|h| h.memory);
    assert_eq!(memory, Some(96 * 1024 * 1024), "memory limit must equal the booked RAM");

    let listed = node.list().await.expect("list");
    assert_eq!(listed.len(), 1, "exactly our one container: {listed:?}");
    let info = &listed[0];
    assert_eq!((info.id.as_str(), info.server.as_str(), info.node.as_str()), (id.as_str(), server, node_id.as_str()));
    assert_eq!((info.ram_mb, info.plan.as_deref(), info.running), (Some(96), Some("test-plan"), true));
    assert_eq!(info.host_port, Some(spec.host_port));

    // The stand-in server listens on the container port, published on 127.0.0.1:host_port.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, spec.host_port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "published port {addr} never accepted a connection");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Idempotent: a second start adopts the same container.
    assert_eq!(node.start(&spec).await.ok(), Some(id.clone()));
    assert_eq!(node.list().await.expect("list").len(), 1);
    // A different booking for the same server is refused, not silently adopted.
    let mut bigger = spec.clone();
    bigger.ram_mb = 128;
    bigger.memory_limit_mb = 128;
    assert!(matches!(node.start(&bigger).await, Err(DockerError::SpecMismatch { .. })));

    assert!(node.stop(server, GRACE).await.expect("stop"), "a container was there");
    assert!(node.list().await.expect("list").is_empty());
    let gone = node.raw().inspect_container(&id, None).await;
    assert!(gone.is_err(), "container must be removed");
    assert!(!node.stop(server, GRACE).await.expect("stopping an absent server is Ok"), "no container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_start_list_stop() {
    let _env = LiveEnv::load();
    let node = connect("t-local", &local()).await;
    clear(&node).await;
    node.info().await.expect("docker info");
    lifecycle(&node, &unique("local")).await;

    // With a data volume: created with our labels, kept on stop, removable by us.
    let server = unique("vol");
    let mut with_volume = spec("t-local", &server, 64);
    with_volume.data_volume = Some(format!("conductor-test-{server}"));
    node.start(&with_volume).await.expect("start with volume");
    node.stop(&server, GRACE).await.expect("stop with volume");
    let volume = node.raw().inspect_volume(&format!("conductor-test-{server}")).await.expect("volume kept");
    assert_eq!(volume.labels.get(LABEL_SERVER), Some(&server));
    node.remove_data_volume(&format!("conductor-test-{server}")).await.expect("remove volume");
    assert!(node.raw().inspect_volume(&format!("conductor-test-{server}")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_node_lifecycle_and_node_loss() {
    let env = LiveEnv::load();
    let ep = env.ssh("127.0.0.5", env.known_hosts(), true);
    let mut node = connect("t-ssh2", &ep).await;
    clear(&node).await;
    node.info().await.expect("docker info through ssh");
    lifecycle(&node, &unique("ssh")).await;

    // Node loss: kill that node's sshd (and its sessions). The probe must fail promptly, not hang.
    let probe_timeout = Duration::from_secs(3);
    let short = DockerNode::connect("t-ssh2", &ep, probe_timeout).await.expect("second connection");
    struct Restart<'a>(&'a LiveEnv);
    impl Drop for Restart<'_> {
        fn drop(&mut self) {
            self.0.node_ctl("thaw-node", "127.0.0.5");
            self.0.node_ctl("start-node", "127.0.0.5");
        }
    }
    let restart = Restart(&env);
    env.node_ctl("stop-node", "127.0.0.5");
    let started = Instant::now();
    let result = short.info().await;
    eprintln!("info after node loss: {result:?} after {:?}", started.elapsed());
    assert!(result.is_err(), "info must fail once the node's sshd is gone");
    assert!(started.elapsed() < probe_timeout + Duration::from_secs(2), "info hung for {:?}", started.elapsed());
    let started = Instant::now();
    assert!(DockerNode::connect("t-ssh2", &ep, probe_timeout).await.is_err(), "connect to a dead node succeeded");
    assert!(started.elapsed() < probe_timeout + Duration::from_secs(2), "connect hung for {:?}", started.elapsed());
    drop(short);

    // Back up: the old connection is dead, a reconnect works.
    env.node_ctl("start-node", "127.0.0.5");
    node.reconnect().await.expect("reconnect after sshd restart");
    node.info().await.expect("docker info after reconnect");

    // A hung node (sshd and its sessions stopped with SIGSTOP): the probe times out instead of hanging.
    let short = DockerNode::connect("t-ssh2", &ep, probe_timeout).await.expect("connection before the freeze");
    env.node_ctl("freeze-node", "127.0.0.5");
    let started = Instant::now();
    let result = short.info().await;
    eprintln!("info on a frozen node: {result:?} after {:?}", started.elapsed());
    assert!(matches!(result, Err(DockerError::Timeout { op: "info", .. })), "{result:?}");
    assert!(started.elapsed() < probe_timeout + Duration::from_secs(2), "info hung for {:?}", started.elapsed());
    env.node_ctl("thaw-node", "127.0.0.5");
    short.info().await.expect("the same connection works again once the node thaws");
    drop(short);
    drop(restart);
    node.close().await.expect("close session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_host_key_checking() {
    let env = LiveEnv::load();
    let dir = tempfile::tempdir().expect("temp dir (test setup)");
    let port = env.ssh_ports["127.0.0.3"];
    let host_pattern = if port == 22 { "127.0.0.3".to_string() } else { format!("[127.0.0.3]:{port}") };
    // Another node's real key stands in for a changed host key.
    let other_key = std::fs::read_to_string(env.state_dir.join("nodes/127.0.0.4/ssh_host_ed25519_key.pub"))
        .expect("read node 4 host key");
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    let wrong = dir.path().join("wrong_known_hosts");
    std::fs::write(&wrong, format!("{host_pattern} {}\n", other_key.join(" "))).expect("write known_hosts");
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write known_hosts");

    let refused = DockerNode::connect("t-ssh3", &env.ssh("127.0.0.3", wrong.clone(), true), TIMEOUT).await;
    eprintln!("wrong host key: {refused:?}");
    assert!(matches!(refused, Err(DockerError::Ssh { .. })), "wrong host key accepted: {refused:?}");
    let refused = DockerNode::connect("t-ssh3", &env.ssh("127.0.0.3", empty.clone(), true), TIMEOUT).await;
    assert!(matches!(refused, Err(DockerError::Ssh { .. })), "unknown host key accepted in strict mode: {refused:?}");
    // Non-strict still refuses a changed key (accept-new only records unknown ones).
    let refused = DockerNode::connect("t-ssh3", &env.ssh("127.0.0.3", wrong, false), TIMEOUT).await;
    assert!(matches!(refused, Err(DockerError::Ssh { .. })), "changed host key accepted: {refused:?}");

    // Control: the right key connects.
    let node = connect("t-ssh3", &env.ssh("127.0.0.3", env.known_hosts(), true)).await;
    node.info().await.expect("docker info with the right host key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_scoped_to_this_node_and_our_labels() {
    let _env = LiveEnv::load();
    let a = connect("t-iso-a", &local()).await;
    let b = connect("t-iso-b", &local()).await;
    clear(&a).await;
    clear(&b).await;
    let server_a = unique("iso-a");
    let server_b = unique("iso-b");
    a.start(&spec("t-iso-a", &server_a, 32)).await.expect("start on a");
    b.start(&spec("t-iso-b", &server_b, 32)).await.expect("start on b");

    // Containers that are not ours: no labels at all; our node label but no server label; and one squatting
    // on the name our adapter would use for a server.
    let squatted = unique("squat");
    let foreign = [
        (unique("nolabel"), HashMap::new()),
        (unique("halflabel"), HashMap::from([(LABEL_NODE.to_string(), "t-iso-a".to_string())])),
        (container_name("t-iso-a", &squatted), HashMap::new()),
    ];
    for (name, labels) in &foreign {
        let body =
            ContainerCreateBody { image: Some(IMAGE.to_string()), labels: Some(labels.clone()), ..Default::default() };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        a.raw().create_container(Some(options), body).await.expect("create foreign container");
    }

    let listed_a = a.list().await.expect("list a");
    assert_eq!(listed_a.iter().map(|i| i.server.as_str()).collect::<Vec<_>>(), vec![server_a.as_str()]);
    let listed_b = b.list().await.expect("list b");
    assert_eq!(listed_b.iter().map(|i| i.server.as_str()).collect::<Vec<_>>(), vec![server_b.as_str()]);

    // Stopping b's server through a touches nothing; starting over a foreign name is refused.
    assert!(!a.stop(&server_b, GRACE).await.expect("stop of a server a does not have"));
    assert_eq!(b.list().await.expect("list b").len(), 1);
    let squat = a.start(&spec("t-iso-a", &squatted, 32)).await;
    assert!(matches!(squat, Err(DockerError::ForeignContainer { .. })), "{squat:?}");
    a.stop(&squatted, GRACE).await.expect("stop of a server a does not have");

    // The foreign containers are untouched by all of the above.
    for (name, _) in &foreign {
        a.raw().inspect_container(name, None).await.expect("foreign container still exists");
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        a.raw().remove_container(name, Some(options)).await.expect("remove foreign container (test cleanup)");
    }
    a.stop(&server_a, GRACE).await.expect("stop a");
    b.stop(&server_b, GRACE).await.expect("stop b");
    assert!(a.list().await.expect("list a").is_empty());
    assert!(b.list().await.expect("list b").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leftover_is_replaced_and_a_failed_start_leaves_nothing() {
    let _env = LiveEnv::load();
    let node = connect("t-leftover", &local()).await;
    clear(&node).await;
    let server = unique("leftover");
    let first = spec("t-leftover", &server, 64);
    let old_id = node.start(&first).await.expect("start");
    // The container stops on its own (a crash), and is left behind stopped.
    node.raw().kill_container(&old_id, None::<bollard::query_parameters::KillContainerOptions>).await.expect("kill");
    let listed = node.list().await.expect("list");
    assert_eq!((listed.len(), listed[0].running), (1, false), "{listed:?}");
    // The next start brings a new port: the leftover with the old one is not reused.
    let second = spec("t-leftover", &server, 64);
    assert_ne!(first.host_port, second.host_port);
    let new_id = node.start(&second).await.expect("start again");
    assert_ne!(new_id, old_id, "a fresh container, not the leftover");
    let listed = node.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].running, listed[0].host_port), (true, Some(second.host_port)));
    node.stop(&server, GRACE).await.expect("stop");

    // A start that fails after the create (its host port is taken) leaves no container behind.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut taken = spec("t-leftover", &server, 64);
    taken.host_port = squatter.local_addr().expect("addr").port();
    let err = node.start(&taken).await.expect_err("the port is taken");
    assert!(err.to_string().contains("address already in use") || err.to_string().contains("allocated"), "{err}");
    assert!(node.list().await.expect("list").is_empty(), "no dead container left behind");
}

/// Writes `value` into a file of a running container through `docker exec -i … tee` (no shell involved).
fn write_in_container(container: &str, path: &str, value: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["exec", "-i", container, "tee", path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("docker exec (test setup)");
    child.stdin.take().expect("stdin").write_all(value.as_bytes()).expect("write to docker exec");
    assert!(child.wait().expect("docker exec").success(), "docker exec {container} tee {path}");
}

/// The test image's stand-in server speaks Server List Ping: the status's `players.online` is the number in
/// `/data/players` (0 when absent or not a number), which is what the live player-count tests rely on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_image_answers_server_list_ping_with_the_players_file() {
    let _env = LiveEnv::load();
    let node = connect("t-slp", &local()).await;
    clear(&node).await;
    let server = unique("slp");
    let mut s = spec("t-slp", &server, 64);
    s.data_volume = Some(format!("conductor-{server}-data"));
    node.start(&s).await.unwrap_or_else(|e| panic!("start {server}: {e}"));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, s.host_port));
    let ping = || conductor_live::slp::ping(addr, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match ping().await {
            Ok(status) => break status,
            Err(e) => assert!(Instant::now() < deadline, "the stand-in never answered a ping: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((first.online, first.max, first.version.as_str()), (0, 20, "conductor-test"), "{first:?}");
    assert_eq!(first.motd, "conductor test server");
    let container = container_name("t-slp", &server);
    write_in_container(&container, "/data/players", "3\n");
    assert_eq!(ping().await.expect("ping after writing 3").online, 3);
    write_in_container(&container, "/data/players", "12345");
    assert_eq!(ping().await.expect("ping after writing 12345").online, 12345);
    write_in_container(&container, "/data/players", "none");
    assert_eq!(ping().await.expect("ping after writing junk").online, 0, "no digits reads as 0 players");
    // A client that sends the optional ping (0x01) gets the same 8 bytes back in a pong.
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = conductor_live::slp::status_request_bytes("127.0.0.1", s.host_port, -1).expect("request");
    request.extend_from_slice(&conductor_live::slp::encode_frame(0x01, &42i64.to_be_bytes()));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&request).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await.expect("closed").expect("read");
    let (status, used) = conductor_live::slp::decode_frame(&reply, 4096).expect("frame").expect("whole status");
    assert_eq!(conductor_live::slp::parse_status_data(&status.data).expect("status").online, 0);
    let (pong, _) = conductor_live::slp::decode_frame(&reply[used..], 64).expect("frame").expect("whole pong");
    assert_eq!((pong.id, pong.data), (0x01, 42i64.to_be_bytes().to_vec()));
    // SIGTERM ends it at once and cleanly (exit code 0), well within the grace period.
    let started = Instant::now();
    let id = node.list().await.expect("list")[0].id.clone();
    node.raw()
        .stop_container(&id, Some(bollard::query_parameters::StopContainerOptionsBuilder::default().t(10).build()))
        .await
        .expect("stop");
    assert!(started.elapsed() < Duration::from_secs(5), "SIGTERM must end the stand-in");
    let inspected = node.raw().inspect_container(&id, None).await.expect("inspect");
    assert_eq!(inspected.state.and_then(|st| st.exit_code), Some(0));
    node.stop(&server, GRACE).await.expect("remove");
    node.remove_data_volume(&format!("conductor-{server}-data")).await.expect("remove volume");
}

/// Runs `docker exec <container> cat <path>` and returns its output (None if it failed).
fn read_in_container(container: &str, path: &str) -> Option<String> {
    let out = Command::new("docker").args(["exec", container, "cat", path]).output().expect("docker exec");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

fn helpers_left(node: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={LABEL_WORLD_HELPER}"), "--filter"])
        .arg(format!("label={LABEL_NODE}={node}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A world moves between two nodes (two sshd nodes on one daemon, so per-node volume names keep the copies
/// apart): a marker written on the source is read back from a container on the target, a stale file on the
/// target is gone, the source copy is removable, a missing world is an error and not an empty export, and a
/// volume in use is never replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worlds_export_to_a_tar_and_import_on_another_node() {
    let env = LiveEnv::load();
    let a = connect("t-wa", &env.ssh("127.0.0.2", env.known_hosts(), true)).await;
    let b = connect("t-wb", &env.ssh("127.0.0.3", env.known_hosts(), true)).await;
    clear(&a).await;
    clear(&b).await;
    let server = unique("world");
    let (wa, wb) = (a.worlds(IMAGE, TIMEOUT), b.worlds(IMAGE, TIMEOUT));
    let _ = wa.remove(&server).await;
    let _ = wb.remove(&server).await;
    let dir = tempfile::tempdir().expect("temp dir (test setup)");
    let tar = dir.path().join("world.tar");

    // No volume on a: nothing to export (never an empty world).
    assert!(!wa.exists(&server).await.expect("exists"));
    let missing = wa.export(&server, &tar).await;
    assert!(matches!(missing, Err(DockerError::NoWorld { .. })), "{missing:?}");
    assert!(!wa.exists(&server).await.expect("exists"), "a failed export must not create the volume");

    // A world on a, with a marker; its container is stopped (the volume stays).
    let mut on_a = spec("t-wa", &server, 64);
    on_a.data_volume = Some(volume_name("t-wa", &server));
    a.start(&on_a).await.expect("start on a");
    let marker = format!("marker {} {:?}\n", server, Instant::now());
    let mkdir = Command::new("docker")
        .args(["exec", &container_name("t-wa", &server), "mkdir", "-p", "/data/world"])
        .status()
        .expect("docker exec mkdir");
    assert!(mkdir.success());
    write_in_container(&container_name("t-wa", &server), "/data/world/level.dat", &marker);
    // Game images run as an unprivileged user: ownership must survive the trip.
    let chown = Command::new("docker")
        .args(["exec", &container_name("t-wa", &server), "chown", "-R", "1000:1000", "/data/world"])
        .status()
        .expect("docker exec chown");
    assert!(chown.success());
    a.stop(&server, GRACE).await.expect("stop on a");
    // The stopped server's world is listed on a (by its volume), and only there.
    assert!(a.list_worlds().await.expect("list worlds on a").contains(&server));
    assert!(!b.list_worlds().await.expect("list worlds on b").contains(&server));

    let started = Instant::now();
    let size = wa.export(&server, &tar).await.expect("export from a");
    eprintln!("export: {size} bytes in {:?}", started.elapsed());
    assert_eq!(std::fs::metadata(&tar).expect("tar written").len(), size);
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().expect("tar -tf");
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    assert!(listing.lines().any(|l| l == "data/world/level.dat"), "{listing}");

    // A stale volume on b (an older copy) is replaced, not merged.
    let mut on_b = spec("t-wb", &server, 64);
    on_b.data_volume = Some(volume_name("t-wb", &server));
    b.start(&on_b).await.expect("start on b (stale world)");
    write_in_container(&container_name("t-wb", &server), "/data/stale", "old\n");
    // In use: the daemon refuses to replace it, and the world there is untouched.
    assert!(wb.import(&server, &tar).await.is_err(), "a volume in use was replaced");
    assert_eq!(read_in_container(&container_name("t-wb", &server), "/data/stale").as_deref(), Some("old\n"));
    // Stopped but not removed (as a failed start leaves it): it holds the volume, and the import clears it.
    let options = bollard::query_parameters::StopContainerOptionsBuilder::default().t(1).build();
    b.raw().stop_container(&container_name("t-wb", &server), Some(options)).await.expect("docker stop on b");

    let started = Instant::now();
    wb.import(&server, &tar).await.expect("import on b");
    eprintln!("import: {:?}", started.elapsed());
    b.start(&on_b).await.expect("start on b with the moved world");
    let name_b = container_name("t-wb", &server);
    assert_eq!(read_in_container(&name_b, "/data/world/level.dat").as_deref(), Some(marker.as_str()));
    assert_eq!(read_in_container(&name_b, "/data/stale"), None, "a stale file survived the import");
    let owner = Command::new("docker")
        .args(["exec", &name_b, "stat", "-c", "%u:%g", "/data/world/level.dat", "/data/world"])
        .output()
        .expect("docker exec stat");
    assert_eq!(String::from_utf8_lossy(&owner.stdout), "1000:1000\n1000:1000\n", "ownership lost in the move");
    // The source copy is still there until removed; removing it leaves b's copy alone.
    assert!(wa.exists(&server).await.expect("exists"));
    wa.remove(&server).await.expect("remove the source copy");
    assert!(!wa.exists(&server).await.expect("exists"));
    assert!(!a.list_worlds().await.expect("list worlds on a").contains(&server));
    assert!(b.list_worlds().await.expect("list worlds on b").contains(&server));
    assert_eq!(read_in_container(&name_b, "/data/world/level.dat").as_deref(), Some(marker.as_str()));
    assert_eq!(helpers_left("t-wa"), "", "helper containers left on a");
    assert_eq!(helpers_left("t-wb"), "", "helper containers left on b");

    b.stop(&server, GRACE).await.expect("stop on b");
    wb.remove(&server).await.expect("remove b's copy");
    assert!(!wb.exists(&server).await.expect("exists"));
}
