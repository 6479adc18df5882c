//! The frames behind the fixtures: one per operation and event (every group operation, group
//! result and inbox entry included), with realistic values: ids past 2^53 (JSON strings), UTF-8
//! payloads (base64 in JSON, octal escapes in the text form) and every enum by name.
//!
//! Adding a case: add it here, run with `IRIS_BLESS=1`, commit the new files. Changing a case's
//! value is fine; a `.bin` that changes for the *same* value means the wire format broke.

use iris_proto::pb::{self, client_op, group_op, group_result, inbox_item, server_event};

/// A fixture's frame: what a client sends or what the server sends.
pub enum Frame {
    /// `client_<name>`: a `ClientFrame`.
    Client(pb::ClientFrame),
    /// `server_<name>`: a `ServerFrame`.
    Server(pb::ServerFrame),
}

const ALICE: u64 = 1_001;
const BOB: u64 = 1_002;
const CAROL: u64 = 1_003;
const GROUP: u64 = 4_097;
/// A server message id as the server makes them (ms ‖ counter ‖ node): far past 2^53.
const MSG_ID: u64 = 7_534_543_487_471_977_472;
const MSG_ID_2: u64 = 7_534_543_487_471_978_496;
const NOW_MS: u64 = 1_796_375_152_462;
const TOKEN: &str = "v1.eyJhIjoxMDAxLCJkIjoxLCJlIjoxNzk2Mzc4NzUyfQ.q2Vb0lqAm3E1nI9cKx8c0Q4tRkO5y6Jr1pSgDf7oUzE";
const HELLO: &[u8] = "hello 👋".as_bytes();

fn op(request_id: u64, op: client_op::Op) -> Frame {
    Frame::Client(pb::ClientFrame { ops: vec![pb::ClientOp { request_id, op: Some(op) }] })
}

fn group(request_id: u64, g: group_op::Op) -> Frame {
    op(request_id, client_op::Op::Group(pb::GroupOp { op: Some(g) }))
}

fn event(request_id: u64, e: server_event::Event) -> pb::ServerEvent {
    pb::ServerEvent { request_id, event: Some(e) }
}

fn events(events: Vec<pb::ServerEvent>) -> Frame {
    Frame::Server(pb::ServerFrame { events })
}

fn answer(request_id: u64, e: server_event::Event) -> Frame {
    events(vec![event(request_id, e)])
}

fn group_answer(request_id: u64, r: group_result::Result) -> Frame {
    answer(request_id, server_event::Event::GroupResult(pb::GroupResult { result: Some(r) }))
}

fn delivery(items: Vec<pb::InboxItem>) -> server_event::Event {
    server_event::Event::Delivery(pb::Delivery { items })
}

fn item(seq: u64, server_msg_id: u64, body: inbox_item::Body) -> pb::InboxItem {
    pb::InboxItem { seq, server_msg_id, server_ts_ms: NOW_MS, body: Some(body), expires_at_ms: 0 }
}

fn version() -> pb::ProtocolVersion {
    pb::ProtocolVersion { major: 1, minor: 0 }
}

fn hello() -> pb::Hello {
    pb::Hello {
        versions: vec![version()],
        token: TOKEN.into(),
        device_id: 1,
        capabilities: vec![],
        resume_after_seq: 41,
        receipts_unwanted: vec![],
    }
}

fn welcome() -> pb::Welcome {
    pb::Welcome {
        version: Some(version()),
        heartbeat_interval_ms: 30_000,
        limits: Some(iris_proto::Limits::default().into()),
        server_time_ms: NOW_MS,
        account_id: ALICE,
        device_id: 1,
        capabilities: vec![],
        node_id: "node-0".into(),
    }
}

fn message_to_bob() -> pb::SendMessage {
    pb::SendMessage {
        client_msg_id: "c0ffee-1".into(),
        to_account_id: BOB,
        body: Some(pb::send_message::Body::Payload(HELLO.into())),
        ..Default::default()
    }
}

fn message_from_bob(seq: u64) -> pb::InboxItem {
    item(
        seq,
        MSG_ID,
        inbox_item::Body::Message(pb::Message {
            from_account_id: BOB,
            from_device_id: 2,
            from_phone: "+14155550102".into(),
            to_account_id: ALICE,
            to_phone: "+14155550101".into(),
            payload: HELLO.into(),
            client_msg_id: "b-77".into(),
            reply_to_server_msg_id: MSG_ID_2,
            forwarded: false,
            media_ids: vec![],
        }),
    )
}

