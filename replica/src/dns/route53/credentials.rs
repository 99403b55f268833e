//! `concoord route53id KEY` / `concoord route53key SECRET`: AWS credentials kept in a file
//! only the user can read (0600), in the user's config directory
//! (`$CONCOORD_CONFIG_DIR`, else `$XDG_CONFIG_HOME/concoord`, else `~/.config/concoord`).
//!
//! The file holds `aws_access_key_id = ...` and `aws_secret_access_key = ...` lines, like
//! `~/.aws/credentials`, so it can be read and fixed by hand.

use crate::config_dir::{self, ConfigDirError};
use std::fs;
use std::path::{Path, PathBuf};

/// The file's name in a config directory.
pub const FILE: &str = "route53";
const KEY_ID: &str = "aws_access_key_id";
const SECRET: &str = "aws_secret_access_key";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{0}")]
    ConfigDir(#[from] ConfigDirError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is empty")]
    Empty(&'static str),
}

/// The stored key pair; either half may be missing until both commands have run.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub key_id: Option<String>,
    pub secret: Option<String>,
}

impl std::fmt::Debug for Stored {
    // The secret never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("key_id", &self.key_id)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The credentials file's path.
pub fn path() -> Result<PathBuf, CredentialsError> {
    Ok(config_dir::dir()?.join(FILE))
}

/// Reads the stored credentials (none stored: both halves missing).
pub fn load(path: &Path) -> Result<Stored, CredentialsError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::default()),
        Err(source) => {
            return Err(CredentialsError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut stored = Stored::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            KEY_ID if !v.is_empty() => stored.key_id = Some(v),
            SECRET if !v.is_empty() => stored.secret = Some(v),
            _ => {}
        }
    }
    Ok(stored)
}

/// Stores the key id (`route53id`), keeping the secret.
pub fn store_key_id(path: &Path, key_id: &str) -> Result<(), CredentialsError> {
    let key_id = key_id.trim();
    if key_id.is_empty() {
        return Err(CredentialsError::Empty("the access key id"));
    }
    let mut stored = load(path)?;
    stored.key_id = Some(key_id.to_string());
    save(path, &stored)
}

/// Stores the secret (`route53key`), keeping the key id.
pub fn store_secret(path: &Path, secret: &str) -> Result<(), CredentialsError> {
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(CredentialsError::Empty("the secret access key"));
    }
    let mut stored = load(path)?;
    stored.secret = Some(secret.to_string());
    save(path, &stored)
}

/// The file's text for `stored`; `concoord remote route53` writes the same text on a host.
pub fn render(stored: &Stored) -> String {
    let mut text = String::from("# concoord route53id / route53key\n[default]\n");
    if let Some(k) = &stored.key_id {
        text.push_str(&format!("{KEY_ID} = {k}\n"));
    }
    if let Some(s) = &stored.secret {
        text.push_str(&format!("{SECRET} = {s}\n"));
    }
    text
}

/// Writes the file privately (0600) and atomically.
fn save(path: &Path, stored: &Stored) -> Result<(), CredentialsError> {
    Ok(config_dir::write_private(path, render(stored).as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn both_halves_are_kept_in_a_private_file() {
        let dir = std::env::temp_dir().join(format!("concoord-cred-{}", std::process::id()));
        let path = dir.join(FILE);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(load(&path).unwrap(), Stored::default());
        store_key_id(&path, "AKIDEXAMPLE").unwrap();
        store_secret(&path, " s3cr3t ").unwrap();
        store_key_id(&path, "AKIDOTHER").unwrap();
        let got = load(&path).unwrap();
        assert_eq!(got.key_id.as_deref(), Some("AKIDOTHER"));
        assert_eq!(got.secret.as_deref(), Some("s3cr3t"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!format!("{got:?}").contains("s3cr3t"));
        assert!(store_secret(&path, "  ").is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
