//! The names of every key and channel the bus uses, in one place. All start with the namespace
//! (`<ns>:`) so several clusters of Iris nodes, or several tests, can share one Redis Cluster. The
//! `{…}` part is the Redis Cluster hash tag: only it picks the slot, so what must live together
//! (an account's devices; a channel and its probe channel) shares a tag, and what should spread
//! (different accounts, different nodes) does not.
//!
//! | what | name | slot chosen by |
//! |---|---|---|
//! | a node's channel | `<ns>:node:{<node>}` | node id |
//! | its probe channel | `<ns>:node:{<node>}:probe` | node id (same shard as the channel) |
//! | the broadcast channel | `<ns>:bcast:{all}` | fixed: one shard carries every broadcast |
//! | a node's broadcast probe | `<ns>:bcast:{all}:probe:<node>` | fixed (same shard as broadcast) |
//! | a device's session | `<ns>:sess:{<account>}:<device>` → node id (decimal) | account |
//! | soft state | `<ns>:kv:<key>` | the key's own `{tag}` if it has one |
//! | a rate-limit bucket | `<ns>:rate:<key>` | the key's own `{tag}` if it has one |

use iris_store::DeviceAddr;

/// The bus's names for one namespace and one node.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    /// Names under namespace `ns` (validated by the caller: non-empty, no braces).
    pub(crate) fn new(ns: &str) -> Self {
        Self { ns: ns.to_owned() }
    }

    /// The channel node `node` is subscribed to.
    pub(crate) fn node_channel(&self, node: u16) -> String {
        format!("{}:node:{{{node}}}", self.ns)
    }

    /// The channel a node publishes its own liveness probes to; shares the node channel's slot, so
    /// a probe that comes back proves the node channel's subscription is in place too.
    pub(crate) fn node_probe_channel(&self, node: u16) -> String {
        format!("{}:node:{{{node}}}:probe", self.ns)
    }

    /// The channel every node is subscribed to.
    pub(crate) fn broadcast_channel(&self) -> String {
        format!("{}:bcast:{{all}}", self.ns)
    }

    /// A node's own probe channel on the broadcast channel's shard (one per node, so probes do
    /// not fan out to every node).
    pub(crate) fn broadcast_probe_channel(&self, node: u16) -> String {
        format!("{}:bcast:{{all}}:probe:{node}", self.ns)
    }

    /// A device's session registry entry.
    pub(crate) fn session(&self, device: DeviceAddr) -> String {
        format!("{}:sess:{{{}}}:{}", self.ns, device.account, device.device)
    }

    /// A soft-state key.
    pub(crate) fn kv(&self, key: &str) -> String {
        format!("{}:kv:{key}", self.ns)
    }

    /// A rate-limit bucket.
    pub(crate) fn rate(&self, key: &str) -> String {
        format!("{}:rate:{key}", self.ns)
    }
}

/// Slots in a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The cluster slot of a key or sharded channel: CRC16 (XMODEM) of its hash tag (the part between
/// the first `{` and the next `}`, if non-empty) or of the whole key, modulo 16384, as the Redis
/// Cluster specification defines it.
pub(crate) fn slot_of(key: &str) -> u16 {
    let key = key.as_bytes();
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&len| len > 0).map(|len| &rest[..len])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % SLOTS
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Indices of `keys` grouped by slot, in order of first appearance, so each group can be one
/// pipeline (Redis Cluster pipelines must stay within a slot).
pub(crate) fn group_by_slot(keys: &[String]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    let mut by_slot = std::collections::HashMap::<u16, usize>::new();
    for (idx, key) in keys.iter().enumerate() {
        let slot = slot_of(key);
        let group_idx = *by_slot.entry(slot).or_insert_with(|| {
            groups.push((slot, Vec::new()));
            groups.len() - 1
        });
        groups[group_idx].1.push(idx);
    }
    groups.into_iter().map(|(_, idxs)| idxs).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_devices_share_a_slot_and_channels_share_their_probes() {
        // Proves: the hash tags put an account's devices in one slot and each probe channel on its
        // channel's slot, while the namespace alone does not pin everything to one slot.
        let k = Keys::new("t1");
        let a = k.session(DeviceAddr::new(42, 1));
        assert_eq!(a, "t1:sess:{42}:1");
        assert_eq!(slot_of(&a), slot_of(&k.session(DeviceAddr::new(42, 7))));
        assert_eq!(slot_of(&k.node_channel(3)), slot_of(&k.node_probe_channel(3)));
        assert_eq!(slot_of(&k.broadcast_channel()), slot_of(&k.broadcast_probe_channel(9)));
        let slots: std::collections::HashSet<u16> =
            (0..50).map(|acc| slot_of(&k.session(DeviceAddr::new(acc, 1)))).collect();
        assert!(slots.len() > 40, "accounts spread over slots");
    }

    #[test]
    fn slots_match_the_cluster_specification() {
        // Proves: the slot function agrees with the spec's examples and with redis-rs's routing.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}"));
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        for key in ["a", "t:sess:{42}:1", "x{y}z", "{}"] {
            let theirs = redis::cluster_routing::Route::with_key(key, redis::cluster_routing::SlotAddr::Master);
            assert_eq!(
                redis::cluster_routing::Route::new(slot_of(key), redis::cluster_routing::SlotAddr::Master),
                theirs
            );
        }
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        // Proves: grouping by slot keeps every index once and same-slot keys together.
        let k = Keys::new("t");
        let keys: Vec<String> =
            [(1, 1), (2, 1), (1, 2)].iter().map(|&(a, d)| k.session(DeviceAddr::new(a, d))).collect();
        let groups = group_by_slot(&keys);
        assert_eq!(groups[0], vec![0, 2]);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 3);
    }
}
