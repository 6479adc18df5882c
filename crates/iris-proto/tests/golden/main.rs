//! Golden wire fixtures (`crates/iris-proto/fixtures/`): every operation and event as the bytes
//! of a protobuf frame (`<name>.bin`, a WebSocket binary message; TCP puts a 4-byte big-endian
//! length before it), as the text of an `iris.v1.json` message (`<name>.json`) and in readable
//! form (`<name>.txt`, protoc's text format), checked in both directions: the catalog's frames
//! encode to exactly these bytes and this JSON, and the files decode to exactly these frames. A
//! schema change that would break an old client (a renumbered, retyped or renamed field, a
//! renamed enum value) fails here. Python decodes and encodes the same files independently.
//!
//! `IRIS_BLESS=1 cargo nextest run -p iris-proto --test golden` rewrites the files; a changed
//! `.bin` or `.json` for an unchanged catalog value is a broken wire format, not a refresh.

mod catalog;
mod text_format;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use catalog::Frame;
use iris_proto::pb;
use prost::Message;

/// The schema's compiled descriptors (written by `build.rs`).
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/iris_descriptor.bin"));

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn blessing() -> bool {
    std::env::var_os("IRIS_BLESS").is_some_and(|v| v == "1")
}

fn schema() -> text_format::Schema {
    text_format::Schema::new(&prost_types::FileDescriptorSet::decode(DESCRIPTORS).expect("descriptors"))
}

/// The three encodings of one frame, as the current code produces them.
struct Encoded {
    bin: Vec<u8>,
    json: String,
    txt: String,
}

fn encode(schema: &text_format::Schema, frame: &Frame, seen: &mut BTreeSet<(String, String)>) -> Encoded {
    let (bin, json, message) = match frame {
        Frame::Client(f) => (f.encode_to_vec(), serde_json::to_string(f).expect("JSON"), ".iris.v1.ClientFrame"),
        Frame::Server(f) => (f.encode_to_vec(), serde_json::to_string(f).expect("JSON"), ".iris.v1.ServerFrame"),
    };
    let txt = schema.print(message, &bin, seen);
    Encoded { bin, json, txt }
}

/// The fixture files decode to the catalog's frame, from protobuf and from JSON.
fn decodes_to(name: &str, frame: &Frame, bin: &[u8], json: &str) {
    match frame {
        Frame::Client(want) => {
            assert_eq!(&pb::ClientFrame::decode(bin).expect("protobuf"), want, "{name}.bin decodes differently");
            let from_json: pb::ClientFrame = serde_json::from_str(json).expect("JSON");
            assert_eq!(&from_json, want, "{name}.json decodes differently");
        }
        Frame::Server(want) => {
            assert_eq!(&pb::ServerFrame::decode(bin).expect("protobuf"), want, "{name}.bin decodes differently");
            let from_json: pb::ServerFrame = serde_json::from_str(json).expect("JSON");
            assert_eq!(&from_json, want, "{name}.json decodes differently");
        }
    }
}

#[test]
fn every_fixture_encodes_and_decodes_exactly() {
    // Proves: each catalog frame encodes to its .bin, .json and .txt byte for byte, and the
    // files decode back to the frame; no fixture file is left without a catalog entry.
    let (schema, dir) = (schema(), fixtures_dir());
    let mut seen = BTreeSet::new();
    let mut expected_files = BTreeSet::new();
    if blessing() {
        std::fs::create_dir_all(&dir).expect("create the fixtures folder");
    }
    for (name, frame) in catalog::all() {
        let now = encode(&schema, &frame, &mut seen);
        for (ext, bytes) in [("bin", &now.bin[..]), ("json", now.json.as_bytes()), ("txt", now.txt.as_bytes())] {
            let path = dir.join(format!("{name}.{ext}"));
            expected_files.insert(path.file_name().expect("a name").to_owned());
            if blessing() {
                std::fs::write(&path, bytes).expect("write a fixture");
                continue;
            }
            let on_disk =
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (IRIS_BLESS=1 writes it)", path.display()));
            assert!(
                on_disk == bytes,
                "{name}.{ext} differs from what the code produces; if the schema change is meant to break old clients, \
                 re-bless with IRIS_BLESS=1.\n  on disk: {}\n  now:     {}",
                String::from_utf8_lossy(&on_disk),
                String::from_utf8_lossy(bytes),
            );
        }
        let bin = std::fs::read(dir.join(format!("{name}.bin"))).expect("the .bin");
        let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("the .json");
        decodes_to(name, &frame, &bin, &json);
    }
    for entry in std::fs::read_dir(&dir).expect("the fixtures folder") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().expect("a name");
        if !name.to_string_lossy().starts_with('.') && !expected_files.contains(name) {
            if blessing() {
                std::fs::remove_file(&path).expect("remove a stale fixture");
            } else {
                panic!("{} has no catalog entry (IRIS_BLESS=1 removes it)", path.display());
            }
        }
    }
}

