//! The `concoord` command line: clap definitions and dispatch. The seed's `replica` flags
//! keep ConCoord's names and meanings; flags for features that do not exist yet are refused
//! with a clear message rather than ignored.

use crate::client::{ClientError, check_addr};
use crate::dns::route53::credentials;
use crate::logging::{self, LoggingError};
use crate::runtime::{self, ReplicaConfig, RuntimeError, Timing};
use crate::tools;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "concoord",
    version,
    about = "ConCoord-rs: Paxos-replicated live objects and distributed synchronization"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a replica (founds a group, or joins one with -b).
    Replica(Box<ReplicaArgs>),
    /// Call a method of an object and print the result as JSON; or create, delete, list objects.
    #[command(after_help = CALL_EXAMPLES)]
    Call(CallArgs),
    /// Hold a lock while a command runs (one session), then release it: like `etcdctl lock`.
    #[command(after_help = LOCK_EXAMPLES)]
    Lock(LockArgs),
    /// Load, list and show user object types: Python classes the group runs in its sandbox.
    #[command(after_help = TYPE_EXAMPLES)]
    Type(TypeArgs),
    /// Write the Python proxy of an object type (ConCoord's proxy generator): for
    /// -o tencounter.TenCounter, tencounterproxy.py next to tencounter.py.
    Object(ObjectArgs),
    /// Show every replica's view, leader, ballot and slots.
    Status(StatusArgs),
    /// Add or remove one replica (the view changes through consensus, one member at a time).
    Membership(MembershipArgs),
    /// Exit 0 when the local replica is live, or ready (a caught-up voting member): for
    /// Kubernetes exec probes.
    Probe(ProbeArgs),
    /// Measure increments per second and latency with 1, 8, 64... concurrent clients.
    Bench(BenchArgs),
    /// Increments and reads from N clients for a while; prints counts and the verdict of
    /// the linearizability check as JSON (for tests that run inside a container network).
    #[command(hide = true)]
    Workload(WorkloadArgs),
    /// Print the log lines replicas send with -l, prefixed by sender.
    Logdaemon(LogdaemonArgs),
    /// Run a ready local cluster on 127.0.0.1 for trying things out.
    Local(LocalArgs),
    /// Store the AWS access key id for Route53 (-r) in a private (0600) config file.
    Route53id {
        #[arg(value_name = "KEY_ID")]
        key: String,
    },
    /// Store the AWS secret access key for Route53 (-r) in a private (0600) config file.
    Route53key {
        #[arg(value_name = "SECRET")]
        secret: String,
    },
    /// Manage replicas on existing hosts over SSH (OpenReplica's commands).
    #[command(after_help = REMOTE_EXAMPLES)]
    Remote(RemoteArgs),
    /// Launch and manage replicas on EC2 instances tagged with a cluster name.
    Ec2(crate::ec2::cli::Ec2Args),
    /// Make a CA and certificates for TLS (--tls-cert/--tls-key/--tls-ca, --ca/--cert/--key).
    #[command(after_help = CERTS_EXAMPLES)]
    Certs(CertsArgs),
}

const CERTS_EXAMPLES: &str = "\
Examples:
  concoord certs init ./pki                                   # ./pki/ca.crt, ./pki/ca.key
  concoord certs issue ./pki replica-1 --host 10.0.0.1 --host r1.example.com
  concoord certs issue ./pki alice                            # a client certificate (CN alice)
  concoord replica -a 10.0.0.1 --tls-cert pki/replica-1.crt --tls-key pki/replica-1.key --tls-ca pki/ca.crt";

#[derive(Args, Debug)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub action: CertsAction,
}

#[derive(Subcommand, Debug)]
pub enum CertsAction {
    /// Create a CA: DIR/ca.crt (give it to every replica and client) and DIR/ca.key (keep it
    /// private: it signs certificates)
    Init {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
        /// The CA's common name
        #[arg(long, default_value = "ConCoord CA")]
        name: String,
        /// Days the CA is valid
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue DIR/NAME.crt and DIR/NAME.key, signed by DIR's CA: a replica's certificate
    /// (give its addresses with --host) or, with --client, a user's (NAME is the user)
    Issue {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
        /// Common name: the replica's or the user's name
        #[arg(value_name = "NAME")]
        name: String,
        /// An IP or DNS name the certificate is valid for (repeat for several)
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Days the certificate is valid
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// A client's certificate: it proves a user (its common name) to replicas with an
        /// auth file, but cannot serve or link as a replica
        #[arg(long, conflicts_with = "hosts")]
        client: bool,
    },
}

const TYPE_EXAMPLES: &str = "\
Examples:
  concoord type load 127.0.0.1:14000 /foo/tencounter.py            # the file's only class
  concoord type load 127.0.0.1:14000 /foo/tencounter.py --class TenCounter --replace
  concoord type list 127.0.0.1:14000
  concoord type show 127.0.0.1:14000 tencounter.TenCounter
  concoord call 127.0.0.1:14000 --create hits tencounter.TenCounter
  concoord call 127.0.0.1:14000 hits increment";

#[derive(Args, Debug)]
pub struct TypeArgs {
    #[command(subcommand)]
    pub action: TypeAction,
}

#[derive(Subcommand, Debug)]
pub enum TypeAction {
    /// Define a type from a Python file through consensus (the group's copy is what every
    /// replica runs); refused, with nothing changed, when the code does not compile
    Load {
        /// Replica addresses ("host:port, host:port") or the group's DNS domain
        #[arg(value_name = "ADDRS")]
        addrs: String,
        #[arg(value_name = "FILE.py")]
        file: std::path::PathBuf,
        /// The class to load [default: the file's only class]
        #[arg(long = "class", value_name = "NAME")]
        class: Option<String>,
        /// The module name of the type [default: the file's name without .py]
        #[arg(long = "module", value_name = "NAME")]
        module: Option<String>,
        /// Swap the code of a type already defined; its objects keep their state
        #[arg(long)]
        replace: bool,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        creds: CredentialArgs,
    },
    /// List the user types: name, sha256, size, objects, methods
    List {
        #[arg(value_name = "ADDRS")]
        addrs: String,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        creds: CredentialArgs,
    },
    /// Print a user type's source as the group holds it
    Show {
        #[arg(value_name = "ADDRS")]
        addrs: String,
        /// module.Class, the class name or the module name
        #[arg(value_name = "NAME")]
        name: String,
        /// Print the type (source included) as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        creds: CredentialArgs,
    },
}

#[derive(Args, Debug)]
pub struct ObjectArgs {
    /// The type: module.Class (the module found on --object-path or PYTHONPATH),
    /// FILE.py:Class, or a built-in
    #[arg(short = 'o', long = "objectname", value_name = "OBJECTNAME")]
    pub objectname: String,
    /// Security token (accepted for ConCoord 1.1 compatibility; not used)
    #[arg(short = 't', long = "token", value_name = "SECURITYTOKEN")]
    pub token: Option<String>,
    /// 0: basic, 1: blocking (calls may wait as long as the client's blocking timeout)
    #[arg(
        short = 'p',
        long = "proxytype",
        value_name = "PROXYTYPE",
        default_value_t = 0
    )]
    pub proxytype: u8,
    /// Safety checking (accepted for ConCoord 1.1 compatibility: the replicas always check)
    #[arg(short = 's', long = "safe")]
    pub safe: bool,
    /// Print the generated proxy too
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Directory searched before PYTHONPATH for the module (repeatable)
    #[arg(long = "object-path", value_name = "DIR")]
    pub object_path: Vec<std::path::PathBuf>,
}

