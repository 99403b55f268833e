//! Making certificates in memory: a CA, and replica and client certificates it signs, as
//! PEM text. `concoord certs` writes them to files; the operator keeps them in Secrets;
//! `concoord ec2 launch` sends them in user data.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// A replica's: it serves clients and links to peers (server and client usage).
    Replica,
    /// A user's: it proves its common name to replicas, and can neither serve nor link as a
    /// replica (client usage only).
    Client,
}

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"<private>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct PkiError {
    what: String,
    reason: String,
}

fn failed(what: &str, e: impl std::fmt::Display) -> PkiError {
    PkiError {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that run behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// The CA `concoord certs init DIR` made: DIR/ca.crt and DIR/ca.key. The error names the
/// file and how to make one.
pub fn load_ca(dir: &std::path::Path) -> Result<Pem, String> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| {
            format!(
                "cannot read {}: {e} (make the CA with `concoord certs init {}`)",
                dir.join(name).display(),
                dir.display()
            )
        })
    };
    Ok(Pem {
        cert: read("ca.crt")?,
        key: read("ca.key")?,
    })
}

/// A new CA named `name`, valid for `days`.
pub fn new_ca(name: &str, days: u32) -> Result<Pem, PkiError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| failed("CA parameters", e))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name.push(DnType::CommonName, name);
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| failed("CA certificate", e))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate named `name` for `hosts` (IPs or DNS names, `*.` wildcards allowed),
/// signed by `ca`, valid for `days`.
pub fn issue(
    ca: &Pem,
    name: &str,
    hosts: &[String],
    days: u32,
    kind: CertKind,
) -> Result<Pem, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|e| failed("the CA key", e))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(|e| failed("the CA certificate", e))?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(|e| failed("host", e))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match kind {
        CertKind::Replica => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        CertKind::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(|e| failed("key", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| failed("certificate", e))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// What the first certificate of a PEM text says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Its subject's common name.
    pub name: Option<String>,
    /// The end of its validity, as Unix seconds.
    pub not_after: i64,
    /// The DNS names and IPs it is valid for.
    pub hosts: Vec<String>,
}

/// A certificate's subject common name (the user, for the auth file).
pub fn common_name(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

/// Reads a PEM certificate's name, expiry and hosts; None when it does not parse.
pub fn inspect(pem: &str) -> Option<CertInfo> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let name = common_name(&cert);
    let mut hosts = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            match general {
                GeneralName::DNSName(d) => hosts.push(d.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => {
                        let b: [u8; 4] = bytes[..4].try_into().ok()?;
                        hosts.push(std::net::Ipv4Addr::from(b).to_string());
                    }
                    16 => {
                        let b: [u8; 16] = bytes[..16].try_into().ok()?;
                        hosts.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(CertInfo {
        name,
        not_after: cert.validity().not_after.timestamp(),
        hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_signs_certificates_that_say_what_they_are() {
        let ca = new_ca("test CA", 30).unwrap();
        let replica = issue(
            &ca,
            "replica",
            &["*.peers.ns.svc.cluster.local".into(), "10.0.0.7".into()],
            10,
            CertKind::Replica,
        )
        .unwrap();
        let info = inspect(&replica.cert).unwrap();
        assert_eq!(info.name.as_deref(), Some("replica"));
        assert_eq!(info.hosts, ["*.peers.ns.svc.cluster.local", "10.0.0.7"]);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let days = (info.not_after - now) / 86_400;
        assert!((9..=10).contains(&days), "{days} days");
        assert!(!format!("{replica:?}").contains("PRIVATE KEY"));
        // Both verify as TLS configurations.
        crate::net::secure::ClientTls::from_pem(&ca.cert, Some((&replica.cert, &replica.key)))
            .unwrap();
        assert!(inspect("not a certificate").is_none());
        let broken = Pem {
            cert: ca.cert.clone(),
            key: "not a key".into(),
        };
        assert!(issue(&broken, "x", &[], 1, CertKind::Client).is_err());
    }
}
