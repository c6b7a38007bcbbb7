//! etcd's auth store, replicated: users, roles, their key permissions,
//! whether auth is enabled, the auth revision, and the simple tokens
//! granted. It lives inside the state machine ([`crate::state::machine`]) and
//! changes only by applying an [`AuthCommand`] from the log, so every member
//! enforces the same thing at the same slot.
//!
//! It never hashes a password (bcrypt at etcd's cost takes 50-100 ms, far
//! too long for a state machine every replica applies): the member that
//! receives a `UserAdd` or `UserChangePassword` hashes it and the log carries
//! the hash, as etcd 3.5 does. It never reads a clock either: a simple
//! token's idle expiry is each member's own business ([`crate::token`]).
//!
//! The rules are etcd 3.4's (`auth/store.go`, `auth/range_perm_cache.go`,
//! `etcdserver/apply_auth.go`): the errors, which change bumps the
//! revision, what `root` may and may not lose.

use std::collections::BTreeMap;
use synod_etcd_api::authpb::{permission::Type as PermissionType, Permission, Role, User, UserAddOptions};
use synod_etcd_api::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGrantRoleRequest,
    AuthUserRevokeRoleRequest,
};
use synod_kv::pb::{Request as OpRequest, RequestOp, TxnRequest};
use synod_kv::{Command as KvCommand, KvState};
use tonic::Code;

/// The user every admin operation needs (with the [`ROOT_ROLE`]).
pub const ROOT_USER: &str = "root";
/// The role that may do anything.
pub const ROOT_ROLE: &str = "root";

/// At most this many simple tokens are kept; granting one more forgets the
/// oldest (a client whose token is forgotten gets "invalid auth token" and
/// authenticates again, as after etcd's TTL).
pub const MAX_SIMPLE_TOKENS: usize = 16_384;

/// An auth refusal, with etcd's gRPC code and message (rpctypes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `ErrGRPCRootUserNotExist`.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// `ErrGRPCRootRoleNotExist`.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// `ErrGRPCUserAlreadyExist`.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// `ErrGRPCUserEmpty`: no user given (no token, or auth just enabled).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// `ErrGRPCUserNotFound`.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// `ErrGRPCRoleAlreadyExist`.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// `ErrGRPCRoleNotFound`.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// `ErrGRPCRoleEmpty`.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// `ErrGRPCAuthFailed`.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// `ErrGRPCPermissionNotGiven`.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// `ErrGRPCPermissionDenied`.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// `ErrGRPCRoleNotGranted`.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// `ErrGRPCPermissionNotGranted`.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// `ErrGRPCAuthNotEnabled`.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// `ErrGRPCInvalidAuthToken`.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// `ErrGRPCInvalidAuthMgmt`.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// `ErrGRPCAuthOldRevision`: the token or request predates an auth change.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// etcd's `auth.ErrNoPasswordUser`: a password was given for a user
    /// added without one. etcd's API layer has no translation for it, so
    /// it reaches the client with code Unknown and the auth package's text.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
}

impl AuthError {
    /// etcd's gRPC code for the error.
    pub fn code(self) -> Code {
        use AuthError as E;
        match self {
            E::UserEmpty | E::RoleEmpty | E::AuthFailed | E::PermissionNotGiven | E::InvalidAuthMgmt => {
                Code::InvalidArgument
            }
            E::AuthOldRevision => Code::InvalidArgument,
            E::PermissionDenied => Code::PermissionDenied,
            E::InvalidAuthToken => Code::Unauthenticated,
            E::RootUserNotExist
            | E::RootRoleNotExist
            | E::UserAlreadyExist
            | E::UserNotFound
            | E::RoleAlreadyExist
            | E::RoleNotFound
            | E::RoleNotGranted
            | E::PermissionNotGranted
            | E::AuthNotEnabled => Code::FailedPrecondition,
            E::NoPasswordUser => Code::Unknown,
        }
    }

