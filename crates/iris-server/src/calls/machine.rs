//! The calls held by this node, as a state machine with no I/O: who rings, who answered, who
//! gets which signal, when a call ends and who missed it.
//!
//! Events go in ([`CallTable::offer`], [`CallTable::answer`], [`CallTable::ice`],
//! [`CallTable::hangup`], [`CallTable::reject`], [`CallTable::disconnected`],
//! [`CallTable::on_timeout`]), each with the time as an argument; what to do comes out as
//! [`Out`]s: a [`pb::CallEvent`] for one device, or a missed call for one account's inbox. The
//! service (`calls/mod.rs`) carries them out. Here there is no `.await`, no store, no socket and
//! no clock, so every rule is unit-tested on its own.
//!
//! A call has one part per invited account, the caller's first. A callee's part rings on all of
//! its devices until one answers (it joins; the others are told "answered elsewhere"), one
//! declines (for the whole account), the ring timeout passes or the caller cancels (both: a
//! missed call). A blocked caller's callee is a silent part: never rung, never told, and to the
//! caller it looks like an account with no device online. A call ends when nobody rings and at
//! most one device is left in it, or when every device left.
//!
//! Bounded: calls per node, calls per account (taking part or ringing), calls per device
//! (taking part), participants per call, and every call's lifetime.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iris_proto::pb::{self, CallEndReason, CallEventType};
use iris_store::{AccountId, DeviceAddr};

/// The bounds of the table (`[calls]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// How long a callee rings before the call is missed.
    pub ring_timeout: Duration,
    /// How long a call may last at most (then it ends for everybody).
    pub duration_max: Duration,
    /// Accounts per call, the caller included.
    pub participants_max: usize,
    /// Calls one device takes part in at once (as caller or after answering).
    pub calls_per_device_max: usize,
    /// Calls one account takes part in or rings for at once; a callee beyond it is busy.
    pub calls_per_account_max: usize,
    /// Calls this node holds at once.
    pub calls_max: usize,
}

/// Why a call operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No such call here, or this device takes no part in it.
    #[error("call not found")]
    NotFound,
    /// An offer to more accounts than a call may have.
    #[error("a call has at most {max} participants, the caller included; this one would have {n}")]
    TooManyParticipants {
        /// Participants the offer would have.
        n: usize,
        /// The bound.
        max: usize,
    },
    /// The device, the account or the node is in as many calls as allowed.
    #[error("{what} is already in the maximum of {max} calls")]
    Limit {
        /// `this device`, `this account` or `the server`.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// Another device of the account answered or declined first.
    #[error("the call was answered or declined on another device")]
    AnsweredElsewhere,
}

/// What the service must carry out.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Offer this event to this device (ephemeral).
    Event {
        /// The device.
        to: DeviceAddr,
        /// The event (TURN credentials of INCOMING are added by the service).
        event: pb::CallEvent,
    },
    /// Put a missed call into every device inbox of this account (durable).
    Missed {
        /// The account that missed it.
        account: AccountId,
        /// The inbox item's body.
        missed: pb::MissedCall,
    },
}

/// One invited account of an offer, as the service found it.
#[derive(Debug, Clone)]
pub struct Callee {
    /// The account.
    pub account: AccountId,
    /// Its active devices (all ring; those offline simply never hear it).
    pub devices: Vec<u32>,
    /// Whether a device of it is connected somewhere (the caller is told "ringing").
    pub reachable: bool,
    /// Whether it blocked the caller (a silent part).
    pub blocked: bool,
}

/// A new call.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Its id (a server message id: unique, and names the node holding it).
    pub call_id: u64,
    /// The calling device.
    pub caller: DeviceAddr,
    /// Video or voice only.
    pub video: bool,
    /// The group whose members are called, or 0.
    pub group_id: u64,
    /// The caller's SDP offer, opaque.
    pub sdp: Bytes,
    /// Wall-clock ms of the offer (for missed calls).
    pub started_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Rings on these devices.
    Ringing(Vec<u32>),
    /// Blocked the caller: never rung, never told, never missed.
    Silent,
    /// Takes part on this device.
    Joined(u32),
    /// Answered once, and left.
    Left,
    /// Declined.
    Declined,
    /// Did not answer (or was busy).
    Missed,
}

