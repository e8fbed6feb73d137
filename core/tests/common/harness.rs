// The behaviour-test harness, shared by behaviour.rs and regressions.rs through include!()
// (it uses their private items directly, as if written in each file).
use conductor_core::config::QueueOrder;
use conductor_core::*;
use std::collections::{BTreeMap, BTreeSet};

const S: u64 = 1000;
const MIN: u64 = 60 * S;

struct H {
    c: Conductor,
    now: u64,
    /// Commands drained so far that the test has not looked at.
    cmds: Vec<Command>,
    /// Nodes whose probes are answered `ok` automatically.
    up: BTreeSet<NodeId>,
}

/// The design document's rules (spread placement, 85 % scale-up threshold), which these
/// behaviour tests spell out; the shipped defaults (best fit, 91 %) are tested by the
/// config's own tests and measured by the simulator.
fn cfg() -> Config {
    let mut c = Config::default();
    c.startup_delay_s = 0;
    c.placement.strategy = conductor_core::config::PlacementStrategy::Spread;
    c.reactive = c.seed.clone();
    c
}

fn spec(name: &str, kind: NodeKind, ram: u32, system: bool) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        address: format!("10.0.0.{}", name.len()),
        kind,
        system,
        total_ram_mb: ram,
        cores: 4,
        hourly_eur: 0.0,
        labels: BTreeMap::new(),
        provider_id: None,
        server_type: None,
    }
}

impl H {
    fn new(cfg: Config) -> H {
        H { c: Conductor::new(cfg, Millis(0)).unwrap(), now: 0, cmds: Vec::new(), up: BTreeSet::new() }
    }

    /// Register a node and make it healthy.
    fn node(&mut self, name: &str, kind: NodeKind, ram: u32, system: bool) -> NodeId {
        let Reply::NodeRegistered(id) = self.input(Input::NodeRegistered(spec(name, kind, ram, system))) else {
            panic!("registration reply")
        };
        self.up.insert(id);
        self.at(self.now);
        id
    }

    fn input(&mut self, i: Input) -> Reply {
        let r = self.c.handle(Millis(self.now), i);
        self.drain();
        r
    }

    fn start(&mut self, server: u64, ram: u32) -> StartReply {
        self.start_plan(server, ram, Plan::PayPerPlay, server)
    }

    fn start_plan(&mut self, server: u64, ram: u32, plan: Plan, user: u64) -> StartReply {
        match self.input(Input::StartRequested { server: ServerId(server), ram_mb: ram, plan, user: UserId(user) }) {
            Reply::Start(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn drain(&mut self) {
        while let Some(cmd) = self.c.poll_command() {
            self.cmds.push(cmd);
        }
        let bad = self.c.check_invariants();
        assert!(bad.is_empty(), "invariants broken at {} ms: {bad:#?}", self.now);
    }

    /// Answer probes of nodes that are up, until none is pending.
    fn pump(&mut self) {
        loop {
            // Answer the probed nodes that are up; probes of the others stay pending.
            let mut results = Vec::new();
            for c in self.cmds.iter_mut() {
                if let Command::ProbeHealth { nodes } = c {
                    results.extend(nodes.iter().filter(|n| self.up.contains(n)).map(|&n| (n, true)));
                    nodes.retain(|n| !self.up.contains(n));
                }
            }
            self.cmds.retain(|c| !matches!(c, Command::ProbeHealth { nodes } if nodes.is_empty()));
            if results.is_empty() {
                return;
            }
            self.input(Input::HealthProbes { results });
        }
    }

    /// Advance to `t` ms, firing every timer on the way (as a driver would).
    fn at(&mut self, t: u64) {
        while let Some(d) = self.c.poll_timeout() {
            if d.0 > t {
                break;
            }
            self.now = d.0.max(self.now);
            self.c.handle_timeout(Millis(self.now));
            self.drain();
            self.pump();
        }
        self.now = t;
        self.c.handle_timeout(Millis(t));
        self.drain();
        self.pump();
    }

    fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.cmds).into_iter().filter(|c| !matches!(c, Command::ProbeHealth { .. })).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        self.take()
            .into_iter()
            .filter_map(|c| match c {
                Command::Publish(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn started(&mut self, server: u64, node: NodeId) {
        self.input(Input::ContainerStarted { server: ServerId(server), node });
    }

    /// Every node sold (a `ScaleDown` event) since the last `take` (other commands are dropped).
    #[allow(dead_code)] // regressions.rs sells no node
    fn sold(&mut self) -> Vec<NodeId> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::ScaleDown { node, .. } => Some(node),
                _ => None,
            })
            .collect()
    }

    /// Every VM bought since the last `take`, with its type (other commands are dropped).
    #[allow(dead_code)] // regressions.rs buys no VM
    fn bought_all(&mut self) -> Vec<(NodeId, String)> {
        self.take()
            .into_iter()
            .filter_map(|c| match c {
                Command::ProvisionNode { node, server_type, .. } => Some((node, server_type)),
                _ => None,
            })
            .collect()
    }

    /// The node of the one VM bought since the last `take`.
    #[allow(dead_code)] // regressions.rs buys no VM
    fn bought(&mut self) -> NodeId {
        self.take()
            .into_iter()
            .find_map(|c| match c {
                Command::ProvisionNode { node, .. } => Some(node),
                _ => None,
            })
            .expect("a VM is bought")
    }

    fn status(&self, server: u64) -> Option<ServerStatus> {
        self.c.server_status(ServerId(server))
    }
}

fn start_cmds(cmds: &[Command]) -> Vec<(ServerId, NodeId, WorldAction)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::StartContainer { server, node, world, .. } => Some((*server, *node, *world)),
            _ => None,
        })
        .collect()
}

