//! Groups end to end through the SDK against a real server: the permission matrix, roster
//! convergence across devices, visibility around joins and removals, offline members, the
//! member limit under concurrent adds, announcement groups, invite links and receipts.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use iris_client::pb::{self, ErrorCode, GroupEventType, GroupReceiptType, GroupRole};
use iris_client::{Client, ClientError, Event, MemberAction, Recipient};

impl Dev {
    /// The next group message's (group, payload), acking everything on the way.
    async fn next_group_message(&mut self) -> (u64, Vec<u8>, u64) {
        let e = recv_until(&self.client, &mut self.events, |e| e.group_message().is_some()).await;
        let m = e.group_message().unwrap();
        (m.group_id, m.payload.to_vec(), e.item().unwrap().server_msg_id)
    }

    /// Group events until one reaches `version`, acking everything on the way.
    async fn events_until(&mut self, version: u64) -> Vec<pb::GroupEvent> {
        let mut got = Vec::new();
        loop {
            let e = recv_until(&self.client, &mut self.events, |e| e.group_event().is_some()).await;
            let ev = e.group_event().unwrap().clone();
            let v = ev.info.as_ref().unwrap().version;
            got.push(ev);
            if v >= version {
                return got;
            }
        }
    }
}

fn phone(i: usize) -> String {
    format!("+1415555{i:04}")
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> Result<(), ErrorCode> {
    r.map(drop).map_err(|e| e.code().unwrap_or_else(|| panic!("not a server error: {e:?}")))
}

// ------------------------------------------------------------------------------------------------
// The permission matrix: every operation × creator, admin, member, non-member, removed member
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Actor {
    Creator,
    Admin,
    Member,
    Outsider,
    Removed,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Info,
    Update,
    Add,
    Remove,
    Promote,
    Demote,
    Leave,
    Invite,
    Approve,
    Send,
    Read,
    ReceiptDetail,
    Join,
    List,
}

/// A group with one account per role, a target member, a pending join request (`pending`), an
/// invite token and a message from the creator. Admins only may edit info.
struct Fixture {
    creator: Dev,
    admin: Dev,
    member: Dev,
    outsider: Dev,
    removed: Dev,
    target: Dev,
    pending: Dev,
    group: u64,
    token: String,
    msg: u64,
}

async fn fixture(url: &str, base: usize) -> Fixture {
    let mut d = Vec::new();
    for i in 0..7 {
        d.push(Dev::new(url, &phone(base + i)).await);
    }
    let mut d = d.into_iter();
    let (creator, admin, member, outsider, removed, target, pending) = (
        d.next().unwrap(),
        d.next().unwrap(),
        d.next().unwrap(),
        d.next().unwrap(),
        d.next().unwrap(),
        d.next().unwrap(),
        d.next().unwrap(),
    );
    let settings = pb::GroupSettings { admins_only_send: false, admins_only_edit: true, join_approval: true };
    let ids = [admin.id(), member.id(), removed.id(), target.id()].map(Recipient::Account).to_vec();
    let g = creator.client.group_create("matrix", "", ids, settings).await.unwrap().group_id;
    creator.client.group_members(g, MemberAction::Promote, vec![admin.id().into()]).await.unwrap();
    creator.client.group_members(g, MemberAction::Remove, vec![removed.id().into()]).await.unwrap();
    let token = creator.client.group_invite(g, false).await.unwrap();
    assert!(pending.client.group_join(&token).await.unwrap().is_none(), "join waits for approval");
    let msg = creator.client.group_send(g, "hello").await.unwrap().server_msg_id;
    Fixture { creator, admin, member, outsider, removed, target, pending, group: g, token, msg }
}

async fn run(f: &Fixture, actor: Actor, op: Op) -> Result<(), ErrorCode> {
    let dev = match actor {
        Actor::Creator => &f.creator,
        Actor::Admin => &f.admin,
        Actor::Member => &f.member,
        Actor::Outsider => &f.outsider,
        Actor::Removed => &f.removed,
    };
    let (c, g) = (&dev.client, f.group);
    match op {
        Op::Info => code(c.group_info(g).await),
        Op::Update => code(c.group_update(g, Some("renamed".into()), None, None).await),
        Op::Add => code(c.group_members(g, MemberAction::Add, vec![f.pending.id().into()]).await),
        Op::Remove => code(c.group_members(g, MemberAction::Remove, vec![f.target.id().into()]).await),
        Op::Promote => code(c.group_members(g, MemberAction::Promote, vec![f.target.id().into()]).await),
        Op::Demote => code(c.group_members(g, MemberAction::Demote, vec![f.admin.id().into()]).await),
        Op::Leave => code(c.group_leave(g).await),
        Op::Invite => code(c.group_invite(g, false).await),
        Op::Approve => code(c.group_approve(g, vec![f.pending.id()], false).await),
        Op::Send => code(c.group_send(g, "x").await),
        Op::Read => code(c.group_read(g, vec![f.msg]).await),
        Op::ReceiptDetail => code(c.group_receipt_detail(g, f.msg).await),
        Op::Join => code(c.group_join(&f.token).await),
        Op::List => code(c.group_list().await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix() {
    // Proves: every group operation is allowed or refused (with the typed code) exactly as the
    // table says for the creator, an admin, a member, a non-member and a removed member.
    const OK: Result<(), ErrorCode> = Ok(());
    const NO: Result<(), ErrorCode> = Err(ErrorCode::PermissionDenied);
    #[rustfmt::skip]
    let table: &[(Op, [Result<(), ErrorCode>; 5])] = &[
        //                   creator admin member outsider removed
        (Op::Info,          [OK, OK, OK, NO, NO]),
        (Op::Update,        [OK, OK, NO, NO, NO]),
        (Op::Add,           [OK, OK, NO, NO, NO]),
        (Op::Remove,        [OK, OK, NO, NO, NO]),
        (Op::Promote,       [OK, OK, NO, NO, NO]),
        (Op::Demote,        [OK, OK, NO, NO, NO]),
        (Op::Leave,         [OK, OK, OK, NO, NO]),
        (Op::Invite,        [OK, OK, NO, NO, NO]),
        (Op::Approve,       [OK, OK, NO, NO, NO]),
        (Op::Send,          [OK, OK, OK, NO, NO]),
        (Op::Read,          [OK, OK, OK, NO, NO]),
        (Op::ReceiptDetail, [OK, NO, NO, NO, NO]),
        (Op::Join,          [OK, OK, OK, OK, OK]),
        (Op::List,          [OK, OK, OK, OK, OK]),
    ];
    let actors = [Actor::Creator, Actor::Admin, Actor::Member, Actor::Outsider, Actor::Removed];
    let server = TestServer::start_with(|_| {}).await;
    let mut base = 0;
    let mut failures = Vec::new();
    for (op, expected) in table {
        for (actor, want) in actors.iter().zip(expected) {
            base += 10;
            let f = fixture(&server.base_url(), base).await;
            let got = run(&f, *actor, *op).await;
            if got != *want {
                failures.push(format!("{op:?} by {actor:?}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "permission matrix mismatches:\n{}", failures.join("\n"));
    // And a group that does not exist is NOT_FOUND for everyone.
    let f = fixture(&server.base_url(), 9000).await;
    assert_eq!(code(f.creator.client.group_info(f.group + 1000).await), Err(ErrorCode::NotFound));
}

// ------------------------------------------------------------------------------------------------
// Membership, visibility, delivery
// ------------------------------------------------------------------------------------------------

/// Applies group events to a roster (account → role), as a client would.
fn apply(roster: &mut BTreeMap<u64, i32>, e: &pb::GroupEvent) {
    let (member, admin) = (GroupRole::Member as i32, GroupRole::Admin as i32);
    match GroupEventType::try_from(e.r#type).unwrap() {
        GroupEventType::Created => {
            roster.insert(e.by_account_id, GroupRole::Creator as i32);
            roster.extend(e.account_ids.iter().map(|&a| (a, member)));
        }
        GroupEventType::MembersAdded => roster.extend(e.account_ids.iter().map(|&a| (a, member))),
        GroupEventType::MembersRemoved | GroupEventType::MemberLeft => {
            e.account_ids.iter().for_each(|a| {
                roster.remove(a);
            });
        }
        GroupEventType::AdminsPromoted => roster.extend(e.account_ids.iter().map(|&a| (a, admin))),
        GroupEventType::AdminsDemoted => roster.extend(e.account_ids.iter().map(|&a| (a, member))),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rosters_converge_across_devices() {
    // Proves: every device of every member (two devices of one account included) receives each
    // membership change as a durable inbox event, and replaying them gives the server's roster.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, &phone(1)).await;
    let mut alice2 = Dev::new(&url, &phone(1)).await;
    let mut bob = Dev::new(&url, &phone(2)).await;
    let carol = Dev::new(&url, &phone(3)).await;
    let dave = Dev::new(&url, &phone(4)).await;
    let c = &alice.client;
    let g = c.group_create("team", "", vec![bob.id().into()], Default::default()).await.unwrap().group_id;
    c.group_members(g, MemberAction::Add, vec![carol.id().into(), dave.id().into()]).await.unwrap();
    c.group_members(g, MemberAction::Promote, vec![bob.id().into()]).await.unwrap();
    bob.client.group_members(g, MemberAction::Remove, vec![dave.id().into()]).await.unwrap();
    c.group_leave(g).await.unwrap();
    let info = bob.client.group_info(g).await.unwrap();
    let want: BTreeMap<u64, i32> = info.members.iter().map(|m| (m.account_id, m.role)).collect();
    assert_eq!(want.len(), 2, "bob and carol remain: {info:?}");
    let bob_id = bob.id();
    for dev in [&mut alice, &mut alice2, &mut bob] {
        let mut roster = BTreeMap::new();
        for e in dev.events_until(info.version).await {
            apply(&mut roster, &e);
        }
        if dev.id() == bob_id {
            assert_eq!(roster, want, "bob's device replays to the server's roster");
        } else {
            assert!(!roster.contains_key(&dev.id()), "alice's devices saw her leave");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_only_what_was_sent_while_they_were_members() {
    // Proves: a new member gets nothing sent before it joined, a removed member nothing sent
    // after its removal; an offline new member gets what it should when it connects.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(1)).await;
    let mut bob = Dev::new(&url, &phone(2)).await;
    let carol_creds = login(&url, &phone(3), "c").await;
    let a = &alice.client;
    let g = a.group_create("vis", "", vec![bob.id().into()], Default::default()).await.unwrap().group_id;
    a.group_send(g, "before carol").await.unwrap();
    a.group_members(g, MemberAction::Add, vec![carol_creds.account_id.into()]).await.unwrap();
    a.group_send(g, "with everyone").await.unwrap();
    a.group_members(g, MemberAction::Remove, vec![bob.id().into()]).await.unwrap();
    a.group_send(g, "after bob").await.unwrap();
    assert_eq!(bob.next_group_message().await.1, b"before carol");
    assert_eq!(bob.next_group_message().await.1, b"with everyone");
    expect_no_message(&mut bob.events, Duration::from_millis(300)).await;
    let (cc, ce) = connect(&url, &carol_creds).await;
    let mut carol = Dev { creds: carol_creds, client: cc, events: ce };
    assert_eq!(carol.next_group_message().await.1, b"with everyone");
    assert_eq!(carol.next_group_message().await.1, b"after bob");
    expect_no_message(&mut carol.events, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_members_receive_at_reconnect_even_after_a_restart() {
    // Proves: group messages to an offline member (stored once, referenced from its inbox) are
    // delivered with their payloads when it connects, also after a server restart; the sender's
    // other device gets them too.
    let mut server = TestServer::start().await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(1)).await;
    let bob_creds = login(&url, &phone(2), "b").await;
    let alice2_creds = login(&url, &phone(1), "a2").await;
    let g = alice.client.group_create("off", "", vec![bob_creds.account_id.into()], Default::default()).await;
    let g = g.unwrap().group_id;
    for i in 0..5 {
        alice.client.group_send(g, format!("m{i}")).await.unwrap();
    }
    alice.client.close().await;
    server.restart().await;
    for creds in [bob_creds, alice2_creds] {
        let (client, events) = connect(&url, &creds).await;
        let mut dev = Dev { creds, client, events };
        for i in 0..5 {
            let (group, payload, _) = dev.next_group_message().await;
            assert_eq!((group, payload), (g, format!("m{i}").into_bytes()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_member_limit_holds_under_concurrent_adds() {
    // Proves: with limits.group_members_max = 8, twenty concurrent adds leave exactly 8 members;
    // the others fail with GROUP_FULL.
    let server = TestServer::start_with(|c| c.limits.group_members_max = 8).await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(0)).await;
    let mut ids = Vec::new();
    for i in 1..=20 {
        ids.push(login(&url, &phone(i), "x").await.account_id);
    }
    let g = alice.client.group_create("full", "", vec![], Default::default()).await.unwrap().group_id;
    let adds: Vec<_> = ids
        .iter()
        .map(|&id| {
            let c = alice.client.clone();
            tokio::spawn(async move { code(c.group_members(g, MemberAction::Add, vec![id.into()]).await) })
        })
        .collect();
    let mut results = Vec::new();
    for add in adds {
        results.push(add.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 7);
    assert!(results.iter().all(|r| r.is_ok() || *r == Err(ErrorCode::GroupFull)), "{results:?}");
    assert_eq!(alice.client.group_info(g).await.unwrap().members.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcement_groups_take_messages_from_admins_only() {
    // Proves: in an admins-only group a member's send is PERMISSION_DENIED, an admin's arrives,
    // and a promoted member may send.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(1)).await;
    let mut bob = Dev::new(&url, &phone(2)).await;
    let settings = pb::GroupSettings { admins_only_send: true, ..Default::default() };
    let g = alice.client.group_create("news", "", vec![bob.id().into()], settings).await.unwrap().group_id;
    assert_eq!(code(bob.client.group_send(g, "me too").await), Err(ErrorCode::PermissionDenied));
    alice.client.group_send(g, "news").await.unwrap();
    assert_eq!(bob.next_group_message().await.1, b"news");
    alice.client.group_members(g, MemberAction::Promote, vec![bob.id().into()]).await.unwrap();
    bob.client.group_send(g, "now I may").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_links_admit_directly_or_after_approval() {
    // Proves: a token admits a user; a revoked token is NOT_FOUND; with join approval the user
    // waits, admins see the request, approval admits it and it receives later messages.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(1)).await;
    let bob = Dev::new(&url, &phone(2)).await;
    let mut carol = Dev::new(&url, &phone(3)).await;
    let dave = Dev::new(&url, &phone(4)).await;
    let a = &alice.client;
    let g = a.group_create("open", "", vec![], Default::default()).await.unwrap().group_id;
    let token = a.group_invite(g, false).await.unwrap();
    let joined = bob.client.group_join(&token).await.unwrap().expect("admitted at once");
    assert_eq!(joined.members.len(), 2);
    a.group_invite(g, true).await.unwrap();
    assert_eq!(code(dave.client.group_join(&token).await), Err(ErrorCode::NotFound));
    let settings = pb::GroupSettings { join_approval: true, ..Default::default() };
    a.group_update(g, None, None, Some(settings)).await.unwrap();
    let token = a.group_invite(g, false).await.unwrap();
    assert!(carol.client.group_join(&token).await.unwrap().is_none(), "carol waits for approval");
    assert_eq!(a.group_info(g).await.unwrap().pending_account_ids, vec![carol.id()]);
    assert!(bob.client.group_info(g).await.unwrap().pending_account_ids.is_empty(), "members do not see requests");
    let info = a.group_approve(g, vec![carol.id()], false).await.unwrap();
    assert_eq!(info.members.len(), 3);
    a.group_send(g, "welcome").await.unwrap();
    assert_eq!(carol.next_group_message().await.1, b"welcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_join_request_is_announced_to_the_requester_and_the_members() {
    // Proves: refusing a request sends JOIN_DECLINED (by the admin, naming the requester) to the
    // requester and to every member, as JOIN_REQUESTED was; the request leaves GroupInfo, and
    // the requester may ask again.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, &phone(1)).await;
    let mut bob = Dev::new(&url, &phone(2)).await;
    let mut carol = Dev::new(&url, &phone(3)).await;
    let settings = pb::GroupSettings { join_approval: true, ..Default::default() };
    let g = alice.client.group_create("closed", "", vec![bob.id().into()], settings).await.unwrap().group_id;
    let token = alice.client.group_invite(g, false).await.unwrap();
    assert!(carol.client.group_join(&token).await.unwrap().is_none(), "carol waits for approval");
    carol.group_event(GroupEventType::JoinRequested).await;
    let info = alice.client.group_approve(g, vec![carol.id()], true).await.unwrap();
    assert!(info.pending_account_ids.is_empty());
    let (admin, requester) = (alice.id(), carol.id());
    for dev in [&mut alice, &mut bob, &mut carol] {
        let e = dev.group_event(GroupEventType::JoinDeclined).await;
        assert_eq!((e.group_id, e.by_account_id, e.account_ids), (g, admin, vec![requester]));
    }
    assert_eq!(code(carol.client.group_info(g).await), Err(ErrorCode::PermissionDenied), "still not a member");
    assert!(carol.client.group_join(&token).await.unwrap().is_none(), "a new request waits again");
    assert_eq!(alice.client.group_info(g).await.unwrap().pending_account_ids, vec![requester]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_token_guesses_are_rate_limited_per_account() {
    // Proves: joins count against `group_join_attempts_per_account_per_hour` whether the token is
    // right or wrong; past it even the right token is RATE_LIMITED with a wait, while another
    // account still joins.
    let server = TestServer::start_with(|c| c.rate_limits.group_join_attempts_per_account_per_hour = 3).await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(1)).await;
    let mallory = Dev::without_retries(&url, &phone(2)).await;
    let bob = Dev::new(&url, &phone(3)).await;
    let g = alice.client.group_create("open", "", vec![], Default::default()).await.unwrap().group_id;
    let token = alice.client.group_invite(g, false).await.unwrap();
    for guess in 0..3 {
        let wrong = format!("{guess:032x}");
        assert_eq!(code(mallory.client.group_join(&wrong).await), Err(ErrorCode::NotFound));
    }
    let refused = mallory.client.group_join(&token).await.expect_err("the fourth attempt within the hour");
    assert_eq!(refused.code(), Some(ErrorCode::RateLimited), "{refused:?}");
    assert!(refused.retry_after_ms().is_some_and(|ms| ms > 60_000), "{refused:?}");
    assert!(bob.client.group_join(&token).await.unwrap().is_some(), "another account is not limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_aggregate_for_the_sender() {
    // Proves: the sender's devices get DELIVERED_TO_ALL once every member's device acked, and
    // READ_BY_ALL once every member read; the detail lists each member's times.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let mut alice = Dev::new(&url, &phone(1)).await;
    let mut bob = Dev::new(&url, &phone(2)).await;
    let mut carol = Dev::new(&url, &phone(3)).await;
    let members = vec![bob.id().into(), carol.id().into()];
    let g = alice.client.group_create("rcpt", "", members, Default::default()).await.unwrap().group_id;
    let sent = alice.client.group_send(g, "hi").await.unwrap().server_msg_id;
    bob.next_group_message().await;
    carol.next_group_message().await;
    let aggregated = |t: GroupReceiptType| {
        move |e: &Event| e.group_receipt().is_some_and(|r| r.r#type == t as i32 && r.server_msg_ids == [sent])
    };
    recv_until(&alice.client, &mut alice.events, aggregated(GroupReceiptType::DeliveredToAll)).await;
    let detail = alice.client.group_receipt_detail(g, sent).await.unwrap();
    assert_eq!(detail.members.len(), 2);
    assert!(detail.members.iter().all(|m| m.delivered_at_ms > 0 && m.read_at_ms == 0), "{detail:?}");
    bob.client.group_read(g, vec![sent]).await.unwrap();
    carol.client.group_read(g, vec![sent]).await.unwrap();
    recv_until(&alice.client, &mut alice.events, aggregated(GroupReceiptType::ReadByAll)).await;
    let detail = alice.client.group_receipt_detail(g, sent).await.unwrap();
    assert!(detail.members.iter().all(|m| m.read_at_ms > 0), "{detail:?}");
}

// ------------------------------------------------------------------------------------------------
// Roles, limits and validation
// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_last_admin_leaves_the_longest_standing_member_becomes_admin() {
    // Proves: the creator leaving a group without other admins promotes the member who joined
    // first (not a later one), and members hear it as ADMINS_PROMOTED.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(1)).await;
    let mut bob = Dev::new(&url, &phone(2)).await;
    let carol = Dev::new(&url, &phone(3)).await;
    let a = &alice.client;
    let g = a.group_create("succession", "", vec![bob.id().into()], Default::default()).await.unwrap().group_id;
    a.group_members(g, MemberAction::Add, vec![carol.id().into()]).await.unwrap();
    a.group_leave(g).await.unwrap();
    let info = carol.client.group_info(g).await.unwrap();
    let roles: BTreeMap<u64, i32> = info.members.iter().map(|m| (m.account_id, m.role)).collect();
    assert_eq!(roles[&bob.id()], GroupRole::Admin as i32);
    assert_eq!(roles[&carol.id()], GroupRole::Member as i32);
    let promoted = |e: &Event| e.group_event().is_some_and(|e| e.r#type == GroupEventType::AdminsPromoted as i32);
    let e = recv_until(&bob.client, &mut bob.events, promoted).await;
    let e = e.group_event().unwrap();
    assert_eq!((e.account_ids.as_slice(), e.info.as_ref().unwrap().version), (&[bob.id()][..], info.version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_rate_limits_and_field_limits_are_typed_errors() {
    // Proves: group creations and member adds per account are rate limited (RATE_LIMITED with a
    // wait), and names over 100 / descriptions over 512 characters are INVALID_ARGUMENT.
    let server = TestServer::start_with(|c| {
        c.rate_limits.group_creations_per_account_per_hour = 2;
        c.rate_limits.group_member_adds_per_account_per_minute = 3;
    })
    .await;
    let url = server.base_url();
    let creds = login(&url, &phone(1), "a").await;
    let mut config = iris_client::ClientConfig::new(url.clone(), creds);
    config.retry.max_attempts = 1; // see the refusals instead of waiting them out
    let (client, _events) = Client::connect(config).await.unwrap();
    let mut ids = Vec::new();
    for i in 2..=6 {
        ids.push(Recipient::Account(login(&url, &phone(i), "x").await.account_id));
    }
    let a = &client;
    let long_name = "n".repeat(101);
    assert_eq!(code(a.group_create(&long_name, "", vec![], Default::default()).await), Err(ErrorCode::InvalidArgument));
    let long_description = "d".repeat(513);
    let r = a.group_create("ok", &long_description, vec![], Default::default()).await;
    assert_eq!(code(r), Err(ErrorCode::InvalidArgument));
    let g = a.group_create("one", "", vec![], Default::default()).await.unwrap().group_id;
    a.group_create("two", "", vec![], Default::default()).await.unwrap();
    let third = a.group_create("three", "", vec![], Default::default()).await;
    assert_eq!(code(third), Err(ErrorCode::RateLimited));
    a.group_members(g, MemberAction::Add, ids[..3].to_vec()).await.unwrap();
    let err = a.group_members(g, MemberAction::Add, vec![ids[3].clone()]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    assert!(err.retry_after_ms().is_some_and(|ms| ms > 0));
    let name = "é".repeat(100);
    assert_eq!(a.group_update(g, Some(name.clone()), None, None).await.unwrap().name, name, "100 characters fit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_group_payloads_must_cover_the_member_devices() {
    // Proves: sender-key style per-device payloads are refused with STALE_DEVICES listing the
    // missing devices, and delivered each to its own device when complete.
    let server = TestServer::start_with(|_| {}).await;
    let url = server.base_url();
    let alice = Dev::new(&url, &phone(1)).await;
    let mut bob = Dev::new(&url, &phone(2)).await;
    let mut bob2 = Dev::new(&url, &phone(2)).await;
    let g = alice.client.group_create("keys", "", vec![bob.id().into()], Default::default()).await.unwrap().group_id;
    let payload = |device_id: u32| pb::DevicePayload {
        account_id: bob.id(),
        device_id,
        payload: format!("key for {device_id}").into_bytes().into(),
    };
    let send = |payloads: Vec<pb::DevicePayload>| pb::GroupSend {
        group_id: g,
        client_msg_id: iris_client::new_client_msg_id(),
        body: Some(pb::group_send::Body::PerDevice(pb::DevicePayloads { payloads })),
        ..Default::default()
    };
    let err = alice.client.group_send_message(send(vec![payload(1)])).await.unwrap_err();
    let ClientError::Rejected(e) = err else { panic!("expected a rejection, got {err:?}") };
    assert_eq!(e.error_code(), ErrorCode::StaleDevices);
    assert_eq!(e.device_mismatches[0].missing_devices, vec![2]);
    alice.client.group_send_message(send(vec![payload(1), payload(2)])).await.unwrap();
    assert_eq!(bob.next_group_message().await.1, b"key for 1");
    assert_eq!(bob2.next_group_message().await.1, b"key for 2");
}