impl Part {
    /// Whether the part counts against its account's bound.
    fn counted(&self) -> bool {
        matches!(self, Part::Ringing(_) | Part::Joined(_))
    }
}

struct Call {
    offer: Offer,
    /// One per invited account, the caller's first.
    parts: Vec<(AccountId, Part)>,
    /// While callees ring: when they stop.
    ring_deadline: Option<Instant>,
    /// When the call ends whatever happens.
    end_deadline: Instant,
    /// Whether any callee ever answered (the end reason is then HANGUP).
    answered: bool,
}

impl Call {
    fn event(&self, t: CallEventType, from: DeviceAddr) -> pb::CallEvent {
        pb::CallEvent {
            r#type: t as i32,
            call_id: self.offer.call_id,
            from_account_id: from.account,
            from_device_id: from.device,
            video: self.offer.video,
            group_id: self.offer.group_id,
            ..Default::default()
        }
    }

    fn joined(&self) -> impl Iterator<Item = DeviceAddr> + '_ {
        self.parts.iter().filter_map(|(a, p)| match p {
            Part::Joined(d) => Some(DeviceAddr::new(*a, *d)),
            _ => None,
        })
    }

    fn ringing(&self) -> impl Iterator<Item = DeviceAddr> + '_ {
        self.parts.iter().flat_map(|(a, p)| match p {
            Part::Ringing(ds) => ds.iter().map(|d| DeviceAddr::new(*a, *d)).collect(),
            _ => Vec::new(),
        })
    }

    fn part_mut(&mut self, account: AccountId) -> Option<&mut Part> {
        self.parts.iter_mut().find(|(a, _)| *a == account).map(|(_, p)| p)
    }

    /// `event` to every device taking part but `except`.
    fn to_joined(&self, event: &pb::CallEvent, except: Option<DeviceAddr>, out: &mut Vec<Out>) {
        for to in self.joined().filter(|d| Some(*d) != except) {
            out.push(Out::Event { to, event: event.clone() });
        }
    }

    fn missed(&self) -> pb::MissedCall {
        pb::MissedCall {
            call_id: self.offer.call_id,
            from_account_id: self.offer.caller.account,
            from_device_id: self.offer.caller.device,
            video: self.offer.video,
            group_id: self.offer.group_id,
            started_ms: self.offer.started_ms,
        }
    }
}

/// Every call this node holds, with the indexes that bound them.
pub struct CallTable {
    limits: CallLimits,
    calls: HashMap<u64, Call>,
    /// Calls each account takes part in or rings for.
    by_account: HashMap<AccountId, Vec<u64>>,
    /// Calls each device takes part in.
    by_device: HashMap<DeviceAddr, Vec<u64>>,
    /// (when, call): ring timeouts and ends of life.
    deadlines: BTreeSet<(Instant, u64)>,
}

