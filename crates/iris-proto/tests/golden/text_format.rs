//! The readable form of a fixture: protobuf's text format as `protoc --decode` prints it
//! (fields in number order, enums by name, strings and bytes C-escaped), produced from the
//! bytes and the schema's descriptors alone, never from the Rust types, so it is an independent
//! decoding of what is on the wire.

use std::collections::{BTreeSet, HashMap};

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// The message and enum descriptors of the schema, by full name (`.iris.v1.ClientFrame`).
pub struct Schema {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, HashMap<i32, String>>,
}

/// One field as found on the wire.
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Delimited(&'a [u8]),
}

impl Schema {
    /// Indexes every message and enum of `set`.
    pub fn new(set: &FileDescriptorSet) -> Self {
        let mut messages = HashMap::new();
        let mut enums = HashMap::new();
        for file in &set.file {
            let package = file.package();
            for m in &file.message_type {
                assert!(m.nested_type.is_empty() && m.enum_type.is_empty(), "nested types are not printed");
                messages.insert(format!(".{package}.{}", m.name()), m.clone());
            }
            for e in &file.enum_type {
                let values = e.value.iter().map(|v| (v.number(), v.name().to_owned())).collect();
                enums.insert(format!(".{package}.{}", e.name()), values);
            }
        }
        Self { messages, enums }
    }

    /// `bytes` as message `name` in text format; every (message, field) met goes into `seen`.
    pub fn print(&self, name: &str, bytes: &[u8], seen: &mut BTreeSet<(String, String)>) -> String {
        let mut out = String::new();
        self.message(&mut out, name, bytes, 0, seen);
        out
    }

    fn message(&self, out: &mut String, name: &str, bytes: &[u8], depth: usize, seen: &mut BTreeSet<(String, String)>) {
        let desc = &self.messages[name];
        let mut fields = parse(bytes);
        fields.sort_by_key(|(number, _)| *number);
        let pad = "  ".repeat(depth);
        for (number, value) in fields {
            let Some(f) = desc.field.iter().find(|f| f.number() == number as i32) else {
                panic!("{name}: field {number} is not in the schema");
            };
            seen.insert((desc.name().to_owned(), f.name().to_owned()));
            let packed = f.label() == Label::Repeated && matches!(value, Value::Delimited(_)) && is_varint(f.r#type());
            let values = match (packed, value) {
                (true, Value::Delimited(mut b)) => {
                    let mut vs = Vec::new();
                    while !b.is_empty() {
                        vs.push(Value::Varint(prost::encoding::decode_varint(&mut b).expect("packed varint")));
                    }
                    vs
                }
                (_, v) => vec![v],
            };
            for v in values {
                match (f.r#type(), v) {
                    (Type::Message, Value::Delimited(b)) => {
                        out.push_str(&format!("{pad}{} {{\n", f.name()));
                        self.message(out, f.type_name(), b, depth + 1, seen);
                        out.push_str(&format!("{pad}}}\n"));
                    }
                    (Type::Enum, Value::Varint(n)) => {
                        let n = n as i32;
                        let label = self.enums[f.type_name()].get(&n).cloned().unwrap_or_else(|| n.to_string());
                        out.push_str(&format!("{pad}{}: {label}\n", f.name()));
                    }
                    (Type::String | Type::Bytes, Value::Delimited(b)) => {
                        out.push_str(&format!("{pad}{}: \"{}\"\n", f.name(), c_escape(b)));
                    }
                    (Type::Bool, Value::Varint(n)) => out.push_str(&format!("{pad}{}: {}\n", f.name(), n != 0)),
                    (Type::Uint64, Value::Varint(n)) => out.push_str(&format!("{pad}{}: {n}\n", f.name())),
                    (Type::Uint32, Value::Varint(n)) => out.push_str(&format!("{pad}{}: {}\n", f.name(), n as u32)),
                    (Type::Int64, Value::Varint(n)) => out.push_str(&format!("{pad}{}: {}\n", f.name(), n as i64)),
                    (Type::Int32, Value::Varint(n)) => out.push_str(&format!("{pad}{}: {}\n", f.name(), n as i32)),
                    (Type::Fixed64, Value::Fixed64(n)) => out.push_str(&format!("{pad}{}: {n}\n", f.name())),
                    (Type::Fixed32, Value::Fixed32(n)) => out.push_str(&format!("{pad}{}: {n}\n", f.name())),
                    (t, _) => panic!("{name}.{}: {t:?} with an unexpected wire type", f.name()),
                }
            }
        }
    }
}

fn is_varint(t: Type) -> bool {
    matches!(t, Type::Bool | Type::Enum | Type::Uint32 | Type::Uint64 | Type::Int32 | Type::Int64)
}

/// The fields of one message body in wire order.
fn parse(mut b: &[u8]) -> Vec<(u32, Value<'_>)> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut fields = Vec::new();
    while !b.is_empty() {
        let (number, wire) = decode_key(&mut b).expect("a field key");
        let value = match wire {
            WireType::Varint => Value::Varint(decode_varint(&mut b).expect("a varint")),
            WireType::SixtyFourBit => {
                let (v, rest) = b.split_at(8);
                b = rest;
                Value::Fixed64(u64::from_le_bytes(v.try_into().expect("8 bytes")))
            }
            WireType::ThirtyTwoBit => {
                let (v, rest) = b.split_at(4);
                b = rest;
                Value::Fixed32(u32::from_le_bytes(v.try_into().expect("4 bytes")))
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut b).expect("a length") as usize;
                let (v, rest) = b.split_at(len);
                b = rest;
                Value::Delimited(v)
            }
            other => panic!("unsupported wire type {other:?}"),
        };
        fields.push((number, value));
    }
    fields
}

/// protoc's `CEscape`: printable ASCII as is, the usual backslash escapes, other bytes as three
/// octal digits (so UTF-8 text shows as `\360\237...`, exactly as `protoc --decode` prints it).
fn c_escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'"' => s.push_str("\\\""),
            b'\'' => s.push_str("\\'"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s
}
