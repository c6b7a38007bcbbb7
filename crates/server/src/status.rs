//! Errors as etcd reports them: the gRPC code and the exact message etcd's
//! clients match on.

use crate::state::machine::{MachineError, Output, Reply};
use synod_kv::KvError;
use synod_paxos::{ReconfigError, TransferError};
use tonic::{Code, Status};

/// etcd's `ErrRequestTooLarge`.
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
/// etcd's `ErrTimeout`.
pub const TIMEOUT: &str = "etcdserver: request timed out";
/// etcd's `ErrNoLeader`.
pub const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's `ErrTooManyRequests`.
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
/// etcd's `ErrStopped`.
pub const STOPPED: &str = "etcdserver: server stopped";

/// etcd's `ErrGRPCMemberNotFound`.
pub const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
/// etcd's `ErrGRPCPeerURLExist`.
pub const PEER_URL_EXISTS: &str = "etcdserver: Peer URLs already exists";
/// etcd's `ErrGRPCMemberBadURLs`.
pub const BAD_URLS: &str = "etcdserver: given member URLs are invalid";
/// etcd's `ErrGRPCMemberNotLearner`.
pub const NOT_LEARNER: &str = "etcdserver: can only promote a learner member";
/// etcd's `ErrGRPCLearnerNotReady`.
pub const LEARNER_NOT_READY: &str = "etcdserver: can only promote a learner member which is in sync with leader";
/// etcd's `ErrGRPCMemberNotEnoughStarted`.
pub const NOT_ENOUGH_STARTED: &str = "etcdserver: re-configuration failed due to not enough started members";
/// etcd's `ErrGRPCLeaderChanged`.
pub const LEADER_CHANGED: &str = "etcdserver: leader changed";

/// etcd's `ErrGRPCBadLeaderTransferee`.
pub const BAD_TRANSFEREE: &str = "etcdserver: bad leader transferee";

/// A reply of the wrong kind from the state machine (a server bug).
pub fn unexpected(reply: impl std::fmt::Debug) -> Status {
    Status::internal(format!("synod: unexpected reply: {reply:?}"))
}

/// The state machine's answer, or its error or the runtime's as etcd
/// reports them.
pub fn outcome(result: Result<Output, synod_runtime::Error>) -> Result<Reply, Status> {
    match result {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(machine(&e)),
        Err(e) => Err(runtime(&e)),
    }
}

/// A key-value error with etcd's code and message.
pub fn kv(e: &KvError) -> Status {
    Status::new(Code::from(e.code() as i32), e.to_string())
}

/// An auth refusal with etcd's code and message.
pub fn auth(e: crate::auth::AuthError) -> Status {
    Status::new(e.code(), e.to_string())
}

/// An auth refusal as etcd hands it back where its API layer does not
/// translate it (the admin checks of Defragment, Hash, HashKV and
/// Snapshot): code Unknown and the `auth` package's text.
pub fn auth_untranslated(e: crate::auth::AuthError) -> Status {
    Status::unknown(e.auth_package_text())
}

/// An error as Go's gRPC `status` package prints it, `rpc error: code =
/// <name> desc = <message>`: etcd sends that text where it reports an
/// error inside a response rather than as the call's status (the reason a
/// watch is canceled for, from `rpctypes.ErrGRPC*.Error()`).
pub fn go_error_text(status: &Status) -> String {
    format!("rpc error: code = {} desc = {}", go_code_name(status.code()), status.message())
}

/// A code as grpc-go names it (`codes.Code.String()`): the label etcd's
/// metrics carry and the name in its error texts (tonic's Debug spells
/// Cancelled and Ok differently).
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A state machine error.
pub fn machine(e: &MachineError) -> Status {
    match e {
        MachineError::Kv(e) => kv(e),
        MachineError::Auth(e) => auth(*e),
        MachineError::Malformed(m) => Status::internal(format!("synod: {m}")),
    }
}

/// A runtime error: whether the request took effect is unknown for a
/// timeout, as with etcd.
pub fn runtime(e: &synod_runtime::Error) -> Status {
    use synod_runtime::Error as E;
    match e {
        E::Timeout | E::SessionExpired => Status::unavailable(TIMEOUT),
        E::NotLeader { .. } => Status::unavailable(NO_LEADER),
        E::Busy => Status::resource_exhausted(TOO_MANY_REQUESTS),
        E::Stopped => Status::unavailable(STOPPED),
        E::Reconfig(e) => reconfig(e),
        E::Transfer(e) => transfer(e),
        other => Status::internal(format!("synod: {other}")),
    }
}

/// A refused or interrupted membership change as etcd reports it.
pub fn reconfig(e: &ReconfigError) -> Status {
    match e {
        ReconfigError::NotLeader { .. } => crate::cluster::forward::not_leader(),
        ReconfigError::InProgress => Status::unavailable(format!("etcdserver: {e}")),
        ReconfigError::UnknownMember(_) => Status::not_found(MEMBER_NOT_FOUND),
        ReconfigError::AlreadyMember(_) => Status::failed_precondition("etcdserver: member ID already exist"),
        ReconfigError::NotALearner(_) => Status::failed_precondition(NOT_LEARNER),
        ReconfigError::LearnerNotInSync(_) => Status::failed_precondition(LEARNER_NOT_READY),
        ReconfigError::NoQuorumReachable { .. } => Status::failed_precondition(NOT_ENOUGH_STARTED),
        ReconfigError::Invalid(m) => Status::invalid_argument(format!("synod: {m}")),
        ReconfigError::Interrupted => Status::unavailable(LEADER_CHANGED),
    }
}

/// A refused or failed leadership transfer as etcd reports it.
pub fn transfer(e: &TransferError) -> Status {
    match e {
        TransferError::NotLeader { .. } => crate::cluster::forward::not_leader(),
        TransferError::BadTransferee(_) => Status::failed_precondition(BAD_TRANSFEREE),
        TransferError::Timeout => Status::unavailable(e.to_string()),
        TransferError::InProgress => Status::unavailable(format!("etcdserver: {e}")),
    }
}

/// A request larger than `--max-request-bytes`.
pub fn too_large() -> Status {
    Status::invalid_argument(REQUEST_TOO_LARGE)
}

/// An RPC this server does not offer yet.
pub fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("synod: {what} is not supported yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_etcd_codes_and_messages() {
        let s = runtime(&synod_runtime::Error::Timeout);
        assert_eq!((s.code(), s.message()), (Code::Unavailable, TIMEOUT));
        let s = runtime(&synod_runtime::Error::NotLeader { leader: None });
        assert_eq!((s.code(), s.message()), (Code::Unavailable, NO_LEADER));
        let s = kv(&KvError::EmptyKey);
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
        let s = kv(&KvError::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
    }

    #[test]
    fn errors_print_as_grpc_go_prints_them() {
        let denied = auth(crate::auth::AuthError::PermissionDenied);
        assert_eq!(go_error_text(&denied), "rpc error: code = PermissionDenied desc = etcdserver: permission denied");
        assert_eq!(go_error_text(&Status::cancelled("x")), "rpc error: code = Canceled desc = x");
    }
}