impl CallTable {
    /// An empty table with these bounds.
    pub fn new(limits: CallLimits) -> Self {
        Self {
            limits,
            calls: HashMap::new(),
            by_account: HashMap::new(),
            by_device: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// Accounts per call at most.
    pub fn participants_max(&self) -> usize {
        self.limits.participants_max
    }

    /// Calls held.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// When [`CallTable::on_timeout`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// The accounts of a call, the caller first (for the offer's answer).
    pub fn participants(&self, call_id: u64) -> Vec<AccountId> {
        self.calls.get(&call_id).map_or_else(Vec::new, |c| c.parts.iter().map(|(a, _)| *a).collect())
    }

    /// Starts a call: its callees ring (or are busy, or silent). `callees` are distinct and
    /// never the caller's account.
    pub fn offer(&mut self, now: Instant, offer: Offer, callees: Vec<Callee>) -> Result<Vec<Out>, CallError> {
        let l = self.limits;
        let n = callees.len() + 1;
        if n > l.participants_max {
            return Err(CallError::TooManyParticipants { n, max: l.participants_max });
        }
        if self.calls.len() >= l.calls_max {
            return Err(CallError::Limit { what: "the server", max: l.calls_max });
        }
        let caller = offer.caller;
        if self.by_device.get(&caller).map_or(0, Vec::len) >= l.calls_per_device_max {
            return Err(CallError::Limit { what: "this device", max: l.calls_per_device_max });
        }
        if self.account_calls(caller.account) >= l.calls_per_account_max {
            return Err(CallError::Limit { what: "this account", max: l.calls_per_account_max });
        }
        let id = offer.call_id;
        let mut call = Call {
            parts: vec![(caller.account, Part::Joined(caller.device))],
            ring_deadline: Some(now + l.ring_timeout),
            end_deadline: now + l.duration_max,
            answered: false,
            offer,
        };
        // The caller's events go out before any callee hears of the call: carried out in this
        // order, a callee's answer (and so `ANSWERED`) can never reach the caller before
        // `RINGING` does, however the threads carrying them out are scheduled.
        let mut out = Vec::new();
        let mut to_callees = Vec::new();
        for c in callees {
            let from = caller;
            let part = if c.blocked {
                Part::Silent
            } else if self.account_calls(c.account) >= l.calls_per_account_max {
                out.push(Out::Event {
                    to: caller,
                    event: call.event(CallEventType::Busy, DeviceAddr::new(c.account, 0)),
                });
                out.push(Out::Missed { account: c.account, missed: call.missed() });
                Part::Missed
            } else {
                let mut incoming = call.event(CallEventType::Incoming, from);
                incoming.payload = call.offer.sdp.clone();
                for &d in &c.devices {
                    to_callees.push(Out::Event { to: DeviceAddr::new(c.account, d), event: incoming.clone() });
                }
                if c.reachable && !c.devices.is_empty() {
                    let ringing = call.event(CallEventType::Ringing, DeviceAddr::new(c.account, 0));
                    out.push(Out::Event { to: caller, event: ringing });
                }
                Part::Ringing(c.devices)
            };
            call.parts.push((c.account, part));
        }
        out.append(&mut to_callees);
        let accounts: Vec<AccountId> = call.parts.iter().map(|(a, _)| *a).collect();
        for o in &mut out {
            if let Out::Event { event, .. } = o {
                event.participant_account_ids.clone_from(&accounts);
            }
        }
        for (account, part) in &call.parts {
            if part.counted() {
                self.by_account.entry(*account).or_default().push(id);
            }
        }
        self.by_device.entry(caller).or_default().push(id);
        self.deadlines.insert((now + l.ring_timeout, id));
        self.deadlines.insert((call.end_deadline, id));
        self.calls.insert(id, call);
        self.settle(id, CallEndReason::Rejected, &mut out);
        Ok(out)
    }

    /// `device` takes the call: the first device of its account wins.
    pub fn answer(&mut self, device: DeviceAddr, call_id: u64, sdp: Bytes) -> Result<Vec<Out>, CallError> {
        let per_device = self.limits.calls_per_device_max;
        let busy = self.by_device.get(&device).map_or(0, Vec::len) >= per_device;
        let call = self.calls.get_mut(&call_id).ok_or(CallError::NotFound)?;
        let others = match call.part_mut(device.account) {
            Some(Part::Ringing(ds)) if ds.contains(&device.device) => {
                if busy {
                    return Err(CallError::Limit { what: "this device", max: per_device });
                }
                let others: Vec<u32> = ds.iter().copied().filter(|d| *d != device.device).collect();
                *call.part_mut(device.account).expect("found above") = Part::Joined(device.device);
                others
            }
            Some(Part::Joined(d)) if *d == device.device => return Ok(Vec::new()),
            Some(Part::Joined(_) | Part::Declined) => return Err(CallError::AnsweredElsewhere),
            _ => return Err(CallError::NotFound),
        };
        call.answered = true;
        let mut out = Vec::new();
        let elsewhere = call.event(CallEventType::AnsweredElsewhere, device);
        for d in others {
            out.push(Out::Event { to: DeviceAddr::new(device.account, d), event: elsewhere.clone() });
        }
        let answered = pb::CallEvent { payload: sdp, ..call.event(CallEventType::Answered, device) };
        call.to_joined(&answered, Some(device), &mut out);
        self.by_device.entry(device).or_default().push(call_id);
        Ok(out)
    }

    /// An ICE candidate (or any opaque signal) from a device taking part: to `to`, or to every
    /// other device taking part and, from the caller, to the devices still ringing.
    pub fn ice(
        &self,
        device: DeviceAddr,
        call_id: u64,
        candidate: Bytes,
        to: Option<DeviceAddr>,
    ) -> Result<Vec<Out>, CallError> {
        let call = self.calls.get(&call_id).ok_or(CallError::NotFound)?;
        if !call.joined().any(|d| d == device) {
            return Err(CallError::NotFound);
        }
        let from_caller = device == call.offer.caller;
        let event = pb::CallEvent { payload: candidate, ..call.event(CallEventType::Ice, device) };
        let mut targets: Vec<DeviceAddr> = call.joined().filter(|d| *d != device).collect();
        if from_caller {
            targets.extend(call.ringing());
        }
        if let Some(to) = to {
            if !targets.contains(&to) {
                return Err(CallError::NotFound);
            }
            targets = vec![to];
        }
        Ok(targets.into_iter().map(|to| Out::Event { to, event: event.clone() }).collect())
    }

    /// `device` leaves the call; a ringing device declines it instead.
    pub fn hangup(&mut self, device: DeviceAddr, call_id: u64) -> Result<Vec<Out>, CallError> {
        let call = self.calls.get_mut(&call_id).ok_or(CallError::NotFound)?;
        match call.part_mut(device.account) {
            Some(Part::Ringing(ds)) if ds.contains(&device.device) => return self.reject(device, call_id),
            Some(p @ Part::Joined(_)) if *p == Part::Joined(device.device) => *p = Part::Left,
            _ => return Err(CallError::NotFound),
        }
        let mut out = Vec::new();
        let left = call.event(CallEventType::Hangup, device);
        call.to_joined(&left, None, &mut out);
        self.release_device(device, call_id);
        self.release_account(device.account, call_id);
        self.settle(call_id, CallEndReason::Hangup, &mut out);
        Ok(out)
    }

    /// `device`'s account declines the ringing call.
    pub fn reject(&mut self, device: DeviceAddr, call_id: u64) -> Result<Vec<Out>, CallError> {
        let call = self.calls.get_mut(&call_id).ok_or(CallError::NotFound)?;
        let others = match call.part_mut(device.account) {
            Some(p @ Part::Ringing(_)) => {
                let Part::Ringing(ds) = &*p else { unreachable!() };
                if !ds.contains(&device.device) {
                    return Err(CallError::NotFound);
                }
                let others: Vec<u32> = ds.iter().copied().filter(|d| *d != device.device).collect();
                *p = Part::Declined;
                others
            }
            Some(Part::Joined(_) | Part::Declined) => return Err(CallError::AnsweredElsewhere),
            _ => return Err(CallError::NotFound),
        };
        let mut out = Vec::new();
        let elsewhere = call.event(CallEventType::RejectedElsewhere, device);
        for d in others {
            out.push(Out::Event { to: DeviceAddr::new(device.account, d), event: elsewhere.clone() });
        }
        let rejected = call.event(CallEventType::Rejected, DeviceAddr::new(device.account, 0));
        call.to_joined(&rejected, None, &mut out);
        self.release_account(device.account, call_id);
        self.settle(call_id, CallEndReason::Rejected, &mut out);
        Ok(out)
    }

    /// The device's connection ended: it leaves every call it takes part in.
    pub fn disconnected(&mut self, device: DeviceAddr) -> Vec<Out> {
        let ids = self.by_device.get(&device).cloned().unwrap_or_default();
        ids.into_iter().flat_map(|id| self.hangup(device, id).unwrap_or_default()).collect()
    }

    /// Ring timeouts and ends of life due at `now`.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(call) = self.calls.get_mut(&id) else { continue };
            if call.end_deadline <= now {
                let end = pb::CallEvent {
                    reason: CallEndReason::Hangup as i32,
                    ..call.event(CallEventType::Ended, call.offer.caller)
                };
                call.to_joined(&end, None, &mut out);
                for to in call.ringing() {
                    out.push(Out::Event { to, event: end.clone() });
                }
                self.remove(id);
                continue;
            }
            if call.ring_deadline.is_some_and(|r| r <= now) {
                call.ring_deadline = None;
                self.stop_ringing(id, CallEndReason::NoAnswer, &mut out);
                self.settle(id, CallEndReason::NoAnswer, &mut out);
            }
        }
        out
    }

