//! Compiles the versioned schema of Synod's peer messages, log records and
//! directory answers (`proto/synod/v1/synod.proto`) with prost. protoc
//! comes from protoc-bin-vendored, as for the etcd API crate, so a build
//! needs nothing installed; `PROTOC` overrides it.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = match std::env::var_os("PROTOC") {
        Some(protoc) => PathBuf::from(protoc),
        None => protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?,
    };
    prost_build::Config::new()
        .protoc_executable(protoc)
        // Payloads and snapshot chunks share the frame's buffer.
        .bytes(["."])
        .compile_protos(&["proto/synod/v1/synod.proto"], &["proto"])
}
