//! The live driver (see issue 5); not built yet.
