//! The docker CLI as the tests use it: a check that docker is there, the images built once
//! per run, and networks, volumes and containers that remove themselves when dropped
//! (also when a test fails), all named with a prefix unique to this run.

use crate::E2eError;
use crate::process::{self, Output};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Every docker resource the suite makes starts with this.
pub const PREFIX: &str = "cce2e";
/// The replica image the suite runs (built from the top-level Dockerfile).
pub const REPLICA_IMAGE: &str = concat!("concoord/replica:", env!("CARGO_PKG_VERSION"));
/// The image with the host's dig and the libraries it needs.
pub const DIG_IMAGE: &str = "cce2e/dig:dev";

/// Plain docker commands (inspect, stop, network ...).
const QUICK: Duration = Duration::from_secs(60);
/// Compiling the static binary may take long on a small machine.
const BUILD_LIMIT: Duration = Duration::from_secs(1800);

/// Runs `docker args` and returns its stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> Result<String, E2eError> {
    docker_within(args, QUICK)
}

pub fn docker_within(args: &[&str], limit: Duration) -> Result<String, E2eError> {
    let out = process::run("docker", args, limit)?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(failed(args, &out))
    }
}

fn failed(args: &[&str], out: &Output) -> E2eError {
    E2eError::Failed {
        command: format!("docker {}", args.join(" ")),
        code: out.code,
        stderr: out.stderr.trim().to_string(),
    }
}

/// Fails with what is missing unless the docker CLI and daemon both answer.
pub fn require_docker() -> Result<(), E2eError> {
    let out = process::run(
        "docker",
        &["version", "--format", "{{.Server.Version}}"],
        QUICK,
    )
    .map_err(|e| match e {
        E2eError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            E2eError::Missing(
                "the docker CLI ('docker' is not on PATH; Debian package docker.io). \
                 The docker e2e suite needs a docker engine and does not skip without one"
                    .into(),
            )
        }
        other => other,
    })?;
    if !out.success() {
        return Err(E2eError::Missing(format!(
            "a docker daemon that answers ('docker version' said: {}). \
             The docker e2e suite needs a docker engine and does not skip without one",
            out.stderr.trim()
        )));
    }
    Ok(())
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Set to 1 to use the replica image as it is instead of rebuilding it first.
pub const SKIP_BUILD_ENV: &str = "CONCOORD_E2E_SKIP_BUILD";

/// Builds the replica image with e2e/docker/build-images.sh, once per test process
/// (unless `CONCOORD_E2E_SKIP_BUILD=1`: then it must exist already).
pub fn replica_image() -> Result<&'static str, E2eError> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        require_docker().map_err(|e| e.to_string())?;
        if std::env::var(SKIP_BUILD_ENV).is_ok_and(|v| v == "1") {
            return docker(&["image", "inspect", "--format", "{{.Id}}", REPLICA_IMAGE])
                .map(|_| eprintln!("[e2e] using the existing {REPLICA_IMAGE} ({SKIP_BUILD_ENV}=1)"))
                .map_err(|e| format!("{SKIP_BUILD_ENV}=1 but there is no {REPLICA_IMAGE}: {e}"));
        }
        let script = repo_root().join("e2e/docker/build-images.sh");
        let script = script.to_string_lossy();
        let started = std::time::Instant::now();
        let out =
            process::run("bash", &[&script, "replica"], BUILD_LIMIT).map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!(
                "{script} failed ({:?}):\n{}\n{}",
                out.code, out.stdout, out.stderr
            ));
        }
        eprintln!(
            "[e2e] image built in {:.1}s: {}",
            started.elapsed().as_secs_f64(),
            out.stdout.trim()
        );
        Ok(())
    });
    result
        .clone()
        .map(|()| REPLICA_IMAGE)
        .map_err(E2eError::Image)
}

/// Builds `DIG_IMAGE` from the host's dig and the shared libraries `ldd` lists, once per
/// test process (nothing can be pulled, and the replica image has no tools).
pub fn dig_image() -> Result<&'static str, E2eError> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| build_dig_image().map_err(|e| e.to_string()));
    result.clone().map(|()| DIG_IMAGE).map_err(E2eError::Image)
}

fn build_dig_image() -> Result<(), E2eError> {
    require_docker()?;
    let dig = ["/usr/bin/dig", "/bin/dig"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| E2eError::Missing("dig (Debian package bind9-dnsutils)".into()))?;
    let ldd = process::run("ldd", &[dig], QUICK)?;
    if !ldd.success() {
        return Err(E2eError::Missing(format!("ldd of {dig}: {}", ldd.stderr)));
    }
    let context = TempDir::new("dig")?;
    let mut files = vec![PathBuf::from(dig)];
    files.extend(libraries_in(&ldd.stdout));
    for file in &files {
        let relative = file.strip_prefix("/").unwrap_or(file);
        let target = context.path.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        // Copies what a symlink points to, under the name the loader asks for.
        std::fs::copy(file, &target).map_err(|e| io(file, e))?;
    }
    let dockerfile = format!("FROM scratch\nCOPY . /\nENTRYPOINT [\"{dig}\"]\n");
    let dockerfile_path = context.path.join("Dockerfile");
    std::fs::write(&dockerfile_path, dockerfile).map_err(|e| io(&dockerfile_path, e))?;
    let dir = context.path.to_string_lossy().into_owned();
    docker_within(&["build", "--quiet", "-t", DIG_IMAGE, &dir], BUILD_LIMIT)?;
    Ok(())
}

