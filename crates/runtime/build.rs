//! Compiles the versioned schema of Synod's peer messages, log records and
//! directory answers (`proto/synod/v1/synod.proto`) with prost.

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new()
        // Payloads and snapshot chunks share the frame's buffer.
        .bytes(["."])
        .compile_protos(&["proto/synod/v1/synod.proto"], &["proto"])
}
