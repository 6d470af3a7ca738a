//! Unit tests of the core through its public inputs and outputs.
