//! The etcd v3 API messages this crate speaks, under their etcd names.
//!
//! The types are prost messages generated from etcd's own `.proto` files by
//! the `etcd-client` crate (feature `build-server`), which re-exports them
//! under `etcd_client::proto` with a `Pb` prefix. This module gives them back
//! their etcd names so code here reads like etcd's documentation.
//!
//! etcd-client does not re-export the generated enums for sort order, sort
//! target, compare result and event type (the prost fields are plain `i32`),
//! so they are mirrored here with etcd's wire numbers.

pub use etcd_client::proto::{
    PbCompactionRequest as CompactionRequest, PbCompactionResponse as CompactionResponse, PbCompare as Compare,
    PbDeleteRequest as DeleteRangeRequest, PbDeleteResponse as DeleteRangeResponse, PbEvent as Event,
    PbHashKvRequest as HashKvRequest, PbHashKvResponse as HashKvResponse, PbKeyValue as KeyValue,
    PbLeaseGrantRequest as LeaseGrantRequest, PbLeaseGrantResponse as LeaseGrantResponse,
    PbLeaseRevokeRequest as LeaseRevokeRequest, PbLeaseRevokeResponse as LeaseRevokeResponse,
    PbPutRequest as PutRequest, PbPutResponse as PutResponse, PbRangeRequest as RangeRequest,
    PbRangeResponse as RangeResponse, PbResponseHeader as ResponseHeader, PbResponseOp as ResponseOp,
    PbTargetUnion as TargetUnion, PbTxnOpRequest as Request, PbTxnOpResponse as OpResponse, PbTxnRequest as TxnRequest,
    PbTxnRequestOp as RequestOp, PbTxnResponse as TxnResponse,
};

/// Declares a mirror of a generated etcd enum whose wire values are `i32`.
macro_rules! etcd_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $value,)*
        }

        impl $name {
            /// The variant with etcd's wire value `value`, if there is one.
            pub fn from_i32(value: i32) -> Option<Self> {
                match value {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                value as i32
            }
        }
    };
}

etcd_enum! {
    /// `RangeRequest.SortOrder`.
    SortOrder {
        /// No sorting: results come in ascending key order.
        None = 0,
        /// Lowest target value first.
        Ascend = 1,
        /// Highest target value first.
        Descend = 2,
    }
}

etcd_enum! {
    /// `RangeRequest.SortTarget`.
    SortTarget {
        /// Sort by key.
        Key = 0,
        /// Sort by version.
        Version = 1,
        /// Sort by create revision.
        Create = 2,
        /// Sort by mod revision.
        Mod = 3,
        /// Sort by value.
        Value = 4,
    }
}

etcd_enum! {
    /// `Compare.CompareResult`: how the key's field relates to the given one.
    CompareResult {
        /// Field == given.
        Equal = 0,
        /// Field > given.
        Greater = 1,
        /// Field < given.
        Less = 2,
        /// Field != given.
        NotEqual = 3,
    }
}

etcd_enum! {
    /// `Compare.CompareTarget`: which field of the key a compare reads.
    CompareTarget {
        /// `version`.
        Version = 0,
        /// `create_revision`.
        Create = 1,
        /// `mod_revision`.
        Mod = 2,
        /// `value`.
        Value = 3,
        /// `lease`.
        Lease = 4,
    }
}

etcd_enum! {
    /// `mvccpb.Event.EventType`.
    EventType {
        /// A put created or updated the key.
        Put = 0,
        /// A delete removed the key.
        Delete = 1,
    }
}

/// A response header carrying only the store revision; cluster id, member id
/// and term are the server's to fill in.
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..ResponseHeader::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_client::proto::PbCompareTarget;

    #[test]
    fn compare_target_mirror_matches_generated_enum() {
        for (ours, theirs) in [
            (CompareTarget::Version, PbCompareTarget::Version),
            (CompareTarget::Create, PbCompareTarget::Create),
            (CompareTarget::Mod, PbCompareTarget::Mod),
            (CompareTarget::Value, PbCompareTarget::Value),
            (CompareTarget::Lease, PbCompareTarget::Lease),
        ] {
            assert_eq!(i32::from(ours), theirs as i32);
        }
    }
}