    /// Every part still ringing (or silent) misses the call, told `reason`.
    fn stop_ringing(&mut self, id: u64, reason: CallEndReason, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut released = Vec::new();
        for i in 0..call.parts.len() {
            let (account, part) = call.parts[i].clone();
            match part {
                Part::Ringing(ds) => {
                    let end =
                        pb::CallEvent { reason: reason as i32, ..call.event(CallEventType::Ended, call.offer.caller) };
                    for d in ds {
                        out.push(Out::Event { to: DeviceAddr::new(account, d), event: end.clone() });
                    }
                    out.push(Out::Missed { account, missed: call.missed() });
                    released.push(account);
                }
                Part::Silent => {}
                _ => continue,
            }
            call.parts[i].1 = Part::Missed;
            if reason == CallEndReason::NoAnswer {
                let no_answer = call.event(CallEventType::NoAnswer, DeviceAddr::new(account, 0));
                call.to_joined(&no_answer, None, out);
            }
        }
        for account in released {
            self.release_account(account, id);
        }
    }

    /// Ends the call when every device left (the ringing ones miss it: cancelled), or when
    /// nobody rings and at most one device is left (told `reason`, or HANGUP after an answer).
    fn settle(&mut self, id: u64, reason: CallEndReason, out: &mut Vec<Out>) {
        let Some(call) = self.calls.get(&id) else { return };
        let joined = call.joined().count();
        if joined == 0 {
            self.stop_ringing(id, CallEndReason::Cancelled, out);
            self.remove(id);
            return;
        }
        let ringing = call.parts.iter().any(|(_, p)| matches!(p, Part::Ringing(_) | Part::Silent));
        if !ringing && joined <= 1 {
            let reason = if call.answered { CallEndReason::Hangup } else { reason };
            let end = pb::CallEvent { reason: reason as i32, ..call.event(CallEventType::Ended, call.offer.caller) };
            call.to_joined(&end, None, out);
            self.remove(id);
        }
    }

    /// Forgets a call and its index entries.
    fn remove(&mut self, id: u64) {
        let Some(call) = self.calls.remove(&id) else { return };
        for (account, part) in &call.parts {
            if part.counted() {
                self.release_account(*account, id);
            }
            if let Part::Joined(d) = part {
                self.release_device(DeviceAddr::new(*account, *d), id);
            }
        }
        if let Some(r) = call.ring_deadline {
            self.deadlines.remove(&(r, id));
        }
        self.deadlines.remove(&(call.end_deadline, id));
    }

    fn account_calls(&self, account: AccountId) -> usize {
        self.by_account.get(&account).map_or(0, Vec::len)
    }

    fn release_account(&mut self, account: AccountId, id: u64) {
        release(&mut self.by_account, account, id);
    }

    fn release_device(&mut self, device: DeviceAddr, id: u64) {
        release(&mut self.by_device, device, id);
    }
}

fn release<K: std::hash::Hash + Eq>(index: &mut HashMap<K, Vec<u64>>, key: K, id: u64) {
    if let Some(ids) = index.get_mut(&key) {
        ids.retain(|&i| i != id);
        if ids.is_empty() {
            index.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
