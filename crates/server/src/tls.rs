//! TLS for clients and peers, from etcd's flags and with etcd's behaviour.
//!
//! Clients (`--cert-file`, `--key-file`, `--trusted-ca-file`,
//! `--client-cert-auth`, `--client-crl-file`, `--auto-tls`) and peers
//! (`--peer-cert-file`, ..., `--peer-cert-allowed-cn`, `--peer-auto-tls`)
//! each get a [`TlsInfo`]; [`TlsInfo::load`] reads the files (or makes the
//! self-signed certificate of `--auto-tls`) into [`Loaded`], from which the
//! rustls configurations are built: the client listeners' server side, the
//! peer transport's two sides, and the way a follower reaches the leader's
//! client URL (see [`crate::cluster::forward`]). `--cipher-suites` narrows TLS 1.2
//! suites for both ([`cipher_suites`]).
//!
//! As etcd does: a trusted CA file makes the listener require and verify
//! client certificates (`--client-cert-auth` says so explicitly); with
//! `--auto-tls` and no files, a self-signed certificate is made at start in
//! the data directory (`fixtures/client`, `fixtures/peer`) and peers do not
//! check each other's (encryption without authentication). A peer dialled
//! is checked against the CA but not by name: peers are known here by
//! socket address, and the certificate's chain is what proves membership.
//! This module never decides whether a URL is TLS: the scheme does.
//!
//! Certificates are rotated without a restart, as etcd re-reads its
//! certificate and key at each handshake: when either file's modification
//! time changes (looked at once a second at most), the next handshake, on
//! the client listeners and on the peer network, both sides, reads them
//! again ([`ReloadingKey`]). A pair that cannot be read or does not parse
//! leaves the previous one in use, with a warning. The trusted CA and CRL
//! files are read at start only.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use synod_runtime::PeerTls;

/// How often a handshake looks at the certificate files for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// This member's certificate and key, read again from their files when
/// either changes (see the module docs): what every handshake on this
/// side presents.
#[derive(Debug)]
pub struct ReloadingKey {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<Reloaded>,
}

#[derive(Debug)]
struct Reloaded {
    key: Arc<CertifiedKey>,
    /// The files' modification times when `key` was read.
    stamps: Option<(SystemTime, SystemTime)>,
    checked: Instant,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl ReloadingKey {
    fn new(cert_file: &Path, key_file: &Path, provider: Arc<CryptoProvider>) -> Result<ReloadingKey, TlsError> {
        let stamps = modified(cert_file).zip(modified(key_file));
        let key = Arc::new(certified_key(cert_file, key_file, &provider)?);
        let state = Mutex::new(Reloaded { key, stamps, checked: Instant::now() });
        Ok(ReloadingKey { cert_file: cert_file.into(), key_file: key_file.into(), provider, state })
    }

    /// The pair to present now, read again if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checked.elapsed() < RELOAD_CHECK {
            return st.key.clone();
        }
        st.checked = Instant::now();
        let stamps = modified(&self.cert_file).zip(modified(&self.key_file));
        if stamps.is_some() && stamps != st.stamps {
            match certified_key(&self.cert_file, &self.key_file, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert_file.display(), "certificate and key read again");
                    st.key = Arc::new(key);
                    st.stamps = stamps;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificate files changed but cannot be used; keeping the old pair")
                }
            }
        }
        st.key.clone()
    }
}

impl rustls::server::ResolvesServerCert for ReloadingKey {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Reads a certificate chain and its private key into a signing pair.
fn certified_key(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let (_, certs, key) = read_pair(cert_file, key_file, "")?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(format!("{}: unusable private key: {e}", key_file.display())))?;
    let key = CertifiedKey::new(certs, signer);
    key.keys_match().map_err(|e| bad(format!("{} and {}: {e}", cert_file.display(), key_file.display())))?;
    Ok(key)
}

