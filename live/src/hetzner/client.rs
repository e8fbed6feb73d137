//! Adapter over the `hcloud` crate: the few Hetzner Cloud calls conductor needs, with Hetzner's error codes mapped
//! to [`CloudError`], all pages followed, and the API token kept out of every `Debug`, `Display` and error.
//!
//! The crate gives no access to response headers, so on a 429 the adapter makes one extra plain request to read
//! `RateLimit-Remaining`/`RateLimit-Reset` and derive [`CloudError::RateLimited::retry_after_s`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hcloud::apis::configuration::Configuration;
use hcloud::apis::{server_types_api, servers_api, Error as HcloudError};
use hcloud::models;
use serde_json::Value;

/// The label every server conductor creates carries, and `list_managed` selects on.
pub const MANAGED_BY: (&str, &str) = ("managed_by", "conductor");

/// The label naming the conductor instance (`hetzner.instance`) that bought a VM.
pub const INSTANCE_LABEL: &str = "conductor.instance";
/// The real API; the adapter maps it to the base URL it was given.
const HETZNER_API: &str = "https://api.hetzner.cloud/v1";
/// Page size for every list call (the API's maximum).
const PER_PAGE: i64 = 50;
/// Safety bound on pages followed by one list call.
const MAX_PAGES: i64 = 1000;

/// What can go wrong talking to Hetzner. `Display` and `Debug` never include the API token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudError {
    /// 429 `rate_limit_exceeded`; `retry_after_s` is derived from the RateLimit headers when they could be read.
    RateLimited { retry_after_s: Option<u64> },
    /// 412 `resource_unavailable` / `placement_error`: the type is sold out where it was asked for.
    OutOfStock(String),
    /// 409 `uniqueness_error`: e.g. the server name is taken.
    Conflict(String),
    /// 401 `unauthorized`, 403 `forbidden`/`token_readonly`: the token is missing, wrong or not allowed.
    Unauthorized,
    /// Worth retrying as is: `conflict`, `locked`, 5xx codes, transport failures.
    Transient(String),
    /// Anything else (validation errors, unexpected responses), with Hetzner's code when there was one.
    Other(String),
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloudError::RateLimited { retry_after_s: Some(s) } => write!(f, "rate limited by Hetzner, retry in {s}s"),
            CloudError::RateLimited { retry_after_s: None } => write!(f, "rate limited by Hetzner"),
            CloudError::OutOfStock(m) => write!(f, "server type unavailable: {m}"),
            CloudError::Conflict(m) => write!(f, "conflict: {m}"),
            CloudError::Unauthorized => write!(f, "Hetzner rejected the API token"),
            CloudError::Transient(m) => write!(f, "transient Hetzner error: {m}"),
            CloudError::Other(m) => write!(f, "Hetzner error: {m}"),
        }
    }
}

impl std::error::Error for CloudError {}

impl CloudError {
    /// Whether repeating the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CloudError::RateLimited { .. } | CloudError::Transient(_))
    }

    fn scrub(self, token: &str) -> Self {
        let s = |m: String| if token.is_empty() { m } else { m.replace(token, "<redacted>") };
        match self {
            CloudError::OutOfStock(m) => CloudError::OutOfStock(s(m)),
            CloudError::Conflict(m) => CloudError::Conflict(s(m)),
            CloudError::Transient(m) => CloudError::Transient(s(m)),
            CloudError::Other(m) => CloudError::Other(s(m)),
            e => e,
        }
    }
}

/// A server type with its price in the client's location (EUR, net of VAT).
#[derive(Clone, Debug, PartialEq)]
pub struct CloudType {
    pub id: i64,
    pub name: String,
    pub ram_mb: u64,
    pub cores: u32,
    pub disk_gb: u64,
    /// `x86` or `arm`.
    pub architecture: String,
    /// `shared` or `dedicated`.
    pub cpu_type: String,
    pub location: String,
    pub hourly_eur: f64,
    /// The monthly cap: Hetzner bills the hourly price up to this per month.
    pub monthly_eur: f64,
}

