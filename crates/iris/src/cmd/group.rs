//! `iris group`: create, manage and send to groups, one JSON line per answer. Group messages and
//! notices arrive through `iris recv` (rendered here, so both commands agree on the format).

use iris_client::pb::{self, inbox_item, GroupEventType, GroupReceiptType, GroupRole, InboxItem};
use iris_client::{MemberAction, Recipient};
use serde_json::{json, Value};

use super::one_shot::{self, CommonArgs};
use super::session::Session;

/// The `iris group` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group; prints `{"group_id",...}`.
    Create(CreateArgs),
    /// Add members (admins only).
    Add(MembersArgs),
    /// Remove members (admins only).
    Remove(MembersArgs),
    /// Make members admins (admins only).
    Promote(MembersArgs),
    /// Make admins plain members (admins only).
    Demote(MembersArgs),
    /// Print a group with its roster.
    Info(GroupArgs),
    /// Print the groups I am a member of, one line each.
    List(CommonArgs),
    /// Leave a group.
    Leave(GroupArgs),
    /// Create (or with --revoke remove) the group's invite link token.
    Invite(InviteArgs),
    /// Join a group by invite token.
    Join(JoinArgs),
    /// Admit (or with --reject decline) accounts waiting to join (admins only; `info` lists
    /// them as `pending_account_ids`).
    Approve(ApproveArgs),
    /// Send one text message to a group.
    Send(SendArgs),
}

/// Flags of `iris group create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Group name (1 to 100 characters).
    #[arg(long)]
    pub name: String,
    /// Group description (at most 512 characters).
    #[arg(long, default_value = "")]
    pub description: String,
    /// Members' phone numbers (E.164), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub members: Vec<String>,
    /// Only admins may send.
    #[arg(long)]
    pub announcement: bool,
    /// Only admins may edit the name, description and settings.
    #[arg(long)]
    pub admins_only_edit: bool,
    /// Joining by invite waits for an admin's approval.
    #[arg(long)]
    pub join_approval: bool,
}

/// Flags of the commands about one group.
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The group id.
    #[arg(long)]
    pub group: u64,
}

/// Flags of `iris group add|remove|promote|demote`.
#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// Phone numbers (E.164), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub members: Vec<String>,
}

/// Flags of `iris group invite`.
#[derive(clap::Args, Debug)]
pub struct InviteArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// Remove the current token instead of creating one.
    #[arg(long)]
    pub revoke: bool,
}

/// Flags of `iris group join`.
#[derive(clap::Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The invite token.
    #[arg(long)]
    pub token: String,
}

/// Flags of `iris group approve`.
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// Account ids of pending join requests, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub accounts: Vec<u64>,
    /// Decline the requests instead (the requesters are told).
    #[arg(long)]
    pub reject: bool,
}

/// Flags of `iris group send`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// The text; several words are joined with spaces.
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    pub text: Vec<String>,
}

/// Runs one group command and prints its answer as JSON lines.
pub async fn run(command: GroupCommand) -> anyhow::Result<()> {
    let common = match &command {
        GroupCommand::Create(a) => &a.common,
        GroupCommand::Add(a) | GroupCommand::Remove(a) | GroupCommand::Promote(a) | GroupCommand::Demote(a) => {
            &a.group.common
        }
        GroupCommand::Info(a) | GroupCommand::Leave(a) => &a.common,
        GroupCommand::List(a) => a,
        GroupCommand::Invite(a) => &a.group.common,
        GroupCommand::Join(a) => &a.common,
        GroupCommand::Approve(a) => &a.group.common,
        GroupCommand::Send(a) => &a.group.common,
    };
    // Only sending needs the keys; the other commands manage the group in the clear.
    let plaintext = common.plaintext || !matches!(command, GroupCommand::Send(_));
    one_shot::run(common, plaintext, async |session| execute(session, &command).await).await
}

async fn execute(session: &Session, command: &GroupCommand) -> anyhow::Result<Vec<Value>> {
    let client = &session.client;
    let phones = |list: &[String]| -> anyhow::Result<Vec<Recipient>> {
        list.iter().map(|p| Ok(Recipient::Phone(iris_proto::phone::validate(p)?))).collect()
    };
    Ok(match command {
        GroupCommand::Create(a) => {
            let settings = pb::GroupSettings {
                admins_only_send: a.announcement,
                admins_only_edit: a.admins_only_edit,
                join_approval: a.join_approval,
            };
            vec![info_json(&client.group_create(&a.name, &a.description, phones(&a.members)?, settings).await?)]
        }
        GroupCommand::Add(a) => members_json(client, a, MemberAction::Add, phones(&a.members)?).await?,
        GroupCommand::Remove(a) => members_json(client, a, MemberAction::Remove, phones(&a.members)?).await?,
        GroupCommand::Promote(a) => members_json(client, a, MemberAction::Promote, phones(&a.members)?).await?,
        GroupCommand::Demote(a) => members_json(client, a, MemberAction::Demote, phones(&a.members)?).await?,
        GroupCommand::Info(a) => vec![info_json(&client.group_info(a.group).await?)],
        GroupCommand::List(_) => client.group_list().await?.iter().map(info_json).collect(),
        GroupCommand::Leave(a) => {
            client.group_leave(a.group).await?;
            vec![json!({ "group_id": a.group, "left": true })]
        }
        GroupCommand::Invite(a) => {
            let token = client.group_invite(a.group.group, a.revoke).await?;
            vec![json!({ "group_id": a.group.group, "token": token })]
        }
        GroupCommand::Join(a) => match client.group_join(&a.token).await? {
            Some(info) => vec![info_json(&info)],
            None => vec![json!({ "pending": true })],
        },
        GroupCommand::Approve(a) => {
            vec![info_json(&client.group_approve(a.group.group, a.accounts.clone(), a.reject).await?)]
        }
        GroupCommand::Send(a) => {
            let text = a.text.join(" ");
            let sent = match &session.e2e {
                Some(e2e) => e2e.group_send_text(a.group.group, &text).await?,
                None => client.group_send(a.group.group, text.into_bytes()).await?,
            };
            vec![json!({
                "group_id": a.group.group,
                "server_msg_id": sent.server_msg_id,
                "server_ts_ms": sent.server_ts_ms,
                "status": "ACCEPTED",
                "client_msg_id": sent.client_msg_id,
                "duplicate": sent.duplicate,
                "encrypted": session.e2e.is_some(),
            })]
        }
    })
}

