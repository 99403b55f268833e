//! `concoord certs init|issue`: a small CA for TLS between replicas and clients, for hosts
//! outside Kubernetes (where the operator makes them): EC2, remote hosts, a laptop.
//!
//! A replica's certificate serves it both as a server and as the client of its peers; a
//! user's (`--client`) only proves a name. Keys are written readable by their owner only.

use crate::cli::{CertsAction, CertsArgs, CliError};
use crate::pki;
pub use crate::pki::CertKind;
use std::path::{Path, PathBuf};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

pub fn run(a: &CertsArgs) -> Result<(), CliError> {
    match &a.action {
        CertsAction::Init { dir, name, days } => {
            let (cert, key) = init(dir, name, *days)?;
            println!(
                "CA: {} (share it) and {} (keep it private)",
                cert.display(),
                key.display()
            );
        }
        CertsAction::Issue {
            dir,
            name,
            hosts,
            days,
            client,
        } => {
            let kind = if *client {
                CertKind::Client
            } else if hosts.is_empty() {
                return Err(CliError::Usage(
                    "a replica's certificate names its addresses: give --host (or --client for a user's certificate)".into(),
                ));
            } else {
                CertKind::Replica
            };
            let (cert, key) = issue(dir, name, hosts, *days, kind)?;
            println!("certificate: {} key: {}", cert.display(), key.display());
        }
    }
    Ok(())
}

fn failed(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("{what}: {e}"))
}

/// Writes `contents` to a new file (never over an existing one), private when `secret`.
fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| failed(&format!("cannot create {}", path.display()), e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| failed(&format!("cannot write {}", path.display()), e))
}

/// Creates DIR/ca.crt and DIR/ca.key.
pub fn init(dir: &Path, name: &str, days: u32) -> Result<(PathBuf, PathBuf), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| failed(&format!("cannot create {}", dir.display()), e))?;
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(CliError::Failed(format!(
                "{} exists already: a new CA would orphan every certificate it signed",
                p.display()
            )));
        }
    }
    let ca = pki::new_ca(name, days).map_err(|e| failed("CA", e))?;
    write_new(&key_path, &ca.key, true)?;
    write_new(&cert_path, &ca.cert, false)?;
    Ok((cert_path, key_path))
}

/// Creates DIR/NAME.crt and DIR/NAME.key, signed by DIR's CA, for `hosts`.
pub fn issue(
    dir: &Path,
    name: &str,
    hosts: &[String],
    days: u32,
    kind: CertKind,
) -> Result<(PathBuf, PathBuf), CliError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(CliError::Usage(format!(
            "'{name}' cannot name a file: use letters, digits, '-' and '_'"
        )));
    }
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| {
            failed(
                &format!(
                    "cannot read {} (run `concoord certs init {}` first)",
                    p.display(),
                    dir.display()
                ),
                e,
            )
        })
    };
    let ca = pki::Pem {
        cert: read(dir.join(CA_CERT))?,
        key: read(dir.join(CA_KEY))?,
    };
    let issued = pki::issue(&ca, name, hosts, days, kind).map_err(|e| failed("certificate", e))?;
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    write_new(&key_path, &issued.key, true)?;
    write_new(&cert_path, &issued.cert, false)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::secure::{ClientTls, PeerCertificate, ReplicaTls, TlsFiles};

    #[test]
    fn a_ca_and_its_certificates_load_as_tls_configurations() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "test CA", 30).unwrap();
        let e = init(dir.path(), "test CA", 30).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        let (cert, key) = issue(
            dir.path(),
            "replica-1",
            &["127.0.0.1".into()],
            30,
            CertKind::Replica,
        )
        .unwrap();
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&dir.path().join(CA_KEY)), 0o600);
        ReplicaTls::load(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: dir.path().join(CA_CERT),
            server_name: None,
        })
        .unwrap();
        let (alice, alice_key) = issue(dir.path(), "alice", &[], 30, CertKind::Client).unwrap();
        ClientTls::load(&dir.path().join(CA_CERT), Some(&alice), Some(&alice_key)).unwrap();
        assert!(issue(dir.path(), "../escape", &[], 30, CertKind::Client).is_err());
        let empty = tempfile::tempdir().unwrap();
        let e = issue(empty.path(), "x", &[], 30, CertKind::Client).unwrap_err();
        assert!(e.to_string().contains("certs init"), "{e}");
        // What the listener reads from each: the user's name, and who may link as a replica.
        let der = |p: &Path| {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            CertificateDer::from_pem_file(p).unwrap().to_vec()
        };
        let replica = PeerCertificate::from_der(&der(&cert));
        assert_eq!(replica.name.as_deref(), Some("replica-1"));
        assert!(replica.replica);
        let user = PeerCertificate::from_der(&der(&alice));
        assert_eq!(user.name.as_deref(), Some("alice"));
        assert!(
            !user.replica,
            "a client certificate cannot link as a replica"
        );
    }
}