/// What to create. `labels` always get `managed_by=conductor` added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateServer {
    pub name: String,
    pub server_type: String,
    pub image: String,
    /// `None`: the client's location.
    pub location: Option<String>,
    /// Names or IDs of SSH keys already in the project.
    pub ssh_keys: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// cloud-init user data (see [`cloud_init`]); at most 32 KiB.
    pub user_data: Option<String>,
}

/// Lifecycle status of a server, as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerStatus {
    Initializing,
    Starting,
    Running,
    Stopping,
    Off,
    Deleting,
    Migrating,
    Rebuilding,
    Unknown,
}

impl From<models::server::Status> for ServerStatus {
    fn from(s: models::server::Status) -> Self {
        use models::server::Status as S;
        match s {
            S::Initializing => ServerStatus::Initializing,
            S::Starting => ServerStatus::Starting,
            S::Running => ServerStatus::Running,
            S::Stopping => ServerStatus::Stopping,
            S::Off => ServerStatus::Off,
            S::Deleting => ServerStatus::Deleting,
            S::Migrating => ServerStatus::Migrating,
            S::Rebuilding => ServerStatus::Rebuilding,
            S::Unknown => ServerStatus::Unknown,
        }
    }
}

/// A server as conductor sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerState {
    pub id: i64,
    pub name: String,
    pub status: ServerStatus,
    pub ipv4: Option<Ipv4Addr>,
    pub server_type: String,
    pub location: String,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub created: String,
}

impl From<models::Server> for ServerState {
    fn from(s: models::Server) -> Self {
        ServerState {
            id: s.id,
            status: s.status.into(),
            ipv4: s.public_net.ipv4.as_ref().and_then(|ip| ip.ip.parse().ok()),
            server_type: s.server_type.name,
            location: s.location.name,
            labels: s.labels.into_iter().collect(),
            created: s.created,
            name: s.name,
        }
    }
}

/// The result of a create.
#[derive(Clone, PartialEq)]
pub struct CreatedServer {
    pub server: ServerState,
    /// The `create_server` action.
    pub action_id: i64,
    /// Set only when no SSH key was given. Redacted in `Debug`.
    pub root_password: Option<String>,
}

