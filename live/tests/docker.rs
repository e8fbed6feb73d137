//! Live tests against the real Docker daemon on this machine, directly and through sshd "nodes" on 127.0.0.2-4.
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
    container_name, ContainerSpec, DockerError, DockerNode, Endpoint, LABEL_NODE, LABEL_PLAN, LABEL_RAM_MB,
    LABEL_SERVER,
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
        for addr in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            env.node_ctl("thaw-node", addr);
            env.node_ctl("start-node", addr);
        }
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
    let ep = env.ssh("127.0.0.2", env.known_hosts(), true);
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
            self.0.node_ctl("thaw-node", "127.0.0.2");
            self.0.node_ctl("start-node", "127.0.0.2");
        }
    }
    let restart = Restart(&env);
    env.node_ctl("stop-node", "127.0.0.2");
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
    env.node_ctl("start-node", "127.0.0.2");
    node.reconnect().await.expect("reconnect after sshd restart");
    node.info().await.expect("docker info after reconnect");

    // A hung node (sshd and its sessions stopped with SIGSTOP): the probe times out instead of hanging.
    let short = DockerNode::connect("t-ssh2", &ep, probe_timeout).await.expect("connection before the freeze");
    env.node_ctl("freeze-node", "127.0.0.2");
    let started = Instant::now();
    let result = short.info().await;
    eprintln!("info on a frozen node: {result:?} after {:?}", started.elapsed());
    assert!(matches!(result, Err(DockerError::Timeout { op: "info", .. })), "{result:?}");
    assert!(started.elapsed() < probe_timeout + Duration::from_secs(2), "info hung for {:?}", started.elapsed());
    env.node_ctl("thaw-node", "127.0.0.2");
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
