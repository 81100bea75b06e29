//! Connecting to PostgreSQL, with TLS as libpq does it: the one way every opsloop component
//! (the collector, the actuator's executor, the tests) opens a session.
//!
//! A connection string is a libpq key/value string (`host=db-1 user=opsloop sslmode=verify-full
//! sslrootcert=/etc/opsloop/db-ca.crt`) or URL (`postgres://opsloop@db-1/app?sslmode=verify-full
//! &sslrootcert=/etc/opsloop/db-ca.crt`). [`PgDsn::parse`] takes the TLS settings out of it and
//! hands the rest to tokio-postgres; [`PgDsn::connect`] opens the session over rustls (the
//! `ring` provider: no OpenSSL).
//!
//! | setting | environment | what |
//! |---|---|---|
//! | `sslmode` | `PGSSLMODE` | `disable`: plaintext. `prefer` (the default): TLS when the server offers it, the certificate unchecked. `require`: TLS or no connection, the certificate unchecked — unless a CA file is given (or `~/.postgresql/root.crt` exists), then as `verify-ca`. `verify-ca`: the server's certificate must chain to a CA of `sslrootcert`. `verify-full`: that, and it must be issued for the host name connected to. |
//! | `sslrootcert` | `PGSSLROOTCERT` | PEM file of the trusted CAs; default `~/.postgresql/root.crt`. `system`: the system's CAs (`SSL_CERT_FILE`, else the distribution's bundle), and `verify-full` unless `sslmode` says otherwise. |
//! | `sslcert`, `sslkey` | `PGSSLCERT`, `PGSSLKEY` | a client certificate (PEM, the chain after it) and its unencrypted key (PKCS#8, PKCS#1 or SEC1), for `cert` authentication. |
//! | `sslsni` | | `0` sends no server name in the handshake (default `1`). |
//!
//! A setting in the connection string wins over the environment. `channel_binding` is
//! tokio-postgres's own: SCRAM authentication over TLS binds the session to the server's
//! certificate (`tls-server-end-point`), so `channel_binding=require` works. On Unix-domain
//! sockets TLS is never used, as with libpq. Not supported: `sslpassword` (an encrypted key),
//! `sslcrl`, `sslcrldir`, `ssl_min_protocol_version` / `ssl_max_protocol_version` (TLS 1.2 and
//! 1.3 are offered).
//!
//! Failures say what to fix: a CA file that cannot be read, a server certificate that no CA of
//! the file signed or that names another host, a server without TLS ([`PgConnectError`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Config, Socket};

use crate::Retry;

/// The session's connection: drive it (`tokio::spawn(connection)`) for the client to work.
pub type PgConnection = tokio_postgres::Connection<Socket, PgTlsStream<Socket>>;

/// libpq's `sslmode`: whether to use TLS and what to check of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, certificate unchecked.
    Prefer,
    /// TLS or no connection, certificate unchecked (checked against a CA file if one is given).
    Require,
    /// TLS with a certificate that chains to a trusted CA.
    VerifyCa,
    /// TLS with a certificate that chains to a trusted CA and names the host.
    VerifyFull,
}

