//! Profiles, registration PINs, pending device links and re-registration through the store, on
//! both engines: records survive a reopen, the pending-link bound holds and expired links make
//! room (an approved one stays for the sweep that lists expired links), a link is taken once,
//! an approved link and its device commit together, PIN attempts lock and unlock, a
//! re-registration revokes every device (tokens included) and adds a primary, and an account's
//! rows can be erased.

mod common;

use std::sync::Arc;

use common::{Engine, Env};
use iris_store::{LinkState, PendingLink, PinAttempt, Profile, RefreshTokenRecord, StoreError};

fn link(account: u64, code: &str, expires_at_ms: u64) -> PendingLink {
    PendingLink {
        account,
        code: code.to_owned(),
        secret_hash: [7; 32],
        device_name: format!("dev {code}"),
        expires_at_ms,
        state: LinkState::Pending,
    }
}

async fn profiles_and_pins_survive_reopening(engine: Engine) {
    // Proves: a profile and a PIN are durable; setting a PIN resets its counters; clearing
    // removes it.
    let env = Env::new(engine);
    let profile = Profile {
        display_name: "Alice".into(),
        about: "at work".into(),
        photo_media_id: "ab".repeat(32),
        privacy: 2,
        updated_at_ms: 42,
    };
    let account = {
        let store = env.open().await;
        let (account, _) = store.register_device("+15550100", "phone", 1, 5).await.unwrap();
        store.set_profile(account.id, &profile).await.unwrap();
        store.set_pin(account.id, Some("$argon2id$hash")).await.unwrap();
        assert!(matches!(store.count_pin_attempt(account.id, 10, 5, 1000).await.unwrap(), PinAttempt::Counted { .. }));
        account.id
    };
    let store = env.open().await;
    assert_eq!(store.profile(account).await.unwrap(), Some(profile));
    assert_eq!(store.profile(account + 1000).await.unwrap(), None);
    let pin = store.pin(account).await.unwrap().unwrap();
    assert_eq!((pin.hash.as_str(), pin.failed_attempts), ("$argon2id$hash", 1));
    store.set_pin(account, Some("$argon2id$other")).await.unwrap();
    assert_eq!(store.pin(account).await.unwrap().unwrap().failed_attempts, 0);
    store.set_pin(account, None).await.unwrap();
    assert_eq!(store.pin(account).await.unwrap(), None);
    assert_eq!(store.count_pin_attempt(account, 10, 5, 1000).await.unwrap(), PinAttempt::NoPin);
}

async fn pin_attempts_lock_out_under_concurrency(engine: Engine) {
    // Proves: of 20 concurrent attempts with a bound of 5, exactly 5 are counted (the 5th
    // locking) and the rest see the lockout; a reset after a right PIN unlocks at once.
    let env = Env::new(engine);
    let store = Arc::new(env.open().await);
    let (account, _) = store.register_device("+15550101", "phone", 1, 5).await.unwrap();
    store.set_pin(account.id, Some("h")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.count_pin_attempt(account.id, 100, 5, 1000).await.unwrap() })
        })
        .collect();
    let mut counted = 0;
    let mut locked = 0;
    for t in tasks {
        match t.await.unwrap() {
            PinAttempt::Counted { .. } => counted += 1,
            PinAttempt::Locked { until_ms } => {
                assert_eq!(until_ms, 1100);
                locked += 1
            }
            PinAttempt::NoPin => panic!("the PIN is set"),
        }
    }
    assert_eq!((counted, locked), (5, 15));
    assert_eq!(
        store.count_pin_attempt(account.id, 1100, 5, 1000).await.unwrap(),
        PinAttempt::Counted { hash: "h".into(), attempts_left: 4 }
    );
    store.reset_pin_attempts(account.id).await.unwrap();
    assert_eq!(store.pin(account.id).await.unwrap().unwrap().failed_attempts, 0);
}

async fn pending_links_are_bounded_and_taken_once(engine: Engine) {
    // Proves: at most `max` unexpired links per account; an expired one is dropped to make
    // room; the same code replaces itself; of concurrent takers exactly one gets the link;
    // erasing the account's rows removes links, profile and PIN.
    let env = Env::new(engine);
    let store = Arc::new(env.open().await);
    let (account, _) = store.register_device("+15550102", "phone", 1, 5).await.unwrap();
    let a = account.id;
    assert!(store.put_link(&link(a, "AAAA", 100), 10, 2).await.unwrap());
    assert!(store.put_link(&link(a, "BBBB", 50), 10, 2).await.unwrap());
    assert!(!store.put_link(&link(a, "CCCC", 100), 10, 2).await.unwrap(), "a third link is over the bound");
    assert!(store.put_link(&link(a, "AAAA", 200), 10, 2).await.unwrap(), "the same code replaces itself");
    assert!(store.put_link(&link(a, "CCCC", 100), 60, 2).await.unwrap(), "BBBB expired at 50");
    let codes: Vec<_> = store.links(a).await.unwrap().into_iter().map(|l| l.code).collect();
    assert_eq!(codes, ["AAAA", "CCCC"]);
    let mut approved = link(a, "AAAA", 200);
    approved.state = LinkState::Approved { device: 2 };
    assert!(store.put_link(&approved, 60, 2).await.unwrap());
    assert_eq!(store.link(a, "AAAA").await.unwrap(), Some(approved.clone()));
    let takers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.take_link(a, "AAAA").await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in takers {
        got.extend(t.await.unwrap());
    }
    assert_eq!(got, vec![approved]);
    store.set_profile(a, &Profile { display_name: "x".into(), ..Profile::default() }).await.unwrap();
    store.set_pin(a, Some("h")).await.unwrap();
    store.erase_profile_rows(a).await.unwrap();
    assert!(store.links(a).await.unwrap().is_empty());
    assert_eq!(store.profile(a).await.unwrap(), None);
    assert_eq!(store.pin(a).await.unwrap(), None);
}

