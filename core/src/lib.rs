//! conductor-core: the pure fleet orchestration engine.
//!
//! [`Conductor`] is a sans-IO state machine in the style of quinn-proto and str0m: it
//! never reads a clock, never does IO and never draws an unseeded random number. The
//! simulator (`conductor-sim`) and the live driver (`conductor-live`) drive the same
//! code through the same four calls:
//!
//! 1. `handle(now, input)` — feed one [`Input`] (a request, or the outcome of a
//!    command the driver executed); returns a synchronous [`Reply`].
//! 2. `handle_timeout(now)` — time has passed; fire what is due.
//! 3. `poll_command()` — drain until `None` after every `handle*` call; each
//!    [`Command`] is one attempt whose outcome comes back later as an input (or never:
//!    the engine keeps its own timeouts and tolerates late and duplicated reports).
//! 4. `poll_timeout()` — when to call `handle_timeout` next.
//!
//! `now` is [`Millis`] and must not go backwards. Same inputs at the same times give
//! the same commands, bit for bit.

pub mod config;
pub mod engine;
pub mod fleet;
mod idmap;
pub mod invariants;
pub mod io;
pub mod log;
pub mod model;
pub mod node;
pub mod policy;
pub mod queue;
mod sorted;
pub mod time;
mod timers;

pub use config::Config;
pub use engine::{Conductor, Counters, ServerStatus, Timer};
pub use io::*;
pub use model::*;
pub use node::{Health, Lifecycle, Node, NodeSpec, NodeStatus};
pub use time::Millis;
