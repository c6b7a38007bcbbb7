//! etcd's Auth API against a 3-node synod cluster: users, roles and
//! permissions managed with etcdctl 3.4 and the Rust client, enforced on
//! every member, with etcd's errors; simple tokens accepted by every member;
//! JWTs refused once the auth store has moved on.

mod common;

use common::etcdctl::{self, Etcdctl};
use common::Cluster;
use etcd_client::proto::{PbRangeRequest, PbRangeResponse};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Permission, Txn, TxnOp, UserAddOptions};
use std::time::{Duration, Instant};
use synod_etcd_api::etcdserverpb::auth_client::AuthClient;
use synod_etcd_api::etcdserverpb::{AuthStatusRequest, AuthenticateRequest};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;

const DENIED: &str = "etcdserver: permission denied";
const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";
const USER_EMPTY: &str = "etcdserver: user name is empty";

/// Retries `f` until it returns `Some`, for up to 30 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn etcdctl_manages_users_and_roles_and_members_enforce_permissions() {
    if !etcdctl::installed() {
        return;
    }
    let cluster = Cluster::start(3);
    let ctl = Etcdctl::all(&cluster);
    ctl.wait_ready();

    // auth enable is refused until user root exists (etcdctl adds the root
    // role and grants it itself).
    let (ok, out, err) = ctl.run(&["auth", "enable"]);
    assert!(!ok && err.contains("etcdserver: root user does not exist"), "{out}{err}");
    ctl.ok(&["user", "add", "root:rootpw"]);
    ctl.ok(&["role", "add", "reader"]);
    ctl.ok(&["role", "grant-permission", "reader", "read", "/app/", "--prefix"]);
    ctl.ok(&["role", "grant-permission", "reader", "readwrite", "a", "c"]);
    ctl.ok(&["role", "grant-permission", "reader", "write", "single"]);
    ctl.ok(&["user", "add", "alice:alicepw"]);
    ctl.ok(&["user", "grant-role", "alice", "reader"]);
    let role = ctl.ok(&["role", "get", "reader"]);
    assert!(role.contains("[/app/, /app0) (prefix /app/)"), "{role}");
    assert!(role.contains("[a, c)"), "{role}");
    ctl.ok(&["put", "/app/x", "1"]);
    ctl.ok(&["put", "other", "1"]);
    assert_eq!(ctl.ok(&["auth", "enable"]), "Authentication Enabled\n");

    // Every member now refuses a request without a user.
    for i in 0..3 {
        let one = Etcdctl::of(&cluster, &[i]);
        let (ok, _, err) = eventually("auth enabled everywhere", || {
            let r = one.run(&["get", "/app/x"]);
            (!r.0).then_some(r)
        });
        assert!(!ok && err.contains(USER_EMPTY), "{err}");
    }
    let root = ["--user", "root:rootpw"];
    let alice = ["--user", "alice:alicepw"];
    let with = |who: &[&str], args: &[&str]| -> (bool, String, String) {
        let all: Vec<&str> = who.iter().chain(args).copied().collect();
        ctl.run(&all)
    };
    assert!(with(&root, &["put", "/app/x", "2"]).0);
    assert_eq!(with(&alice, &["get", "/app/x"]).1, "/app/x\n2\n");
    assert_eq!(with(&alice, &["get", "b"]).1, "");
    assert!(with(&alice, &["put", "b", "1"]).0, "readwrite on [a, c)");
    assert!(with(&alice, &["put", "single", "1"]).0, "write on one key");
    for (args, what) in [
        (&["put", "/app/x", "3"][..], "write inside the read-only prefix"),
        (&["put", "other", "3"][..], "write outside every permission"),
        (&["get", "other"][..], "read outside every permission"),
        (&["get", "single"][..], "read of a write-only key"),
        (&["get", "a", "d"][..], "read of a range only partly granted"),
        (&["del", "/app/x"][..], "delete inside the read-only prefix"),
        (&["compaction", "1"][..], "compaction without the root role"),
        (&["user", "list"][..], "user list without the root role"),
    ] {
        let (ok, out, err) = with(&alice, args);
        assert!(!ok && err.contains(DENIED), "{what}: {out}{err}");
    }
    assert_eq!(with(&root, &["get", "/app/x"]).1, "/app/x\n2\n", "denied writes change nothing");
    assert_eq!(with(&root, &["get", "other"]).1, "other\n1\n");

    let (ok, _, err) = with(&["--user", "alice:wrong"], &["get", "/app/x"]);
    assert!(!ok && err.contains(AUTH_FAILED), "{err}");

    // A new password replaces the old one at once.
    let passwd: Vec<&str> = root.iter().chain(&["user", "passwd", "alice", "--interactive=false"]).copied().collect();
    let (ok, out, err) = ctl.run_with_input(&passwd, Some("newpw\n"));
    assert!(ok, "{out}{err}");
    assert!(!with(&alice, &["get", "/app/x"]).0);
    assert!(with(&["--user", "alice:newpw"], &["get", "/app/x"]).0);

    let users = with(&root, &["user", "list"]).1;
    assert_eq!(users, "alice\nroot\n");
    assert!(with(&root, &["user", "get", "alice"]).1.contains("reader"));
    let (ok, _, err) = with(&root, &["user", "revoke-role", "root", "root"]);
    assert!(!ok && err.contains("etcdserver: invalid auth management"), "{err}");

    assert_eq!(with(&root, &["auth", "disable"]).1, "Authentication Disabled\n");
    eventually("auth disabled", || ctl.run(&["get", "other"]).0.then_some(()));
}

