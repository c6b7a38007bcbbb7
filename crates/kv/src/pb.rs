//! The etcd v3 API messages this crate speaks, under their etcd names.
//!
//! The types are prost messages and enums generated from etcd's own
//! `.proto` files by `synod-etcd-api` (messages only: no tonic, no tokio).
//! The nested ones are re-exported at the top so code here reads like
//! etcd's documentation: `SortTarget` is `RangeRequest.SortTarget`,
//! `TargetUnion` is `Compare.target_union`, `Request` is
//! `RequestOp.request`. A field typed `i32` on the wire reads as its enum
//! with `Enum::try_from(value)` or the message's generated getter.

pub use synod_etcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
pub use synod_etcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
pub use synod_etcd_api::etcdserverpb::request_op::Request;
pub use synod_etcd_api::etcdserverpb::response_op::Response as OpResponse;
pub use synod_etcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, HashKvRequest,
    HashKvResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
pub use synod_etcd_api::mvccpb::event::EventType;
pub use synod_etcd_api::mvccpb::{Event, KeyValue};

/// A response header carrying only the store revision; cluster id, member id
/// and term are the server's to fill in.
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..ResponseHeader::default() })
}
