//! etcd's Auth service: every change goes through the log as an
//! [`AuthCommand`] carrying who asked, so the state machine checks the
//! caller's rights where it applies; reads (status, user and role lists)
//! are linearizable reads of the replicated store.
//!
//! Passwords are hashed here, on the member that receives the request, off
//! the async runtime's core threads, and only the hash enters the log;
//! `Authenticate` verifies a password the same way, then has the log grant a
//! simple token (or signs a JWT itself).

use crate::auth::{AuthCommand, AuthError, AuthInfo, AuthOp, AuthReply, AuthStore, TokenGrant};
use crate::context::Context;
use crate::state::machine::{Proposal, Reply};
use crate::status;
use crate::token::Tokens;
use std::sync::Arc;
use synod_etcd_api::etcdserverpb::auth_server::Auth;
use synod_etcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

/// How many times `Authenticate` checks a password again when the auth
/// store changed while it checked (etcd loops without a bound).
const AUTHENTICATE_ATTEMPTS: usize = 8;

/// The Auth service of one member.
#[derive(Clone)]
pub struct AuthService {
    ctx: Arc<Context>,
}

impl AuthService {
    /// The service over a member's context.
    pub fn new(ctx: Arc<Context>) -> AuthService {
        AuthService { ctx }
    }

    fn header(&self) -> Option<ResponseHeader> {
        let mut h = None;
        self.ctx.fill(&mut h);
        h
    }

    /// Proposes a change on behalf of `caller`.
    async fn change(&self, caller: Option<AuthInfo>, op: AuthOp) -> Result<AuthReply, Status> {
        let payload = Proposal::Auth(AuthCommand { caller, op: Some(op) }).to_bytes();
        if payload.len() > self.ctx.max_request_bytes {
            return Err(status::too_large());
        }
        match status::outcome(self.ctx.propose(payload).await)? {
            Reply::Auth(r) => Ok(r),
            other => Err(status::unexpected(other)),
        }
    }

    /// Checks the caller's admin rights before a change is proposed (the
    /// state machine checks them again), so an outsider costs neither a
    /// bcrypt hash nor a log slot.
    async fn admin_change<T>(&self, request: &Request<T>, op: AuthOp) -> Result<Option<ResponseHeader>, Status> {
        let caller = self.ctx.check_admin(request)?;
        self.change(caller, op).await?;
        Ok(self.header())
    }

    /// The auth store once this member has applied every change completed
    /// before the call.
    async fn linearized(&self) -> Result<Arc<AuthStore>, Status> {
        self.ctx.barrier().await?;
        Ok(self.ctx.auth.current())
    }

    /// A bcrypt hash of `password` at `--bcrypt-cost`, computed on a
    /// blocking thread.
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.ctx.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(format!("synod: hashing a password: {e}")))?
            .map_err(|e| Status::internal(format!("synod: hashing a password: {e}")))
    }
}

