//! `iris reply`, `iris forward`, `iris edit`, `iris delete` and `iris react`: message actions,
//! one JSON line per stored message or action. Targets are server message ids, as `iris send`,
//! `iris group send` and `iris recv` print them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use iris_client::pb::{self, MessageActionType, SendStatus};
use iris_client::{Client, Conversation, E2e};
use prost::Message as _;
use serde_json::{json, Value};

use super::one_shot::{account_of, accounts_of, CommonArgs};

/// Flags of the actions on one message.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Server message id of the message acted on.
    #[arg(long = "msg")]
    pub msg: u64,
    /// Edits and reactions, encrypted: the 1:1 conversation of the message (the other side's
    /// phone), when this device has not seen it.
    #[arg(long, conflicts_with = "group")]
    pub to: Option<String>,
    /// Edits and reactions, encrypted: the group of the message, when this device has not seen it.
    #[arg(long)]
    pub group: Option<u64>,
}

/// Flags of `iris reply`.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("chat").required(true).args(["to", "group"]))]
pub struct ReplyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Server message id of the message replied to (of the same conversation).
    #[arg(long = "msg")]
    pub msg: u64,
    /// The 1:1 conversation: the other side's phone number (E.164).
    #[arg(long)]
    pub to: Option<String>,
    /// The group conversation.
    #[arg(long)]
    pub group: Option<u64>,
    /// The text; several words are joined with spaces.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub text: Vec<String>,
}

/// Flags of `iris forward`.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("chats").required(true).multiple(true).args(["to", "groups"]))]
pub struct ForwardArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// People to forward to (E.164), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Groups to forward to, comma-separated (people and groups together: at most 5).
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<u64>,
    /// Forward a received message's media: the `forward_with` file `iris recv --save-dir`
    /// wrote for it. Nothing is uploaded again; the text, if given, replaces the caption.
    #[arg(long)]
    pub media: Option<PathBuf>,
    /// The text; several words are joined with spaces.
    #[arg(required_unless_present = "media", num_args = 1.., allow_hyphen_values = true)]
    pub text: Vec<String>,
}

/// The ending of the files `iris recv --save-dir` writes for `iris forward --media`
/// (`<server_msg_id>.media`).
const FORWARDABLE_SUFFIX: &str = ".media";

/// Writes what `iris forward --media` needs to forward a received message's media without
/// uploading it again: its `MediaMessage` (references, keys, caption) as stored in the
/// payload, in `dir/<server_msg_id>.media` (read back by [`Forwardable::read`]). It holds the
/// media's keys, like the saved files beside it hold their plaintext.
pub fn save_forwardable(server_msg_id: u64, media: &pb::MediaMessage, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{server_msg_id}{FORWARDABLE_SUFFIX}"));
    std::fs::write(&path, media.encode_to_vec())?;
    Ok(path)
}

/// A message's media to forward, read from its `forward_with` file.
struct Forwardable {
    /// The message's server id, from the file's name (0 when renamed): names the forwarded
    /// message to the server's forwarding limit.
    server_msg_id: u64,
    media: pb::MediaMessage,
}

impl Forwardable {
    /// Reads `path`; `caption`, when not empty, replaces the original one.
    fn read(path: &Path, caption: String) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut media = pb::MediaMessage::decode(&bytes[..])
            .ok()
            .filter(|m| !m.media.is_empty())
            .with_context(|| format!("{} is not a file `iris recv --save-dir` wrote", path.display()))?;
        if !caption.is_empty() {
            media.caption = caption;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let server_msg_id = name.strip_suffix(FORWARDABLE_SUFFIX).and_then(|id| id.parse().ok()).unwrap_or(0);
        Ok(Self { server_msg_id, media })
    }
}

/// Flags of `iris edit`.
#[derive(clap::Args, Debug)]
pub struct EditArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The new text; several words are joined with spaces.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub text: Vec<String>,
}

