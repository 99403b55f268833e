//! A real OpenSSH server for the `concoord remote` tests: /usr/sbin/sshd on 127.0.0.1 on a
//! free port, with its own sshd_config, host key and authorized_keys in a temp dir, a client
//! key made by ssh-keygen, and a CONCOORD_CONFIG_DIR of its own for the CLI. The "remote"
//! host is this machine, logged into as the current user. Dropping it kills sshd and every
//! replica the test started through it, and removes the temp dir, even when a test fails.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The concoord binary under test: Cargo's, unless CONCOORD_TEST_BIN names another (e.g.
/// when several checkouts share one target directory and overwrite its `concoord`).
pub fn bin() -> String {
    std::env::var("CONCOORD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_concoord").into())
}

/// Where sshd is, unless CONCOORD_SSHD says otherwise.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The sshd binary, or a message naming the package that provides it.
pub fn find_sshd(path: &Path) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(format!(
            "missing: {} — the remote tests need an OpenSSH server: install the Debian package openssh-server (and openssh-client for ssh and ssh-keygen)",
            path.display()
        ))
    }
}

/// Runs a command, killing it after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output();
                panic!("{cmd:?} did not finish within {limit:?}: {out:?}");
            }
        }
    }
    child.wait_with_output().expect("collect output")
}

fn keygen(path: &Path) {
    let out = run_bounded(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "concoord-test", "-f"])
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "ssh-keygen (Debian package openssh-client): {out:?}"
    );
}

/// The current user's login name (sshd logs in as this user).
pub fn user_name() -> String {
    let out = run_bounded(Command::new("id").arg("-un"), Duration::from_secs(5));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub struct SshServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub user: String,
    child: Option<Child>,
}

impl SshServer {
    /// Starts sshd and waits until it accepts connections.
    pub fn start() -> SshServer {
        let sshd = find_sshd(Path::new(
            &std::env::var("CONCOORD_SSHD").unwrap_or_else(|_| SSHD.into()),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::Builder::new()
            .prefix("concoord-remote-test-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        keygen(&d.join("wrong_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let root = user_name() == "root";
        if root {
            // sshd started as root insists on its privilege separation directory (the
            // Debian service creates it at boot; a bare container has none).
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let port = free_port();
        let config = format!(
            "Port {port}
ListenAddress 127.0.0.1
HostKey {hk}
PidFile {pid}
AuthorizedKeysFile {ak}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel VERBOSE
",
            hk = d.join("host_key").display(),
            pid = d.join("sshd.pid").display(),
            ak = d.join("authorized_keys").display(),
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let log = std::fs::File::create(d.join("sshd.log")).expect("sshd.log");
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", sshd.display()));
        let mut server = SshServer {
            port,
            dir,
            user: user_name(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            let exited = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "sshd did not start ({exited:?}); its log:\n{}",
                    server.sshd_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::create_dir_all(server.config_dir()).expect("config dir");
        server
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `127.0.0.1:PORT`, as given to `concoord remote`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn config_dir(&self) -> PathBuf {
        self.path("config")
    }

    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// Runs `concoord ARGS` with this server's config dir.
    pub fn cc(&self, args: &[&str]) -> Output {
        run_bounded(
            Command::new(bin())
                .args(args)
                .env("CONCOORD_CONFIG_DIR", self.config_dir())
                .env_remove("XDG_CONFIG_HOME"),
            Duration::from_secs(120),
        )
    }

    /// Runs `concoord ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cc(args);
        assert!(
            out.status.success(),
            "concoord {args:?} failed: {}\nsshd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.sshd_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `concoord ARGS`, asserts failure with exit status 1 and one line on stderr,
    /// returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cc(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "concoord {args:?} should fail; stdout {}, stderr {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        stderr.trim().to_string()
    }

    /// Configures the good key, this user and the node.
    pub fn configure(&self) {
        self.ok(&[
            "remote",
            "addsshkey",
            self.path("client_key").to_str().unwrap(),
        ]);
        self.ok(&["remote", "addusername", &self.user]);
        self.ok(&["remote", "addnode", &self.host()]);
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills, on drop, every process recorded in the PID files of a "remote" install dir (the
/// remote host is this machine), in case the test fails before `concoord remote stop`.
pub struct StartedGuard {
    pub install_dir: PathBuf,
}

impl Drop for StartedGuard {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.install_dir.join("run")) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(id) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let id = id.trim();
            if let Some(container) = id.strip_prefix("docker:") {
                let _ = Command::new("docker")
                    .args(["rm", "-f", container])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            } else if let Ok(pid) = id.parse::<u32>() {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

/// A TCP port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A port free for both TCP and UDP on 127.0.0.1 a moment ago (for a nameserver).
pub fn free_dns_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A FROM-scratch image holding the concoord binary under test (stripped) and the shared
/// libraries it links, built from files on this host (nothing is pulled). Removed on drop.
pub struct TestImage {
    pub name: String,
    _context: tempfile::TempDir,
}

impl TestImage {
    pub fn build() -> TestImage {
        let version = run_bounded(
            Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]),
            Duration::from_secs(30),
        );
        assert!(
            version.status.success(),
            "the docker engine is not reachable: {}",
            String::from_utf8_lossy(&version.stderr)
        );
        let context = tempfile::Builder::new()
            .prefix("concoord-remote-image-")
            .tempdir()
            .expect("temp dir");
        let root = context.path().join("rootfs");
        std::fs::create_dir_all(&root).expect("rootfs");
        let bin = bin();
        let out = run_bounded(
            Command::new("strip")
                .arg("-o")
                .arg(root.join("concoord"))
                .arg(&bin),
            Duration::from_secs(60),
        );
        if !out.status.success() {
            std::fs::copy(&bin, root.join("concoord")).expect("copy the binary");
        }
        // The dynamic libraries and loader, at the paths the binary asks for.
        let ldd = run_bounded(Command::new("ldd").arg(&bin), Duration::from_secs(30));
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let path = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            if let Some(path) = path {
                let dest = root.join(path.strip_prefix("/").expect("absolute"));
                std::fs::create_dir_all(dest.parent().expect("parent")).expect("lib dir");
                std::fs::copy(&path, &dest).expect("copy a library");
            }
        }
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/concoord\"]\n",
        )
        .expect("Dockerfile");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("concoord-remote-test-{}-{nanos}:t", std::process::id());
        let out = run_bounded(
            Command::new("docker")
                .args(["build", "-q", "-t", &name])
                .arg(context.path()),
            Duration::from_secs(300),
        );
        assert!(out.status.success(), "docker build: {out:?}");
        TestImage {
            name,
            _context: context,
        }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
