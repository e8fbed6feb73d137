//! Hostile request bodies and paths through the real router (`api::router` over HTTP on
//! 127.0.0.1:0), with a fake driver that keeps its state behind a mutex so that each case can
//! compare it before and after. proptest with fixed seeds, a few hundred cases per property:
//! - the server never panics or answers 5xx to a bad body; every error is the JSON error object;
//! - a rejected request (any 4xx) leaves the driver's state as it was;
//! - type errors name the field; oversized bodies are 413; hostile names are 400.

#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use conductor_live::api::{router, ApiState, BODY_BYTES_MAX};
use conductor_live::control::{ApiCall, ApiError, NodeInfo, StartOutcome};
use conductor_live::metrics::Metrics;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

const TOKEN: &str = "fuzz-token-8d41e0c2a9";

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
}

/// What the fake driver holds; compared before and after every request.
#[derive(Clone, Debug, Default, PartialEq)]
struct State {
    servers: BTreeMap<String, (u32, String, Option<String>)>,
    nodes: BTreeMap<String, (String, u32)>,
    calls: u64,
}

type Shared = Arc<Mutex<State>>;

fn answer(state: &Shared, call: ApiCall) {
    let mut s = state.lock().unwrap();
    match call {
        ApiCall::Start { server, body, answer } => {
            // What the real driver checks itself; a refused start changes nothing.
            let r = if body.ram_mb == 0 {
                Err(ApiError::BadRequest("ram_mb: must be above 0".into()))
            } else if body.user.as_ref().is_some_and(|u| u.is_empty() || u.len() > 128) {
                Err(ApiError::BadRequest("user: 1-128 printable characters".into()))
            } else if s.servers.contains_key(&server) {
                Err(ApiError::Conflict { message: format!("{server} is already running"), server: None })
            } else {
                s.calls += 1;
                s.servers.insert(server.clone(), (body.ram_mb, body.plan.as_str().to_string(), body.user));
                Ok(StartOutcome { server, state: "started".into(), node: Some("n1".into()), position: None })
            };
            let _ = answer.send(r);
        }
        ApiCall::AddNode { node, answer } => {
            let r = if s.nodes.contains_key(&node.node) {
                Err(ApiError::Conflict { message: format!("node {} exists", node.node), server: None })
            } else {
                s.calls += 1;
                s.nodes.insert(node.node.clone(), (node.address.clone(), node.ram_mb));
                Ok(NodeInfo {
                    node: node.node,
                    kind: "dedicated".into(),
                    system: node.system,
                    address: node.address,
                    health: "unknown".into(),
                    lifecycle: "active".into(),
                    ram_mb: node.ram_mb,
                    usable_mb: 0,
                    allocated_mb: 0,
                    containers: 0,
                })
            };
            let _ = answer.send(r);
        }
        ApiCall::Stop { server, answer } => {
            let _ = answer.send(Err(ApiError::NotFound(format!("no server {server}"))));
        }
        ApiCall::Server { server, answer } => {
            let _ = answer.send(Err(ApiError::NotFound(format!("no server {server}"))));
        }
        ApiCall::Delete { server, answer } => {
            let _ = answer.send(Err(ApiError::NotFound(format!("no server {server}"))));
        }
        ApiCall::RemoveNode { node, answer } | ApiCall::DrainNode { node, answer } => {
            let _ = answer.send(Err(ApiError::NotFound(format!("no node {node}"))));
        }
        other => panic!("the fuzz sends no {}", std::any::type_name_of_val(&other)),
    }
}