/// Flags of `iris react`.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("reaction").required(true).args(["emoji", "remove"]))]
pub struct ReactArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The reaction (at most 32 bytes).
    pub emoji: Option<String>,
    /// Remove my reaction instead.
    #[arg(long)]
    pub remove: bool,
}

/// Runs `iris reply`; prints the stored reply like `iris send` (plus `reply_to_server_msg_id`).
pub async fn reply(client: &Client, a: &ReplyArgs) -> anyhow::Result<Vec<Value>> {
    let text = a.text.join(" ").into_bytes();
    let (sent, chat) = match (&a.to, a.group) {
        (Some(phone), _) => (client.reply(account_of(client, phone).await?, a.msg, text).await?, json!(null)),
        (None, Some(group)) => (client.group_reply(group, a.msg, text).await?, json!(group)),
        (None, None) => anyhow::bail!("--to or --group is required"),
    };
    let mut line = sent_json(&sent);
    line["reply_to_server_msg_id"] = a.msg.into();
    if !chat.is_null() {
        line["group_id"] = chat;
    }
    Ok(vec![line])
}

/// Runs `iris forward`; one line per chat, people first, each with where it went.
pub async fn forward(client: &Client, a: &ForwardArgs) -> anyhow::Result<Vec<Value>> {
    let to = accounts_of(client, &a.to).await?;
    let text = a.text.join(" ");
    let results = match &a.media {
        Some(path) => {
            let f = Forwardable::read(path, text)?;
            let ids = iris_client::media::ids_of(&f.media);
            client.forward_media(f.server_msg_id, f.media.encode_to_vec(), ids, to, a.groups.clone()).await?
        }
        None => client.forward(text.into_bytes(), to, a.groups.clone()).await?,
    };
    Ok(forward_lines(&results, a, false))
}

/// One line per chat forwarded to, people first, each with where it went.
fn forward_lines(results: &[pb::SendResult], a: &ForwardArgs, encrypted: bool) -> Vec<Value> {
    let chats = a.to.iter().map(|p| ("to_phone", json!(p))).chain(a.groups.iter().map(|g| ("group_id", json!(g))));
    results
        .iter()
        .zip(chats)
        .map(|(sent, (key, chat))| {
            let mut line = sent_json(sent);
            line[key] = chat;
            line["forwarded"] = true.into();
            if encrypted {
                line["encrypted"] = true.into();
            }
            line
        })
        .collect()
}

/// Runs `iris edit`.
pub async fn edit(client: &Client, a: &EditArgs) -> anyhow::Result<Vec<Value>> {
    let done = client.edit(a.target.msg, a.text.join(" ").into_bytes()).await?;
    Ok(vec![action_json(MessageActionType::Edit, a.target.msg, &done)])
}

/// Runs `iris delete` (for everyone).
pub async fn delete(client: &Client, a: &TargetArgs) -> anyhow::Result<Vec<Value>> {
    let done = client.delete_for_everyone(a.msg).await?;
    Ok(vec![action_json(MessageActionType::Delete, a.msg, &done)])
}

/// Runs `iris react`.
pub async fn react(client: &Client, a: &ReactArgs) -> anyhow::Result<Vec<Value>> {
    let emoji = if a.remove { "" } else { a.emoji.as_deref().unwrap_or_default() };
    let done = client.react(a.target.msg, emoji).await?;
    let mut line = action_json(MessageActionType::React, a.target.msg, &done);
    line["emoji"] = emoji.into();
    Ok(vec![line])
}

