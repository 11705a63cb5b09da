//! exporter-toolkit's web configuration file (`--web.config.file`): TLS with optional client
//! certificates, extra response headers, and basic auth with bcrypt hashes. Like
//! exporter-toolkit, the file is read again for every connection and request, so a rotated
//! certificate or password takes effect without a restart; here a stat of the file and of the
//! files it names decides whether anything changed, so an unchanged file costs no parse.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use serde::Deserialize;

/// A web configuration problem, phrased for the operator: `file: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct WebConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// The file as written (exporter-toolkit's field names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers exporter-toolkit lets a config add, with their allowed values (any if empty).
const EXTRA_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Loaded {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name to bcrypt hash; empty: no authentication.
    pub users: HashMap<String, String>,
}

/// Identity and version of a file: a change in any of these means read it again.
type Stamp = Vec<Option<(u64, u64, i64, i64, u64)>>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size())))
        .collect()
}

/// The web configuration file, read again whenever it or a file it names changes.
pub struct WebConfigFile {
    path: PathBuf,
    cache: Mutex<(Stamp, Vec<PathBuf>, Arc<Loaded>)>,
}

impl std::fmt::Debug for WebConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfigFile").field("path", &self.path).finish()
    }
}

impl WebConfigFile {
    /// Reads and validates the file now: a bad file is an error at start, not at the first
    /// scrape.
    pub fn open(path: &Path) -> Result<WebConfigFile, WebConfigError> {
        let (files, loaded) = load(path)?;
        let stamp = stamp(&files);
        Ok(WebConfigFile { path: path.to_path_buf(), cache: Mutex::new((stamp, files, Arc::new(loaded))) })
    }

    /// The configuration as the files say now.
    pub fn current(&self) -> Result<Arc<Loaded>, WebConfigError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if stamp(&cache.1) == cache.0 {
            return Ok(cache.2.clone());
        }
        let (files, loaded) = load(&self.path)?;
        let loaded = Arc::new(loaded);
        *cache = (stamp(&files), files, loaded.clone());
        Ok(loaded)
    }
}

/// Parses and validates `path`; returns the files it depends on (itself first) and the result.
fn load(path: &Path) -> Result<(Vec<PathBuf>, Loaded), WebConfigError> {
    let err = |message: String| WebConfigError { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let (mut files, loaded) = from_text(&text, path.parent().unwrap_or(Path::new("."))).map_err(err)?;
    files.insert(0, path.to_path_buf());
    Ok((files, loaded))
}

/// Parses and validates the text of a web configuration whose relative paths resolve in
/// `dir`; returns the files it names and the result.
pub fn from_text(text: &str, dir: &Path) -> Result<(Vec<PathBuf>, Loaded), String> {
    if text.len() > 1 << 20 {
        return Err("larger than 1 MiB".into());
    }
    let raw: Raw = if text.trim().is_empty() {
        Raw::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?
    };
    parse(raw, dir)
}

fn parse(raw: Raw, dir: &Path) -> Result<(Vec<PathBuf>, Loaded), String> {
    if raw.rate_limit.is_some() {
        return Err("rate_limit is not supported by ipcwatch".into());
    }
    let mut files = Vec::new();
    let mut headers = Vec::new();
    if let Some(http) = raw.http_server_config {
        // http2 is accepted for compatibility; ipcwatch serves HTTP/1.1 either way.
        let _ = http.http2;
        for (name, value) in http.headers.unwrap_or_default() {
            let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| *n == name) else {
                return Err(format!("HTTP header {name:?} can not be configured"));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(format!(
                    "invalid value for {name}. Expected one of: {allowed:?}, but got: {value:?}"
                ));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| format!("{name}: {value:?} is not a header value"))?;
            headers.push((HeaderName::from_bytes(name.as_bytes()).expect("listed names are valid"), value));
        }
    }
    let users: HashMap<String, String> = raw.basic_auth_users.unwrap_or_default().into_iter().collect();
    for (user, hash) in &users {
        hash.parse::<bcrypt::HashParts>()
            .map_err(|e| format!("basic_auth_users: {user}: not a bcrypt hash ({e})"))?;
    }
    let tls = match raw.tls_server_config {
        Some(t) => tls(t, dir, &mut files)?,
        None => None,
    };
    Ok((files, Loaded { tls, headers, users }))
}

