//! Server frames whose deliveries are written straight from stored bytes.
//!
//! The store keeps each inbox entry as an encoded `InboxItem` with seq 0. Decoding it into a
//! [`pb::InboxItem`] only to set its seq and encode it again into the frame was the largest
//! single cost of a delivery (~9 % of a 1:1 message's instructions, plus the encoding). An
//! [`OutFrame`] holds such items as their bytes ([`RawItem`]) and writes the wire form of a
//! `ServerFrame` around them: an `InboxItem`'s bytes followed by a `seq` field are, to any
//! protobuf reader, that item with that seq (the last occurrence of a scalar field wins, and
//! fields may come in any order). Every other event is an ordinary [`pb::ServerEvent`].
//!
//! The bytes a client receives decode to exactly the [`pb::ServerFrame`] that
//! [`OutFrame::to_pb`] builds (the JSON transport's path); the tests check both against prost.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::frame::LEN_PREFIX_BYTES;
use crate::pb;

/// Key of `ServerFrame.events` (field 1, length-delimited).
const KEY_FRAME_EVENTS: u8 = 1 << 3 | 2;
/// Key of `ServerEvent.delivery` (field 4, length-delimited).
const KEY_EVENT_DELIVERY: u8 = 4 << 3 | 2;
/// Key of `Delivery.items` (field 1, length-delimited).
const KEY_DELIVERY_ITEMS: u8 = 1 << 3 | 2;

/// One delivered inbox entry: its stored bytes (an encoded `InboxItem`) and its seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawItem {
    /// The entry's seq in the device's inbox.
    pub seq: u64,
    /// When the server accepted it (`InboxItem.server_ts_ms`, read from the bytes by the
    /// caller): for delivery-latency metrics, not encoded again.
    pub server_ts_ms: u64,
    /// The encoded `InboxItem`, as stored.
    pub bytes: Bytes,
}

impl RawItem {
    /// An `InboxItem` holding only this seq: prost writes it as just the `seq` field (nothing
    /// for a seq of 0), the suffix that gives the stored item its seq.
    fn seq_field(&self) -> pb::InboxItem {
        pb::InboxItem { seq: self.seq, ..Default::default() }
    }

    fn body_len(&self) -> usize {
        self.bytes.len() + self.seq_field().encoded_len()
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
        self.seq_field().encode(buf).expect("the buffer grows");
    }

    /// The item decoded, with its seq.
    pub fn to_pb(&self) -> Result<pb::InboxItem, prost::DecodeError> {
        let mut item = pb::InboxItem::decode(self.bytes.clone())?;
        item.seq = self.seq;
        Ok(item)
    }
}

/// A `Delivery` event whose items are [`RawItem`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDelivery {
    /// The items, ascending by seq.
    pub items: Vec<RawItem>,
}

impl RawDelivery {
    fn body_len(&self) -> usize {
        self.items.iter().map(|i| len_delimited(i.body_len())).sum()
    }
}

/// One event of an [`OutFrame`].
#[derive(Debug, Clone, PartialEq)]
pub enum OutEvent {
    /// Any event, encoded by prost.
    Event(pb::ServerEvent),
    /// A delivery (request id 0), written from its items' bytes.
    Delivery(RawDelivery),
}

impl From<pb::ServerEvent> for OutEvent {
    fn from(event: pb::ServerEvent) -> Self {
        Self::Event(event)
    }
}

impl OutEvent {
    /// Length of the encoded `ServerEvent` (what [`prost::Message::encoded_len`] says of it).
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Event(e) => e.encoded_len(),
            Self::Delivery(d) => len_delimited(d.body_len()),
        }
    }

    /// Appends the event as one `ServerFrame.events` field (key, length, encoded event).
    fn encode_as_frame_field(&self, buf: &mut impl BufMut) {
        buf.put_u8(KEY_FRAME_EVENTS);
        match self {
            Self::Event(e) => e.encode_length_delimited(buf).expect("the buffer grows"),
            Self::Delivery(d) => {
                let body = d.body_len();
                put_len(len_delimited(body), buf);
                buf.put_u8(KEY_EVENT_DELIVERY);
                put_len(body, buf);
                for item in &d.items {
                    buf.put_u8(KEY_DELIVERY_ITEMS);
                    put_len(item.body_len(), buf);
                    item.encode(buf);
                }
            }
        }
    }

    /// The event decoded (the JSON transport's path).
    pub fn to_pb(&self) -> Result<pb::ServerEvent, prost::DecodeError> {
        match self {
            Self::Event(e) => Ok(e.clone()),
            Self::Delivery(d) => Ok(pb::ServerEvent {
                request_id: 0,
                event: Some(pb::server_event::Event::Delivery(pb::Delivery {
                    items: d.items.iter().map(RawItem::to_pb).collect::<Result<_, _>>()?,
                })),
            }),
        }
    }
}

/// A `ServerFrame` on its way out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutFrame {
    /// Its events, in order.
    pub events: Vec<OutEvent>,
}

impl OutFrame {
    /// A frame of these events.
    pub fn of(events: Vec<OutEvent>) -> Self {
        Self { events }
    }

