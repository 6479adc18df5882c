//! Length-prefixed framing: `u32` big-endian length, then one protobuf message.
//!
//! The decoder checks the length word before buffering the body, so an oversized or garbage
//! prefix costs four bytes, not a megabyte. It works on any byte buffer, split anywhere.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Size of the length prefix.
pub const LEN_PREFIX_BYTES: usize = 4;

/// Reserved for "this frame is compressed" (negotiated in a later minor version); must be 0.
pub const COMPRESSED_FLAG: u32 = 1 << 31;

/// Why bytes could not be turned into a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// The limit in force.
        max: u32,
    },
    /// The compression bit was set but compression was not negotiated.
    #[error("frame has the compression flag set, which was not negotiated")]
    UnexpectedCompression,
    /// The body is not a valid protobuf message of the expected type.
    #[error("frame body is not a valid message: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Splits complete frames off the front of a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_bytes: u32,
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: u32) -> Self {
        Self { max_frame_bytes }
    }

    /// Returns the next complete frame body, `None` if more bytes are needed, or an error for an
    /// invalid prefix (after which the stream cannot be resynchronised and must be closed).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = self.peek_len(buf)? else { return Ok(None) };
        if buf.len() < LEN_PREFIX_BYTES + len {
            buf.reserve(LEN_PREFIX_BYTES + len - buf.len());
            return Ok(None);
        }
        buf.advance(LEN_PREFIX_BYTES);
        Ok(Some(buf.split_to(len).freeze()))
    }

    /// Validates the length prefix at the front of `buf`, if four bytes are there.
    pub fn peek_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        if buf.len() < LEN_PREFIX_BYTES {
            return Ok(None);
        }
        let word = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if word & COMPRESSED_FLAG != 0 {
            return Err(FrameError::UnexpectedCompression);
        }
        if word > self.max_frame_bytes {
            return Err(FrameError::TooLarge { len: word, max: self.max_frame_bytes });
        }
        Ok(Some(word as usize))
    }
}

/// Appends `msg` to `dst` as one frame (length prefix and body).
pub fn encode<M: Message>(msg: &M, dst: &mut BytesMut) {
    let len = msg.encoded_len();
    dst.reserve(LEN_PREFIX_BYTES + len);
    dst.put_u32(len as u32);
    msg.encode(dst).expect("reserved enough capacity");
}

/// `msg` as one frame in a fresh buffer.
pub fn encode_to_bytes<M: Message>(msg: &M) -> Bytes {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf);
    buf.freeze()
}

/// Decodes a frame body into a message of type `M`.
pub fn decode_body<M: Message + Default>(body: &[u8]) -> Result<M, FrameError> {
    Ok(M::decode(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{client_op, ClientFrame, ClientOp, Ping};
    use proptest::prelude::*;

    fn ping_frame(n: u64) -> ClientFrame {
        ClientFrame { ops: vec![ClientOp { request_id: n, op: Some(client_op::Op::Ping(Ping { client_time_ms: n })) }] }
    }

    #[test]
    fn oversized_prefix_is_rejected_before_buffering() {
        let dec = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 17][..]);
        assert!(matches!(dec.decode(&mut buf), Err(FrameError::TooLarge { len: 17, max: 16 })));
        let mut buf = BytesMut::from(&[0x80u8, 0, 0, 1, 0][..]);
        assert!(matches!(dec.decode(&mut buf), Err(FrameError::UnexpectedCompression)));
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        assert!(decode_body::<ClientFrame>(&[0xff, 0xff, 0xff]).is_err());
    }

    proptest! {
        /// Any sequence of frames survives encoding and decoding, however the bytes are split.
        #[test]
        fn round_trip_split_anywhere(ids in proptest::collection::vec(any::<u64>(), 1..8), cut in any::<prop::sample::Index>()) {
            let mut wire = BytesMut::new();
            for id in &ids { encode(&ping_frame(*id), &mut wire); }
            let wire = wire.freeze();
            let cut = cut.index(wire.len() + 1);
            let dec = FrameDecoder::new(1024);
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(body) = dec.decode(&mut buf).unwrap() { got.push(decode_body::<ClientFrame>(&body).unwrap()); }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(body) = dec.decode(&mut buf).unwrap() { got.push(decode_body::<ClientFrame>(&body).unwrap()); }
            prop_assert!(buf.is_empty());
            let want: Vec<_> = ids.iter().map(|id| ping_frame(*id)).collect();
            prop_assert_eq!(got, want);
        }

        /// A truncated frame never yields a message and never errors: it waits for more bytes.
        #[test]
        fn truncated_frame_waits(id in any::<u64>(), keep in any::<prop::sample::Index>()) {
            let wire = encode_to_bytes(&ping_frame(id));
            let keep = keep.index(wire.len());
            let mut buf = BytesMut::from(&wire[..keep]);
            prop_assert!(FrameDecoder::new(1024).decode(&mut buf).unwrap().is_none());
        }

        /// Arbitrary bytes never panic the decoder; they give frames, "need more" or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let dec = FrameDecoder::new(1024);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(body)) = dec.decode(&mut buf) {
                let _ = decode_body::<ClientFrame>(&body);
            }
        }

        /// Frames over the limit are refused whatever their content.
        #[test]
        fn oversized_is_refused(len in 1025u32..(1u32 << 31)) {
            let mut buf = BytesMut::new();
            buf.put_u32(len);
            let refused = matches!(FrameDecoder::new(1024).decode(&mut buf), Err(FrameError::TooLarge { .. }));
            prop_assert!(refused);
        }
    }
}
