//! The end-to-end key directory through `KeyStore`, on both engines: identities set once, pools
//! bounded and idempotent, every one-time key handed out exactly once (also under 100
//! concurrent claimers, and on PostgreSQL across two store instances as two nodes would be),
//! the fallback key when the pool is empty, and the low-keys notice once per crossing.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{Engine, Env, Opened};
use iris_store::{
    ClaimedKey, DeviceAddr, DeviceIdentity, IdentityOutcome, KeyCounts, LowKeys, SignedKeyRecord, StoreError,
};

const BOB: DeviceAddr = DeviceAddr { account: 2, device: 1 };
const POOL_MAX: u32 = 200;
const WATERMARK: u32 = 10;

fn identity(tag: &str) -> DeviceIdentity {
    DeviceIdentity { curve25519: format!("curve-{tag}"), ed25519: format!("ed-{tag}"), signature: format!("sig-{tag}") }
}

fn key(id: usize) -> SignedKeyRecord {
    SignedKeyRecord { key_id: format!("k{id:04}"), key: format!("otk-{id}"), signature: format!("sig-{id}") }
}

fn keys(range: std::ops::Range<usize>) -> Vec<SignedKeyRecord> {
    range.map(key).collect()
}

fn fallback(tag: &str) -> SignedKeyRecord {
    SignedKeyRecord { key_id: format!("fb-{tag}"), key: format!("fallback-{tag}"), signature: format!("sig-fb-{tag}") }
}

async fn identities_are_published_once(engine: Engine) {
    // Proves: the first identity is stored (and survives a reopen), the same one again is a
    // harmless retry, another one is a conflict that changes nothing.
    let env = Env::new(engine);
    {
        let store = env.open().await;
        assert_eq!(store.set_identity(BOB, identity("a")).await.unwrap(), IdentityOutcome::Published);
        assert_eq!(store.set_identity(BOB, identity("a")).await.unwrap(), IdentityOutcome::Unchanged);
        assert_eq!(store.set_identity(BOB, identity("b")).await.unwrap(), IdentityOutcome::Conflict(identity("a")));
    }
    let store = env.open().await;
    let other = DeviceAddr::new(2, 2);
    assert_eq!(store.identities(&[BOB, other]).await.unwrap(), vec![Some(identity("a")), None]);
}

async fn claims_take_one_time_keys_then_the_fallback(engine: Engine) {
    // Proves: claims hand out the pool's keys one by one, never twice; the low-keys notice comes
    // once when fewer than the watermark are left; an empty pool hands out the fallback key
    // (with its own notice, once); an upload above the watermark re-arms the notice; and a
    // device without keys gets nothing.
    let env = Env::new(engine);
    let store = env.open().await;
    assert_eq!(store.add_one_time_keys(BOB, &keys(0..12), POOL_MAX, WATERMARK).await.unwrap(), 12);
    store.set_fallback_key(BOB, fallback("1")).await.unwrap();
    assert_eq!(store.key_counts(BOB).await.unwrap(), KeyCounts { one_time_keys: 12, fallback_key: true });
    let mut seen = HashSet::new();
    let mut notices = Vec::new();
    for _ in 0..12 {
        let claim = store.claim_key(BOB, WATERMARK).await.unwrap();
        match claim.key {
            Some(ClaimedKey::OneTime(k)) => assert!(seen.insert(k.key_id.clone()), "{} handed out twice", k.key_id),
            other => panic!("expected a one-time key, got {other:?}"),
        }
        notices.extend(claim.notify);
    }
    assert_eq!(seen.len(), 12);
    assert_eq!(notices, vec![LowKeys { one_time_keys: 9, fallback_key_used: false }]);
    for i in 0..2 {
        let claim = store.claim_key(BOB, WATERMARK).await.unwrap();
        assert_eq!(claim.key, Some(ClaimedKey::Fallback(fallback("1"))));
        let expected = (i == 0).then_some(LowKeys { one_time_keys: 0, fallback_key_used: true });
        assert_eq!(claim.notify, expected, "the fallback notice comes once");
    }
    // Refilled above the watermark: the next crossing is told again.
    store.add_one_time_keys(BOB, &keys(100..111), POOL_MAX, WATERMARK).await.unwrap();
    let notified = store.claim_key(BOB, WATERMARK).await.unwrap();
    assert!(notified.notify.is_none(), "10 left is not below the watermark");
    assert_eq!(
        store.claim_key(BOB, WATERMARK).await.unwrap().notify,
        Some(LowKeys { one_time_keys: 9, fallback_key_used: false })
    );
    let nobody = store.claim_key(DeviceAddr::new(9, 9), WATERMARK).await.unwrap();
    assert_eq!((nobody.key, nobody.notify), (None, None));
}

