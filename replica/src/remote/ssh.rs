//! The SSH transport: the system OpenSSH client (`ssh`) with every option spelled out, so a
//! run does not depend on the user's ~/.ssh/config, and a failure is reported as what went
//! wrong (unreachable, authentication refused, host key changed, key file missing).
//!
//! Host keys: `StrictHostKeyChecking=accept-new` into concoord's own known_hosts file. A host
//! seen for the first time is remembered; a host whose key changed is refused.

use super::config::HostSpec;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long ssh may take to open the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("ssh key file {}: {reason}", path.display())]
    NoSuchKeyFile { path: PathBuf, reason: String },
    #[error("ssh key file {}: ssh cannot use it: {reason}", path.display())]
    KeyUnusable { path: PathBuf, reason: String },
    #[error("{host}: unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error(
        "{host}: authentication refused for user {user} (is the key in the host's authorized_keys? check `concoord remote addsshkey` / `addusername`)"
    )]
    AuthRefused { host: String, user: String },
    #[error(
        "{host}: HOST KEY CHANGED: the key it offers differs from the one in {}; if the host was reinstalled, remove the old key with: ssh-keygen -f {} -R {}",
        known_hosts.display(), shell_word(&known_hosts.to_string_lossy()), shell_word(entry)
    )]
    HostKeyChanged {
        host: String,
        entry: String,
        known_hosts: PathBuf,
    },
    #[error("{host}: ssh failed: {message}")]
    Other { host: String, message: String },
    #[error("{host}: no answer within {limit:?} ({what})")]
    TimedOut {
        host: String,
        what: String,
        limit: Duration,
    },
    #[error(
        "cannot run ssh ({program}): {source}; install the OpenSSH client (Debian package: openssh-client)"
    )]
    NoClient {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(String),
    #[error("{0:?} cannot be passed to a remote shell (it holds a NUL byte)")]
    Unquotable(String),
}

/// What goes to the remote command's standard input.
pub enum Input {
    None,
    Bytes(Vec<u8>),
    /// A local file, streamed (e.g. the concoord binary).
    File(PathBuf),
    /// Another process's output (e.g. `docker save`).
    Pipe(Stdio),
}

/// A remote command that ran to its end (whatever its exit status).
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// How to reach the hosts.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub program: PathBuf,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub known_hosts: PathBuf,
    pub options: Vec<String>,
    pub connect_timeout: Duration,
}

