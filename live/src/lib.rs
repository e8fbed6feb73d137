//! The live driver: the unchanged core against real Docker hosts (locally or over SSH),
//! Hetzner Cloud (or its local emulator), with an HTTP API, Prometheus metrics and an
//! embedded SQLite journal. See ARCHITECTURE.md for the codemap.

pub mod api;
pub mod config;
pub mod control;
pub mod docker;
pub mod driver;
pub mod hetzner;
pub mod metrics;
pub mod replay;
pub mod slp;
pub mod store;

pub use docker::{
    container_name, memory_limit_mb, volume_name, ContainerInfo, ContainerSpec, DockerError, DockerNode, Endpoint,
    Worlds, LABEL_NODE, LABEL_PLAN, LABEL_RAM_MB, LABEL_SERVER, LABEL_WORLD_HELPER,
};