const CALL_EXAMPLES: &str = "\
Arguments are JSON when they parse as JSON (5, -1.5, true, [1,2], \"5\"), plain strings
otherwise; put `--` before arguments that start with a dash but are not numbers.
Errors print as one line, e.g. `RuntimeError: cannot release un-acquired lock`, exit code 1.

Examples:
  concoord call 127.0.0.1:14000 counter increment
  concoord call \"127.0.0.1:14000, 127.0.0.1:14001\" counter getvalue
  concoord call 127.0.0.1:14000 --create q Queue 10
  concoord call 127.0.0.1:14000 --delete q
  concoord call 127.0.0.1:14000 --list
  concoord call counterdomain.com counter getvalue     (replicas from _concoord._tcp SRV)
  concoord call --dns-server 127.0.0.1:5353 counterdomain.com counter getvalue";

const LOCK_EXAMPLES: &str = "\
The lock is created (as --type) when the group has no object of that name. The command runs
with CONCOORD_LOCK=NAME in its environment; its exit code is this command's. If this process
dies, the session's lease (10 s by default) releases the lock.

Examples:
  concoord lock 127.0.0.1:14000 deploy -- ./deploy.sh
  concoord lock --no-wait counterdomain.com nightly -- make backup
  concoord lock --type Semaphore 127.0.0.1:14000 builders -- cargo build
  concoord lock 127.0.0.1:14000 maintenance          (holds it until Ctrl-C)";

const REMOTE_EXAMPLES: &str = "\
The configuration lives in remote.toml in the config directory ($CONCOORD_CONFIG_DIR, else
$XDG_CONFIG_HOME/concoord, else ~/.config/concoord), host keys in known_hosts beside it.

Examples:
  concoord remote addsshkey ~/.ssh/concoord.pem
  concoord remote addusername ec2-user
  concoord remote addnode node1.example.com          (checks that ssh can log in)
  concoord remote setup node1.example.com            (copies this concoord binary there)
  concoord remote replica node1.example.com -o counter -a 10.0.0.1 -p 14000
  concoord remote nameserver node2.example.com:2222 -a 10.0.0.2 -b 10.0.0.1:14000 -n counterdomain.com
  concoord remote stop node1.example.com --port 14000";

#[derive(Args, Debug)]
pub struct RemoteArgs {
    #[command(subcommand)]
    pub action: RemoteAction,
}