impl Ssh {
    /// The transport for `key`/`user`; a configured key file must exist and be readable.
    pub fn new(
        key: Option<&Path>,
        user: Option<&str>,
        known_hosts: PathBuf,
        options: &[String],
    ) -> Result<Ssh, SshError> {
        if let Some(key) = key {
            check_key_file(key)?;
        }
        Ok(Ssh {
            program: PathBuf::from("ssh"),
            key: key.map(Path::to_path_buf),
            user: user.map(str::to_string),
            known_hosts,
            options: options.to_vec(),
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// The user ssh logs in as (for messages).
    pub fn user_name(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "(your local user name)".into())
    }

    /// The `ssh` arguments before the remote command.
    pub fn args(&self, host: &HostSpec) -> Vec<String> {
        let mut a: Vec<String> = vec!["-F".into(), "none".into()];
        let mut o = |opt: String| {
            a.push("-o".into());
            a.push(opt);
        };
        o("BatchMode=yes".into());
        o(format!(
            "ConnectTimeout={}",
            self.connect_timeout.as_secs().max(1)
        ));
        o("StrictHostKeyChecking=accept-new".into());
        // ssh splits this option's value at spaces unless it is double-quoted.
        o(format!(
            "UserKnownHostsFile=\"{}\"",
            self.known_hosts.display()
        ));
        o("GlobalKnownHostsFile=/dev/null".into());
        o("LogLevel=ERROR".into());
        o("ServerAliveInterval=15".into());
        o("ServerAliveCountMax=3".into());
        if self.key.is_some() {
            o("IdentitiesOnly=yes".into());
        }
        for extra in &self.options {
            o(extra.clone());
        }
        if let Some(key) = &self.key {
            a.push("-i".into());
            a.push(key.display().to_string());
        }
        if let Some(user) = &self.user {
            a.push("-l".into());
            a.push(user.clone());
        }
        if let Some(port) = host.port {
            a.push("-p".into());
            a.push(port.to_string());
        }
        a.push(host.name.clone());
        a
    }

    /// Runs `script` with `sh` on `host`, giving up after `limit`. A failure of ssh itself
    /// (exit 255) becomes an [`SshError`]; the script's own exit status is in [`Finished`].
    pub async fn run(
        &self,
        host: &HostSpec,
        script: &str,
        input: Input,
        limit: Duration,
        what: &str,
    ) -> Result<Finished, SshError> {
        // The login shell may not be a POSIX shell: hand the script to sh explicitly.
        let remote = format!("sh -c {}", quote(script)?);
        let mut cmd = Command::new(&self.program);
        cmd.args(self.args(host))
            .arg("--")
            .arg(remote)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut bytes = None;
        match input {
            Input::None => {
                cmd.stdin(Stdio::null());
            }
            Input::Bytes(b) => {
                cmd.stdin(Stdio::piped());
                bytes = Some(b);
            }
            Input::File(path) => {
                let file = std::fs::File::open(&path)
                    .map_err(|e| SshError::Io(format!("{}: {e}", path.display())))?;
                cmd.stdin(Stdio::from(file));
            }
            Input::Pipe(stdio) => {
                cmd.stdin(stdio);
            }
        }
        let mut child = cmd.spawn().map_err(|source| SshError::NoClient {
            program: self.program.display().to_string(),
            source,
        })?;
        let feed = child.stdin.take().zip(bytes).map(|(mut stdin, b)| {
            tokio::spawn(async move {
                // A remote side that exits early closes the pipe; its status says why.
                let _ = stdin.write_all(&b).await;
                let _ = stdin.shutdown().await;
            })
        });
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| SshError::TimedOut {
                host: host.to_string(),
                what: what.to_string(),
                limit,
            })?
            .map_err(|e| SshError::Io(format!("ssh {host}: {e}")))?;
        if let Some(feed) = feed {
            let _ = feed.await;
        }
        let finished = Finished {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if finished.code == Some(255) {
            return Err(self.classify(host, &finished.stderr));
        }
        Ok(finished)
    }

    /// Turns ssh's own error output into the reason a user can act on.
    pub fn classify(&self, host: &HostSpec, stderr: &str) -> SshError {
        let has = |s: &str| stderr.contains(s);
        let first_line = || {
            stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("ssh exited with status 255 and said nothing")
                .to_string()
        };
        let host_s = host.to_string();
        if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key verification failed") {
            let entry = match host.port {
                Some(p) if p != 22 => format!("[{}]:{p}", host.name),
                _ => host.name.clone(),
            };
            return SshError::HostKeyChanged {
                host: host_s,
                entry,
                known_hosts: self.known_hosts.clone(),
            };
        }
        if has("Permission denied") || has("Too many authentication failures") {
            return SshError::AuthRefused {
                host: host_s,
                user: self.user_name(),
            };
        }
        if let Some(key) = &self.key
            && (has("Load key") || has("UNPROTECTED PRIVATE KEY FILE") || has("invalid format"))
        {
            return SshError::KeyUnusable {
                path: key.clone(),
                reason: first_line(),
            };
        }
        for reason in [
            "Connection refused",
            "Connection timed out",
            "No route to host",
            "Network is unreachable",
            "Could not resolve hostname",
            "Name or service not known",
            "Temporary failure in name resolution",
            "Connection reset",
            "Connection closed",
        ] {
            if has(reason) {
                let reason = match reason {
                    "Connection timed out" => format!(
                        "connection timed out after {}s",
                        self.connect_timeout.as_secs()
                    ),
                    "Could not resolve hostname"
                    | "Name or service not known"
                    | "Temporary failure in name resolution" => {
                        "the host name does not resolve".to_string()
                    }
                    other => other.to_ascii_lowercase(),
                };
                return SshError::Unreachable {
                    host: host_s,
                    reason,
                };
            }
        }
        SshError::Other {
            host: host_s,
            message: first_line(),
        }
    }
}

/// A configured key file must be a readable regular file.
pub fn check_key_file(path: &Path) -> Result<(), SshError> {
    let missing = |reason: String| SshError::NoSuchKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| missing(format!("cannot be read: {e}"))),
        Ok(_) => Err(missing("not a regular file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing("no such file".into())),
        Err(e) => Err(missing(e.to_string())),
    }
}

/// One word for a POSIX shell.
pub fn quote(word: &str) -> Result<String, SshError> {
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .map_err(|_| SshError::Unquotable(word.to_string()))
}

/// Quoting for messages only (a NUL byte cannot occur in paths and host names).
fn shell_word(word: &str) -> String {
    quote(word).unwrap_or_else(|_| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh() -> Ssh {
        Ssh {
            program: "ssh".into(),
            key: Some("/k/id".into()),
            user: Some("ec2-user".into()),
            known_hosts: "/cfg/known_hosts".into(),
            options: vec!["ProxyJump=b".into()],
            connect_timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn every_option_is_explicit() {
        let a = ssh().args(&HostSpec::parse("h.example:2222").unwrap());
        let s = a.join(" ");
        for want in [
            "-F none",
            "-o BatchMode=yes",
            "-o ConnectTimeout=3",
            "-o StrictHostKeyChecking=accept-new",
            "-o UserKnownHostsFile=\"/cfg/known_hosts\"",
            "-o IdentitiesOnly=yes",
            "-o ProxyJump=b",
            "-i /k/id",
            "-l ec2-user",
            "-p 2222",
        ] {
            assert!(s.contains(want), "{want} missing in {s}");
        }
        assert_eq!(a.last().map(String::as_str), Some("h.example"));
    }

    #[test]
    fn ssh_errors_are_named() {
        let s = ssh();
        let h = HostSpec::parse("127.0.0.1:2200").unwrap();
        let e = s.classify(
            &h,
            "ssh: connect to host 127.0.0.1 port 2200: Connection refused\n",
        );
        assert!(matches!(e, SshError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("connection refused"), "{e}");
        let e = s.classify(&h, "root@127.0.0.1: Permission denied (publickey).\n");
        assert!(matches!(e, SshError::AuthRefused { .. }), "{e}");
        let e = s.classify(
            &h,
            "@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n",
        );
        assert!(e.to_string().contains("HOST KEY CHANGED"), "{e}");
        assert!(e.to_string().contains("-R '[127.0.0.1]:2200'"), "{e}");
        let e = s.classify(&h, "Load key \"/k/id\": invalid format\n");
        assert!(matches!(e, SshError::KeyUnusable { .. }), "{e}");
        let e = s.classify(
            &h,
            "kex_exchange_identification: banner line contains invalid characters\n",
        );
        assert!(e.to_string().contains("banner line"), "{e}");
    }

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(quote("plain").unwrap(), "plain");
        let q = quote("it's a \"test\" $HOME").unwrap();
        assert_eq!(shlex::split(&q).unwrap(), ["it's a \"test\" $HOME"]);
        assert!(quote("a\0b").is_err());
        assert!(matches!(
            check_key_file(Path::new("/nonexistent/key")),
            Err(SshError::NoSuchKeyFile { .. })
        ));
    }
}
