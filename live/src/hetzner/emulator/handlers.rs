//! HTTP layer of the emulator: routing, the rate-limit/auth gate and one handler per endpoint.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST, LINK};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::query::{
    fields_details, fields_message, matches, parse_selector, sort_items, valid_dns_name, validate_labels, FieldError,
    Page, Query,
};
use super::{rfc3339, ActionRec, Emulator, ServerRec, SshKeyRec, State as EmuState};

/// Maximum `user_data` size accepted by POST /servers.
const MAX_USER_DATA: usize = 32 * 1024;

/// The emulator's routes under `/v1`, behind the rate-limit and authentication gate.
pub fn router(state: Emulator) -> Router {
    Router::new()
        .route("/v1/server_types", get(list_server_types))
        .route("/v1/server_types/{id}", get(get_server_type))
        .route("/v1/locations", get(list_locations))
        .route("/v1/locations/{id}", get(get_location))
        .route("/v1/images", get(list_images))
        .route("/v1/images/{id}", get(get_image))
        .route("/v1/ssh_keys", get(list_ssh_keys).post(create_ssh_key))
        .route("/v1/ssh_keys/{id}", get(get_ssh_key).delete(delete_ssh_key))
        .route("/v1/servers", get(list_servers).post(create_server))
        .route("/v1/servers/actions", get(list_actions))
        .route("/v1/servers/actions/{id}", get(get_action))
        .route("/v1/servers/{id}", get(get_server).delete(delete_server))
        .route("/v1/servers/{id}/actions", get(list_server_actions))
        .route("/v1/servers/{id}/actions/{action_id}", get(get_server_action))
        .route("/v1/actions", get(list_actions))
        .route("/v1/actions/{id}", get(get_action))
        .route("/v1/pricing", get(get_pricing))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

// ----- responses -----

pub(crate) fn api_error(status: StatusCode, code: &str, message: impl Into<String>, details: Value) -> Response {
    let body = json!({"error": {"code": code, "message": message.into(), "details": details}});
    (status, Json(body)).into_response()
}

fn invalid_input(errors: &[FieldError]) -> Response {
    api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", fields_message(errors), fields_details(errors))
}

fn not_found(what: &str, id: &str) -> Response {
    api_error(StatusCode::NOT_FOUND, "not_found", format!("{what} with ID '{id}' not found"), json!({}))
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

async fn fallback(uri: Uri) -> Response {
    api_error(StatusCode::NOT_FOUND, "not_found", format!("no route for '{}'", uri.path()), json!({}))
}

/// A list response: filters are applied by the caller; this sorts, pages and adds `meta` and `Link`.
fn list_response(
    key: &str,
    mut items: Vec<Value>,
    q: &Query,
    sorts: &[&str],
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    if let Err(e) = sort_items(&mut items, &q.all("sort"), sorts) {
        return invalid_input(&[e]);
    }
    let page = match Page::from_query(q, items.len()) {
        Ok(p) => p,
        Err(e) => return invalid_input(&[e]),
    };
    let body = json!({key: page.slice(&items), "meta": page.meta()});
    let mut resp = ok(StatusCode::OK, body);
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let link_to = |n: u64| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in q.0.iter().filter(|(k, _)| k != "page") {
            ser.append_pair(k, v);
        }
        ser.append_pair("page", &n.to_string());
        format!("<http://{host}{}?{}>", uri.path(), ser.finish())
    };
    let mut links = Vec::new();
    if let Some(p) = page.previous() {
        links.push(format!("{}; rel=\"prev\"", link_to(p)));
    }
    if let Some(n) = page.next() {
        links.push(format!("{}; rel=\"next\"", link_to(n)));
    }
    links.push(format!("{}; rel=\"last\"", link_to(page.last_page)));
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        resp.headers_mut().insert(LINK, v);
    }
    resp
}

fn selector_filter(q: &Query) -> Result<Option<Vec<super::query::Term>>, FieldError> {
    match q.get("label_selector") {
        None | Some("") => Ok(None),
        Some(s) => parse_selector(s).map(Some).map_err(|m| FieldError::new("label_selector", m)),
    }
}

fn keep_by_selector(items: &mut Vec<Value>, terms: &Option<Vec<super::query::Term>>) {
    if let Some(terms) = terms {
        items.retain(|v| v["labels"].as_object().is_some_and(|l| matches(terms, l)));
    }
}

