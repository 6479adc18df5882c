//! Cluster mode.

pub mod bus;
