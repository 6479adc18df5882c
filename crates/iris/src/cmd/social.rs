//! The one-shot commands beyond messaging and groups: contacts and discovery, blocks, message
//! actions (reply, forward, edit, delete, react) and presence. Each opens the profile's device,
//! does one thing, prints its answer as JSON lines on stdout (errors as one JSON line on stderr,
//! like `send` and `group`) and saves the profile. Phones are E.164, resolved to accounts
//! through the HTTP API where the protocol wants account ids.

use serde_json::Value;

use super::presence::PresenceCommand;
use super::session::Session;
use super::{actions, contacts, one_shot, presence, timer};

/// The commands of this module, flattened into `iris`'s top level.
#[derive(clap::Subcommand, Debug)]
pub enum SocialCommand {
    /// Keep the contact list (it decides who sees my presence under "contacts" privacy).
    #[command(subcommand)]
    Contacts(contacts::ContactsCommand),
    /// Print which of these phone numbers are registered, one line each.
    Discover(contacts::DiscoverArgs),
    /// Block an account: its messages, receipts, presence and typing stop reaching me.
    Block(contacts::BlockArgs),
    /// Lift a block.
    Unblock(contacts::BlockArgs),
    /// Report an account for abuse, optionally disclosing some of its messages (10 reports
    /// from distinct accounts in a day suspend it pending review).
    Report(contacts::ReportArgs),
    /// Send a text that replies to a message of the conversation.
    Reply(actions::ReplyArgs),
    /// Send a text to at most 5 chats (people and groups) as a forward.
    Forward(actions::ForwardArgs),
    /// Replace the text of my message (within 15 minutes).
    Edit(actions::EditArgs),
    /// Delete a message for everyone (mine within 48 hours; any member's as group admin).
    Delete(actions::TargetArgs),
    /// React to a message (replacing my earlier reaction; --remove takes it back).
    React(actions::ReactArgs),
    /// Show or watch who is online, and set who may see my own presence.
    #[command(subcommand)]
    Presence(presence::PresenceCommand),
    /// Set a conversation's disappearing-messages timer: `iris timer PHONE 7d` or
    /// `iris timer --group ID off` (off, 24h, 7d, 90d).
    Timer(timer::TimerArgs),
}

/// Runs one command and prints its answer.
pub async fn run(command: SocialCommand) -> anyhow::Result<()> {
    let common = match &command {
        SocialCommand::Contacts(c) => c.common(),
        SocialCommand::Discover(a) => &a.common,
        SocialCommand::Block(a) | SocialCommand::Unblock(a) => &a.common,
        SocialCommand::Report(a) => &a.common,
        SocialCommand::Reply(a) => &a.common,
        SocialCommand::Forward(a) => &a.common,
        SocialCommand::Edit(a) => &a.target.common,
        SocialCommand::Delete(a) => &a.common,
        SocialCommand::React(a) => &a.target.common,
        SocialCommand::Timer(a) => &a.common,
        SocialCommand::Presence(PresenceCommand::Show(a)) => &a.common,
        SocialCommand::Presence(PresenceCommand::Privacy(a)) => &a.common,
        SocialCommand::Presence(PresenceCommand::Subscribe(a)) => return presence::watch(a).await,
    };
    let encrypts = matches!(
        command,
        SocialCommand::Reply(_) | SocialCommand::Forward(_) | SocialCommand::Edit(_) | SocialCommand::React(_)
    );
    one_shot::run(common, common.plaintext || !encrypts, async |session| execute(session, &command).await).await
}

async fn execute(session: &Session, command: &SocialCommand) -> anyhow::Result<Vec<Value>> {
    let client = &session.client;
    if let Some(e2e) = &session.e2e {
        match command {
            SocialCommand::Reply(a) => return actions::reply_encrypted(e2e, a).await,
            SocialCommand::Forward(a) => return actions::forward_encrypted(e2e, a).await,
            SocialCommand::Edit(a) => return actions::edit_encrypted(e2e, a).await,
            SocialCommand::React(a) => return actions::react_encrypted(e2e, a).await,
            _ => {}
        }
    }
    match command {
        SocialCommand::Contacts(c) => contacts::contacts(client, c).await,
        SocialCommand::Discover(a) => contacts::discover(client, a).await,
        SocialCommand::Block(a) => contacts::block(client, a, true).await,
        SocialCommand::Unblock(a) => contacts::block(client, a, false).await,
        SocialCommand::Report(a) => contacts::report(client, a).await,
        SocialCommand::Reply(a) => actions::reply(client, a).await,
        SocialCommand::Forward(a) => actions::forward(client, a).await,
        SocialCommand::Edit(a) => actions::edit(client, a).await,
        SocialCommand::Delete(a) => actions::delete(client, a).await,
        SocialCommand::React(a) => actions::react(client, a).await,
        SocialCommand::Presence(p) => presence::once(client, p).await,
        SocialCommand::Timer(a) => timer::set(client, a).await,
    }
}
