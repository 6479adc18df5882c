//! Protocol versions and their negotiation.
//!
//! A server speaks the current minor version of its major and the one before it, so clients can
//! be upgraded after servers. Negotiation picks the highest version both sides speak.

use crate::pb::ProtocolVersion;

/// The version this build speaks natively.
pub const CURRENT: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

/// Every version this build accepts, highest first (current minor and the previous one).
pub fn supported() -> Vec<ProtocolVersion> {
    let mut versions = vec![CURRENT];
    if let Some(minor) = CURRENT.minor.checked_sub(1) {
        versions.push(ProtocolVersion { major: CURRENT.major, minor });
    }
    versions
}

/// Picks the highest version in `offered` that this build supports, or `None`.
pub fn negotiate(offered: &[ProtocolVersion]) -> Option<ProtocolVersion> {
    let supported = supported();
    offered.iter().filter(|v| supported.contains(v)).max_by_key(|v| (v.major, v.minor)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_picks_highest_common_version() {
        let old = ProtocolVersion { major: 0, minor: 9 };
        assert_eq!(negotiate(&[old, CURRENT]), Some(CURRENT));
        assert_eq!(negotiate(&[old]), None);
        assert_eq!(negotiate(&[]), None);
        assert_eq!(negotiate(&[ProtocolVersion { major: 2, minor: 0 }]), None);
    }
}