async fn members_json(
    client: &iris_client::Client,
    a: &MembersArgs,
    action: MemberAction,
    members: Vec<Recipient>,
) -> anyhow::Result<Vec<Value>> {
    Ok(vec![info_json(&client.group_members(a.group.group, action, members).await?)])
}

fn role_name(role: i32) -> &'static str {
    match GroupRole::try_from(role) {
        Ok(GroupRole::Creator) => "creator",
        Ok(GroupRole::Admin) => "admin",
        Ok(GroupRole::Member) => "member",
        _ => "unspecified",
    }
}

/// A group as one JSON object.
fn info_json(info: &pb::GroupInfo) -> Value {
    let s = info.settings.unwrap_or_default();
    let members: Vec<Value> = info
        .members
        .iter()
        .map(|m| json!({ "account_id": m.account_id, "phone": m.phone, "role": role_name(m.role) }))
        .collect();
    json!({
        "group_id": info.group_id,
        "name": info.name,
        "description": info.description,
        "version": info.version,
        "announcement": s.admins_only_send,
        "admins_only_edit": s.admins_only_edit,
        "join_approval": s.join_approval,
        "members": members,
        "pending_account_ids": info.pending_account_ids,
    })
}

/// A group message as `iris recv` prints it: like a 1:1 message, plus `group_id`; media (with
/// the paths in `saved`, media id → path) as for 1:1 messages.
pub fn message_json(
    item: &InboxItem,
    m: &pb::GroupMessage,
    me: u64,
    media: Option<&pb::MediaMessage>,
    saved: &std::collections::HashMap<String, std::path::PathBuf>,
) -> Option<(u64, String)> {
    let text = match media {
        Some(media) => media.caption.clone(),
        None => String::from_utf8_lossy(&m.payload).into_owned(),
    };
    let mut line = json!({
        "seq": item.seq,
        "server_msg_id": item.server_msg_id,
        "server_ts_ms": item.server_ts_ms,
        "group_id": m.group_id,
        "from_phone": m.from_phone,
        "from_account_id": m.from_account_id,
        "from_device_id": m.from_device_id,
        "text": text,
        "sent_by_me": m.from_account_id == me,
    });
    if let Some(media) = media {
        let lines: Vec<serde_json::Value> = media
            .media
            .iter()
            .map(|r| {
                let mut l = json!({
                    "media_id": r.media_id,
                    "description": iris_client::media::describe(r),
                    "mime": r.mime,
                    "size_bytes": r.size_bytes,
                });
                if let Some(path) = saved.get(&r.media_id) {
                    l["path"] = path.display().to_string().into();
                }
                l
            })
            .collect();
        line["media"] = lines.into();
    }
    if m.reply_to_server_msg_id != 0 {
        line["reply_to_server_msg_id"] = m.reply_to_server_msg_id.into();
    }
    if m.forwarded {
        line["forwarded"] = true.into();
    }
    Some((item.seq, line.to_string()))
}

/// A group change or aggregated receipt as `iris recv` prints it.
pub fn notice_json(item: &InboxItem) -> Option<(u64, String)> {
    let line = match &item.body {
        Some(inbox_item::Body::GroupEvent(e)) => json!({
            "group_event": GroupEventType::try_from(e.r#type)
                .map_or("UNSPECIFIED", |t| t.as_str_name().trim_start_matches("GROUP_EVENT_TYPE_")),
            "seq": item.seq,
            "group_id": e.group_id,
            "by_account_id": e.by_account_id,
            "account_ids": e.account_ids,
            "version": e.info.as_ref().map_or(0, |i| i.version),
        }),
        Some(inbox_item::Body::GroupReceipt(r)) => json!({
            "group_receipt": GroupReceiptType::try_from(r.r#type)
                .map_or("UNSPECIFIED", |t| t.as_str_name().trim_start_matches("GROUP_RECEIPT_TYPE_")),
            "seq": item.seq,
            "group_id": r.group_id,
            "server_msg_ids": r.server_msg_ids,
        }),
        _ => return None,
    };
    Some((item.seq, line.to_string()))
}
