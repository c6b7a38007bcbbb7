//! Errors with etcd's gRPC status codes and exact messages.
//!
//! Every error the state machine returns is one etcd returns for the same
//! request, with the same code and message, so the server maps a [`KvError`]
//! to a gRPC status 1:1 (`tonic::Status::new(tonic::Code::from(e.code() as i32), e.to_string())`)
//! and etcd clients recognise it (they match on the message text).

/// A gRPC status code, numbered as in the gRPC spec (and `tonic::Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// The request is malformed; retrying it unchanged cannot succeed.
    InvalidArgument = 3,
    /// A named entity (a lease) does not exist.
    NotFound = 5,
    /// The system is not in a state where the request can be done.
    FailedPrecondition = 9,
    /// A quota is used up (the space quota: etcd's NOSPACE).
    ResourceExhausted = 8,
    /// A revision or TTL is outside the range the store can serve.
    OutOfRange = 11,
}

/// An etcd error from validating or applying a request.
///
/// `Display` is etcd's exact gRPC message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KvError {
    /// A request or compare has an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a key that does not exist, or an
    /// empty operation in a txn.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a non-empty value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a non-zero lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn with more compares or ops than the configured maximum.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn that writes one key twice (put/put or put/delete overlap).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A range with an unknown sort order or sort target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A read, watch, hash or compaction below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read, hash or compaction above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put, revoke or grant naming a lease that does not exist (or lease 0).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant of a lease ID that is already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A grant with a TTL above etcd's maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A write that would grow the store while the space quota is used up
    /// (the NOSPACE alarm is active, or this write would exceed the quota).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Not an etcd error: [`crate::KvState::txn_read`] was given a txn with
    /// writes, which must go through the log. A server bug, not a user's.
    #[error("synod: a txn with writes must be applied through the log")]
    WriteInReadOnlyTxn,
}

impl KvError {
    /// The gRPC status code etcd returns with this error.
    pub fn code(&self) -> Code {
        match self {
            KvError::EmptyKey
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::InvalidSortOption => Code::InvalidArgument,
            KvError::Compacted | KvError::FutureRevision | KvError::LeaseTtlTooLarge => Code::OutOfRange,
            KvError::LeaseNotFound => Code::NotFound,
            KvError::NoSpace => Code::ResourceExhausted,
            KvError::LeaseExists | KvError::WriteInReadOnlyTxn => Code::FailedPrecondition,
        }
    }
}

/// A command's bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid protobuf encoding of a command.
    #[error("malformed command: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The envelope decoded but names no command (an unknown, newer kind).
    #[error("command envelope holds no known command")]
    Empty,
}

/// A snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a valid protobuf encoding of a snapshot.
    #[error("malformed snapshot: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The snapshot was written by an unknown format version.
    #[error("unsupported snapshot format {0}")]
    Format(u32),
    /// The snapshot decodes but breaks an invariant of the store.
    #[error("corrupt snapshot: {0}")]
    Corrupt(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_etcd_codes_and_messages() {
        let cases = [
            (KvError::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (KvError::KeyNotFound, Code::InvalidArgument, "etcdserver: key not found"),
            (KvError::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            (KvError::Compacted, Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (KvError::FutureRevision, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            (KvError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (KvError::LeaseExists, Code::FailedPrecondition, "etcdserver: lease already exists"),
            (KvError::LeaseTtlTooLarge, Code::OutOfRange, "etcdserver: too large lease TTL"),
            (KvError::NoSpace, Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        ];
        for (err, code, message) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.to_string(), message);
        }
    }
}
