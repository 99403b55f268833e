//! What each `concoord remote` command does: read or change the configuration, reach the
//! host over SSH, run a script there and tell the user the outcome in a few lines.

use super::config::{self, ConfigError, HostError, HostSpec, Node, RemoteConfig};
use super::scripts;
use super::ssh::{Finished, Input, Ssh, SshError, check_key_file};
use crate::dns::route53::credentials;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bounds for the remote steps (connecting is bounded separately by ssh's ConnectTimeout).
const PROBE_LIMIT: Duration = Duration::from_secs(30);
const COPY_LIMIT: Duration = Duration::from_secs(600);
const START_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("{0}")]
    Ssh(#[from] SshError),
    #[error("{host} is not a configured node: run `concoord remote addnode {host}` first")]
    NotConfigured { host: String },
    #[error("{host}: {what} failed: {detail}")]
    Remote {
        host: String,
        what: String,
        detail: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Local(String),
}

/// The files `setup --pki/--auth-file` writes in the install directory's config folder.
pub const TLS_CA_FILE: &str = "tls-ca.crt";
pub const TLS_CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
pub const AUTH_FILE: &str = "auth";

/// What `setup` sends a host besides the program: a certificate and an auth file.
#[derive(Debug, Default)]
pub struct HostSecurity {
    pub pki: Option<PathBuf>,
    pub tls_hosts: Vec<String>,
    pub auth_file: Option<PathBuf>,
}

/// What a started replica is called on its host (its log and PID file names).
pub fn process_name(port: u16) -> String {
    format!("replica-{port}")
}

/// The configuration and where it lives.
pub struct Remote {
    pub path: PathBuf,
    pub known_hosts: PathBuf,
    pub config: RemoteConfig,
}

impl Remote {
    pub fn load() -> Result<Remote, RemoteError> {
        let path = config::path()?;
        let known_hosts = config::known_hosts_path()?;
        let config = config::load(&path)?;
        Ok(Remote {
            path,
            known_hosts,
            config,
        })
    }

    fn save(&self) -> Result<(), RemoteError> {
        Ok(config::save(&self.path, &self.config)?)
    }

    fn ssh(&self) -> Result<Ssh, RemoteError> {
        // ssh records new host keys here; its directory must exist.
        if let Some(dir) = self.known_hosts.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| RemoteError::Local(format!("{}: {e}", dir.display())))?;
        }
        Ok(Ssh::new(
            self.config.ssh_key.as_deref(),
            self.config.username.as_deref(),
            self.known_hosts.clone(),
            &self.config.ssh_options,
        )?)
    }

    fn node(&self, host: &str) -> Result<(HostSpec, Node), RemoteError> {
        let spec = HostSpec::parse(host)?;
        let node = self
            .config
            .node(&spec)
            .cloned()
            .ok_or_else(|| RemoteError::NotConfigured {
                host: spec.to_string(),
            })?;
        Ok((spec, node))
    }

    /// `concoord remote config`
    pub fn show(&self) -> Vec<String> {
        let c = &self.config;
        let exists = if self.path.exists() {
            ""
        } else {
            " (not created yet)"
        };
        let mut lines = vec![
            format!("Configuration: {}{exists}", self.path.display()),
            format!(
                "SSH key:       {}",
                c.ssh_key
                    .as_ref()
                    .map_or("(ssh's default keys)".into(), |k| {
                        k.display().to_string()
                    })
            ),
            format!(
                "User name:     {}",
                c.username.as_deref().unwrap_or("(your local user name)")
            ),
            format!(
                "Install dir:   {}{}",
                c.install_dir(),
                if c.install_dir().starts_with('/') {
                    ""
                } else {
                    " (under the user's home directory on each host)"
                }
            ),
            format!("Known hosts:   {}", self.known_hosts.display()),
        ];
        if !c.ssh_options.is_empty() {
            lines.push(format!("SSH options:   {}", c.ssh_options.join(" ")));
        }
        if c.nodes.is_empty() {
            lines.push("Nodes:         none (add one with `concoord remote addnode HOST`)".into());
        } else {
            lines.push("Nodes:".into());
            for n in &c.nodes {
                match &n.image {
                    Some(image) => lines.push(format!("  {} (runs image {image})", n.host)),
                    None => lines.push(format!("  {}", n.host)),
                }
            }
        }
        lines
    }

    /// `concoord remote addsshkey FILE`
    pub fn add_ssh_key(&mut self, file: &Path) -> Result<Vec<String>, RemoteError> {
        check_key_file(file)?;
        // Absolute, so the configuration works from any directory.
        let file = std::path::absolute(file)
            .map_err(|e| RemoteError::Local(format!("{}: {e}", file.display())))?;
        self.config.ssh_key = Some(file.clone());
        self.save()?;
        Ok(vec![format!(
            "Adding SSH key to the configuration: {}",
            file.display()
        )])
    }

    /// `concoord remote addusername NAME`
    pub fn add_username(&mut self, name: &str) -> Result<Vec<String>, RemoteError> {
        let name = name.trim();
        if name.is_empty()
            || name.starts_with('-')
            || name
                .chars()
                .any(|c| c.is_whitespace() || c == '@' || c == '\0')
        {
            return Err(RemoteError::Usage(format!(
                "{name:?} is not a user name (no spaces, '@' or leading '-')"
            )));
        }
        self.config.username = Some(name.to_string());
        self.save()?;
        Ok(vec![format!(
            "Adding user name to the configuration: {name}"
        )])
    }

    /// `concoord remote installdir DIR`
    pub fn set_install_dir(&mut self, dir: &str) -> Result<Vec<String>, RemoteError> {
        // A leading ~/ would not be expanded once quoted: relative paths already mean the
        // home directory, since ssh starts commands there.
        let dir = dir.trim();
        let dir = dir.strip_prefix("~/").unwrap_or(dir).trim_end_matches('/');
        if dir.is_empty() || dir == "~" || dir.contains('\0') {
            return Err(RemoteError::Usage(format!(
                "{dir:?} is not a directory for the hosts"
            )));
        }
        self.config.install_dir = Some(dir.to_string());
        self.save()?;
        Ok(vec![format!(
            "Install directory on the hosts: {dir}{}",
            if dir.starts_with('/') {
                ""
            } else {
                " (under the user's home directory)"
            }
        )])
    }

    /// `concoord remote addnode HOST`: logs in first (unless `no_check`) and adds the host
    /// only when that works.
    pub async fn add_node(
        &mut self,
        host: &str,
        no_check: bool,
    ) -> Result<Vec<String>, RemoteError> {
        let spec = HostSpec::parse(host)?;
        let mut lines = Vec::new();
        if !no_check {
            let ssh = self.ssh()?;
            let out = ssh
                .run(
                    &spec,
                    &scripts::probe(),
                    Input::None,
                    PROBE_LIMIT,
                    "login check",
                )
                .await
                .map_err(|e| RemoteError::Local(format!("{e}; {spec} was not added")))?;
            let system = out.stdout.trim().to_string();
            if !out.success() {
                return Err(RemoteError::Local(format!(
                    "{spec}: logged in, but `uname` failed ({}); {spec} was not added",
                    one_line(&out)
                )));
            }
            lines.push(format!(
                "Logged in to {spec} as {}: {system}",
                ssh.user_name()
            ));
            if let Some(warning) = platform_warning(&system) {
                lines.push(warning);
            }
        }
        self.config.add_node(&spec);
        self.save()?;
        lines.push(format!("Adding node to the configuration: {spec}"));
        Ok(lines)
    }

    /// `concoord remote setup HOST [--image IMAGE]`: copies the running binary (or loads
    /// the image) and checks that it runs there.
    pub async fn setup(
        &mut self,
        host: &str,
        image: Option<&str>,
    ) -> Result<Vec<String>, RemoteError> {
        let (spec, _) = self.node(host)?;
        let ssh = self.ssh()?;
        let want = format!("concoord {}", env!("CARGO_PKG_VERSION"));
        let (out, where_) = match image {
            None => {
                let exe = std::env::current_exe().map_err(|e| {
                    RemoteError::Local(format!("cannot find the running concoord binary: {e}"))
                })?;
                let dir = self.config.install_dir().to_string();
                let out = ssh
                    .run(
                        &spec,
                        &scripts::install_binary(&dir)?,
                        Input::File(exe),
                        COPY_LIMIT,
                        "copying the binary",
                    )
                    .await?;
                (out, format!("{dir}/concoord"))
            }
            Some(image) => {
                let mut save = std::process::Command::new("docker")
                    .args(["save", image])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| RemoteError::Local(format!("cannot run docker save: {e}")))?;
                let pipe = save
                    .stdout
                    .take()
                    .ok_or_else(|| RemoteError::Local("docker save: no output pipe".into()))?;
                let sent = ssh
                    .run(
                        &spec,
                        &scripts::load_image(image)?,
                        Input::Pipe(pipe.into()),
                        COPY_LIMIT,
                        "loading the image",
                    )
                    .await;
                let saved = save
                    .wait_with_output()
                    .map_err(|e| RemoteError::Local(format!("docker save {image}: {e}")))?;
                // An ssh failure explains a broken pipe in docker save, not the other way.
                let sent = sent?;
                if !saved.status.success() {
                    return Err(RemoteError::Local(format!(
                        "docker save {image} failed: {}",
                        String::from_utf8_lossy(&saved.stderr).trim()
                    )));
                }
                (sent, format!("image {image}"))
            }
        };
        let got = out.stdout.lines().last().unwrap_or("").trim().to_string();
        if !out.success() {
            return Err(RemoteError::Remote {
                host: spec.to_string(),
                what: "setup".into(),
                detail: one_line(&out),
            });
        }
        if got != want {
            return Err(RemoteError::Remote {
                host: spec.to_string(),
                what: "setup".into(),
                detail: format!("{where_} answers --version with {got:?}, expected {want:?}"),
            });
        }
        self.config.add_node(&spec).image = image.map(str::to_string);
        self.save()?;
        Ok(vec![format!("Set up {spec}: {where_} runs ({got})")])
    }

    /// `setup --pki DIR --auth-file FILE`: issues the host a replica certificate from the CA
    /// in DIR and writes it, its key, the CA and the auth file into the install directory's
    /// config folder (mode 0600, through ssh's standard input, never a command line).
    pub async fn send_security(
        &mut self,
        host: &str,
        security: &HostSecurity,
    ) -> Result<Vec<String>, RemoteError> {
        let (spec, _) = self.node(host)?;
        let mut files: Vec<(&str, String)> = Vec::new();
        if let Some(dir) = &security.pki {
            let ca =
                crate::pki::load_ca(dir).map_err(|e| RemoteError::Usage(format!("--pki: {e}")))?;
            let hosts = if security.tls_hosts.is_empty() {
                vec![spec.name.clone()]
            } else {
                security.tls_hosts.clone()
            };
            let issued = crate::pki::issue(
                &ca,
                &format!("replica-{}", spec.name),
                &hosts,
                365,
                crate::pki::CertKind::Replica,
            )
            .map_err(|e| RemoteError::Usage(format!("--pki: {e}")))?;
            files.push((TLS_CA_FILE, ca.cert));
            files.push((TLS_CERT_FILE, issued.cert));
            files.push((TLS_KEY_FILE, issued.key));
        }
        if let Some(path) = &security.auth_file {
            // Replicas with an auth file link to each other with their certificates.
            let node = self.node(host)?.1;
            if security.pki.is_none() && !node.tls {
                return Err(RemoteError::Usage(
                    "--auth-file needs --pki (now or in an earlier setup): without TLS the tokens cross the network in clear and the replicas cannot link to each other".into(),
                ));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| RemoteError::Usage(format!("--auth-file {}: {e}", path.display())))?;
            // The host keeps digests, never the tokens.
            let hashed = crate::auth::hash_tokens(&text).map_err(|(line, reason)| {
                RemoteError::Usage(format!("--auth-file {}:{line}: {reason}", path.display()))
            })?;
            files.push((AUTH_FILE, hashed));
        }
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let ssh = self.ssh()?;
        let mut lines = Vec::new();
        for (name, content) in files {
            let out = ssh
                .run(
                    &spec,
                    &scripts::write_private(self.config.install_dir(), name)?,
                    Input::Bytes(content.into_bytes()),
                    PROBE_LIMIT,
                    "storing the certificates",
                )
                .await?;
            if !out.success() {
                return Err(RemoteError::Remote {
                    host: spec.to_string(),
                    what: format!("storing {name}"),
                    detail: one_line(&out),
                });
            }
            lines.push(format!(
                "Stored {} on {spec} (mode 0600)",
                out.stdout.trim()
            ));
        }
        let node = self.config.add_node(&spec);
        node.tls |= security.pki.is_some();
        node.auth |= security.auth_file.is_some();
        self.save()?;
        Ok(lines)
    }

    /// The flags that make a replica on `node` use what `setup` sent it, unless the user
    /// gave their own.
    fn security_flags(node: &Node, args: &[String]) -> Vec<String> {
        // A container sees the config folder at /config; a process runs in the install dir.
        let dir = if node.image.is_some() {
            "/config"
        } else {
            "config"
        };
        let given = |flag: &str| {
            args.iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut extra = Vec::new();
        if node.tls && !given("--tls-cert") {
            extra.extend([
                "--tls-cert".to_string(),
                format!("{dir}/{TLS_CERT_FILE}"),
                "--tls-key".into(),
                format!("{dir}/{TLS_KEY_FILE}"),
                "--tls-ca".into(),
                format!("{dir}/{TLS_CA_FILE}"),
            ]);
        }
        if node.auth && !given("--auth-file") {
            extra.extend(["--auth-file".to_string(), format!("{dir}/{AUTH_FILE}")]);
        }
        extra
    }

    /// `concoord remote replica|nameserver HOST ARGS`: starts `concoord replica ARGS` there,
    /// detached; `port` names its log and PID file.
    pub async fn start(
        &self,
        host: &str,
        kind: &str,
        args: &[String],
        port: u16,
    ) -> Result<Vec<String>, RemoteError> {
        let (spec, node) = self.node(host)?;
        let ssh = self.ssh()?;
        let name = process_name(port);
        let mut argv = vec!["replica".to_string()];
        argv.extend_from_slice(args);
        argv.extend(Remote::security_flags(&node, args));
        let script = scripts::start(
            self.config.install_dir(),
            &name,
            node.image.as_deref(),
            node.tls || node.auth,
            &argv,
        )?;
        let out = ssh
            .run(&spec, &script, Input::None, START_LIMIT, "starting")
            .await?;
        let mut stdout = out.stdout.lines().map(str::trim);
        let id = stdout.next().unwrap_or("").to_string();
        match out.code {
            Some(0) => {}
            Some(scripts::ALREADY_RUNNING) => {
                return Err(RemoteError::Remote {
                    host: spec.to_string(),
                    what: format!("starting the {kind}"),
                    detail: format!(
                        "{name} already runs there ({}); stop it with `concoord remote stop {spec} --port {port}`",
                        describe_id(&id)
                    ),
                });
            }
            Some(scripts::EXITED_AT_ONCE) => {
                return Err(RemoteError::Remote {
                    host: spec.to_string(),
                    what: format!("starting the {kind}"),
                    detail: format!("it exited at once: {}", last_line(&out.stderr)),
                });
            }
            _ => {
                return Err(RemoteError::Remote {
                    host: spec.to_string(),
                    what: format!("starting the {kind}"),
                    detail: one_line(&out),
                });
            }
        }
        let log = stdout.next().unwrap_or("").to_string();
        Ok(vec![
            format!("Started {kind} on {spec}: {} ({name})", describe_id(&id)),
            format!("Log:  {log} on {spec}"),
            format!("Stop: concoord remote stop {spec} --port {port}"),
        ])
    }

    /// `concoord remote stop HOST [--port P]`
    pub async fn stop(&self, host: &str, port: Option<u16>) -> Result<Vec<String>, RemoteError> {
        let (spec, _) = self.node(host)?;
        let ssh = self.ssh()?;
        let only = port.map(process_name);
        let out = ssh
            .run(
                &spec,
                &scripts::stop(self.config.install_dir(), only.as_deref())?,
                Input::None,
                STOP_LIMIT,
                "stopping",
            )
            .await?;
        if !out.success() {
            return Err(RemoteError::Remote {
                host: spec.to_string(),
                what: "stop".into(),
                detail: one_line(&out),
            });
        }
        let mut lines: Vec<String> = out
            .stdout
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (state, name, id) = (w.next()?, w.next()?, w.next()?);
                Some(match state {
                    "stopped" => format!("Stopped {name} on {spec} ({})", describe_id(id)),
                    _ => format!("{name} on {spec} had already exited ({})", describe_id(id)),
                })
            })
            .collect();
        if lines.is_empty() {
            lines.push(match &only {
                Some(name) => format!("No {name} started by concoord on {spec}"),
                None => format!("Nothing started by concoord on {spec}"),
            });
        }
        Ok(lines)
    }

    /// `concoord remote ps HOST`
    pub async fn list(&self, host: &str) -> Result<Vec<String>, RemoteError> {
        let (spec, _) = self.node(host)?;
        let ssh = self.ssh()?;
        let out = ssh
            .run(
                &spec,
                &scripts::list(self.config.install_dir())?,
                Input::None,
                STOP_LIMIT,
                "listing",
            )
            .await?;
        if !out.success() {
            return Err(RemoteError::Remote {
                host: spec.to_string(),
                what: "ps".into(),
                detail: one_line(&out),
            });
        }
        let lines: Vec<String> = out
            .stdout
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (name, id, state) = (w.next()?, w.next()?, w.next()?);
                Some(format!("{name}  {}  {state}", describe_id(id)))
            })
            .collect();
        if lines.is_empty() {
            return Ok(vec![format!("Nothing started by concoord on {spec}")]);
        }
        Ok(lines)
    }

    /// `concoord remote route53 HOST KEYID SECRET`: the credentials file on the host, in the
    /// config directory of the replicas started there, mode 0600.
    pub async fn route53(
        &self,
        host: &str,
        key_id: &str,
        secret: &str,
    ) -> Result<Vec<String>, RemoteError> {
        let (key_id, secret) = (key_id.trim(), secret.trim());
        if key_id.is_empty() || secret.is_empty() {
            return Err(RemoteError::Usage(
                "the access key id and the secret access key must not be empty".into(),
            ));
        }
        let (spec, _) = self.node(host)?;
        let ssh = self.ssh()?;
        let text = credentials::render(&credentials::Stored {
            key_id: Some(key_id.to_string()),
            secret: Some(secret.to_string()),
        });
        // The secret goes through ssh's standard input, never on a command line.
        let out = ssh
            .run(
                &spec,
                &scripts::write_private(self.config.install_dir(), credentials::FILE)?,
                Input::Bytes(text.into_bytes()),
                PROBE_LIMIT,
                "storing the Route53 credentials",
            )
            .await?;
        if !out.success() {
            return Err(RemoteError::Remote {
                host: spec.to_string(),
                what: "route53".into(),
                detail: one_line(&out),
            });
        }
        Ok(vec![format!(
            "Stored the Route53 credentials on {spec} in {} (readable by {} only); replicas started there with `concoord remote nameserver {spec} ... -r` use them",
            out.stdout.trim(),
            ssh.user_name()
        )])
    }
}