/// A range at `endpoint` carrying `token` in the metadata, as etcdctl and
/// the clients send it.
async fn range_with_token(endpoint: &str, token: &str, key: &str) -> Result<PbRangeResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(PbRangeRequest { key: key.into(), ..Default::default() });
    req.metadata_mut().insert("token", token.parse().expect("ascii token"));
    let path = PathAndQuery::from_static("/etcdserverpb.KV/Range");
    grpc.unary(req, path, tonic_prost::ProstCodec::default()).await.map(|r| r.into_inner())
}

async fn authenticate(endpoint: &str, name: &str, password: &str) -> Result<String, tonic::Status> {
    let mut auth = AuthClient::connect(endpoint.to_string()).await.expect("connect");
    let req = AuthenticateRequest { name: name.into(), password: password.into() };
    auth.authenticate(req).await.map(|r| r.into_inner().token)
}

/// Sets up root (with the root role) and `bob`, read-write on prefix `k/`,
/// then enables auth.
async fn set_up_users(c: &mut Client) {
    let err = c.auth_enable().await.expect_err("no root yet").to_string();
    assert!(err.contains("etcdserver: root user does not exist"), "{err}");
    c.user_add("root", "rootpw", None).await.expect("add root");
    let err = c.auth_enable().await.expect_err("root lacks the root role").to_string();
    assert!(err.contains("etcdserver: root user does not have root role"), "{err}");
    c.user_grant_role("root", "root").await.expect("grant root");
    c.role_add("rw").await.expect("add role");
    c.role_grant_permission("rw", Permission::read_write("k/").with_prefix()).await.expect("grant");
    c.user_add("bob", "bobpw", None).await.expect("add bob");
    c.user_add("nopass", "", Some(UserAddOptions::new().with_no_pwd())).await.expect("add nopass");
    c.user_grant_role("bob", "rw").await.expect("grant rw");
    let err = c.user_grant_role("bob", "nosuch").await.expect_err("no such role").to_string();
    assert!(err.contains("etcdserver: role name not found"), "{err}");
    c.put("x", "1", None).await.expect("put x");
    c.auth_enable().await.expect("enable");
}