fn pem_source(
    inline: Option<String>,
    file: Option<PathBuf>,
    dir: &Path,
    what: &str,
    files: &mut Vec<PathBuf>,
) -> Result<Option<Vec<u8>>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("both {what} and {what}_file are set; give one")),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(f)) if f.as_os_str().is_empty() => Ok(None),
        (None, Some(f)) => {
            let f = dir.join(f);
            let bytes = std::fs::read(&f).map_err(|e| format!("{what}_file {}: {e}", f.display()))?;
            files.push(f);
            Ok(Some(bytes))
        }
        (None, None) => Ok(None),
    }
}

fn version(name: &str) -> Result<u8, String> {
    match name {
        "TLS13" => Ok(13),
        "TLS12" => Ok(12),
        "TLS10" | "TLS11" => Err(format!("{name} is not supported: ipcwatch speaks TLS 1.2 and 1.3")),
        other => Err(format!("unknown TLS version {other:?}")),
    }
}

fn tls(t: RawTls, dir: &Path, files: &mut Vec<PathBuf>) -> Result<Option<Arc<ServerConfig>>, String> {
    for (field, set) in [
        ("cipher_suites", t.cipher_suites.as_ref().is_some_and(|v| !v.is_empty())),
        ("curve_preferences", t.curve_preferences.as_ref().is_some_and(|v| !v.is_empty())),
        ("client_allowed_sans", t.client_allowed_sans.as_ref().is_some_and(|v| !v.is_empty())),
    ] {
        if set {
            return Err(format!("tls_server_config.{field} is not supported by ipcwatch"));
        }
    }
    let cert = pem_source(t.cert, t.cert_file, dir, "cert", files)?;
    let key = pem_source(t.key, t.key_file, dir, "key", files)?;
    let (cert, key) = match (cert, key) {
        // No certificate and no key: exporter-toolkit serves plain HTTP.
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err("missing cert_file".into()),
        (Some(_), None) => return Err("missing key_file".into()),
        (Some(c), Some(k)) => (c, k),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cert: not PEM certificates ({e})"))?;
    if chain.is_empty() {
        return Err("cert: no certificate found".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("key: not a PEM private key ({e})"))?;
    let (min, max) = (
        version(t.min_version.as_deref().unwrap_or("TLS12"))?,
        version(t.max_version.as_deref().unwrap_or("TLS13"))?,
    );
    if min > max {
        return Err("min_version is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = pem_source(t.client_ca, t.client_ca_file, dir, "client_ca", files)?;
    let roots = |ca: &Option<Vec<u8>>| -> Result<Arc<RootCertStore>, String> {
        let Some(ca) = ca else {
            return Err("client_ca_file is needed to verify client certificates".into());
        };
        let mut store = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            store
                .add(c.map_err(|e| format!("client_ca: not PEM ({e})"))?)
                .map_err(|e| format!("client_ca: {e}"))?;
        }
        if store.is_empty() {
            return Err("client_ca: no certificate found".into());
        }
        Ok(Arc::new(store))
    };
    let verifier: Option<Arc<dyn ClientCertVerifier>> =
        match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
            "NoClientCert" => None,
            "RequestClientCert" => {
                Some(Arc::new(AnyClientCert { mandatory: false, provider: provider.clone() }))
            }
            "RequireAnyClientCert" => {
                Some(Arc::new(AnyClientCert { mandatory: true, provider: provider.clone() }))
            }
            kind @ ("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert") => {
                let builder = WebPkiClientVerifier::builder_with_provider(roots(&ca)?, provider.clone());
                let builder =
                    if kind == "VerifyClientCertIfGiven" { builder.allow_unauthenticated() } else { builder };
                Some(builder.build().map_err(|e| format!("client_ca: {e}"))?)
            }
            other => return Err(format!("invalid ClientAuth {other:?}")),
        };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| format!("cert and key: {e}"))?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Go's RequestClientCert and RequireAnyClientCert: a client certificate is asked for (and
/// for the second, required) but not checked against any CA; its handshake signature is.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A bcrypt hash of a password nobody has: unknown users pay the same bcrypt as known ones,
/// so response times do not tell which user names exist.
const DECOY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// Remembers passwords that passed bcrypt for a user and hash, so a scraper's every request
/// does not pay ~70 ms of bcrypt. Failures are never remembered: a wrong password always pays.
pub struct AuthCache {
    passed: Mutex<HashMap<(String, String), Vec<u8>>>,
    /// bcrypt runs one at a time, as in exporter-toolkit: it is CPU-bound by design.
    bcrypt: tokio::sync::Mutex<()>,
    /// Checks waiting for bcrypt; beyond [`MAX_WAITING`] a request is answered at once.
    waiting: std::sync::atomic::AtomicUsize,
    /// Failed checks per client address in the current minute.
    failures: Mutex<HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

/// Most remembered successes; beyond it the cache starts over.
const AUTH_CACHE_MAX: usize = 1024;
/// Checks that may wait for bcrypt; more are answered 429 without one, so a flood of wrong
/// passwords neither queues without end nor holds connections (a cached right password never
/// waits at all).
const MAX_WAITING: usize = 4;
/// Failed checks one address may cause in [`FAILURE_WINDOW`]; then 429 until it ends.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Most addresses remembered for failures; beyond it the memory starts over.
const FAILURES_MAX: usize = 4096;

/// What a basic-auth check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Passed,
    Denied,
    /// Not checked: the address failed too often, or too many checks are waiting.
    Throttled,
}

fn same(a: &[u8], b: &[u8]) -> bool {
    // Constant-time for equal lengths: the cached password is compared without early exit.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache {
            passed: Mutex::new(HashMap::new()),
            bcrypt: tokio::sync::Mutex::new(()),
            waiting: Default::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }
}

/// Counts a check that waits for bcrypt while it lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl AuthCache {
    /// Whether `ip` failed too often in the current minute: its connections are closed at
    /// once, before any TLS handshake is paid for.
    pub fn throttled(&self, ip: std::net::IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(&ip).is_some_and(|(since, n)| since.elapsed() < FAILURE_WINDOW && *n >= MAX_FAILURES)
    }

    /// Whether the request's `Authorization: Basic` credentials match `users`, from client
    /// `peer`.
    pub async fn check(
        &self,
        users: &HashMap<String, String>,
        authorization: Option<&HeaderValue>,
        peer: Option<std::net::IpAddr>,
    ) -> Auth {
        use std::sync::atomic::Ordering;
        let Some((user, password)) = authorization.and_then(basic_credentials) else { return Auth::Denied };
        let (hash, known) = match users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (DECOY_HASH.to_string(), false),
        };
        let key = (user, hash);
        if known {
            let passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
            if passed.get(&key).is_some_and(|p| same(p, &password)) {
                return Auth::Passed;
            }
        }
        let now = std::time::Instant::now();
        if peer.is_some_and(|ip| self.throttled(ip)) {
            return Auth::Throttled;
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Auth::Throttled;
        }
        let waiting = Waiting(&self.waiting);
        let one_at_a_time = self.bcrypt.lock().await;
        let (pw, h) = (password.clone(), key.1.clone());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(&pw, &h).unwrap_or(false))
            .await
            .unwrap_or(false);
        drop((one_at_a_time, waiting));
        if ok && known {
            let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
            if passed.len() >= AUTH_CACHE_MAX {
                passed.clear();
            }
            passed.insert(key, password);
            return Auth::Passed;
        }
        if let Some(ip) = peer {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if failures.len() >= FAILURES_MAX {
                failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
                if failures.len() >= FAILURES_MAX {
                    failures.clear();
                }
            }
            let entry = failures.entry(ip).or_insert((now, 0));
            if now.duration_since(entry.0) >= FAILURE_WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Auth::Denied
    }
}

/// `Basic base64(user:password)` as (user, password bytes).
fn basic_credentials(v: &HeaderValue) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let text = v.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests;