/// A certificate chain and private key as read: the PEM text, parsed.
type Pair = ((String, String), Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Reads and parses a PEM certificate chain and private key.
fn read_pair(cert_file: &Path, key_file: &Path, side: &str) -> Result<Pair, TlsError> {
    let read = |flag: &str, p: &Path| {
        std::fs::read_to_string(p).map_err(|e| bad(format!("--{side}{flag} {}: {e}", p.display())))
    };
    let cert_pem = read("cert-file", cert_file)?;
    let key_pem = read("key-file", key_file)?;
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("--{side}cert-file {}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(bad(format!("--{side}cert-file {}: no certificate in it", cert_file.display())));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| bad(format!("--{side}key-file {}: no private key in it ({e})", key_file.display())))?;
    Ok(((cert_pem, key_pem), certs, key))
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn bad(msg: impl Into<String>) -> TlsError {
    TlsError(msg.into())
}

/// One side's TLS flags (etcd's `TLSInfo`): the client side's or the
/// peers'.
#[derive(Clone, Debug, Default)]
pub struct TlsInfo {
    /// `--cert-file` / `--peer-cert-file`: this member's certificate chain
    /// (PEM), presented to whoever connects and, as etcd does, as the client
    /// certificate when this member connects out.
    pub cert_file: Option<PathBuf>,
    /// `--key-file` / `--peer-key-file`: its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// `--trusted-ca-file` / `--peer-trusted-ca-file`: the CA certificates
    /// (PEM) whose certificates are accepted from the other side.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`: require and verify
    /// certificates of whoever connects.
    pub client_cert_auth: bool,
    /// `--auto-tls` / `--peer-auto-tls`: with no certificate files, make a
    /// self-signed certificate at start.
    pub auto_tls: bool,
    /// `--client-crl-file`: revoked certificates (PEM CRLs), refused.
    pub crl_file: Option<PathBuf>,
    /// `--experimental-peer-skip-client-san-verification`: a connecting
    /// peer's certificate need not name the address it connects from.
    pub skip_client_san_verification: bool,
    /// `--peer-cert-allowed-cn`: the other side's certificate must carry
    /// this common name.
    pub allowed_cn: Option<String>,
}

/// What a side's TLS flags have loaded: this member's certificate and key,
/// the trusted CAs and revocation lists, and what they came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// This member's certificate chain.
    pub certs: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The same chain and key in PEM, for tonic's client identity.
    pub pem: (String, String),
    /// The CAs trusted for the other side's certificates; `None` without a
    /// trusted CA file.
    pub roots: Option<Arc<RootCertStore>>,
    /// Revocation lists.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Whether whoever connects must present a certificate from `roots`.
    pub require_client_certs: bool,
    /// Whether the certificate was made by `--auto-tls` (it is checked by
    /// no one).
    pub self_signed: bool,
    /// The other side's certificate must carry this common name.
    pub allowed_cn: Option<String>,
    /// `--experimental-peer-skip-client-san-verification`.
    pub skip_client_san_verification: bool,
    /// What handshakes present: `certs` and `key`, read again when their
    /// files change.
    pub reloading: Arc<ReloadingKey>,
    provider: Arc<CryptoProvider>,
}

impl TlsInfo {
    /// Whether the flags ask for TLS at all (a certificate, or auto-TLS).
    pub fn configured(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some() || self.auto_tls
    }

    /// Checks the flags' combinations; `side` is "" for clients and
    /// "peer-" for peers, to name the flags in messages.
    pub fn validate(&self, side: &str) -> Result<(), TlsError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(bad(format!("--{side}cert-file and --{side}key-file must be given together")));
        }
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return Err(bad(format!(
                "--{side}client-cert-auth needs --{side}trusted-ca-file: the CA whose certificates are accepted"
            )));
        }
        if self.crl_file.is_some() && self.trusted_ca_file.is_none() {
            return Err(bad(format!(
                "--client-crl-file needs --{side}trusted-ca-file: revocation is checked on client certificates"
            )));
        }
        Ok(())
    }

    /// Reads the files, or makes the `--auto-tls` certificate under
    /// `auto_dir` for `hosts` (the listen URLs' hosts), as etcd does. The
    /// files are read once, at start.
    pub fn load(
        &self,
        side: &str,
        auto_dir: &Path,
        hosts: &[String],
        provider: Arc<CryptoProvider>,
    ) -> Result<Loaded, TlsError> {
        self.validate(side)?;
        let (cert_file, key_file, self_signed) = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                if self.auto_tls {
                    tracing::warn!(side, "ignoring --{side}auto-tls: certificate files are given");
                }
                (c.clone(), k.clone(), false)
            }
            _ if self.auto_tls => {
                let (c, k) = self_signed_cert(auto_dir, hosts)?;
                (c, k, true)
            }
            _ => return Err(bad(format!("--{side}cert-file and --{side}key-file (or --{side}auto-tls) are needed"))),
        };
        let read = |flag: &str, p: &Path| {
            std::fs::read_to_string(p).map_err(|e| bad(format!("--{side}{flag} {}: {e}", p.display())))
        };
        let (pem, certs, key) = read_pair(&cert_file, &key_file, side)?;
        let reloading = Arc::new(
            ReloadingKey::new(&cert_file, &key_file, provider.clone())
                .map_err(|e| bad(format!("--{side}cert-file and --{side}key-file: {e}")))?,
        );
        let roots = match &self.trusted_ca_file {
            Some(path) => {
                let pem = read("trusted-ca-file", path)?;
                let mut store = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| bad(format!("--{side}trusted-ca-file {}: {e}", path.display())))?;
                    store.add(cert).map_err(|e| bad(format!("--{side}trusted-ca-file {}: {e}", path.display())))?;
                }
                if store.is_empty() {
                    return Err(bad(format!("--{side}trusted-ca-file {}: no certificate in it", path.display())));
                }
                Some(Arc::new(store))
            }
            None => None,
        };
        let crls = match &self.crl_file {
            Some(path) => {
                let pem = read("crl-file", path)?;
                let crls = CertificateRevocationListDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(format!("--client-crl-file {}: {e}", path.display())))?;
                if crls.is_empty() {
                    return Err(bad(format!("--client-crl-file {}: no CRL in it", path.display())));
                }
                crls
            }
            None => Vec::new(),
        };
        let loaded = Loaded {
            certs,
            key: Arc::new(key),
            pem,
            require_client_certs: roots.is_some(),
            roots,
            crls,
            self_signed,
            allowed_cn: self.allowed_cn.clone(),
            skip_client_san_verification: self.skip_client_san_verification,
            reloading,
            provider,
        };
        // Build once now so that a bad key or CRL stops the start, not the
        // first connection.
        loaded.server_config(false)?;
        Ok(loaded)
    }
}

