//! The user's concoord config directory (`$CONCOORD_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/concoord`, else `~/.config/concoord`) and private (0600) files in it,
//! shared by the Route53 credentials and the remote-hosts configuration.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that overrides the config directory.
pub const ENV: &str = "CONCOORD_CONFIG_DIR";

#[derive(Debug, thiserror::Error)]
pub enum ConfigDirError {
    #[error("no config directory: set HOME, XDG_CONFIG_HOME or {ENV}")]
    NoConfigDir,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The config directory; it may not exist yet.
pub fn dir() -> Result<PathBuf, ConfigDirError> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(ENV)
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| d.join("concoord")))
        .or_else(|| var("HOME").map(|h| h.join(".config").join("concoord")))
        .ok_or(ConfigDirError::NoConfigDir)
}

/// Writes `text` to `path` through a 0600 temporary file and a rename, so the file is never
/// readable by others, not even for a moment, and never half written. Creates the parent
/// directory (0700) when missing.
pub fn write_private(path: &Path, text: &[u8]) -> Result<(), ConfigDirError> {
    let io = |source| ConfigDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
        // Best effort: a directory shared on purpose keeps its mode.
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)
}