    /// The text of the error of etcd's `auth` package behind this one
    /// (`auth/store.go`), which a client sees where etcd hands the error
    /// back without translating it to its gRPC form.
    pub fn auth_package_text(self) -> &'static str {
        use AuthError as E;
        match self {
            E::RootUserNotExist => "auth: root user does not exist",
            E::RootRoleNotExist => "auth: root user does not have root role",
            E::UserAlreadyExist => "auth: user already exists",
            E::UserEmpty => "auth: user name is empty",
            E::UserNotFound => "auth: user not found",
            E::RoleAlreadyExist => "auth: role already exists",
            E::RoleNotFound => "auth: role not found",
            E::RoleEmpty => "auth: role name is empty",
            E::AuthFailed => "auth: authentication failed, invalid user ID or password",
            E::PermissionNotGiven => "auth: permission not given",
            E::PermissionDenied => "auth: permission denied",
            E::RoleNotGranted => "auth: role is not granted to the user",
            E::PermissionNotGranted => "auth: permission is not granted to the role",
            E::AuthNotEnabled => "auth: authentication is not enabled",
            E::InvalidAuthToken => "auth: invalid auth token",
            E::InvalidAuthMgmt => "auth: invalid auth management",
            E::AuthOldRevision => "auth: revision in header is old",
            E::NoPasswordUser => "auth: authentication failed, password was given for no password user",
        }
    }
}

/// Who a request comes from (etcd's `AuthInfo`): the user a token or a
/// client certificate names, and the auth revision the token carries (for
/// simple tokens and certificates, the revision when it was checked).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct AuthInfo {
    /// The user name.
    #[prost(string, tag = "1")]
    pub username: String,
    /// The auth revision.
    #[prost(uint64, tag = "2")]
    pub revision: u64,
}

/// A grant of a simple token (the name and the random prefix the receiving
/// member drew); the token is `prefix.slot`, the slot it was applied at.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TokenGrant {
    /// The user authenticated.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The random part.
    #[prost(string, tag = "2")]
    pub prefix: String,
    /// The auth revision at which the password was checked: if the store
    /// moved on since, the grant is refused ([`AuthReply::Stale`]) and the
    /// member checks again, as etcd's `Authenticate` loops.
    #[prost(uint64, tag = "3")]
    pub checked_revision: u64,
    /// Granted to the common name of a client certificate that the
    /// proposing member verified under `--client-cert-auth`, to forward
    /// that client's request to the leader ([`crate::cluster::forward`]): no
    /// password was checked, so a user without one may have it.
    #[prost(bool, tag = "4")]
    pub certificate: bool,
}

/// An auth store change, as the log carries it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthCommand {
    /// Who asks (absent: auth was disabled at the receiving member).
    #[prost(message, optional, tag = "1")]
    pub caller: Option<AuthInfo>,
    /// The change.
    #[prost(oneof = "AuthOp", tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13")]
    pub op: Option<AuthOp>,
}

/// The changes, each etcd's request message (passwords already hashed).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AuthOp {
    /// AuthEnable.
    #[prost(bool, tag = "2")]
    Enable(bool),
    /// AuthDisable.
    #[prost(bool, tag = "3")]
    Disable(bool),
    /// UserAdd, with `hashed_password` set and `password` empty.
    #[prost(message, tag = "4")]
    UserAdd(AuthUserAddRequest),
    /// UserDelete.
    #[prost(message, tag = "5")]
    UserDelete(AuthUserDeleteRequest),
    /// UserChangePassword, with `hashed_password` set and `password` empty.
    #[prost(message, tag = "6")]
    UserChangePassword(AuthUserChangePasswordRequest),
    /// UserGrantRole.
    #[prost(message, tag = "7")]
    UserGrantRole(AuthUserGrantRoleRequest),
    /// UserRevokeRole.
    #[prost(message, tag = "8")]
    UserRevokeRole(AuthUserRevokeRoleRequest),
    /// RoleAdd.
    #[prost(message, tag = "9")]
    RoleAdd(AuthRoleAddRequest),
    /// RoleDelete.
    #[prost(message, tag = "10")]
    RoleDelete(AuthRoleDeleteRequest),
    /// RoleGrantPermission.
    #[prost(message, tag = "11")]
    RoleGrantPermission(AuthRoleGrantPermissionRequest),
    /// RoleRevokePermission.
    #[prost(message, tag = "12")]
    RoleRevokePermission(AuthRoleRevokePermissionRequest),
    /// Authenticate: a simple token granted.
    #[prost(message, tag = "13")]
    Authenticate(TokenGrant),
}

