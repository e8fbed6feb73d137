//! A local stand-in for the Hetzner Cloud API (v1), faithful enough for Hetzner's official clients
//! (hcloud-python, hcloud-go/CLI) and the `hcloud` crate.
//!
//! See `shared/reference/hetzner-api.md` for the behaviour it follows. In short:
//! - every response carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `X-Correlation-Id`;
//!   a token bucket of `rate_limit` requests per `rate_window` refills gradually, 429 `rate_limit_exceeded` past it;
//! - `Authorization: Bearer <token>` is required (401 `unauthorized`); with `token: None` any non-empty token works;
//! - errors are `{"error": {"code", "message", "details"}}`, unknown paths and IDs are 404 `not_found`;
//! - every list has `page`/`per_page` (default 25, max 50), `meta.pagination` and a `Link` header;
//! - servers go initializing → starting → running on the emulator's clock (`boot_ms`), actions running → success.
//!
//! Tests steer it through [`Emulator`]'s fault knobs and read back what clients did through its inspection helpers.

mod catalog;
mod handlers;
mod query;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;

pub use catalog::ServerTypeSpec;
pub use catalog::{default_server_types, images, locations, price_json, ImageSpec, LocationPrice, LocationSpec};
pub use handlers::router;

/// Configuration of an emulator instance.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The only accepted Bearer token; `None` accepts any non-empty token.
    pub token: Option<String>,
    /// Requests per `rate_window` (Hetzner: 3600 per hour). `0` disables rate limiting.
    pub rate_limit: u32,
    /// The window the bucket refills over (Hetzner: one hour, i.e. one request per second at 3600).
    pub rate_window: Duration,
    /// How long a new server takes to reach `running`: `initializing` for the first half, `starting` after.
    pub boot_ms: u64,
    /// The catalogue served by `GET /server_types`.
    pub server_types: Vec<ServerTypeSpec>,
    /// First address handed out as a server's public IPv4; the lowest free address from here on is used.
    pub ipv4_start: Ipv4Addr,
    /// VAT rate used to derive gross prices.
    pub vat_rate: f64,
    /// When set, each created server's cloud-init user data is written to `DIR/NAME.user-data`
    /// (Hetzner never returns it; this shows what a real VM would have run).
    pub user_data_dir: Option<std::path::PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            token: None,
            rate_limit: 3600,
            rate_window: Duration::from_secs(3600),
            boot_ms: 2000,
            server_types: default_server_types(),
            ipv4_start: Ipv4Addr::new(127, 0, 1, 1),
            vat_rate: 0.19,
            user_data_dir: None,
        }
    }
}

/// An error the emulator can be told to return (fault injection).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 412 `resource_unavailable` ("error during placement"): the type is sold out.
    ResourceUnavailable,
    /// 412 `placement_error`.
    PlacementError,
    /// 409 `conflict`: resource changed during the request; clients retry.
    Conflict,
    /// 423 `locked`.
    Locked,
    /// 500 `server_error`.
    ServerError,
    /// 503 `unavailable`.
    Unavailable,
    /// Anything else.
    Custom { status: u16, code: String, message: String },
}

impl Fault {
    fn parts(&self) -> (StatusCode, String, String) {
        let (status, code, message) = match self {
            Fault::ResourceUnavailable => (412, "resource_unavailable", "error during placement"),
            Fault::PlacementError => (412, "placement_error", "error during placement"),
            Fault::Conflict => (409, "conflict", "resource has changed during the request, please retry"),
            Fault::Locked => (423, "locked", "resource is locked by another action"),
            Fault::ServerError => (500, "server_error", "internal server error"),
            Fault::Unavailable => (503, "unavailable", "service temporarily unavailable"),
            Fault::Custom { status, code, message } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return (status, code.clone(), message.clone());
            }
        };
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code.into(), message.into())
    }
}

/// A server as the emulator stores it, for test inspection.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    pub id: i64,
    pub name: String,
    pub server_type: String,
    pub image: String,
    pub location: String,
    pub labels: BTreeMap<String, String>,
    pub user_data: Option<String>,
    /// Names of the SSH keys given at creation.
    pub ssh_keys: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    /// Current status (`initializing`, `starting`, `running`, `off`).
    pub status: String,
}

/// One request the emulator answered, for test inspection.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    pub status: u16,
}