async fn an_approved_link_and_its_device_commit_together(engine: Engine) {
    // Proves: approving a pending link adds a companion named after it and leaves the link
    // approved for that device with the new deadline, both still there after a reopen; a link
    // that is approved, expired or unknown approves nothing and adds no device; over the device
    // limit the link stays pending; of concurrent approvals exactly one gets a device.
    let env = Env::new(engine);
    let a = {
        let store = Arc::new(env.open().await);
        let (account, _) = store.register_device("+15550104", "phone", 1, 5).await.unwrap();
        let a = account.id;
        for (code, expires) in [("AAAA", 100), ("BBBB", 50), ("CCCC", 100), ("DDDD", 100)] {
            assert!(store.put_link(&link(a, code, expires), 10, 10).await.unwrap());
        }
        let device = store.approve_link(a, "AAAA", 20, 500, 5).await.unwrap().expect("pending");
        assert_eq!((device.addr.device, device.name.as_str(), device.primary), (2, "dev AAAA", false));
        assert_eq!(store.approve_link(a, "AAAA", 21, 500, 5).await.unwrap(), None, "approved once");
        assert_eq!(store.approve_link(a, "BBBB", 60, 500, 5).await.unwrap(), None, "expired at 50");
        assert_eq!(store.approve_link(a, "ZZZZ", 60, 500, 5).await.unwrap(), None, "no such link");
        assert_eq!(store.approve_link(a + 1000, "CCCC", 60, 500, 5).await.unwrap(), None, "no such account");
        let full = store.approve_link(a, "CCCC", 60, 500, 2).await;
        assert!(matches!(full, Err(StoreError::DeviceLimit { max: 2 })), "{full:?}");
        assert_eq!(store.link(a, "CCCC").await.unwrap().unwrap().state, LinkState::Pending);
        let approvers: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.approve_link(a, "DDDD", 60, 500, 10).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for t in approvers {
            got.extend(t.await.unwrap());
        }
        assert_eq!(got.iter().map(|d| d.addr.device).collect::<Vec<_>>(), vec![3]);
        a
    };
    let store = env.open().await;
    let approved = store.link(a, "AAAA").await.unwrap().unwrap();
    assert_eq!((approved.state, approved.expires_at_ms), (LinkState::Approved { device: 2 }, 500));
    let devices: Vec<(u32, String)> =
        store.devices(a).await.unwrap().into_iter().map(|d| (d.addr.device, d.name)).collect();
    assert_eq!(devices, [(1, "phone".into()), (2, "dev AAAA".into()), (3, "dev DDDD".into())]);
}

async fn a_link_is_refused_once_and_never_after_its_approval(engine: Engine) {
    // Proves: a pending, unexpired link is refused in one durable step (still refused after a
    // reopen); a refused, approved, expired or unknown link refuses nothing; of refusals and
    // approvals racing on one link exactly one wins.
    let env = Env::new(engine);
    let a = {
        let store = Arc::new(env.open().await);
        let (account, _) = store.register_device("+15550107", "phone", 1, 5).await.unwrap();
        let a = account.id;
        for (code, expires) in [("AAAA", 100), ("BBBB", 100), ("CCCC", 50), ("DDDD", 100)] {
            assert!(store.put_link(&link(a, code, expires), 10, 10).await.unwrap());
        }
        assert!(store.refuse_link(a, "AAAA", 20).await.unwrap());
        assert!(!store.refuse_link(a, "AAAA", 21).await.unwrap(), "refused once");
        store.approve_link(a, "BBBB", 20, 500, 5).await.unwrap().expect("pending");
        assert!(!store.refuse_link(a, "BBBB", 21).await.unwrap(), "approved");
        assert!(!store.refuse_link(a, "CCCC", 60).await.unwrap(), "expired at 50");
        assert!(!store.refuse_link(a, "ZZZZ", 20).await.unwrap(), "no such link");
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        store.refuse_link(a, "DDDD", 30).await.unwrap()
                    } else {
                        store.approve_link(a, "DDDD", 30, 500, 10).await.unwrap().is_some()
                    }
                })
            })
            .collect();
        let mut wins = 0;
        for r in racers {
            wins += u32::from(r.await.unwrap());
        }
        assert_eq!(wins, 1, "one refusal or one approval");
        a
    };
    let store = env.open().await;
    assert_eq!(store.link(a, "AAAA").await.unwrap().unwrap().state, LinkState::Refused);
    let raced = store.link(a, "DDDD").await.unwrap().unwrap().state;
    let devices = store.devices(a).await.unwrap().len();
    assert!(
        (raced == LinkState::Refused && devices == 2) || (matches!(raced, LinkState::Approved { .. }) && devices == 3),
        "{raced:?} with {devices} devices"
    );
}