#[derive(Subcommand, Debug)]
pub enum RemoteAction {
    /// Print the configuration and where it lives.
    Config,
    /// Use this private key file for SSH.
    Addsshkey {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Log in with this user name.
    Addusername {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Directory on the hosts for the binary, logs and PID files [default: ~/.concoord].
    Installdir {
        #[arg(value_name = "DIR")]
        dir: String,
    },
    /// Add a host (host or host:port); checks first that SSH can log in.
    Addnode {
        /// A configured host: name or address, with :PORT when SSH is not on 22
        #[arg(value_name = "HOST")]
        host: String,
        /// Add it without logging in
        #[arg(long)]
        no_check: bool,
    },
    /// Copy this concoord binary (or a docker image) to a host and check that it runs.
    Setup {
        /// A configured host: name or address, with :PORT when SSH is not on 22
        #[arg(value_name = "HOST")]
        host: String,
        /// Load this docker image there (docker save | docker load) instead of the binary
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
        /// A CA made by `concoord certs init DIR`: issue the host a replica certificate and
        /// send it, its key and the CA over ssh (files readable by the login user only);
        /// replicas started there with `concoord remote replica` then serve TLS
        #[arg(long, value_name = "DIR")]
        pki: Option<std::path::PathBuf>,
        /// The names the host's certificate covers (its -a address) [default: the host]
        #[arg(long = "tls-host", value_name = "NAME", requires = "pki")]
        tls_hosts: Vec<String>,
        /// Send this auth file too; replicas started there check identities with it
        #[arg(long = "auth-file", value_name = "FILE")]
        auth_file: Option<std::path::PathBuf>,
    },
    /// Start a replica on a host, detached: concoord remote replica HOST [replica flags].
    Replica {
        /// A configured host: name or address, with :PORT when SSH is not on 22
        #[arg(value_name = "HOST")]
        host: String,
        /// The flags of `concoord replica`
        #[arg(
            value_name = "FLAGS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        flags: Vec<String>,
    },
    /// Start a replica that serves DNS (-n DOMAIN required) on a host, detached.
    Nameserver {
        /// A configured host: name or address, with :PORT when SSH is not on 22
        #[arg(value_name = "HOST")]
        host: String,
        /// The flags of `concoord replica`
        #[arg(
            value_name = "FLAGS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        flags: Vec<String>,
    },
    /// Stop the replicas concoord started on a host (all, or the one on --port).
    Stop {
        /// A configured host: name or address, with :PORT when SSH is not on 22
        #[arg(value_name = "HOST")]
        host: String,
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
    },
    /// List the replicas concoord started on a host.
    Ps {
        /// A configured host: name or address, with :PORT when SSH is not on 22
        #[arg(value_name = "HOST")]
        host: String,
    },
    /// Store Route53 credentials on a host (0600) for its nameservers' -r.
    Route53 {
        /// A configured host: name or address, with :PORT when SSH is not on 22
        #[arg(value_name = "HOST")]
        host: String,
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[arg(value_name = "SECRET")]
        secret: String,
    },
}

/// `concoord replica`'s flags alone, to check the flags of `remote replica` before ssh.
#[derive(Parser, Debug)]
#[command(name = "concoord replica", no_binary_name = true)]
struct ReplicaFlags {
    #[command(flatten)]
    args: ReplicaArgs,
}

/// Checks remote replica flags as the remote `concoord replica` would; returns its port.
pub fn check_remote_flags(flags: &[String], nameserver: bool) -> Result<u16, CliError> {
    let parsed = ReplicaFlags::try_parse_from(flags)
        .map_err(|e| CliError::Usage(format!("replica flags: {}", first_line(&e.to_string()))))?;
    parsed.args.config()?;
    if nameserver && parsed.args.domainname.is_none() {
        return Err(CliError::Usage(
            "a nameserver needs -n DOMAIN (the domain it answers for)".into(),
        ));
    }
    Ok(parsed.args.port)
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

async fn run_remote(args: RemoteArgs) -> Result<(), CliError> {
    let mut remote = crate::remote::Remote::load()?;
    let lines = match args.action {
        RemoteAction::Config => remote.show(),
        RemoteAction::Addsshkey { file } => remote.add_ssh_key(&file)?,
        RemoteAction::Addusername { name } => remote.add_username(&name)?,
        RemoteAction::Installdir { dir } => remote.set_install_dir(&dir)?,
        RemoteAction::Addnode { host, no_check } => remote.add_node(&host, no_check).await?,
        RemoteAction::Setup {
            host,
            image,
            pki,
            tls_hosts,
            auth_file,
        } => {
            let mut lines = remote.setup(&host, image.as_deref()).await?;
            let security = crate::remote::commands::HostSecurity {
                pki,
                tls_hosts,
                auth_file,
            };
            lines.extend(remote.send_security(&host, &security).await?);
            lines
        }
        RemoteAction::Replica { host, flags } => {
            let port = check_remote_flags(&flags, false)?;
            remote.start(&host, "replica", &flags, port).await?
        }
        RemoteAction::Nameserver { host, flags } => {
            let port = check_remote_flags(&flags, true)?;
            remote.start(&host, "nameserver", &flags, port).await?
        }
        RemoteAction::Stop { host, port } => remote.stop(&host, port).await?,
        RemoteAction::Ps { host } => remote.list(&host).await?,
        RemoteAction::Route53 {
            host,
            key_id,
            secret,
        } => remote.route53(&host, &key_id, &secret).await?,
    };
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ReplicaArgs {
    /// Object type to serve: a built-in by dotted ConCoord name or short name
    /// (concoord.object.counter.Counter, counter), or a Python class of your own as
    /// module.Class (the module found on --object-path or PYTHONPATH) or FILE.py:Class
    #[arg(short = 'o', long = "objectname", value_name = "OBJ")]
    pub objectname: Option<String>,
    /// Directory searched before PYTHONPATH for the module of -o module.Class (repeatable)
    #[arg(long = "object-path", value_name = "DIR")]
    pub object_path: Vec<std::path::PathBuf>,
    /// Address (IP or host name) this replica listens on and advertises [default: 127.0.0.1,
    /// or the instance's private IP with --discover]
    #[arg(short = 'a', long = "addr")]
    pub addr: Option<String>,
    /// Port for clients and peers
    #[arg(short = 'p', long = "port", default_value_t = 14000, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// A member of a running group to join through ("host:port", a list "host:port, host:port"
    /// or the group's DNS domain)
    #[arg(short = 'b', long = "boot", value_name = "HOST:PORT")]
    pub boot: Option<String>,
    /// Find the group by EC2 tag (ec2:cluster=NAME): join the members that answer, or found
    /// the group when this instance comes first
    #[arg(
        long = "discover",
        value_name = "ec2:cluster=NAME",
        conflicts_with = "boot"
    )]
    pub discover: Option<String>,
    /// Instance metadata endpoint for --discover [default: the SDK's, 169.254.169.254]
    #[arg(
        long = "imds-endpoint",
        value_name = "URL",
        env = "CONCOORD_IMDS_ENDPOINT"
    )]
    pub imds_endpoint: Option<String>,
    /// Found the group instead of joining through -b when this names this replica's -a host
    /// (in full, or its first label such as a pod name); a replica with data on disk
    /// recovers from it either way
    #[arg(long = "found-if", value_name = "NAME", env = "CONCOORD_FOUND_IF")]
    pub found_if: Option<String>,
    /// Send log lines to a `concoord logdaemon`
    #[arg(short = 'l', long = "logger", value_name = "HOST:PORT")]
    pub logger: Option<String>,
    /// Serve DNS for this domain: A, SRV _concoord._tcp, TXT, NS and SOA from the view
    #[arg(short = 'n', long = "domainname", value_name = "DOMAIN")]
    pub domainname: Option<String>,
    /// Also keep a Route53 hosted zone for the domain (-n) in step with the view
    #[arg(short = 'r', long = "route53", requires = "domainname")]
    pub route53: bool,
    /// Address the nameserver listens on [default: the -a address when it is an IP, else 0.0.0.0]
    #[arg(long = "dns-addr", value_name = "IP")]
    pub dns_addr: Option<std::net::IpAddr>,
    /// Port the nameserver listens on (UDP and TCP); below 1024 needs root
    #[arg(long = "dns-port", value_name = "PORT", default_value_t = crate::dns::DEFAULT_PORT)]
    pub dns_port: u16,
    /// IP published in DNS for this replica instead of its -a address (e.g. a pod's IP)
    #[arg(long = "advertise-ip", value_name = "IP")]
    pub advertise_ip: Option<std::net::IpAddr>,
    /// Route53 hosted zone id [default: looked up by the domain name]
    #[arg(long = "route53-zone-id", value_name = "ID", requires = "route53")]
    pub route53_zone_id: Option<String>,
    /// Log the Route53 change batches instead of sending them
    #[arg(long = "route53-dry-run", requires = "route53")]
    pub route53_dry_run: bool,
    /// Keep the log and snapshots on disk (in --data-dir, default ./concoord-data-<addr>-<port>)
    #[arg(short = 'w', long = "writetodisk")]
    pub writetodisk: bool,
    /// Directory for the write-ahead log and snapshots (implies -w)
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Let test harnesses cut and restore this replica's links (never in production)
    #[arg(long = "allow-fault-injection", hide = true)]
    pub allow_fault_injection: bool,
    /// Debug logging
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Leader heartbeat period in milliseconds [default: 50]
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Election timeout in milliseconds (randomized up to twice this) [default: 500]
    #[arg(long, value_name = "MS")]
    pub election_ms: Option<u64>,
    /// Client session lease in milliseconds [default: 10000]
    #[arg(long, value_name = "MS")]
    pub session_lease_ms: Option<u64>,
    /// How long a joining replica (-b) keeps trying before giving up, in milliseconds [default: 30000]
    #[arg(long, value_name = "MS")]
    pub join_timeout_ms: Option<u64>,
    /// Snapshot the objects and compact the log every N slots (default 10000)
    #[arg(long = "snapshot-every", value_name = "SLOTS")]
    pub snapshot_every: Option<u64>,
    /// This replica's certificate (PEM, chain first): serve TLS 1.3 to clients and peers, and
    /// show it to peers (mutual TLS); needs --tls-key and --tls-ca
    #[arg(long = "tls-cert", value_name = "FILE", env = "CONCOORD_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long = "tls-key", value_name = "FILE", env = "CONCOORD_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The group's CA certificate (PEM): peers and client certificates must be signed by it
    #[arg(long = "tls-ca", value_name = "FILE", env = "CONCOORD_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The name the peers' certificates carry, checked instead of the address a peer is
    /// dialled at (one certificate for replicas whose addresses are not known in advance)
    #[arg(
        long = "tls-server-name",
        value_name = "NAME",
        env = "CONCOORD_TLS_SERVER_NAME",
        requires = "tls_cert"
    )]
    pub tls_server_name: Option<String>,
    /// Require clients to prove who they are, and give each identity a role: lines of
    /// 'token NAME ROLE SECRET' and 'certificate COMMON-NAME ROLE' (roles: admin, client,
    /// readonly). Re-read on SIGHUP and when the file changes
    #[arg(long = "auth-file", value_name = "FILE", env = "CONCOORD_AUTH_FILE")]
    pub auth_file: Option<std::path::PathBuf>,
    /// The token this replica shows when it links to peers or joins, for a group with an
    /// auth file and no TLS (an admin token); with TLS its certificate proves it
    #[arg(
        long = "token",
        value_name = "TOKEN",
        env = "CONCOORD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl ReplicaArgs {
    /// The replica's configuration, or the reason these flags cannot run.
    pub fn config(&self) -> Result<ReplicaConfig, CliError> {
        check_addr(&format!("{}:{}", self.addr(), self.port))
            .map_err(|e| CliError::Usage(format!("-a: {e}")))?;
        if let Some(boot) = &self.boot
            && !crate::dns::discover::is_domain(boot)
        {
            for one in boot.split(',') {
                check_addr(one.trim()).map_err(|e| CliError::Usage(format!("-b: {e}")))?;
            }
        }
        if let Some(spec) = &self.discover {
            spec.parse::<crate::ec2::discover::DiscoverSpec>()
                .map_err(|e| CliError::Usage(e.to_string()))?;
        }
        if let Some(logger) = &self.logger {
            check_addr(logger).map_err(|e| CliError::Usage(format!("-l: {e}")))?;
        }
        Ok(ReplicaConfig {
            advertise_ip: self.advertise_ip,
            object: self.objectname.clone(),
            object_path: self.object_path.clone(),
            addr: self.addr().to_string(),
            port: self.port,
            bootstrap: if self.founds() {
                None
            } else {
                self.boot.clone()
            },
            timing: self.timing()?,
            data_dir: self.data_dir.clone().or_else(|| {
                self.writetodisk.then(|| {
                    std::path::PathBuf::from(format!("concoord-data-{}-{}", self.addr(), self.port))
                })
            }),
            allow_fault_injection: self.allow_fault_injection,
            tls: crate::net::secure::TlsFiles::from_flags(
                self.tls_cert.clone(),
                self.tls_key.clone(),
                self.tls_ca.clone(),
            )
            .map_err(|e| CliError::Usage(e.to_string()))?
            .map(|files| crate::net::secure::TlsFiles {
                server_name: self.tls_server_name.clone().filter(|n| !n.is_empty()),
                ..files
            }),
            auth_file: self.auth_file.clone(),
            token: crate::auth::Token::from_arg(self.token.as_deref()),
            dns: self.dns()?,
        })
    }

    /// True when `--found-if` names this replica: it founds rather than joins (unless its
    /// disk says it is already a member, which the runtime checks first).
    pub fn founds(&self) -> bool {
        let Some(name) = self.found_if.as_deref().map(str::trim) else {
            return false;
        };
        let addr = self.addr();
        !name.is_empty() && (name == addr || addr.split('.').next() == Some(name))
    }

    /// The nameserver settings of `-n`, `--dns-*`, `--advertise-ip` and `-r`.
    fn dns(&self) -> Result<Option<crate::dns::DnsSettings>, CliError> {
        let Some(domain) = &self.domainname else {
            return Ok(None);
        };
        crate::dns::zone::parse_domain(domain).map_err(|e| CliError::Usage(format!("-n: {e}")))?;
        let ip = self.dns_addr.unwrap_or_else(|| {
            self.addr()
                .parse()
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        });
        Ok(Some(crate::dns::DnsSettings {
            domain: domain.clone(),
            listen: std::net::SocketAddr::new(ip, self.dns_port),
            route53: self.route53.then(|| crate::dns::route53::Route53Settings {
                zone_id: self.route53_zone_id.clone(),
                dry_run: self.route53_dry_run,
                ..Default::default()
            }),
        }))
    }

    fn addr(&self) -> &str {
        self.addr.as_deref().unwrap_or("127.0.0.1")
    }

    /// With `--discover`: this replica's address and whom to join, from EC2.
    async fn discover(&self, cfg: &mut ReplicaConfig) -> Result<(), CliError> {
        let Some(spec) = &self.discover else {
            return Ok(());
        };
        let spec: crate::ec2::discover::DiscoverSpec = spec
            .parse()
            .map_err(|e: crate::ec2::Ec2Error| CliError::Usage(e.to_string()))?;
        let found = crate::ec2::discover::discover(
            &spec,
            self.imds_endpoint.as_deref(),
            self.addr.as_deref(),
            self.port,
            crate::ec2::discover::Pacing::default(),
        )
        .await?;
        cfg.addr = found.addr;
        cfg.bootstrap = found.bootstrap.map(|members| members.join(", "));
        // The nameserver answers on the discovered address unless --dns-addr says otherwise.
        if let Some(dns) = &mut cfg.dns
            && self.dns_addr.is_none()
            && let Ok(ip) = cfg.addr.parse()
        {
            dns.listen.set_ip(ip);
        }
        if self.data_dir.is_none() && self.writetodisk {
            cfg.data_dir = Some(std::path::PathBuf::from(format!(
                "concoord-data-{}-{}",
                cfg.addr, cfg.port
            )));
        }
        Ok(())
    }

    fn timing(&self) -> Result<Timing, CliError> {
        let mut t = Timing::default();
        let ms = |flag: &str, v: u64| {
            if v == 0 {
                Err(CliError::Usage(format!("--{flag} must be at least 1")))
            } else {
                Ok(Duration::from_millis(v))
            }
        };
        if let Some(v) = self.heartbeat_ms {
            t.heartbeat = ms("heartbeat-ms", v)?;
        }
        if let Some(v) = self.election_ms {
            t.election = ms("election-ms", v)?;
        }
        if let Some(v) = self.session_lease_ms {
            t.session_lease = ms("session-lease-ms", v)?;
        }
        if let Some(v) = self.join_timeout_ms {
            t.join_timeout = ms("join-timeout-ms", v)?;
        }
        if let Some(v) = self.snapshot_every {
            if v == 0 {
                return Err(CliError::Usage(
                    "--snapshot-every must be at least 1".into(),
                ));
            }
            t.snapshot_every = v;
        }
        if t.election <= t.heartbeat {
            return Err(CliError::Usage(format!(
                "the election timeout ({:?}) must be longer than the heartbeat ({:?})",
                t.election, t.heartbeat
            )));
        }
        Ok(t)
    }
}