    /// Length of the encoded body (without the frame's length prefix).
    pub fn encoded_len(&self) -> usize {
        self.events.iter().map(|e| len_delimited(e.encoded_len())).sum()
    }

    /// Appends the encoded body.
    pub fn encode(&self, buf: &mut impl BufMut) {
        for event in &self.events {
            event.encode_as_frame_field(buf);
        }
    }

    /// Appends the frame to `dst` as the TCP transport sends it: length prefix, then body.
    pub fn encode_framed(&self, dst: &mut BytesMut) {
        let len = self.encoded_len();
        dst.reserve(LEN_PREFIX_BYTES + len);
        dst.put_u32(len as u32);
        self.encode(dst);
    }

    /// The encoded body in a fresh buffer (one WebSocket binary message).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf
    }

    /// The frame decoded (the JSON transport's path).
    pub fn to_pb(&self) -> Result<pb::ServerFrame, prost::DecodeError> {
        Ok(pb::ServerFrame { events: self.events.iter().map(OutEvent::to_pb).collect::<Result<_, _>>()? })
    }
}

/// Bytes of a length-delimited field with a one-byte key and a body of `body` bytes.
fn len_delimited(body: usize) -> usize {
    1 + prost::length_delimiter_len(body) + body
}

/// Writes a length (prost's varint length delimiter).
fn put_len(len: usize, buf: &mut impl BufMut) {
    prost::encode_length_delimiter(len, buf).expect("the buffer grows");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{inbox_item, server_event};
    use proptest::prelude::*;

    fn item(server_msg_id: u64, payload: Vec<u8>, from: u64) -> pb::InboxItem {
        pb::InboxItem {
            server_msg_id,
            server_ts_ms: 1_700_000_000_000 + server_msg_id,
            body: Some(inbox_item::Body::Message(pb::Message {
                from_account_id: from,
                payload: payload.into(),
                client_msg_id: format!("c{server_msg_id}"),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn raw(seq: u64, item: &pb::InboxItem) -> RawItem {
        RawItem { seq, server_ts_ms: item.server_ts_ms, bytes: item.encode_to_vec().into() }
    }

    /// Encodes `out` by hand and `expected` by prost, and checks that the bytes decode to the
    /// same frame, that the lengths are right, and that the JSON path's frame is the same.
    fn check(out: &OutFrame, expected: &pb::ServerFrame) {
        let bytes = out.encode_to_vec();
        assert_eq!(bytes.len(), out.encoded_len());
        assert_eq!(out.encoded_len(), expected.encoded_len(), "same length as prost's encoding");
        assert_eq!(&pb::ServerFrame::decode(&bytes[..]).unwrap(), expected);
        assert_eq!(&out.to_pb().unwrap(), expected);
        let mut framed = BytesMut::new();
        out.encode_framed(&mut framed);
        assert_eq!(&framed[..4], &(bytes.len() as u32).to_be_bytes());
        assert_eq!(&framed[4..], &bytes[..]);
    }

    #[test]
    fn a_raw_delivery_is_the_delivery_prost_would_write() {
        let items = [item(7, b"hello".to_vec(), 2), item(8, vec![0; 300], 3)];
        let out = OutFrame::of(vec![
            pb::ServerEvent { request_id: 5, event: Some(server_event::Event::Pong(pb::Pong::default())) }.into(),
            OutEvent::Delivery(RawDelivery { items: vec![raw(41, &items[0]), raw(300, &items[1])] }),
        ]);
        let mut with_seqs = items.clone();
        with_seqs[0].seq = 41;
        with_seqs[1].seq = 300;
        let expected = pb::ServerFrame {
            events: vec![
                pb::ServerEvent { request_id: 5, event: Some(server_event::Event::Pong(pb::Pong::default())) },
                pb::ServerEvent {
                    request_id: 0,
                    event: Some(server_event::Event::Delivery(pb::Delivery { items: with_seqs.to_vec() })),
                },
            ],
        };
        check(&out, &expected);
    }

    proptest! {
        #[test]
        fn any_delivery_decodes_to_its_items_with_their_seqs(
            entries in proptest::collection::vec((1u64..u64::MAX, 0usize..20_000, 1u64..1_000_000), 1..12),
        ) {
            let items: Vec<pb::InboxItem> =
                entries.iter().enumerate().map(|(i, &(_, len, from))| item(i as u64 + 1, vec![7; len], from)).collect();
            let raws = entries.iter().zip(&items).map(|(&(seq, _, _), it)| raw(seq, it)).collect();
            let out = OutFrame::of(vec![OutEvent::Delivery(RawDelivery { items: raws })]);
            let with_seqs = entries
                .iter()
                .zip(&items)
                .map(|(&(seq, _, _), it)| pb::InboxItem { seq, ..it.clone() })
                .collect();
            let expected = pb::ServerFrame {
                events: vec![pb::ServerEvent {
                    request_id: 0,
                    event: Some(server_event::Event::Delivery(pb::Delivery { items: with_seqs })),
                }],
            };
            check(&out, &expected);
        }
    }
}
