//! Auth tokens, as etcd's `--auth-token` makes them: `simple` (the default)
//! or `jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`.
//!
//! A simple token is etcd's: 16 random letters, a dot, and the log index
//! (here, the slot) at which it was granted. etcd grants it through raft and
//! keeps it in each member's memory; here the grant goes through the log
//! into the replicated auth store ([`crate::auth`]), so a token issued by
//! one member is accepted by every other, and survives restarts and
//! snapshots. What stays per member is etcd's idle expiry
//! (`--auth-token-ttl`, 300 s): a member forgets a token it has not seen
//! used for that long, and a client then gets "invalid auth token" and
//! authenticates again, as etcd's clients do. Deleting a user, changing its
//! password or disabling auth revokes its tokens everywhere at once.
//!
//! A JWT is stateless: signed by the member that authenticates, verified by
//! any member with the public key, carrying the user and the auth revision
//! it was issued at, so a token older than a permission change is refused
//! with "revision of auth store is old".

use crate::auth::{AuthError, AuthInfo, AuthStore, MAX_SIMPLE_TOKENS};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// etcd's default simple-token idle TTL (`--auth-token-ttl`).
pub const DEFAULT_SIMPLE_TTL: Duration = Duration::from_secs(300);
/// etcd's default JWT lifetime.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);
const SIMPLE_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SIMPLE_PREFIX_LEN: usize = 16;

/// A bad `--auth-token` value or key file.
#[derive(Debug, thiserror::Error)]
#[error("--auth-token: {0}")]
pub struct TokenConfigError(pub String);

/// JWT signing and verification keys.
pub struct Jwt {
    alg: Algorithm,
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    ttl: Duration,
}

/// The kind of token this member issues and accepts.
pub enum TokenKind {
    /// etcd's simple tokens.
    Simple,
    /// Signed JSON web tokens.
    Jwt(Box<Jwt>),
}

/// This member's token provider.
pub struct Tokens {
    kind: TokenKind,
    /// `--auth-token-ttl`, for simple tokens.
    ttl: Duration,
    /// When each simple token was last used here.
    seen: Mutex<HashMap<String, Instant>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl Tokens {
    /// Simple tokens that expire after `ttl` unused.
    pub fn simple(ttl: Duration) -> Tokens {
        Tokens { kind: TokenKind::Simple, ttl, seen: Mutex::new(HashMap::new()) }
    }

    /// The provider etcd's `--auth-token` value names (`simple`, or `jwt`
    /// with comma-separated options), with `ttl` for simple tokens.
    pub fn parse(flag: &str, ttl: Duration) -> Result<Tokens, TokenConfigError> {
        let mut parts = flag.split(',');
        match parts.next().unwrap_or_default() {
            "simple" | "" => Ok(Tokens::simple(ttl)),
            "jwt" => {
                let mut opts = HashMap::new();
                for p in parts {
                    let (k, v) =
                        p.split_once('=').ok_or_else(|| TokenConfigError(format!("option {p:?} is not key=value")))?;
                    opts.insert(k.to_string(), v.to_string());
                }
                let jwt = Jwt::from_options(&opts)?;
                Ok(Tokens { kind: TokenKind::Jwt(Box::new(jwt)), ttl, seen: Mutex::new(HashMap::new()) })
            }
            other => Err(TokenConfigError(format!("unknown token type {other:?} (simple or jwt)"))),
        }
    }

    /// Whether tokens are simple ones, granted through the log.
    pub fn is_simple(&self) -> bool {
        matches!(self.kind, TokenKind::Simple)
    }

    /// How long a token this member obtained may be used again: half of
    /// what the members' idle expiry (simple tokens) or the token's
    /// lifetime (JWT) allows, so it is never used at the edge of either.
    pub fn reuse_within(&self) -> Duration {
        match &self.kind {
            TokenKind::Simple => self.ttl / 2,
            TokenKind::Jwt(jwt) => jwt.ttl / 2,
        }
    }

    /// A fresh random simple-token prefix.
    pub fn simple_prefix() -> String {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut out = String::with_capacity(SIMPLE_PREFIX_LEN);
        let mut byte = [0u8; 1];
        // Rejection sampling keeps every letter equally likely.
        let limit = (256 / SIMPLE_LETTERS.len() * SIMPLE_LETTERS.len()) as u8;
        while out.len() < SIMPLE_PREFIX_LEN {
            if rng.fill(&mut byte).is_err() {
                continue;
            }
            if byte[0] < limit {
                out.push(SIMPLE_LETTERS[byte[0] as usize % SIMPLE_LETTERS.len()] as char);
            }
        }
        out
    }

    /// A signed JWT for `user` at auth revision `revision`.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, tonic::Status> {
        let TokenKind::Jwt(jwt) = &self.kind else {
            return Err(tonic::Status::internal("synod: simple tokens are granted through the log"));
        };
        let Some(key) = &jwt.sign else {
            return Err(tonic::Status::unknown("auth: token signing attempted with verify-only key"));
        };
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + jwt.ttl;
        let claims = Claims { username: user.to_string(), revision, exp: exp.as_secs() };
        jsonwebtoken::encode(&Header::new(jwt.alg), &claims, key)
            .map_err(|e| tonic::Status::internal(format!("synod: signing a token: {e}")))
    }

