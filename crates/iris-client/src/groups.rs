//! Group operations of [`Client`]: one method per `GroupOp`, each answered by the server's
//! `GroupResult` (or a [`ClientError::Rejected`] carrying the typed error).

use bytes::Bytes;
use iris_proto::pb::{self, group_op, group_result, group_send, GroupMemberAction};
use tokio::sync::oneshot;

use crate::client::{new_client_msg_id, Client, Recipient};
use crate::driver::Command;
use crate::error::ClientError;

/// What [`Client::group_members`] does to the listed members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAction {
    /// Add them (admins only; fails with `GROUP_FULL` past the limit).
    Add,
    /// Remove them (admins only).
    Remove,
    /// Make them admins.
    Promote,
    /// Make them plain members.
    Demote,
}

impl Client {
    /// Creates a group with me as creator and `members` (ids or phones) as members.
    pub async fn group_create(
        &self,
        name: &str,
        description: &str,
        members: Vec<Recipient>,
        settings: pb::GroupSettings,
    ) -> Result<pb::GroupInfo, ClientError> {
        let (member_account_ids, member_phones) = split(members);
        let op = group_op::Op::Create(pb::GroupCreate {
            name: name.to_owned(),
            description: description.to_owned(),
            member_account_ids,
            member_phones,
            settings: Some(settings),
        });
        info(self.group_op(op).await?)
    }

    /// Changes name, description or settings (the ones given).
    pub async fn group_update(
        &self,
        group_id: u64,
        name: Option<String>,
        description: Option<String>,
        settings: Option<pb::GroupSettings>,
    ) -> Result<pb::GroupInfo, ClientError> {
        info(self.group_op(group_op::Op::Update(pb::GroupUpdate { group_id, name, description, settings })).await?)
    }

    /// Adds, removes, promotes or demotes members; returns the group afterwards.
    pub async fn group_members(
        &self,
        group_id: u64,
        action: MemberAction,
        members: Vec<Recipient>,
    ) -> Result<pb::GroupInfo, ClientError> {
        let (account_ids, phones) = split(members);
        let action = match action {
            MemberAction::Add => GroupMemberAction::Add,
            MemberAction::Remove => GroupMemberAction::Remove,
            MemberAction::Promote => GroupMemberAction::Promote,
            MemberAction::Demote => GroupMemberAction::Demote,
        } as i32;
        info(self.group_op(group_op::Op::Members(pb::GroupMembers { group_id, action, account_ids, phones })).await?)
    }

    /// Leaves a group.
    pub async fn group_leave(&self, group_id: u64) -> Result<(), ClientError> {
        self.group_op(group_op::Op::Leave(pb::GroupLeave { group_id })).await.map(drop)
    }

    /// The group with its roster (pending requests too, for admins).
    pub async fn group_info(&self, group_id: u64) -> Result<pb::GroupInfo, ClientError> {
        info(self.group_op(group_op::Op::Info(pb::GroupInfoRequest { group_id })).await?)
    }

    /// The groups I am a member of.
    pub async fn group_list(&self) -> Result<Vec<pb::GroupInfo>, ClientError> {
        match self.group_op(group_op::Op::List(pb::GroupListRequest {})).await? {
            group_result::Result::List(l) => Ok(l.groups),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates (or replaces) the invite link token; `revoke` removes it (returns "").
    pub async fn group_invite(&self, group_id: u64, revoke: bool) -> Result<String, ClientError> {
        match self.group_op(group_op::Op::Invite(pb::GroupInvite { group_id, revoke })).await? {
            group_result::Result::Invite(link) => Ok(link.token),
            other => Err(unexpected(&other)),
        }
    }

    /// Joins by invite token: `Some(info)` when admitted, `None` when waiting for approval.
    pub async fn group_join(&self, token: &str) -> Result<Option<pb::GroupInfo>, ClientError> {
        match self.group_op(group_op::Op::Join(pb::GroupJoin { token: token.to_owned() })).await? {
            group_result::Result::Info(i) => Ok(Some(i)),
            group_result::Result::DoneGroupId(_) => Ok(None),
            other => Err(unexpected(&other)),
        }
    }

    /// Approves (or, with `reject`, refuses) pending join requests.
    pub async fn group_approve(
        &self,
        group_id: u64,
        account_ids: Vec<u64>,
        reject: bool,
    ) -> Result<pb::GroupInfo, ClientError> {
        info(self.group_op(group_op::Op::Approve(pb::GroupApprove { group_id, account_ids, reject })).await?)
    }

    /// Sends one payload to every member device (stored once by the server).
    pub async fn group_send(&self, group_id: u64, payload: impl Into<Bytes>) -> Result<pb::SendResult, ClientError> {
        let body = group_send::Body::Payload(payload.into());
        self.group_send_message(pb::GroupSend {
            group_id,
            client_msg_id: new_client_msg_id(),
            body: Some(body),
            ..Default::default()
        })
        .await
    }

    /// Sends a fully built `GroupSend` (per-device payloads, a chosen `client_msg_id`).
    pub async fn group_send_message(&self, msg: pb::GroupSend) -> Result<pb::SendResult, ClientError> {
        match self.group_op(group_op::Op::Send(msg)).await? {
            group_result::Result::Sent(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells the group's senders that the person read these messages.
    pub async fn group_read(&self, group_id: u64, server_msg_ids: Vec<u64>) -> Result<(), ClientError> {
        self.group_op(group_op::Op::Read(pb::GroupRead { group_id, server_msg_ids })).await.map(drop)
    }

    /// Per-member delivered/read times of one of my group messages.
    pub async fn group_receipt_detail(
        &self,
        group_id: u64,
        server_msg_id: u64,
    ) -> Result<pb::GroupReceiptDetail, ClientError> {
        let op = group_op::Op::ReceiptDetail(pb::GroupReceiptDetailRequest { group_id, server_msg_id });
        match self.group_op(op).await? {
            group_result::Result::ReceiptDetail(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs any group operation and returns the server's result.
    pub async fn group_op(&self, op: group_op::Op) -> Result<group_result::Result, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Group { op: pb::GroupOp { op: Some(op) }, reply }).await?;
        let result = answer.await.map_err(|_| self.stopped())??;
        result.result.ok_or_else(|| ClientError::Protocol("empty group result".into()))
    }
}

fn split(members: Vec<Recipient>) -> (Vec<u64>, Vec<String>) {
    let (mut ids, mut phones) = (Vec::new(), Vec::new());
    for m in members {
        match m {
            Recipient::Account(id) => ids.push(id),
            Recipient::Phone(p) => phones.push(p),
        }
    }
    (ids, phones)
}

fn info(result: group_result::Result) -> Result<pb::GroupInfo, ClientError> {
    match result {
        group_result::Result::Info(i) => Ok(i),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(result: &group_result::Result) -> ClientError {
    ClientError::Protocol(format!("unexpected group result: {result:?}"))
}
