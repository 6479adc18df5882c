//! The Iris client SDK: log in over HTTP, then send and receive over the framed TCP protocol.
//!
//! ```no_run
//! # async fn demo(creds: iris_proto::http::Credentials) -> Result<(), iris_client::ClientError> {
//! use iris_client::{Client, ClientConfig, Event};
//! let (client, mut events) = Client::connect(ClientConfig::new("http://127.0.0.1:7701", creds)).await?;
//! let sent = client.send("+14155550123", "hello").await?; // resolves once durably stored
//! while let Some(event) = events.next().await {
//!     if let Event::Message(item) = &event {
//!         // ... process, persist ...
//!         client.ack(item.seq);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! A background task owns the connection: it batches operations into frames, keeps the
//! heartbeat, reconnects with jittered backoff, refreshes the access token, resends unanswered
//! operations with the same `client_msg_id`, and drops redelivered inbox items, so the app sees
//! each message exactly once per client lifetime (and across restarts, if it persists
//! [`Client::last_acked_seq`] and passes it back as [`ClientConfig::resume_after_seq`]).
//!
//! End-to-end encryption sits on top: [`E2e`] wraps a [`Client`], encrypts sends per device
//! (Olm) or per group (Megolm) with vodozemac, and opens received items ([`E2e::decrypt`]).
//!
//! **Invariant:** the SDK depends on `iris-proto` (and vodozemac for encryption) only, never on
//! the server or the store.

mod actions;
pub mod admin;
mod backoff;
mod calls;
mod client;
mod config;
mod connection;
mod contacts;
mod dedup;
mod driver;
pub mod e2e;
mod error;
mod event;
mod expiry;
pub mod files;
mod groups;
mod handshake;
mod http;
mod inflight;
mod keys;
pub mod media;
mod presence;
mod push;
mod report;
mod shared;
pub mod timers;
mod tls;

pub use actions::Reactions;
pub use backoff::{after_hint, Backoff};
pub use calls::CallTarget;
pub use client::{new_client_msg_id, Client, Recipient};
pub use config::{ClientConfig, CredentialsHook, ReconnectPolicy, RetryPolicy};
pub use dedup::DedupWindow;
pub use driver::ACK_BATCH_ENTRIES;
pub use e2e::{Conversation, E2e, E2eError, Opened};
pub use error::ClientError;
pub use event::{DisconnectReason, Event, Events};
pub use groups::MemberAction;
pub use http::{HttpApi, Verified};
pub use presence::TYPING_EXPIRES_AFTER;
pub use timers::{TimerChat, TIMER_SECONDS};
pub use tls::TlsTrust;

/// The wire types and HTTP bodies, re-exported so apps need no direct `iris-proto` dependency.
pub use iris_proto::{http as api, pb};