/// The absolute library paths in `ldd` output (`libx.so => /lib/.../libx.so (0x..)` and
/// the loader's `/lib64/ld-linux-x86-64.so.2 (0x..)`).
pub fn libraries_in(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn io(path: &Path, source: std::io::Error) -> E2eError {
    E2eError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A prefix unique to this process and call: `cce2e-<pid>-<n>-<label>`.
pub fn unique_prefix(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}-{}-{n}-{label}", std::process::id())
}

/// Removes what earlier runs that died without cleaning up (killed by a timeout, say) left
/// behind: resources whose prefix names a process that no longer exists.
pub fn sweep_leftovers() {
    let alive = |name: &str| -> bool {
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        match pid {
            Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
            // Not one of ours in the expected shape: leave it alone.
            None => true,
        }
    };
    let filter = format!("name={PREFIX}-");
    let lists: [(&[&str], &[&str]); 3] = [
        (
            &["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
            &["rm", "-f", "-v"],
        ),
        (
            &["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"],
            &["volume", "rm", "-f"],
        ),
        (
            &[
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ],
            &["network", "rm"],
        ),
    ];
    for (list, remove) in lists {
        let Ok(names) = docker(list) else { continue };
        for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            if !name.starts_with(PREFIX) || alive(name) {
                continue;
            }
            let mut args = remove.to_vec();
            args.push(name);
            if docker(&args).is_ok() {
                eprintln!("[e2e] removed leftover {name}");
            }
        }
    }
}

/// A docker network, removed on drop.
#[derive(Debug)]
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create(name: &str) -> Result<Network, E2eError> {
        docker(&["network", "create", "--driver", "bridge", name])?;
        Ok(Network {
            name: name.to_string(),
        })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(e) = docker(&["network", "rm", &self.name]) {
            eprintln!("[e2e] cannot remove network {}: {e}", self.name);
        }
    }
}

/// A named volume, removed on drop.
#[derive(Debug)]
pub struct Volume {
    pub name: String,
}

impl Volume {
    pub fn create(name: &str) -> Result<Volume, E2eError> {
        docker(&["volume", "create", name])?;
        Ok(Volume {
            name: name.to_string(),
        })
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Err(e) = docker(&["volume", "rm", "-f", &self.name]) {
            eprintln!("[e2e] cannot remove volume {}: {e}", self.name);
        }
    }
}

/// A container (running or not), removed with its anonymous volumes on drop.
#[derive(Debug)]
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d --name NAME <run_args>`.
    pub fn run(name: &str, run_args: &[&str]) -> Result<Container, E2eError> {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(run_args);
        // The guard exists before the run, so a container created but failing to start
        // is removed too.
        let container = Container {
            name: name.to_string(),
        };
        docker(&args)?;
        Ok(container)
    }

    /// The container's IP on `network`.
    pub fn ip(&self, network: &str) -> Result<String, E2eError> {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        let ip = docker(&["inspect", "--format", &format, &self.name])?
            .trim()
            .to_string();
        if ip.is_empty() {
            return Err(E2eError::Unexpected(format!(
                "{} has no address on {network}",
                self.name
            )));
        }
        Ok(ip)
    }

    /// True while the container runs (paused counts as running).
    pub fn running(&self) -> Result<bool, E2eError> {
        Ok(docker(&["inspect", "--format", "{{.State.Running}}", &self.name])?.trim() == "true")
    }

    /// Waits for the container to exit; its exit code.
    pub fn wait(&self, limit: Duration) -> Result<i32, E2eError> {
        let code = docker_within(&["wait", &self.name], limit)?;
        code.trim()
            .parse()
            .map_err(|_| E2eError::Unexpected(format!("docker wait said {code:?}")))
    }

    pub fn stdout(&self) -> Result<String, E2eError> {
        let out = process::run("docker", &["logs", &self.name], QUICK)?;
        Ok(out.stdout)
    }

    /// The last `lines` lines of stdout and stderr, for a failure report.
    pub fn tail(&self, lines: usize) -> String {
        let n = lines.to_string();
        match process::run("docker", &["logs", "--tail", &n, &self.name], QUICK) {
            Ok(out) => format!("{}{}", out.stdout, out.stderr),
            Err(e) => format!("(no logs: {e})"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // A paused container is removed too (-f), with its anonymous volumes (-v).
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Result<TempDir, E2eError> {
        let path = std::env::temp_dir().join(unique_prefix(label));
        std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_library_paths() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibdns-9.18.so => /lib/x86_64-linux-gnu/libdns-9.18.so (0x00007f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            libraries_in(ldd),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libdns-9.18.so"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn prefixes_are_unique_and_name_this_process() {
        let a = unique_prefix("x");
        let b = unique_prefix("x");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{PREFIX}-{}-", std::process::id())));
    }
}
