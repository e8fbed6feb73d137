//! The HTTP API over real HTTP: `api::router` served on 127.0.0.1:0, a fake driver task that
//! answers `ApiCall`s from a small in-memory table, reqwest as the client. Every response body
//! any test sees is checked for the token (see `Api::finish`).

// The fake driver returns `control::ApiError` as the real one does; its size (a `ServerInfo`
// inside `Conflict`) is control.rs's choice, not this file's.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conductor_core::Plan;
use conductor_live::api::{router, ApiState};
use conductor_live::control::{
    ApiCall, ApiError, Decision, FleetInfo, NodeInfo, QueueEntry, ServerInfo, StartOutcome, StopOutcome,
};
use conductor_live::metrics::Metrics;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

const TOKEN: &str = "tok-3f9a1c7e5b2d4068-secret";

/// Every route but /healthz, with a body the handler would accept.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::POST, "/v1/servers/mc-1/start", Some(json!({"ram_mb": 2048}))),
        (Method::POST, "/v1/servers/mc-1/stop", None),
        (Method::GET, "/v1/servers/mc-1", None),
        (Method::DELETE, "/v1/servers/mc-1", None),
        (Method::GET, "/v1/fleet", None),
        (Method::GET, "/v1/nodes", None),
        (Method::POST, "/v1/nodes", Some(json!({"node": "n9", "address": "10.0.0.9", "ram_mb": 65536}))),
        (Method::DELETE, "/v1/nodes/n1", None),
        (Method::POST, "/v1/nodes/n1/drain", None),
        (Method::GET, "/v1/queue", None),
        (Method::GET, "/v1/decisions", None),
        (Method::POST, "/v1/scaling/pause", None),
        (Method::POST, "/v1/scaling/resume", None),
        (Method::GET, "/v1/events", None),
        (Method::GET, "/metrics", None),
    ]
}