/// What applying an [`AuthCommand`] returns.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthReply {
    /// Done.
    Done,
    /// The simple token granted.
    Token(String),
    /// The password was checked at an older revision: check it again.
    Stale,
}

/// One end of a key interval: a key, or past every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinity,
}

/// A user's permissions merged over its roles (etcd's range permission
/// cache): sorted `[start, end)` intervals for reading and for writing.
#[derive(Clone, Debug, Default, PartialEq)]
struct UserPerms {
    read: Vec<(Vec<u8>, End)>,
    write: Vec<(Vec<u8>, End)>,
}

/// The interval a permission covers: a single key, `[key, range_end)`, or
/// everything from `key` on when `range_end` is `\0`.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            (key.to_vec(), End::Key(next))
        }
        [0] => (key.to_vec(), End::Infinity),
        end => (key.to_vec(), End::Key(end.to_vec())),
    }
}

/// Whether the sorted intervals cover all of `[start, end)`.
fn covers(intervals: &[(Vec<u8>, End)], start: &[u8], end: &End) -> bool {
    let mut reached = End::Key(start.to_vec());
    for (s, e) in intervals {
        if End::Key(s.clone()) > reached {
            return false;
        }
        if *e > reached {
            reached = e.clone();
        }
        if reached >= *end {
            return true;
        }
    }
    false
}

/// Whether a permission's range is one etcd accepts (`isValidPermissionRange`).
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}

/// The replicated auth store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Simple tokens granted: token to user, oldest (lowest slot) first.
    tokens: BTreeMap<String, String>,
    /// Granted tokens by slot, to forget the oldest past [`MAX_SIMPLE_TOKENS`].
    token_slots: BTreeMap<u64, String>,
    /// Derived from users and roles; rebuilt on every change.
    perms: BTreeMap<String, UserPerms>,
}

/// The auth store's snapshot form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthSnapshot {
    /// Whether auth is enabled.
    #[prost(bool, tag = "1")]
    pub enabled: bool,
    /// The auth revision.
    #[prost(uint64, tag = "2")]
    pub revision: u64,
    /// Every user (with the password hash).
    #[prost(message, repeated, tag = "3")]
    pub users: Vec<User>,
    /// Every role.
    #[prost(message, repeated, tag = "4")]
    pub roles: Vec<Role>,
    /// The simple tokens, as `slot`, `token`, `user` triples.
    #[prost(message, repeated, tag = "5")]
    pub tokens: Vec<SnapshotToken>,
}

/// A simple token in a snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotToken {
    /// The slot it was granted at.
    #[prost(uint64, tag = "1")]
    pub slot: u64,
    /// The token.
    #[prost(string, tag = "2")]
    pub token: String,
    /// Its user.
    #[prost(string, tag = "3")]
    pub user: String,
}

