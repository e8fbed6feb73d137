//! conductor-sim: a deterministic discrete-event simulator that drives the unchanged
//! core against a simulated fleet and cloud, replaying load traces.

pub mod chaos;
pub mod compare;
pub mod dense;
pub mod generate;
pub mod harness;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod world;

pub use harness::{run, RunOptions, RunResult, SimError};