/// How a client reaches a replica that serves TLS, and proves who it is to one with an
/// auth file.
#[derive(Args, Debug, Clone, Default)]
pub struct CredentialArgs {
    /// The group's CA certificate (PEM): connect over TLS and check the replicas against it
    #[arg(long = "ca", value_name = "FILE", env = "CONCOORD_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to show the replicas; needs --key and --ca
    #[arg(
        long = "cert",
        value_name = "FILE",
        env = "CONCOORD_CERT",
        requires = "ca"
    )]
    pub cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM)
    #[arg(
        long = "key",
        value_name = "FILE",
        env = "CONCOORD_KEY",
        requires = "ca"
    )]
    pub key: Option<std::path::PathBuf>,
    /// A bearer token for replicas with an auth file (prefer the environment variable: a
    /// command line is visible to other users of the machine)
    #[arg(
        long = "token",
        value_name = "TOKEN",
        env = "CONCOORD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Check the replicas' certificates for this name instead of the addresses dialled
    /// (replicas sharing one certificate, as `concoord ec2 launch --pki` makes)
    #[arg(
        long = "tls-server-name",
        value_name = "NAME",
        env = "CONCOORD_TLS_SERVER_NAME",
        requires = "ca"
    )]
    pub tls_server_name: Option<String>,
}