fn describe_id(id: &str) -> String {
    match id.strip_prefix("docker:") {
        Some(cid) => format!("container {}", &cid[..cid.len().min(12)]),
        None => format!("PID {id}"),
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("(no output)")
        .to_string()
}

/// The remote command's failure in one line.
fn one_line(out: &Finished) -> String {
    let code = out.code.map_or("killed by a signal".to_string(), |c| {
        format!("exit status {c}")
    });
    format!("{code}: {}", last_line(&out.stderr))
}

/// A note when the host cannot run this binary (another OS or architecture).
fn platform_warning(uname: &str) -> Option<String> {
    let mut words = uname.split_whitespace();
    let (os, arch) = (words.next()?.to_ascii_lowercase(), words.next()?);
    let arch = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    };
    (os != std::env::consts::OS || arch != std::env::consts::ARCH).then(|| {
        format!(
            "Warning: this concoord is built for {} {}; `concoord remote setup` will need a binary or image built for {uname}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_mismatch_is_noted() {
        let here = format!("Linux {}", std::env::consts::ARCH);
        if std::env::consts::OS == "linux" {
            assert_eq!(platform_warning(&here), None);
        }
        assert!(platform_warning("Linux sparc64").is_some());
        assert!(platform_warning("Darwin x86_64").is_some());
        assert_eq!(
            describe_id("docker:0123456789abcdef"),
            "container 0123456789ab"
        );
        assert_eq!(describe_id("42"), "PID 42");
    }
}