impl SslMode {
    /// The mode `value` names, as libpq spells it.
    pub fn parse(value: &str) -> Result<Self, PgConnectError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err(PgConnectError::dsn(
                "sslmode=allow is not supported; use prefer (TLS when the server offers it)",
            )),
            other => Err(PgConnectError::dsn(format!(
                "sslmode={other:?} is not a mode; use disable, prefer, require, verify-ca or \
                 verify-full"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootCert {
    /// None given and `~/.postgresql/root.crt` absent.
    None,
    /// A PEM file (named by `sslrootcert`, `PGSSLROOTCERT` or the default path).
    File(PathBuf),
    /// `sslrootcert=system`.
    System,
}

/// A parsed connection string: tokio-postgres's settings and the TLS ones libpq adds.
#[derive(Clone)]
pub struct PgDsn {
    config: Config,
    ssl_mode: SslMode,
    root_cert: RootCert,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    sni: bool,
}

impl fmt::Debug for PgDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres's Config redacts the password itself.
        f.debug_struct("PgDsn")
            .field("config", &self.config)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("sni", &self.sni)
            .finish()
    }
}

/// The TLS settings of a connection string, as written.
#[derive(Debug, Default)]
struct TlsParams {
    ssl_mode: Option<String>,
    root_cert: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
    sni: Option<String>,
}

impl TlsParams {
    /// Takes `key` when it is a TLS setting; `Ok(false)` leaves it to tokio-postgres.
    fn take(&mut self, key: &str, value: String) -> Result<bool, PgConnectError> {
        let slot = match key {
            "sslmode" => &mut self.ssl_mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.client_cert,
            "sslkey" => &mut self.client_key,
            "sslsni" => &mut self.sni,
            "sslpassword" => {
                return Err(PgConnectError::dsn(
                    "sslpassword is not supported: give sslkey an unencrypted key (`openssl \
                     pkey -in key.pem -out plain.pem`) readable only by opsloop",
                ));
            }
            "sslcrl"
            | "sslcrldir"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version"
            | "sslcompression"
            | "sslcertmode"
            | "gssencmode"
            | "krbsrvname"
            | "requirepeer" => {
                return Err(PgConnectError::dsn(format!(
                    "{key} is a libpq setting opsloop does not support; leave it out"
                )));
            }
            _ => return Ok(false),
        };
        *slot = Some(value);
        Ok(true)
    }
}

impl PgDsn {
    /// Parses a libpq connection string or URL; TLS settings missing from it come from the
    /// environment (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`) as with libpq.
    pub fn parse(dsn: &str) -> Result<Self, PgConnectError> {
        Self::parse_with_env(dsn, |name| std::env::var(name).ok())
    }

    /// [`PgDsn::parse`] with the environment read through `env`.
    pub fn parse_with_env(
        dsn: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PgConnectError> {
        let mut params = TlsParams::default();
        let rest = if let Some(url) = url_body(dsn) {
            strip_url_params(dsn, url, &mut params)?
        } else {
            strip_key_value_params(dsn, &mut params)?
        };
        let mut config: Config = rest.parse().map_err(|error: tokio_postgres::Error| {
            PgConnectError::dsn(match std::error::Error::source(&error) {
                Some(cause) => cause.to_string(),
                None => error.to_string(),
            })
        })?;
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        let root_cert = non_empty(params.root_cert.or_else(|| env("PGSSLROOTCERT")));
        let ssl_mode = match non_empty(params.ssl_mode.or_else(|| env("PGSSLMODE"))) {
            Some(mode) => SslMode::parse(&mode)?,
            // libpq: a system CA store means checking the name too.
            None if root_cert.as_deref() == Some("system") => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        let root_cert = match root_cert {
            Some(system) if system == "system" => {
                if ssl_mode != SslMode::VerifyFull {
                    return Err(PgConnectError::dsn(format!(
                        "sslrootcert=system needs sslmode=verify-full (not {ssl_mode}): any \
                         certificate a public CA issued would pass a weaker check"
                    )));
                }
                RootCert::System
            }
            Some(path) => RootCert::File(PathBuf::from(path)),
            None => match default_root_cert(&env) {
                Some(path) if path.is_file() => RootCert::File(path),
                _ => RootCert::None,
            },
        };
        let client_cert = non_empty(params.client_cert.or_else(|| env("PGSSLCERT")));
        let client_key = non_empty(params.client_key.or_else(|| env("PGSSLKEY")));
        if client_cert.is_some() != client_key.is_some() {
            return Err(PgConnectError::dsn(
                "a client certificate needs both sslcert (the certificate) and sslkey (its key)",
            ));
        }
        let sni = match params.sni.as_deref() {
            None | Some("1") => true,
            Some("0") => false,
            Some(other) => {
                return Err(PgConnectError::dsn(format!(
                    "sslsni={other:?} is not 0 or 1"
                )));
            }
        };
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        // libpq never uses TLS on Unix-domain sockets; neither does a server.
        let hosts = config.get_hosts();
        let unix_only = !hosts.is_empty()
            && config.get_hostaddrs().is_empty()
            && hosts.iter().all(|host| !matches!(host, Host::Tcp(_)));
        if unix_only {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        Ok(PgDsn {
            config,
            ssl_mode,
            root_cert,
            client_cert: client_cert.map(PathBuf::from),
            client_key: client_key.map(PathBuf::from),
            sni,
        })
    }

    /// tokio-postgres's settings (host, port, user, ...).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// To change a setting (`application_name`, ...) before connecting.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The `sslmode` in effect.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The CA file certificates are checked against, when one is.
    pub fn root_cert(&self) -> Option<&Path> {
        match &self.root_cert {
            RootCert::File(path) => Some(path),
            RootCert::None | RootCert::System => None,
        }
    }

    /// The TLS connector for these settings: reads the CA and client certificate files.
    pub fn tls(&self) -> Result<PgTls, PgConnectError> {
        if self.ssl_mode == SslMode::Disable {
            return Ok(PgTls {
                config: None,
                verify_name: false,
                sni: self.sni,
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &self.root_cert {
            RootCert::None => None,
            RootCert::File(path) => Some(read_roots(path, "sslrootcert")?),
            RootCert::System => Some(system_roots()?),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (self.ssl_mode, roots) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(PgConnectError::Tls {
                    reason: format!(
                        "sslmode={} checks the server's certificate against a CA, and none is \
                         given: set sslrootcert=/path/to/ca.crt (or PGSSLROOTCERT) to the CA \
                         that issued it, sslrootcert=system for the system's CAs, or put it at \
                         ~/.postgresql/root.crt",
                        self.ssl_mode
                    ),
                });
            }
            (SslMode::VerifyFull, Some(roots)) => webpki_verifier(roots, &provider)?,
            // libpq: with a CA file, require checks the chain as verify-ca does.
            (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(ChainOnly {
                inner: webpki_verifier(roots, &provider)?,
            }),
            (_, _) => Arc::new(Unchecked {
                provider: Arc::clone(&provider),
            }),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| PgConnectError::Tls {
                reason: format!("TLS set-up failed: {error}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates(cert, "sslcert", "client certificate file")?;
                let key_der = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|error| PgConnectError::Tls {
                        reason: format!(
                            "the client key {} (sslkey) does not go with the certificate {} \
                             (sslcert) or is not supported: {error}",
                            key.display(),
                            cert.display()
                        ),
                    })?
            }
            _ => builder.with_no_client_auth(),
        };
        // What PostgreSQL 17's direct TLS negotiation asks for; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        config.enable_sni = self.sni;
        Ok(PgTls {
            config: Some(Arc::new(config)),
            verify_name: self.ssl_mode == SslMode::VerifyFull,
            sni: self.sni,
        })
    }

    /// Opens a session. Drive the returned connection (`tokio::spawn`) for the client to work.
    pub async fn connect(&self) -> Result<(Client, PgConnection), PgConnectError> {
        let tls = self.tls()?;
        self.config
            .connect(tls)
            .await
            .map_err(|error| PgConnectError::from_connect(error, self))
    }

    /// The first host name, for messages.
    fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.display().to_string(),
            None => self
                .config
                .get_hostaddrs()
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }
    }
}

/// Parses `dsn` and opens a session ([`PgDsn::parse`], [`PgDsn::connect`]).
pub async fn connect(dsn: &str) -> Result<(Client, PgConnection), PgConnectError> {
    PgDsn::parse(dsn)?.connect().await
}

/// Why a PostgreSQL session could not be opened; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PgConnectError {
    /// The connection string does not parse or asks for what is not supported.
    #[error("the PostgreSQL connection string is invalid: {reason}")]
    Dsn { reason: String },
    /// TLS cannot be set up: a certificate or key file is missing or unusable, no CA is given
    /// for a mode that checks one.
    #[error("{reason}")]
    Tls { reason: String },
    /// The server could not be reached, refused the session or failed the certificate check.
    #[error("{reason}")]
    Server {
        reason: String,
        retry: Retry,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PgConnectError {
    fn dsn(reason: impl Into<String>) -> Self {
        PgConnectError::Dsn {
            reason: reason.into(),
        }
    }

    /// Whether connecting again may succeed: not for a bad connection string, certificate or
    /// password.
    pub fn retry(&self) -> Retry {
        match self {
            PgConnectError::Dsn { .. } | PgConnectError::Tls { .. } => Retry::Never,
            PgConnectError::Server { retry, .. } => *retry,
        }
    }

    /// The client error, when the server or the handshake failed.
    pub fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            PgConnectError::Server { source, .. } => Some(source),
            PgConnectError::Dsn { .. } | PgConnectError::Tls { .. } => None,
        }
    }

    fn from_connect(error: tokio_postgres::Error, dsn: &PgDsn) -> Self {
        let (reason, retry) = match tls_failure(&error) {
            Some(rustls_error) => (describe_tls(rustls_error, dsn), Retry::Never),
            // tokio-postgres says so in the error's cause.
            None if describe(&error).contains("server does not support TLS") => (
                format!(
                    "the server at {} does not accept TLS (its postgresql.conf has ssl = off) \
                     and sslmode={} needs it: turn ssl on there, or connect with sslmode=prefer",
                    dsn.host(),
                    dsn.ssl_mode
                ),
                Retry::Never,
            ),
            None => {
                let mut reason = describe(&error);
                let wants_certificate = error
                    .as_db_error()
                    .is_some_and(|db| db.message().contains("client certificate"));
                if wants_certificate && dsn.client_cert.is_none() {
                    reason.push_str(": set sslcert and sslkey to a certificate for the role");
                }
                (reason, server_retry(&error))
            }
        };
        PgConnectError::Server {
            reason,
            retry,
            source: error,
        }
    }
}

/// An error on an open session (setting it up after connecting), as a connect error.
impl From<tokio_postgres::Error> for PgConnectError {
    fn from(error: tokio_postgres::Error) -> Self {
        PgConnectError::Server {
            reason: describe(&error),
            retry: server_retry(&error),
            source: error,
        }
    }
}

/// What a person needs from a client error: the server's message and SQLSTATE when it has
/// one, else the error and its cause.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Errors retrying cannot fix: bad credentials, a missing database or role, a `pg_hba.conf`
/// that refuses the connection.
fn server_retry(error: &tokio_postgres::Error) -> Retry {
    let permanent = [
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::INSUFFICIENT_PRIVILEGE,
    ];
    match error.code() {
        Some(code) if permanent.contains(code) => Retry::Never,
        _ => Retry::WithBackoff,
    }
}

/// The rustls error inside a failed handshake, if that is what failed.
fn tls_failure(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // io::Error's source() skips the error it wraps: look at it directly.
        if let Some(inner) = current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        cause = current.source();
    }
    None
}

fn describe_tls(error: &rustls::Error, dsn: &PgDsn) -> String {
    let host = dsn.host();
    let roots = match &dsn.root_cert {
        RootCert::File(path) => format!("{} (sslrootcert)", path.display()),
        RootCert::System => "the system's CA store (sslrootcert=system)".to_owned(),
        RootCert::None => "the CA file (sslrootcert)".to_owned(),
    };
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the certificate of the server at {host} is not signed by a CA in {roots}: set \
             sslrootcert to the CA that issued the server's certificate"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            let names = match error {
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    presented,
                    ..
                }) if !presented.is_empty() => {
                    // rustls writes `DnsName("db-1")`: the name is what a person reads.
                    let names: Vec<&str> = presented
                        .iter()
                        .map(|name| {
                            name.strip_prefix("DnsName(\"")
                                .and_then(|rest| rest.strip_suffix("\")"))
                                .unwrap_or(name)
                        })
                        .collect();
                    format!(" (it names {})", names.join(", "))
                }
                _ => String::new(),
            };
            format!(
                "the server's certificate is not issued for the host {host:?}{names}: connect \
                 by a name the certificate holds, or use sslmode=verify-ca to check only that a \
                 trusted CA signed it"
            )
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the certificate of the server at {host} has expired: renew it"),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => format!(
            "the certificate of the server at {host} is not valid yet: check the clocks of \
             both machines"
        ),
        rustls::Error::InvalidCertificate(other) => format!(
            "the certificate of the server at {host} was refused ({other}); checked against \
             {roots}"
        ),
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            format!("the server at {host} asks for a client certificate: set sslcert and sslkey")
        }
        rustls::Error::AlertReceived(
            alert @ (rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::DecryptError),
        ) if dsn.client_cert.is_some() => format!(
            "the server at {host} refused the client certificate ({alert:?}): it must be \
             signed by a CA in the server's ssl_ca_file"
        ),
        other => format!("the TLS handshake with the server at {host} failed: {other}"),
    }
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, PgConnectError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|error| PgConnectError::Tls {
            reason: format!("the CA certificates cannot be used: {error}"),
        })
}

