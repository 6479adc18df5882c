//! The server-level test kit, as these tests import it (`mod common; use common::*;`):
//! everything lives in `iris-testkit-server` (shared with `iris-server`'s tests): the in-process
//! [`TestServer`], SDK devices, raw devices, metrics. What only this crate can say is which
//! binary [`Process`] runs: cargo tells this package's tests where `iris` is.
#![allow(dead_code, unused_imports)]

mod compat;
mod dev;
mod load;

pub use compat::*;
pub use dev::Dev;
pub use iris_testkit_server::*;
pub use load::*;

/// The `iris` binary of this package, as cargo built it for these tests.
pub struct Iris;

impl Binary for Iris {
    const EXE: &'static str = env!("CARGO_BIN_EXE_iris");
}

/// The `iris` binary as a child process (kill -9, signals, memory), on ports of its own.
pub type Process = iris_testkit_server::Process<Iris>;