fn send_result() -> pb::SendResult {
    pb::SendResult {
        status: pb::SendStatus::Accepted as i32,
        server_msg_id: MSG_ID,
        server_ts_ms: NOW_MS,
        client_msg_id: "c0ffee-1".into(),
        duplicate: false,
    }
}

fn settings() -> pb::GroupSettings {
    pb::GroupSettings { admins_only_send: false, admins_only_edit: true, join_approval: true }
}

fn group_info() -> pb::GroupInfo {
    let member = |account_id, phone: &str, role: pb::GroupRole, joined_version| pb::GroupMember {
        account_id,
        phone: phone.into(),
        role: role as i32,
        joined_at_ms: NOW_MS,
        joined_version,
    };
    pb::GroupInfo {
        group_id: GROUP,
        name: "Climbing ⛰".into(),
        description: "Saturdays".into(),
        settings: Some(settings()),
        version: 3,
        members: vec![
            member(ALICE, "+14155550101", pb::GroupRole::Creator, 1),
            member(BOB, "+14155550102", pb::GroupRole::Member, 3),
        ],
        pending_account_ids: vec![CAROL],
        created_at_ms: NOW_MS,
    }
}

fn contact(account_id: u64, phone: &str) -> pb::Contact {
    pb::Contact { account_id, phone: phone.into() }
}

/// Every fixture by name.
pub fn all() -> Vec<(&'static str, Frame)> {
    let mut v = client();
    v.extend(client_groups());
    v.extend(server());
    v.extend(server_inbox());
    v.extend(server_groups());
    v.extend(keys());
    v.extend(push());
    v.extend(calls());
    v.extend(abuse());
    v
}

/// Abuse: a report disclosing a message, a forward naming the message it forwards, the answer.
fn abuse() -> Vec<(&'static str, Frame)> {
    use client_op::Op;
    use server_event::Event;
    let disclosed =
        pb::ReportedMessage { server_msg_id: 0x1234_5678_9abc, sent_at_ms: 1_700_000_000_000, content: HELLO.into() };
    vec![
        (
            "client_report",
            op(80, Op::Report(pb::Report { account_id: BOB, reason: "spam".into(), messages: vec![disclosed] })),
        ),
        (
            "client_forward_of",
            op(
                81,
                Op::Forward(pb::Forward {
                    client_msg_id: "fwd-11".into(),
                    payload: HELLO.into(),
                    to_account_ids: vec![CAROL],
                    group_ids: vec![],
                    copies: vec![],
                    forwarded_from_msg_id: 0x1234_5678_9abc,
                    media_ids: vec![],
                }),
            ),
        ),
        ("server_report_result", answer(80, Event::ReportResult(pb::ReportResult { report_id: 77, repeated: true }))),
    ]
}

/// Push notifications: register (every provider), unregister, test, and their answers.
fn push() -> Vec<(&'static str, Frame)> {
    use client_op::Op;
    use pb::push_op::Op as P;
    use pb::PushProvider;
    use server_event::Event;
    let push = |request_id, p| op(request_id, Op::Push(pb::PushOp { op: Some(p) }));
    let register = |provider: PushProvider, token: &str| {
        P::Register(pb::PushRegister { provider: provider as i32, token: token.into() })
    };
    let result = |request_id, r| answer(request_id, Event::PushResult(r));
    vec![
        (
            "client_push_register_webhook",
            push(70, register(PushProvider::Webhook, "https://up.example.org/UP?token=Zk9v")),
        ),
        ("client_push_register_fcm", push(71, register(PushProvider::Fcm, "fcm:APA91bH-Tq3x_9kL"))),
        ("client_push_register_apns", push(72, register(PushProvider::Apns, &"a1b2c3d4".repeat(8)))),
        ("client_push_unregister", push(73, P::Unregister(pb::PushUnregister {}))),
        ("client_push_test", push(74, P::Test(pb::PushTest {}))),
        (
            "server_push_registered",
            result(72, pb::PushResult { provider: PushProvider::Apns as i32, ..Default::default() }),
        ),
        ("server_push_unregistered", result(73, pb::PushResult::default())),
        ("server_push_tested", result(74, pb::PushResult { provider: PushProvider::Fcm as i32, sent: true, badge: 3 })),
    ]
}