fn keep_by_name(items: &mut Vec<Value>, q: &Query) {
    if let Some(name) = q.get("name") {
        items.retain(|v| v["name"].as_str() == Some(name));
    }
}

/// The body as a JSON object, or the `json_error` message.
fn parse_body(body: &Bytes) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("request body must be a JSON object".to_string()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

fn json_error(message: String) -> Response {
    api_error(StatusCode::BAD_REQUEST, "json_error", message, json!({}))
}

fn parse_id(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

// ----- the gate: rate limit, authentication, injected request faults, bookkeeping -----

async fn gate(State(emu): State<Emulator>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let (rate, correlation, fault) = {
        let mut st = emu.lock();
        st.correlation += 1;
        let rate = emu.take_token(&mut st);
        let fault = if rate.allowed && authorized(&emu, req.headers()) {
            let fault = st.request_faults.iter_mut().find(|(n, _)| *n > 0).map(|(n, f)| {
                *n -= 1;
                f.clone()
            });
            st.request_faults.retain(|(n, _)| *n > 0);
            if fault.is_none() && !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
                st.mutating_calls += 1;
            }
            Some(fault)
        } else {
            None
        };
        (rate, st.correlation, fault)
    };
    let mut resp = if !rate.allowed {
        api_error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", "limit of requests per hour reached", json!({}))
    } else {
        match fault {
            None => api_error(StatusCode::UNAUTHORIZED, "unauthorized", "unable to authenticate", json!({})),
            Some(Some(f)) => {
                let (status, code, message) = f.parts();
                api_error(status, &code, message, json!({}))
            }
            Some(None) => next.run(req).await,
        }
    };
    let h = resp.headers_mut();
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("ratelimit-limit", rate.limit.to_string());
    put("ratelimit-remaining", rate.remaining.to_string());
    put("ratelimit-reset", rate.reset_unix.to_string());
    put("x-correlation-id", format!("emu-{correlation:016x}"));
    let status = resp.status().as_u16();
    emu.lock().requests.push(super::RequestRecord { method: method.to_string(), uri, status });
    resp
}

fn authorized(emu: &Emulator, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
    else {
        return false;
    };
    !token.is_empty() && emu.cfg.token.as_deref().is_none_or(|t| t == token)
}

// ----- JSON builders -----

impl Emulator {
    fn server_type_json(&self, st: &EmuState, idx: usize) -> Value {
        match self.cfg.server_types.get(idx) {
            Some(t) => t.to_json(self.cfg.vat_rate, &|loc| !Emulator::is_sold_out(st, &t.name, loc)),
            None => Value::Null,
        }
    }

    fn server_json(&self, st: &EmuState, s: &ServerRec) -> Value {
        let ipv4 = s.ipv4.map(|ip| {
            let o = ip.octets();
            json!({"id": s.id * 2, "ip": ip.to_string(), "blocked": false,
                   "dns_ptr": format!("static.{}.{}.{}.{}.clients.your-server.de", o[3], o[2], o[1], o[0])})
        });
        let ipv6 = s.ipv6.as_ref().map(|ip| json!({"id": s.id * 2 + 1, "ip": ip, "blocked": false, "dns_ptr": []}));
        let server_type = self.server_type_json(st, s.type_idx);
        let spec = self.cfg.server_types.get(s.type_idx);
        let location = self.locations.get(s.location_idx);
        let included_traffic =
            spec.zip(location).and_then(|(t, l)| t.price_in(l.name)).map(|p| p.included_traffic).unwrap_or(0);
        json!({
            "id": s.id, "name": s.name, "status": self.server_status(s), "created": rfc3339(s.created),
            "public_net": {"ipv4": ipv4, "ipv6": ipv6, "floating_ips": [], "firewalls": []},
            "private_net": [], "server_type": server_type,
            "location": location.map(|l| l.to_json()).unwrap_or(Value::Null),
            "image": self.images.get(s.image_idx).map(|i| i.to_json()).unwrap_or(Value::Null),
            "iso": null, "rescue_enabled": false, "locked": false, "backup_window": null,
            "outgoing_traffic": null, "ingoing_traffic": null, "included_traffic": included_traffic,
            "protection": {"delete": false, "rebuild": false}, "labels": s.labels,
            "volumes": [], "load_balancers": [], "primary_disk_size": spec.map(|t| t.disk_gb).unwrap_or(0),
            "placement_group": null,
        })
    }
}

fn action_json(a: &ActionRec) -> Value {
    let elapsed = a.born.elapsed();
    let done = elapsed >= a.duration;
    let (status, progress) = if done {
        (if a.error.is_some() { "error" } else { "success" }, 100)
    } else {
        ("running", (elapsed.as_millis() * 100 / a.duration.as_millis().max(1)).min(99) as u64)
    };
    let error = match (&a.error, done) {
        (Some((code, message)), true) => json!({"code": code, "message": message}),
        _ => Value::Null,
    };
    json!({
        "id": a.id, "command": a.command, "status": status, "progress": progress, "started": rfc3339(a.started),
        "finished": if done { Value::String(rfc3339(a.started + a.duration)) } else { Value::Null },
        "resources": [{"id": a.server_id, "type": "server"}], "error": error,
    })
}

fn ssh_key_json(k: &SshKeyRec) -> Value {
    json!({"id": k.id, "name": k.name, "fingerprint": k.fingerprint, "public_key": k.public_key,
           "labels": k.labels, "created": rfc3339(k.created)})
}

// ----- server types, locations, images, pricing -----

async fn list_server_types(State(emu): State<Emulator>, RawQuery(raw): RawQuery, uri: Uri, h: HeaderMap) -> Response {
    let q = Query::parse(raw.as_deref());
    let mut items: Vec<Value> = {
        let st = emu.lock();
        (0..emu.cfg.server_types.len()).map(|i| emu.server_type_json(&st, i)).collect()
    };
    keep_by_name(&mut items, &q);
    list_response("server_types", items, &q, &["id", "name"], &uri, &h)
}

async fn get_server_type(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    let idx = parse_id(&id).and_then(|id| emu.cfg.server_types.iter().position(|t| t.id == id));
    match idx {
        Some(i) => {
            let st = emu.lock();
            ok(StatusCode::OK, json!({"server_type": emu.server_type_json(&st, i)}))
        }
        None => not_found("server_type", &id),
    }
}

async fn list_locations(State(emu): State<Emulator>, RawQuery(raw): RawQuery, uri: Uri, h: HeaderMap) -> Response {
    let q = Query::parse(raw.as_deref());
    let mut items: Vec<Value> = emu.locations.iter().map(|l| l.to_json()).collect();
    keep_by_name(&mut items, &q);
    list_response("locations", items, &q, &["id", "name"], &uri, &h)
}

async fn get_location(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    match parse_id(&id).and_then(|id| emu.locations.iter().find(|l| l.id == id)) {
        Some(l) => ok(StatusCode::OK, json!({"location": l.to_json()})),
        None => not_found("location", &id),
    }
}

async fn list_images(State(emu): State<Emulator>, RawQuery(raw): RawQuery, uri: Uri, h: HeaderMap) -> Response {
    let q = Query::parse(raw.as_deref());
    let terms = match selector_filter(&q) {
        Ok(t) => t,
        Err(e) => return invalid_input(&[e]),
    };
    let mut items: Vec<Value> = emu.images.iter().map(|i| i.to_json()).collect();
    keep_by_name(&mut items, &q);
    keep_by_selector(&mut items, &terms);
    for key in ["type", "status"] {
        let wanted = q.all(key);
        if !wanted.is_empty() {
            items.retain(|v| v[key].as_str().is_some_and(|x| wanted.contains(&x)));
        }
    }
    if let Some(arch) = q.get("architecture") {
        items.retain(|v| v["architecture"].as_str() == Some(arch));
    }
    list_response("images", items, &q, &["id", "name", "created"], &uri, &h)
}

async fn get_image(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    match parse_id(&id).and_then(|id| emu.images.iter().find(|i| i.id == id)) {
        Some(i) => ok(StatusCode::OK, json!({"image": i.to_json()})),
        None => not_found("image", &id),
    }
}

async fn get_pricing(State(emu): State<Emulator>) -> Response {
    let vat = emu.cfg.vat_rate;
    let types: Vec<Value> = emu
        .cfg
        .server_types
        .iter()
        .map(|t| {
            let v = t.to_json(vat, &|_| true);
            json!({"id": t.id, "name": t.name, "prices": v["prices"]})
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({"pricing": {
            "currency": "EUR", "vat_rate": format!("{:.6}", vat * 100.0),
            "image": {"price_per_gb_month": super::price_json(0.011, vat)},
            "server_backup": {"percentage": "20.0000000000"},
            "server_types": types,
        }}),
    )
}

// ----- SSH keys -----

async fn list_ssh_keys(State(emu): State<Emulator>, RawQuery(raw): RawQuery, uri: Uri, h: HeaderMap) -> Response {
    let q = Query::parse(raw.as_deref());
    let terms = match selector_filter(&q) {
        Ok(t) => t,
        Err(e) => return invalid_input(&[e]),
    };
    let mut items: Vec<Value> = emu.lock().ssh_keys.values().map(ssh_key_json).collect();
    keep_by_name(&mut items, &q);
    keep_by_selector(&mut items, &terms);
    if let Some(fp) = q.get("fingerprint") {
        items.retain(|v| v["fingerprint"].as_str() == Some(fp));
    }
    list_response("ssh_keys", items, &q, &["id", "name"], &uri, &h)
}

/// MD5 fingerprint of an OpenSSH public key line, hex with colons.
fn fingerprint(public_key: &str) -> Option<String> {
    let blob = public_key.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(blob).ok()?;
    let digest = Md5::digest(&bytes);
    Some(digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

async fn create_ssh_key(State(emu): State<Emulator>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(m) => return json_error(m),
    };
    let mut errors = Vec::new();
    let name = body["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        errors.push(FieldError::new("name", "is required"));
    }
    let public_key = body["public_key"].as_str().unwrap_or_default().trim().to_string();
    let fp = fingerprint(&public_key);
    if fp.is_none() {
        errors.push(FieldError::new("public_key", "is invalid"));
    }
    let labels = match body.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => validate_labels(v, &mut errors),
    };
    if !errors.is_empty() {
        return invalid_input(&errors);
    }
    let mut st = emu.lock();
    let fp = fp.unwrap_or_default();
    for (field, taken) in [
        ("name", st.ssh_keys.values().any(|k| k.name == name)),
        ("public_key", st.ssh_keys.values().any(|k| k.fingerprint == fp)),
    ] {
        if taken {
            return api_error(
                StatusCode::CONFLICT,
                "uniqueness_error",
                format!("SSH key with the same {field} already exists"),
                json!({"fields": [{"name": field}]}),
            );
        }
    }
    st.next_id += 1;
    let key = SshKeyRec {
        id: st.next_id,
        name,
        fingerprint: fp,
        public_key,
        labels: labels.into_iter().collect(),
        created: SystemTime::now(),
    };
    let body = json!({"ssh_key": ssh_key_json(&key)});
    st.ssh_keys.insert(key.id, key);
    ok(StatusCode::CREATED, body)
}

async fn get_ssh_key(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    let st = emu.lock();
    match parse_id(&id).and_then(|id| st.ssh_keys.get(&id)) {
        Some(k) => ok(StatusCode::OK, json!({"ssh_key": ssh_key_json(k)})),
        None => not_found("ssh_key", &id),
    }
}

async fn delete_ssh_key(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    let mut st = emu.lock();
    match parse_id(&id).and_then(|id| st.ssh_keys.remove(&id)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found("ssh_key", &id),
    }
}

// ----- servers -----

async fn list_servers(State(emu): State<Emulator>, RawQuery(raw): RawQuery, uri: Uri, h: HeaderMap) -> Response {
    let q = Query::parse(raw.as_deref());
    let terms = match selector_filter(&q) {
        Ok(t) => t,
        Err(e) => return invalid_input(&[e]),
    };
    let mut items: Vec<Value> = {
        let st = emu.lock();
        st.servers.values().map(|s| emu.server_json(&st, s)).collect()
    };
    keep_by_name(&mut items, &q);
    keep_by_selector(&mut items, &terms);
    let statuses = q.all("status");
    if !statuses.is_empty() {
        items.retain(|v| v["status"].as_str().is_some_and(|s| statuses.contains(&s)));
    }
    list_response("servers", items, &q, &["id", "name", "created"], &uri, &h)
}

async fn get_server(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    let st = emu.lock();
    match parse_id(&id).and_then(|id| st.servers.get(&id)) {
        Some(s) => ok(StatusCode::OK, json!({"server": emu.server_json(&st, s)})),
        None => not_found("server", &id),
    }
}

/// A reference to a resource by ID (integer or digit string) or by name.
enum Ref {
    Id(i64),
    Name(String),
}

fn id_or_name(v: Option<&Value>, field: &str, required: bool, errors: &mut Vec<FieldError>) -> Option<Ref> {
    match v {
        None | Some(Value::Null) => {
            if required {
                errors.push(FieldError::new(field, "is required"));
            }
            None
        }
        Some(Value::Number(n)) => match n.as_i64() {
            Some(id) => Some(Ref::Id(id)),
            None => {
                errors.push(FieldError::new(field, "is invalid"));
                None
            }
        },
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => match s.parse() {
            Ok(id) => Some(Ref::Id(id)),
            Err(_) => {
                errors.push(FieldError::new(field, "is invalid"));
                None
            }
        },
        Some(Value::String(s)) if !s.is_empty() => Some(Ref::Name(s.clone())),
        Some(_) => {
            errors.push(FieldError::new(field, "must be an ID or a name"));
            None
        }
    }
}

fn non_empty_list(body: &Value, field: &str, errors: &mut Vec<FieldError>) {
    match body.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::Array(_)) => errors.push(FieldError::new(field, "references a resource that does not exist")),
        Some(_) => errors.push(FieldError::new(field, "must be a list")),
    }
}

