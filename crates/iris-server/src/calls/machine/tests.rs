//! The call rules, one scenario per test, driven with injected time.

use super::*;

const ALICE: AccountId = 1;
const BOB: AccountId = 2;
const CAROL: AccountId = 3;
const DAVE: AccountId = 4;
const RING: Duration = Duration::from_secs(45);

fn limits() -> CallLimits {
    CallLimits {
        ring_timeout: RING,
        duration_max: Duration::from_secs(3600),
        participants_max: 4,
        calls_per_device_max: 1,
        calls_per_account_max: 2,
        calls_max: 3,
    }
}

fn dev(account: AccountId, device: u32) -> DeviceAddr {
    DeviceAddr::new(account, device)
}

fn callee(account: AccountId, devices: &[u32]) -> Callee {
    Callee { account, devices: devices.to_vec(), reachable: true, blocked: false }
}

fn offer(call_id: u64, caller: DeviceAddr) -> Offer {
    Offer { call_id, caller, video: true, group_id: 0, sdp: Bytes::from_static(b"offer"), started_ms: 1_000 }
}

/// The outputs as short lines (`to type from`, `missed account`), sorted: easy to compare whole.
fn lines(out: &[Out]) -> Vec<String> {
    let mut v: Vec<String> = out
        .iter()
        .map(|o| match o {
            Out::Event { to, event } => {
                let t =
                    CallEventType::try_from(event.r#type).unwrap().as_str_name().trim_start_matches("CALL_EVENT_TYPE_");
                let mut s =
                    format!("{}/{} {t} {}/{}", to.account, to.device, event.from_account_id, event.from_device_id);
                if event.reason != 0 {
                    let r = CallEndReason::try_from(event.reason).unwrap().as_str_name();
                    s.push(' ');
                    s.push_str(r.trim_start_matches("CALL_END_REASON_"));
                }
                if !event.payload.is_empty() {
                    s.push_str(&format!(" {}", String::from_utf8_lossy(&event.payload)));
                }
                s
            }
            Out::Missed { account, missed } => format!("missed {account} from {}", missed.from_account_id),
        })
        .collect();
    v.sort();
    v
}

fn check(out: Result<Vec<Out>, CallError>, expect: &[&str]) {
    let mut expect: Vec<String> = expect.iter().map(|s| (*s).to_owned()).collect();
    expect.sort();
    assert_eq!(lines(&out.expect("accepted")), expect);
}

/// Alice (device 1) calls Bob, whose devices 1 and 2 both ring; returns the table and the time.
fn ringing_call() -> (CallTable, Instant) {
    let mut t = CallTable::new(limits());
    let now = Instant::now();
    let out = t.offer(now, offer(7, dev(ALICE, 1)), vec![callee(BOB, &[1, 2])]);
    check(out, &["1/1 RINGING 2/0", "2/1 INCOMING 1/1 offer", "2/2 INCOMING 1/1 offer"]);
    (t, now)
}

#[test]
fn both_devices_ring_the_first_answer_wins_and_the_other_is_told() {
    let (mut t, _) = ringing_call();
    check(
        t.answer(dev(BOB, 2), 7, Bytes::from_static(b"answer")),
        &["1/1 ANSWERED 2/2 answer", "2/1 ANSWERED_ELSEWHERE 2/2"],
    );
    assert_eq!(t.answer(dev(BOB, 1), 7, Bytes::new()), Err(CallError::AnsweredElsewhere));
    assert_eq!(t.reject(dev(BOB, 1), 7), Err(CallError::AnsweredElsewhere));
    check(t.answer(dev(BOB, 2), 7, Bytes::new()), &[]); // a retried answer changes nothing
    check(t.ice(dev(ALICE, 1), 7, Bytes::from_static(b"c1"), None), &["2/2 ICE 1/1 c1"]);
    check(t.ice(dev(BOB, 2), 7, Bytes::from_static(b"c2"), Some(dev(ALICE, 1))), &["1/1 ICE 2/2 c2"]);
    assert_eq!(t.ice(dev(BOB, 1), 7, Bytes::new(), None), Err(CallError::NotFound), "not in the call");
    assert_eq!(t.ice(dev(ALICE, 1), 7, Bytes::new(), Some(dev(CAROL, 1))), Err(CallError::NotFound));
    check(t.hangup(dev(BOB, 2), 7), &["1/1 HANGUP 2/2", "1/1 ENDED 1/1 HANGUP"]);
    assert!(t.is_empty() && t.by_account.is_empty() && t.by_device.is_empty() && t.deadlines.is_empty());
    assert_eq!(t.hangup(dev(ALICE, 1), 7), Err(CallError::NotFound));
}

#[test]
fn the_callers_ringing_is_carried_out_before_any_callee_is_offered_the_call() {
    // Proves the order `calls/mod.rs` carries outputs out in: once a callee device has its
    // INCOMING it may answer at once, so the caller's RINGING must already be on its way, or
    // the caller could see ANSWERED first (the `call_cli` test's old flake).
    let mut t = CallTable::new(limits());
    let out = t.offer(Instant::now(), offer(7, dev(ALICE, 1)), vec![callee(BOB, &[1, 2]), callee(CAROL, &[1])]);
    let kinds: Vec<(AccountId, i32)> = out
        .unwrap()
        .iter()
        .filter_map(|o| match o {
            Out::Event { to, event } => Some((to.account, event.r#type)),
            Out::Missed { .. } => None,
        })
        .collect();
    let first_incoming = kinds.iter().position(|k| k.1 == CallEventType::Incoming as i32).unwrap();
    let last_ringing = kinds.iter().rposition(|k| k.1 == CallEventType::Ringing as i32).unwrap();
    assert!(last_ringing < first_incoming, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| k.0 == ALICE).count(), 2, "a RINGING per reachable callee");
}

#[test]
fn the_caller_trickles_ice_to_the_ringing_devices() {
    let (t, _) = ringing_call();
    check(t.ice(dev(ALICE, 1), 7, Bytes::from_static(b"c"), None), &["2/1 ICE 1/1 c", "2/2 ICE 1/1 c"]);
}

#[test]
fn nobody_answering_within_the_ring_timeout_is_a_missed_call() {
    let (mut t, start) = ringing_call();
    assert_eq!(t.next_deadline(), Some(start + RING));
    check(Ok(t.on_timeout(start + RING - Duration::from_millis(1))), &[]);
    check(
        Ok(t.on_timeout(start + RING)),
        &[
            "1/1 NO_ANSWER 2/0",
            "1/1 ENDED 1/1 NO_ANSWER",
            "2/1 ENDED 1/1 NO_ANSWER",
            "2/2 ENDED 1/1 NO_ANSWER",
            "missed 2 from 1",
        ],
    );
    assert!(t.is_empty() && t.next_deadline().is_none() && t.by_account.is_empty());
}

#[test]
fn the_caller_hanging_up_before_an_answer_cancels_and_is_a_missed_call() {
    let (mut t, _) = ringing_call();
    check(t.hangup(dev(ALICE, 1), 7), &["2/1 ENDED 1/1 CANCELLED", "2/2 ENDED 1/1 CANCELLED", "missed 2 from 1"]);
    assert!(t.is_empty() && t.by_account.is_empty() && t.by_device.is_empty());
}

#[test]
fn the_callers_connection_ending_cancels_its_calls() {
    let (mut t, _) = ringing_call();
    check(
        Ok(t.disconnected(dev(ALICE, 1))),
        &["2/1 ENDED 1/1 CANCELLED", "2/2 ENDED 1/1 CANCELLED", "missed 2 from 1"],
    );
    check(Ok(t.disconnected(dev(BOB, 1))), &[]);
}

#[test]
fn declining_stops_every_device_of_the_account_and_is_not_missed() {
    let (mut t, _) = ringing_call();
    check(t.reject(dev(BOB, 1), 7), &["2/2 REJECTED_ELSEWHERE 2/1", "1/1 REJECTED 2/0", "1/1 ENDED 1/1 REJECTED"]);
    assert!(t.is_empty());
}

#[test]
fn hanging_up_a_ringing_device_declines() {
    let (mut t, _) = ringing_call();
    check(t.hangup(dev(BOB, 2), 7), &["2/1 REJECTED_ELSEWHERE 2/2", "1/1 REJECTED 2/0", "1/1 ENDED 1/1 REJECTED"]);
}

#[test]
fn a_blocked_caller_sees_what_an_offline_callee_looks_like() {
    let mut t = CallTable::new(limits());
    let now = Instant::now();
    let offline = Callee { reachable: false, ..callee(BOB, &[1]) };
    check(t.offer(now, offer(7, dev(ALICE, 1)), vec![offline]), &["2/1 INCOMING 1/1 offer"]);
    let blocked = Callee { blocked: true, ..callee(CAROL, &[1]) };
    check(t.offer(now, offer(8, dev(DAVE, 1)), vec![blocked]), &[]);
    check(
        Ok(t.on_timeout(now + RING)),
        &[
            // The offline callee: no RINGING, a NO_ANSWER, a missed call in its inbox.
            "1/1 NO_ANSWER 2/0",
            "1/1 ENDED 1/1 NO_ANSWER",
            "2/1 ENDED 1/1 NO_ANSWER",
            "missed 2 from 1",
            // The blocker: the caller gets the same, the blocker nothing at all.
            "4/1 NO_ANSWER 3/0",
            "4/1 ENDED 4/1 NO_ANSWER",
        ],
    );
    assert!(t.is_empty());
}

#[test]
fn a_group_call_goes_on_until_one_device_is_left() {
    let mut t = CallTable::new(limits());
    let now = Instant::now();
    let callees = vec![callee(BOB, &[1]), callee(CAROL, &[1]), callee(DAVE, &[1])];
    let out = t.offer(now, Offer { group_id: 9, ..offer(7, dev(ALICE, 1)) }, callees).unwrap();
    assert!(out.iter().all(|o| match o {
        Out::Event { event, .. } => event.participant_account_ids == [ALICE, BOB, CAROL, DAVE] && event.group_id == 9,
        Out::Missed { .. } => false,
    }));
    check(t.answer(dev(BOB, 1), 7, Bytes::from_static(b"b")), &["1/1 ANSWERED 2/1 b"]);
    check(t.reject(dev(CAROL, 1), 7), &["1/1 REJECTED 3/0", "2/1 REJECTED 3/0"]);
    check(t.ice(dev(BOB, 1), 7, Bytes::from_static(b"x"), None), &["1/1 ICE 2/1 x"]);
    check(
        Ok(t.on_timeout(now + RING)),
        &["1/1 NO_ANSWER 4/0", "2/1 NO_ANSWER 4/0", "4/1 ENDED 1/1 NO_ANSWER", "missed 4 from 1"],
    );
    // The caller leaves; Bob is the last one and the call ends for him.
    check(t.hangup(dev(ALICE, 1), 7), &["2/1 HANGUP 1/1", "2/1 ENDED 1/1 HANGUP"]);
    assert!(t.is_empty() && t.by_device.is_empty() && t.by_account.is_empty());
}

#[test]
fn every_bound_is_enforced() {
    let mut t = CallTable::new(limits());
    let now = Instant::now();
    let five = (2..=5).map(|a| callee(a, &[1])).collect();
    assert_eq!(
        t.offer(now, offer(1, dev(ALICE, 1)), five).unwrap_err(),
        CallError::TooManyParticipants { n: 5, max: 4 }
    );
    t.offer(now, offer(1, dev(ALICE, 1)), vec![callee(BOB, &[1])]).unwrap();
    assert_eq!(
        t.offer(now, offer(2, dev(ALICE, 1)), vec![callee(CAROL, &[1])]).unwrap_err(),
        CallError::Limit { what: "this device", max: 1 }
    );
    t.offer(now, offer(2, dev(ALICE, 2)), vec![callee(CAROL, &[1])]).unwrap();
    assert_eq!(
        t.offer(now, offer(3, dev(ALICE, 3)), vec![callee(DAVE, &[1])]).unwrap_err(),
        CallError::Limit { what: "this account", max: 2 }
    );
    // Bob rings for one call; a second makes him ring twice, a third finds him busy.
    check(
        t.offer(now, offer(3, dev(DAVE, 1)), vec![callee(BOB, &[1])]),
        &["4/1 RINGING 2/0", "2/1 INCOMING 4/1 offer"],
    );
    assert_eq!(
        t.offer(now, offer(4, dev(CAROL, 2)), vec![callee(BOB, &[1])]).unwrap_err(),
        CallError::Limit { what: "the server", max: 3 }
    );
    check(t.hangup(dev(DAVE, 1), 3), &["2/1 ENDED 4/1 CANCELLED", "missed 2 from 4"]);
    t.answer(dev(BOB, 1), 1, Bytes::new()).unwrap();
    // Alice takes part in two calls: busy (told, and a missed call); Bob in one: he rings.
    check(
        t.offer(now, offer(5, dev(DAVE, 1)), vec![callee(BOB, &[1]), callee(ALICE, &[1])]),
        &["4/1 BUSY 1/0", "missed 1 from 4", "4/1 RINGING 2/0", "2/1 INCOMING 4/1 offer"],
    );
    // A device in as many calls as allowed cannot answer another one.
    assert_eq!(t.answer(dev(BOB, 1), 5, Bytes::new()), Err(CallError::Limit { what: "this device", max: 1 }));
}

#[test]
fn a_call_ends_at_its_maximum_duration() {
    let (mut t, start) = ringing_call();
    t.answer(dev(BOB, 1), 7, Bytes::new()).unwrap();
    check(Ok(t.on_timeout(start + RING)), &[]);
    check(Ok(t.on_timeout(start + Duration::from_secs(3600))), &["1/1 ENDED 1/1 HANGUP", "2/1 ENDED 1/1 HANGUP"]);
    assert!(t.is_empty() && t.by_device.is_empty() && t.deadlines.is_empty());
}
