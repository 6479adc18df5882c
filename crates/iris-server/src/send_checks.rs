//! The checks every send obeys, 1:1 or group: field limits and, for per-device payloads, that
//! they name exactly the devices they must.
//!
//! Pure functions of the request and the protocol limits; they know no store and no service.

use std::collections::BTreeSet;

use iris_proto::pb;
use iris_store::DeviceAddr;

use crate::error::ServiceError;

/// A send's body, whichever operation (1:1 or group) carries it.
pub enum BodyRef<'a> {
    /// One payload for every device.
    Payload(&'a [u8]),
    /// One payload per device.
    PerDevice(&'a [pb::DevicePayload]),
}

/// The limits every send obeys: a client_msg_id within `max_client_msg_id_bytes`, a body, and
/// each payload within `max_payload_bytes` (per-device: 1 to `max_payloads` of them).
pub fn check_send_fields(
    limits: &iris_proto::Limits,
    client_msg_id: &str,
    body: Option<BodyRef<'_>>,
    max_payloads: usize,
) -> Result<(), ServiceError> {
    let invalid = |m: String| Err(ServiceError::InvalidArgument(m));
    if client_msg_id.is_empty() {
        return invalid("client_msg_id is required".into());
    }
    if client_msg_id.len() > limits.max_client_msg_id_bytes as usize {
        return invalid("client_msg_id is longer than the limit".into());
    }
    let max = limits.max_payload_bytes;
    let too_large = |size: usize| (size > max as usize).then_some(ServiceError::PayloadTooLarge { size, max });
    match body {
        None => invalid("a payload is required".into()),
        Some(BodyRef::Payload(p)) => too_large(p.len()).map_or(Ok(()), Err),
        Some(BodyRef::PerDevice(payloads)) => {
            if payloads.is_empty() || payloads.len() > max_payloads {
                return invalid(format!("per_device must list between 1 and {max_payloads} payloads"));
            }
            payloads.iter().find_map(|p| too_large(p.payload.len())).map_or(Ok(()), Err)
        }
    }
}

/// The devices per-device payloads name, and the devices they must name.
pub type DeviceSets = (BTreeSet<DeviceAddr>, BTreeSet<DeviceAddr>);

/// Both sets, or `None` when they are the same (1:1 and group sends share this); naming a device
/// twice is invalid.
pub fn device_sets(
    per_device: &pb::DevicePayloads,
    targets: &[DeviceAddr],
) -> Result<Option<DeviceSets>, ServiceError> {
    let given: BTreeSet<DeviceAddr> =
        per_device.payloads.iter().map(|p| DeviceAddr::new(p.account_id, p.device_id)).collect();
    if given.len() != per_device.payloads.len() {
        return Err(ServiceError::InvalidArgument("per_device names a device twice".into()));
    }
    let wanted: BTreeSet<DeviceAddr> = targets.iter().copied().collect();
    Ok((given != wanted).then_some((given, wanted)))
}