impl Loaded {
    /// The listener side: this member's certificate, and the client
    /// certificate check (required when a trusted CA is given, as etcd's
    /// `ServerConfig` does). For client listeners (`h2`), ALPN offers
    /// HTTP/2 (gRPC) and HTTP/1.1 (the HTTP endpoints, for clients that
    /// speak only that).
    pub fn server_config(&self, h2: bool) -> Result<ServerConfig, TlsError> {
        let verifier: Arc<dyn ClientCertVerifier> = match (&self.roots, self.require_client_certs) {
            (Some(roots), true) => {
                let mut builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), self.provider.clone());
                if !self.crls.is_empty() {
                    // etcd checks whether the client's own certificate is
                    // listed; a chain without a CRL is not refused for that.
                    builder = builder
                        .with_crls(self.crls.clone())
                        .only_check_end_entity_revocation()
                        .allow_unknown_revocation_status();
                }
                let inner = builder.build().map_err(|e| bad(format!("trusted CA: {e}")))?;
                match &self.allowed_cn {
                    Some(cn) => Arc::new(AllowedCnClient { inner, cn: cn.clone() }),
                    None => inner,
                }
            }
            _ => WebPkiClientVerifier::no_client_auth(),
        };
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.reloading.clone());
        if h2 {
            cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok(cfg)
    }

    /// How the other side's server certificate is checked when this member
    /// connects: against the trusted CA (by name when `check_name`), or not
    /// at all for self-signed certificates (etcd skips verification with
    /// auto-TLS).
    pub fn server_verifier(&self, check_name: bool) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
        let inner = match &self.roots {
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(roots.clone(), self.provider.clone())
                    .build()
                    .map_err(|e| bad(format!("trusted CA: {e}")))?,
            ),
            None => None,
        };
        Ok(Arc::new(ChainVerifier {
            inner,
            check_name,
            allowed_cn: self.allowed_cn.clone(),
            algorithms: self.provider.signature_verification_algorithms,
        }))
    }

    /// The dialling side for peers: this member's certificate as its client
    /// certificate, the peer's checked against the CA but not by name.
    pub fn peer_client_config(&self) -> Result<ClientConfig, TlsError> {
        Ok(ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(self.server_verifier(false)?)
            .with_client_cert_resolver(self.reloading.clone()))
    }

    /// Both sides of the peer transport.
    pub fn peer_tls(&self) -> Result<PeerTls, TlsError> {
        // As etcd's peer listener (and the name check of the member it
        // dials): a certificate from the cluster's CA must also name the
        // address it is used from. Self-signed `--peer-auto-tls`
        // certificates are verified by no one, so there is nothing to hold
        // their names to.
        let check: Option<synod_runtime::AddressCheck> = if self.self_signed || self.roots.is_none() {
            None
        } else {
            Some(Arc::new(|cert, ip| Box::pin(async move { check_address(&cert, ip).await })))
        };
        Ok(PeerTls {
            server: Arc::new(self.server_config(false)?),
            client: Arc::new(self.peer_client_config()?),
            dialled_check: check.clone(),
            accepted_check: check.filter(|_| !self.skip_client_san_verification),
        })
    }

    /// tonic's client TLS for reaching another member's client URL with
    /// this member's certificate (forwarding to the leader).
    pub fn tonic_client(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.pem.0, &self.pem.1))
    }
}