impl CredentialArgs {
    /// The client's TLS (none: plaintext) and token; unreadable files are a usage error.
    pub fn load(&self) -> Result<crate::client::Credentials, CliError> {
        let tls = match &self.ca {
            None => None,
            Some(ca) => Some(
                crate::net::secure::ClientTls::load(ca, self.cert.as_deref(), self.key.as_deref())
                    .map_err(|e| CliError::Usage(e.to_string()))?
                    .with_server_name(self.tls_server_name.clone()),
            ),
        };
        Ok(crate::client::Credentials {
            tls,
            token: crate::auth::Token::from_arg(self.token.as_deref()),
        })
    }

    /// Default client options with these credentials.
    pub fn client_options(&self) -> Result<crate::client::ClientOptions, CliError> {
        let creds = self.load()?;
        Ok(crate::client::ClientOptions {
            tls: creds.tls,
            token: creds.token,
            ..crate::client::ClientOptions::default()
        })
    }
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Replica addresses: "host:port, host:port" (one is enough), or the group's DNS domain
    #[arg(value_name = "ADDRS")]
    pub addrs: String,
    /// DNS server to ask for the domain's SRV records instead of the system's
    #[arg(long = "dns-server", value_name = "HOST:PORT", env = crate::dns::discover::DNS_SERVER_ENV)]
    pub dns_server: Option<String>,
    /// Create object NAME of type TYPE; the remaining ARGs go to its constructor
    #[arg(long, num_args = 2, value_names = ["NAME", "TYPE"], conflicts_with_all = ["delete", "list"])]
    pub create: Option<Vec<String>>,
    /// Delete object NAME
    #[arg(long, value_name = "NAME", conflicts_with = "list")]
    pub delete: Option<String>,
    /// List the objects as {name: type}
    #[arg(long)]
    pub list: bool,
    /// Give up after this long, also for blocking calls [default: 30s, blocking calls wait]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Debug logging on stderr
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Keep the session, and whatever the call acquired, until interrupted (Ctrl-C)
    #[arg(long)]
    pub hold: bool,
    #[command(flatten)]
    pub creds: CredentialArgs,
    /// OBJECT METHOD [ARG...]; with --create, the constructor's ARGs
    #[arg(value_name = "ARGS", allow_negative_numbers = true)]
    pub rest: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// Replica addresses: "host:port, host:port", or the group's DNS domain
    #[arg(value_name = "ADDRS")]
    pub addrs: String,
    /// The lock's object name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Type of the lock when it has to be created (Lock, RLock, Semaphore, BoundedSemaphore)
    #[arg(long = "type", value_name = "TYPE", default_value = "Lock")]
    pub type_name: String,
    /// Fail at once when another session holds it, instead of waiting
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting for the lock after this long [default: wait]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub creds: CredentialArgs,
    /// The command to run while holding the lock (after `--`); none: hold until Ctrl-C
    #[arg(value_name = "COMMAND", last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MembershipArgs {
    #[command(subcommand)]
    pub action: MembershipAction,
    /// How long to keep trying (elections and hand-overs included)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
}

