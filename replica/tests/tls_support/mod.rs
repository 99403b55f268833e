//! TLS for test servers: a CA of the test's own and a certificate it signs for 127.0.0.1
//! and localhost, with a rustls server config on aws-lc-rs (the process's one provider; no
//! ring). Used by replica/tests/tls_client.rs and, by path, the operator's fake API server.

use std::sync::Arc;

/// A server's TLS setup and the PEM of the CA that signed it (for clients to trust).
pub struct TestTls {
    pub ca_pem: String,
    pub config: rustls::ServerConfig,
}

/// A fresh CA named `ca_name` and a server certificate for 127.0.0.1 and localhost.
pub fn test_tls(ca_name: &str) -> TestTls {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap_or_else(|e| panic!("CA parameters: {e}"));
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
    let ca = ca_params
        .self_signed(&ca_key)
        .unwrap_or_else(|e| panic!("CA certificate: {e}"));
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap_or_else(|e| panic!("server parameters: {e}"));
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("server key: {e}"));
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params
        .signed_by(&key, &issuer)
        .unwrap_or_else(|e| panic!("server certificate: {e}"));
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .unwrap_or_else(|e| panic!("server key DER: {e}"));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|e| panic!("TLS versions: {e}"))
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone(), ca.der().clone()], der)
    .unwrap_or_else(|e| panic!("TLS server config: {e}"));
    TestTls {
        ca_pem: ca.pem(),
        config,
    }
}