/// `iris reply`, end-to-end encrypted.
pub async fn reply_encrypted(e2e: &E2e, a: &ReplyArgs) -> anyhow::Result<Vec<Value>> {
    let text = a.text.join(" ");
    let (sent, group) = match (&a.to, a.group) {
        (Some(phone), _) => (e2e.reply(account_of(e2e.client(), phone).await?, a.msg, &text).await?, None),
        (None, Some(group)) => (e2e.group_reply(group, a.msg, &text).await?, Some(group)),
        (None, None) => anyhow::bail!("--to or --group is required"),
    };
    let mut line = sent_json(&sent);
    line["reply_to_server_msg_id"] = a.msg.into();
    if let Some(group) = group {
        line["group_id"] = group.into();
    }
    line["encrypted"] = true.into();
    Ok(vec![line])
}

/// `iris forward`, end-to-end encrypted (each chat its own ciphertext).
pub async fn forward_encrypted(e2e: &E2e, a: &ForwardArgs) -> anyhow::Result<Vec<Value>> {
    let to = accounts_of(e2e.client(), &a.to).await?;
    let text = a.text.join(" ");
    let results = match &a.media {
        Some(path) => {
            let f = Forwardable::read(path, text)?;
            e2e.forward_media(&f.media, iris_client::media::ids_of(&f.media), &to, &a.groups).await?
        }
        None => e2e.forward(&text, &to, &a.groups).await?,
    };
    Ok(forward_lines(&results, a, true))
}

/// The conversation named by `--to` / `--group`, if any (else the one this device remembers).
async fn conversation_of(e2e: &E2e, a: &TargetArgs) -> anyhow::Result<Option<Conversation>> {
    Ok(match (&a.to, a.group) {
        (Some(phone), _) => Some(Conversation::Direct(account_of(e2e.client(), phone).await?)),
        (None, Some(group)) => Some(Conversation::Group(group)),
        (None, None) => None,
    })
}

/// `iris edit`, end-to-end encrypted.
pub async fn edit_encrypted(e2e: &E2e, a: &EditArgs) -> anyhow::Result<Vec<Value>> {
    let conversation = conversation_of(e2e, &a.target).await?;
    let done = e2e.edit(a.target.msg, &a.text.join(" "), conversation).await?;
    let mut line = action_json(MessageActionType::Edit, a.target.msg, &done);
    line["encrypted"] = true.into();
    Ok(vec![line])
}

/// `iris react`, end-to-end encrypted.
pub async fn react_encrypted(e2e: &E2e, a: &ReactArgs) -> anyhow::Result<Vec<Value>> {
    let emoji = if a.remove { "" } else { a.emoji.as_deref().unwrap_or_default() };
    let conversation = conversation_of(e2e, &a.target).await?;
    let done = e2e.react(a.target.msg, emoji, conversation).await?;
    let mut line = action_json(MessageActionType::React, a.target.msg, &done);
    line["emoji"] = emoji.into();
    line["encrypted"] = true.into();
    Ok(vec![line])
}

/// A stored message as `iris send` prints it.
fn sent_json(sent: &pb::SendResult) -> Value {
    json!({
        "server_msg_id": sent.server_msg_id,
        "server_ts_ms": sent.server_ts_ms,
        "status": SendStatus::try_from(sent.status)
            .unwrap_or(SendStatus::Unspecified)
            .as_str_name()
            .trim_start_matches("SEND_STATUS_"),
        "client_msg_id": sent.client_msg_id,
        "duplicate": sent.duplicate,
    })
}

/// An accepted action: `{"action","target_server_msg_id","server_msg_id","server_ts_ms"}`.
fn action_json(kind: MessageActionType, target: u64, done: &pb::ActionResult) -> Value {
    json!({
        "action": action_name(kind as i32),
        "target_server_msg_id": target,
        "server_msg_id": done.server_msg_id,
        "server_ts_ms": done.server_ts_ms,
    })
}

/// `EDIT` / `DELETE` / `REACT` for an action's wire type.
pub fn action_name(kind: i32) -> &'static str {
    MessageActionType::try_from(kind)
        .map_or("UNSPECIFIED", |t| t.as_str_name().trim_start_matches("MESSAGE_ACTION_TYPE_"))
}