/// `~/.postgresql/root.crt`, libpq's default CA file.
fn default_root_cert(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt"))
}

fn read_file(path: &Path, param: &str, what: &str) -> Result<Vec<u8>, PgConnectError> {
    std::fs::read(path).map_err(|error| PgConnectError::Tls {
        reason: format!(
            "cannot read the {what} {} ({param}): {error}",
            path.display()
        ),
    })
}

fn read_certificates(
    path: &Path,
    param: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, PgConnectError> {
    let pem = read_file(path, param, what)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PgConnectError::Tls {
            reason: format!(
                "the {what} {} ({param}) is not valid PEM: {error}",
                path.display()
            ),
        })?;
    if certificates.is_empty() {
        return Err(PgConnectError::Tls {
            reason: format!(
                "the {what} {} ({param}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        });
    }
    Ok(certificates)
}

fn read_roots(path: &Path, param: &str) -> Result<RootCertStore, PgConnectError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, param, "CA file")? {
        roots
            .add(certificate)
            .map_err(|error| PgConnectError::Tls {
                reason: format!(
                    "a certificate in {} ({param}) cannot be a trusted CA: {error}",
                    path.display()
                ),
            })?;
    }
    Ok(roots)
}

/// The system's CAs: `SSL_CERT_FILE`, else the first bundle of the usual places.
fn system_roots() -> Result<RootCertStore, PgConnectError> {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .or_else(|| {
            BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|path| path.is_file())
        })
        .ok_or_else(|| PgConnectError::Tls {
            reason: format!(
                "sslrootcert=system, and no CA bundle was found (SSL_CERT_FILE, {}): install \
                 ca-certificates or name a CA file",
                BUNDLES.join(", ")
            ),
        })?;
    let pem = read_file(&path, "sslrootcert=system", "CA bundle")?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) =
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).flatten());
    if added == 0 {
        return Err(PgConnectError::Tls {
            reason: format!(
                "the CA bundle {} (sslrootcert=system) holds no usable certificate",
                path.display()
            ),
        });
    }
    Ok(roots)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PgConnectError> {
    let pem = read_file(path, "sslkey", "key file")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| PgConnectError::Tls {
        reason: format!(
            "the key file {} (sslkey) holds no unencrypted PEM private key (PKCS#8, PKCS#1 or \
             SEC1): {error}",
            path.display()
        ),
    })
}

