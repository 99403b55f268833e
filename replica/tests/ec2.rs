//! `concoord ec2 ...` and `concoord replica --discover ec2:...` against a moto server the
//! test starts on 127.0.0.1, with a fake instance metadata service on loopback and real
//! local replica processes standing in for the instances' replicas (an instance's
//! `concoord:addr` tag says where its replica listens). The user data script runs under
//! bash with fake `docker`, `systemctl`, `chown` and `apt-get` that record their arguments.

mod common;
mod ec2_support;

use common::{Cluster, TIMING_FLAGS, free_ports};
use concoord::client::fetch_status;
use ec2_support::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Child processes killed when the test ends, however it ends.
#[derive(Default)]
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temporary directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "concoord-ec2-{what}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lines_with(out: &str, needle: &str) -> Vec<usize> {
    out.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i)
        .collect()
}

/// Runs `concoord ec2 terminate --cluster CLUSTER` on a pseudo-terminal (util-linux
/// `script`) and types `typed`; None when `script` is missing.
fn terminate_on_a_terminal(
    cluster: &str,
    typed: &str,
    env: &[(&str, String)],
) -> Option<std::process::Output> {
    use std::io::Write;
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(script) = script else {
        eprintln!("NOTICE: util-linux `script` not found; the confirmation prompt is not tested");
        return None;
    };
    let mut cmd = Command::new(script);
    cmd.args([
        "-qec",
        &format!("{BIN} ec2 terminate --cluster {cluster}"),
        "/dev/null",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    set_env(&mut cmd, env);
    let mut child = cmd.spawn().expect("start script");
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(format!("{typed}\n").as_bytes())
        .expect("type on the terminal");
    Some(child.wait_with_output().expect("wait for script"))
}

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let (stdout, stderr) = text(out);
    assert!(!out.status.success(), "expected failure; stdout: {stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
}

#[test]
fn user_data_script_runs_the_replica_image() {
    let dir = TempDir::new("userdata");
    let out = concoord(
        &[
            "ec2",
            "user-data",
            "--cluster",
            "prod",
            "--image",
            "registry.example/concoord/replica:9",
            "--port",
            "15000",
            "--domain",
            "counterdomain.com",
            "--route53-zone-id",
            "Z123",
        ],
        &[("AWS_REGION", "eu-west-1".into())],
    );
    let (script, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(script.starts_with("#!/bin/bash\n"));
    let path = dir.0.join("user-data.sh");
    std::fs::write(&path, &script).unwrap();

    // Fake commands that record their arguments; `apt-get install` "installs" docker.
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.0.join("calls.log");
    let recorder = format!(
        "#!/bin/bash\necho \"$(basename \"$0\") $*\" >> '{}'\n",
        log.display()
    );
    let write_exec = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = bin.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    for name in ["systemctl", "chown"] {
        write_exec(name, &recorder);
    }
    write_exec(
        "apt-get",
        &format!(
            "{recorder}if [ \"$1\" = install ] || [ \"$3\" = install ] || [[ \"$*\" == *install* ]]; then cp \"$(dirname \"$0\")/systemctl\" \"$(dirname \"$0\")/docker\"; fi\n"
        ),
    );
    // Only these and mkdir on PATH: no real docker, dnf or yum.
    let mkdir = ["/usr/bin/mkdir", "/bin/mkdir"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("mkdir");
    std::os::unix::fs::symlink(mkdir, bin.join("mkdir")).unwrap();
    let basename = ["/usr/bin/basename", "/bin/basename"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("basename");
    std::os::unix::fs::symlink(basename, bin.join("basename")).unwrap();
    let cp = ["/usr/bin/cp", "/bin/cp"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("cp");
    std::os::unix::fs::symlink(cp, bin.join("cp")).unwrap();
    let dirname = ["/usr/bin/dirname", "/bin/dirname"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("dirname");
    std::os::unix::fs::symlink(dirname, bin.join("dirname")).unwrap();

    let data = dir.0.join("data");
    let bash = ["/bin/bash", "/usr/bin/bash"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("bash");
    let run = Command::new(bash)
        .arg(&path)
        .env_clear()
        .env("PATH", &bin)
        .env("CONCOORD_DATA_DIR", &data)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        run.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(data.is_dir(), "the data directory was created");
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    let d = data.display();
    assert_eq!(
        calls,
        [
            "apt-get update -q".to_string(),
            "apt-get install -y -q docker.io".to_string(),
            "systemctl enable --now docker".to_string(),
            // With a domain the nameserver binds port 53: root holding only that capability.
            format!("chown 0:0 {d}"),
            "docker rm -f concoord-replica".to_string(),
            format!(
                "docker run -d --name concoord-replica --restart unless-stopped --network host \
                 -v {d}:/data --user 0:0 --cap-drop ALL --cap-add NET_BIND_SERVICE \
                 -e AWS_REGION=eu-west-1 registry.example/concoord/replica:9 replica -w \
                 --data-dir /data -p 15000 --discover ec2:cluster=prod -n counterdomain.com -r \
                 --route53-zone-id Z123"
            ),
        ]
    );

    // A second run (docker present now) installs nothing and replaces the container.
    std::fs::remove_file(&log).unwrap();
    let run = Command::new(bash)
        .arg(&path)
        .env_clear()
        .env("PATH", &bin)
        .env("CONCOORD_DATA_DIR", &data)
        .output()
        .expect("run bash");
    assert!(run.status.success());
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(!calls.contains("apt-get"), "{calls}");
    assert_eq!(lines_with(&calls, "docker run").len(), 1);

    // A value that could change the script is refused before any script is printed.
    let out = concoord(
        &["ec2", "user-data", "--cluster", "x", "--image", "a;reboot"],
        &[],
    );
    assert_one_line_error(&out, "--image");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_list_and_terminate() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let env = aws_env(&moto.url());
    let client = sdk(&moto.url());
    let ami = some_ami(&client).await;
    let cluster = cluster_name("launch");
    let sg = client
        .create_security_group()
        .group_name(format!("{cluster}-sg"))
        .description("concoord test")
        .send()
        .await
        .expect("create a security group")
        .group_id()
        .unwrap()
        .to_string();

    // --dry-run sends nothing.
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &cluster,
            "--count",
            "3",
            "--ami",
            &ami,
            "--dry-run",
        ],
        &env,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("would launch 3 x t3.small"), "{stdout}");
    assert!(stdout.contains(&format!("--discover ec2:cluster={cluster}")));
    assert!(instances(&client, &cluster).await.is_empty());

    let started = Instant::now();
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &cluster,
            "--count",
            "3",
            "--ami",
            &ami,
            "--instance-type",
            "t3.micro",
            "--security-group",
            &sg,
            "--image",
            "concoord/replica:test",
            "--domain",
            "counterdomain.com",
        ],
        &env,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    eprintln!("launch took {:?}", started.elapsed());
    let seen = instances(&client, &cluster).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for i in &seen {
        assert!(stdout.contains(&i.id), "{stdout}");
        assert!(i.state == "running" || i.state == "pending", "{i:?}");
        assert_eq!(i.instance_type, "t3.micro");
        assert_eq!(i.image_id, ami);
        assert_eq!(i.tags.get("concoord:cluster"), Some(&cluster));
        assert_eq!(i.tags.get("Name"), Some(&format!("concoord-{cluster}")));
        assert_eq!(
            i.tags.get("concoord:image").map(String::as_str),
            Some("concoord/replica:test")
        );
        assert_eq!(
            i.tags.get("concoord:port").map(String::as_str),
            Some("14000")
        );
        assert_eq!(
            i.tags.get("concoord:domain").map(String::as_str),
            Some("counterdomain.com")
        );
        let script = user_data(&client, &i.id).await;
        assert!(script.starts_with("#!/bin/bash\n"), "{script}");
        assert!(
            script.contains(&format!(
                "docker run -d --name concoord-replica --restart unless-stopped --network host \
                 -v \"$DATA_DIR\":/data --user 0:0 --cap-drop ALL --cap-add NET_BIND_SERVICE \
                 -e AWS_REGION=us-east-1 concoord/replica:test replica -w \
                 --data-dir /data -p 14000 --discover ec2:cluster={cluster} -n counterdomain.com\n"
            )),
            "{script}"
        );
    }

    // A second launch of the same cluster is refused; nothing more is started.
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &cluster,
            "--count",
            "1",
            "--ami",
            &ami,
        ],
        &env,
    );
    assert_one_line_error(&out, "already has 3 instance(s)");
    assert_eq!(instances(&client, &cluster).await.len(), 3);

    // list: every instance, with its address and its replica's status. The first
    // instance's tag points at a real replica; the others' at ports where nothing listens
    // (their moto private IPs are not reachable from here).
    let replica = Cluster::start(1).await;
    let closed = free_ports(2);
    tag(
        &client,
        &seen[0].id,
        "concoord:addr",
        &replica.replicas[0].addr(),
    )
    .await;
    for (i, port) in seen[1..].iter().zip(closed) {
        tag(
            &client,
            &i.id,
            "concoord:addr",
            &format!("127.0.0.1:{port}"),
        )
        .await;
    }
    let out = concoord(&["ec2", "list", "--cluster", &cluster], &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(rows[0].starts_with("INSTANCE"), "{stdout}");
    assert_eq!(rows.len(), 4, "{stdout}");
    for i in &seen {
        let row = rows.iter().find(|r| r.starts_with(&i.id)).expect("a row");
        assert!(row.contains("t3.micro"), "{row}");
        assert!(row.contains("running") || row.contains("pending"), "{row}");
    }
    let first = rows.iter().find(|r| r.starts_with(&seen[0].id)).unwrap();
    assert!(
        first.contains(&replica.replicas[0].addr()) && first.contains("member 1 (view 1), leader"),
        "{first}"
    );
    for i in &seen[1..] {
        let row = rows.iter().find(|r| r.starts_with(&i.id)).unwrap();
        assert!(row.contains("unreachable"), "{row}");
    }

    // terminate refuses without a terminal and without --yes...
    let out = concoord(&["ec2", "terminate", "--cluster", &cluster], &env);
    assert_one_line_error(&out, "pass --yes");
    assert_eq!(live_instances(&client, &cluster).await.len(), 3);
    // ...asks on a terminal, and does nothing unless the cluster name is typed...
    if let Some(out) = terminate_on_a_terminal(&cluster, "not-the-name", &env) {
        let screen = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(!out.status.success(), "{screen}");
        assert!(
            screen.contains("Terminate 3 instance(s)") && screen.contains("Type the cluster name"),
            "{screen}"
        );
        assert!(
            screen.contains("not confirmed; nothing was terminated"),
            "{screen}"
        );
        assert_eq!(live_instances(&client, &cluster).await.len(), 3);
    }
    // ...and terminates everything with --yes.
    let out = concoord(&["ec2", "terminate", "--cluster", &cluster, "--yes"], &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("terminating 3 instance(s)"), "{stdout}");
    assert!(live_instances(&client, &cluster).await.is_empty());
    let out = concoord(&["ec2", "list", "--cluster", &cluster], &env);
    assert!(text(&out).0.contains("has no instances"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_clear_line_and_leave_nothing_behind() {
    // No credentials anywhere (environment, profile, stored file; metadata disabled).
    let home = TempDir::new("home");
    let none = [
        ("HOME", home.0.display().to_string()),
        ("CONCOORD_CONFIG_DIR", home.0.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_string()),
    ];
    let out = concoord(&["ec2", "list", "--cluster", "x"], &none);
    assert_one_line_error(&out, "no AWS credentials found");
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            "x",
            "--count",
            "1",
            "--ami",
            "ami-1",
        ],
        &none,
    );
    assert_one_line_error(&out, "no AWS credentials found");

    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = sdk(&moto.url());
    let ami = some_ami(&client).await;
    let env = aws_env(&moto.url());
    let cluster = cluster_name("errors");

    // An unknown AMI: checked before RunInstances.
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &cluster,
            "--count",
            "1",
            "--ami",
            "ami-0123456789abcdef0",
        ],
        &env,
    );
    assert_one_line_error(&out, "AMI ami-0123456789abcdef0 does not exist");
    // No --ami: the newest Amazon Linux 2023 image Amazon publishes (moto knows some).
    let default = cluster_name("default-ami");
    let out = concoord(
        &["ec2", "launch", "--cluster", &default, "--count", "1"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let image = instances(&client, &default).await[0].image_id.clone();
    let described = client
        .describe_images()
        .image_ids(&image)
        .send()
        .await
        .expect("describe the default image");
    let name = described.images()[0].name().unwrap_or_default().to_string();
    assert!(
        name.starts_with("al2023-ami-2023") && name.ends_with("x86_64"),
        "{image}: {name}"
    );

    // Quota and authorization errors, which moto does not emulate, through a proxy.
    for (code, needle) in [
        (
            "InstanceLimitExceeded",
            "EC2 quota reached (InstanceLimitExceeded)",
        ),
        (
            "UnauthorizedOperation",
            "not authorized (UnauthorizedOperation)",
        ),
    ] {
        let proxy = FaultProxy::start(
            moto.addr,
            &[Fault {
                action: "RunInstances",
                code,
                after: 0,
            }],
        )
        .await;
        let out = concoord(
            &[
                "ec2",
                "launch",
                "--cluster",
                &cluster,
                "--count",
                "2",
                "--ami",
                &ami,
            ],
            &aws_env(&proxy.url()),
        );
        assert_one_line_error(&out, needle);
        assert!(
            proxy
                .actions
                .lock()
                .unwrap()
                .contains(&"RunInstances".to_string())
        );
    }
    assert!(instances(&client, &cluster).await.is_empty());

    // Scaling needs the view to change first: when no replica answers, nothing is
    // terminated or launched.
    let dark = cluster_name("dark");
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &dark,
            "--count",
            "2",
            "--ami",
            &ami,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let two = live_instances(&client, &dark).await;
    for (i, port) in two.iter().zip(free_ports(2)) {
        tag(
            &client,
            &i.id,
            "concoord:addr",
            &format!("127.0.0.1:{port}"),
        )
        .await;
    }
    for count in ["1", "3"] {
        let out = concoord(
            &["ec2", "scale", "--cluster", &dark, "--count", count],
            &env,
        );
        assert_one_line_error(&out, &format!("no replica of cluster {dark} answers"));
        assert_eq!(live_instances(&client, &dark).await.len(), 2);
    }
    // Typing the cluster name on the terminal confirms a terminate.
    if let Some(out) = terminate_on_a_terminal(&dark, &dark, &env) {
        let screen = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{screen}");
        assert!(screen.contains("terminating 2 instance(s)"), "{screen}");
        assert!(live_instances(&client, &dark).await.is_empty());
    }

    // Launched, but a later step fails: the message names what exists and how to remove it.
    // The first DescribeInstances (is the cluster new?) passes; the check after
    // RunInstances fails.
    let late = cluster_name("late");
    let proxy = FaultProxy::start(
        moto.addr,
        &[Fault {
            action: "DescribeInstances",
            code: "InternalError",
            after: 1,
        }],
    )
    .await;
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &late,
            "--count",
            "2",
            "--ami",
            &ami,
        ],
        &aws_env(&proxy.url()),
    );
    let (_, stderr) = text(&out);
    assert_one_line_error(&out, "these instances exist");
    let seen = instances(&client, &late).await;
    assert_eq!(seen.len(), 2);
    for i in &seen {
        assert!(stderr.contains(&i.id), "{stderr}");
    }
    assert!(stderr.contains(&format!("concoord ec2 terminate --cluster {late} --yes")));
}

/// A replica that finds its group by tag, as the user data starts it (minus Docker).
fn spawn_discovering(port: u16, cluster: &str, imds: &FakeImds, moto_url: &str) -> Child {
    let mut cmd = Command::new(common::BIN);
    cmd.args(["replica", "-p", &port.to_string(), "--discover"])
        .arg(format!("ec2:cluster={cluster}"))
        .args(TIMING_FLAGS)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut env = aws_env(moto_url);
    env.push(("CONCOORD_IMDS_ENDPOINT", imds.url()));
    set_env(&mut cmd, &env);
    if std::env::var_os("CONCOORD_TEST_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    cmd.spawn().expect("start a discovering replica")
}

/// Waits until the replica at `addr` reports a view with exactly `members`.
async fn wait_for_members(
    addr: &str,
    members: &[String],
    limit: Duration,
) -> concoord::command::View {
    let deadline = Instant::now() + limit;
    let mut want = members.to_vec();
    want.sort();
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(report) = fetch_status(addr, Duration::from_millis(500)).await {
            let mut have: Vec<String> = report.view.members.values().cloned().collect();
            have.sort();
            if have == want {
                return report.view;
            }
            last = Some(have);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr} never reported members {want:?} (last: {last:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_find_each_other_by_tag() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = sdk(&moto.url());
    let ami = some_ami(&client).await;
    let env = aws_env(&moto.url());
    let cluster = cluster_name("discover");
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &cluster,
            "--count",
            "3",
            "--ami",
            &ami,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let seen = live_instances(&client, &cluster).await;
    assert_eq!(seen.len(), 3);
    // The replicas stand in for the instances on loopback: the metadata service says the
    // private IP is 127.0.0.1, and each instance's tag says which port its replica uses.
    let ports = free_ports(3);
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut imds = Vec::new();
    for (inst, addr) in seen.iter().zip(&addrs) {
        tag(&client, &inst.id, "concoord:addr", addr).await;
        imds.push(FakeImds::start(&inst.id, "127.0.0.1").await);
    }
    // The others start first: they must wait for the founder (first in founding order:
    // oldest launch, then id) rather than found groups of their own.
    let mut procs = Procs::default();
    for i in [2, 1, 0] {
        procs
            .0
            .push(spawn_discovering(ports[i], &cluster, &imds[i], &moto.url()));
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let view = wait_for_members(&addrs[0], &addrs, Duration::from_secs(90)).await;
    assert_eq!(
        view.members.get(&1),
        Some(&addrs[0]),
        "the first instance in founding order founded the group: {view:?}"
    );
    for addr in &addrs {
        let report = fetch_status(addr, Duration::from_secs(2)).await.unwrap();
        assert_eq!(report.view.group, view.group, "one group, not several");
    }
    for server in &imds {
        let asked = server.asked.lock().unwrap().clone();
        assert!(
            asked.contains(&"PUT /latest/api/token".to_string()),
            "{asked:?}"
        );
        assert!(
            asked.contains(&"GET /latest/meta-data/instance-id".to_string()),
            "{asked:?}"
        );
        assert!(
            asked.contains(&"GET /latest/meta-data/local-ipv4".to_string()),
            "{asked:?}"
        );
    }

    // An instance that is not part of the cluster is told so, in one line.
    let stranger = FakeImds::start("i-0000000000badbad", "127.0.0.1").await;
    let port = free_ports(1)[0].to_string();
    let mut env = aws_env(&moto.url());
    env.push(("CONCOORD_IMDS_ENDPOINT", stranger.url()));
    let out = concoord(
        &[
            "replica",
            "-p",
            &port,
            "--discover",
            &format!("ec2:cluster={cluster}"),
        ],
        &env,
    );
    assert_one_line_error(&out, "i-0000000000badbad) is not a running instance tagged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_changes_membership_first_one_replica_at_a_time() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let client = sdk(&moto.url());
    let ami = some_ami(&client).await;
    let env = aws_env(&moto.url());
    let cluster = cluster_name("scale");
    // Real replicas stand in for the instances' replicas (the addr tag points at them).
    let replicas = Cluster::start(3).await;
    let out = concoord(
        &[
            "ec2",
            "launch",
            "--cluster",
            &cluster,
            "--count",
            "3",
            "--ami",
            &ami,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let seen = live_instances(&client, &cluster).await;
    for (inst, r) in seen.iter().zip(&replicas.replicas) {
        tag(&client, &inst.id, "concoord:addr", &r.addr()).await;
    }

    // Down to 2: the newest instance's replica leaves the view, then the instance goes.
    let victim = &seen[2];
    let out = concoord(
        &[
            "ec2",
            "scale",
            "--cluster",
            &cluster,
            "--count",
            "2",
            "--step-timeout",
            "60s",
        ],
        &env,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let removed = lines_with(&stdout, &format!("removed {}", victim.id));
    let terminated = lines_with(&stdout, &format!("terminated {}", victim.id));
    assert_eq!((removed.len(), terminated.len()), (1, 1), "{stdout}");
    assert!(removed[0] < terminated[0], "membership first: {stdout}");
    let live: Vec<String> = live_instances(&client, &cluster)
        .await
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(live, [seen[0].id.clone(), seen[1].id.clone()]);
    let kept = [replicas.replicas[0].addr(), replicas.replicas[1].addr()];
    wait_for_members(&kept[0], &kept, Duration::from_secs(10)).await;
    let gone = fetch_status(&replicas.replicas[2].addr(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(gone.state, "removed", "{gone:?}");

    // Up to 4: one launch at a time; the next only after the previous replica joined. The
    // test plays the new instances: when one appears it starts a replica that discovers
    // the group by tag (metadata from a fake IMDS), then tags the instance with its address.
    let mut scale = Command::new(BIN);
    scale
        .args([
            "ec2",
            "scale",
            "--cluster",
            &cluster,
            "--count",
            "4",
            "--step-timeout",
            "60s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    set_env(&mut scale, &env);
    let mut procs = Procs::default();
    procs.0.push(scale.spawn().expect("start ec2 scale"));
    let mut known: Vec<String> = live.clone();
    let mut new_addrs: Vec<String> = Vec::new();
    let mut servers = Vec::new();
    let mut violations = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "scale up did not finish in 120 s"
        );
        if let Some(status) = procs.0[0].try_wait().unwrap() {
            assert!(status.success(), "ec2 scale failed");
            break;
        }
        for inst in live_instances(&client, &cluster).await {
            if known.contains(&inst.id) {
                continue;
            }
            known.push(inst.id.clone());
            // Every replica launched before this instance must already be a voting member.
            let view = fetch_status(&kept[0], Duration::from_secs(2))
                .await
                .unwrap()
                .view;
            for a in &new_addrs {
                if !view.members.values().any(|m| m == a) {
                    violations.push(format!("{} launched before {a} joined", inst.id));
                }
            }
            let port = free_ports(1)[0];
            let addr = format!("127.0.0.1:{port}");
            let imds = FakeImds::start(&inst.id, "127.0.0.1").await;
            procs
                .0
                .push(spawn_discovering(port, &cluster, &imds, &moto.url()));
            servers.push(imds);
            tag(&client, &inst.id, "concoord:addr", &addr).await;
            new_addrs.push(addr);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let scale = procs.0.remove(0);
    let out = scale.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(violations.is_empty(), "{violations:?}\n{stdout}");
    assert_eq!(new_addrs.len(), 2, "{stdout}");
    let launched = lines_with(&stdout, "launched ");
    let joined = lines_with(&stdout, " joined; view");
    assert_eq!((launched.len(), joined.len()), (2, 2), "{stdout}");
    assert!(
        launched[0] < joined[0] && joined[0] < launched[1] && launched[1] < joined[1],
        "one at a time: {stdout}"
    );
    let mut all = kept.to_vec();
    all.extend(new_addrs);
    wait_for_members(&kept[0], &all, Duration::from_secs(10)).await;
    assert_eq!(live_instances(&client, &cluster).await.len(), 4);
}

/// `--pki` and `--auth-file`: the user data writes the CA, a replica certificate for
/// `<cluster>.concoord` and the auth file where only the container's user may read them
/// (base64 in the script, nothing in clear), and runs the replica with them; a replica
/// started from those very files serves TLS that clients check with --tls-server-name.
#[test]
fn user_data_with_pki_writes_the_certificates_privately_and_serves_tls() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("userdata-tls");
    let pki = dir.0.join("pki");
    let out = concoord(&["certs", "init", &pki.display().to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let token = "ec2-admin-token-4f1d2c3b5a69";
    let auth = dir.0.join("auth");
    std::fs::write(&auth, format!("token operator admin {token}\n")).unwrap();
    let out = concoord(
        &[
            "ec2",
            "user-data",
            "--cluster",
            "prod",
            "--pki",
            &pki.display().to_string(),
            "--auth-file",
            &auth.display().to_string(),
        ],
        &[("AWS_REGION", "eu-west-1".into())],
    );
    let (script, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        !script.contains("PRIVATE KEY"),
        "a key in clear in the user data"
    );
    assert!(
        !script.contains(token),
        "the auth file in clear in the user data"
    );
    // A bad auth file is refused before any script is made.
    let bad = dir.0.join("bad-auth");
    std::fs::write(&bad, "token x superuser 0123456789abcdef0\n").unwrap();
    let refused = concoord(
        &[
            "ec2",
            "user-data",
            "--cluster",
            "prod",
            "--pki",
            &pki.display().to_string(),
            "--auth-file",
            &bad.display().to_string(),
        ],
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).1.contains("unknown role"),
        "{}",
        text(&refused).1
    );
    // An auth file without TLS: tokens in clear, replicas unable to link.
    let refused = concoord(
        &[
            "ec2",
            "user-data",
            "--cluster",
            "prod",
            "--auth-file",
            &auth.display().to_string(),
        ],
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).1.contains("needs --pki"),
        "{}",
        text(&refused).1
    );

    // Run it with recording docker/systemctl/chown and the real mkdir, base64 and chmod.
    let path = dir.0.join("user-data.sh");
    std::fs::write(&path, &script).unwrap();
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.0.join("calls.log");
    let recorder = format!(
        "#!/bin/bash\necho \"$(basename \"$0\") $*\" >> '{}'\n",
        log.display()
    );
    for name in ["systemctl", "chown", "docker"] {
        let p = bin.join(name);
        std::fs::write(&p, &recorder).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for tool in ["mkdir", "basename", "base64", "chmod"] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool}"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    let data = dir.0.join("data");
    let tls = dir.0.join("tls");
    let bash = ["/bin/bash", "/usr/bin/bash"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("bash");
    let run = Command::new(bash)
        .arg(&path)
        .env_clear()
        .env("PATH", &bin)
        .env("CONCOORD_DATA_DIR", &data)
        .env("CONCOORD_TLS_DIR", &tls)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        run.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tls), 0o700);
    for file in ["ca.crt", "tls.crt", "tls.key", "auth"] {
        assert_eq!(mode(&tls.join(file)), 0o600, "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(tls.join("ca.crt")).unwrap(),
        std::fs::read_to_string(pki.join("ca.crt")).unwrap()
    );
    // The auth file travels with digests only; the replica below still admits the token.
    let sent = std::fs::read_to_string(tls.join("auth")).unwrap();
    assert!(
        sent.contains("token operator admin sha256:") && !sent.contains(token),
        "{sent}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let t = tls.display();
    assert!(
        calls.contains(&format!("chown -R 65532:65532 {t}")),
        "{calls}"
    );
    let docker_run = calls
        .lines()
        .find(|l| l.starts_with("docker run"))
        .unwrap_or_else(|| panic!("no docker run in {calls}"));
    assert!(
        docker_run.contains(&format!("-v {t}:/tls:ro")),
        "{docker_run}"
    );
    assert!(
        docker_run.ends_with(
            "--tls-cert /tls/tls.crt --tls-key /tls/tls.key --tls-ca /tls/ca.crt \
             --tls-server-name prod.concoord --auth-file /tls/auth"
        ),
        "{docker_run}"
    );

    // The files serve: a replica started with them answers over TLS, checked for the
    // cluster's name (its certificate names no address), to the admin token.
    let port = free_ports(1)[0];
    let mut procs = Procs::default();
    let f = |name: &str| tls.join(name).display().to_string();
    procs.0.push(
        Command::new(BIN)
            .args(["replica", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(TIMING_FLAGS)
            .args(["--tls-cert", &f("tls.crt"), "--tls-key", &f("tls.key")])
            .args([
                "--tls-ca",
                &f("ca.crt"),
                "--tls-server-name",
                "prod.concoord",
            ])
            .args(["--auth-file", &f("auth")])
            .env_remove("CONCOORD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the replica"),
    );
    let addr = format!("127.0.0.1:{port}");
    let ca = pki.join("ca.crt").display().to_string();
    let status = |extra: &[&str]| {
        let mut args = vec!["status", addr.as_str(), "--ca", ca.as_str()];
        args.extend_from_slice(extra);
        concoord(&args, &[])
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = status(&["--tls-server-name", "prod.concoord", "--token", token]);
        if out.status.success() {
            assert!(text(&out).0.contains(&addr), "{}", text(&out).0);
            break;
        }
        assert!(Instant::now() < deadline, "no TLS status: {}", text(&out).1);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Checked against its address, the shared certificate does not match.
    let out = status(&["--token", token]);
    assert!(!out.status.success(), "{}", text(&out).0);
}
