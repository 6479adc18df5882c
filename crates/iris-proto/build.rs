//! Compiles `proto/iris/v1/iris.proto` with protox (pure Rust, no system `protoc`), then
//! generates prost types and pbjson serde impls (protobuf canonical JSON mapping).
//!
//! The JSON side ignores fields and enum names it does not know, as prost does on the binary
//! side: a client built against a newer schema must not be cut off by an older server.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/iris/v1/iris.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("iris_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .bytes(["."])
        .compile_protos(&[proto], &["proto"])?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .ignore_unknown_enum_variants()
        .build(&[".iris.v1"])?;
    Ok(())
}