fn allocate_ipv4(st: &EmuState, start: Ipv4Addr) -> Option<Ipv4Addr> {
    let used: HashSet<Ipv4Addr> = st.servers.values().filter_map(|s| s.ipv4).collect();
    let base = u32::from(start);
    (0..(1u32 << 20))
        .filter_map(|i| base.checked_add(i))
        .map(Ipv4Addr::from)
        .filter(|ip| !matches!(ip.octets()[3], 0 | 255))
        .find(|ip| !used.contains(ip))
}

async fn create_server(State(emu): State<Emulator>, body: Bytes) -> Response {
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(m) => return json_error(m),
    };
    let types = &emu.cfg.server_types;
    let mut errors = Vec::new();

    let name = match body.get("name") {
        Some(Value::String(s)) => {
            if !valid_dns_name(s) {
                errors.push(FieldError::new("name", "is invalid"));
            }
            s.clone()
        }
        None | Some(Value::Null) => {
            errors.push(FieldError::new("name", "is required"));
            String::new()
        }
        Some(_) => {
            errors.push(FieldError::new("name", "must be a string"));
            String::new()
        }
    };

    let type_idx = id_or_name(body.get("server_type"), "server_type", true, &mut errors).and_then(|r| {
        let found = match &r {
            Ref::Id(id) => types.iter().position(|t| t.id == *id),
            Ref::Name(n) => types.iter().position(|t| t.name == *n),
        };
        match found {
            Some(i) if types[i].deprecated => {
                errors.push(FieldError::new("server_type", "server type is deprecated and no longer available"));
                None
            }
            Some(i) => Some(i),
            None => {
                errors.push(FieldError::new("server_type", "server type not found"));
                None
            }
        }
    });
    let arch = type_idx.map(|i| types[i].architecture.as_str());

    let image_idx = id_or_name(body.get("image"), "image", true, &mut errors).and_then(|r| {
        let found = match &r {
            Ref::Id(id) => emu.images.iter().position(|i| i.id == *id),
            Ref::Name(n) => emu
                .images
                .iter()
                .position(|i| i.name == n && arch.is_none_or(|a| a == i.architecture))
                .or_else(|| emu.images.iter().position(|i| i.name == n)),
        };
        match found {
            Some(i) if arch.is_some_and(|a| a != emu.images[i].architecture) => {
                errors.push(FieldError::new("image", "image architecture does not match the server type"));
                None
            }
            Some(i) => Some(i),
            None => {
                errors.push(FieldError::new("image", "image not found"));
                None
            }
        }
    });

    let location_ref = id_or_name(body.get("location"), "location", false, &mut errors);
    let mut location_idx = None;
    if let Some(r) = location_ref {
        let found = match &r {
            Ref::Id(id) => emu.locations.iter().position(|l| l.id == *id),
            Ref::Name(n) => emu.locations.iter().position(|l| l.name == n),
        };
        match found {
            Some(i) => location_idx = Some(i),
            None => errors.push(FieldError::new("location", "location not found")),
        }
    }

    let start_after_create = match body.get("start_after_create") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("start_after_create", "must be a boolean"));
            true
        }
    };
    let user_data = match body.get("user_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > MAX_USER_DATA => {
            errors.push(FieldError::new("user_data", "is too long (maximum 32 KiB)"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(FieldError::new("user_data", "must be a string"));
            None
        }
    };
    let labels: BTreeMap<String, String> = match body.get("labels") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => validate_labels(v, &mut errors).into_iter().collect(),
    };
    let (mut enable_ipv4, mut enable_ipv6) = (true, true);
    if let Some(pn) = body.get("public_net").filter(|v| !v.is_null()) {
        enable_ipv4 = pn["enable_ipv4"].as_bool().unwrap_or(true);
        enable_ipv6 = pn["enable_ipv6"].as_bool().unwrap_or(true);
        if !pn["ipv4"].is_null() || !pn["ipv6"].is_null() {
            errors.push(FieldError::new("public_net", "primary IP not found"));
        }
    }
    for field in ["volumes", "networks", "firewalls"] {
        non_empty_list(&body, field, &mut errors);
    }
    if !body["placement_group"].is_null() {
        errors.push(FieldError::new("placement_group", "placement group not found"));
    }

    let mut st = emu.lock();
    let mut ssh_keys = Vec::new();
    match body.get("ssh_keys") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for v in list {
                let key = match id_or_name(Some(v), "ssh_keys", true, &mut errors) {
                    Some(Ref::Id(id)) => st.ssh_keys.get(&id),
                    Some(Ref::Name(n)) => st.ssh_keys.values().find(|k| k.name == n),
                    None => continue,
                };
                match key {
                    Some(k) => ssh_keys.push(k.name.clone()),
                    None => errors.push(FieldError::new("ssh_keys", format!("SSH key {v} not found"))),
                }
            }
        }
        Some(_) => errors.push(FieldError::new("ssh_keys", "must be a list")),
    }

    if let (Some(t), Some(l)) = (type_idx, location_idx) {
        if types[t].price_in(emu.locations[l].name).is_none() {
            errors.push(FieldError::new("location", "unsupported location for server type"));
        }
    }
    if !errors.is_empty() {
        return invalid_input(&errors);
    }
    let (Some(type_idx), Some(image_idx)) = (type_idx, image_idx) else {
        return invalid_input(&[FieldError::new("server_type", "is required")]);
    };
    let spec = &types[type_idx];

    if st.servers.values().any(|s| s.name == name) {
        return api_error(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "server name is already used",
            json!({"fields": [{"name": "name"}]}),
        );
    }

    // Without a location, place the server in the first location that sells the type and has stock.
    let location_idx = match location_idx {
        Some(l) => l,
        None => {
            let pick = spec.prices.iter().find(|p| !Emulator::is_sold_out(&st, &spec.name, &p.location));
            let pick = pick.or(spec.prices.first());
            match pick.and_then(|p| emu.locations.iter().position(|l| l.name == p.location)) {
                Some(l) => l,
                None => return invalid_input(&[FieldError::new("location", "no location sells this server type")]),
            }
        }
    };
    let location_name = emu.locations[location_idx].name;
    if Emulator::is_sold_out(&st, &spec.name, location_name) {
        return api_error(StatusCode::PRECONDITION_FAILED, "resource_unavailable", "error during placement", json!({}));
    }
    let fault = st.create_faults.iter_mut().find(|(t, n, _)| *n > 0 && t.as_ref().is_none_or(|t| *t == spec.name));
    if let Some((_, n, f)) = fault {
        *n -= 1;
        let (status, code, message) = f.parts();
        st.create_faults.retain(|(_, n, _)| *n > 0);
        return api_error(status, &code, message, json!({}));
    }

    let ipv4 = if enable_ipv4 {
        match allocate_ipv4(&st, emu.cfg.ipv4_start) {
            Some(ip) => Some(ip),
            None => {
                return api_error(
                    StatusCode::PRECONDITION_FAILED,
                    "resource_unavailable",
                    "no free IPv4 address in the emulator's pool",
                    json!({}),
                )
            }
        }
    } else {
        None
    };
    st.next_id += 1;
    let id = st.next_id;
    let failed = if st.fail_actions > 0 {
        st.fail_actions -= 1;
        true
    } else {
        false
    };
    let now = SystemTime::now();
    let born = Instant::now();
    let boot = emu.boot();
    let nanos = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let root_password = ssh_keys.is_empty().then(|| format!("emu{nanos:08x}{id:x}"));
    let server = ServerRec {
        id,
        name,
        type_idx,
        image_idx,
        location_idx,
        labels,
        user_data,
        ssh_keys,
        ipv4,
        ipv6: enable_ipv6.then(|| format!("2001:db8:{:x}::/64", id % 0xffff)),
        created: now,
        born,
        start_after_create,
        failed,
    };
    let new_action = |st: &mut EmuState, command: &'static str, duration: Duration, error: bool| {
        st.next_action_id += 1;
        let a = ActionRec {
            id: st.next_action_id,
            command,
            server_id: id,
            started: now,
            born,
            duration,
            error: error.then(|| ("action_failed".to_string(), "action failed (injected by the emulator)".into())),
        };
        let v = action_json(&a);
        st.actions.insert(a.id, a);
        v
    };
    let create = new_action(&mut st, "create_server", boot / 2, failed);
    let next_actions: Vec<Value> =
        if start_after_create && !failed { vec![new_action(&mut st, "start_server", boot, false)] } else { vec![] };
    let server_json = emu.server_json(&st, &server);
    if let (Some(dir), Some(ud)) = (&emu.cfg.user_data_dir, &server.user_data) {
        // The name passed the API's hostname check: one plain path component.
        let path = dir.join(format!("{}.user-data", server.name));
        if let Err(e) = std::fs::write(&path, ud) {
            eprintln!("hetzner-emulator: cannot write {}: {e}", path.display());
        }
    }
    st.servers.insert(id, server);
    ok(
        StatusCode::CREATED,
        json!({"server": server_json, "action": create, "next_actions": next_actions, "root_password": root_password}),
    )
}