/// verify-ca: the chain must reach a trusted CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last: a name error means the chain held.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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

/// prefer and require without a CA: encrypted, the certificate unchecked (the handshake's
/// signatures still are, so the session is with the certificate's key holder).
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres's TLS connector over rustls, built by [`PgDsn::tls`].
#[derive(Clone)]
pub struct PgTls {
    /// `None` for sslmode=disable, where tokio-postgres never starts a handshake.
    config: Option<Arc<rustls::ClientConfig>>,
    verify_name: bool,
    sni: bool,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls")
            .field("enabled", &self.config.is_some())
            .field("verify_name", &self.verify_name)
            .field("sni", &self.sni)
            .finish()
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        let name = match ServerName::try_from(domain.to_owned()) {
            Ok(name) => name,
            Err(_) if self.verify_name => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "sslmode=verify-full checks the certificate against the host name, and \
                         {domain:?} is none: connect by the name the certificate is issued for"
                    ),
                ));
            }
            // Nothing checks the name: any valid one will do for the handshake.
            Err(_) => ServerName::try_from("localhost").map_err(io::Error::other)?,
        };
        Ok(PgTlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One handshake, for one server name.
#[derive(Debug)]
pub struct PgTlsConnect {
    config: Option<Arc<rustls::ClientConfig>>,
    name: ServerName<'static>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let config = self.config.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "TLS is off (sslmode=disable)")
            })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(self.name, stream)
                .await?;
            let end_point = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|certificate| tls_server_end_point(certificate));
            Ok(PgTlsStream {
                inner: stream,
                end_point,
            })
        })
    }
}

