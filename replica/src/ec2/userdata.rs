//! The user data script an instance runs at first boot: install and start Docker, then run
//! the replica image with host networking, a data volume, `-w`, and tag discovery.
//!
//! Every value put into the script is checked against a conservative character set and
//! single-quoted, so nothing from the command line can change what the script does.

use super::Ec2Error;

/// The user id the replica image runs as (the image's non-root user); the data directory
/// is given to it.
pub const REPLICA_UID: u32 = 65532;
/// With `--domain` the nameserver must bind port 53 on the host's network, which a non-root
/// user cannot do there (the unprivileged-port sysctl is not namespaced away with host
/// networking, and Docker gives a non-root user no ambient capabilities). The container then
/// runs as root holding only CAP_NET_BIND_SERVICE, and the data directory is root's.
const DNS_CAPABILITIES: [&str; 6] = [
    "--user",
    "0:0",
    "--cap-drop",
    "ALL",
    "--cap-add",
    "NET_BIND_SERVICE",
];
/// Where the data volume lives on the instance (overridable for tests of the script).
pub const DATA_DIR: &str = "/var/lib/concoord";
/// The container's name on the instance.
pub const CONTAINER: &str = "concoord-replica";
/// Where the certificates and the auth file are written on the instance (overridable for
/// tests of the script), and where the container sees them.
pub const TLS_DIR: &str = "/etc/concoord/tls";
const TLS_MOUNT: &str = "/tls";

/// The certificates an instance's replica serves TLS with: the group's CA, and a replica
/// certificate for `server_name` that every instance of the launch shares (their addresses
/// are not known before they start, so peers check this name instead).
#[derive(Clone, PartialEq, Eq)]
pub struct LaunchTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub server_name: String,
}

impl std::fmt::Debug for LaunchTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchTls")
            .field("server_name", &self.server_name)
            .field("key", &"<private>")
            .finish()
    }
}

impl LaunchTls {
    /// A replica certificate for the cluster, from the CA in `dir` (`concoord certs init`);
    /// with a `domain`, it also names what the replicas' nameserver publishes there.
    pub fn issue(
        dir: &std::path::Path,
        cluster: &str,
        domain: Option<&str>,
    ) -> Result<LaunchTls, Ec2Error> {
        let ca = crate::pki::load_ca(dir).map_err(|e| Ec2Error::Usage(format!("--pki: {e}")))?;
        let server_name = server_name(cluster);
        let mut hosts = vec![server_name.clone()];
        hosts.extend(domain.map(|d| format!("*.{}", d.trim_end_matches('.'))));
        let issued = crate::pki::issue(
            &ca,
            &server_name,
            &hosts,
            365,
            crate::pki::CertKind::Replica,
        )
        .map_err(|e| Ec2Error::Usage(format!("--pki: {e}")))?;
        Ok(LaunchTls {
            ca: ca.cert,
            cert: issued.cert,
            key: issued.key,
            server_name,
        })
    }
}

/// The name a cluster's shared replica certificate carries; clients give it to
/// `--tls-server-name`.
pub fn server_name(cluster: &str) -> String {
    format!("{}.concoord", cluster.to_lowercase().replace('_', "-"))
}

/// What the replica on each instance is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaLaunch {
    pub cluster: String,
    pub image: String,
    pub port: u16,
    pub region: String,
    pub domain: Option<String>,
    pub route53_zone_id: Option<String>,
    /// Serve TLS with these certificates (`--pki`).
    pub tls: Option<LaunchTls>,
    /// The auth file's text (`--auth-file`).
    pub auth: Option<String>,
}

/// Cluster names: letters, digits, `-`, `_`, `.`; 1 to 64 of them.
pub fn check_cluster(name: &str) -> Result<(), Ec2Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Ec2Error::Usage(format!(
            "--cluster {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn check_token(flag: &str, value: &str, extra: &[char]) -> Result<(), Ec2Error> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || extra.contains(&c)
        });
    if ok {
        Ok(())
    } else {
        Err(Ec2Error::Usage(format!(
            "{flag} {value:?}: unexpected characters"
        )))
    }
}

