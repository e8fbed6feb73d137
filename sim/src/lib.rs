//! The simulator (see issue 3).
