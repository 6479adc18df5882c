//! Abuse state and reports through `AbuseStore`, on both engines: a suspension and the
//! restrictions survive a reopen, the first suspension is kept and only an unsuspend lifts it,
//! restrictions are set and lifted independently; reports keep what was disclosed, list newest
//! first, and `reporters_since` counts each reporting account once within the window; an
//! erased account's state and the reports against it go, and the reports it filed stay without
//! its id.

mod common;

use common::{Engine, Env};
use iris_store::{AbuseReport, AbuseState, DeviceAddr, PendingErasure, ReportedMessage, Restriction, Suspension};

fn report(id: u64, reported: u64, reporter: u64, at_ms: u64) -> AbuseReport {
    AbuseReport {
        id,
        reported,
        reporter: DeviceAddr::new(reporter, 1),
        reported_at_ms: at_ms,
        reason: format!("spam {id}"),
        messages: vec![ReportedMessage { server_msg_id: id * 10, sent_at_ms: at_ms - 5, content: b"buy now".to_vec() }],
    }
}

async fn suspension_and_restrictions_survive_reopening(engine: Engine) {
    // Proves: the state is durable; a second suspension keeps the first; unsuspend lifts only
    // the suspension; a restriction of 0 lifts it.
    let env = Env::new(engine);
    let first = Suspension { since_ms: 100, reason: "message rate".into() };
    let account = {
        let store = env.open().await;
        let (account, _) = store.register_device("+15550200", "phone", 1, 5).await.unwrap();
        assert_eq!(store.abuse_state(account.id).await.unwrap(), AbuseState::default());
        assert!(store.suspend(account.id, first.clone()).await.unwrap());
        let later = Suspension { since_ms: 200, reason: "reports".into() };
        assert!(!store.suspend(account.id, later).await.unwrap(), "already suspended");
        store.set_restriction(account.id, Restriction::Sending, 5_000).await.unwrap();
        store.set_restriction(account.id, Restriction::Forwarding, 7_000).await.unwrap();
        account.id
    };
    let store = env.open().await;
    let state = store.abuse_state(account).await.unwrap();
    assert_eq!(
        state,
        AbuseState { suspended: Some(first), sending_restricted_until_ms: 5_000, forwarding_limited_until_ms: 7_000 }
    );
    assert!(store.unsuspend(account).await.unwrap());
    assert!(!store.unsuspend(account).await.unwrap(), "not suspended any more");
    store.set_restriction(account, Restriction::Sending, 0).await.unwrap();
    let state = store.abuse_state(account).await.unwrap();
    assert_eq!(
        (state.suspended, state.sending_restricted_until_ms, state.forwarding_limited_until_ms),
        (None, 0, 7_000)
    );
    let again = Suspension { since_ms: 300, reason: "operator: test".into() };
    assert!(store.suspend(account, again.clone()).await.unwrap(), "suspendable again after a lift");
    assert_eq!(store.abuse_state(account).await.unwrap().suspended, Some(again));
}

async fn reports_count_distinct_reporters_in_the_window(engine: Engine) {
    // Proves: reports are stored with their disclosed messages, listed newest first; a
    // reporter counts once however often it reported; reports before the window do not count;
    // reports of another account are not mixed in.
    let env = Env::new(engine);
    let store = env.open().await;
    let (target, _) = store.register_device("+15550300", "phone", 1, 5).await.unwrap();
    let t = target.id;
    store.add_report(report(1, t, 900, 1_000)).await.unwrap();
    store.add_report(report(2, t, 901, 2_000)).await.unwrap();
    store.add_report(report(3, t, 901, 3_000)).await.unwrap();
    store.add_report(report(4, t, 902, 4_000)).await.unwrap();
    store.add_report(report(5, t + 1, 903, 4_000)).await.unwrap();
    let listed = store.reports(t, 10).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), vec![4, 3, 2, 1]);
    assert_eq!(listed[0], report(4, t, 902, 4_000));
    assert_eq!(store.reports(t, 2).await.unwrap().len(), 2);
    let mut reporters = store.reporters_since(t, 0).await.unwrap();
    reporters.sort_unstable();
    assert_eq!(reporters, vec![900, 901, 902]);
    let mut recent = store.reporters_since(t, 2_500).await.unwrap();
    recent.sort_unstable();
    assert_eq!(recent, vec![901, 902]);
    assert!(store.reporters_since(t + 2, 0).await.unwrap().is_empty());
}

async fn erasure_removes_abuse_records(engine: Engine) {
    // Proves: deleting an account erases its state and the reports against it; the reports it
    // filed against others stay, with the reporter cleared.
    let env = Env::new(engine);
    let store = env.open().await;
    let (doomed, _) = store.register_device("+15550400", "phone", 1, 5).await.unwrap();
    let (other, _) = store.register_device("+15550401", "phone", 1, 5).await.unwrap();
    store.suspend(doomed.id, Suspension { since_ms: 1, reason: "reports".into() }).await.unwrap();
    store.add_report(report(1, doomed.id, other.id, 10)).await.unwrap();
    store.add_report(report(2, other.id, doomed.id, 20)).await.unwrap();
    store.begin_erasure(&doomed, 30).await.unwrap();
    let erasure = PendingErasure { account: doomed.id, phone: doomed.phone.clone(), started_at_ms: 30 };
    store.erase_account(&erasure).await.unwrap();
    assert_eq!(store.abuse_state(doomed.id).await.unwrap(), AbuseState::default());
    assert!(store.reports(doomed.id, 10).await.unwrap().is_empty());
    let kept = store.reports(other.id, 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reporter, DeviceAddr::new(0, 0));
    assert_eq!(kept[0].messages, report(2, other.id, doomed.id, 20).messages);
}

both_engines!(
    suspension_and_restrictions_survive_reopening,
    reports_count_distinct_reporters_in_the_window,
    erasure_removes_abuse_records,
);