pub(crate) struct ServerRec {
    pub id: i64,
    pub name: String,
    pub type_idx: usize,
    pub image_idx: usize,
    pub location_idx: usize,
    pub labels: BTreeMap<String, String>,
    pub user_data: Option<String>,
    pub ssh_keys: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<String>,
    pub created: SystemTime,
    pub born: Instant,
    pub start_after_create: bool,
    pub failed: bool,
}

pub(crate) struct ActionRec {
    pub id: i64,
    pub command: &'static str,
    pub server_id: i64,
    pub started: SystemTime,
    pub born: Instant,
    pub duration: Duration,
    pub error: Option<(String, String)>,
}

pub(crate) struct SshKeyRec {
    pub id: i64,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
    pub labels: BTreeMap<String, String>,
    pub created: SystemTime,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub(crate) struct State {
    pub servers: BTreeMap<i64, ServerRec>,
    pub actions: BTreeMap<i64, ActionRec>,
    pub ssh_keys: BTreeMap<i64, SshKeyRec>,
    pub next_id: i64,
    pub next_action_id: i64,
    /// (type name, location name) pairs that are sold out.
    pub sold_out: Vec<(String, Option<String>)>,
    /// Injected create failures: (server type filter, remaining count, fault).
    pub create_faults: Vec<(Option<String>, u32, Fault)>,
    pub request_faults: Vec<(u32, Fault)>,
    pub throttle_next: u32,
    pub fail_actions: u32,
    pub mutating_calls: u64,
    pub requests: Vec<RequestRecord>,
    pub correlation: u64,
    bucket: Bucket,
}

/// A running emulator's shared state. Cloning is cheap; all clones see the same state.
#[derive(Clone)]
pub struct Emulator {
    pub(crate) cfg: Arc<EmulatorConfig>,
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) locations: Arc<Vec<LocationSpec>>,
    pub(crate) images: Arc<Vec<ImageSpec>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("rate_limit", &self.cfg.rate_limit).finish_non_exhaustive()
    }
}

/// Rate-limit bookkeeping for one request.
pub(crate) struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    pub reset_unix: u64,
    pub allowed: bool,
}

impl Emulator {
    pub fn new(cfg: EmulatorConfig) -> Self {
        let tokens = f64::from(cfg.rate_limit);
        Emulator {
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(State {
                servers: BTreeMap::new(),
                actions: BTreeMap::new(),
                ssh_keys: BTreeMap::new(),
                next_id: 1_000_001,
                next_action_id: 5_000_001,
                sold_out: Vec::new(),
                create_faults: Vec::new(),
                request_faults: Vec::new(),
                throttle_next: 0,
                fail_actions: 0,
                mutating_calls: 0,
                requests: Vec::new(),
                correlation: 0,
                bucket: Bucket { tokens, last: Instant::now() },
            })),
            locations: Arc::new(locations()),
            images: Arc::new(images()),
        }
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.cfg
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds 127.0.0.1:0, serves in a background task and returns the bound address.
    pub async fn spawn_local(&self) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = router(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    // ----- fault injection -----

    /// The next `n` creates of `server_type` (any type when `None`) fail with `fault`.
    pub fn fail_next_creates(&self, server_type: Option<&str>, n: u32, fault: Fault) {
        self.lock().create_faults.push((server_type.map(str::to_string), n, fault));
    }

    /// The next `n` creates of `server_type` fail with 412 `resource_unavailable` (out of stock).
    pub fn out_of_stock_next(&self, server_type: &str, n: u32) {
        self.fail_next_creates(Some(server_type), n, Fault::ResourceUnavailable);
    }

    /// Marks `server_type` sold out (in `location`, or everywhere) until [`Emulator::restock`]: listed with
    /// `available: false`, and creates fail with 412 `resource_unavailable`.
    pub fn sell_out(&self, server_type: &str, location: Option<&str>) {
        self.lock().sold_out.push((server_type.to_string(), location.map(str::to_string)));
    }

    /// Undoes every [`Emulator::sell_out`] of `server_type`.
    pub fn restock(&self, server_type: &str) {
        self.lock().sold_out.retain(|(t, _)| t != server_type);
    }

    /// The next `n` requests (of any kind) get 429 `rate_limit_exceeded`.
    pub fn throttle_next(&self, n: u32) {
        self.lock().throttle_next += n;
    }

    /// The next `n` authenticated requests fail with `fault` (e.g. transient 5xx).
    pub fn fail_next_requests(&self, n: u32, fault: Fault) {
        self.lock().request_faults.push((n, fault));
    }

    /// The create actions of the next `n` created servers end in `error` (`action_failed`); those servers end `off`.
    pub fn fail_next_actions(&self, n: u32) {
        self.lock().fail_actions += n;
    }

    // ----- inspection -----

    /// All existing servers, by ascending ID.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let st = self.lock();
        st.servers.values().map(|s| self.server_info(s)).collect()
    }

