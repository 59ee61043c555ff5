//! Compiles the .proto files with protox (pure Rust: no system `protoc` needed) and generates
//! the tonic services; also writes the descriptor set gRPC reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/islab/v1/shard.proto",
        "proto/islab/v1/kv.proto",
        "proto/islab/v1/admin.proto",
        "proto/islab/raft/v1/transport.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("islab_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
