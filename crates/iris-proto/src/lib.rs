//! The Iris wire protocol: the single source of truth for every client.
//!
//! Owns the protobuf schema (`proto/iris/v1/iris.proto`, compiled at build time by protox and
//! prost), length-prefixed framing, protocol versions, default limits, error codes, media kinds and
//! their magic bytes, the JSON types of the HTTP API and phone-number validation.
//!
//! **Invariant:** this crate knows nothing of tokio, sockets or storage; it turns bytes into
//! messages and back, so every client and the server agree byte for byte.

pub mod admin;
pub mod e2e;
pub mod error;
pub mod frame;
pub mod http;
pub mod item_head;
pub mod limits;
pub mod media;
pub mod outgoing;
pub mod phone;
pub mod version;

/// Generated protobuf types of package `iris.v1` (prost structs with pbjson serde impls).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/iris.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/iris.v1.serde.rs"));
}

pub use error::ErrorCodeExt;
pub use frame::{FrameDecoder, FrameError};
pub use limits::Limits;