#[tokio::test]
async fn every_route_but_healthz_requires_the_token() {
    let api = Api::spawn().await;
    let wrong = "tok-wrong-0000000000000000";
    for (method, path, body) in routes() {
        for auth in [None, Some(format!("Bearer {wrong}")), Some(format!("Basic {TOKEN}")), Some("Bearer".into())] {
            let (status, headers, text) = api.call_raw(method.clone(), path, auth.as_deref(), body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {auth:?}: {text}");
            assert_eq!(headers["www-authenticate"], "Bearer");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], "unauthorized", "{text}");
            assert!(!text.contains(wrong), "the presented token was echoed: {text}");
        }
        // With the token the same request gets past auth.
        let (status, _, text) = api.call_raw(method.clone(), path, Some(&format!("Bearer {TOKEN}")), body).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {text}");
    }
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let api = Api::spawn().await;
    let (status, _, text) = api.call_raw(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({"status": "ok"}));
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_problem() {
    let api = Api::spawn().await;
    let (status, v) = api.raw_body(Method::POST, "/v1/servers/mc-1/start", "{\"ram_mb\": ", "application/json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "bad_request");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("JSON") && message.contains("EOF"), "{message}");
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_400_naming_the_field() {
    let api = Api::spawn().await;
    for (body, needle) in [
        (json!({"ram_mb": "lots"}), "invalid type"),
        (json!({"ram_mb": 1024, "colour": "red"}), "unknown field `colour`"),
        (json!({"plan": "balanced"}), "missing field `ram_mb`"),
        (json!({"ram_mb": 1024, "plan": "gold"}), "unknown variant `gold`"),
    ] {
        let (status, v) = api.json(Method::POST, "/v1/servers/mc-1/start", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, v) = api.json(Method::POST, "/v1/nodes", Some(json!({"node": "n9", "ram_mb": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("missing field `address`"), "{v}");
}

#[tokio::test]
async fn a_body_without_json_content_type_is_415() {
    let api = Api::spawn().await;
    let (status, v) = api.raw_body(Method::POST, "/v1/servers/mc-1/start", "{\"ram_mb\": 1024}", "text/plain").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(v["error"]["code"], "unsupported_media_type");
    assert!(v["error"]["message"].as_str().unwrap().contains("application/json"));
}

#[tokio::test]
async fn bad_ids_are_400() {
    let api = Api::spawn().await;
    let long = "x".repeat(64);
    for (method, path) in [
        (Method::GET, "/v1/servers/MC-1".to_string()),
        (Method::GET, "/v1/servers/-a".to_string()),
        (Method::GET, "/v1/servers/a%20b".to_string()),
        (Method::DELETE, "/v1/servers/a;rm".to_string()),
        (Method::GET, format!("/v1/servers/{long}")),
        (Method::POST, "/v1/servers/a.b/stop".to_string()),
        (Method::POST, "/v1/nodes/N_1/drain".to_string()),
    ] {
        let (status, v) = api.json(method, &path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("invalid id") && message.contains("a-z"), "{path}: {message}");
        assert!(!message.contains(&long), "the id is echoed: {message}");
    }
    let (status, v) =
        api.json(Method::POST, "/v1/nodes", Some(json!({"node": "Bad Node", "address": "h", "ram_mb": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("field `node`"), "{v}");
}

#[tokio::test]
async fn unknown_server_is_404() {
    let api = Api::spawn().await;
    for method in [Method::GET, Method::DELETE] {
        let (status, v) = api.json(method, "/v1/servers/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v["error"]["code"], "not_found");
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"), "{v}");
    }
    let (status, _) = api.json(Method::POST, "/v1/servers/nope/stop", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_both_json() {
    let api = Api::spawn().await;
    let (status, v) = api.json(Method::GET, "/v2/anything", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
    let (status, v) = api.json(Method::PUT, "/v1/fleet", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let api = Api::spawn().await;
    let big = format!("{{\"ram_mb\": 1024, \"user\": \"{}\"}}", "u".repeat(70 * 1024));
    let (status, v) = api.raw_body(Method::POST, "/v1/servers/mc-1/start", &big, "application/json").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"]["code"], "payload_too_large");
    // Just under the limit is read and parsed.
    let fits = format!("{{\"ram_mb\": 1024, \"user\": \"{}\"}}", "u".repeat(60 * 1024));
    let (status, v) = api.raw_body(Method::POST, "/v1/servers/mc-1/start", &fits, "application/json").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
}

#[tokio::test]
async fn start_twice_is_409_with_the_servers_state() {
    let api = Api::spawn().await;
    let (status, v) = api.json(Method::POST, "/v1/servers/mc-1/start", Some(json!({"ram_mb": 2048}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(v, json!({"server": "mc-1", "state": "started", "node": "n1"}));
    let (status, v) =
        api.json(Method::POST, "/v1/servers/mc-1/start", Some(json!({"ram_mb": 2048, "plan": "balanced"}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "conflict");
    assert_eq!(v["server"]["server"], "mc-1");
    assert_eq!(v["server"]["state"], "running");
    assert_eq!(v["server"]["node"], "n1");
}

#[tokio::test]
async fn a_start_that_does_not_fit_is_queued_with_its_position() {
    let api = Api::spawn().await;
    api.json(Method::POST, "/v1/servers/mc-1/start", Some(json!({"ram_mb": 2048}))).await;
    for (server, position) in [("mc-2", 1), ("mc-3", 2)] {
        let (status, v) =
            api.json(Method::POST, &format!("/v1/servers/{server}/start"), Some(json!({"ram_mb": 4096}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(v, json!({"server": server, "state": "queued", "position": position}));
    }
    let (status, v) = api.json(Method::GET, "/v1/queue", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["server"], "mc-3");
    let (status, v) = api.json(Method::GET, "/v1/servers/mc-3", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["state"], "queued");
    assert_eq!(v["position"], 2);
    // Stopping a queued server cancels it; a stopped server can be deleted.
    let (status, v) = api.json(Method::POST, "/v1/servers/mc-3/stop", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(v, json!({"server": "mc-3", "state": "cancelled"}));
    let (status, text) = api.text(Method::DELETE, "/v1/servers/mc-3").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(text, "");
    let (status, v) = api.json(Method::DELETE, "/v1/servers/mc-1", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a running server cannot be deleted: {v}");
}

#[tokio::test]
async fn read_routes_return_the_drivers_answers() {
    let api = Api::spawn().await;
    let (status, v) = api.json(Method::GET, "/v1/fleet", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["nodes"], 1);
    assert_eq!(v["scaling_enabled"], true);
    let (status, v) = api.json(Method::GET, "/v1/nodes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v[0]["node"], "n1");
    let (status, v) = api.json(Method::GET, "/v1/decisions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v[0]["kind"], "boot");
}

#[tokio::test]
async fn operator_routes() {
    let api = Api::spawn().await;
    let node = json!({"node": "n2", "address": "10.0.0.2", "ram_mb": 65536, "system": false, "ports": "25565-25664"});
    let (status, v) = api.json(Method::POST, "/v1/nodes", Some(node)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(v["node"], "n2");
    assert_eq!(v["kind"], "dedicated");
    let (status, v) = api.json(Method::POST, "/v1/nodes/n2/drain", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(v, json!({"node": "n2", "lifecycle": "draining"}));
    let (status, _) = api.text(Method::DELETE, "/v1/nodes/n2").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, v) = api.json(Method::DELETE, "/v1/nodes/n2", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = api.json(Method::POST, "/v1/scaling/pause", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(v, json!({"scaling_enabled": false}));
    let (_, v) = api.json(Method::GET, "/v1/fleet", None).await;
    assert_eq!(v["scaling_enabled"], false);
    let (status, v) = api.json(Method::POST, "/v1/scaling/resume", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(v, json!({"scaling_enabled": true}));
}

#[tokio::test]
async fn driver_errors_map_to_status_codes() {
    let api = Api::spawn().await;
    // The fake driver rejects ram_mb 0 as the engine would.
    let (status, v) = api.json(Method::POST, "/v1/servers/mc-1/start", Some(json!({"ram_mb": 0}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v, json!({"error": {"code": "bad_request", "message": "ram_mb must be positive"}}));
    // "shutdown" is the fake's name for a server whose calls the driver answers with Unavailable.
    let (status, v) = api.json(Method::GET, "/v1/servers/shutdown", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "unavailable");
}

#[tokio::test]
async fn a_missing_driver_is_503() {
    let api = Api::spawn_with(drop).await;
    let (status, v) = api.json(Method::GET, "/v1/fleet", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "unavailable");
    // A driver that takes the call but drops its answer.
    let api = Api::spawn_with(|mut calls| {
        tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                drop(call);
            }
        });
    })
    .await;
    let (status, v) = api.json(Method::GET, "/v1/servers/mc-1", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["error"]["message"].as_str().unwrap().contains("dropped"), "{v}");
}

#[tokio::test]
async fn events_stream_delivers_a_broadcast_event() {
    let api = Api::spawn().await;
    let mut response = api.client.get(format!("{}/v1/events", api.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // The handler subscribed before the headers went out, so this event reaches it.
    api.events.send(r#"{"kind":"server_started","server":"mc-1"}"#.to_string()).unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("no event within 10 s");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("stream ended")));
    }
    assert_eq!(seen, "event: engine\ndata: {\"kind\":\"server_started\",\"server\":\"mc-1\"}\n\n");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_families() {
    let api = Api::spawn().await;
    api.metrics.set_fleet(65536, 60000, 2048);
    api.metrics.set_nodes(&[("dedicated", "active", 1)]);
    api.metrics.inc_scaling_action("up", "headroom");
    api.json(Method::GET, "/v1/fleet", None).await;
    let response = api.client.get(format!("{}/metrics", api.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    for needle in [
        "# TYPE conductor_fleet_ram_bytes gauge",
        r#"conductor_nodes{kind="dedicated",state="active"} 1"#,
        "# TYPE conductor_queue_wait_seconds histogram",
        "# TYPE conductor_scaling_actions_total counter",
        "# TYPE conductor_adapter_errors_total counter",
        r#"conductor_http_requests_total{route="fleet",status="200"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains(TOKEN));
    let response = api
        .client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(TOKEN)
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(response.text().await.unwrap().ends_with("# EOF\n"));
}

// ---- Harness ------------------------------------------------------------------------------

struct Api {
    base: String,
    client: reqwest::Client,
    events: broadcast::Sender<String>,
    metrics: Arc<Metrics>,
}

impl Api {
    async fn spawn() -> Api {
        Api::spawn_with(|calls| {
            tokio::spawn(fake_driver(calls));
        })
        .await
    }

    /// Serves the router on an ephemeral port; `driver` gets the receiving end of the call channel.
    async fn spawn_with(driver: impl FnOnce(mpsc::Receiver<ApiCall>)) -> Api {
        let (calls, receiver) = mpsc::channel(16);
        driver(receiver);
        let (events, _) = broadcast::channel(16);
        let metrics = Arc::new(Metrics::new());
        let state =
            ApiState { calls, events: events.clone(), metrics: metrics.clone(), token: Arc::new(TOKEN.to_string()) };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        Api { base, client: reqwest::Client::new(), events, metrics }
    }

    /// One request; checks that the body never contains the token and that every non-empty
    /// error body is JSON.
    async fn call_raw(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        self.finish(&method, path, response).await
    }

    async fn finish(
        &self,
        method: &Method,
        path: &str,
        response: reqwest::Response,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let status = response.status();
        let headers = response.headers().clone();
        // The event stream never ends; its body is not read here.
        let text = if path == "/v1/events" && status == StatusCode::OK {
            String::new()
        } else {
            response.text().await.unwrap()
        };
        assert!(!text.contains(TOKEN), "{method} {path}: the token is in the response: {text}");
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(headers["content-type"], "application/json", "{method} {path}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{text}");
        }
        (status, headers, text)
    }

    /// An authorized request with an optional JSON body; the answer parsed as JSON (Null when empty).
    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, text) = self.call_raw(method, path, Some(&format!("Bearer {TOKEN}")), body).await;
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, v)
    }

    async fn text(&self, method: Method, path: &str) -> (StatusCode, String) {
        let (status, _, text) = self.call_raw(method, path, Some(&format!("Bearer {TOKEN}")), None).await;
        (status, text)
    }

    /// An authorized request with a body sent verbatim under the given content type.
    async fn raw_body(&self, method: Method, path: &str, body: &str, content_type: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let (status, _, text) = self.finish(&method, path, response).await;
        (status, serde_json::from_str(&text).unwrap())
    }
}

// ---- Fake driver ----------------------------------------------------------------------------

/// Answers calls from an in-memory table: one node `n1` with room for one server; later starts queue.
async fn fake_driver(mut calls: mpsc::Receiver<ApiCall>) {
    let mut fake = Fake::default();
    while let Some(call) = calls.recv().await {
        fake.answer(call);
    }
}

#[derive(Default)]
struct Fake {
    servers: BTreeMap<String, ServerInfo>,
    queue: Vec<String>,
    extra_nodes: Vec<NodeInfo>,
    scaling_paused: bool,
}

impl Fake {
    fn answer(&mut self, call: ApiCall) {
        // A send fails only when the handler gave up; nothing to do then.
        match call {
            ApiCall::Start { server, body, answer } => {
                let _ = answer.send(self.start(server, body.ram_mb, body.plan));
            }
            ApiCall::Stop { server, answer } => {
                let _ = answer.send(self.stop(&server));
            }
            ApiCall::Server { server, answer } => {
                let _ = answer.send(self.server(&server));
            }
            ApiCall::Delete { server, answer } => {
                let result = self.server(&server).and_then(|info| match info.state.as_str() {
                    "stopped" => {
                        self.servers.remove(&server);
                        Ok(())
                    }
                    _ => Err(ApiError::Conflict { message: format!("{server} is {}", info.state), server: Some(info) }),
                });
                let _ = answer.send(result);
            }
            ApiCall::Fleet { answer } => {
                let _ = answer.send(Ok(FleetInfo {
                    nodes: 1 + self.extra_nodes.len(),
                    healthy_nodes: 1,
                    total_ram_mb: 8192,
                    usable_ram_mb: 6144,
                    allocated_ram_mb: 2048 * self.running() as u64,
                    queue_length: self.queue.len(),
                    running_servers: self.running(),
                    scaling_enabled: !self.scaling_paused,
                }));
            }
            ApiCall::Nodes { answer } => {
                let mut nodes = vec![node("n1", "local")];
                nodes.extend(self.extra_nodes.iter().cloned());
                let _ = answer.send(Ok(nodes));
            }
            ApiCall::Queue { answer } => {
                let entries = self
                    .queue
                    .iter()
                    .enumerate()
                    .map(|(i, s)| QueueEntry {
                        server: s.clone(),
                        position: i + 1,
                        ram_mb: self.servers[s].ram_mb,
                        plan: self.servers[s].plan,
                        waited_s: 0,
                    })
                    .collect();
                let _ = answer.send(Ok(entries));
            }
            ApiCall::Decisions { answer } => {
                let _ = answer.send(Ok(vec![Decision { at_ms: 0, kind: "boot".into(), detail: "1 node".into() }]));
            }
            ApiCall::AddNode { node: new, answer } => {
                let info = node(&new.node, &new.address);
                self.extra_nodes.push(info.clone());
                let _ = answer.send(Ok(info));
            }
            ApiCall::RemoveNode { node, answer } => {
                let before = self.extra_nodes.len();
                self.extra_nodes.retain(|n| n.node != node);
                let found = self.extra_nodes.len() < before;
                let _ = answer.send(if found { Ok(()) } else { Err(ApiError::NotFound(format!("no node {node}"))) });
            }
            ApiCall::DrainNode { node, answer } => {
                let found = node == "n1" || self.extra_nodes.iter().any(|n| n.node == node);
                let _ = answer.send(if found { Ok(()) } else { Err(ApiError::NotFound(format!("no node {node}"))) });
            }
            ApiCall::SetScaling { enabled, answer } => {
                self.scaling_paused = !enabled;
                let _ = answer.send(Ok(()));
            }
        }
    }

    fn running(&self) -> usize {
        self.servers.values().filter(|s| s.state == "running").count()
    }

    fn start(&mut self, server: String, ram_mb: u32, plan: Plan) -> Result<StartOutcome, ApiError> {
        if ram_mb == 0 {
            return Err(ApiError::BadRequest("ram_mb must be positive".into()));
        }
        if let Some(info) = self.servers.get(&server).filter(|s| s.state != "stopped") {
            return Err(ApiError::Conflict {
                message: format!("{server} is already {}", info.state),
                server: Some(info.clone()),
            });
        }
        let mut info = ServerInfo {
            server: server.clone(),
            state: "running".into(),
            ram_mb,
            plan,
            node: None,
            position: None,
            join_address: None,
            players: None,
        };
        let outcome = if self.running() == 0 {
            info.node = Some("n1".into());
            info.join_address = Some("127.0.0.1:25565".into());
            StartOutcome { server: server.clone(), state: "started".into(), node: Some("n1".into()), position: None }
        } else {
            self.queue.push(server.clone());
            info.state = "queued".into();
            info.position = Some(self.queue.len());
            StartOutcome { server: server.clone(), state: "queued".into(), node: None, position: info.position }
        };
        self.servers.insert(server, info);
        Ok(outcome)
    }

    fn stop(&mut self, server: &str) -> Result<StopOutcome, ApiError> {
        let info = self.servers.get_mut(server).ok_or_else(|| ApiError::NotFound(format!("no server {server}")))?;
        let state = match info.state.as_str() {
            "queued" => {
                self.queue.retain(|s| s != server);
                "cancelled"
            }
            "stopping" => "already_stopping",
            _ => "stopping",
        };
        info.state = if state == "cancelled" { "stopped".into() } else { "stopping".into() };
        info.position = None;
        Ok(StopOutcome { server: server.to_string(), state: state.into() })
    }

    fn server(&self, server: &str) -> Result<ServerInfo, ApiError> {
        if server == "shutdown" {
            return Err(ApiError::Unavailable("the driver is shutting down".into()));
        }
        self.servers.get(server).cloned().ok_or_else(|| ApiError::NotFound(format!("no server {server}")))
    }
}

fn node(name: &str, address: &str) -> NodeInfo {
    NodeInfo {
        node: name.into(),
        kind: "dedicated".into(),
        system: false,
        address: address.into(),
        health: "healthy".into(),
        lifecycle: "active".into(),
        ram_mb: 8192,
        usable_mb: 6144,
        allocated_mb: 0,
        containers: 0,
    }
}
