//! Arbitrary bytes through the frame decoder (split at an arbitrary point), the protobuf body
//! decoder and the WebSocket JSON path; whatever decodes must survive a re-encode round trip.
#![no_main]

use bytes::BytesMut;
use iris_proto::frame::{decode_body, encode, encode_to_bytes, FrameDecoder};
use iris_proto::pb::ClientFrame;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const MAX_FRAME_BYTES: u32 = 64 * 1024;

fn check_round_trip(frame: &ClientFrame, from_json: bool) {
    // Protobuf: decode(encode(x)) == x, through the framing as well.
    let wire = encode_to_bytes(frame);
    let mut buf = BytesMut::from(&wire[..]);
    let dec = FrameDecoder::new(u32::MAX >> 1);
    let body = dec.decode(&mut buf).expect("own encoding has a valid prefix").expect("complete frame");
    assert!(buf.is_empty(), "bytes left after the one frame");
    let again: ClientFrame = decode_body(&body).expect("own encoding decodes");
    assert_eq!(&again, frame, "protobuf round trip changed the frame");
    assert_eq!(frame.encoded_len(), body.len());
    // JSON (the WebSocket text path): decode(encode(x)) == x. Serialising can fail only for an
    // enum number the schema does not know (prost keeps it as an i32, pbjson refuses to name it);
    // such a frame can only come from protobuf, never from JSON.
    match serde_json::to_vec(frame) {
        Ok(json) => {
            let from_json: ClientFrame = serde_json::from_slice(&json).unwrap_or_else(|e| {
                panic!("JSON round trip failed: {e}: {}", String::from_utf8_lossy(&json))
            });
            assert_eq!(&from_json, frame, "JSON round trip changed the frame");
        }
        Err(e) => assert!(!from_json, "a frame decoded from JSON does not serialise back: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames: JSON straight into a ClientFrame.
    if let Ok(frame) = serde_json::from_slice::<ClientFrame>(data) {
        check_round_trip(&frame, true);
    }

    let Some((&split, rest)) = data.split_first() else { return };
    let split = (split as usize * rest.len()) / 255;
    let dec = FrameDecoder::new(MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    let mut bodies = Vec::new();
    'feed: for chunk in [&rest[..split], &rest[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME_BYTES as usize);
                    bodies.push(body);
                }
                Ok(None) => break,
                Err(_) => break 'feed, // the stream cannot be resynchronised: the server closes it
            }
        }
    }
    // Whole frames taken off the front must be exactly what a one-shot decode finds.
    let mut whole = BytesMut::from(rest);
    for body in &bodies {
        let again = dec.decode(&mut whole).expect("same prefix").expect("same complete frame");
        assert_eq!(&again, body, "decoding depends on where the input was split");
    }
    for body in &bodies {
        if let Ok(frame) = decode_body::<ClientFrame>(body) {
            check_round_trip(&frame, false);
            let mut out = BytesMut::new();
            encode(&frame, &mut out);
            assert!(out.len() >= 4);
        }
    }
});
