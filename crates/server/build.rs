//! Generates the server side of etcd's v3lock, v3election and Auth gRPC
//! services (etcd-client ships only their clients, and not every Auth
//! message) from `proto/`. The etcd messages
//! they embed map to etcd-client's types, so one `ResponseHeader` or
//! `KeyValue` type serves every service.
//!
//! Also writes `etcd_api.bin`, the descriptor set of etcd's whole v3 API
//! (`proto/etcd-api/`, see its README) with every import and every option
//! kept, `google.api.http` annotations included: the HTTP/JSON gateway
//! (`src/gateway.rs`) reads its routes and JSON mapping from it.

use std::path::PathBuf;
use std::process::Command;

/// The services the gateway serves, by their etcd paths.
const GATEWAY_PROTOS: &[&str] = &[
    "etcd/api/etcdserverpb/rpc.proto",
    "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
];

fn main() -> std::io::Result<()> {
    tonic_prost_build::configure()
        .build_client(true)
        .extern_path(".etcdserverpb.ResponseHeader", "::etcd_client::proto::PbResponseHeader")
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(&["proto/v3lock.proto", "proto/v3election.proto", "proto/v3auth.proto"], &["proto"])?;
    gateway_descriptors()
}

/// Runs protoc itself rather than through prost-build: prost-build decodes
/// the set into prost-types, which drops the annotations (extensions it
/// does not know), and the gateway needs exactly those.
fn gateway_descriptors() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/etcd-api");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let mut protoc = Command::new(prost_build::protoc_from_env());
    protoc
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.join("etcd_api.bin").display()))
        .arg("-I")
        .arg("proto/etcd-api");
    if let Some(include) = prost_build::protoc_include_from_env() {
        protoc.arg("-I").arg(include);
    }
    let status = protoc.args(GATEWAY_PROTOS).status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("protoc failed on proto/etcd-api ({status})")));
    }
    Ok(())
}