fn auth_err(e: AuthError) -> Status {
    status::auth(e)
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, request: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self.admin_change(&request, AuthOp::Enable(true)).await?;
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self.admin_change(&request, AuthOp::Disable(true)).await?;
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(&self, request: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        self.ctx.check_admin(&request)?;
        let store = self.linearized().await?;
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled: store.enabled(),
            auth_revision: store.revision(),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let AuthenticateRequest { name, password } = request.into_inner();
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let store = self.linearized().await?;
            if !store.enabled() {
                return Err(auth_err(AuthError::AuthNotEnabled));
            }
            let user = store.user(&name).ok_or(AuthError::AuthFailed).map_err(auth_err)?;
            // etcd's CheckPassword refuses any password, even an empty one,
            // for a user added without one.
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(auth_err(AuthError::NoPasswordUser));
            }
            let checked = store.revision();
            let hash = String::from_utf8_lossy(&user.password).into_owned();
            let candidate = password.clone();
            let verified = tokio::task::spawn_blocking(move || bcrypt::verify(candidate, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
            if !verified {
                tracing::info!(user = %name, "authentication failed: invalid password");
                return Err(auth_err(AuthError::AuthFailed));
            }
            if !self.ctx.tokens.is_simple() {
                let token = self.ctx.tokens.sign(&name, checked)?;
                return Ok(Response::new(AuthenticateResponse { header: self.header(), token }));
            }
            let grant = TokenGrant {
                name: name.clone(),
                prefix: Tokens::simple_prefix(),
                checked_revision: checked,
                certificate: false,
            };
            match self.change(None, AuthOp::Authenticate(grant)).await? {
                AuthReply::Token(token) => {
                    return Ok(Response::new(AuthenticateResponse { header: self.header(), token }));
                }
                AuthReply::Stale => tracing::info!(user = %name, "auth store changed while checking a password; again"),
                AuthReply::Done => return Err(status::unexpected("no token")),
            }
        }
        Err(Status::unavailable(status::TIMEOUT))
    }

    async fn user_add(&self, request: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let caller = self.ctx.check_admin(&request)?;
        let mut r = request.into_inner();
        if r.name.is_empty() {
            return Err(auth_err(AuthError::UserEmpty));
        }
        // etcd 3.4 knows no `hashed_password` (a 3.5 field): the hash
        // stored is always this member's hash of `password`, never one a
        // client sent.
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        r.hashed_password =
            if no_password { String::new() } else { self.hash(std::mem::take(&mut r.password)).await? };
        r.password.clear();
        self.change(caller, AuthOp::UserAdd(r)).await?;
        Ok(Response::new(AuthUserAddResponse { header: self.header() }))
    }

    async fn user_get(&self, request: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        let caller = self.ctx.caller(&request)?;
        let r = request.into_inner();
        let store = self.linearized().await?;
        // A user may look itself up (etcd's authApplierV3.UserGet).
        if let Err(e) = store.check_admin(caller.as_ref()) {
            if caller.as_ref().map(|c| c.username.as_str()) != Some(r.name.as_str()) {
                return Err(auth_err(e));
            }
        }
        let user = store.user(&r.name).ok_or(AuthError::UserNotFound).map_err(auth_err)?;
        Ok(Response::new(AuthUserGetResponse { header: self.header(), roles: user.roles.clone() }))
    }

    async fn user_list(&self, request: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        self.ctx.check_admin(&request)?;
        let store = self.linearized().await?;
        Ok(Response::new(AuthUserListResponse { header: self.header(), users: store.user_names() }))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let op = AuthOp::UserDelete(request.get_ref().clone());
        let header = self.admin_change(&request, op).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let caller = self.ctx.check_admin(&request)?;
        let mut r = request.into_inner();
        // As for UserAdd: only `password` counts, as in etcd 3.4.
        r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        r.password.clear();
        self.change(caller, AuthOp::UserChangePassword(r)).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header: self.header() }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let op = AuthOp::UserGrantRole(request.get_ref().clone());
        let header = self.admin_change(&request, op).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let op = AuthOp::UserRevokeRole(request.get_ref().clone());
        let header = self.admin_change(&request, op).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, request: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        let op = AuthOp::RoleAdd(request.get_ref().clone());
        let header = self.admin_change(&request, op).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, request: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        let caller = self.ctx.caller(&request)?;
        let r = request.into_inner();
        let store = self.linearized().await?;
        // A user may look up its own roles (etcd's authApplierV3.RoleGet).
        if let Err(e) = store.check_admin(caller.as_ref()) {
            if !caller.as_ref().is_some_and(|c| store.has_role(&c.username, &r.role)) {
                return Err(auth_err(e));
            }
        }
        let role = store.role(&r.role).ok_or(AuthError::RoleNotFound).map_err(auth_err)?;
        Ok(Response::new(AuthRoleGetResponse { header: self.header(), perm: role.key_permission.clone() }))
    }

    async fn role_list(&self, request: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        self.ctx.check_admin(&request)?;
        let store = self.linearized().await?;
        Ok(Response::new(AuthRoleListResponse { header: self.header(), roles: store.role_names() }))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let op = AuthOp::RoleDelete(request.get_ref().clone());
        let header = self.admin_change(&request, op).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let op = AuthOp::RoleGrantPermission(request.get_ref().clone());
        let header = self.admin_change(&request, op).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let op = AuthOp::RoleRevokePermission(request.get_ref().clone());
        let header = self.admin_change(&request, op).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