struct Api {
    base: String,
    client: reqwest::Client,
    state: Shared,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn spawn() -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let state: Shared = Arc::default();
        let (calls, mut receiver) = mpsc::channel::<ApiCall>(16);
        let driver_state = state.clone();
        let base = rt.block_on(async move {
            tokio::spawn(async move {
                while let Some(call) = receiver.recv().await {
                    answer(&driver_state, call);
                }
            });
            let (events, _) = broadcast::channel(16);
            let api = ApiState { calls, events, metrics: Arc::new(Metrics::new()), token: Arc::new(TOKEN.into()) };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router(api)).await.unwrap() });
            base
        });
        Api { base, client: reqwest::Client::new(), state, rt }
    }

    fn snapshot(&self) -> State {
        self.state.lock().unwrap().clone()
    }

    /// An authorized POST with `body` as `application/json`; (status, parsed JSON or Null).
    fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.rt.block_on(async {
            let response = self
                .client
                .post(format!("{}{path}", self.base))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(!text.contains(TOKEN), "{path}: the token is in the response");
            let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
            (status, v)
        })
    }

    /// Sends the body and checks the rules every answer obeys; returns status and body.
    fn checked(&self, path: &str, body: Vec<u8>) -> Result<(StatusCode, Value), TestCaseError> {
        let before = self.snapshot();
        let (status, v) = self.post(path, body);
        prop_assert!(!status.is_server_error(), "{}: {} {}", path, status, v);
        if status.is_client_error() {
            prop_assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{}", v);
            prop_assert_eq!(self.snapshot(), before, "a rejected request changed the driver's state: {}", v);
        } else {
            prop_assert!(status.is_success(), "{}: {}", status, v);
            prop_assert_eq!(self.snapshot().calls, before.calls + 1);
        }
        Ok((status, v))
    }
}

/// A JSON value of any shape, hostile leaves included.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        prop::sample::select(vec!["$(id)", "a;rm -rf /", "../x", "`id`", "\u{0}", "-oProxyCommand=id", "payperplay"])
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const START_FIELDS: &[&str] = &["ram_mb", "plan", "user"];
const NODE_FIELDS: &[&str] = &["node", "address", "ssh_port", "ram_mb", "system", "ports"];

/// Structure-aware mutations of a valid body: drop, retype or add a field, or rename one.
#[derive(Clone, Debug)]
enum Mutation {
    Remove(usize),
    Replace(usize, Value),
    Add(String, Value),
    Rename(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        ("[a-zA-Z_]{1,10}", any_json()).prop_map(|(k, v)| Mutation::Add(k, v)),
        any::<usize>().prop_map(Mutation::Rename),
    ]
}

fn mutate(mut body: Value, fields: &[&str], mutations: &[Mutation]) -> (Value, Vec<String>) {
    let mut touched = Vec::new();
    let object = body.as_object_mut().unwrap();
    for m in mutations {
        match m {
            Mutation::Remove(i) => {
                object.remove(fields[i % fields.len()]);
            }
            Mutation::Replace(i, v) => {
                let field = fields[i % fields.len()];
                object.insert(field.to_string(), v.clone());
                touched.push(field.to_string());
            }
            Mutation::Add(k, v) => {
                object.insert(k.clone(), v.clone());
                touched.push(k.clone());
            }
            Mutation::Rename(i) => {
                let field = fields[i % fields.len()];
                if let Some(v) = object.remove(field) {
                    object.insert(field.to_uppercase(), v);
                    touched.push(field.to_uppercase());
                }
            }
        }
    }
    (body, touched)
}

