//! Push targets through `PushStore`, on both engines: one target per device (registering again
//! replaces it, and survives a reopen), token-conditional deletion (a provider's rejection of an
//! old token keeps a newer registration), and erasure per device and per account.

mod common;

use common::{Engine, Env};
use iris_store::{DeviceAddr, PushTarget};

fn target(account: u64, device: u32, provider: &str, token: &str) -> PushTarget {
    PushTarget {
        device: DeviceAddr::new(account, device),
        provider: provider.into(),
        token: token.into(),
        updated_at_ms: 7,
    }
}

async fn a_target_per_device_replaced_on_registration(engine: Engine) {
    // Proves: a registration is durable (read after a reopen), a second one replaces the first,
    // and other devices are untouched.
    let env = Env::new(engine);
    {
        let store = env.open().await;
        store.set_push_target(target(1, 1, "fcm", "old")).await.unwrap();
        store.set_push_target(target(1, 1, "apns", "new")).await.unwrap();
        store.set_push_target(target(1, 2, "webhook", "https://up.example/x")).await.unwrap();
    }
    let store = env.open().await;
    assert_eq!(store.push_target(DeviceAddr::new(1, 1)).await.unwrap(), Some(target(1, 1, "apns", "new")));
    assert_eq!(
        store.push_target(DeviceAddr::new(1, 2)).await.unwrap(),
        Some(target(1, 2, "webhook", "https://up.example/x"))
    );
    assert_eq!(store.push_target(DeviceAddr::new(1, 3)).await.unwrap(), None);
}

async fn deletion_by_token_keeps_a_newer_registration(engine: Engine) {
    // Proves: deleting with a stale token changes nothing; with the current token or without a
    // token it deletes, once.
    let env = Env::new(engine);
    let store = env.open().await;
    let d = DeviceAddr::new(5, 1);
    store.set_push_target(target(5, 1, "fcm", "t2")).await.unwrap();
    assert!(!store.delete_push_target(d, Some("t1")).await.unwrap(), "stale token");
    assert!(store.push_target(d).await.unwrap().is_some());
    assert!(store.delete_push_target(d, Some("t2")).await.unwrap());
    assert!(!store.delete_push_target(d, None).await.unwrap(), "already gone");
    store.set_push_target(target(5, 1, "fcm", "t3")).await.unwrap();
    assert!(store.delete_push_target(d, None).await.unwrap(), "revocation deletes whatever is there");
    assert_eq!(store.push_target(d).await.unwrap(), None);
}

async fn an_account_is_erased_whole_and_alone(engine: Engine) {
    // Proves: erasing an account deletes every device's target of that account and no other
    // account's (including a neighbouring id).
    let env = Env::new(engine);
    let store = env.open().await;
    for device in 1..=3 {
        store.set_push_target(target(9, device, "webhook", &format!("https://h/{device}"))).await.unwrap();
    }
    store.set_push_target(target(10, 1, "fcm", "keep")).await.unwrap();
    store.set_push_target(target(8, 1, "fcm", "keep too")).await.unwrap();
    assert_eq!(store.delete_account_push_targets(9).await.unwrap(), 3);
    assert_eq!(store.delete_account_push_targets(9).await.unwrap(), 0);
    for device in 1..=3 {
        assert_eq!(store.push_target(DeviceAddr::new(9, device)).await.unwrap(), None);
    }
    assert!(store.push_target(DeviceAddr::new(10, 1)).await.unwrap().is_some());
    assert!(store.push_target(DeviceAddr::new(8, 1)).await.unwrap().is_some());
}

both_engines!(
    a_target_per_device_replaced_on_registration,
    deletion_by_token_keeps_a_newer_registration,
    an_account_is_erased_whole_and_alone
);