async fn pools_are_bounded_and_uploads_idempotent(engine: Engine) {
    // Proves: a retried upload adds nothing twice; an upload past the bound is refused whole
    // (typed) and leaves the pool as it was; revocation deletes the keys.
    let env = Env::new(engine);
    let store = env.open().await;
    assert_eq!(store.add_one_time_keys(BOB, &keys(0..100), POOL_MAX, WATERMARK).await.unwrap(), 100);
    assert_eq!(store.add_one_time_keys(BOB, &keys(50..150), POOL_MAX, WATERMARK).await.unwrap(), 150);
    match store.add_one_time_keys(BOB, &keys(150..251), POOL_MAX, WATERMARK).await {
        Err(StoreError::PoolFull { max: POOL_MAX, would_hold: 251 }) => {}
        other => panic!("expected PoolFull, got {other:?}"),
    }
    assert_eq!(store.key_counts(BOB).await.unwrap().one_time_keys, 150);
    store.set_fallback_key(BOB, fallback("x")).await.unwrap();
    store.delete_keys(BOB).await.unwrap();
    assert_eq!(store.key_counts(BOB).await.unwrap(), KeyCounts::default());
}

async fn concurrent_claims_never_hand_out_a_key_twice(engine: Engine) {
    // Proves the directory's promise under contention: 100 claimers race for 50 one-time keys
    // (on PostgreSQL through two store instances, as two nodes would); exactly 50 get distinct
    // one-time keys, the other 50 the fallback key, and the pool is empty after.
    let env = Env::new(engine);
    let first = Arc::new(env.open().await);
    let second = match engine {
        Engine::Postgres => Arc::new(env.open().await),
        Engine::Fjall => first.clone(),
    };
    first.add_one_time_keys(BOB, &keys(0..50), POOL_MAX, WATERMARK).await.unwrap();
    first.set_fallback_key(BOB, fallback("c")).await.unwrap();
    let claimers: Vec<_> = (0..100)
        .map(|i| {
            let store: Arc<Opened> = if i % 2 == 0 { first.clone() } else { second.clone() };
            tokio::spawn(async move { store.claim_key(BOB, WATERMARK).await.unwrap() })
        })
        .collect();
    let (mut one_time, mut fallbacks, mut notices) = (Vec::new(), 0, 0);
    for claimer in claimers {
        let claim = claimer.await.unwrap();
        notices += usize::from(claim.notify.is_some());
        match claim.key {
            Some(ClaimedKey::OneTime(k)) => one_time.push(k.key_id),
            Some(ClaimedKey::Fallback(_)) => fallbacks += 1,
            None => panic!("a claim got nothing"),
        }
    }
    let distinct: HashSet<_> = one_time.iter().collect();
    assert_eq!((one_time.len(), distinct.len(), fallbacks), (50, 50, 50), "each one-time key exactly once");
    assert_eq!(notices, 2, "one low-keys notice and one fallback notice");
    assert_eq!(first.key_counts(BOB).await.unwrap().one_time_keys, 0);
}

async fn key_peers_are_recorded_both_ways(engine: Engine) {
    // Proves: a key exchange is remembered for both accounts, and only since the time asked.
    let env = Env::new(engine);
    let store = env.open().await;
    store.record_key_peers(1, &[2, 3, 1], 1_000).await.unwrap();
    store.record_key_peers(4, &[1], 5_000).await.unwrap();
    assert_eq!(store.key_peers(1, 0).await.unwrap(), vec![2, 3, 4]);
    assert_eq!(store.key_peers(1, 2_000).await.unwrap(), vec![4]);
    assert_eq!(store.key_peers(3, 0).await.unwrap(), vec![1]);
}

both_engines!(
    identities_are_published_once,
    claims_take_one_time_keys_then_the_fallback,
    pools_are_bounded_and_uploads_idempotent,
    concurrent_claims_never_hand_out_a_key_twice,
    key_peers_are_recorded_both_ways,
);
