//! What the raw load clients put on the wire and take from it: the benchmark payload (scheduled
//! time, sender, seq), a connection's due operations batched into frames with iris-proto's
//! framing, and the few things a load client needs out of a server frame.

use bytes::{BufMut as _, Bytes, BytesMut};
use iris_proto::pb::{self, client_op, group_op, inbox_item, server_event};
use iris_proto::{frame, FrameError};
use iris_server::groups::READ_IDS_MAX;

/// Size of every benchmark payload (as the SDK path's): the stamp, then padding.
pub const PAYLOAD_BYTES: usize = 100;
/// Bytes of the stamp at the front of a payload.
const STAMP_BYTES: usize = 20;
/// Operations per frame: the server refuses more than `Limits::max_ops_per_frame` (256).
pub const OPS_PER_FRAME_MAX: usize = 256;
/// Request id of operations whose answer nobody waits for (acks, pings); sends use their seq.
pub const UNTRACKED_REQUEST: u64 = 0;

/// Which send a payload belongs to and when it was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When the send was scheduled, in [`now_ns`](crate::bench::harness::now_ns) time: latency
    /// counts from here, so a late send counts its lateness (no coordinated omission).
    pub scheduled_ns: u64,
    /// Index of the sending connection in the run.
    pub sender: u32,
    /// The sender's seq of this send (also its request id).
    pub seq: u64,
}

impl Stamp {
    /// A payload carrying this stamp. Its first 8 bytes are the scheduled time, as in the SDK
    /// path's payloads ([`sent_ns`](crate::bench::harness::sent_ns) reads both).
    pub fn payload(&self) -> Bytes {
        let mut p = BytesMut::with_capacity(PAYLOAD_BYTES);
        p.put_u64_le(self.scheduled_ns);
        p.put_u32_le(self.sender);
        p.put_u64_le(self.seq);
        p.put_bytes(0x2a, PAYLOAD_BYTES - STAMP_BYTES);
        p.freeze()
    }

    /// The stamp at the front of `payload`, if it is long enough to carry one.
    pub fn read(payload: &[u8]) -> Option<Self> {
        let b = payload.get(..STAMP_BYTES)?;
        Some(Self {
            scheduled_ns: u64::from_le_bytes(b[0..8].try_into().ok()?),
            sender: u32::from_le_bytes(b[8..12].try_into().ok()?),
            seq: u64::from_le_bytes(b[12..20].try_into().ok()?),
        })
    }
}

/// Where a send goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// A 1:1 message to this account.
    Account(u64),
    /// A message to this group.
    Group(u64),
}

/// The operation that sends `stamp`'s message to `to` (request id = the sender's seq, so the
/// answer finds its send; client_msg_id = the seq, unique per sending device).
pub fn send_op(to: To, stamp: &Stamp) -> pb::ClientOp {
    let (client_msg_id, payload) = (stamp.seq.to_string(), stamp.payload());
    let op = match to {
        To::Account(to_account_id) => client_op::Op::Send(pb::SendMessage {
            client_msg_id,
            to_account_id,
            body: Some(pb::send_message::Body::Payload(payload)),
            ..Default::default()
        }),
        To::Group(group_id) => client_op::Op::Group(pb::GroupOp {
            op: Some(group_op::Op::Send(pb::GroupSend {
                group_id,
                client_msg_id,
                body: Some(pb::group_send::Body::Payload(payload)),
                ..Default::default()
            })),
        }),
    };
    pb::ClientOp { request_id: stamp.seq, op: Some(op) }
}

/// A cumulative ack of every inbox entry up to `up_to_seq`.
pub fn ack_op(up_to_seq: u64) -> pb::ClientOp {
    pb::ClientOp { request_id: UNTRACKED_REQUEST, op: Some(client_op::Op::Ack(pb::Ack { up_to_seq })) }
}

