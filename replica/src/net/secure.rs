//! TLS on the replica's one port (issue 14): TLS 1.3 through rustls, certificates from
//! PEM files.
//!
//! A replica with `--tls-cert/--tls-key/--tls-ca` serves TLS to clients and peers alike and
//! dials its peers over TLS with the same certificate, so peers authenticate each other
//! against the group's CA (mutual TLS); clients verify the replica against that CA and may
//! present a certificate of their own. Files are re-read on request (SIGHUP, or a change of
//! their content, as when Kubernetes updates a Secret): new connections use the new
//! certificates, open ones carry on.
//!
//! Either side may be misconfigured. A TLS handshake starts with the byte 0x16 and a frame
//! of ours with a length prefix far below 0x16000000, so the listener tells the two apart
//! from the first byte and answers a client that speaks the wrong one with a clear reason
//! instead of a hang.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A connection, plaintext or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}
pub type Stream = Box<dyn Io>;

/// The read and write sides of a connection, whichever it is.
pub type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;
pub type WriteHalf = Box<dyn AsyncWrite + Unpin + Send>;

/// Splits a TLS connection (its two sides share the session through a lock).
pub fn halves(stream: Stream) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (Box::new(r), Box::new(w))
}

/// Splits a plaintext connection (no lock: the socket has two sides of its own).
pub fn tcp_halves(tcp: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = tcp.into_split();
    (Box::new(r), Box::new(w))
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Incomplete(String),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("the certificates do not fit together: {0}")]
    Config(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

/// Where a replica's certificate, its key and the group's CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// `--tls-server-name`: the name the peers' certificates carry, checked instead of the
    /// address a peer is dialled at (a certificate shared by replicas whose addresses are
    /// not known when it is made, as on EC2).
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// The three flags turn TLS on together: none of them means plaintext, some of them is
    /// a mistake that names what is missing.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, TlsError> {
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles {
                cert,
                key,
                ca,
                server_name: None,
            })),
            (cert, key, ca) => {
                let missing: Vec<&str> = [
                    (cert.is_none(), "--tls-cert"),
                    (key.is_none(), "--tls-key"),
                    (ca.is_none(), "--tls-ca"),
                ]
                .iter()
                .filter(|(absent, _)| *absent)
                .map(|(_, flag)| *flag)
                .collect();
                Err(TlsError::Incomplete(format!(
                    "TLS needs --tls-cert, --tls-key and --tls-ca together; missing: {}",
                    missing.join(", ")
                )))
            }
        }
    }

    /// The files' content, to notice a change (a rotated Secret) cheaply.
    fn fingerprint(&self) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        for path in [&self.cert, &self.key, &self.ca] {
            all.extend(std::fs::read(path).ok()?);
        }
        use sha2::Digest;
        Some(sha2::Sha256::digest(&all).to_vec())
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn roots(ca: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
    }
    Ok(Arc::new(roots))
}

fn config_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The crypto provider, named outright: which one rustls would pick by itself depends on
/// the features the whole dependency graph enables (see `crate::tls`).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, TlsError> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)
}

fn client_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, TlsError> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)
}

/// The host part of `host:port` (an IP or a DNS name), as a TLS server name.
fn server_name(addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Config(format!("'{host}' is not a host name for TLS: {e}")))
}

/// The configurations built from one reading of the files.
struct Loaded {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    fingerprint: Option<Vec<u8>>,
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Loaded, TlsError> {
        let fingerprint = files.fingerprint();
        let certs = certificates(&files.cert)?;
        let key = private_key(&files.key)?;
        let roots = roots(&files.ca)?;
        // Clients may come without a certificate (a token identifies them); one that shows
        // a certificate must show one from the CA. Peers must show one (see `accept`).
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(config_error)?;
        let server = server_builder()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(config_error)?;
        let client = client_builder()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(config_error)?;
        Ok(Loaded {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            fingerprint,
        })
    }
}