/// The rustls cipher suites of `--cipher-suites` (etcd's Go names,
/// comma-separated), or every default suite when empty. The names choose
/// among TLS 1.2 suites; TLS 1.3's are always on (Go ignores the list for
/// TLS 1.3 too) and may be named. A name Go knows but rustls does not offer
/// (CBC, RC4, 3DES, RSA key exchange) and an unknown name are refused.
pub fn cipher_suites(names: &str) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    use ring::cipher_suite as cs;
    let supported: &[(&str, SupportedCipherSuite)] = &[
        ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
        ("TLS_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
        ("TLS_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
        ("TLS_CHACHA20_POLY1305_SHA256", cs::TLS13_CHACHA20_POLY1305_SHA256),
    ];
    const GO_ONLY: &[&str] = &[
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ];
    let names: Vec<&str> = names.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if names.is_empty() {
        return Ok(ring::DEFAULT_CIPHER_SUITES.to_vec());
    }
    // TLS 1.3 suites first, in rustls's order of preference.
    let mut chosen: Vec<SupportedCipherSuite> =
        ring::DEFAULT_CIPHER_SUITES.iter().copied().filter(|s| s.tls13().is_some()).collect();
    for name in names {
        match supported.iter().find(|(n, _)| *n == name) {
            Some((_, suite)) => {
                if !chosen.contains(suite) {
                    chosen.push(*suite);
                }
            }
            None if GO_ONLY.contains(&name) => {
                return Err(bad(format!(
                    "--cipher-suites: {name} is not offered by Synod's TLS library (rustls), which has only \
                     AEAD suites with forward secrecy; choose from {}",
                    supported_names(supported)
                )))
            }
            None => {
                return Err(bad(format!(
                    "--cipher-suites: unknown cipher suite {name:?}; choose from {}",
                    supported_names(supported)
                )))
            }
        }
    }
    Ok(chosen)
}

fn supported_names(table: &[(&str, SupportedCipherSuite)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// A crypto provider (ring) limited to `suites`.
///
/// ring rather than aws-lc-rs: it builds without cmake and is what tonic's
/// `tls-ring` uses; rustls marks ring's provider deprecated only because it
/// has no post-quantum key exchange.
#[allow(deprecated)]
pub fn provider(suites: Vec<SupportedCipherSuite>) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider { cipher_suites: suites, ..ring::default_provider() })
}

/// Makes (or reuses) the self-signed certificate of `--auto-tls` in `dir`
/// (`cert.pem`, `key.pem`), valid for `hosts`, as etcd's `SelfCert`.
fn self_signed_cert(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let fail = |e: &dyn std::fmt::Display| bad(format!("auto-TLS certificate in {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| fail(&e))?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let signing_key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let made = params.self_signed(&signing_key).map_err(|e| fail(&e))?;
    write_private(&key, &signing_key.serialize_pem()).map_err(|e| fail(&e))?;
    std::fs::write(&cert, made.pem()).map_err(|e| fail(&e))?;
    tracing::warn!(dir = %dir.display(), ?hosts, "made a self-signed certificate (auto-TLS)");
    Ok((cert, key))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

/// The subject common name of a DER certificate.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// How long [`check_address`] waits for a host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// etcd's check of a peer's certificate against its address
/// (`checkCertSAN`): a certificate naming no IP address and no DNS name
/// passes; otherwise `ip` must be one of its IP addresses, or one of its
/// DNS names must resolve to `ip`. (etcd also looks `ip` up in reverse for
/// wildcard names; wildcard names are not matched here.)
pub async fn check_address(cert: &CertificateDer<'_>, ip: std::net::IpAddr) -> Result<(), String> {
    let (ips, names) = subject_alt_names(cert)?;
    if ips.is_empty() && names.is_empty() {
        return Ok(());
    }
    if ips.contains(&ip) {
        return Ok(());
    }
    for name in names.iter().filter(|n| !n.starts_with("*.")) {
        let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0))).await;
        if let Ok(Ok(mut addrs)) = resolved {
            if addrs.any(|a| a.ip().to_canonical() == ip) {
                return Ok(());
            }
        }
    }
    Err(format!(
        "the peer's certificate is for IP addresses {ips:?} and DNS names {names:?}, none of which is {ip}, \
         the address it is used from"
    ))
}

/// A certificate's IP addresses and DNS names (its subject alternative
/// names).
fn subject_alt_names(cert: &CertificateDer<'_>) -> Result<(Vec<std::net::IpAddr>, Vec<String>), String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| format!("unreadable certificate: {e}"))?;
    let (mut ips, mut names) = (Vec::new(), Vec::new());
    let san = parsed.subject_alternative_name().map_err(|e| format!("unreadable subject alternative names: {e}"))?;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(n) => names.push(n.to_string()),
            GeneralName::IPAddress(b) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                    ips.push(std::net::IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                    ips.push(std::net::IpAddr::from(v6).to_canonical());
                }
            }
            _ => {}
        }
    }
    Ok((ips, names))
}