#[test]
fn every_operation_event_and_inbox_entry_has_a_fixture() {
    // Proves: each member of the oneofs a client must handle (operations, events, group
    // operations and results, inbox entries) appears in at least one fixture.
    let schema = schema();
    let mut seen = BTreeSet::new();
    for (_, frame) in catalog::all() {
        encode(&schema, &frame, &mut seen);
    }
    let set = prost_types::FileDescriptorSet::decode(DESCRIPTORS).expect("descriptors");
    let mut missing = Vec::new();
    for m in set.file.iter().flat_map(|f| &f.message_type) {
        if !["ClientOp", "ServerEvent", "GroupOp", "GroupResult", "InboxItem"].contains(&m.name()) {
            continue;
        }
        for f in m.field.iter().filter(|f| f.oneof_index.is_some()) {
            if !seen.contains(&(m.name().to_owned(), f.name().to_owned())) {
                missing.push(format!("{}.{}", m.name(), f.name()));
            }
        }
    }
    assert!(missing.is_empty(), "no fixture covers: {}", missing.join(", "));
}

#[test]
fn unknown_fields_and_enum_names_are_ignored_in_both_formats() {
    // Proves: a frame from a newer schema (extra fields, an unknown operation, an unknown enum
    // name) decodes from JSON as from protobuf: extras dropped, the unknown operation empty,
    // the unknown enum UNSPECIFIED.
    let json = r#"{"ops":[
        {"requestId":"1","ping":{"clientTimeMs":"2","later":true},"later":{"x":[1]}},
        {"requestId":"2","teleport":{}},
        {"requestId":"3","receipt":{"type":"RECEIPT_TYPE_FROM_THE_FUTURE","toAccountId":"4"}}
    ],"later":"yes"}"#;
    let frame: pb::ClientFrame = serde_json::from_str(json).expect("unknown fields are ignored");
    let want = pb::ClientFrame {
        ops: vec![
            pb::ClientOp { request_id: 1, op: Some(pb::client_op::Op::Ping(pb::Ping { client_time_ms: 2 })) },
            pb::ClientOp { request_id: 2, op: None },
            pb::ClientOp {
                request_id: 3,
                op: Some(pb::client_op::Op::Receipt(pb::SendReceipt { to_account_id: 4, ..Default::default() })),
            },
        ],
    };
    assert_eq!(frame, want);
    let mut bin = want.encode_to_vec();
    prost::encoding::encode_key(4242, prost::encoding::WireType::Varint, &mut bin);
    prost::encoding::encode_varint(1, &mut bin);
    assert_eq!(pb::ClientFrame::decode(&bin[..]).expect("unknown fields are ignored"), want);
}

#[test]
fn the_python_client_reads_and_writes_the_fixtures_identically() {
    // Proves: an independent decoder (clients/python, written from iris.proto alone) turns every
    // .bin into the same .txt and .json, and every .json back into the same .bin.
    if blessing() {
        return; // the files are being rewritten by the test above, possibly concurrently
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("clients/python/iris_client.py");
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/iris/v1/iris.proto");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("fixtures")
        .arg(&proto)
        .arg(fixtures_dir())
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for this test (scripts/test.sh installs it): {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python client disagrees with the fixtures:\n{stdout}\n{stderr}");
    println!("{stdout}");
}
