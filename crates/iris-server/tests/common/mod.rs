//! The server-level test kit, as these tests have always imported it (`mod common; use
//! common::*;`): everything lives in `iris-testkit-server`, shared with the `iris` crate's
//! tests. Boots a real server in-process on `127.0.0.1:0` and talks to it the way clients do
//! (raw frames over TCP, JSON over HTTP); waits for events, never for time.
#![allow(unused_imports)]

pub use iris_testkit_server::*;
