//! Former names of the in-process server in these tests, kept so tests written against them
//! still compile while they move to [`TestServer`]: `Server::start(edit)` is
//! `TestServer::start_with(edit)`, `Server::start_with_manual_clock` keeps its name,
//! `InProcess::start()` is `TestServer::start()`, `.url()` is `.base_url()`, `advance_ms` is
//! `advance_clock_ms`. New tests use `TestServer`; the compiler's deprecation warnings point at
//! what is left to move.
#![allow(deprecated)]

use iris_server::config::Config;
use iris_testkit_server::TestServer;

/// A configurable in-process server (now [`TestServer`]).
#[deprecated(note = "use TestServer::start_with / TestServer::start_with_manual_clock; .url() is .base_url()")]
pub struct Server {
    /// The server.
    pub server: TestServer,
}

impl Server {
    /// [`TestServer::start_with`].
    pub async fn start(edit: impl FnOnce(&mut Config)) -> Self {
        Self { server: TestServer::start_with(edit).await }
    }

    /// [`TestServer::start_with_manual_clock`].
    pub async fn start_with_manual_clock(edit: impl FnOnce(&mut Config)) -> Self {
        Self { server: TestServer::start_with_manual_clock(edit).await }
    }

    /// [`TestServer::base_url`].
    pub fn url(&self) -> String {
        self.server.base_url()
    }

    /// [`TestServer::advance_clock_ms`].
    pub fn advance_ms(&self, ms: u64) {
        self.server.advance_clock_ms(ms);
    }
}

/// A restartable in-process server (now [`TestServer`]).
#[deprecated(note = "use TestServer::start; .url() is .base_url()")]
pub struct InProcess {
    /// The server.
    pub server: TestServer,
}

impl InProcess {
    /// [`TestServer::start`].
    pub async fn start() -> Self {
        Self { server: TestServer::start().await }
    }

    /// [`TestServer::base_url`].
    pub fn url(&self) -> String {
        self.server.base_url()
    }

    /// [`TestServer::restart`].
    pub async fn restart(&mut self) {
        self.server.restart().await;
    }
}