/// A TLS session with the server.
#[derive(Debug)]
pub struct PgTlsStream<S> {
    inner: tokio_rustls::client::TlsStream<S>,
    /// RFC 5929 `tls-server-end-point`: the hash of the server's certificate, for SCRAM's
    /// channel binding.
    end_point: Option<Vec<u8>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        match &self.end_point {
            Some(hash) => ChannelBinding::tls_server_end_point(hash.clone()),
            None => ChannelBinding::none(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// RFC 5929's `tls-server-end-point` of a DER certificate: its hash with the hash function of
/// its signature (SHA-256 for MD5 and SHA-1); `None` where that is not defined (RSA-PSS,
/// EdDSA), as PostgreSQL's server has none either.
fn tls_server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    let oid = signature_algorithm(certificate)?;
    let hash = if let Some(&[kind]) = oid.strip_prefix(RSA) {
        match kind {
            0x04 | 0x05 | 0x0b => 256,
            0x0c => 384,
            0x0d => 512,
            _ => return None,
        }
    } else if oid == ECDSA_SHA1 {
        256
    } else if let Some(&[kind]) = oid.strip_prefix(ECDSA_SHA2) {
        match kind {
            0x02 => 256,
            0x03 => 384,
            0x04 => 512,
            _ => return None,
        }
    } else {
        return None;
    };
    Some(match hash {
        256 => sha2::Sha256::digest(certificate).to_vec(),
        384 => sha2::Sha384::digest(certificate).to_vec(),
        _ => sha2::Sha512::digest(certificate).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm` (after `tbsCertificate`).
fn signature_algorithm(certificate: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (SEQUENCE, body, _) = der_element(certificate)? else {
        return None;
    };
    let (SEQUENCE, _tbs, rest) = der_element(body)? else {
        return None;
    };
    let (SEQUENCE, algorithm, _) = der_element(rest)? else {
        return None;
    };
    let (OID, oid, _) = der_element(algorithm)? else {
        return None;
    };
    Some(oid)
}

/// One DER element: (tag, contents, what follows).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (length, after) = rest.split_at(octets);
        rest = after;
        length
            .iter()
            .fold(0usize, |sum, &byte| (sum << 8) | usize::from(byte))
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The part after `postgres://` or `postgresql://`, when `dsn` is a URL.
fn url_body(dsn: &str) -> Option<&str> {
    ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| dsn.strip_prefix(prefix))
}

/// `dsn` without the TLS settings of its query string, which go into `params`.
fn strip_url_params(
    dsn: &str,
    body: &str,
    params: &mut TlsParams,
) -> Result<String, PgConnectError> {
    // As tokio-postgres reads it: credentials end at the first '@', the query starts at the
    // first '?' after them.
    let after_credentials = body.find('@').map_or(0, |at| at + 1);
    let Some(query_at) = body[after_credentials..]
        .find('?')
        .map(|at| at + after_credentials)
    else {
        return Ok(dsn.to_owned());
    };
    let prefix_len = dsn.len() - body.len();
    let mut kept = Vec::new();
    for pair in body[query_at + 1..].split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        if !params.take(&key, percent_decode(value)?)? {
            kept.push(pair);
        }
    }
    let mut rest = dsn[..prefix_len + query_at].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(rest)
}

fn percent_decode(text: &str) -> Result<String, PgConnectError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let byte = text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    PgConnectError::dsn(format!("{text:?} has a % not followed by two hex digits"))
                })?;
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| PgConnectError::dsn(format!("{text:?} does not decode to UTF-8")))
}

