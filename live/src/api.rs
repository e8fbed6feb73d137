//! The HTTP API. Handlers never touch the engine: each one sends an [`ApiCall`] to the driver
//! task over a bounded channel and awaits its oneshot answer (see `control.rs`). The API adds
//! only what belongs at the HTTP boundary: bearer-token auth, path-id and body validation, the
//! mapping of errors to status codes, the event stream and the metrics exposition.
//!
//! Every response is JSON except `GET /metrics` (Prometheus text), `GET /v1/events`
//! (Server-Sent Events) and the empty 204s. Every error, including the ones axum and
//! tower-http produce themselves (404, 405, 413), has the body
//! `{"error": {"code": "...", "message": "..."}}`. The routes are documented in `docs/api.md`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;
use tower_http::limit::RequestBodyLimitLayer;

use crate::config::PortRange;
use crate::control::{valid_host, valid_name, Answer, ApiCall, ApiError, NewNode, ServerInfo, StartBody};
use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};

/// Largest request body accepted; larger ones get 413.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// A body announced larger than [`BODY_BYTES_MAX`] but at most this is read and thrown
/// away (for at most [`DRAIN_TIMEOUT`]) before the 413, so that the client, still
/// sending, gets the answer instead of a reset connection. Larger ones are cut off.
const DRAIN_BYTES_MAX: usize = 2 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a handler waits for the driver to take its call and answer it before giving up with 503.
pub const DRIVER_ANSWER_MS_MAX: u64 = 10_000;

/// What every handler shares. Cloning is cheap (channel handles and `Arc`s).
#[derive(Clone)]
pub struct ApiState {
    /// Calls to the driver task, which owns the engine.
    pub calls: mpsc::Sender<ApiCall>,
    /// Engine events as JSON lines, published by the driver; `GET /v1/events` subscribes.
    pub events: broadcast::Sender<String>,
    pub metrics: Arc<Metrics>,
    /// The bearer token every route but `/healthz` requires. An empty token admits no one.
    pub token: Arc<String>,
}

/// All routes, with auth, the body limit, JSON errors and request counting applied.
pub fn router(state: ApiState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/v1/servers/{id}", get(get_server).delete(delete_server))
        .route("/v1/servers/{id}/start", post(start_server))
        .route("/v1/servers/{id}/stop", post(stop_server))
        .route("/v1/fleet", get(fleet))
        .route("/v1/nodes", get(nodes).post(add_node))
        .route("/v1/nodes/{id}", delete(remove_node))
        .route("/v1/nodes/{id}/drain", post(drain_node))
        .route("/v1/queue", get(queue))
        .route("/v1/decisions", get(decisions))
        .route("/v1/scaling/pause", post(pause_scaling))
        .route("/v1/scaling/resume", post(resume_scaling))
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics_exposition))
        // Applies to the routes above only: /healthz, added below, stays open for probes.
        .route_layer(middleware::from_fn_with_state(state.token.clone(), require_token))
        .route("/healthz", get(healthz))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(BODY_BYTES_MAX))
        .layer(middleware::from_fn(drain_oversized))
        // Outermost, so it also sees the 413s the limit layer answers itself.
        .layer(middleware::from_fn_with_state(metrics, count_and_jsonify))
}

// ---- Handlers -------------------------------------------------------------------------