/// Read receipts of `reads` (group, server message id), in the order received: one
/// `GroupRead` per group and [`READ_IDS_MAX`] ids (the server's limit), appended to `ops`. Nobody waits for the
/// answers (the server marks them as it would a member's with the chat open).
pub fn group_read_ops(reads: &[(u64, u64)], ops: &mut Vec<pb::ClientOp>) {
    for run in reads.chunk_by(|a, b| a.0 == b.0) {
        for chunk in run.chunks(READ_IDS_MAX) {
            let read = pb::GroupRead { group_id: chunk[0].0, server_msg_ids: chunk.iter().map(|r| r.1).collect() };
            let op = client_op::Op::Group(pb::GroupOp { op: Some(group_op::Op::Read(read)) });
            ops.push(pb::ClientOp { request_id: UNTRACKED_REQUEST, op: Some(op) });
        }
    }
}

/// A heartbeat.
pub fn ping_op() -> pb::ClientOp {
    pb::ClientOp { request_id: UNTRACKED_REQUEST, op: Some(client_op::Op::Ping(pb::Ping { client_time_ms: 0 })) }
}

/// Appends `ops` to `dst` as frames of at most [`OPS_PER_FRAME_MAX`] operations, leaving `ops`
/// empty (its capacity is kept for the next batch).
pub fn encode_ops(ops: &mut Vec<pb::ClientOp>, dst: &mut BytesMut) {
    while !ops.is_empty() {
        let rest = if ops.len() > OPS_PER_FRAME_MAX { ops.split_off(OPS_PER_FRAME_MAX) } else { Vec::new() };
        let batch = pb::ClientFrame { ops: std::mem::replace(ops, rest) };
        frame::encode(&batch, dst);
        if ops.is_empty() {
            // Give the (now encoded) batch's allocation back for reuse.
            let mut spent = batch.ops;
            spent.clear();
            *ops = spent;
            break;
        }
    }
}

/// What a load client needs from one server event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The answer to the send with this request id (= seq).
    Answer {
        /// The send's request id.
        request_id: u64,
        /// ACCEPTED (else an error).
        accepted: bool,
    },
    /// An inbox entry that is a benchmark message (1:1 or group).
    Message {
        /// Its inbox seq (what the ack refers to).
        inbox_seq: u64,
        /// The stamp in its payload, if it has one.
        stamp: Option<Stamp>,
        /// A group message's group and server message id (what a read receipt names).
        group_msg: Option<(u64, u64)>,
    },
    /// Another inbox entry (receipt, group event…): acked, not counted.
    Entry {
        /// Its inbox seq.
        inbox_seq: u64,
    },
    /// An error that answers no send (fatal ones are followed by the server closing).
    Refused {
        /// The error code's name.
        code: String,
        /// Whether the server closes the connection after it.
        fatal: bool,
    },
    /// The server asks this connection to go away.
    GoAway,
}