fn check_cn(allowed: &Option<String>, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    match allowed {
        Some(cn) if common_name(cert).as_deref() != Some(cn.as_str()) => {
            Err(rustls::Error::General(format!("certificate common name is not the allowed {cn:?}")))
        }
        _ => Ok(()),
    }
}

/// Checks a server's certificate: its chain against the trusted CA (or
/// nothing, for self-signed certificates), its name when asked, and its
/// common name against `--peer-cert-allowed-cn`.
#[derive(Debug)]
struct ChainVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    allowed_cn: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(inner) = &self.inner {
            match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                Ok(_) => {}
                // webpki checks the chain before the name: a name mismatch
                // means the chain is good.
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) if !self.check_name => {}
                Err(e) => return Err(e),
            }
        }
        check_cn(&self.allowed_cn, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client certificate check that also requires `--peer-cert-allowed-cn`.
#[derive(Debug)]
struct AllowedCnClient {
    inner: Arc<dyn ClientCertVerifier>,
    cn: String,
}

impl ClientCertVerifier for AllowedCnClient {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        check_cn(&Some(self.cn.clone()), end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A certificate authority made on the spot, for `synod demo --tls` and
/// tests: it issues certificates good for both server and client use, as
/// etcd's guides make them with cfssl.
pub struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// A certificate and its key, in PEM.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Authority {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<Authority, TlsError> {
        let fail = |e: rcgen::Error| bad(format!("making a CA: {e}"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(Authority { issuer: rcgen::Issuer::new(params, key), pem: cert.pem() })
    }

    /// The CA's certificate (what `--trusted-ca-file` names).
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A certificate with common name `cn`, valid for `hosts` (DNS names or
    /// IP addresses), for server and client use.
    pub fn issue(&self, cn: &str, hosts: &[&str]) -> Result<Issued, TlsError> {
        let fail = |e: rcgen::Error| bad(format!("issuing a certificate for {cn}: {e}"));
        let mut params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).map_err(fail)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Writes the CA certificate as `ca.pem` and, for each name, a
    /// certificate `NAME.pem` and key `NAME-key.pem` valid for `hosts`,
    /// into `dir`.
    pub fn write_all(&self, dir: &Path, names: &[&str], hosts: &[&str]) -> Result<(), TlsError> {
        let fail = |e: std::io::Error| bad(format!("writing certificates into {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(fail)?;
        std::fs::write(dir.join("ca.pem"), &self.pem).map_err(fail)?;
        for name in names {
            let issued = self.issue(name, hosts)?;
            std::fs::write(dir.join(format!("{name}.pem")), issued.cert_pem).map_err(fail)?;
            write_private(&dir.join(format!("{name}-key.pem")), &issued.key_pem).map_err(fail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_take_etcds_names() {
        let all = cipher_suites("").unwrap();
        assert_eq!(all.len(), ring::DEFAULT_CIPHER_SUITES.len());
        let one = cipher_suites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").unwrap();
        let tls12: Vec<_> = one.iter().filter(|s| s.tls13().is_none()).collect();
        assert_eq!(tls12.len(), 1);
        assert_eq!(format!("{:?}", tls12[0].suite()), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        // Go's short name for ChaCha20 and the TLS 1.3 names are accepted.
        assert!(cipher_suites("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_AES_128_GCM_SHA256").is_ok());
        let err = cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA").unwrap_err().to_string();
        assert!(err.contains("not offered"), "{err}");
        let err = cipher_suites("TLS_BOGUS").unwrap_err().to_string();
        assert!(err.contains("unknown cipher suite \"TLS_BOGUS\""), "{err}");
    }

    /// Writes `issued` as `NAME.pem`/`NAME-key.pem` in `dir`.
    fn write(dir: &Path, name: &str, issued: &Issued) {
        std::fs::write(dir.join(format!("{name}.pem")), &issued.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), &issued.key_pem).unwrap();
    }

    fn info(dir: &Path, name: &str) -> TlsInfo {
        TlsInfo {
            cert_file: Some(dir.join(format!("{name}.pem"))),
            key_file: Some(dir.join(format!("{name}-key.pem"))),
            trusted_ca_file: Some(dir.join("ca.pem")),
            ..TlsInfo::default()
        }
    }

    /// Whether the listener of `server` accepts a handshake from `client`.
    async fn handshake(server: &Loaded, client: &Loaded) -> bool {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server.server_config(false).unwrap()));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client.peer_client_config().unwrap()));
        let name = ServerName::try_from("localhost").unwrap();
        let (accepted, _) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
        accepted.is_ok()
    }

    #[tokio::test]
    async fn revoked_and_misnamed_certificates_are_refused_at_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Authority::new("test CA").unwrap();
        std::fs::write(d.join("ca.pem"), ca.cert_pem()).unwrap();
        write(d, "server", &ca.issue("server", &["localhost"]).unwrap());
        write(d, "good", &ca.issue("good", &["localhost"]).unwrap());
        // A certificate with a known serial number, then revoked.
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "revoked");
        params.serial_number = Some(rcgen::SerialNumber::from(4242u64));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        write(d, "revoked", &Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() });
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(4242u64),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap();
        std::fs::write(d.join("crl.pem"), crl.pem().unwrap()).unwrap();

        let p = || provider(cipher_suites("").unwrap());
        let load = |i: TlsInfo| i.load("", d, &[], p()).unwrap();
        let server = load(TlsInfo { crl_file: Some(d.join("crl.pem")), client_cert_auth: true, ..info(d, "server") });
        assert!(handshake(&server, &load(info(d, "good"))).await, "a good certificate was refused");
        assert!(!handshake(&server, &load(info(d, "revoked"))).await, "a revoked certificate was accepted");

        let only_good = load(TlsInfo { allowed_cn: Some("good".into()), ..info(d, "server") });
        assert!(handshake(&only_good, &load(info(d, "good"))).await);
        assert!(!handshake(&only_good, &load(info(d, "server"))).await, "a certificate with another CN was accepted");
    }

    #[tokio::test]
    async fn a_rotated_certificate_is_served_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old_ca = Authority::new("old CA").unwrap();
        let new_ca = Authority::new("new CA").unwrap();
        std::fs::write(d.join("ca.pem"), old_ca.cert_pem()).unwrap();
        write(d, "server", &old_ca.issue("server", &["localhost"]).unwrap());
        write(d, "client", &new_ca.issue("client", &["localhost"]).unwrap());
        let p = || provider(cipher_suites("").unwrap());
        let server = TlsInfo { trusted_ca_file: None, ..info(d, "server") }.load("", d, &[], p()).unwrap();
        // A client that trusts only the new CA.
        std::fs::write(d.join("new-ca.pem"), new_ca.cert_pem()).unwrap();
        let client =
            TlsInfo { trusted_ca_file: Some(d.join("new-ca.pem")), ..info(d, "client") }.load("", d, &[], p()).unwrap();
        assert!(!handshake(&server, &client).await, "the old CA's certificate was trusted");
        // The operator puts a certificate from the new CA in place; the
        // listener serves it from the next handshake on (once the check
        // interval has passed).
        write(d, "server", &new_ca.issue("server", &["localhost"]).unwrap());
        tokio::time::sleep(RELOAD_CHECK + Duration::from_millis(100)).await;
        assert!(handshake(&server, &client).await, "the rotated certificate was not served");
        // A broken file leaves the working pair in use.
        std::fs::write(d.join("server.pem"), "not a certificate").unwrap();
        tokio::time::sleep(RELOAD_CHECK + Duration::from_millis(100)).await;
        assert!(handshake(&server, &client).await, "a broken file replaced the working pair");
    }

    #[tokio::test]
    async fn a_peer_certificate_must_name_the_address_it_is_used_from() {
        let ca = Authority::new("ca").unwrap();
        let der = |issued: Issued| CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let loopback: std::net::IpAddr = [127, 0, 0, 1].into();
        let elsewhere: std::net::IpAddr = [10, 9, 9, 9].into();
        let by_ip = der(ca.issue("m1", &["127.0.0.1"]).unwrap());
        assert_eq!(check_address(&by_ip, loopback).await, Ok(()));
        let refused = check_address(&by_ip, elsewhere).await.unwrap_err();
        assert!(refused.contains("10.9.9.9"), "{refused}");
        // A DNS name that resolves to the address.
        let by_name = der(ca.issue("m1", &["localhost"]).unwrap());
        assert_eq!(check_address(&by_name, loopback).await, Ok(()));
        assert!(check_address(&by_name, elsewhere).await.is_err());
        // IPv4 seen through an IPv4-mapped IPv6 socket is the same address.
        let mapped = std::net::Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped();
        assert_eq!(check_address(&by_ip, std::net::IpAddr::V6(mapped).to_canonical()).await, Ok(()));
        // A certificate that names no address is not held to one (etcd).
        let nameless = der(ca.issue("m1", &[]).unwrap());
        assert_eq!(check_address(&nameless, elsewhere).await, Ok(()));
    }

    #[test]
    fn issued_certificates_carry_their_common_name() {
        let ca = Authority::new("test CA").unwrap();
        let issued = ca.issue("m1", &["127.0.0.1", "localhost"]).unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(common_name(&der).as_deref(), Some("m1"));
        assert!(check_cn(&Some("m2".into()), &der).is_err());
        assert!(check_cn(&Some("m1".into()), &der).is_ok());
    }
}