impl ReplicaLaunch {
    /// Checks every value that goes into the script.
    pub fn check(&self) -> Result<(), Ec2Error> {
        check_cluster(&self.cluster)?;
        check_token("--image", &self.image, &['/', ':', '@'])?;
        check_token("region", &self.region, &[])?;
        if self.port == 0 {
            return Err(Ec2Error::Usage("--port must be at least 1".into()));
        }
        if let Some(d) = &self.domain {
            crate::dns::zone::parse_domain(d)
                .map_err(|e| Ec2Error::Usage(format!("--domain: {e}")))?;
            check_token("--domain", d, &[])?;
        }
        if let Some(z) = &self.route53_zone_id {
            if self.domain.is_none() {
                return Err(Ec2Error::Usage("--route53-zone-id needs --domain".into()));
            }
            check_token("--route53-zone-id", z, &['/'])?;
        }
        Ok(())
    }

    /// The arguments after the image name: the `concoord` command the container runs.
    pub fn replica_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "replica",
            "-w",
            "--data-dir",
            "/data",
            "-p",
            &self.port.to_string(),
            "--discover",
            &format!("ec2:cluster={}", self.cluster),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(d) = &self.domain {
            args.extend(["-n".to_string(), d.clone()]);
            if let Some(z) = &self.route53_zone_id {
                args.extend(["-r".into(), "--route53-zone-id".into(), z.clone()]);
            }
        }
        if let Some(tls) = &self.tls {
            args.extend([
                "--tls-cert".to_string(),
                format!("{TLS_MOUNT}/tls.crt"),
                "--tls-key".into(),
                format!("{TLS_MOUNT}/tls.key"),
                "--tls-ca".into(),
                format!("{TLS_MOUNT}/ca.crt"),
                "--tls-server-name".into(),
                tls.server_name.clone(),
            ]);
        }
        if self.auth.is_some() {
            args.extend(["--auth-file".to_string(), format!("{TLS_MOUNT}/auth")]);
        }
        args
    }

    /// The files written before the container starts: (name, content), private.
    fn secret_files(&self) -> Vec<(&'static str, &str)> {
        let mut files = Vec::new();
        if let Some(tls) = &self.tls {
            files.push(("ca.crt", tls.ca.as_str()));
            files.push(("tls.crt", tls.cert.as_str()));
            files.push(("tls.key", tls.key.as_str()));
        }
        if let Some(auth) = &self.auth {
            files.push(("auth", auth.as_str()));
        }
        files
    }

    /// Shell lines that write the secret files, readable by the container's user only.
    /// The content travels base64-encoded, so nothing in it can end a quote.
    fn write_secret_files(&self) -> String {
        use base64::Engine;
        let files = self.secret_files();
        if files.is_empty() {
            return String::new();
        }
        let mut out = format!(
            "TLS_DIR=\"${{CONCOORD_TLS_DIR:-{TLS_DIR}}}\"\n(\n  umask 077\n  mkdir -p \"$TLS_DIR\"\n"
        );
        for (name, content) in files {
            out.push_str(&format!(
                "  echo '{}' | base64 -d > \"$TLS_DIR/{name}\"\n",
                base64::engine::general_purpose::STANDARD.encode(content)
            ));
        }
        let uid = self.data_owner();
        out.push_str(&format!(
            "  chmod 700 \"$TLS_DIR\"\n  chown -R {uid}:{uid} \"$TLS_DIR\"\n)\n"
        ));
        out
    }

    /// The `docker run` line, as the script runs it.
    pub fn docker_run(&self) -> String {
        let mut words: Vec<String> = [
            "docker",
            "run",
            "-d",
            "--name",
            CONTAINER,
            "--restart",
            "unless-stopped",
            "--network",
            "host",
            "-v",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        words.push("\"$DATA_DIR\":/data".into());
        if !self.secret_files().is_empty() {
            words.push("-v".into());
            words.push(format!("\"$TLS_DIR\":{TLS_MOUNT}:ro"));
        }
        if self.domain.is_some() {
            words.extend(DNS_CAPABILITIES.iter().map(|s| s.to_string()));
        }
        words.push("-e".into());
        words.push(quote(&format!("AWS_REGION={}", self.region)));
        words.push(quote(&self.image));
        words.extend(self.replica_args().iter().map(|a| quote(a)));
        words.join(" ")
    }

    /// Who owns the data directory: the user the container runs as.
    fn data_owner(&self) -> u32 {
        if self.domain.is_some() {
            0
        } else {
            REPLICA_UID
        }
    }

    /// The whole user data script.
    pub fn script(&self) -> Result<String, Ec2Error> {
        self.check()?;
        Ok(format!(
            r#"#!/bin/bash
# ConCoord replica of cluster {cluster} (generated by `concoord ec2 launch`).
# Installs Docker if needed and runs the replica image; the replica finds the cluster's
# other instances by their concoord:cluster tag.
set -euo pipefail
DATA_DIR="${{CONCOORD_DATA_DIR:-{data_dir}}}"

if ! command -v docker >/dev/null 2>&1; then
  if command -v dnf >/dev/null 2>&1; then
    dnf install -y docker
  elif command -v yum >/dev/null 2>&1; then
    yum install -y docker
  elif command -v apt-get >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
  else
    echo "concoord: cannot install docker (no dnf, yum or apt-get)" >&2
    exit 1
  fi
fi
systemctl enable --now docker

mkdir -p "$DATA_DIR"
chown {uid}:{uid} "$DATA_DIR"
{secrets}# A rerun replaces the container; the data directory keeps the replica's identity.
docker rm -f {container} >/dev/null 2>&1 || true
{run}
"#,
            cluster = self.cluster,
            data_dir = DATA_DIR,
            uid = self.data_owner(),
            secrets = self.write_secret_files(),
            container = CONTAINER,
            run = self.docker_run(),
        ))
    }
}