async fn delete_server(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    let mut st = emu.lock();
    let Some(server) = parse_id(&id).and_then(|id| st.servers.remove(&id)) else {
        return not_found("server", &id);
    };
    st.next_action_id += 1;
    let a = ActionRec {
        id: st.next_action_id,
        command: "delete_server",
        server_id: server.id,
        started: SystemTime::now(),
        born: Instant::now(),
        duration: emu.boot() / 4,
        error: None,
    };
    let body = json!({"action": action_json(&a)});
    st.actions.insert(a.id, a);
    ok(StatusCode::OK, body)
}

// ----- actions -----

fn actions_list(st: &EmuState, q: &Query, server: Option<i64>, uri: &Uri, h: &HeaderMap) -> Response {
    let mut ids = Vec::new();
    for raw in q.all("id") {
        match parse_id(raw) {
            Some(id) => ids.push(id),
            None => return invalid_input(&[FieldError::new("id", "must be a positive integer")]),
        }
    }
    if server.is_none() && ids.is_empty() {
        return invalid_input(&[FieldError::new("id", "is required: listing all actions is not supported")]);
    }
    let mut items: Vec<Value> = st
        .actions
        .values()
        .filter(|a| server.is_none_or(|s| a.server_id == s))
        .filter(|a| ids.is_empty() || ids.contains(&a.id))
        .map(action_json)
        .collect();
    let statuses = q.all("status");
    if !statuses.is_empty() {
        items.retain(|v| v["status"].as_str().is_some_and(|s| statuses.contains(&s)));
    }
    list_response("actions", items, q, &["id", "command", "status", "started", "finished", "progress"], uri, h)
}