async fn start_server(
    State(state): State<ApiState>,
    Id(server): Id,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, Failure> {
    let outcome = ask(&state.calls, |answer| ApiCall::Start { server, body, answer }).await?;
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

async fn stop_server(State(state): State<ApiState>, Id(server): Id) -> Result<Response, Failure> {
    let outcome = ask(&state.calls, |answer| ApiCall::Stop { server, answer }).await?;
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

async fn get_server(State(state): State<ApiState>, Id(server): Id) -> Result<Response, Failure> {
    let info = ask(&state.calls, |answer| ApiCall::Server { server, answer }).await?;
    Ok(Json(info).into_response())
}

async fn delete_server(State(state): State<ApiState>, Id(server): Id) -> Result<StatusCode, Failure> {
    ask(&state.calls, |answer| ApiCall::Delete { server, answer }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn fleet(State(state): State<ApiState>) -> Result<Response, Failure> {
    Ok(Json(ask(&state.calls, |answer| ApiCall::Fleet { answer }).await?).into_response())
}

async fn nodes(State(state): State<ApiState>) -> Result<Response, Failure> {
    Ok(Json(ask(&state.calls, |answer| ApiCall::Nodes { answer }).await?).into_response())
}

async fn queue(State(state): State<ApiState>) -> Result<Response, Failure> {
    Ok(Json(ask(&state.calls, |answer| ApiCall::Queue { answer }).await?).into_response())
}

async fn decisions(State(state): State<ApiState>) -> Result<Response, Failure> {
    Ok(Json(ask(&state.calls, |answer| ApiCall::Decisions { answer }).await?).into_response())
}

async fn add_node(State(state): State<ApiState>, JsonBody(node): JsonBody<NewNode>) -> Result<Response, Failure> {
    // The name becomes part of container labels and log lines; check it here like a path id.
    if !valid_name(&node.node) {
        return Err(Failure::bad_request(format!("field `node`: {NAME_RULE}")));
    }
    // The address becomes an ssh destination: refused here already, before the driver sees it.
    if !valid_host(&node.address) {
        return Err(Failure::bad_request(
            "field `address`: must be `local` or a host name or IP address (A-Z, a-z, 0-9, '.', '-', ':')",
        ));
    }
    if node.ram_mb == 0 {
        return Err(Failure::bad_request("field `ram_mb`: must be above 0"));
    }
    if let Some(ports) = &node.ports {
        PortRange::parse(ports).map_err(|e| Failure::bad_request(format!("field `ports`: {e}")))?;
    }
    let info = ask(&state.calls, |answer| ApiCall::AddNode { node, answer }).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn remove_node(State(state): State<ApiState>, Id(node): Id) -> Result<StatusCode, Failure> {
    ask(&state.calls, |answer| ApiCall::RemoveNode { node, answer }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn drain_node(State(state): State<ApiState>, Id(node): Id) -> Result<Response, Failure> {
    let name = node.clone();
    ask(&state.calls, |answer| ApiCall::DrainNode { node, answer }).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "node": name, "lifecycle": "draining" }))).into_response())
}

async fn pause_scaling(State(state): State<ApiState>) -> Result<Response, Failure> {
    set_scaling(&state, false).await
}

async fn resume_scaling(State(state): State<ApiState>) -> Result<Response, Failure> {
    set_scaling(&state, true).await
}

async fn set_scaling(state: &ApiState, enabled: bool) -> Result<Response, Failure> {
    ask(&state.calls, |answer| ApiCall::SetScaling { enabled, answer }).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "scaling_enabled": enabled }))).into_response())
}

/// Subscribes to the driver's broadcast channel. The driver's `send` never waits for a
/// subscriber; a subscriber that falls more than the channel's capacity behind skips the
/// events it missed and gets an SSE comment saying how many.
async fn events(State(state): State<ApiState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(engine_events(state.events.subscribe())).keep_alive(KeepAlive::default())
}

/// OpenMetrics when the scraper asks for it (Prometheus does), otherwise the 0.0.4 text
/// format, which every other tool (curl, promtool) reads.
async fn metrics_exposition(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("application/openmetrics-text") {
        ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], state.metrics.encode()).into_response()
    } else {
        ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], state.metrics.encode_text()).into_response()
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn no_route(method: Method, uri: axum::http::Uri) -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "not_found", format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} not allowed on {}", uri.path()),
    )
}

// ---- Driver calls ---------------------------------------------------------------------

/// Sends one call to the driver and waits for its answer, at most `DRIVER_ANSWER_MS_MAX` in all
/// (a full channel counts against the same budget). A closed channel or a dropped answer
/// means the driver is gone or shutting down: 503.
async fn ask<T>(calls: &mpsc::Sender<ApiCall>, call: impl FnOnce(Answer<T>) -> ApiCall) -> Result<T, Failure> {
    let (answer, answered) = oneshot::channel();
    let exchange = async {
        if calls.send(call(answer)).await.is_err() {
            return Err(Failure::unavailable("the driver is not running"));
        }
        match answered.await {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => Err(Failure::unavailable("the driver dropped the request")),
        }
    };
    match tokio::time::timeout(Duration::from_millis(DRIVER_ANSWER_MS_MAX), exchange).await {
        Ok(result) => result,
        Err(_) => Err(Failure::unavailable(format!("the driver did not answer within {DRIVER_ANSWER_MS_MAX} ms"))),
    }
}

// ---- Extractors -----------------------------------------------------------------------

const NAME_RULE: &str = "must be 1 to 63 characters of a-z, 0-9 and '-', not starting or ending with '-'";

/// The `{id}` path segment, checked with [`valid_name`] before any handler sees it.
struct Id(String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Id, Failure> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Failure::bad_request(format!("invalid id in path: {}", e.body_text())))?;
        // The id is not echoed back: it may be anything up to the URI length limit.
        if !valid_name(&id) {
            return Err(Failure::bad_request(format!("invalid id in path: an id {NAME_RULE}")));
        }
        Ok(Id(id))
    }
}

/// `axum::Json` with JSON rejections: 400 for malformed JSON, wrong types and unknown fields
/// (axum says 422 for the last two), 415 for a missing content type, 413 for a body over the limit.
struct JsonBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<JsonBody<T>, Failure> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(Failure::from_json(rejection)),
        }
    }
}

// ---- Auth, errors and counting ----------------------------------------------------------

/// Answers 413 to a body announced too large, after reading it (up to
/// [`DRAIN_BYTES_MAX`]): answering first and closing would reset the connection under a
/// client that is still sending, which then never sees the answer.
async fn drain_oversized(req: Request, next: Next) -> Response {
    let announced =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    match announced {
        Some(len) if len > BODY_BYTES_MAX => {
            if len <= DRAIN_BYTES_MAX {
                let body = req.into_body();
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, axum::body::to_bytes(body, DRAIN_BYTES_MAX)).await;
            }
            let mut response = StatusCode::PAYLOAD_TOO_LARGE.into_response();
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        _ => next.run(req).await,
    }
}

