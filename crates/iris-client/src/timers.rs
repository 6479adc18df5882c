//! Disappearing messages in the SDK: setting a conversation's timer, and the expiry every
//! item carries. The SDK keeps no message history of its own: it drops an item that arrives
//! already expired (by this device's clock) instead of handing it to the app, and apps that
//! store messages delete each one at its [`expires_at`] (`InboxItem.expires_at_ms`).

use iris_proto::pb::{self, client_op, server_event};

use crate::client::Client;
use crate::error::ClientError;
pub use crate::expiry::{expires_at, is_expired};

/// The timers a conversation may have, in seconds: off, 24 hours, 7 days, 90 days.
pub const TIMER_SECONDS: [u32; 4] = [0, 86_400, 604_800, 7_776_000];

/// Which conversation a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerChat {
    /// The 1:1 conversation with this account.
    Direct(u64),
    /// This group.
    Group(u64),
}

impl Client {
    /// Sets the disappearing-messages timer of a conversation (`seconds` one of
    /// [`TIMER_SECONDS`]; anything else is refused with `INVALID_TIMER`). Every device of the
    /// conversation gets a `TimerChanged` item ([`Event::Timer`](crate::Event::Timer)); messages
    /// sent from now on disappear `seconds` after they were sent.
    pub async fn set_timer(&self, chat: TimerChat, seconds: u32) -> Result<pb::TimerResult, ClientError> {
        let (account_id, group_id) = match chat {
            TimerChat::Direct(a) => (a, 0),
            TimerChat::Group(g) => (0, g),
        };
        match self.op(client_op::Op::SetTimer(pb::SetTimer { account_id, group_id, seconds })).await? {
            server_event::Event::TimerResult(r) => Ok(r),
            other => Err(crate::error::unexpected(&other)),
        }
    }
}