#[test]
fn arbitrary_bytes_as_bodies_are_refused_cleanly() {
    let api = Api::spawn();
    let strategy = (prop::collection::vec(any::<u8>(), 0..300), any::<bool>());
    runner(300, 21)
        .run(&strategy, |(bytes, node)| {
            let path = if node { "/v1/nodes" } else { "/v1/servers/mc-1/start" };
            let (status, _) = api.checked(path, bytes)?;
            prop_assert!(status.is_client_error(), "random bytes accepted");
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_json_bodies_never_break_the_api() {
    let api = Api::spawn();
    runner(300, 22)
        .run(&(any_json(), any::<bool>(), 0u32..1000), |(v, node, n)| {
            let path = if node { "/v1/nodes".to_string() } else { format!("/v1/servers/s-{n}/start") };
            api.checked(&path, serde_json::to_vec(&v).unwrap())?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_start_bodies_are_refused_naming_the_field_or_accepted_whole() {
    let api = Api::spawn();
    let valid = json!({"ram_mb": 2048, "plan": "balanced", "user": "cust-1"});
    let strategy = (prop::collection::vec(mutation(), 1..4), 0u32..100_000);
    runner(400, 23)
        .run(&strategy, |(mutations, n)| {
            let (body, touched) = mutate(valid.clone(), START_FIELDS, &mutations);
            let server = format!("mc-{n}");
            let (status, v) =
                api.checked(&format!("/v1/servers/{server}/start"), serde_json::to_vec(&body).unwrap())?;
            if status == StatusCode::BAD_REQUEST {
                let message = v["error"]["message"].as_str().unwrap();
                let mut fields: Vec<&str> = START_FIELDS.to_vec();
                fields.extend(touched.iter().map(String::as_str));
                let named =
                    fields.iter().any(|f| message.contains(&format!("`{f}`")) || message.contains(&format!("{f}:")));
                prop_assert!(named, "{}: {}", body, message);
            }
            if status == StatusCode::ACCEPTED {
                // Accepted means the driver got exactly what was sent.
                let s = api.snapshot();
                let (ram, plan, user) = &s.servers[&server];
                prop_assert_eq!(json!(ram), body["ram_mb"].clone());
                prop_assert_eq!(plan.as_str(), body.get("plan").and_then(Value::as_str).unwrap_or("payperplay"));
                prop_assert_eq!(user.as_deref(), body.get("user").and_then(Value::as_str));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_node_bodies_are_refused_or_accepted_whole() {
    let api = Api::spawn();
    let valid = json!({"node": "n5", "address": "10.0.0.5", "ssh_port": 22, "ram_mb": 131072, "system": false,
                       "ports": "25565-25664"});
    let strategy = (prop::collection::vec(mutation(), 1..4), 0u32..100_000);
    runner(400, 24)
        .run(&strategy, |(mutations, n)| {
            let (mut body, _) = mutate(valid.clone(), NODE_FIELDS, &mutations);
            if body.get("node").and_then(Value::as_str) == Some("n5") {
                body["node"] = json!(format!("n-{n}"));
            }
            let (status, _) = api.checked("/v1/nodes", serde_json::to_vec(&body).unwrap())?;
            if status == StatusCode::CREATED {
                let name = body["node"].as_str().unwrap();
                let address = body["address"].as_str().unwrap();
                prop_assert!(conductor_live::control::valid_name(name), "{}", name);
                prop_assert!(conductor_live::control::valid_host(address), "{}", address);
                prop_assert_eq!(&api.snapshot().nodes[name].0, address);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn deep_nesting_and_oversized_bodies_are_refused() {
    let api = Api::spawn();
    let deep = format!("{}{}", "[".repeat(100_000 / 2), "]".repeat(100_000 / 2));
    let (status, _) = api.checked("/v1/servers/mc-1/start", deep.into_bytes()).unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let deep = format!("{{\"ram_mb\": {}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let (status, v) = api.checked("/v1/servers/mc-1/start", deep.into_bytes()).unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let (status, v) = api.checked("/v1/servers/mc-1/start", deep.into_bytes()).unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    for len in [BODY_BYTES_MAX + 1, BODY_BYTES_MAX * 2, BODY_BYTES_MAX * 16] {
        let body = format!("{{\"ram_mb\": 1024, \"user\": \"{}\"}}", "u".repeat(len));
        let (status, v) = api.checked("/v1/servers/mc-1/start", body.into_bytes()).unwrap();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{len}");
        assert_eq!(v["error"]["code"], "payload_too_large");
    }
    assert_eq!(api.snapshot(), State::default(), "nothing reached the driver");
}

#[test]
fn hostile_names_in_paths_and_bodies_are_400() {
    let api = Api::spawn();
    // Percent-encoded so that they reach the router as written (`../x` would otherwise be
    // normalized away by the client).
    for name in ["%24(id)", "a%3Brm%20-rf%20%2F", "..%2Fx", "%60id%60", "-rf", "a%0Ab", "%00", "%C3%BC"] {
        for path in [format!("/v1/servers/{name}/start"), format!("/v1/nodes/{name}/drain")] {
            let body = serde_json::to_vec(&json!({"ram_mb": 1024})).unwrap();
            let (status, v) = api.checked(&path, body).unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("invalid id"), "{v}");
        }
    }
    for (field, value) in [
        ("node", "$(id)"),
        ("node", "a;rm -rf /"),
        ("node", "../x"),
        ("address", "-oProxyCommand=sh -c id"),
        ("address", "$(id)"),
        ("address", "a;rm -rf /"),
        ("address", "root@10.0.0.1"),
        ("address", "10.0.0.1 -p 2222"),
        ("ports", "$(id)"),
    ] {
        let mut body = json!({"node": "n7", "address": "10.0.0.7", "ram_mb": 1024});
        body[field] = json!(value);
        let (status, v) = api.checked("/v1/nodes", serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}={value}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(&format!("`{field}`")), "{v}");
    }
    assert_eq!(api.snapshot(), State::default(), "nothing reached the driver");
}