fn name_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl AuthStore {
    /// Whether auth is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: bumped by every change but `AuthEnable`, as in etcd.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A user.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// A role.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every user name, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Every role name, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// The user a simple token was granted to.
    pub fn token_user(&self, token: &str) -> Option<&str> {
        self.tokens.get(token).map(String::as_str)
    }

    /// Whether `user` has `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    fn has_root_role(u: &User) -> bool {
        u.roles.iter().any(|r| r == ROOT_ROLE)
    }

    fn bump(&mut self) {
        self.revision += 1;
        self.refresh_perms();
    }

    fn refresh_perms(&mut self) {
        let mut perms = BTreeMap::new();
        for (name, user) in &self.users {
            let mut p = UserPerms::default();
            for role in user.roles.iter().filter_map(|r| self.roles.get(r)) {
                for perm in &role.key_permission {
                    let ivl = interval(&perm.key, &perm.range_end);
                    match PermissionType::try_from(perm.perm_type) {
                        Ok(PermissionType::Read) => p.read.push(ivl),
                        Ok(PermissionType::Write) => p.write.push(ivl),
                        Ok(PermissionType::Readwrite) => {
                            p.read.push(ivl.clone());
                            p.write.push(ivl);
                        }
                        Err(_) => {}
                    }
                }
            }
            p.read.sort();
            p.write.sort();
            perms.insert(name.clone(), p);
        }
        self.perms = perms;
    }

    /// Forgets every simple token of `user` (etcd's `invalidateUser`).
    fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, u| u != user);
        let tokens = &self.tokens;
        self.token_slots.retain(|_, t| tokens.contains_key(t));
    }

    /// etcd's `IsAdminPermitted`: auth disabled, or a user with the root role.
    pub fn check_admin(&self, info: Option<&AuthInfo>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let info = info.filter(|i| !i.username.is_empty()).ok_or(AuthError::UserEmpty)?;
        let user = self.users.get(&info.username).ok_or(AuthError::UserNotFound)?;
        if Self::has_root_role(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's `isOpPermitted`: may `info` read (or write) `[key, range_end)`?
    fn check_op(&self, info: &AuthInfo, key: &[u8], range_end: &[u8], write: bool) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if info.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let user = self.users.get(&info.username).ok_or(AuthError::PermissionDenied)?;
        if Self::has_root_role(user) {
            return Ok(());
        }
        let Some(perms) = self.perms.get(&info.username) else {
            return Err(AuthError::PermissionDenied);
        };
        let intervals = if write { &perms.write } else { &perms.read };
        let allowed = if range_end.is_empty() {
            intervals.iter().any(|(s, e)| s.as_slice() <= key && End::Key(key.to_vec()) < *e)
        } else {
            let (start, end) = interval(key, range_end);
            // A range that ends before it starts is empty: it reads at
            // most its first key.
            if end <= End::Key(start.clone()) {
                intervals.iter().any(|(s, e)| s.as_slice() <= key && End::Key(key.to_vec()) < *e)
            } else {
                covers(intervals, &start, &end)
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's `IsRangePermitted`.
    pub fn check_read(&self, info: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.check_op(info, key, range_end, false)
    }

    /// etcd's `IsPutPermitted` / `IsDeleteRangePermitted`.
    pub fn check_write(&self, info: &AuthInfo, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        self.check_op(info, key, range_end, true)
    }

    /// etcd's `checkLeasePuts`: the caller must be able to write every key
    /// attached to lease `id` (admins always can).
    pub fn check_lease_puts(&self, info: &AuthInfo, kv: Option<&KvState>, id: i64) -> Result<(), AuthError> {
        let Some(lease) = kv.and_then(|kv| kv.lease(id)) else { return Ok(()) };
        if self.check_admin(Some(info)).is_ok() {
            return Ok(());
        }
        lease.keys.iter().try_for_each(|k| self.check_write(info, k, &[]))
    }

    /// etcd's `checkLeaseTimeToLive` and `checkLeaseLeases`: the caller
    /// must be able to read every key attached to the leases `ids` (all
    /// leases when `None`) that exist (admins always can).
    pub fn check_lease_reads(&self, info: &AuthInfo, kv: &KvState, ids: Option<&[i64]>) -> Result<(), AuthError> {
        if !self.enabled || self.check_admin(Some(info)).is_ok() {
            return Ok(());
        }
        let check = |lease: &synod_kv::Lease| lease.keys.iter().try_for_each(|k| self.check_read(info, k, &[]));
        match ids {
            Some(ids) => ids.iter().filter_map(|&id| kv.lease(id)).try_for_each(check),
            None => kv.leases().try_for_each(|(_, l)| check(l)),
        }
    }

    /// etcd's `checkPutAuth`.
    fn check_put(&self, info: &AuthInfo, kv: Option<&KvState>, r: &synod_kv::pb::PutRequest) -> Result<(), AuthError> {
        self.check_write(info, &r.key, &[])?;
        self.check_lease_puts(info, kv, r.lease)?;
        if r.prev_kv {
            self.check_read(info, &r.key, &[])?;
        }
        Ok(())
    }

    fn check_ops(&self, info: &AuthInfo, kv: Option<&KvState>, ops: &[RequestOp]) -> Result<(), AuthError> {
        for op in ops {
            match &op.request {
                Some(OpRequest::RequestRange(r)) => self.check_read(info, &r.key, &r.range_end)?,
                Some(OpRequest::RequestPut(r)) => self.check_put(info, kv, r)?,
                Some(OpRequest::RequestDeleteRange(r)) => {
                    if r.prev_kv {
                        self.check_read(info, &r.key, &r.range_end)?;
                    }
                    self.check_write(info, &r.key, &r.range_end)?;
                }
                Some(OpRequest::RequestTxn(t)) => self.check_txn(info, kv, t)?,
                None => {}
            }
        }
        Ok(())
    }

    /// etcd's `checkTxnAuth`: every compare, and both branches, whichever
    /// runs.
    pub fn check_txn(&self, info: &AuthInfo, kv: Option<&KvState>, t: &TxnRequest) -> Result<(), AuthError> {
        for c in &t.compare {
            self.check_read(info, &c.key, &c.range_end)?;
        }
        self.check_ops(info, kv, &t.success)?;
        self.check_ops(info, kv, &t.failure)
    }

    /// The check etcd's auth applier makes before a key-value command:
    /// `None` means no user was given. Without `kv` (a member checking
    /// before it proposes), the keys attached to leases are not checked:
    /// the state machine checks them where the command applies.
    pub fn check_command(
        &self,
        info: Option<&AuthInfo>,
        kv: Option<&KvState>,
        cmd: &KvCommand,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let empty = AuthInfo::default();
        let info = info.unwrap_or(&empty);
        match cmd {
            KvCommand::Put(r) => self.check_put(info, kv, r),
            KvCommand::DeleteRange(r) => {
                self.check_write(info, &r.key, &r.range_end)?;
                if r.prev_kv {
                    self.check_read(info, &r.key, &r.range_end)?;
                }
                Ok(())
            }
            KvCommand::Txn(t) => self.check_txn(info, kv, t),
            KvCommand::Compact(_) => self.check_admin(Some(info)),
            KvCommand::LeaseGrant(_) => {
                if info.username.is_empty() {
                    Err(AuthError::UserEmpty)
                } else {
                    Ok(())
                }
            }
            KvCommand::LeaseRevoke(r) => self.check_lease_puts(info, kv, r.id),
        }
    }

    /// Applies a change at `slot`. The caller's admin rights are checked
    /// first (etcd's `needAdminPermission`); a refused change changes
    /// nothing.
    pub fn apply(&mut self, slot: u64, cmd: AuthCommand) -> Result<AuthReply, AuthError> {
        let Some(op) = cmd.op else { return Err(AuthError::InvalidAuthMgmt) };
        if !matches!(op, AuthOp::Authenticate(_)) {
            self.check_admin(cmd.caller.as_ref())?;
        }
        match op {
            AuthOp::Enable(_) => {
                if self.enabled {
                    return Ok(AuthReply::Done);
                }
                let root = self.users.get(ROOT_USER).ok_or(AuthError::RootUserNotExist)?;
                if !Self::has_root_role(root) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                self.refresh_perms();
            }
            AuthOp::Disable(_) => {
                if !self.enabled {
                    return Ok(AuthReply::Done);
                }
                self.enabled = false;
                self.tokens.clear();
                self.token_slots.clear();
                self.bump();
            }
            AuthOp::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(&r.name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let options = r.options.unwrap_or(UserAddOptions { no_password: false });
                let password = if options.no_password { Vec::new() } else { r.hashed_password.into_bytes() };
                let user =
                    User { name: r.name.clone().into_bytes(), password, roles: Vec::new(), options: Some(options) };
                self.users.insert(r.name, user);
                self.bump();
            }
            AuthOp::UserDelete(r) => {
                if self.enabled && r.name == ROOT_USER {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(&r.name).ok_or(AuthError::UserNotFound)?;
                self.invalidate_user(&r.name);
                self.bump();
            }
            AuthOp::UserChangePassword(r) => {
                let user = self.users.get_mut(&r.name).ok_or(AuthError::UserNotFound)?;
                user.password = r.hashed_password.into_bytes();
                self.invalidate_user(&r.name);
                self.bump();
            }
            AuthOp::UserGrantRole(r) => {
                if !self.users.contains_key(&r.user) {
                    return Err(AuthError::UserNotFound);
                }
                if r.role != ROOT_ROLE && !self.roles.contains_key(&r.role) {
                    return Err(AuthError::RoleNotFound);
                }
                let user = self.users.get_mut(&r.user).ok_or(AuthError::UserNotFound)?;
                if user.roles.contains(&r.role) {
                    return Ok(AuthReply::Done);
                }
                user.roles.push(r.role);
                user.roles.sort();
                self.bump();
            }
            AuthOp::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let user = self.users.get_mut(&r.name).ok_or(AuthError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|role| *role != r.role);
                if user.roles.len() == before {
                    return Err(AuthError::RoleNotGranted);
                }
                self.bump();
            }
            AuthOp::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(r.name.clone(), Role { name: r.name.into_bytes(), key_permission: Vec::new() });
                self.bump();
            }
            AuthOp::RoleDelete(r) => {
                if self.enabled && r.role == ROOT_ROLE {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(&r.role).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.retain(|role| *role != r.role);
                }
                self.bump();
            }
            AuthOp::RoleGrantPermission(r) => {
                let perm = r.perm.ok_or(AuthError::PermissionNotGiven)?;
                if !valid_permission_range(&perm.key, &perm.range_end) {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let role = self.roles.get_mut(&r.name).ok_or(AuthError::RoleNotFound)?;
                // As etcd: a binary search (the permissions are sorted by
                // key) finds the first permission whose key is not below
                // the new one's; only if that one has the same key and
                // range end is its type replaced. Otherwise the permission
                // is added, even if a later one of the same key has the
                // same range end, and the list sorted by key again, stably
                // (Go's sort.Sort is an insertion sort up to 12 elements;
                // above, its order of equal keys is Go's pdqsort's).
                let first = role.key_permission.partition_point(|p| p.key < perm.key);
                match role.key_permission.get_mut(first).filter(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        role.key_permission.push(Permission { ..perm });
                        role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                self.bump();
            }
            AuthOp::RoleRevokePermission(r) => {
                let role = self.roles.get_mut(&r.role).ok_or(AuthError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission.retain(|p| p.key != r.key || p.range_end != r.range_end);
                if role.key_permission.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                self.bump();
            }
            AuthOp::Authenticate(grant) => {
                if !self.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                let user = self.users.get(&grant.name).ok_or(AuthError::AuthFailed)?;
                if !grant.certificate && user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(AuthError::AuthFailed);
                }
                if grant.checked_revision != self.revision {
                    return Ok(AuthReply::Stale);
                }
                let token = format!("{}.{slot}", grant.prefix);
                self.tokens.insert(token.clone(), grant.name);
                self.token_slots.insert(slot, token.clone());
                while self.token_slots.len() > MAX_SIMPLE_TOKENS {
                    if let Some((_, oldest)) = self.token_slots.pop_first() {
                        self.tokens.remove(&oldest);
                    }
                }
                return Ok(AuthReply::Token(token));
            }
        }
        Ok(AuthReply::Done)
    }

    /// The store's snapshot form.
    pub fn to_snapshot(&self) -> AuthSnapshot {
        AuthSnapshot {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
            tokens: self
                .token_slots
                .iter()
                .filter_map(|(slot, token)| {
                    let user = self.tokens.get(token)?;
                    Some(SnapshotToken { slot: *slot, token: token.clone(), user: user.clone() })
                })
                .collect(),
        }
    }

    /// The store a snapshot holds.
    pub fn from_snapshot(s: AuthSnapshot) -> AuthStore {
        let mut store = AuthStore {
            enabled: s.enabled,
            revision: s.revision,
            users: s.users.into_iter().map(|u| (name_of(&u.name), u)).collect(),
            roles: s.roles.into_iter().map(|r| (name_of(&r.name), r)).collect(),
            tokens: s.tokens.iter().map(|t| (t.token.clone(), t.user.clone())).collect(),
            token_slots: s.tokens.into_iter().map(|t| (t.slot, t.token)).collect(),
            perms: BTreeMap::new(),
        };
        store.refresh_perms();
        store
    }
}

/// The auth store as the services see it: a copy the state machine
/// replaces after every change it applies, read without waiting for the
/// replica.
#[derive(Debug, Default)]
pub struct AuthView(std::sync::RwLock<std::sync::Arc<AuthStore>>);

impl AuthView {
    /// The store as of the latest change this member applied.
    pub fn current(&self) -> std::sync::Arc<AuthStore> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the copy.
    pub fn publish(&self, store: &AuthStore) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(store.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Option<AuthInfo> {
        Some(AuthInfo { username: "root".into(), revision: 0 })
    }

    fn cmd(op: AuthOp) -> AuthCommand {
        AuthCommand { caller: root(), op: Some(op) }
    }

    fn grant(store: &mut AuthStore, role: &str, key: &str, end: &str, t: PermissionType) {
        let perm = Permission { perm_type: t as i32, key: key.into(), range_end: end.into() };
        let r = AuthRoleGrantPermissionRequest { name: role.into(), perm: Some(perm) };
        store.apply(1, cmd(AuthOp::RoleGrantPermission(r))).unwrap();
    }

    fn add_user(store: &mut AuthStore, name: &str) {
        let r = AuthUserAddRequest { name: name.into(), hashed_password: "h".into(), ..Default::default() };
        store.apply(1, cmd(AuthOp::UserAdd(r))).unwrap();
    }

    fn grant_role(store: &mut AuthStore, user: &str, role: &str) {
        let r = AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
        store.apply(1, cmd(AuthOp::UserGrantRole(r))).unwrap();
    }

    fn enabled_store() -> AuthStore {
        let mut s = AuthStore::default();
        add_user(&mut s, "root");
        assert_eq!(s.apply(1, cmd(AuthOp::Enable(true))), Err(AuthError::RootRoleNotExist));
        grant_role(&mut s, "root", "root");
        s.apply(1, cmd(AuthOp::Enable(true))).unwrap();
        s
    }

    #[test]
    fn enable_needs_root_with_the_root_role() {
        let mut s = AuthStore::default();
        assert_eq!(s.apply(1, cmd(AuthOp::Enable(true))), Err(AuthError::RootUserNotExist));
        let s = enabled_store();
        assert!(s.enabled());
    }

    #[test]
    fn permissions_cover_keys_ranges_and_prefixes_as_etcd_merges_them() {
        let mut s = enabled_store();
        let role = AuthRoleAddRequest { name: "r".into() };
        s.apply(1, cmd(AuthOp::RoleAdd(role))).unwrap();
        add_user(&mut s, "u");
        grant_role(&mut s, "u", "r");
        grant(&mut s, "r", "a", "c", PermissionType::Read);
        grant(&mut s, "r", "c", "e", PermissionType::Readwrite);
        grant(&mut s, "r", "k", "", PermissionType::Write);
        grant(&mut s, "r", "z", "\0", PermissionType::Read);
        let u = AuthInfo { username: "u".into(), revision: s.revision() };
        assert_eq!(s.check_read(&u, b"b", b""), Ok(()));
        assert_eq!(s.check_read(&u, b"a", b"e"), Ok(()), "adjacent ranges merge");
        assert_eq!(s.check_read(&u, b"a", b"f"), Err(AuthError::PermissionDenied));
        assert_eq!(s.check_write(&u, b"b", b""), Err(AuthError::PermissionDenied));
        assert_eq!(s.check_write(&u, b"d", b""), Ok(()));
        assert_eq!(s.check_write(&u, b"k", b""), Ok(()));
        assert_eq!(s.check_write(&u, b"k\0", b""), Err(AuthError::PermissionDenied));
        assert_eq!(s.check_read(&u, b"zz", b"\0"), Ok(()), "open-ended");
        let old = AuthInfo { revision: s.revision() - 1, ..u.clone() };
        assert_eq!(s.check_read(&old, b"b", b""), Err(AuthError::AuthOldRevision));
        let nobody = AuthInfo::default();
        assert_eq!(s.check_read(&nobody, b"b", b""), Err(AuthError::UserEmpty));
        assert_eq!(s.check_admin(Some(&u)), Err(AuthError::PermissionDenied));
    }

    #[test]
    fn a_grant_replaces_only_the_first_permission_of_its_key_as_etcd_does() {
        let mut s = enabled_store();
        s.apply(1, cmd(AuthOp::RoleAdd(AuthRoleAddRequest { name: "r".into() }))).unwrap();
        grant(&mut s, "r", "a", "c", PermissionType::Write);
        grant(&mut s, "r", "a", "b", PermissionType::Read);
        // The first permission of key a ends at c: etcd adds another [a, b).
        grant(&mut s, "r", "a", "b", PermissionType::Readwrite);
        let perms: Vec<(&[u8], &[u8], i32)> =
            s.role("r").unwrap().key_permission.iter().map(|p| (&p.key[..], &p.range_end[..], p.perm_type)).collect();
        let (read, write, readwrite) =
            (PermissionType::Read as i32, PermissionType::Write as i32, PermissionType::Readwrite as i32);
        assert_eq!(perms, [(&b"a"[..], &b"c"[..], write), (b"a", b"b", read), (b"a", b"b", readwrite)]);
        // The first one of key a is replaced.
        grant(&mut s, "r", "a", "c", PermissionType::Read);
        assert_eq!(s.role("r").unwrap().key_permission[0].perm_type, read);
        // A revocation takes every permission of the range.
        let revoke = AuthRoleRevokePermissionRequest { role: "r".into(), key: b"a".to_vec(), range_end: b"b".to_vec() };
        s.apply(1, cmd(AuthOp::RoleRevokePermission(revoke))).unwrap();
        assert_eq!(s.role("r").unwrap().key_permission.len(), 1);
    }

    #[test]
    fn root_keeps_its_role_and_tokens_die_with_their_user() {
        let mut s = enabled_store();
        let revoke = AuthUserRevokeRoleRequest { name: "root".into(), role: "root".into() };
        assert_eq!(s.apply(1, cmd(AuthOp::UserRevokeRole(revoke))), Err(AuthError::InvalidAuthMgmt));
        add_user(&mut s, "u");
        let grant =
            TokenGrant { name: "u".into(), prefix: "abc".into(), checked_revision: s.revision(), certificate: false };
        assert_eq!(s.apply(9, cmd(AuthOp::Authenticate(grant.clone()))), Ok(AuthReply::Token("abc.9".into())));
        assert_eq!(s.token_user("abc.9"), Some("u"));
        let stale = TokenGrant { checked_revision: s.revision() - 1, ..grant };
        assert_eq!(s.apply(10, cmd(AuthOp::Authenticate(stale))), Ok(AuthReply::Stale));
        let restored = AuthStore::from_snapshot(s.to_snapshot());
        assert_eq!(restored, s);
        s.apply(11, cmd(AuthOp::UserDelete(AuthUserDeleteRequest { name: "u".into() }))).unwrap();
        assert_eq!(s.token_user("abc.9"), None);
        let outsider = AuthCommand { caller: None, op: Some(AuthOp::RoleAdd(AuthRoleAddRequest { name: "x".into() })) };
        assert_eq!(s.apply(12, outsider), Err(AuthError::UserEmpty));
    }

    #[test]
    fn a_user_without_a_password_gets_a_token_only_for_its_certificate() {
        let mut s = enabled_store();
        let r = AuthUserAddRequest {
            name: "cn".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        };
        s.apply(2, cmd(AuthOp::UserAdd(r))).unwrap();
        let grant =
            TokenGrant { name: "cn".into(), prefix: "p".into(), checked_revision: s.revision(), certificate: false };
        assert_eq!(s.apply(3, cmd(AuthOp::Authenticate(grant.clone()))), Err(AuthError::AuthFailed));
        let by_certificate = TokenGrant { certificate: true, ..grant };
        assert_eq!(s.apply(4, cmd(AuthOp::Authenticate(by_certificate))), Ok(AuthReply::Token("p.4".into())));
        assert_eq!(s.token_user("p.4"), Some("cn"));
    }
}
