//! The process-wide TLS crypto provider.
//!
//! rustls picks its provider from its crate features only when exactly one of `ring` and
//! `aws-lc-rs` is built in; otherwise the first TLS connection panics. Which features end up
//! enabled is decided by the whole dependency graph (kube, the AWS SDK, hickory), so a binary
//! must not rely on it: both `concoord` and `concoord-operator` install aws-lc-rs themselves,
//! before any TLS client exists. aws-lc-rs because the AWS SDK's HTTPS client (Route53, EC2)
//! only builds with it, so one provider serves every connection the process makes.

/// Installs aws-lc-rs as the process's rustls crypto provider. Call once at the top of
/// `main`, before any TLS client is built. Installing again (tests calling it twice) is a
/// no-op.
pub fn install_crypto_provider() {
    // Err means a provider is already installed; the first one stays, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_provider_is_aws_lc_rs_and_installing_twice_is_harmless() {
        install_crypto_provider();
        install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default();
        let Some(provider) = provider else {
            panic!("no process-level crypto provider after install_crypto_provider");
        };
        let aws = rustls::crypto::aws_lc_rs::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(provider), names(&aws));
        // Building a client config is where the panic used to be; it must use that provider.
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        assert_eq!(names(config.crypto_provider()), names(&aws));
    }
}
