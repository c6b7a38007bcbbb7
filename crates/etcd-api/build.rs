//! Compiles etcd's v3 API (`proto/`, see its README) with one protoc run:
//! prost messages for every package the services use, tonic client and
//! server stubs when the `grpc` feature is on, and `etcd_api.bin`, the
//! descriptor set with every import and option kept (the `google.api.http`
//! annotations the gateway routes by).
//!
//! protoc and the well-known types come from protoc-bin-vendored, so a
//! build needs nothing installed; `PROTOC` overrides the binary.

use std::path::PathBuf;

/// The files whose services and messages the crate exports; their imports
/// (mvccpb, authpb, versionpb, google.api, the OpenAPI options) come along.
const PROTOS: [&str; 3] = [
    "proto/etcd/api/etcdserverpb/rpc.proto",
    "proto/etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "proto/etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
];

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let protoc = match std::env::var_os("PROTOC") {
        Some(protoc) => PathBuf::from(protoc),
        None => protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?,
    };
    let well_known = protoc_bin_vendored::include_path().map_err(std::io::Error::other)?;

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // protoc's own output, before prost decodes it (and drops the options
    // it has no types for).
    config.file_descriptor_set_path(out.join("etcd_api.bin"));
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .build_transport(grpc)
        .emit_rerun_if_changed(false)
        .compile_with_config(config, &PROTOS.map(PathBuf::from), &[PathBuf::from("proto"), well_known])
}
