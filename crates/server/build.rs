//! Generates the server side of etcd's v3lock, v3election and Auth gRPC
//! services (etcd-client ships only their clients, and not every Auth
//! message) from `proto/`. The etcd messages
//! they embed map to etcd-client's types, so one `ResponseHeader` or
//! `KeyValue` type serves every service.

fn main() -> std::io::Result<()> {
    tonic_prost_build::configure()
        .build_client(true)
        .extern_path(".etcdserverpb.ResponseHeader", "::etcd_client::proto::PbResponseHeader")
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(&["proto/v3lock.proto", "proto/v3election.proto", "proto/v3auth.proto"], &["proto"])
}
