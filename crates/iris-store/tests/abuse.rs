//! Abuse state and reports through `AbuseStore`, on both engines: a suspension and the
//! restrictions survive a reopen, the first suspension is kept and only an unsuspend lifts it,
//! restrictions are set and lifted independently; reports keep what was disclosed, list newest
//! first, and `reporters_since` counts each reporting account once within the window; an
//! erased account's state and the reports against it go, and the reports it filed stay without
//! its id; the review queue lists suspended and recently reported accounts once each, newest
//! first, page by page.

mod common;

use common::{Engine, Env};
use iris_store::{
    AbuseReport, AbuseState, DeviceAddr, PendingErasure, ReportedMessage, Restriction, ReviewItem, Suspension,
};

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

async fn review_queue_lists_suspended_and_recently_reported_accounts_newest_first(engine: Engine) {
    // Proves: the queue holds suspended accounts and accounts reported since the window's start
    // (older reports alone and lifted suspensions do not count), each once with its recent
    // report count, ordered by the later of suspension and latest report (ties by account,
    // descending), across PostgreSQL shards; pages through the cursor without gaps or repeats.
    let env = Env::new(engine);
    let store = env.open().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(store.register_device(&format!("+1555050{i}"), "phone", 1, 5).await.unwrap().0.id);
    }
    let [old, both, reported, suspended, lifted, tie] = ids[..] else { unreachable!() };
    let suspension = |since_ms, reason: &str| Suspension { since_ms, reason: reason.into() };
    store.add_report(report(1, old, 900, 100)).await.unwrap();
    store.suspend(both, suspension(2_000, "reports")).await.unwrap();
    store.add_report(report(2, both, 901, 1_500)).await.unwrap();
    store.add_report(report(3, both, 902, 1_800)).await.unwrap();
    store.add_report(report(4, reported, 903, 3_000)).await.unwrap();
    store.add_report(report(5, reported, 904, 500)).await.unwrap();
    store.suspend(suspended, suspension(2_500, "operator: spam")).await.unwrap();
    store.suspend(lifted, suspension(2_600, "message rate")).await.unwrap();
    store.unsuspend(lifted).await.unwrap();
    store.set_restriction(lifted, Restriction::Sending, 9_000).await.unwrap();
    store.add_report(report(6, tie, 905, 2_500)).await.unwrap();

    let queue = store.review_queue(1_000, None, 10).await.unwrap();
    let (hi, lo) = (suspended.max(tie), suspended.min(tie));
    let order: Vec<u64> = queue.iter().map(|i| i.account).collect();
    assert_eq!(order, vec![reported, hi, lo, both]);
    let item = |account| queue.iter().find(|i| i.account == account).unwrap().clone();
    assert_eq!(
        item(both),
        ReviewItem {
            account: both,
            suspended: Some(suspension(2_000, "reports")),
            n_recent_reports: 2,
            last_reported_at_ms: 1_800
        }
    );
    assert_eq!((item(reported).n_recent_reports, item(reported).suspended), (1, None));
    assert_eq!(
        (item(suspended).n_recent_reports, item(suspended).last_reported_at_ms, item(suspended).suspended),
        (0, 0, Some(suspension(2_500, "operator: spam")))
    );
    assert_eq!(store.review_queue(0, None, 10).await.unwrap().len(), 5, "an older report counts in a wider window");

    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.review_queue(1_000, before, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.cursor());
        paged.extend(page.iter().map(|i| i.account));
    }
    assert_eq!(paged, order, "pages of 3 give the same list");
}

both_engines!(
    review_queue_lists_suspended_and_recently_reported_accounts_newest_first,
    suspension_and_restrictions_survive_reopening,
    reports_count_distinct_reporters_in_the_window,
    erasure_removes_abuse_records,
);
