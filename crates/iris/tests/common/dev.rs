//! One logged-in, connected SDK device ([`Dev`]). Defined in this crate rather than the kit
//! because test files add methods of their own to it (group messages, presence pushes).

use iris_client::api::Credentials;
use iris_client::pb::{self, GroupEventType};
use iris_client::{Client, ClientConfig, Events};
use iris_testkit_server::{connect, login, recv_until};

/// One logged-in, connected device.
pub struct Dev {
    /// What it logged in with.
    pub creds: Credentials,
    /// Its SDK client.
    pub client: Client,
    /// Its event stream.
    pub events: Events,
}

impl Dev {
    /// Logs in `phone` (a new device) and connects it.
    pub async fn new(url: &str, phone: &str) -> Self {
        let creds = login(url, phone, "d").await;
        let (client, events) = connect(url, &creds).await;
        Self { creds, client, events }
    }

    /// Like [`Dev::new`], but refusals are not retried, so they reach the test at once.
    pub async fn without_retries(url: &str, phone: &str) -> Self {
        let creds = login(url, phone, "d").await;
        Self::without_retries_with(url, creds).await
    }

    /// Connects an already logged-in device whose refusals are not retried.
    pub async fn without_retries_with(url: &str, creds: Credentials) -> Self {
        let mut config = ClientConfig::new(url, creds.clone());
        config.retry.max_attempts = 1;
        let (client, events) = Client::connect(config).await.expect("connect");
        Self { creds, client, events }
    }

    /// The device's account id.
    pub fn id(&self) -> u64 {
        self.creds.account_id
    }

    /// Group events until one of `kind` arrives, acking everything on the way.
    pub async fn group_event(&mut self, kind: GroupEventType) -> pb::GroupEvent {
        let is_kind = |e: &iris_client::Event| e.group_event().is_some_and(|g| g.r#type == kind as i32);
        let e = recv_until(&self.client, &mut self.events, is_kind).await;
        e.group_event().unwrap().clone()
    }
}