async fn require_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| bearer(v.as_bytes()));
    match presented {
        Some(presented) if !token.is_empty() && constant_time_eq(presented, token.as_bytes()) => next.run(req).await,
        // The presented token is never echoed, neither here nor in a log.
        _ => {
            let mut response = Failure::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token (expected `Authorization: Bearer <token>`)",
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
}

/// Equality that reads every presented byte whatever the outcome: its running time depends on
/// the presented length, never on how many leading bytes match.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &byte) in presented.iter().enumerate() {
        // Past the end of `expected` the length check above has already failed the comparison.
        diff |= byte ^ expected.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Counts the request by route and status, and turns any error response that is not JSON yet
/// (axum's and tower-http's own 413, 405, ...) into the JSON error object.
async fn count_and_jsonify(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = route_kind(req.method(), req.uri().path());
    let response = next.run(req).await;
    metrics.inc_requests(route, response.status().as_u16());
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body larger than {BODY_BYTES_MAX} bytes")
    } else {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let replacement = Failure::new(status, code_for(status), message).into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

/// A fixed name per route, for the `route` label: raw paths would make one series per id.
fn route_kind(method: &Method, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = method == Method::GET;
    match segments.as_slice() {
        ["healthz"] => "healthz",
        ["metrics"] => "metrics",
        ["v1", "servers", _] if get => "server_get",
        ["v1", "servers", _] => "server_delete",
        ["v1", "servers", _, "start"] => "server_start",
        ["v1", "servers", _, "stop"] => "server_stop",
        ["v1", "fleet"] => "fleet",
        ["v1", "nodes"] if get => "nodes_get",
        ["v1", "nodes"] => "node_add",
        ["v1", "nodes", _] => "node_remove",
        ["v1", "nodes", _, "drain"] => "node_drain",
        ["v1", "queue"] => "queue",
        ["v1", "decisions"] => "decisions",
        ["v1", "scaling", "pause"] => "scaling_pause",
        ["v1", "scaling", "resume"] => "scaling_resume",
        ["v1", "events"] => "events",
        _ => "unmatched",
    }
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// An error response: `{"error": {"code", "message"}}`, plus `"server"` on a 409 that knows the
/// server's current state.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    server: Option<ServerInfo>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
        Failure { status, code, message: message.into(), server: None }
    }

    fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn unavailable(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    fn from_json(rejection: JsonRejection) -> Failure {
        let status = match rejection {
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ref other => other.status(),
        };
        let message = match rejection {
            JsonRejection::MissingJsonContentType(_) => "expected `Content-Type: application/json`".to_string(),
            ref other => other.body_text(),
        };
        Failure::new(status, code_for(status), message)
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        let status = match e {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let code = e.code();
        let message = e.message().to_string();
        let server = match e {
            ApiError::Conflict { server, .. } => server,
            _ => None,
        };
        Failure { status, code, message, server }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(server) = self.server {
            body["server"] = json!(server);
        }
        (self.status, Json(body)).into_response()
    }
}

/// The SSE stream of one subscriber: each engine event as `event: engine`, a lag as a comment.
fn engine_events(events: broadcast::Receiver<String>) -> impl Stream<Item = Result<Event, Infallible>> {
    BroadcastStream::new(events).map(|item| {
        Ok(match item {
            Ok(line) => Event::default().event("engine").data(line),
            Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                Event::default().comment(format!("lagged: skipped {skipped} events"))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parses_the_scheme_case_insensitively() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for other in [&b""[..], b"secre", b"secret!", b"secreT", b"\x00ecret"] {
            assert!(!constant_time_eq(other, b"secret"), "{other:?}");
        }
    }

    #[test]
    fn route_kinds_are_fixed_names() {
        assert_eq!(route_kind(&Method::POST, "/v1/servers/mc-1/start"), "server_start");
        assert_eq!(route_kind(&Method::GET, "/v1/servers/mc-1"), "server_get");
        assert_eq!(route_kind(&Method::DELETE, "/v1/servers/mc-1"), "server_delete");
        assert_eq!(route_kind(&Method::POST, "/v1/nodes"), "node_add");
        assert_eq!(route_kind(&Method::GET, "/v1/servers/a/b/c"), "unmatched");
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_with_a_comment() {
        let (events, receiver) = broadcast::channel(2);
        for i in 0..5 {
            events.send(format!("{{\"n\":{i}}}")).unwrap();
        }
        drop(events);
        let body = Sse::new(engine_events(receiver)).into_response().into_body();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert_eq!(
            text,
            ": lagged: skipped 3 events\n\nevent: engine\ndata: {\"n\":3}\n\nevent: engine\ndata: {\"n\":4}\n\n"
        );
    }
}