/// Example keys as libolm prints them: unpadded base64 of 32-byte keys, 64-byte signatures.
const CURVE: &str = "3MYvrbTn6Pp7Ygcv71u9LjnEvQWvLw6JSzvwRkPb1Co";
const ED: &str = "Fg6Tf+3EuwKTnELT0Yb2yb+B7AaMf4+aJQ8sImS0bAg";
const SIG: &str = "pXtajHmD4Ig5dL1P/1Ol7mSbxO9oFvYbY0O8yRgC3kA1XfDZPzFJfjkE0uJ4qRAF8VzJ3Wl7xQ1rCdE4X9UeAw";
const OTK: &str = "Sa6vMQLvM8x1BrDWmBP0XcLr0ySUXBLoDBrN2t5HtE0";

fn identity() -> pb::IdentityKeys {
    pb::IdentityKeys { curve25519: CURVE.into(), ed25519: ED.into(), signature: SIG.into() }
}

fn signed(key_id: &str) -> pb::SignedKey {
    pb::SignedKey { key_id: key_id.into(), key: OTK.into(), signature: SIG.into() }
}

/// The end-to-end key directory, the per-device actions and forwards, and their inbox items.
fn keys() -> Vec<(&'static str, Frame)> {
    use client_op::Op;
    use pb::keys_op::Op as K;
    use pb::keys_result::Result as R;
    use server_event::Event;
    let keys = |request_id, k| op(request_id, Op::Keys(pb::KeysOp { op: Some(k) }));
    let result = |request_id, r| answer(request_id, Event::KeysResult(pb::KeysResult { result: Some(r) }));
    let per_device = |payloads: &[(u64, u32)]| pb::DevicePayloads {
        payloads: payloads
            .iter()
            .map(|&(account_id, device_id)| pb::DevicePayload { account_id, device_id, payload: HELLO.into() })
            .collect(),
    };
    let count = pb::KeysCount { one_time_keys: 50, fallback_key: true, identity: true, one_time_keys_max: 200 };
    vec![
        (
            "client_keys_upload",
            keys(
                50,
                K::Upload(pb::KeysUpload {
                    identity: Some(identity()),
                    one_time_keys: vec![signed("AAAAAQ"), signed("AAAAAg")],
                    fallback_key: Some(signed("AAAAAw")),
                }),
            ),
        ),
        ("client_keys_count", keys(51, K::Count(pb::KeysCountRequest {}))),
        ("client_keys_query", keys(52, K::Query(pb::KeysQuery { account_ids: vec![BOB, CAROL] }))),
        (
            "client_keys_claim",
            keys(
                53,
                K::Claim(pb::KeysClaim {
                    account_ids: vec![BOB],
                    devices: vec![pb::DeviceRef { account_id: ALICE, device_id: 2 }],
                }),
            ),
        ),
        (
            "client_action_edit_per_device",
            op(
                54,
                Op::Action(pb::SendAction {
                    r#type: pb::MessageActionType::Edit as i32,
                    target_server_msg_id: MSG_ID,
                    payload: Default::default(),
                    emoji: String::new(),
                    per_device: Some(per_device(&[(BOB, 1), (BOB, 2), (ALICE, 2)])),
                }),
            ),
        ),
        (
            "client_forward_copies",
            op(
                55,
                Op::Forward(pb::Forward {
                    client_msg_id: "fwd-10".into(),
                    payload: Default::default(),
                    to_account_ids: vec![],
                    group_ids: vec![],
                    copies: vec![
                        pb::ForwardCopy {
                            to_account_id: BOB,
                            group_id: 0,
                            body: Some(pb::forward_copy::Body::PerDevice(per_device(&[(BOB, 1), (ALICE, 2)]))),
                        },
                        pb::ForwardCopy {
                            to_account_id: 0,
                            group_id: GROUP,
                            body: Some(pb::forward_copy::Body::Payload(HELLO.into())),
                        },
                    ],
                    forwarded_from_msg_id: 0,
                    media_ids: vec![],
                }),
            ),
        ),
        ("server_keys_count", result(50, R::Count(count))),
        (
            "server_keys_devices",
            result(
                52,
                R::Devices(pb::DeviceKeysList {
                    devices: vec![
                        pb::DeviceKeys { account_id: BOB, device_id: 1, identity: Some(identity()) },
                        pb::DeviceKeys { account_id: BOB, device_id: 2, identity: None },
                    ],
                }),
            ),
        ),
        (
            "server_keys_bundles",
            result(
                53,
                R::Bundles(pb::KeyBundles {
                    bundles: vec![
                        pb::KeyBundle {
                            account_id: BOB,
                            device_id: 1,
                            identity: Some(identity()),
                            key: Some(signed("AAAAAQ")),
                            fallback: false,
                        },
                        pb::KeyBundle {
                            account_id: ALICE,
                            device_id: 2,
                            identity: Some(identity()),
                            key: Some(signed("AAAAAw")),
                            fallback: true,
                        },
                    ],
                }),
            ),
        ),
        (
            "server_error_invalid_signature",
            answer(
                50,
                Event::Error(pb::Error::new(
                    pb::ErrorCode::InvalidSignature,
                    "the signature of AAAAAQ does not verify",
                )),
            ),
        ),
        (
            "server_delivery_keys_low",
            answer(
                0,
                delivery(vec![item(
                    44,
                    MSG_ID_2,
                    inbox_item::Body::KeysLow(pb::KeysLow { one_time_keys: 9, fallback_key_used: false }),
                )]),
            ),
        ),
        (
            "server_delivery_identity_change",
            answer(
                0,
                delivery(vec![item(
                    45,
                    MSG_ID_2,
                    inbox_item::Body::IdentityChange(pb::IdentityChange {
                        account_id: BOB,
                        phone: "+14155550102".into(),
                        device_id: 3,
                        r#type: pb::IdentityChangeType::DeviceAdded as i32,
                        identity: Some(identity()),
                    }),
                )]),
            ),
        ),
        (
            "server_delivery_timer_changed",
            answer(
                0,
                delivery(vec![item(
                    46,
                    MSG_ID_2,
                    inbox_item::Body::TimerChanged(pb::TimerChanged {
                        by_account_id: BOB,
                        by_device_id: 1,
                        by_phone: "+14155550102".into(),
                        to_account_id: ALICE,
                        to_phone: "+14155550101".into(),
                        group_id: 0,
                        seconds: 604_800,
                    }),
                )]),
            ),
        ),
        (
            // A message sent while the conversation's timer was 24 h: it carries its expiry.
            "server_delivery_disappearing_message",
            answer(0, delivery(vec![pb::InboxItem { expires_at_ms: NOW_MS + 86_400_000, ..message_from_bob(47) }])),
        ),
        (
            "server_delivery_device_change",
            answer(
                0,
                delivery(vec![item(
                    46,
                    MSG_ID_2,
                    inbox_item::Body::DeviceChange(pb::DeviceChange {
                        account_id: BOB,
                        device_id: 4,
                        device_name: "laptop".into(),
                        r#type: pb::DeviceChangeType::Added as i32,
                        by_device_id: 1,
                    }),
                )]),
            ),
        ),
        (
            "server_delivery_profile_change",
            answer(
                0,
                delivery(vec![item(
                    47,
                    MSG_ID_2,
                    inbox_item::Body::ProfileChange(pb::ProfileChange {
                        account_id: BOB,
                        phone: "+14155550102".into(),
                        display_name: "Bob".into(),
                        about: "at the beach".into(),
                        photo_media_id: "ab".repeat(32),
                    }),
                )]),
            ),
        ),
    ]
}