/// Single-quotes `s` for the shell.
fn quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '@'))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> ReplicaLaunch {
        ReplicaLaunch {
            cluster: "prod".into(),
            image: "concoord/replica:0.1.0".into(),
            port: 14000,
            region: "eu-west-1".into(),
            domain: None,
            route53_zone_id: None,
            tls: None,
            auth: None,
        }
    }

    #[test]
    fn docker_run_line() {
        assert_eq!(
            launch().docker_run(),
            "docker run -d --name concoord-replica --restart unless-stopped --network host \
             -v \"$DATA_DIR\":/data -e AWS_REGION=eu-west-1 concoord/replica:0.1.0 replica -w \
             --data-dir /data -p 14000 --discover ec2:cluster=prod"
        );
        let mut l = launch();
        l.domain = Some("example.com".into());
        l.route53_zone_id = Some("Z123".into());
        let run = l.docker_run();
        assert!(run.ends_with("ec2:cluster=prod -n example.com -r --route53-zone-id Z123"));
        // Port 53 on the host network: root with only the bind capability, data dir root's.
        assert!(run.contains("--user 0:0 --cap-drop ALL --cap-add NET_BIND_SERVICE"));
        assert!(l.script().is_ok_and(|s| s.contains("chown 0:0 ")));
        assert!(
            launch()
                .script()
                .is_ok_and(|s| s.contains("chown 65532:65532 "))
        );
    }

    #[test]
    fn bad_values_never_reach_the_script() {
        let mut l = launch();
        l.cluster = "a b".into();
        assert!(l.script().is_err());
        let mut l = launch();
        l.image = "x;rm -rf /".into();
        assert!(l.script().is_err());
        let mut l = launch();
        l.route53_zone_id = Some("Z1".into());
        assert!(l.script().is_err(), "a zone needs a domain");
        assert_eq!(quote("a'b c"), r"'a'\''b c'");
    }
}
