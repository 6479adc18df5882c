//! Message actions end to end through the SDK against a real server with a manual clock: edit
//! and delete windows, who may edit or delete (group admins included), reactions replacing and
//! removing each other, the forward limit, and reply validation.

mod common;

use common::*;
use iris_client::pb::{self, ErrorCode, MessageActionType};
use iris_client::{ClientError, Reactions, Recipient};

const MINUTE_MS: u64 = 60 * 1000;
const HOUR_MS: u64 = 60 * MINUTE_MS;

impl Dev {
    /// The next action in my inbox (skipping and acking everything else).
    async fn next_action(&mut self) -> pb::MessageAction {
        let e = recv_until(&self.client, &mut self.events, |e| e.action().is_some()).await;
        e.action().unwrap().clone()
    }

    /// The next message (1:1 or group) in my inbox.
    async fn next_item(&mut self) -> pb::InboxItem {
        recv_messages(&self.client, &mut self.events, 1).await.remove(0)
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    r.expect_err("expected a refusal").code().expect("a typed refusal")
}

#[tokio::test]
async fn edits_are_for_the_sender_within_15_minutes() {
    // Proves: the sender's edit reaches the peer as an EDIT action; the peer may not edit; the
    // window closes after 15 minutes of (manual) time.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let alice = Dev::new(&url, "+14155550201").await;
    let mut bob = Dev::new(&url, "+14155550202").await;
    let sent = alice.client.send(bob.id(), "helo").await.unwrap();
    bob.next_item().await;

    s.advance_clock_ms(14 * MINUTE_MS);
    alice.client.edit(sent.server_msg_id, "hello").await.unwrap();
    let edit = bob.next_action().await;
    assert_eq!(edit.r#type, MessageActionType::Edit as i32);
    assert_eq!(edit.target_server_msg_id, sent.server_msg_id);
    assert_eq!((edit.from_account_id, edit.peer_account_id), (alice.id(), alice.id()));
    assert_eq!(&edit.payload[..], b"hello");

    assert_eq!(code(bob.client.edit(sent.server_msg_id, "mine now").await), ErrorCode::PermissionDenied);
    s.advance_clock_ms(MINUTE_MS + 1);
    assert_eq!(code(alice.client.edit(sent.server_msg_id, "too late").await), ErrorCode::PermissionDenied);
    assert_eq!(code(alice.client.edit(12345, "no such message").await), ErrorCode::NotFound);
}

#[tokio::test]
async fn deletes_are_for_the_sender_within_48_hours() {
    // Proves: delete for everyone works for the sender until 48 h, never for the recipient, and
    // a stranger learns nothing (NOT_FOUND).
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let alice = Dev::new(&url, "+14155550211").await;
    let mut bob = Dev::new(&url, "+14155550212").await;
    let carol = Dev::new(&url, "+14155550213").await;
    let first = alice.client.send(bob.id(), "one").await.unwrap();
    let second = alice.client.send(bob.id(), "two").await.unwrap();

    assert_eq!(code(bob.client.delete_for_everyone(first.server_msg_id).await), ErrorCode::PermissionDenied);
    assert_eq!(code(carol.client.delete_for_everyone(first.server_msg_id).await), ErrorCode::NotFound);
    s.advance_clock_ms(47 * HOUR_MS);
    alice.client.delete_for_everyone(first.server_msg_id).await.unwrap();
    let delete = bob.next_action().await;
    assert_eq!(delete.r#type, MessageActionType::Delete as i32);
    assert_eq!(delete.target_server_msg_id, first.server_msg_id);
    s.advance_clock_ms(HOUR_MS + 1);
    assert_eq!(code(alice.client.delete_for_everyone(second.server_msg_id).await), ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn group_admins_may_delete_any_members_message() {
    // Proves: in a group a plain member cannot delete another's message, an admin can (every
    // member device gets the DELETE), and a non-member is refused.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let admin = Dev::new(&url, "+14155550221").await;
    let mut bob = Dev::new(&url, "+14155550222").await;
    let mut carol = Dev::new(&url, "+14155550223").await;
    let dave = Dev::new(&url, "+14155550224").await;
    let members = vec![Recipient::Account(bob.id()), Recipient::Account(carol.id())];
    let group = admin.client.group_create("g", "", members, Default::default()).await.unwrap();
    let sent = bob.client.group_send(group.group_id, "from bob").await.unwrap();

    assert_eq!(code(carol.client.delete_for_everyone(sent.server_msg_id).await), ErrorCode::PermissionDenied);
    assert_eq!(code(dave.client.delete_for_everyone(sent.server_msg_id).await), ErrorCode::PermissionDenied);
    assert_eq!(code(admin.client.edit(sent.server_msg_id, "admins cannot edit").await), ErrorCode::PermissionDenied);
    admin.client.delete_for_everyone(sent.server_msg_id).await.unwrap();
    let admin_id = admin.id();
    for dev in [&mut bob, &mut carol] {
        let delete = dev.next_action().await;
        assert_eq!(delete.r#type, MessageActionType::Delete as i32);
        assert_eq!((delete.group_id, delete.from_account_id), (group.group_id, admin_id));
    }
}

#[tokio::test]
async fn a_reaction_replaces_the_last_and_an_empty_one_removes_it() {
    // Proves: reactions are delivered in order, so folding them keeps one per account and
    // message; an empty emoji removes it; strangers cannot react.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let mut alice = Dev::new(&url, "+14155550231").await;
    let bob = Dev::new(&url, "+14155550232").await;
    let carol = Dev::new(&url, "+14155550233").await;
    let sent = alice.client.send(bob.id(), "react to me").await.unwrap();
    let target = sent.server_msg_id;

    let mut reactions = Reactions::default();
    bob.client.react(target, "👍").await.unwrap();
    bob.client.react(target, "❤️").await.unwrap();
    for _ in 0..2 {
        reactions.apply(&alice.next_action().await);
    }
    assert_eq!(reactions.of(target).into_iter().collect::<Vec<_>>(), vec![(bob.id(), "❤️".to_owned())]);
    bob.client.react(target, "").await.unwrap();
    reactions.apply(&alice.next_action().await);
    assert!(reactions.of(target).is_empty());

    assert_eq!(code(carol.client.react(target, "👀").await), ErrorCode::NotFound);
    assert_eq!(code(bob.client.react(target, &"x".repeat(33)).await), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn one_forward_reaches_at_most_5_chats() {
    // Proves: a forward to 5 chats sends each a message marked forwarded; 6 is refused; a client
    // cannot mark an ordinary send as forwarded.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let alice = Dev::new(&url, "+14155550241").await;
    let mut others = Vec::new();
    for i in 0..6 {
        others.push(Dev::new(&url, &format!("+1415555025{i}")).await);
    }
    let ids: Vec<u64> = others.iter().map(Dev::id).collect();
    assert_eq!(code(alice.client.forward("fwd", ids.clone(), vec![]).await), ErrorCode::InvalidArgument);
    let results = alice.client.forward("fwd", ids[..5].to_vec(), vec![]).await.unwrap();
    assert_eq!(results.len(), 5);
    for dev in &mut others[..5] {
        let item = dev.next_item().await;
        let Some(pb::inbox_item::Body::Message(m)) = item.body else { panic!("not a message: {item:?}") };
        assert!(m.forwarded);
        assert_eq!(&m.payload[..], b"fwd");
    }
    let msg = pb::SendMessage {
        client_msg_id: "not-really".into(),
        to_account_id: ids[5],
        body: Some(pb::send_message::Body::Payload("plain".into())),
        forwarded: true,
        ..Default::default()
    };
    alice.client.send_message(msg).await.unwrap();
    let item = others[5].next_item().await;
    let Some(pb::inbox_item::Body::Message(m)) = item.body else { panic!("not a message: {item:?}") };
    assert!(!m.forwarded);
}

#[tokio::test]
async fn a_chat_named_twice_in_a_forward_gets_one_copy() {
    // Proves: duplicate accounts and groups in one forward are sent once each, answered by one
    // result per distinct chat (copies numbered `<id>/0`, `<id>/1` in that order); nothing else
    // arrives before the next message.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let alice = Dev::new(&url, "+14155550281").await;
    let mut bob = Dev::new(&url, "+14155550282").await;
    let mut carol = Dev::new(&url, "+14155550283").await;
    let group =
        alice.client.group_create("g", "", vec![Recipient::Account(carol.id())], Default::default()).await.unwrap();
    let g = group.group_id;
    let results = alice.client.forward("fwd", vec![bob.id(), bob.id(), bob.id()], vec![g, g]).await.unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].client_msg_id.ends_with("/0") && results[1].client_msg_id.ends_with("/1"), "{results:?}");
    alice.client.send(bob.id(), "after").await.unwrap();
    alice.client.group_send(g, "after").await.unwrap();
    for dev in [&mut bob, &mut carol] {
        let first = dev.next_item().await;
        let second = dev.next_item().await;
        let payload = |item: &pb::InboxItem| match &item.body {
            Some(pb::inbox_item::Body::Message(m)) => (m.forwarded, m.payload.to_vec()),
            Some(pb::inbox_item::Body::GroupMessage(m)) => (m.forwarded, m.payload.to_vec()),
            other => panic!("not a message: {other:?}"),
        };
        assert_eq!(payload(&first), (true, b"fwd".to_vec()));
        assert_eq!(payload(&second), (false, b"after".to_vec()), "a second copy arrived");
    }
}

#[tokio::test]
async fn a_forwards_client_msg_id_leaves_room_for_its_copy_suffix() {
    // Proves: a forward's client_msg_id may take 62 bytes (each copy is `<id>/<i>`, within the
    // 64-byte limit); 63 is INVALID_ARGUMENT saying so, before anything is sent.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let bob = Dev::new(&url, "+14155550292").await;
    let alice = login(&url, "+14155550291", "raw").await;
    let mut raw = RawDevice::connect(s.tcp_addr, &alice).await;
    let forward = |request_id: u64, id_len: usize| pb::ClientOp {
        request_id,
        op: Some(pb::client_op::Op::Forward(pb::Forward {
            client_msg_id: "f".repeat(id_len),
            payload: "x".into(),
            to_account_ids: vec![bob.id()],
            group_ids: vec![],
            copies: vec![],
            forwarded_from_msg_id: 0,
            media_ids: vec![],
        })),
    };
    raw.send_ops(vec![forward(2, 62)]).await;
    let e = raw.next_event(PATIENCE).await.expect("an answer");
    let Some(pb::server_event::Event::ForwardResult(r)) = e.event else { panic!("expected ForwardResult: {e:?}") };
    assert_eq!(r.results[0].client_msg_id, format!("{}/0", "f".repeat(62)));
    raw.send_ops(vec![forward(3, 63)]).await;
    let e = raw.next_event(PATIENCE).await.expect("an answer");
    let Some(pb::server_event::Event::Error(err)) = e.event else { panic!("expected an error: {e:?}") };
    assert_eq!(err.code, ErrorCode::InvalidArgument as i32, "{err:?}");
    assert!(err.message.contains("62"), "the refusal names the limit: {err:?}");
}

#[tokio::test]
async fn replies_must_reference_a_message_of_the_same_conversation() {
    // Proves: a reply carries its reference; a reference to another conversation, to a group
    // message from 1:1 (and back) or to nothing is NOT_FOUND.
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let mut alice = Dev::new(&url, "+14155550261").await;
    let bob = Dev::new(&url, "+14155550262").await;
    let carol = Dev::new(&url, "+14155550263").await;
    let sent = alice.client.send(bob.id(), "question").await.unwrap();
    bob.client.reply(alice.id(), sent.server_msg_id, "answer").await.unwrap();
    let item = alice.next_item().await;
    let Some(pb::inbox_item::Body::Message(m)) = item.body else { panic!("not a message: {item:?}") };
    assert_eq!(m.reply_to_server_msg_id, sent.server_msg_id);

    assert_eq!(code(carol.client.reply(alice.id(), sent.server_msg_id, "x").await), ErrorCode::NotFound);
    assert_eq!(code(bob.client.reply(alice.id(), 999, "x").await), ErrorCode::NotFound);
    let group =
        alice.client.group_create("g", "", vec![Recipient::Account(bob.id())], Default::default()).await.unwrap();
    assert_eq!(code(bob.client.group_reply(group.group_id, sent.server_msg_id, "x").await), ErrorCode::NotFound);
    let in_group = alice.client.group_send(group.group_id, "in group").await.unwrap();
    bob.client.group_reply(group.group_id, in_group.server_msg_id, "ok").await.unwrap();
    assert_eq!(code(bob.client.reply(alice.id(), in_group.server_msg_id, "x").await), ErrorCode::NotFound);
}

#[tokio::test]
async fn a_message_deleted_for_everyone_takes_no_more_actions() {
    // Proves: once deleted, the server refuses edits, reactions, replies and a second delete
    // with NOT_FOUND (1:1 and group, the admin's deletion too), nothing more reaches the peer,
    // and an outsider still learns nothing (NOT_FOUND as for any other 1:1 message).
    let s = TestServer::start_with_manual_clock(|_| {}).await;
    let url = s.base_url();
    let alice = Dev::new(&url, "+14155550271").await;
    let mut bob = Dev::new(&url, "+14155550272").await;
    let carol = Dev::new(&url, "+14155550273").await;
    let sent = alice.client.send(bob.id(), "oops").await.unwrap();
    let kept = alice.client.send(bob.id(), "fine").await.unwrap();
    alice.client.delete_for_everyone(sent.server_msg_id).await.unwrap();
    assert_eq!(bob.next_action().await.r#type, MessageActionType::Delete as i32);

    let id = sent.server_msg_id;
    let refused = code(alice.client.delete_for_everyone(id).await);
    assert_eq!(refused, ErrorCode::NotFound, "a second delete");
    let err = alice.client.edit(id, "edited").await.expect_err("edit of a deleted message");
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(err.to_string().contains("deleted for everyone"), "says why: {err}");
    assert_eq!(code(bob.client.react(id, "👍").await), ErrorCode::NotFound, "a reaction");
    assert_eq!(code(bob.client.reply(alice.id(), id, "what?").await), ErrorCode::NotFound, "a reply");
    assert_eq!(code(carol.client.react(id, "👍").await), ErrorCode::NotFound, "an outsider");
    // The other message is untouched, and the next thing bob gets is its reaction.
    bob.client.react(kept.server_msg_id, "👍").await.unwrap();
    alice.client.edit(kept.server_msg_id, "fine!").await.unwrap();
    let edit = bob.next_action().await;
    assert_eq!((edit.r#type, edit.target_server_msg_id), (MessageActionType::Edit as i32, kept.server_msg_id));

    let group =
        alice.client.group_create("g", "", vec![Recipient::Account(bob.id())], Default::default()).await.unwrap();
    let by_bob = bob.client.group_send(group.group_id, "regret").await.unwrap();
    alice.client.delete_for_everyone(by_bob.server_msg_id).await.unwrap();
    assert_eq!(code(bob.client.edit(by_bob.server_msg_id, "x").await), ErrorCode::NotFound, "group edit");
    assert_eq!(code(bob.client.delete_for_everyone(by_bob.server_msg_id).await), ErrorCode::NotFound);
    let reply = bob.client.group_reply(group.group_id, by_bob.server_msg_id, "x").await;
    assert_eq!(code(reply), ErrorCode::NotFound, "group reply");
}