    /// Who a token names (etcd's `AuthInfoFromCtx`), or "invalid auth token".
    pub fn info(&self, token: &str, store: &AuthStore) -> Result<AuthInfo, AuthError> {
        match &self.kind {
            TokenKind::Simple => {
                let user = store.token_user(token).ok_or(AuthError::InvalidAuthToken)?;
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if seen.get(token).is_some_and(|last| now.duration_since(*last) > self.ttl) {
                    return Err(AuthError::InvalidAuthToken);
                }
                if seen.len() > 2 * MAX_SIMPLE_TOKENS {
                    seen.retain(|t, _| store.token_user(t).is_some());
                }
                seen.insert(token.to_string(), now);
                Ok(AuthInfo { username: user.to_string(), revision: store.revision() })
            }
            TokenKind::Jwt(jwt) => {
                let mut validation = Validation::new(jwt.alg);
                validation.leeway = 0;
                let data = jsonwebtoken::decode::<Claims>(token, &jwt.verify, &validation)
                    .map_err(|_| AuthError::InvalidAuthToken)?;
                Ok(AuthInfo { username: data.claims.username, revision: data.claims.revision })
            }
        }
    }
}

impl Jwt {
    fn from_options(opts: &HashMap<String, String>) -> Result<Jwt, TokenConfigError> {
        let method = opts.get("sign-method").ok_or_else(|| TokenConfigError("jwt needs sign-method".into()))?;
        let alg =
            Algorithm::from_str(method).map_err(|_| TokenConfigError(format!("unknown sign-method {method:?}")))?;
        let ttl = match opts.get("ttl") {
            Some(t) => match crate::config::duration::parse(t) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return Err(TokenConfigError("jwt ttl must be above zero".into())),
                Err(e) => return Err(TokenConfigError(format!("jwt ttl: {e}"))),
            },
            None => DEFAULT_JWT_TTL,
        };
        let read = |k: &str| -> Result<Option<Vec<u8>>, TokenConfigError> {
            opts.get(k)
                .map(|path| std::fs::read(path).map_err(|e| TokenConfigError(format!("{k} {path}: {e}"))))
                .transpose()
        };
        let (public, private) = (read("pub-key")?, read("priv-key")?);
        let bad = |e: jsonwebtoken::errors::Error| TokenConfigError(format!("bad key for {method}: {e}"));
        use Algorithm as A;
        let (sign, verify) = match alg {
            A::HS256 | A::HS384 | A::HS512 => {
                let secret = private.or(public).ok_or_else(|| TokenConfigError("jwt needs a key".into()))?;
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => {
                let public = public.ok_or_else(|| TokenConfigError("jwt needs pub-key".into()))?;
                let sign = private.map(|p| EncodingKey::from_rsa_pem(&p)).transpose().map_err(bad)?;
                (sign, DecodingKey::from_rsa_pem(&public).map_err(bad)?)
            }
            A::ES256 | A::ES384 => {
                let public = public.ok_or_else(|| TokenConfigError("jwt needs pub-key".into()))?;
                let sign = private.map(|p| EncodingKey::from_ec_pem(&p)).transpose().map_err(bad)?;
                (sign, DecodingKey::from_ec_pem(&public).map_err(bad)?)
            }
            A::EdDSA => {
                let public = public.ok_or_else(|| TokenConfigError("jwt needs pub-key".into()))?;
                let sign = private.map(|p| EncodingKey::from_ed_pem(&p)).transpose().map_err(bad)?;
                (sign, DecodingKey::from_ed_pem(&public).map_err(bad)?)
            }
        };
        Ok(Jwt { alg, sign, verify, ttl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_prefixes_are_sixteen_random_letters() {
        let (a, b) = (Tokens::simple_prefix(), Tokens::simple_prefix());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }

    #[test]
    fn jwt_round_trips_user_and_revision_and_refuses_forgeries() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"0123456789abcdef0123456789abcdef").unwrap();
        let flag = format!("jwt,priv-key={},sign-method=HS256,ttl=5m", secret.display());
        let tokens = Tokens::parse(&flag, DEFAULT_SIMPLE_TTL).unwrap();
        let t = tokens.sign("alice", 7).unwrap();
        let store = AuthStore::default();
        assert_eq!(tokens.info(&t, &store), Ok(AuthInfo { username: "alice".into(), revision: 7 }));
        assert_eq!(tokens.info(&format!("{t}x"), &store), Err(AuthError::InvalidAuthToken));
        assert!(Tokens::parse("bogus", DEFAULT_SIMPLE_TTL).is_err());
    }
}