#[derive(Subcommand, Debug)]
pub enum MembershipAction {
    /// Add a replica that listens (or will listen) at REPLICA ("host:port")
    Add {
        #[arg(value_name = "ADDRS")]
        addrs: String,
        #[arg(value_name = "REPLICA")]
        replica: String,
        #[command(flatten)]
        creds: CredentialArgs,
    },
    /// Remove a member, by id or "host:port"; a leader hands over leadership first
    Remove {
        #[arg(value_name = "ADDRS")]
        addrs: String,
        #[arg(value_name = "REPLICA")]
        replica: String,
        #[command(flatten)]
        creds: CredentialArgs,
    },
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    #[arg(value_enum)]
    pub kind: ProbeKind,
    /// The replica to ask
    #[arg(long, default_value = "127.0.0.1:14000", value_name = "HOST:PORT")]
    pub addr: String,
    /// How long to wait for each answer
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub creds: CredentialArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Answers and has not halted
    Live,
    /// A voting member of the view, with a leader, caught up
    Ready,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Replica addresses: "host:port, host:port"; the members they report are asked too
    #[arg(value_name = "ADDRS")]
    pub addrs: String,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each replica
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub creds: CredentialArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Replica addresses: "host:port, host:port"
    #[arg(value_name = "ADDRS")]
    pub addrs: String,
    /// Client counts to run, one round each
    #[arg(long, value_delimiter = ',', default_value = "1,8,64", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: Vec<u32>,
    /// Length of each round (e.g. 10s, 500ms, 1m)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Counter object to increment, created if missing; or a user type to compare with the
    /// built-in Counter in the same run: module.Class (found on --object-path or
    /// PYTHONPATH) or FILE.py:Class, whose `increment()` is called
    #[arg(long, default_value = "counter")]
    pub object: String,
    /// Directory searched before PYTHONPATH for the module of --object module.Class
    #[arg(long = "object-path", value_name = "DIR")]
    pub object_path: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub creds: CredentialArgs,
}

#[derive(Args, Debug)]
pub struct WorkloadArgs {
    /// Replica addresses: "host:port, host:port"
    #[arg(value_name = "ADDRS")]
    pub addrs: String,
    /// Concurrent clients, each with its own session and connection
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clients: u32,
    /// How long the clients keep calling (e.g. 10s, 500ms)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Counter object to use; created if missing
    #[arg(long, default_value = "counter")]
    pub object: String,
    /// Every Nth call of a client is a read (0: increments only)
    #[arg(long, default_value_t = 4)]
    pub read_every: u32,
    /// Give up on one call (its outcome is then unknown) after this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// Pause of each client between its calls (keeps the history small enough to check)
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub think: Duration,
    #[command(flatten)]
    pub creds: CredentialArgs,
}

#[derive(Args, Debug)]
pub struct LogdaemonArgs {
    /// Port to listen on
    #[arg(short = 'p', long = "port", default_value_t = 12000)]
    pub port: u16,
    /// Address to listen on
    #[arg(short = 'a', long = "addr", default_value = "127.0.0.1")]
    pub addr: String,
}

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Number of replicas
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=99))]
    pub replicas: u16,
    /// Port of the first replica; the others follow
    #[arg(short = 'p', long = "port", default_value_t = 14000, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Object type of the default object
    #[arg(
        short = 'o',
        long = "objectname",
        value_name = "OBJ",
        default_value = "counter"
    )]
    pub objectname: String,
    /// Domain the cluster's nameserver answers for
    #[arg(
        short = 'n',
        long = "domainname",
        value_name = "DOMAIN",
        default_value = "concoord.test"
    )]
    pub domainname: String,
    /// Port of the cluster's nameserver on 127.0.0.1 (UDP and TCP); 0 turns it off
    #[arg(long = "dns-port", value_name = "PORT", default_value_t = 15353)]
    pub dns_port: u16,
    /// Send log lines to a `concoord logdaemon`
    #[arg(short = 'l', long = "logger", value_name = "HOST:PORT")]
    pub logger: Option<String>,
    /// Debug logging
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
}

/// Why a command failed; `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Logging(#[from] LoggingError),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Ec2(#[from] crate::ec2::Ec2Error),
    #[error("{0}")]
    Remote(#[from] crate::remote::RemoteError),
    /// A command run by `concoord lock` exited with this code (it said why itself).
    #[error("the command exited with status {0}")]
    ChildExit(u8),
}

/// Parses `10s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

/// Stores one half of the Route53 credentials and says where.
fn store_route53(
    store: impl FnOnce(&std::path::Path) -> Result<(), credentials::CredentialsError>,
) -> Result<(), CliError> {
    let path = credentials::path().map_err(|e| CliError::Failed(e.to_string()))?;
    store(&path).map_err(|e| CliError::Failed(e.to_string()))?;
    println!("Stored in {} (readable by you only)", path.display());
    Ok(())
}

