//! Typed ids and the small value types shared by inputs, commands and events.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A game server, as the platform names it. Drivers map their own names to ids
/// (the simulator interns trace names, the live API parses them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServerId(pub u64);

/// The customer who owns a server; only used for the per-user queue limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub u64);

/// A node, assigned by the engine at registration in registration order and never
/// reused. Ties between nodes break by this id, so they break by registration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// The billing plan. Only `Reserved` changes what the engine does: such a server keeps
/// its RAM booked on its node while stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    #[default]
    PayPerPlay,
    Balanced,
    Reserved,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::PayPerPlay => "payperplay",
            Plan::Balanced => "balanced",
            Plan::Reserved => "reserved",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// An owned host from the configuration; never deleted by the engine.
    Dedicated,
    /// A rented VM; bought and returned by the scaling engine.
    Cloud,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Dedicated => "dedicated",
            NodeKind::Cloud => "cloud",
        }
    }
}

/// Where worlds live. `NodeLocal`: on the node a server last ran on until archived.
/// `Shared`: any node can mount any world, so worlds never pin a server to a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Storage {
    #[default]
    NodeLocal,
    Shared,
}

/// What the driver must do with a server's world before starting its container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorldAction {
    /// The world is already on the target node (or storage is shared, or the server is new).
    InPlace,
    /// Restore the world from the archive onto the target node first.
    RestoreFromArchive,
    /// Copy the world from the node that holds it to the target node first. Once the
    /// container has started, the driver deletes the source copy: it is a move, and the
    /// engine no longer counts that world on the source node.
    MoveFrom(NodeId),
}

/// A node type the cloud can sell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerType {
    pub name: String,
    pub ram_mb: u32,
    #[serde(default = "default_cores")]
    pub cores: u32,
    pub hourly_eur: f64,
    /// Billing stops growing at this monthly price (Hetzner's cap); `None` = no cap.
    #[serde(default)]
    pub monthly_cap_eur: Option<f64>,
}

fn default_cores() -> u32 {
    2
}

/// The seed VM catalogue (Hetzner cpx types, prices from the original repository).
pub fn default_catalogue() -> Vec<ServerType> {
    let t = |name: &str, ram_mb, cores, hourly_eur: f64| ServerType {
        name: name.to_string(),
        ram_mb,
        cores,
        hourly_eur,
        monthly_cap_eur: None,
    };
    vec![
        t("cpx22", 4096, 2, 0.0096),
        t("cpx32", 8192, 4, 0.0168),
        t("cpx42", 16384, 8, 0.0312),
        t("cpx52", 24576, 16, 0.0624),
        t("cpx62", 32768, 16, 0.1056),
        // Not in the original's list: without it a 32 GB server (the xlarge tier) fits no
        // type once the reserve is taken off. Price is Hetzner's ccx43 list price.
        t("ccx43", 65536, 16, 0.1728),
    ]
}