async fn connect_as(endpoint: String, user: &str, password: &str) -> Result<Client, etcd_client::Error> {
    let opts = ConnectOptions::new().with_user(user, password).with_timeout(Duration::from_secs(10));
    Client::connect([endpoint], Some(opts)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_auth_tokens_work_on_every_member_and_denied_txns_change_nothing() {
    let cluster = Cluster::start_with(3, &["--bcrypt-cost", "4"]);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    set_up_users(&mut c).await;

    let err = c.get("x", None).await.expect_err("no user").to_string();
    assert!(err.contains(USER_EMPTY), "{err}");

    // A simple token granted through member 1 works at members 2 and 3.
    let token = authenticate(&cluster.endpoint(0), "bob", "bobpw").await.expect("authenticate");
    let (prefix, index) = token.split_once('.').expect("etcd's simple token: random.index");
    assert_eq!(prefix.len(), 16);
    assert!(index.parse::<u64>().is_ok(), "{token}");
    for i in [1, 2] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match range_with_token(&cluster.endpoint(i), &token, "k/a").await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "member {i} refuses the token: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let e = range_with_token(&cluster.endpoint(i), &token, "x").await.expect_err("x is not bob's");
        assert_eq!((e.code(), e.message()), (Code::PermissionDenied, DENIED));
    }
    let e = range_with_token(&cluster.endpoint(1), "forged.1", "k/a").await.expect_err("forged");
    assert_eq!((e.code(), e.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));

    let e = authenticate(&cluster.endpoint(1), "bob", "wrong").await.expect_err("wrong password");
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, AUTH_FAILED));
    // etcd hands this one back untranslated: code Unknown, the auth
    // package's text.
    let e = authenticate(&cluster.endpoint(1), "nopass", "").await.expect_err("no-password user");
    let no_password = "auth: authentication failed, password was given for no password user";
    assert_eq!((e.code(), e.message()), (Code::Unknown, no_password));
    let err = connect_as(cluster.endpoint(1), "bob", "wrong").await.err().expect("refused").to_string();
    assert!(err.contains(AUTH_FAILED), "{err}");

    let mut bob = connect_as(cluster.endpoint(2), "bob", "bobpw").await.expect("bob connects");
    bob.put("k/1", "v", None).await.expect("bob writes his prefix");
    let err = bob.put("x", "2", None).await.expect_err("outside").to_string();
    assert!(err.contains(DENIED), "{err}");
    // A txn is refused whole if any branch holds a denied op, whichever
    // branch would run.
    let txn = Txn::new()
        .when([Compare::value("k/1", CompareOp::Equal, "v")])
        .and_then([TxnOp::put("k/2", "v", None)])
        .or_else([TxnOp::put("x", "3", None)]);
    let err = bob.txn(txn).await.expect_err("denied branch").to_string();
    assert!(err.contains(DENIED), "{err}");
    let txn = Txn::new().when([Compare::value("x", CompareOp::Equal, "1")]).and_then([TxnOp::put("k/2", "v", None)]);
    let err = bob.txn(txn).await.expect_err("denied compare").to_string();
    assert!(err.contains(DENIED), "{err}");

    let mut root = connect_as(cluster.endpoint(1), "root", "rootpw").await.expect("root connects");
    assert!(root.get("k/2", None).await.unwrap().kvs().is_empty(), "refused txns changed nothing");
    assert_eq!(root.get("x", None).await.unwrap().kvs()[0].value(), b"1");
    let users = root.user_list().await.expect("list");
    assert_eq!(users.users(), ["bob", "nopass", "root"]);
    assert_eq!(root.user_get("bob").await.expect("get").roles(), ["rw"]);
    let err = bob.user_list().await.expect_err("not admin").to_string();
    assert!(err.contains(DENIED), "{err}");
    assert_eq!(bob.user_get("bob").await.expect("own user").roles(), ["rw"]);
    assert_eq!(bob.role_get("rw").await.expect("own role").permissions().len(), 1);

    // Watches, maintenance and membership are checked as etcd checks them.
    match bob.watch("x", None).await {
        Ok(mut stream) => {
            let resp = stream.message().await.expect("a reply").expect("a response");
            assert!(resp.canceled(), "{resp:?}");
            // etcd's reason is the gRPC error as Go prints it.
            assert_eq!(resp.cancel_reason(), format!("rpc error: code = PermissionDenied desc = {DENIED}"));
        }
        Err(e) => assert!(e.to_string().contains(DENIED), "{e}"),
    }
    let mut stream = bob.watch("k/", Some(etcd_client::WatchOptions::new().with_prefix())).await.expect("watch");
    bob.put("k/w", "1", None).await.expect("put");
    let resp = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.expect("event").unwrap().unwrap();
    assert!(!resp.canceled(), "{resp:?}");
    let err = bob.status().await.expect_err("status needs root").to_string();
    assert!(err.contains(DENIED), "{err}");
    let err = bob.member_add(["http://127.0.0.1:1"], None).await.expect_err("needs root").to_string();
    assert!(err.contains(DENIED), "{err}");
    bob.member_list().await.expect("any user lists members");
    root.status().await.expect("root may");

    // AuthStatus (admin only) reports the revision every change bumps.
    let mut auth = AuthClient::connect(cluster.endpoint(0)).await.expect("connect");
    let root_token = authenticate(&cluster.endpoint(0), "root", "rootpw").await.expect("root token");
    let mut status_req = tonic::Request::new(AuthStatusRequest {});
    status_req.metadata_mut().insert("token", root_token.parse().unwrap());
    let status = auth.auth_status(status_req).await.expect("status").into_inner();
    assert!(status.enabled);
    let before = status.auth_revision;
    root.role_revoke_permission("rw", "k/", Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()))
        .await
        .expect("revoke");
    let mut status_req = tonic::Request::new(AuthStatusRequest {});
    status_req.metadata_mut().insert("token", root_token.parse().unwrap());
    let status = auth.auth_status(status_req).await.expect("status").into_inner();
    assert_eq!(status.auth_revision, before + 1);
    let err = bob.put("k/3", "v", None).await.expect_err("revoked").to_string();
    assert!(err.contains(DENIED), "{err}");

    // Deleting a user revokes its simple tokens on every member.
    root.user_delete("bob").await.expect("delete bob");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match range_with_token(&cluster.endpoint(2), &token, "k/a").await {
            Err(e) if e.code() == Code::Unauthenticated => break,
            other => assert!(Instant::now() < deadline, "bob's token still works: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    root.auth_disable().await.expect("disable");
}

/// A keep-alive of `id` through `c`: the TTL, or the error's text.
async fn keep_alive(c: &mut Client, id: i64) -> Result<i64, String> {
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.map_err(|e| e.to_string())?;
    keeper.keep_alive().await.map_err(|e| e.to_string())?;
    match stream.message().await {
        Ok(Some(r)) => Ok(r.ttl()),
        Ok(None) => Err("stream closed".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_locks_and_elections_are_checked_as_etcd_checks_them() {
    // etcd's checkLeaseRenew, checkLeaseTimeToLive and checkLeaseLeases: a
    // user must be able to write (keep-alive) or read (TTL with keys, the
    // lease list) every key attached; followers forward keep-alives and
    // TTL queries to the leader with the caller's token.
    let cluster = Cluster::start_with(3, &["--bcrypt-cost", "4"]);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    set_up_users(&mut c).await;
    let mut root = connect_as(cluster.endpoint(0), "root", "rootpw").await.expect("root connects");
    let secret = root.lease_grant(60, None).await.expect("grant").id();
    root.put("x/secret", "1", Some(etcd_client::PutOptions::new().with_lease(secret))).await.expect("put");
    let with_keys = || Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys());
    for i in 0..3 {
        let mut bob = connect_as(cluster.endpoint(i), "bob", "bobpw").await.expect("bob connects");
        let err = bob.lease_time_to_live(secret, with_keys()).await.expect_err("not bob's keys").to_string();
        assert!(err.contains(DENIED), "member {i}: {err}");
        bob.lease_time_to_live(secret, None).await.expect("a TTL without keys needs only a user");
        let err = keep_alive(&mut bob, secret).await.expect_err("renews keys bob may not write");
        assert!(err.contains(DENIED), "member {i}: {err}");
        let err = bob.leases().await.expect_err("lists a lease with keys bob may not read").to_string();
        assert!(err.contains(DENIED), "member {i}: {err}");

        // His own lease, on his own keys: all allowed.
        let own = bob.lease_grant(60, None).await.expect("bob grants").id();
        bob.put(format!("k/lease{i}"), "1", Some(etcd_client::PutOptions::new().with_lease(own))).await.expect("put");
        let ttl = bob.lease_time_to_live(own, with_keys()).await.expect("his own keys");
        assert_eq!(ttl.keys(), [format!("k/lease{i}").into_bytes()]);
        assert!(keep_alive(&mut bob, own).await.expect("renews his own lease") > 0, "member {i}");

        // Root may do all of it.
        let mut root = connect_as(cluster.endpoint(i), "root", "rootpw").await.expect("root connects");
        assert!(keep_alive(&mut root, secret).await.expect("root renews") > 0, "member {i}");
        root.lease_time_to_live(secret, with_keys()).await.expect("root reads");
        root.leases().await.expect("root lists");
    }
    // No user at all: refused.
    let err = c.lease_time_to_live(secret, None).await.expect_err("no user").to_string();
    assert!(err.contains(USER_EMPTY), "{err}");
    let err = keep_alive(&mut c, secret).await.expect_err("no user");
    assert!(err.contains(USER_EMPTY), "{err}");

    // Locks and elections need what their keys need (etcd runs them as
    // clients of its KV API with the caller's token).
    let err = c.lock("k/l", None).await.expect_err("no user").to_string();
    assert!(err.contains(USER_EMPTY), "{err}");
    let mut bob = connect_as(cluster.endpoint(1), "bob", "bobpw").await.expect("bob connects");
    let err = bob.lock("x", None).await.expect_err("outside bob's prefix").to_string();
    assert!(err.contains(DENIED), "{err}");
    let held = bob.lock("k/l", None).await.expect("bob locks under his prefix");
    bob.unlock(held.key()).await.expect("and unlocks");
    let err = bob.unlock("x/secret").await.expect_err("not bob's to delete").to_string();
    assert!(err.contains(DENIED), "{err}");
    let lease = bob.lease_grant(60, None).await.expect("grant").id();
    let err = bob.campaign("x", "me", lease).await.expect_err("outside bob's prefix").to_string();
    assert!(err.contains(DENIED), "{err}");
    let err = bob.leader("x").await.expect_err("outside bob's prefix").to_string();
    assert!(err.contains(DENIED), "{err}");
    let won = bob.campaign("k/e", "me", lease).await.expect("bob campaigns under his prefix");
    let leader = won.leader().expect("a leader key").clone();
    assert_eq!(bob.leader("k/e").await.expect("leader").kv().expect("kv").value(), b"me");
    bob.proclaim("again", Some(etcd_client::ProclaimOptions::new().with_leader(leader.clone())))
        .await
        .expect("proclaim");
    bob.resign(Some(etcd_client::ResignOptions::new().with_leader(leader))).await.expect("resign");
    assert_eq!(root.get("x", None).await.unwrap().kvs()[0].value(), b"1", "refused calls changed nothing");
    assert!(root.get("x/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap().kvs().len() == 1);
    root.auth_disable().await.expect("disable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_verify_on_every_member_and_expire_with_the_auth_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("an ES256 key");
    let (private, public) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let flag = format!("jwt,pub-key={},priv-key={},sign-method=ES256,ttl=5m", public.display(), private.display());
    let cluster = Cluster::start_with(3, &["--bcrypt-cost", "4", "--auth-token", &flag]);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    set_up_users(&mut c).await;

    let token = authenticate(&cluster.endpoint(0), "bob", "bobpw").await.expect("authenticate");
    assert_eq!(token.matches('.').count(), 2, "a JWT: {token}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match range_with_token(&cluster.endpoint(2), &token, "k/a").await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "member 3 refuses the JWT: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Any auth change makes the token old.
    let mut root = connect_as(cluster.endpoint(0), "root", "rootpw").await.expect("root connects");
    root.role_add("another").await.expect("role add");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match range_with_token(&cluster.endpoint(2), &token, "k/a").await {
            Err(e) if e.message() == "etcdserver: revision of auth store is old" => break,
            other => assert!(Instant::now() < deadline, "old JWT still accepted: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client authenticates again and goes on.
    let mut bob = connect_as(cluster.endpoint(1), "bob", "bobpw").await.expect("bob connects");
    bob.put("k/jwt", "v", None).await.expect("put with a fresh JWT");
}
