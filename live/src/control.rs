//! What the HTTP API asks the driver, and what the driver answers. The driver task owns
//! the engine; the API never touches it. Each call carries a oneshot for its answer.

use conductor_core::Plan;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The answer channel of one call.
pub type Answer<T> = oneshot::Sender<Result<T, ApiError>>;

/// One request from the API to the driver.
pub enum ApiCall {
    Start {
        server: String,
        body: StartBody,
        answer: Answer<StartOutcome>,
    },
    Stop {
        server: String,
        answer: Answer<StopOutcome>,
    },
    Server {
        server: String,
        answer: Answer<ServerInfo>,
    },
    /// Delete a stopped server and its world.
    Delete {
        server: String,
        answer: Answer<()>,
    },
    Fleet {
        answer: Answer<FleetInfo>,
    },
    Nodes {
        answer: Answer<Vec<NodeInfo>>,
    },
    Queue {
        answer: Answer<Vec<QueueEntry>>,
    },
    Decisions {
        answer: Answer<Vec<Decision>>,
    },
    AddNode {
        node: NewNode,
        answer: Answer<NodeInfo>,
    },
    RemoveNode {
        node: String,
        answer: Answer<()>,
    },
    DrainNode {
        node: String,
        answer: Answer<()>,
    },
    SetScaling {
        enabled: bool,
        answer: Answer<()>,
    },
}

/// `POST /v1/servers/{id}/start`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    pub ram_mb: u32,
    #[serde(default)]
    pub plan: Plan,
    /// The customer, for the per-user queue limit; defaults to the server id.
    #[serde(default)]
    pub user: Option<String>,
}

/// The answer to a start: `started` (placed on a node, the container is starting) or
/// `queued` with its 1-based position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartOutcome {
    pub server: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopOutcome {
    pub server: String,
    /// `cancelled` (it was queued), `stopping`, or `already_stopping`.
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub server: String,
    /// `queued`, `starting`, `running`, `stopping`, `lost` or `stopped`.
    pub state: String,
    pub ram_mb: u32,
    pub plan: Plan,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// host:port players connect to, once placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub players: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetInfo {
    pub nodes: usize,
    pub healthy_nodes: usize,
    pub total_ram_mb: u64,
    pub usable_ram_mb: u64,
    pub allocated_ram_mb: u64,
    pub queue_length: usize,
    pub running_servers: usize,
    pub scaling_enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    /// `dedicated` or `cloud`.
    pub kind: String,
    pub system: bool,
    pub address: String,
    /// `unknown`, `healthy` or `unhealthy`.
    pub health: String,
    /// `awaiting_provision`, `active` or `draining`.
    pub lifecycle: String,
    pub ram_mb: u32,
    pub usable_mb: u64,
    pub allocated_mb: u64,
    pub containers: u32,
}

/// `POST /v1/nodes`: register a dedicated host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// Unique name, `[a-z0-9-]`, at most 63 characters.
    pub node: String,
    /// SSH host (name or IP), or `local` for this machine's Docker socket.
    pub address: String,
    #[serde(default)]
    pub ssh_port: Option<u16>,
    pub ram_mb: u32,
    #[serde(default)]
    pub system: bool,
    /// Ports for servers, e.g. `25565-25664`; defaults to the config's.
    #[serde(default)]
    pub ports: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub server: String,
    pub position: usize,
    pub ram_mb: u32,
    pub plan: Plan,
    /// Seconds since the original request.
    pub waited_s: u64,
}

/// One scaling or placement decision, most recent last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: String,
    pub detail: String,
}

/// An error the API turns into a status code and a JSON body `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiError {
    /// 400
    BadRequest(String),
    /// 404
    NotFound(String),
    /// 409, with the server's current state (a start for a server already queued or running).
    Conflict { message: String, server: Option<ServerInfo> },
    /// 503: the driver is shutting down or overloaded.
    Unavailable(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m) | ApiError::NotFound(m) | ApiError::Unavailable(m) => m,
            ApiError::Conflict { message, .. } => message,
        }
    }
}

/// Server and node names: `[a-z0-9]` and inner `-`, 1 to 63 characters (a DNS label).
/// Every name that reaches Docker, SSH or Hetzner passed this check.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Node addresses (`address` in the config and in `POST /v1/nodes`): `local`, or a host name or IP
/// address of 1 to 253 characters of `A-Z a-z 0-9 . - :`, not starting with `-`. The address
/// becomes the destination of an `ssh` process, so anything that could read as an option, a user
/// (`@`), a second argument (whitespace) or shell syntax is refused.
pub fn valid_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["a", "mc-1", "s76212", &"x".repeat(63)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a b", "a;rm", "a/b", "ü", &"x".repeat(64), "$(id)"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        for ok in ["local", "10.0.0.1", "node-1.example.com", "::1", "fe80::1"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "-oProxyCommand=x", "a b", "root@h", "h;id", "$(id)", "h\n", "a/b", &"x".repeat(254)] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