/// Decodes one server frame body and hands each event a load client cares about to `on`.
pub fn read_frame(body: &[u8], mut on: impl FnMut(Incoming)) -> Result<(), FrameError> {
    let frame: pb::ServerFrame = frame::decode_body(body)?;
    for event in frame.events {
        let rid = event.request_id;
        match event.event {
            Some(server_event::Event::SendResult(r)) => on(answer(rid, &r)),
            Some(server_event::Event::GroupResult(pb::GroupResult {
                result: Some(pb::group_result::Result::Sent(r)),
            })) => on(answer(rid, &r)),
            Some(server_event::Event::Error(_)) if rid != UNTRACKED_REQUEST => {
                on(Incoming::Answer { request_id: rid, accepted: false })
            }
            Some(server_event::Event::Error(e)) => {
                let code = e.code().as_str_name().to_owned();
                on(Incoming::Refused { code, fatal: e.fatal })
            }
            Some(server_event::Event::GoAway(_)) => on(Incoming::GoAway),
            Some(server_event::Event::Delivery(d)) => {
                for item in d.items {
                    let (payload, group_msg) = match &item.body {
                        Some(inbox_item::Body::Message(m)) => (Some(&m.payload), None),
                        Some(inbox_item::Body::GroupMessage(m)) => {
                            (Some(&m.payload), Some((m.group_id, item.server_msg_id)))
                        }
                        _ => (None, None),
                    };
                    on(match payload {
                        Some(p) => Incoming::Message { inbox_seq: item.seq, stamp: Stamp::read(p), group_msg },
                        None => Incoming::Entry { inbox_seq: item.seq },
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn answer(request_id: u64, r: &pb::SendResult) -> Incoming {
    Incoming::Answer { request_id, accepted: r.status == pb::SendStatus::Accepted as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_proto::FrameDecoder;

    #[test]
    fn a_stamp_survives_its_payload() {
        let s = Stamp { scheduled_ns: 123_456_789, sender: 7, seq: 42 };
        let p = s.payload();
        assert_eq!(p.len(), PAYLOAD_BYTES);
        assert_eq!(Stamp::read(&p), Some(s));
        assert_eq!(crate::bench::harness::sent_ns(&p), Some(123_456_789));
        assert_eq!(Stamp::read(&p[..10]), None);
    }

    #[test]
    fn many_ops_are_split_into_frames_the_server_accepts() {
        let mut ops: Vec<_> =
            (1..=600).map(|seq| send_op(To::Account(9), &Stamp { scheduled_ns: 0, sender: 0, seq })).collect();
        let mut wire = BytesMut::new();
        encode_ops(&mut ops, &mut wire);
        assert!(ops.is_empty());
        let dec = FrameDecoder::new(1 << 20);
        let mut sizes = Vec::new();
        while let Some(body) = dec.decode(&mut wire).unwrap() {
            sizes.push(frame::decode_body::<pb::ClientFrame>(&body).unwrap().ops.len());
        }
        assert_eq!(sizes, vec![256, 256, 88]);
    }

    #[test]
    fn answers_and_deliveries_are_read_out_of_a_server_frame() {
        let stamp = Stamp { scheduled_ns: 5, sender: 1, seq: 3 };
        let message = pb::Message { payload: stamp.payload(), ..Default::default() };
        let in_group = pb::GroupMessage { group_id: 7, payload: stamp.payload(), ..Default::default() };
        let items = vec![
            pb::InboxItem { seq: 10, body: Some(inbox_item::Body::Message(message)), ..Default::default() },
            pb::InboxItem {
                seq: 12,
                server_msg_id: 99,
                body: Some(inbox_item::Body::GroupMessage(in_group)),
                ..Default::default()
            },
            pb::InboxItem {
                seq: 11,
                body: Some(inbox_item::Body::Receipt(pb::Receipt::default())),
                ..Default::default()
            },
        ];
        let accepted = pb::SendResult { status: pb::SendStatus::Accepted as i32, ..Default::default() };
        let events = vec![
            pb::ServerEvent { request_id: 3, event: Some(server_event::Event::SendResult(accepted)) },
            pb::ServerEvent { request_id: 4, event: Some(server_event::Event::Error(pb::Error::default())) },
            pb::ServerEvent { request_id: 0, event: Some(server_event::Event::Delivery(pb::Delivery { items })) },
        ];
        let body = prost_body(&pb::ServerFrame { events });
        let mut got = Vec::new();
        read_frame(&body, |i| got.push(i)).unwrap();
        assert_eq!(
            got,
            vec![
                Incoming::Answer { request_id: 3, accepted: true },
                Incoming::Answer { request_id: 4, accepted: false },
                Incoming::Message { inbox_seq: 10, stamp: Some(stamp), group_msg: None },
                Incoming::Message { inbox_seq: 12, stamp: Some(stamp), group_msg: Some((7, 99)) },
                Incoming::Entry { inbox_seq: 11 },
            ]
        );
    }

    #[test]
    fn read_receipts_go_one_group_read_per_group_and_thousand_ids() {
        let mut reads: Vec<(u64, u64)> = (0..1500).map(|i| (7, i)).collect();
        reads.push((8, 5));
        let mut ops = Vec::new();
        group_read_ops(&reads, &mut ops);
        let sizes: Vec<(u64, usize)> = ops
            .iter()
            .map(|op| match &op.op {
                Some(client_op::Op::Group(pb::GroupOp { op: Some(group_op::Op::Read(r)) })) => {
                    (r.group_id, r.server_msg_ids.len())
                }
                other => panic!("not a group read: {other:?}"),
            })
            .collect();
        assert_eq!(sizes, [(7, 1000), (7, 500), (8, 1)]);
    }

    fn prost_body(f: &pb::ServerFrame) -> Bytes {
        frame::encode_to_bytes(f).slice(frame::LEN_PREFIX_BYTES..)
    }
}