impl fmt::Debug for CreatedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedServer")
            .field("server", &self.server)
            .field("action_id", &self.action_id)
            .field("root_password", &self.root_password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A Hetzner Cloud client for one project (one token).
#[derive(Clone)]
pub struct HetznerClient {
    cfg: Configuration,
    base_url: String,
    token: String,
    location: String,
}

impl fmt::Debug for HetznerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HetznerClient")
            .field("base_url", &self.base_url)
            .field("location", &self.location)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl HetznerClient {
    /// `base_url` ends in `/v1`, e.g. `https://api.hetzner.cloud/v1` or `http://127.0.0.1:PORT/v1`.
    /// The default location is `nbg1`.
    pub fn new(base_url: &str, token: String) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        let mut cfg = Configuration::new();
        cfg.base_path_mapping.insert(HETZNER_API.to_string(), base_url.clone());
        cfg.bearer_access_token = Some(token.clone());
        cfg.user_agent = Some(format!("conductor/{} hcloud-rust/0.26", env!("CARGO_PKG_VERSION")));
        cfg.client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        HetznerClient { cfg, base_url, token, location: "nbg1".to_string() }
    }

    /// The location used for prices and for creates that name none.
    pub fn with_location(mut self, location: &str) -> Self {
        self.location = location.to_string();
        self
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Orderable server types sold in the client's location, with that location's net prices.
    pub async fn server_types(&self) -> Result<Vec<CloudType>, CloudError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let params =
                server_types_api::ListServerTypesParams { name: None, page: Some(page), per_page: Some(PER_PAGE) };
            let resp = match server_types_api::list_server_types(&self.cfg, params).await {
                Ok(r) => r,
                Err(e) => return Err(self.fail(e).await),
            };
            out.extend(resp.server_types.into_iter().filter_map(|t| self.cloud_type(t)));
            match resp.meta.pagination.next_page {
                Some(next) if next > page && page < MAX_PAGES => page = next,
                _ => return Ok(out),
            }
        }
    }

    fn cloud_type(&self, t: models::ServerType) -> Option<CloudType> {
        let deprecated = t.deprecated == Some(true) || matches!(t.deprecation, Some(Some(_)));
        let loc = t.locations.iter().find(|l| l.name == self.location)?;
        if deprecated || loc.deprecation.is_some() {
            return None;
        }
        let price = t.prices.iter().find(|p| p.location == self.location)?;
        Some(CloudType {
            id: t.id,
            ram_mb: (t.memory * 1024.0).round().max(0.0) as u64,
            cores: u32::try_from(t.cores).unwrap_or(0),
            disk_gb: t.disk.round().max(0.0) as u64,
            architecture: serde_json::to_value(t.architecture).ok()?.as_str()?.to_string(),
            cpu_type: serde_json::to_value(t.cpu_type).ok()?.as_str()?.to_string(),
            location: self.location.clone(),
            hourly_eur: price.price_hourly.net.parse().ok()?,
            monthly_eur: price.price_monthly.net.parse().ok()?,
            name: t.name,
        })
    }

    /// Creates a server; `labels` get `managed_by=conductor`. Does not wait for it to boot.
    pub async fn create_server(&self, req: &CreateServer) -> Result<CreatedServer, CloudError> {
        let mut labels: std::collections::HashMap<String, String> =
            req.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
        let request = models::CreateServerRequest {
            name: req.name.clone(),
            server_type: req.server_type.clone(),
            image: req.image.clone(),
            location: Some(req.location.clone().unwrap_or_else(|| self.location.clone())),
            ssh_keys: (!req.ssh_keys.is_empty()).then(|| req.ssh_keys.clone()),
            labels: Some(labels),
            user_data: req.user_data.clone(),
            start_after_create: Some(true),
            public_net: Some(Box::new(models::CreateServerRequestPublicNet {
                enable_ipv4: Some(true),
                enable_ipv6: Some(true),
                ipv4: None,
                ipv6: None,
            })),
            ..Default::default()
        };
        let params = servers_api::CreateServerParams { create_server_request: request };
        match servers_api::create_server(&self.cfg, params).await {
            Ok(r) => {
                Ok(CreatedServer { server: (*r.server).into(), action_id: r.action.id, root_password: r.root_password })
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// `None` when the server does not exist (any more).
    pub async fn get_server(&self, id: i64) -> Result<Option<ServerState>, CloudError> {
        match servers_api::get_server(&self.cfg, servers_api::GetServerParams { id }).await {
            Ok(r) => Ok(r.server.map(|s| (*s).into())),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Deletes a server; one that is already gone (404) counts as deleted.
    pub async fn delete_server(&self, id: i64) -> Result<(), CloudError> {
        match servers_api::delete_server(&self.cfg, servers_api::DeleteServerParams { id }).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Every server labelled `managed_by=conductor`, across all pages, by ascending ID.
    pub async fn list_managed(&self) -> Result<Vec<ServerState>, CloudError> {
        self.list_servers(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)).await
    }

    /// The managed servers one conductor instance bought (label `conductor.instance`).
    pub async fn list_instance(&self, instance: &str) -> Result<Vec<ServerState>, CloudError> {
        self.list_servers(&format!("{}={},{INSTANCE_LABEL}={instance}", MANAGED_BY.0, MANAGED_BY.1)).await
    }

    /// Every server matching a Hetzner label selector, across all pages, by ascending ID.
    pub async fn list_servers(&self, label_selector: &str) -> Result<Vec<ServerState>, CloudError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let params = servers_api::ListServersParams {
                name: None,
                label_selector: Some(label_selector.to_string()),
                sort: Some(vec!["id:asc".to_string()]),
                status: None,
                page: Some(page),
                per_page: Some(PER_PAGE),
            };
            let resp = match servers_api::list_servers(&self.cfg, params).await {
                Ok(r) => r,
                Err(e) => return Err(self.fail(e).await),
            };
            out.extend(resp.servers.into_iter().map(ServerState::from));
            match resp.meta.pagination.next_page {
                Some(next) if next > page && page < MAX_PAGES => page = next,
                _ => return Ok(out),
            }
        }
    }

    async fn fail<T>(&self, e: HcloudError<T>) -> CloudError {
        match classify(e) {
            CloudError::RateLimited { .. } => CloudError::RateLimited { retry_after_s: self.retry_after().await },
            other => other.scrub(&self.token),
        }
    }

    /// Reads the RateLimit headers with one cheap request: at 0 remaining, one request's worth of refill is
    /// `(reset - now) / limit` seconds (the bucket refills linearly until `reset`).
    async fn retry_after(&self) -> Option<u64> {
        let resp = self
            .cfg
            .client
            .get(format!("{}/locations?per_page=1", self.base_url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let header = |name: &str| resp.headers().get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let (limit, remaining, reset) =
            (header("ratelimit-limit")?, header("ratelimit-remaining")?, header("ratelimit-reset")?);
        if remaining > 0 || limit == 0 {
            return Some(1);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(reset.saturating_sub(now).div_ceil(limit).max(1))
    }
}

fn status_of<T>(e: &HcloudError<T>) -> Option<u16> {
    match e {
        HcloudError::ResponseError(r) => Some(r.status.as_u16()),
        _ => None,
    }
}

/// Maps an hcloud error to a [`CloudError`] by Hetzner's error `code` (never by message), falling back on status.
fn classify<T>(e: HcloudError<T>) -> CloudError {
    let r = match e {
        HcloudError::ResponseError(r) => r,
        HcloudError::Reqwest(e) => return CloudError::Transient(format!("transport: {e}")),
        HcloudError::Io(e) => return CloudError::Transient(format!("I/O: {e}")),
        HcloudError::Serde(e) => return CloudError::Other(format!("unexpected response body: {e}")),
    };
    let status = r.status.as_u16();
    let body: Value = serde_json::from_str(&r.content).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    let message = body["error"]["message"].as_str().unwrap_or("").to_string();
    let describe = || {
        let code = if code.is_empty() { "no_code" } else { code.as_str() };
        format!("{code} (HTTP {status}): {message}")
    };
    match (code.as_str(), status) {
        ("rate_limit_exceeded", _) | (_, 429) => CloudError::RateLimited { retry_after_s: None },
        ("resource_unavailable" | "placement_error", _) => CloudError::OutOfStock(describe()),
        ("uniqueness_error", _) => CloudError::Conflict(describe()),
        ("unauthorized" | "forbidden" | "token_readonly", _) | (_, 401) => CloudError::Unauthorized,
        ("conflict" | "locked" | "server_error" | "service_error" | "bad_gateway" | "unavailable" | "timeout", _) => {
            CloudError::Transient(describe())
        }
        (_, 500..=599) => CloudError::Transient(describe()),
        _ => CloudError::Other(describe()),
    }
}

/// Parameters of [`cloud_init`].
#[derive(Clone, Debug, PartialEq)]
pub struct CloudInit {
    /// Extra OpenSSH public keys for root (keys given to `create_server` are installed by Hetzner already).
    pub ssh_authorized_keys: Vec<String>,
    /// Where the node reports readiness: after Docker answers, the node POSTs
    /// `hostname=<name>&instance_id=<id>&status=ready` (form-encoded) here, retrying for about a minute.
    pub ready_url: Option<String>,
    /// File written (with the UTC time) once Docker is up; conductor can poll it over SSH.
    pub marker_path: String,
    /// Further Debian/Ubuntu packages to install.
    pub extra_packages: Vec<String>,
}

impl Default for CloudInit {
    fn default() -> Self {
        CloudInit {
            ssh_authorized_keys: Vec::new(),
            ready_url: None,
            marker_path: "/var/lib/conductor/ready".to_string(),
            extra_packages: Vec::new(),
        }
    }
}

/// cloud-init user data (`#cloud-config`) for a conductor node on Debian or Ubuntu:
///
/// 1. installs `docker.io` (the distribution's Docker engine: no third-party repository, no download script),
///    plus `ca-certificates`, `curl` and `extra_packages`, and caps container logs (json-file, 3 × 10 MB);
/// 2. enables and starts Docker;
/// 3. once `docker info` succeeds, writes `marker_path` and, when `ready_url` is set, POSTs readiness there.
///    If Docker never comes up, neither happens, so a missing marker/report means "not ready".
///
/// Every value is emitted as a JSON string, which YAML reads as a double-quoted scalar, so no input can break the
/// document; shell arguments are single-quoted.
pub fn cloud_init(p: &CloudInit) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    let mut y = String::from("#cloud-config\n# conductor node: installs Docker and reports readiness.\n");
    y.push_str("package_update: true\npackages:\n");
    for pkg in
        ["docker.io", "ca-certificates", "curl"].iter().copied().chain(p.extra_packages.iter().map(String::as_str))
    {
        y.push_str(&format!("  - {}\n", q(pkg)));
    }
    if !p.ssh_authorized_keys.is_empty() {
        y.push_str("ssh_authorized_keys:\n");
        for k in &p.ssh_authorized_keys {
            y.push_str(&format!("  - {}\n", q(k)));
        }
    }
    y.push_str("write_files:\n  - path: \"/etc/docker/daemon.json\"\n    permissions: \"0644\"\n");
    y.push_str(&format!(
        "    content: {}\n",
        q(r#"{"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}"#)
    ));
    let marker = shell_quote(&p.marker_path);
    let mut ready = format!(
        "set -e; for i in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 2; done; docker info >/dev/null; \
         mkdir -p \"$(dirname {marker})\"; date -u +%Y-%m-%dT%H:%M:%SZ > {marker}"
    );
    if let Some(url) = &p.ready_url {
        ready.push_str(&format!(
            "; curl -fsS --retry 12 --retry-delay 5 --retry-all-errors -X POST \
             --data-urlencode \"hostname=$(hostname)\" \
             --data-urlencode \"instance_id=$(cloud-init query v1.instance_id 2>/dev/null || echo unknown)\" \
             --data-urlencode status=ready {}",
            shell_quote(url)
        ));
    }
    y.push_str("runcmd:\n  - [\"systemctl\", \"enable\", \"--now\", \"docker\"]\n");
    y.push_str(&format!("  - [\"sh\", \"-c\", {}]\n", q(&ready)));
    y
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_init_is_a_cloud_config_that_installs_docker_and_reports() {
        let ud = cloud_init(&CloudInit {
            ready_url: Some("http://10.0.0.1:8080/ready?x='y'".into()),
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA test".into()],
            ..Default::default()
        });
        assert!(ud.starts_with("#cloud-config\n"));
        assert!(ud.contains("  - \"docker.io\"\n"));
        assert!(ud.contains("systemctl"));
        assert!(ud.contains("/var/lib/conductor/ready"));
        assert!(ud.contains(r#"'http://10.0.0.1:8080/ready?x='\\''y'\\'''"#), "{ud}");
        assert!(ud.len() < 32 * 1024);
        // Every runcmd entry is a valid JSON array (a YAML flow sequence).
        for line in ud.lines().filter(|l| l.starts_with("  - [")) {
            let v: Value = serde_json::from_str(&line[4..]).expect(line);
            assert!(v.is_array());
        }
    }

    #[test]
    fn errors_classify_by_code() {
        let resp = |status: u16, body: &str| {
            HcloudError::<()>::ResponseError(hcloud::apis::ResponseContent {
                status: reqwest::StatusCode::from_u16(status).expect("status"),
                content: body.to_string(),
                entity: None,
            })
        };
        let e = |code: &str, status| resp(status, &format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#));
        assert!(matches!(classify(e("resource_unavailable", 412)), CloudError::OutOfStock(_)));
        assert!(matches!(classify(e("uniqueness_error", 409)), CloudError::Conflict(_)));
        assert!(matches!(classify(e("conflict", 409)), CloudError::Transient(_)));
        assert_eq!(classify(e("unauthorized", 401)), CloudError::Unauthorized);
        assert_eq!(classify(e("rate_limit_exceeded", 429)), CloudError::RateLimited { retry_after_s: None });
        assert!(matches!(classify(resp(502, "<html>")), CloudError::Transient(_)));
        assert!(matches!(classify(e("invalid_input", 422)), CloudError::Other(_)));
        assert_eq!(CloudError::Other("tok123 x".into()).scrub("tok123"), CloudError::Other("<redacted> x".into()));
    }
}
