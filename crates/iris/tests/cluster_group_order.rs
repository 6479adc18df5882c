//! Group order across nodes (issue 20, part 2): two `iris serve` processes on the same two
//! PostgreSQL shards (no Redis: the nodes need none to order a group), a group send on node 1
//! racing a member removal on node 2, many times. The inboxes in PostgreSQL are the truth, so
//! the test reads them directly: the observers' devices never connect (nothing is acked away).

mod common;

use std::collections::HashSet;

use common::*;
use iris_client::pb::{self, inbox_item};
use iris_client::MemberAction;
use iris_testkit::postgres::PgShards;

const TOKEN_KEY: &str = "9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f5e1f0c6a7b2d4e8f";
/// Races run: each is a send on node 1 against a removal on node 2, then a re-add.
const RACES: usize = 1000;

/// One item of a member's view of the group, in inbox order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Seen {
    /// A group message, by server id.
    Message(u64),
    /// A group event: its type and the group version it announces.
    Event(i32, u64),
}

/// The group items in `device`'s inbox, in seq order, read from whichever shard holds them.
async fn inbox_of(urls: &[String], creds: &iris_client::api::Credentials, group_id: u64) -> Vec<(Seen, Vec<u64>)> {
    let mut out = Vec::new();
    for url in urls {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        let rows = client
            .query(
                "SELECT item FROM inbox WHERE account = $1 AND device = $2 ORDER BY seq",
                &[&(creds.account_id as i64), &(creds.device_id as i32)],
            )
            .await
            .expect("read the inbox");
        for row in rows {
            let bytes: Vec<u8> = row.get(0);
            let item: pb::InboxItem = iris_proto::frame::decode_body(&bytes).expect("an inbox item");
            match item.body {
                Some(inbox_item::Body::GroupMessage(m)) if m.group_id == group_id => {
                    out.push((Seen::Message(item.server_msg_id), Vec::new()));
                }
                Some(inbox_item::Body::GroupEvent(e)) if e.group_id == group_id => {
                    let version = e.info.as_ref().map_or(0, |i| i.version);
                    out.push((Seen::Event(e.r#type, version), e.account_ids));
                }
                _ => {}
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_and_a_removal_on_two_nodes_are_ordered_the_same_for_every_member() {
    // Proves: with a group send on node 1 racing the removal of a member on node 2, 1,000 times,
    // the removed member never has a message stored after its removal in its inbox, and every
    // member (on both shards) has the group's events and messages in one and the same order.
    let pg = tokio::task::spawn_blocking(|| PgShards::start(2)).await.unwrap();
    let urls = pg.urls();
    let mut nodes = Vec::new();
    for node_id in 1..=2u16 {
        let args = vec![
            "--store".into(),
            urls.join(","),
            "--node-id".into(),
            node_id.to_string(),
            "--token-key".into(),
            TOKEN_KEY.into(),
        ];
        // 2,000 member changes by one admin: the per-admin add limit (100 a minute) would make
        // the races wait for it (it did: nine minutes instead of a few seconds).
        nodes.push(Process::start_with_args("[rate_limits]\ngroup_member_adds_per_account_per_minute = 0", args).await);
    }
    let (one, two) = (nodes[0].url(), nodes[1].url());
    let admin_creds = login(&two, "+14155550301", "admin").await;
    let sender_creds = login(&one, "+14155550302", "sender").await;
    let victim = login(&one, "+14155550303", "victim").await;
    let mut observers = Vec::new();
    for phone in ["+14155550304", "+14155550305", "+14155550306", "+14155550307"] {
        observers.push(login(&one, phone, "observer").await);
    }
    let shards: HashSet<u64> = observers.iter().map(|c| (c.account_id & 0xff) % 2).collect();
    assert_eq!(shards.len(), 2, "observers on both shards");
    let (admin, _admin_events) = connect(&two, &admin_creds).await;
    let (sender, _sender_events) = connect(&one, &sender_creds).await;
    let mut members: Vec<iris_client::Recipient> = vec![sender_creds.account_id.into(), victim.account_id.into()];
    members.extend(observers.iter().map(|c| iris_client::Recipient::from(c.account_id)));
    let group = admin.group_create("race", "", members, Default::default()).await.unwrap().group_id;

    let mut sent = Vec::with_capacity(RACES);
    for i in 0..RACES {
        let (send, removal) = tokio::join!(
            sender.group_send(group, format!("m{i}")),
            admin.group_members(group, MemberAction::Remove, vec![victim.account_id.into()]),
        );
        sent.push(send.expect("the send is accepted").server_msg_id);
        removal.expect("the removal succeeds");
        admin.group_members(group, MemberAction::Add, vec![victim.account_id.into()]).await.expect("re-added");
    }

    // Every observer: all messages, and one order of events and messages shared by all.
    let reference: Vec<Seen> = inbox_of(&urls, &observers[0], group).await.into_iter().map(|(s, _)| s).collect();
    let messages: Vec<u64> =
        reference.iter().filter_map(|s| if let Seen::Message(id) = s { Some(*id) } else { None }).collect();
    assert_eq!(messages.len(), RACES, "every message reached the observer once");
    assert_eq!(messages.iter().collect::<HashSet<_>>(), sent.iter().collect::<HashSet<_>>());
    for observer in &observers[1..] {
        let seen: Vec<Seen> = inbox_of(&urls, observer, group).await.into_iter().map(|(s, _)| s).collect();
        assert!(seen == reference, "observer {} saw another order", observer.phone);
    }

    // The victim: never a message while removed, and its items in the observers' order.
    let victims = inbox_of(&urls, &victim, group).await;
    let (mut member, mut got, mut after_removal) = (false, 0, 0);
    for (seen, accounts) in &victims {
        match seen {
            Seen::Event(t, _) if *t == pb::GroupEventType::Created as i32 => member = true,
            Seen::Event(t, _)
                if *t == pb::GroupEventType::MembersAdded as i32 && accounts.contains(&victim.account_id) =>
            {
                member = true;
            }
            Seen::Event(t, _)
                if *t == pb::GroupEventType::MembersRemoved as i32 && accounts.contains(&victim.account_id) =>
            {
                member = false;
            }
            Seen::Message(_) if member => got += 1,
            Seen::Message(_) => after_removal += 1,
            _ => {}
        }
    }
    assert_eq!(after_removal, 0, "the removed member got {after_removal} messages sent after its removal");
    let mine: HashSet<Seen> = victims.iter().map(|(s, _)| *s).collect();
    let expected: Vec<Seen> = reference.iter().copied().filter(|s| mine.contains(s)).collect();
    assert_eq!(victims.iter().map(|(s, _)| *s).collect::<Vec<_>>(), expected, "the victim's order is the others'");
    // Both outcomes happened: the two operations really raced.
    assert!(got > 0 && got < RACES, "the victim got {got} of {RACES} messages: no race took place");
    eprintln!("victim received {got} of {RACES} raced messages");
}