    /// One server by name.
    pub fn server_by_name(&self, name: &str) -> Option<ServerInfo> {
        let st = self.lock();
        st.servers.values().find(|s| s.name == name).map(|s| self.server_info(s))
    }

    /// How many POST/PUT/PATCH/DELETE requests passed rate limiting and authentication.
    pub fn mutating_calls(&self) -> u64 {
        self.lock().mutating_calls
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    fn server_info(&self, s: &ServerRec) -> ServerInfo {
        ServerInfo {
            id: s.id,
            name: s.name.clone(),
            server_type: self.cfg.server_types.get(s.type_idx).map(|t| t.name.clone()).unwrap_or_default(),
            image: self.images.get(s.image_idx).map(|i| i.name.to_string()).unwrap_or_default(),
            location: self.locations.get(s.location_idx).map(|l| l.name.to_string()).unwrap_or_default(),
            labels: s.labels.clone(),
            user_data: s.user_data.clone(),
            ssh_keys: s.ssh_keys.clone(),
            ipv4: s.ipv4,
            status: self.server_status(s).to_string(),
        }
    }

    // ----- clock-driven state -----

    pub(crate) fn boot(&self) -> Duration {
        Duration::from_millis(self.cfg.boot_ms)
    }

    pub(crate) fn server_status(&self, s: &ServerRec) -> &'static str {
        let elapsed = s.born.elapsed();
        let boot = self.boot();
        if elapsed < boot / 2 {
            "initializing"
        } else if !s.start_after_create || s.failed {
            "off"
        } else if elapsed < boot {
            "starting"
        } else {
            "running"
        }
    }

    pub(crate) fn is_sold_out(st: &State, server_type: &str, location: &str) -> bool {
        st.sold_out.iter().any(|(t, l)| t == server_type && l.as_deref().is_none_or(|l| l == location))
    }

    /// Takes one token from the bucket (or an injected 429).
    pub(crate) fn take_token(&self, st: &mut State) -> RateInfo {
        let limit = self.cfg.rate_limit;
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if limit == 0 {
            let allowed = if st.throttle_next > 0 {
                st.throttle_next -= 1;
                false
            } else {
                true
            };
            return RateInfo { limit: 3600, remaining: 3600, reset_unix: now_unix, allowed };
        }
        let capacity = f64::from(limit);
        let per_sec = capacity / self.cfg.rate_window.as_secs_f64().max(0.001);
        let now = Instant::now();
        let refill = now.duration_since(st.bucket.last).as_secs_f64() * per_sec;
        st.bucket.tokens = (st.bucket.tokens + refill).min(capacity);
        st.bucket.last = now;
        let allowed = if st.throttle_next > 0 {
            st.throttle_next -= 1;
            false
        } else if st.bucket.tokens >= 1.0 {
            st.bucket.tokens -= 1.0;
            true
        } else {
            false
        };
        let missing = capacity - st.bucket.tokens;
        RateInfo {
            limit,
            remaining: st.bucket.tokens.floor() as u32,
            reset_unix: now_unix + (missing / per_sec).ceil() as u64,
            allowed,
        }
    }
}

/// Serves the emulator on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, cfg: EmulatorConfig) -> std::io::Result<()> {
    axum::serve(listener, router(Emulator::new(cfg))).await
}

/// RFC 3339 with `+00:00`, like the API (`2016-01-30T23:50:00+00:00`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00+00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_454_197_800);
        assert_eq!(rfc3339(t), "2016-01-30T23:50:00+00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_164_800); // leap day
        assert_eq!(rfc3339(t), "2024-02-29T00:00:00+00:00");
    }
}
