//! etcd's v3 API, generated from etcd's own `.proto` files (`proto/`, with
//! their licences): the messages of every package etcd's gRPC services
//! use, under etcd's package names, and with the `grpc` feature the tonic
//! client and server stubs of those services.
//!
//! Without `grpc` the crate is prost messages and nothing else (no tonic,
//! no tokio), which is what a deterministic state machine such as
//! `synod-kv` may depend on. Enums are the generated ones: a field typed
//! `i32` on the wire reads as its enum with the generated getter
//! (`request.sort_target()`) or `Enum::try_from(value)`, and no wire number
//! is ever written by hand.
//!
//! The package modules keep etcd's names (`etcdserverpb`, `mvccpb`,
//! `authpb`, `v3lockpb`, `v3electionpb`), and so the stubs serve etcd's
//! paths (`/etcdserverpb.KV/Range`, `/v3lockpb.Lock/Lock`, ...): etcdctl
//! and etcd's client libraries talk to a server built on them unchanged.
//!
//! [`FILE_DESCRIPTOR_SET`] is protoc's descriptor set of the same files
//! with every import and option kept, `google.api.http` annotations
//! included, for code that reads the API at run time (the HTTP/JSON
//! gateway takes its routes and JSON names from it).

#![warn(missing_docs)]

/// etcd's `etcdserverpb`: the KV, Watch, Lease, Cluster, Maintenance and
/// Auth services and their messages (`etcd/api/etcdserverpb/rpc.proto`).
#[allow(missing_docs, clippy::all, rustdoc::all)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// etcd's `mvccpb`: a key's value and metadata, and watch events
/// (`etcd/api/mvccpb/kv.proto`).
#[allow(missing_docs, clippy::all, rustdoc::all)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// etcd's `authpb`: users, roles and permissions
/// (`etcd/api/authpb/auth.proto`).
#[allow(missing_docs, clippy::all, rustdoc::all)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// etcd's `v3lockpb`: the Lock service and its messages.
#[allow(missing_docs, clippy::all, rustdoc::all)]
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
}

/// etcd's `v3electionpb`: the Election service and its messages.
#[allow(missing_docs, clippy::all, rustdoc::all)]
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
}

/// protoc's `FileDescriptorSet` of etcd's v3 API (`rpc.proto`,
/// `v3lock.proto`, `v3election.proto` and everything they import), encoded,
/// with source info and every option kept.
pub static FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/etcd_api.bin"));

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_reflect::{DescriptorPool, DynamicMessage, Value};

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the descriptor set decodes")
    }

    #[test]
    fn generated_messages_and_the_descriptor_set_agree_on_the_wire() {
        let range = etcdserverpb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 3,
            sort_order: etcdserverpb::range_request::SortOrder::Descend.into(),
            sort_target: etcdserverpb::range_request::SortTarget::Create.into(),
            ..Default::default()
        };
        let descriptor = pool().get_message_by_name("etcdserverpb.RangeRequest").expect("RangeRequest is in the set");
        let dynamic = DynamicMessage::decode(descriptor, range.encode_to_vec().as_slice()).unwrap();
        assert_eq!(dynamic.get_field_by_name("range_end").unwrap().as_bytes().unwrap().as_ref(), b"b");
        assert_eq!(dynamic.get_field_by_name("limit").unwrap().as_ref(), &Value::I64(3));
        // Enums by etcd's names: CREATE is 2 (VERSION is 1).
        let target = prost_reflect::ReflectMessage::descriptor(&dynamic).get_field_by_name("sort_target").unwrap();
        let create = target.kind().as_enum().unwrap().get_value_by_name("CREATE").unwrap();
        assert_eq!(dynamic.get_field(&target).as_enum_number(), Some(create.number()));
    }

    #[test]
    fn the_descriptor_set_keeps_the_http_annotations() {
        let pool = pool();
        let range = pool.get_service_by_name("etcdserverpb.KV").unwrap().methods().find(|m| m.name() == "Range");
        let options = range.expect("KV.Range").options();
        let http = options.extensions().find(|(field, _)| field.full_name() == "google.api.http");
        let (_, rule) = http.expect("KV.Range carries google.api.http");
        let post = rule.as_message().unwrap().get_field_by_name("post").unwrap();
        assert_eq!(post.as_str(), Some("/v3/kv/range"));
    }

    #[test]
    fn every_service_is_in_its_etcd_package() {
        let pool = pool();
        for name in [
            "etcdserverpb.KV",
            "etcdserverpb.Watch",
            "etcdserverpb.Lease",
            "etcdserverpb.Cluster",
            "etcdserverpb.Maintenance",
            "etcdserverpb.Auth",
            "v3lockpb.Lock",
            "v3electionpb.Election",
        ] {
            assert!(pool.get_service_by_name(name).is_some(), "{name}");
        }
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn the_stubs_serve_etcds_paths() {
        use etcdserverpb::*;
        for (served, etcd) in [
            (kv_server::SERVICE_NAME, "etcdserverpb.KV"),
            (watch_server::SERVICE_NAME, "etcdserverpb.Watch"),
            (lease_server::SERVICE_NAME, "etcdserverpb.Lease"),
            (cluster_server::SERVICE_NAME, "etcdserverpb.Cluster"),
            (maintenance_server::SERVICE_NAME, "etcdserverpb.Maintenance"),
            (auth_server::SERVICE_NAME, "etcdserverpb.Auth"),
            (v3lockpb::lock_server::SERVICE_NAME, "v3lockpb.Lock"),
            (v3electionpb::election_server::SERVICE_NAME, "v3electionpb.Election"),
        ] {
            assert_eq!(served, etcd);
        }
    }
}