fn client() -> Vec<(&'static str, Frame)> {
    use client_op::Op;
    vec![
        ("client_hello", op(1, Op::Hello(hello()))),
        (
            "client_hello_receipts_unwanted",
            op(
                1,
                Op::Hello(pb::Hello {
                    receipts_unwanted: vec![pb::ReceiptType::Delivered as i32, pb::ReceiptType::Read as i32],
                    ..hello()
                }),
            ),
        ),
        ("client_send_payload", op(2, Op::Send(message_to_bob()))),
        (
            "client_send_per_device",
            op(
                3,
                Op::Send(pb::SendMessage {
                    client_msg_id: "c0ffee-2".into(),
                    to_phone: "+14155550102".into(),
                    body: Some(pb::send_message::Body::PerDevice(pb::DevicePayloads {
                        payloads: vec![
                            pb::DevicePayload {
                                account_id: BOB,
                                device_id: 1,
                                payload: b"\x00olm\xff".to_vec().into(),
                            },
                            pb::DevicePayload {
                                account_id: ALICE,
                                device_id: 2,
                                payload: b"to my laptop".to_vec().into(),
                            },
                        ],
                    })),
                    reply_to_server_msg_id: MSG_ID,
                    forwarded: false,
                    to_account_id: 0,
                    media_ids: vec![],
                }),
            ),
        ),
        ("client_ack", op(4, Op::Ack(pb::Ack { up_to_seq: 42 }))),
        (
            "client_receipt",
            op(
                5,
                Op::Receipt(pb::SendReceipt {
                    r#type: pb::ReceiptType::Read as i32,
                    to_account_id: BOB,
                    server_msg_ids: vec![MSG_ID, MSG_ID_2],
                }),
            ),
        ),
        ("client_ping", op(6, Op::Ping(pb::Ping { client_time_ms: NOW_MS }))),
        ("client_sync", op(60, Op::Sync(pb::Sync {}))),
        ("client_set_timer", op(61, Op::SetTimer(pb::SetTimer { account_id: BOB, group_id: 0, seconds: 86_400 }))),
        ("client_set_group_timer", op(62, Op::SetTimer(pb::SetTimer { account_id: 0, group_id: GROUP, seconds: 0 }))),
        (
            "client_presence_subscribe",
            op(7, Op::PresenceSubscribe(pb::PresenceSubscribe { account_ids: vec![BOB, CAROL] })),
        ),
        (
            "client_presence_unsubscribe",
            op(8, Op::PresenceUnsubscribe(pb::PresenceUnsubscribe { account_ids: vec![CAROL] })),
        ),
        (
            "client_set_presence",
            op(9, Op::SetPresence(pb::SetPresence { away: true, privacy: pb::PresencePrivacy::Contacts as i32 })),
        ),
        ("client_typing", op(10, Op::Typing(pb::Typing { to_account_id: BOB, group_id: 0, typing: true }))),
        ("client_block", op(11, Op::Block(pb::BlockAccount { account_id: CAROL, unblock: false }))),
        (
            "client_action_edit",
            op(
                12,
                Op::Action(pb::SendAction {
                    r#type: pb::MessageActionType::Edit as i32,
                    target_server_msg_id: MSG_ID,
                    payload: "hello again".into(),
                    emoji: String::new(),
                    per_device: None,
                }),
            ),
        ),
        (
            "client_action_react",
            op(
                13,
                Op::Action(pb::SendAction {
                    r#type: pb::MessageActionType::React as i32,
                    target_server_msg_id: MSG_ID,
                    payload: Default::default(),
                    emoji: "👍".into(),
                    per_device: None,
                }),
            ),
        ),
        (
            "client_forward",
            op(
                14,
                Op::Forward(pb::Forward {
                    client_msg_id: "fwd-9".into(),
                    payload: HELLO.into(),
                    to_account_ids: vec![BOB, CAROL],
                    group_ids: vec![GROUP],
                    copies: vec![],
                    forwarded_from_msg_id: 0,
                    media_ids: vec![],
                }),
            ),
        ),
        (
            "client_contacts_update",
            op(
                15,
                Op::ContactsUpdate(pb::ContactsUpdate { add_account_ids: vec![BOB], remove_account_ids: vec![CAROL] }),
            ),
        ),
        ("client_contacts_list", op(16, Op::ContactsList(pb::ContactsListRequest {}))),
        (
            "client_discover",
            op(17, Op::Discover(pb::Discover { phones: vec!["+14155550102".into(), "+14155550199".into()] })),
        ),
        (
            "client_batch",
            Frame::Client(pb::ClientFrame {
                ops: vec![
                    pb::ClientOp { request_id: 18, op: Some(Op::Send(message_to_bob())) },
                    pb::ClientOp { request_id: 19, op: Some(Op::Ack(pb::Ack { up_to_seq: 43 })) },
                    pb::ClientOp { request_id: 20, op: Some(Op::Ping(pb::Ping { client_time_ms: NOW_MS })) },
                ],
            }),
        ),
    ]
}