/// A replica's TLS: the server side of its port and the client side of its links to
/// peers and of a join, re-readable while the replica runs.
pub struct ReplicaTls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for ReplicaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaTls")
            .field("files", &self.files)
            .finish()
    }
}

/// What the listener learned from a TLS handshake.
pub struct Accepted {
    pub stream: Stream,
    /// The certificate the other side showed (the group's CA signed it), if any.
    pub certificate: Option<PeerCertificate>,
}

/// What a verified client certificate says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Its subject's common name: the user, for the auth file.
    pub name: Option<String>,
    /// It may serve (extended key usage serverAuth): a replica's certificate, as
    /// `concoord certs issue --host` makes. Only these may link as peers or join; a
    /// client's certificate (`--client`) may not.
    pub replica: bool,
}

impl PeerCertificate {
    /// Reads the name and usage from the certificate's DER; one that does not parse (rustls
    /// accepted it, so this should not happen) names nobody and cannot link.
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return PeerCertificate {
                name: None,
                replica: false,
            };
        };
        let name = crate::pki::common_name(&cert);
        let replica = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.server_auth);
        PeerCertificate { name, replica }
    }
}

impl ReplicaTls {
    /// Reads the files; an unreadable or mismatched file is an error naming it.
    pub fn load(files: TlsFiles) -> Result<Arc<ReplicaTls>, TlsError> {
        let loaded = Loaded::read(&files)?;
        Ok(Arc::new(ReplicaTls {
            files,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn loaded(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again if their content changed (or `force`). `Ok(true)` when new
    /// certificates are in use; on an error the ones in use stay.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = self.files.fingerprint();
        if !force && now.is_some() && now == self.loaded().fingerprint {
            return Ok(false);
        }
        let fresh = Arc::new(Loaded::read(&self.files)?);
        match self.current.write() {
            Ok(mut l) => *l = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(true)
    }

    /// The server side of a handshake on an accepted connection.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Accepted, TlsError> {
        let acceptor = self.loaded().acceptor.clone();
        let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| TlsError::Handshake("no handshake in time".into()))?
            .map_err(|e| TlsError::Handshake(e.to_string()))?;
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|end_entity| PeerCertificate::from_der(end_entity.as_ref()));
        Ok(Accepted {
            stream: Box::new(tls),
            certificate,
        })
    }

    /// The client side of this replica's TLS, as in use now: the group's CA and this
    /// replica's certificate, for its links to peers, a join, and its own client calls.
    pub fn client(&self) -> ClientTls {
        ClientTls {
            connector: self.loaded().connector.clone(),
            ca: self.files.ca.display().to_string(),
            server_name: self.files.server_name.clone(),
        }
    }
}

/// A client's TLS: verifies replicas against the CA and, when given one, shows a client
/// certificate.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    /// Where the CA came from, for debugging output.
    ca: String,
    /// Checked instead of the dialled host, when set (`--tls-server-name`).
    server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("ca", &self.ca).finish()
    }
}

