//! `remote.toml` in the config directory: the SSH key, user name, install directory and
//! hosts that `concoord remote` manages. TOML so it can be read and fixed by hand; written
//! atomically with mode 0600 like the Route53 credentials.

use crate::config_dir::{self, ConfigDirError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The configuration file's name in the config directory.
pub const FILE: &str = "remote.toml";
/// The known_hosts file concoord keeps for its own SSH connections, beside the config file.
pub const KNOWN_HOSTS: &str = "known_hosts";
/// Where binaries, logs and PID files go on a host when `install_dir` is not set: relative
/// paths are relative to the SSH user's home directory.
pub const DEFAULT_INSTALL_DIR: &str = ".concoord";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    ConfigDir(#[from] ConfigDirError),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid concoord remote configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write the configuration: {0}")]
    Serialize(String),
}

/// What `remote.toml` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// Private key for `ssh -i` (`addsshkey`); none: ssh's default keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
    /// Login name for `ssh -l` (`addusername`); none: the local user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Directory on the hosts for the binary, logs, PID files and config (`installdir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_dir: Option<String>,
    /// Extra `ssh -o` options, e.g. `ProxyJump=bastion` (edit the file to set them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_options: Vec<String>,
    /// The hosts (`addnode`).
    #[serde(default, rename = "node", skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Node>,
}

/// One managed host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `host` or `host:port` (`[v6]:port`).
    pub host: String,
    /// Docker image loaded by `setup --image`; replicas then run as containers of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `setup --pki` sent it a certificate: its replicas serve TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// `setup --auth-file` sent it an auth file: its replicas check identities.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth: bool,
}

impl RemoteConfig {
    pub fn install_dir(&self) -> &str {
        self.install_dir.as_deref().unwrap_or(DEFAULT_INSTALL_DIR)
    }

    pub fn node(&self, host: &HostSpec) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| HostSpec::parse(&n.host).is_ok_and(|h| h == *host))
    }

    /// Adds `host`, or keeps the entry it already has.
    pub fn add_node(&mut self, host: &HostSpec) -> &mut Node {
        let i = match self
            .nodes
            .iter()
            .position(|n| HostSpec::parse(&n.host).is_ok_and(|h| h == *host))
        {
            Some(i) => i,
            None => {
                self.nodes.push(Node {
                    host: host.to_string(),
                    image: None,
                    tls: false,
                    auth: false,
                });
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }
}

/// The configuration file's path.
pub fn path() -> Result<PathBuf, ConfigError> {
    Ok(config_dir::dir()?.join(FILE))
}

/// The known_hosts file's path.
pub fn known_hosts_path() -> Result<PathBuf, ConfigError> {
    Ok(config_dir::dir()?.join(KNOWN_HOSTS))
}

/// Reads the configuration; a missing file is an empty configuration.
pub fn load(path: &Path) -> Result<RemoteConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RemoteConfig::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

/// Writes the configuration privately (0600) and atomically.
pub fn save(path: &Path, config: &RemoteConfig) -> Result<(), ConfigError> {
    let body = toml::to_string(config).map_err(|e| ConfigError::Serialize(e.to_string()))?;
    let text =
        format!("# concoord remote: hosts managed over SSH (see `concoord remote --help`)\n{body}");
    Ok(config_dir::write_private(path, text.as_bytes())?)
}

/// A host as given on the command line: `name`, `name:port`, `[v6]` or `[v6]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    pub port: Option<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("{0:?}: empty host name")]
    Empty(String),
    #[error("{0:?}: give the user name with `concoord remote addusername`, not in the host")]
    UserInHost(String),
    #[error("{0:?}: the SSH port must be a number from 1 to 65535")]
    BadPort(String),
    #[error("{0:?}: not a host name or address (no spaces, quotes or leading dash)")]
    BadName(String),
}

impl HostSpec {
    pub fn parse(s: &str) -> Result<HostSpec, HostError> {
        let s = s.trim();
        if s.contains('@') {
            return Err(HostError::UserInHost(s.into()));
        }
        let (name, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| HostError::BadName(s.into()))?;
            match after {
                "" => (v6, None),
                _ => (
                    v6,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| HostError::BadName(s.into()))?,
                    ),
                ),
            }
        } else {
            match s.split_once(':') {
                // More than one colon without brackets: a bare IPv6 address.
                Some((_, p)) if p.contains(':') => (s, None),
                Some((n, p)) => (n, Some(p)),
                None => (s, None),
            }
        };
        if name.is_empty() {
            return Err(HostError::Empty(s.into()));
        }
        // Nothing ssh could read as an option or that a shell would split.
        if name.starts_with('-')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'))
        {
            return Err(HostError::BadName(s.into()));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(HostError::BadPort(s.into())),
            },
        };
        Ok(HostSpec {
            name: name.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = self.name.contains(':');
        match (self.port, v6) {
            (None, _) => write!(f, "{}", self.name),
            (Some(p), true) => write!(f, "[{}]:{p}", self.name),
            (Some(p), false) => write!(f, "{}:{p}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn host_forms() {
        let h = |s| HostSpec::parse(s);
        assert_eq!(
            h("Node1.example.com").unwrap(),
            HostSpec {
                name: "node1.example.com".into(),
                port: None
            }
        );
        assert_eq!(h("127.0.0.1:2222").unwrap().port, Some(2222));
        assert_eq!(h("127.0.0.1:2222").unwrap().to_string(), "127.0.0.1:2222");
        let v6 = h("[::1]:22").unwrap();
        assert_eq!((v6.name.as_str(), v6.port), ("::1", Some(22)));
        assert_eq!(v6.to_string(), "[::1]:22");
        assert_eq!(h("::1").unwrap().port, None);
        assert_eq!(h("[::1]").unwrap().name, "::1");
        assert!(matches!(h("ec2-user@host"), Err(HostError::UserInHost(_))));
        assert!(matches!(h("host:0"), Err(HostError::BadPort(_))));
        assert!(matches!(h("host:ssh"), Err(HostError::BadPort(_))));
        assert!(matches!(h(""), Err(HostError::Empty(_))));
        assert!(matches!(h("-oProxyCommand=x"), Err(HostError::BadName(_))));
        assert!(matches!(h("a b"), Err(HostError::BadName(_))));
        assert!(matches!(h("a'b"), Err(HostError::BadName(_))));
    }

    #[test]
    fn config_round_trips_through_a_private_toml_file() {
        let dir = std::env::temp_dir().join(format!("concoord-remote-cfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(FILE);
        assert_eq!(load(&path).unwrap(), RemoteConfig::default());
        let mut cfg = RemoteConfig {
            ssh_key: Some("/keys/my key.pem".into()),
            username: Some("ec2-user".into()),
            install_dir: Some("/opt/concoord".into()),
            ssh_options: vec!["ProxyJump=bastion".into()],
            nodes: vec![],
        };
        let host = HostSpec::parse("10.0.0.5:2222").unwrap();
        cfg.add_node(&host);
        cfg.add_node(&HostSpec::parse("10.0.0.5:2222").unwrap())
            .image = Some("cc:1".into());
        assert_eq!(cfg.nodes.len(), 1);
        save(&path, &cfg).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[[node]]"), "{text}");
        assert!(text.contains("username = \"ec2-user\""), "{text}");
        assert_eq!(load(&path).unwrap(), cfg);
        assert_eq!(
            load(&path).unwrap().node(&host).unwrap().image.as_deref(),
            Some("cc:1")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(RemoteConfig::default().install_dir(), DEFAULT_INSTALL_DIR);

        std::fs::write(&path, "usrename = \"x\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("usrename"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