fn client_groups() -> Vec<(&'static str, Frame)> {
    use group_op::Op;
    vec![
        (
            "client_group_create",
            group(
                30,
                Op::Create(pb::GroupCreate {
                    name: "Climbing ⛰".into(),
                    description: "Saturdays".into(),
                    member_account_ids: vec![BOB],
                    member_phones: vec!["+14155550103".into()],
                    settings: Some(settings()),
                }),
            ),
        ),
        (
            "client_group_update",
            group(
                31,
                Op::Update(pb::GroupUpdate {
                    group_id: GROUP,
                    name: Some("Bouldering".into()),
                    description: Some(String::new()),
                    settings: None,
                }),
            ),
        ),
        (
            "client_group_members",
            group(
                32,
                Op::Members(pb::GroupMembers {
                    group_id: GROUP,
                    action: pb::GroupMemberAction::Promote as i32,
                    account_ids: vec![BOB],
                    phones: vec![],
                }),
            ),
        ),
        ("client_group_leave", group(33, Op::Leave(pb::GroupLeave { group_id: GROUP }))),
        ("client_group_info", group(34, Op::Info(pb::GroupInfoRequest { group_id: GROUP }))),
        ("client_group_list", group(35, Op::List(pb::GroupListRequest {}))),
        ("client_group_invite", group(36, Op::Invite(pb::GroupInvite { group_id: GROUP, revoke: false }))),
        ("client_group_join", group(37, Op::Join(pb::GroupJoin { token: "9f86d081884c7d659a2feaa0c55ad015".into() }))),
        (
            "client_group_approve",
            group(38, Op::Approve(pb::GroupApprove { group_id: GROUP, account_ids: vec![CAROL], reject: false })),
        ),
        (
            "client_group_send",
            group(
                39,
                Op::Send(pb::GroupSend {
                    group_id: GROUP,
                    client_msg_id: "g-1".into(),
                    body: Some(pb::group_send::Body::Payload(HELLO.into())),
                    reply_to_server_msg_id: 0,
                    forwarded: false,
                    media_ids: vec![],
                }),
            ),
        ),
        (
            "client_group_receipt_detail",
            group(40, Op::ReceiptDetail(pb::GroupReceiptDetailRequest { group_id: GROUP, server_msg_id: MSG_ID })),
        ),
        ("client_group_read", group(41, Op::Read(pb::GroupRead { group_id: GROUP, server_msg_ids: vec![MSG_ID] }))),
    ]
}

