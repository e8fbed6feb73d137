//! Hetzner Cloud for conductor's live driver: a local API emulator and an adapter over the `hcloud` crate.

pub mod client;
pub mod emulator;

pub use client::{cloud_init, CloudError, CloudInit, CloudType, CreateServer, CreatedServer, HetznerClient};
pub use client::{ServerState, ServerStatus, INSTANCE_LABEL};
pub use emulator::{router, serve, Emulator, EmulatorConfig, Fault};