/// Serving replicas run user-defined objects in a worker process of their own binary.
fn isolate_user_code() {
    match std::env::current_exe() {
        Ok(exe) => crate::object::sandbox::isolate_in_worker_process(exe),
        Err(e) => eprintln!(
            "cannot find this binary ({e}): user-defined objects run inside the replica process"
        ),
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Replica(args) => {
            isolate_user_code();
            let mut cfg = args.config()?;
            logging::init(args.debug, args.logger.clone())?;
            args.discover(&mut cfg).await?;
            // SIGTERM and Ctrl-C are the runtime's: a leader hands over before it exits.
            runtime::run_replica(cfg).await?;
            Ok(())
        }
        Command::Local(args) => {
            isolate_user_code();
            if let Some(logger) = &args.logger {
                check_addr(logger).map_err(|e| CliError::Usage(format!("-l: {e}")))?;
            }
            logging::init(args.debug, args.logger.clone())?;
            let object = Some(args.objectname.clone());
            let dns = (args.dns_port != 0).then(|| crate::dns::DnsSettings {
                domain: args.domainname.clone(),
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], args.dns_port)),
                route53: None,
            });
            runtime::run_local(usize::from(args.replicas), args.port, object, dns).await?;
            Ok(())
        }
        Command::Call(args) => {
            logging::init_tool(args.debug)?;
            if let Some(server) = &args.dns_server {
                let addr = crate::dns::discover::parse_server(server)
                    .await
                    .map_err(|e| CliError::Usage(format!("--dns-server: {e}")))?;
                crate::dns::discover::use_server(addr);
            }
            tools::call::run(&args).await
        }
        Command::Lock(args) => {
            logging::init_tool(false)?;
            tools::lock::run(&args).await
        }
        Command::Status(args) => {
            logging::init_tool(false)?;
            tools::status::run(&args).await
        }
        Command::Type(args) => {
            logging::init_tool(false)?;
            tools::types::run(&args).await
        }
        Command::Object(args) => {
            logging::init_tool(false)?;
            tools::proxygen::run(&args)
        }
        Command::Membership(args) => {
            logging::init_tool(false)?;
            tools::membership::run(&args).await
        }
        Command::Probe(args) => tools::probe::run(&args).await,
        Command::Bench(args) => {
            logging::init_tool(false)?;
            tools::bench::run(&args).await
        }
        Command::Workload(args) => {
            logging::init_tool(false)?;
            tools::workload::run(&args).await
        }
        Command::Logdaemon(args) => tools::logdaemon::run(&args).await,
        Command::Route53id { key } => store_route53(|p| credentials::store_key_id(p, &key)),
        Command::Route53key { secret } => store_route53(|p| credentials::store_secret(p, &secret)),
        Command::Ec2(args) => {
            logging::init_tool(false)?;
            crate::ec2::cli::run(args).await
        }
        Command::Remote(args) => run_remote(args).await,
        Command::Certs(args) => tools::certs::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("concoord").chain(args.iter().copied()))
    }

    fn replica(args: &[&str]) -> ReplicaArgs {
        match parse(&[&["replica"], args].concat()).unwrap().command {
            Command::Replica(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replica_keeps_the_seed_flags() {
        let r = replica(&[
            "-o",
            "concoord.object.counter.Counter",
            "-b",
            "127.0.0.1:14000",
            "-a",
            "127.0.0.1",
            "-p",
            "14001",
            "-l",
            "127.0.0.1:12000",
            "-d",
        ]);
        assert!(r.debug);
        let cfg = r.config().unwrap();
        assert_eq!(
            cfg.object.as_deref(),
            Some("concoord.object.counter.Counter")
        );
        assert_eq!(cfg.bootstrap.as_deref(), Some("127.0.0.1:14000"));
        assert_eq!(cfg.advertised(), "127.0.0.1:14001");

        let cfg = replica(&[]).config().unwrap();
        assert_eq!((cfg.addr.as_str(), cfg.port), ("127.0.0.1", 14000));
        assert_eq!(cfg.object, None);
        assert_eq!(cfg.bootstrap, None);

        let long = replica(&[
            "--objectname",
            "counter",
            "--addr",
            "10.0.0.1",
            "--port",
            "5",
            "--boot",
            "h:1",
        ]);
        assert_eq!(long.config().unwrap().advertised(), "10.0.0.1:5");
    }

    #[test]
    fn replica_timing_flags() {
        let cfg = replica(&[
            "--heartbeat-ms",
            "20",
            "--election-ms",
            "300",
            "--session-lease-ms",
            "4000",
            "--join-timeout-ms",
            "1500",
        ])
        .config()
        .unwrap();
        assert_eq!(cfg.timing.heartbeat, Duration::from_millis(20));
        assert_eq!(cfg.timing.election, Duration::from_millis(300));
        assert_eq!(cfg.timing.session_lease, Duration::from_secs(4));
        assert_eq!(cfg.timing.join_timeout, Duration::from_millis(1500));
        assert!(replica(&["--heartbeat-ms", "0"]).config().is_err());
        assert!(
            replica(&["--heartbeat-ms", "600", "--election-ms", "500"])
                .config()
                .is_err()
        );
    }

    #[test]
    fn write_to_disk_picks_a_data_directory() {
        let cfg = replica(&["-w", "-p", "14005"]).config().unwrap();
        assert_eq!(
            cfg.data_dir,
            Some(std::path::PathBuf::from("concoord-data-127.0.0.1-14005"))
        );
        let cfg = replica(&["--data-dir", "/var/lib/cc"]).config().unwrap();
        assert_eq!(cfg.data_dir, Some(std::path::PathBuf::from("/var/lib/cc")));
        assert_eq!(replica(&[]).config().unwrap().data_dir, None);
    }

    #[test]
    fn nameserver_flags() {
        assert_eq!(replica(&[]).config().unwrap().dns, None);
        let dns = replica(&[
            "-n",
            "counterdomain.com",
            "-a",
            "127.0.0.2",
            "--dns-port",
            "5353",
        ])
        .config()
        .unwrap()
        .dns
        .unwrap();
        assert_eq!(dns.domain, "counterdomain.com");
        assert_eq!(dns.listen, "127.0.0.2:5353".parse().unwrap());
        assert_eq!(dns.route53, None);
        let cfg = replica(&[
            "-n",
            "counterdomain.com",
            "-a",
            "pod-0.peers",
            "-r",
            "--route53-zone-id",
            "Z123",
            "--route53-dry-run",
            "--advertise-ip",
            "10.1.2.3",
        ])
        .config()
        .unwrap();
        assert_eq!(cfg.advertise_ip, Some("10.1.2.3".parse().unwrap()));
        let dns = cfg.dns.unwrap();
        assert_eq!(dns.listen, "0.0.0.0:53".parse().unwrap());
        let r53 = dns.route53.unwrap();
        assert_eq!((r53.zone_id.as_deref(), r53.dry_run), (Some("Z123"), true));
        // -r needs the domain; a bad domain is refused.
        assert!(parse(&["replica", "-r"]).is_err());
        assert!(replica(&["-n", "a..b"]).config().is_err());
        // -b takes a domain (joins through its SRV records).
        let cfg = replica(&["-b", "counterdomain.com"]).config().unwrap();
        assert_eq!(cfg.bootstrap.as_deref(), Some("counterdomain.com"));
        // ... or a list of members, tried in turn.
        let cfg = replica(&["-b", "10.0.0.1:14000, 10.0.0.2:14000"])
            .config()
            .unwrap();
        assert_eq!(
            cfg.bootstrap.as_deref(),
            Some("10.0.0.1:14000, 10.0.0.2:14000")
        );
        assert!(replica(&["-b", "10.0.0.1:14000, nohost"]).config().is_err());
        // --discover takes ec2:cluster=NAME and excludes -b.
        let r = replica(&["--discover", "ec2:cluster=prod"]);
        assert_eq!(r.discover.as_deref(), Some("ec2:cluster=prod"));
        assert!(r.config().is_ok());
        assert!(replica(&["--discover", "ec2:prod"]).config().is_err());
        assert!(parse(&["replica", "--discover", "ec2:cluster=a", "-b", "h:1"]).is_err());
    }

    #[test]
    fn found_if_names_this_replica() {
        let peers = "demo-peers.ns.svc.cluster.local:14000";
        let a = "demo-0.demo-peers.ns.svc.cluster.local";
        let cfg = |found: &str, addr: &str| {
            replica(&["-a", addr, "-b", peers, "--found-if", found])
                .config()
                .unwrap()
                .bootstrap
        };
        // Pod 0 by pod name or by full host name founds; everyone else joins.
        assert_eq!(cfg("demo-0", a), None);
        assert_eq!(cfg(a, a), None);
        assert_eq!(
            cfg("demo-0", "demo-1.demo-peers.ns.svc.cluster.local").as_deref(),
            Some(peers)
        );
        // Cleared after bootstrap: an empty name founds nothing.
        assert_eq!(cfg("", a).as_deref(), Some(peers));
        assert_eq!(cfg("demo", a).as_deref(), Some(peers));
        let Command::Probe(p) = parse(&["probe", "ready"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (p.kind, p.addr.as_str()),
            (ProbeKind::Ready, "127.0.0.1:14000")
        );
        assert!(parse(&["probe", "dead"]).is_err());
    }

    #[test]
    fn replica_rejects_bad_addresses() {
        assert!(replica(&["-b", "nohost"]).config().is_err());
        assert!(replica(&["-l", "x"]).config().is_err());
        assert!(replica(&["-a", "a b"]).config().is_err());
        assert!(parse(&["replica", "-p", "0"]).is_err());
        assert!(parse(&["replica", "-p", "99999"]).is_err());
        assert!(parse(&["replica", "--bogus"]).is_err());
    }

    #[test]
    fn call_forms() {
        let Command::Call(c) = parse(&[
            "call",
            "h:1, h:2",
            "counter",
            "increment",
            "-5",
            "--",
            "--x",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(c.addrs, "h:1, h:2");
        assert_eq!(c.rest, ["counter", "increment", "-5", "--x"]);
        assert!(c.create.is_none() && c.delete.is_none() && !c.list);

        let Command::Call(c) = parse(&["call", "h:1", "--create", "q", "Queue", "3"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(c.create.unwrap(), ["q", "Queue"]);
        assert_eq!(c.rest, ["3"]);

        let Command::Call(c) = parse(&["call", "h:1", "lk", "acquire", "--hold"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(c.hold);
        assert_eq!(c.rest, ["lk", "acquire"]);
        let Command::Call(c) = parse(&["call", "h:1", "--list"]).unwrap().command else {
            panic!()
        };
        assert!(c.list);
        let Command::Call(c) = parse(&["call", "--timeout", "2s", "h:1", "--delete", "q"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(c.delete.as_deref(), Some("q"));
        assert_eq!(c.timeout, Some(Duration::from_secs(2)));
        assert!(parse(&["call", "h:1", "--list", "--delete", "q"]).is_err());
        assert!(parse(&["call"]).is_err());
    }

    #[test]
    fn other_subcommands() {
        let Command::Bench(b) = parse(&["bench", "h:1", "--clients", "1,4", "--duration", "500ms"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(b.clients, [1, 4]);
        assert_eq!(b.duration, Duration::from_millis(500));
        assert_eq!(b.object, "counter");
        let Command::Bench(b) = parse(&["bench", "h:1"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (b.clients, b.duration),
            (vec![1, 8, 64], Duration::from_secs(10))
        );
        assert!(parse(&["bench", "h:1", "--clients", "0"]).is_err());

        let Command::Status(s) = parse(&["status", "h:1", "--json"]).unwrap().command else {
            panic!()
        };
        assert!(s.json);
        let Command::Logdaemon(l) = parse(&["logdaemon", "-p", "9000"]).unwrap().command else {
            panic!()
        };
        assert_eq!(l.port, 9000);
        let Command::Local(l) = parse(&["local"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (l.replicas, l.port, l.objectname.as_str()),
            (3, 14000, "counter")
        );
        let Command::Local(l) = parse(&["local", "--replicas", "5", "-p", "15000", "-o", "Lock"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (l.replicas, l.port, l.objectname.as_str()),
            (5, 15000, "Lock")
        );
        assert!(parse(&["local", "--replicas", "0"]).is_err());
    }

    #[test]
    fn remote_subcommands_take_replica_flags_after_the_host() {
        let Command::Remote(r) = parse(&[
            "remote",
            "replica",
            "node1:2222",
            "-o",
            "counter",
            "-p",
            "14001",
            "-b",
            "10.0.0.1:14000",
            "--data-dir",
            "a b",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        let RemoteAction::Replica { host, flags } = r.action else {
            panic!()
        };
        assert_eq!(host, "node1:2222");
        assert_eq!(
            flags,
            [
                "-o",
                "counter",
                "-p",
                "14001",
                "-b",
                "10.0.0.1:14000",
                "--data-dir",
                "a b"
            ]
        );
        assert_eq!(check_remote_flags(&flags, false).unwrap(), 14001);
        // The default port, as the remote replica would use it.
        assert_eq!(check_remote_flags(&[], false).unwrap(), 14000);
        // A nameserver needs its domain; bad flags are refused before any ssh.
        let e = check_remote_flags(&[], true).unwrap_err().to_string();
        assert!(e.contains("-n DOMAIN"), "{e}");
        let ns = ["-n".to_string(), "counterdomain.com".to_string()];
        assert!(check_remote_flags(&ns, true).is_ok());
        let e = check_remote_flags(&["--bogus".to_string()], false).unwrap_err();
        assert!(e.to_string().contains("--bogus"), "{e}");
        assert!(check_remote_flags(&["-b".to_string(), "nohost".to_string()], false).is_err());

        let Command::Remote(r) = parse(&["remote", "stop", "h", "--port", "5"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(matches!(r.action, RemoteAction::Stop { port: Some(5), .. }));
        let Command::Remote(r) = parse(&["remote", "setup", "h", "--image", "cc:1"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(matches!(r.action, RemoteAction::Setup { image: Some(ref i), .. } if i == "cc:1"));
        assert!(parse(&["remote", "route53", "h", "KEY"]).is_err());
        assert!(parse(&["remote", "addnode"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