fn server() -> Vec<(&'static str, Frame)> {
    use server_event::Event;
    let error = |code: pb::ErrorCode, message: &str| pb::Error::new(code, message);
    vec![
        ("server_welcome", answer(1, Event::Welcome(welcome()))),
        (
            "server_welcome_and_delivery",
            events(vec![event(1, Event::Welcome(welcome())), event(0, delivery(vec![message_from_bob(42)]))]),
        ),
        ("server_send_result", answer(2, Event::SendResult(send_result()))),
        ("server_pong", answer(6, Event::Pong(pb::Pong { client_time_ms: NOW_MS, server_time_ms: NOW_MS + 3 }))),
        ("server_synced", answer(60, Event::Synced(pb::Synced {}))),
        (
            "server_timer_result",
            answer(
                61,
                Event::TimerResult(pb::TimerResult { seconds: 86_400, server_msg_id: MSG_ID, server_ts_ms: NOW_MS }),
            ),
        ),
        (
            "server_error_invalid_timer",
            answer(
                61,
                Event::Error(error(
                    pb::ErrorCode::InvalidTimer,
                    "timer of 3600 s is not one of off, 24 h, 7 days, 90 days (0, 86400, 604800, 7776000)",
                )),
            ),
        ),
        (
            "server_go_away",
            answer(0, Event::GoAway(pb::GoAway { reconnect_after_ms: 1_750, reason: "server shutting down".into() })),
        ),
        ("server_receipt_result", answer(5, Event::ReceiptResult(pb::ReceiptResult { server_ts_ms: NOW_MS }))),
        (
            "server_error_rate_limited",
            answer(
                2,
                Event::Error(
                    error(pb::ErrorCode::RateLimited, "rate limit exceeded: sends per account").with_retry_after(600),
                ),
            ),
        ),
        (
            "server_error_stale_devices",
            answer(
                3,
                Event::Error(pb::Error {
                    device_mismatches: vec![pb::DeviceMismatch {
                        account_id: BOB,
                        missing_devices: vec![3],
                        extra_devices: vec![1],
                    }],
                    ..error(pb::ErrorCode::StaleDevices, "device list is stale")
                }),
            ),
        ),
        (
            "server_error_unsupported_version",
            answer(
                0,
                Event::Error(pb::Error {
                    supported_versions: vec![version()],
                    ..error(pb::ErrorCode::UnsupportedVersion, "no common protocol version")
                }),
            ),
        ),
        (
            "server_presence_state",
            answer(
                7,
                Event::PresenceState(pb::PresenceState {
                    accounts: vec![
                        pb::PresenceUpdate { account_id: BOB, online: true, last_seen_ms: 0 },
                        pb::PresenceUpdate { account_id: CAROL, online: false, last_seen_ms: NOW_MS - 60_000 },
                    ],
                }),
            ),
        ),
        (
            "server_presence",
            answer(0, Event::Presence(pb::PresenceUpdate { account_id: BOB, online: false, last_seen_ms: NOW_MS })),
        ),
        (
            "server_typing",
            answer(
                0,
                Event::Typing(pb::TypingEvent { from_account_id: BOB, from_device_id: 2, group_id: 0, typing: true }),
            ),
        ),
        ("server_done", answer(8, Event::Done(pb::Done {}))),
        (
            "server_action_result",
            answer(12, Event::ActionResult(pb::ActionResult { server_msg_id: MSG_ID_2, server_ts_ms: NOW_MS })),
        ),
        (
            "server_forward_result",
            answer(
                14,
                Event::ForwardResult(pb::ForwardResult {
                    results: vec![
                        pb::SendResult { client_msg_id: "fwd-9/0".into(), ..send_result() },
                        pb::SendResult { client_msg_id: "fwd-9/1".into(), server_msg_id: MSG_ID_2, ..send_result() },
                    ],
                }),
            ),
        ),
        (
            "server_contact_list",
            answer(15, Event::ContactList(pb::ContactList { contacts: vec![contact(BOB, "+14155550102")] })),
        ),
        (
            "server_discover_result",
            answer(17, Event::DiscoverResult(pb::DiscoverResult { registered: vec![contact(BOB, "+14155550102")] })),
        ),
    ]
}

