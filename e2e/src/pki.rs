//! The cluster's TLS certificates and auth file, made by the image's own `concoord certs`
//! in a host folder that every container of the cluster mounts read-only at /pki: the
//! replicas serve TLS and check identities with them, and every client shows the CA and an
//! admin token.

use crate::E2eError;
use std::path::PathBuf;

/// Where the containers see the folder.
pub const MOUNT: &str = "/pki";

/// A CA, one replica certificate for every replica name, and an auth file with one admin
/// token; the folder is removed on drop.
pub struct Pki {
    pub dir: PathBuf,
    pub token: String,
}

impl Pki {
    /// Makes them for replicas named `hosts`, with `image`'s `concoord certs`.
    pub fn make(prefix: &str, image: &str, hosts: &[String]) -> Result<Pki, E2eError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("{prefix}-pki"));
        let io = |source| E2eError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // The image's user writes here; the keys it writes are its own (0600).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        let pki = Pki {
            dir: dir.clone(),
            token: random_token(),
        };
        let mount = format!("{}:{MOUNT}", dir.display());
        let certs = |args: &[&str]| {
            let mut run = vec!["run", "--rm", "-v", mount.as_str(), image, "certs"];
            run.extend_from_slice(args);
            crate::docker::docker(&run)
        };
        certs(&["init", MOUNT])?;
        let mut issue = vec!["issue", MOUNT, "replica"];
        for host in hosts {
            issue.extend(["--host", host.as_str()]);
        }
        certs(&issue)?;
        let auth = dir.join("auth");
        std::fs::write(&auth, format!("token e2e admin {}\n", pki.token)).map_err(|source| {
            E2eError::Io {
                path: auth.display().to_string(),
                source,
            }
        })?;
        Ok(pki)
    }

    /// `docker run` arguments for a client container: the folder, the CA and the token.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "-v".into(),
            format!("{}:{MOUNT}:ro", self.dir.display()),
            "-e".into(),
            format!("CONCOORD_CA={MOUNT}/ca.crt"),
            "-e".into(),
            format!("CONCOORD_TOKEN={}", self.token),
        ]
    }

    /// `docker run` arguments for a replica container: the folder.
    pub fn replica_mount(&self) -> Vec<String> {
        vec!["-v".into(), format!("{}:{MOUNT}:ro", self.dir.display())]
    }

    /// The replica's flags: TLS with the replica certificate, identities from the auth file.
    pub fn replica_flags() -> Vec<String> {
        [
            "--tls-cert",
            "/pki/replica.crt",
            "--tls-key",
            "/pki/replica.key",
            "--tls-ca",
            "/pki/ca.crt",
            "--auth-file",
            "/pki/auth",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 128 random bits in hex, from the standard library's randomly seeded hasher.
fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}