async fn expired_links_are_listed_and_approved_ones_wait_for_the_sweep(engine: Engine) {
    // Proves: `expired_links` lists the links of every account whose deadline passed, at most
    // `limit`, and nothing unexpired; `put_link` drops expired links on the way except an
    // approved one (its device must be revoked first), which no longer counts toward the bound.
    let env = Env::new(engine);
    let store = env.open().await;
    let (first, _) = store.register_device("+15550105", "phone", 1, 5).await.unwrap();
    let (second, _) = store.register_device("+15550106", "phone", 1, 5).await.unwrap();
    let (a, b) = (first.id, second.id);
    for (account, code, expires) in [(a, "AAAA", 50), (a, "BBBB", 100), (a, "CCCC", 500), (b, "DDDD", 60)] {
        assert!(store.put_link(&link(account, code, expires), 10, 10).await.unwrap());
    }
    let approved = store.approve_link(a, "BBBB", 20, 90, 5).await.unwrap().expect("pending");
    let mut expired: Vec<_> = store.expired_links(95, 100).await.unwrap();
    expired.sort_by(|x, y| x.code.cmp(&y.code));
    let listed: Vec<_> = expired.iter().map(|l| (l.account, l.code.as_str(), l.state)).collect();
    assert_eq!(
        listed,
        [
            (a, "AAAA", LinkState::Pending),
            (a, "BBBB", LinkState::Approved { device: approved.addr.device }),
            (b, "DDDD", LinkState::Pending)
        ]
    );
    assert_eq!(store.expired_links(95, 2).await.unwrap().len(), 2, "at most the limit");
    assert!(store.expired_links(40, 100).await.unwrap().is_empty(), "nothing expired yet");
    assert!(store.put_link(&link(a, "EEEE", 600), 95, 2).await.unwrap(), "expired links do not count");
    assert!(!store.put_link(&link(a, "FFFF", 600), 95, 2).await.unwrap(), "CCCC and EEEE are live");
    let codes: Vec<_> = store.links(a).await.unwrap().into_iter().map(|l| l.code).collect();
    assert_eq!(codes, ["BBBB", "CCCC", "EEEE"], "the approved link waits for the sweep");
}

async fn reregistration_replaces_every_device(engine: Engine) {
    // Proves: a new primary revokes the account's active devices and their refresh tokens in
    // one step, takes the next device id, and is the only active device; an unknown phone has
    // nothing to re-register.
    let env = Env::new(engine);
    let store = env.open().await;
    let (account, d1) = store.register_device("+15550103", "old phone", 1, 5).await.unwrap();
    let (_, d2) = store.register_device("+15550103", "laptop", 2, 5).await.unwrap();
    let token = RefreshTokenRecord { hash: [9; 32], device: d2.addr, expires_at_ms: u64::MAX >> 2 };
    store.put_refresh_token(token).await.unwrap();
    let (same, primary, revoked) = store.register_primary("+15550103", "new phone", 3).await.unwrap().unwrap();
    assert_eq!(same.id, account.id);
    assert!(primary.primary);
    assert_eq!(primary.addr.device, 3);
    assert_eq!(revoked.iter().map(|d| d.addr).collect::<Vec<_>>(), vec![d1.addr, d2.addr]);
    assert_eq!(store.devices(account.id).await.unwrap(), vec![primary]);
    assert_eq!(store.take_refresh_token(&[9; 32]).await.unwrap(), None);
    assert!(store.register_primary("+15550199", "x", 4).await.unwrap().is_none());
    let (_, companion) = store.register_device("+15550103", "tablet", 5, 5).await.unwrap();
    assert!(!companion.primary, "a later device is a companion again");
}

both_engines!(
    profiles_and_pins_survive_reopening,
    pin_attempts_lock_out_under_concurrency,
    pending_links_are_bounded_and_taken_once,
    an_approved_link_and_its_device_commit_together,
    a_link_is_refused_once_and_never_after_its_approval,
    expired_links_are_listed_and_approved_ones_wait_for_the_sweep,
    reregistration_replaces_every_device,
);