async fn list_actions(State(emu): State<Emulator>, RawQuery(raw): RawQuery, uri: Uri, h: HeaderMap) -> Response {
    let q = Query::parse(raw.as_deref());
    let st = emu.lock();
    actions_list(&st, &q, None, &uri, &h)
}

async fn get_action(State(emu): State<Emulator>, Path(id): Path<String>) -> Response {
    let st = emu.lock();
    match parse_id(&id).and_then(|id| st.actions.get(&id)) {
        Some(a) => ok(StatusCode::OK, json!({"action": action_json(a)})),
        None => not_found("action", &id),
    }
}

async fn list_server_actions(
    State(emu): State<Emulator>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    uri: Uri,
    h: HeaderMap,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let st = emu.lock();
    match parse_id(&id).filter(|id| st.servers.contains_key(id)) {
        Some(sid) => actions_list(&st, &q, Some(sid), &uri, &h),
        None => not_found("server", &id),
    }
}

async fn get_server_action(State(emu): State<Emulator>, Path((id, action_id)): Path<(String, String)>) -> Response {
    let st = emu.lock();
    let server = parse_id(&id);
    match parse_id(&action_id).and_then(|a| st.actions.get(&a)).filter(|a| Some(a.server_id) == server) {
        Some(a) => ok(StatusCode::OK, json!({"action": action_json(a)})),
        None => not_found("action", &action_id),
    }
}
