//! The compose file (e2e/docker/compose.yaml) runs a working three-replica cluster from
//! the locally built image, keeps its objects across `restart` thanks to its volumes, and
//! `down -v` leaves nothing behind. Needs docker and docker-compose (or the compose
//! plugin); fails and says so without them.

use concoord_e2e::E2eError;
use concoord_e2e::cluster::ReplicaStatus;
use concoord_e2e::docker::{self, unique_prefix};
use concoord_e2e::process::{self, Output};
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// `docker-compose`, or `docker compose` when only the plugin is there.
fn compose_command() -> Result<(String, Vec<String>), E2eError> {
    let quick = Duration::from_secs(30);
    if process::run("docker-compose", &["version"], quick).is_ok_and(|o| o.success()) {
        return Ok(("docker-compose".into(), vec![]));
    }
    if process::run("docker", &["compose", "version"], quick).is_ok_and(|o| o.success()) {
        return Ok(("docker".into(), vec!["compose".into()]));
    }
    Err(E2eError::Missing(
        "docker-compose (Debian package docker-compose) or the docker compose plugin".into(),
    ))
}

/// One compose project; `down -v` on drop.
struct Project {
    program: String,
    base: Vec<String>,
}

impl Project {
    fn new(name: &str) -> Result<Project, E2eError> {
        let (program, mut base) = compose_command()?;
        let file = docker::repo_root().join("e2e/docker/compose.yaml");
        base.extend([
            "-p".to_string(),
            name.to_string(),
            "-f".to_string(),
            file.to_string_lossy().into_owned(),
        ]);
        Ok(Project { program, base })
    }

    fn run(&self, args: &[&str]) -> Result<Output, E2eError> {
        let mut all: Vec<&str> = self.base.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        process::run(&self.program, &all, LIMIT)
    }

    fn ok(&self, args: &[&str]) -> Result<String, E2eError> {
        let out = self.run(args)?;
        if !out.success() {
            return Err(E2eError::Failed {
                command: format!("{} {}", self.program, args.join(" ")),
                code: out.code,
                stderr: out.stderr.trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// `concoord ARGS` in the project's client container.
    fn client(&self, args: &[&str]) -> Result<String, E2eError> {
        let mut all = vec!["run", "--rm", "-T", "client"];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    fn counter(&self, via: &str) -> Result<i64, E2eError> {
        let out = self.client(&["call", via, "counter", "getvalue"])?;
        out.trim()
            .parse()
            .map_err(|_| E2eError::Unexpected(format!("getvalue printed {out:?}")))
    }

    /// Waits until all three replicas are members of one view with a leader.
    fn wait_healthy(&self) -> Result<(), E2eError> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < LIMIT {
            let out = self.run(&[
                "run",
                "--rm",
                "-T",
                "client",
                "status",
                "replica1:14000,replica2:14000,replica3:14000",
                "--json",
            ])?;
            let line = out.stdout.lines().last().unwrap_or_default();
            match serde_json::from_str::<Vec<ReplicaStatus>>(line) {
                Ok(s) => {
                    let members = s
                        .iter()
                        .filter(|r| r.reachable && r.state == "member" && r.members.len() == 3)
                        .count();
                    if members == 3 && s.iter().any(|r| r.is_leader) {
                        return Ok(());
                    }
                    last = format!("{s:?}");
                }
                Err(_) => last = format!("{}{}", out.stdout, out.stderr),
            }
            thread::sleep(Duration::from_millis(500));
        }
        Err(E2eError::Timeout {
            command: format!("waiting for the compose cluster (last: {last})"),
            limit: LIMIT,
        })
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Err(e) = self.run(&["down", "-v", "--timeout", "5"]) {
            eprintln!("[e2e] compose down failed: {e}");
        }
    }
}

#[test]
fn the_compose_file_runs_a_cluster_that_keeps_its_data() -> Result<(), E2eError> {
    docker::require_docker()?;
    docker::replica_image()?;
    let started = Instant::now();
    let name = unique_prefix("compose");
    let project = Project::new(&name)?;
    project.ok(&["up", "-d"])?;
    let result = (|| {
        project.wait_healthy()?;
        for _ in 0..3 {
            project.client(&["call", "replica1:14000", "counter", "increment"])?;
        }
        let value = project.counter("replica3:14000")?;
        if value != 3 {
            return Err(E2eError::Check(format!(
                "counter is {value} after 3 increments"
            )));
        }
        project.ok(&["restart", "--timeout", "10"])?;
        project.wait_healthy()?;
        let value = project.counter("replica2:14000")?;
        if value != 3 {
            return Err(E2eError::Check(format!(
                "counter is {value} after a restart, was 3"
            )));
        }
        Ok(())
    })();
    if result.is_err() {
        eprintln!(
            "{}",
            project
                .run(&["logs", "--tail", "30"])
                .map(|o| o.stdout)
                .unwrap_or_default()
        );
    }
    drop(project);
    // down -v removed the containers and the volumes.
    let left = docker::docker(&["ps", "-a", "--filter", &format!("name={name}"), "-q"])?;
    let volumes = docker::docker(&["volume", "ls", "-q", "--filter", &format!("name={name}")])?;
    if !left.trim().is_empty() || !volumes.trim().is_empty() {
        return Err(E2eError::Check(format!(
            "compose down -v left containers {left:?} and volumes {volumes:?}"
        )));
    }
    eprintln!(
        "[e2e] compose: done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    result
}