/// `dsn` (libpq key/value) without its TLS settings, which go into `params`.
fn strip_key_value_params(dsn: &str, params: &mut TlsParams) -> Result<String, PgConnectError> {
    let mut kept: Vec<(String, String)> = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(PgConnectError::dsn(format!(
                "{key:?} is not followed by '=' and a value"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(PgConnectError::dsn(format!(
                            "the value of {key} has no closing quote"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if !params.take(&key, value.clone())? {
            kept.push((key, value));
        }
    }
    Ok(kept
        .iter()
        .map(|(key, value)| {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            format!("{key}='{escaped}'")
        })
        .collect::<Vec<_>>()
        .join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dsn: &str) -> Result<PgDsn, PgConnectError> {
        PgDsn::parse_with_env(dsn, |_| None)
    }

    #[test]
    fn tls_settings_come_out_of_key_value_strings_and_the_rest_is_kept() {
        let dsn = parse(
            "host=db-1 port=6432 user=app password='it\\'s a \\\\secret' dbname=orders \
             sslmode=verify-full sslrootcert='/etc/ca dir/ca.crt' application_name=x",
        )
        .expect("parses");
        assert_eq!(dsn.config().get_password(), Some(&b"it's a \\secret"[..]));
        assert_eq!(dsn.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(dsn.root_cert(), Some(Path::new("/etc/ca dir/ca.crt")));
        assert_eq!(dsn.config().get_dbname(), Some("orders"));
        assert_eq!(dsn.config().get_ports(), &[6432]);
        assert_eq!(dsn.config().get_application_name(), Some("x"));
        assert_eq!(
            dsn.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn tls_settings_come_out_of_urls_percent_decoded() {
        let dsn = parse(
            "postgres://app:p%3Fss@db-1:5433/orders?connect_timeout=5&sslmode=verify-ca\
             &sslrootcert=%2Fetc%2Fca.crt&application_name=collector",
        )
        .expect("parses");
        assert_eq!(dsn.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(dsn.root_cert(), Some(Path::new("/etc/ca.crt")));
        assert_eq!(dsn.config().get_password(), Some(&b"p?ss"[..]));
        assert_eq!(dsn.config().get_application_name(), Some("collector"));
        let plain = parse("postgresql://app@db-1/orders").expect("parses");
        assert_eq!(plain.ssl_mode(), SslMode::Prefer);
        assert_eq!(plain.root_cert(), None);
    }

    #[test]
    fn the_environment_fills_what_the_string_leaves_out() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("require".to_owned()),
            "PGSSLROOTCERT" => Some("/env/ca.crt".to_owned()),
            _ => None,
        };
        let dsn = PgDsn::parse_with_env("host=db-1", env).expect("parses");
        assert_eq!(dsn.ssl_mode(), SslMode::Require);
        assert_eq!(dsn.root_cert(), Some(Path::new("/env/ca.crt")));
        let dsn = PgDsn::parse_with_env("host=db-1 sslmode=disable", env).expect("parses");
        assert_eq!(dsn.ssl_mode(), SslMode::Disable, "the string wins");
        let system = parse("host=db-1 sslrootcert=system").expect("parses");
        assert_eq!(system.ssl_mode(), SslMode::VerifyFull);
    }

    #[test]
    fn settings_that_cannot_work_say_what_to_do() {
        let message = |dsn: &str| parse(dsn).expect_err(dsn).to_string();
        assert!(message("host=db-1 sslmode=verify").contains("verify-full"));
        assert!(message("host=db-1 sslmode=allow").contains("prefer"));
        assert!(message("host=db-1 sslrootcert=system sslmode=require").contains("verify-full"));
        assert!(message("host=db-1 sslcert=/c.crt").contains("sslkey"));
        assert!(message("host=db-1 sslpassword=x").contains("unencrypted"));
        assert!(message("host=db-1 sslcrl=/x").contains("does not support"));
        assert!(message("host=db-1 port=x").contains("port"));
        assert!(message("host=db-1 sslrootcert='/x").contains("closing quote"));

        let no_ca = parse("host=db-1 sslmode=verify-full").expect("parses");
        let error = no_ca.tls().expect_err("no CA").to_string();
        assert!(error.contains("sslrootcert"), "{error}");
        let missing = parse("host=db-1 sslmode=verify-full sslrootcert=/no/such/ca.crt")
            .expect("parses")
            .tls()
            .expect_err("unreadable")
            .to_string();
        assert!(
            missing.contains("/no/such/ca.crt") && missing.contains("cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn unix_sockets_never_use_tls() {
        let dsn = parse("host=/var/run/postgresql sslmode=require").expect("parses");
        assert_eq!(
            dsn.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        // A minimal Certificate: SEQUENCE { SEQUENCE {} (tbs), SEQUENCE { OID } , BIT STRING }.
        let certificate = |oid: &[u8]| {
            let mut algorithm = vec![0x06, oid.len() as u8];
            algorithm.extend_from_slice(oid);
            let mut body = vec![0x30, 0x00, 0x30, algorithm.len() as u8];
            body.extend(algorithm);
            body.extend([0x03, 0x01, 0x00]);
            let mut der = vec![0x30, body.len() as u8];
            der.extend(body);
            der
        };
        let sha256_rsa = certificate(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]);
        assert_eq!(
            tls_server_end_point(&sha256_rsa),
            Some(sha2::Sha256::digest(&sha256_rsa).to_vec())
        );
        let sha384_ecdsa = certificate(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
        assert_eq!(
            tls_server_end_point(&sha384_ecdsa).map(|hash| hash.len()),
            Some(48)
        );
        let ed25519 = certificate(&[0x2b, 0x65, 0x70]);
        assert_eq!(tls_server_end_point(&ed25519), None);
        assert_eq!(tls_server_end_point(&[0x30, 0x05]), None, "truncated");
    }
}