fn server_inbox() -> Vec<(&'static str, Frame)> {
    use inbox_item::Body;
    let one = |body| answer(0, delivery(vec![item(43, MSG_ID_2, body)]));
    vec![
        ("server_delivery_message", answer(0, delivery(vec![message_from_bob(42)]))),
        (
            "server_delivery_receipt",
            one(Body::Receipt(pb::Receipt {
                r#type: pb::ReceiptType::Delivered as i32,
                from_account_id: BOB,
                from_device_id: 2,
                peer_account_id: BOB,
                server_msg_ids: vec![MSG_ID],
            })),
        ),
        (
            "server_delivery_group_message",
            one(Body::GroupMessage(pb::GroupMessage {
                group_id: GROUP,
                from_account_id: BOB,
                from_device_id: 2,
                from_phone: "+14155550102".into(),
                payload: HELLO.into(),
                client_msg_id: "g-2".into(),
                payload_by_ref: false,
                reply_to_server_msg_id: 0,
                forwarded: true,
                media_ids: vec![],
            })),
        ),
        (
            "server_delivery_group_event",
            one(Body::GroupEvent(pb::GroupEvent {
                r#type: pb::GroupEventType::MembersAdded as i32,
                group_id: GROUP,
                by_account_id: ALICE,
                account_ids: vec![BOB],
                info: Some(pb::GroupInfo { members: vec![], pending_account_ids: vec![], ..group_info() }),
            })),
        ),
        (
            "server_delivery_group_receipt",
            one(Body::GroupReceipt(pb::GroupReceipt {
                r#type: pb::GroupReceiptType::ReadByAll as i32,
                group_id: GROUP,
                server_msg_ids: vec![MSG_ID],
            })),
        ),
        (
            "server_delivery_message_action",
            one(Body::MessageAction(pb::MessageAction {
                r#type: pb::MessageActionType::Delete as i32,
                target_server_msg_id: MSG_ID,
                from_account_id: BOB,
                from_device_id: 2,
                peer_account_id: BOB,
                group_id: 0,
                payload: Default::default(),
                emoji: String::new(),
            })),
        ),
    ]
}

fn server_groups() -> Vec<(&'static str, Frame)> {
    use group_result::Result;
    vec![
        ("server_group_info", group_answer(34, Result::Info(group_info()))),
        ("server_group_list", group_answer(35, Result::List(pb::GroupList { groups: vec![group_info()] }))),
        (
            "server_group_invite",
            group_answer(
                36,
                Result::Invite(pb::GroupInviteLink {
                    group_id: GROUP,
                    token: "9f86d081884c7d659a2feaa0c55ad015".into(),
                }),
            ),
        ),
        (
            "server_group_sent",
            group_answer(39, Result::Sent(pb::SendResult { client_msg_id: "g-1".into(), ..send_result() })),
        ),
        (
            "server_group_receipt_detail",
            group_answer(
                40,
                Result::ReceiptDetail(pb::GroupReceiptDetail {
                    group_id: GROUP,
                    server_msg_id: MSG_ID,
                    members: vec![pb::GroupMemberReceipt { account_id: BOB, delivered_at_ms: NOW_MS, read_at_ms: 0 }],
                }),
            ),
        ),
        ("server_group_done", group_answer(33, Result::DoneGroupId(GROUP))),
    ]
}