impl ClientTls {
    /// `--ca` alone verifies the replicas; `--cert` and `--key` (together) add a client
    /// certificate.
    pub fn load(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<ClientTls, TlsError> {
        let builder = client_builder()?.with_root_certificates(roots(ca)?);
        let config = match (cert, key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certificates(cert)?, private_key(key)?)
                .map_err(config_error)?,
            (Some(_), None) => {
                return Err(TlsError::Incomplete(
                    "--cert needs --key (the certificate's private key)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete(
                    "--key needs --cert (the client certificate)".into(),
                ));
            }
        };
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            ca: ca.display().to_string(),
            server_name: None,
        })
    }

    /// The same from PEM text held in memory (the operator's, read from Secrets): the CA,
    /// and a client certificate with its key.
    pub fn from_pem(ca: &str, identity: Option<(&str, &str)>) -> Result<ClientTls, TlsError> {
        let pem_error =
            |what: &str, e: rustls::pki_types::pem::Error| TlsError::Config(format!("{what}: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots
                .add(cert.map_err(|e| pem_error("CA", e))?)
                .map_err(config_error)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Config("the CA holds no certificate".into()));
        }
        let builder = client_builder()?.with_root_certificates(Arc::new(roots));
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error("certificate", e))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| pem_error("key", e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(config_error)?
            }
        };
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            ca: "(in memory)".into(),
            server_name: None,
        })
    }

    /// Checks every replica's certificate for `name` instead of the host it is dialled at.
    pub fn with_server_name(mut self, name: Option<String>) -> ClientTls {
        self.server_name = name.filter(|n| !n.is_empty());
        self
    }

    /// Checks for `name` unless a name was given already (`--tls-server-name` wins over the
    /// name SRV discovery published an address under).
    pub fn or_server_name(mut self, name: &str) -> ClientTls {
        if self.server_name.is_none() && !name.is_empty() {
            self.server_name = Some(name.to_string());
        }
        self
    }

    /// The client side of a handshake with the replica at `addr`.
    pub async fn connect(&self, tcp: TcpStream, addr: &str) -> Result<Stream, TlsError> {
        let name = match &self.server_name {
            Some(name) => ServerName::try_from(name.clone()).map_err(|e| {
                TlsError::Config(format!("'{name}' is not a host name for TLS: {e}"))
            })?,
            None => server_name(addr)?,
        };
        let connecting = self.connector.connect(name, tcp);
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connecting).await {
            Err(_) => Err(TlsError::Handshake(format!(
                "{addr} did not finish the TLS handshake in {TLS_HANDSHAKE_TIMEOUT:?}"
            ))),
            Ok(Ok(tls)) => Ok(Box::new(tls)),
            // A plaintext replica hangs up on the first TLS byte it reads.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                Err(TlsError::Handshake(format!(
                    "{addr} closed the connection during the TLS handshake: it does not serve TLS (connect without --ca) or refused our certificate"
                )))
            }
            Ok(Err(e)) => Err(TlsError::Handshake(format!("{addr}: {e}"))),
        }
    }
}

/// The two sides of a connection dialled to `addr`: over TLS when `tls` is given (the
/// handshake done), else the plain socket's.
pub async fn dial(
    tcp: TcpStream,
    addr: &str,
    tls: Option<&ClientTls>,
) -> Result<(ReadHalf, WriteHalf), TlsError> {
    match tls {
        None => Ok(tcp_halves(tcp)),
        Some(tls) => Ok(halves(tls.connect(tcp, addr).await?)),
    }
}

/// Whether the first byte the other side sent opens a TLS handshake (waits for it); `None`
/// when it hung up without sending anything (a port check, say).
pub async fn speaks_tls(tcp: &TcpStream) -> std::io::Result<Option<bool>> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    Ok((n == 1).then_some(first[0] == TLS_HANDSHAKE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_flags_go_together() {
        assert_eq!(TlsFiles::from_flags(None, None, None).unwrap(), None);
        let p = |s: &str| Some(PathBuf::from(s));
        assert!(
            TlsFiles::from_flags(p("c"), p("k"), p("a"))
                .unwrap()
                .is_some()
        );
        let e = TlsFiles::from_flags(p("c"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "TLS needs --tls-cert, --tls-key and --tls-ca together; missing: --tls-key, --tls-ca"
        );
    }

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(
            server_name("127.0.0.1:14000").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("demo-0.demo.default.svc:14000").unwrap(),
            ServerName::try_from("demo-0.demo.default.svc").unwrap()
        );
        assert_eq!(
            server_name("[::1]:14000").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
    }

    #[test]
    fn unreadable_files_are_named() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            ca: "/nonexistent/ca.pem".into(),
            server_name: None,
        };
        let e = ReplicaTls::load(files).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }
}