/// Call signaling: every call operation, the answer to an offer, each kind of call event and the
/// missed-call inbox item.
fn calls() -> Vec<(&'static str, Frame)> {
    use client_op::Op;
    use pb::call_op::Op as C;
    use server_event::Event;
    const CALL: u64 = 7_534_543_487_471_979_520;
    const SDP: &[u8] = b"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n";
    let call = |request_id, c| op(request_id, Op::Call(pb::CallOp { op: Some(c) }));
    let turn = || pb::TurnCredentials {
        username: "1796378752:1001".into(),
        password: "ZzN0cWJ2T1hNaHBmUVJ6c0JhY2tkVjl3b2c0PQ==".into(),
        ttl_s: 3600,
        uris: vec!["turn:turn.example.com:3478?transport=udp".into(), "turns:turn.example.com:5349".into()],
    };
    let ev = |t: pb::CallEventType| pb::CallEvent {
        r#type: t as i32,
        call_id: CALL,
        from_account_id: BOB,
        from_device_id: 2,
        ..Default::default()
    };
    vec![
        (
            "client_call_offer",
            call(40, C::Offer(pb::CallOffer { to_account_ids: vec![BOB], group_id: 0, video: true, sdp: SDP.into() })),
        ),
        ("client_call_answer", call(41, C::Answer(pb::CallAnswer { call_id: CALL, sdp: SDP.into() }))),
        (
            "client_call_ice",
            call(
                42,
                C::Ice(pb::CallIce {
                    call_id: CALL,
                    candidate: b"candidate:1 1 UDP 2130706431 192.0.2.1 54400 typ host"[..].into(),
                    to_account_id: BOB,
                    to_device_id: 2,
                }),
            ),
        ),
        ("client_call_hangup", call(43, C::Hangup(pb::CallHangup { call_id: CALL }))),
        ("client_call_reject", call(44, C::Reject(pb::CallReject { call_id: CALL }))),
        (
            "server_call_started",
            answer(
                40,
                Event::Call(pb::CallEvent {
                    from_account_id: ALICE,
                    from_device_id: 1,
                    participant_account_ids: vec![ALICE, BOB],
                    turn: Some(turn()),
                    video: true,
                    ..ev(pb::CallEventType::Started)
                }),
            ),
        ),
        (
            "server_call_incoming",
            answer(
                0,
                Event::Call(pb::CallEvent {
                    from_account_id: ALICE,
                    from_device_id: 1,
                    payload: SDP.into(),
                    video: true,
                    group_id: GROUP,
                    participant_account_ids: vec![ALICE, BOB, CAROL],
                    turn: Some(turn()),
                    ..ev(pb::CallEventType::Incoming)
                }),
            ),
        ),
        (
            "server_call_events",
            events(vec![
                event(0, Event::Call(ev(pb::CallEventType::Ringing))),
                event(0, Event::Call(pb::CallEvent { payload: SDP.into(), ..ev(pb::CallEventType::Answered) })),
                event(0, Event::Call(ev(pb::CallEventType::AnsweredElsewhere))),
                event(0, Event::Call(ev(pb::CallEventType::Rejected))),
                event(0, Event::Call(ev(pb::CallEventType::RejectedElsewhere))),
                event(
                    0,
                    Event::Call(pb::CallEvent { payload: b"candidate:2"[..].into(), ..ev(pb::CallEventType::Ice) }),
                ),
                event(0, Event::Call(ev(pb::CallEventType::Hangup))),
                event(0, Event::Call(ev(pb::CallEventType::NoAnswer))),
                event(0, Event::Call(ev(pb::CallEventType::Busy))),
                event(
                    0,
                    Event::Call(pb::CallEvent {
                        reason: pb::CallEndReason::Cancelled as i32,
                        ..ev(pb::CallEventType::Ended)
                    }),
                ),
            ]),
        ),
        (
            "server_delivery_missed_call",
            answer(
                0,
                delivery(vec![item(
                    46,
                    CALL,
                    inbox_item::Body::MissedCall(pb::MissedCall {
                        call_id: CALL,
                        from_account_id: ALICE,
                        from_device_id: 1,
                        video: false,
                        group_id: 0,
                        started_ms: NOW_MS - 45_000,
                    }),
                )]),
            ),
        ),
    ]
}
