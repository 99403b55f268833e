//! `-w` with real replica processes: restarts with and without their disks, snapshots and
//! state transfer, membership changes, and a full disk.

mod common;

use common::{Cluster, Replica, free_ports, spawn_replica};
use concoord::client::{Client, ClientOptions, add_member, fetch_status, remove_member};
use concoord::command::Value;
use concoord::net::wire::ReplyResult;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn data_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "concoord-it-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A cluster whose replicas keep their data in directories that outlive the processes.
struct DurableCluster {
    cluster: Cluster,
    dirs: Vec<PathBuf>,
    extra: Vec<String>,
}

impl DurableCluster {
    async fn start(n: usize, tag: &str, extra: &[&str]) -> DurableCluster {
        let ports = free_ports(n);
        let dirs: Vec<PathBuf> = (0..n).map(|i| data_dir(&format!("{tag}{i}"))).collect();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut dc = DurableCluster {
            cluster: Cluster {
                replicas: Vec::new(),
            },
            dirs,
            extra,
        };
        for (i, &port) in ports.iter().enumerate() {
            let boot = (i > 0).then(|| format!("127.0.0.1:{}", ports[0]));
            let child = dc.spawn(port, i, boot);
            dc.cluster.replicas.push(Replica {
                port,
                child: Some(child),
            });
            dc.cluster.wait_for_view(i + 1).await;
        }
        dc
    }

    fn spawn(&self, port: u16, i: usize, boot: Option<String>) -> std::process::Child {
        let dir = self.dirs[i].to_string_lossy().to_string();
        let mut args: Vec<&str> = vec!["--data-dir", &dir];
        args.extend(self.extra.iter().map(String::as_str));
        spawn_replica(port, boot, &args)
    }

    /// Restarts replica `i` with the same data directory (no -b needed: it knows who it is).
    fn restart(&mut self, i: usize) {
        let port = self.cluster.replicas[i].port;
        let child = self.spawn(port, i, None);
        self.cluster.replicas[i].child = Some(child);
    }

    fn wipe(&self, i: usize) {
        let _ = std::fs::remove_dir_all(&self.dirs[i]);
    }
}

impl Drop for DurableCluster {
    fn drop(&mut self) {
        for i in 0..self.cluster.replicas.len() {
            self.cluster.kill(i);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Opens a session on one replica with the bare protocol and returns its answer.
async fn raw_request(addr: &str) -> ReplyResult {
    use concoord::command::{ClientCommand, Operation};
    use concoord::net::frame;
    use concoord::net::wire::{ClientFrame, Hello, ReplicaFrame, Role, Welcome};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (frame::reader(r), frame::writer(w));
    frame::write_frame(&mut w, &Hello::new(Role::Client))
        .await
        .unwrap();
    let _: Welcome = frame::read_frame(&mut r).await.unwrap();
    let cmd = ClientCommand {
        session: 77,
        seq: 0,
        ack: 0,
        op: Operation::OpenSession,
        owner: None,
    };
    frame::write_frame(&mut w, &ClientFrame::Request(cmd))
        .await
        .unwrap();
    loop {
        if let ReplicaFrame::Reply { result, .. } = frame::read_frame(&mut r).await.unwrap() {
            return result;
        }
    }
}

async fn increments(c: &Client, n: usize) {
    for _ in 0..n {
        c.call("counter", "increment", vec![]).await.unwrap();
    }
}

async fn value(c: &Client) -> i64 {
    c.call("counter", "getvalue", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap()
}

/// Waits until replica `i` reports a decided prefix at least `slot`.
async fn caught_up(cluster: &Cluster, i: usize, slot: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = cluster.status_of(i).await
            && s.decided_upto >= slot
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {i} did not catch up to slot {slot}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_keeps_every_acknowledged_write() {
    let mut dc = DurableCluster::start(3, "whole", &["--snapshot-every", "50"]).await;
    let c = dc.cluster.client().await;
    increments(&c, 120).await;
    c.create("kv", "dict", vec![]).await.unwrap();
    c.call("kv", "set", vec![Value::from("k"), Value::from("v")])
        .await
        .unwrap();
    drop(c);
    for i in 0..3 {
        dc.cluster.kill(i);
    }
    for i in 0..3 {
        dc.restart(i);
    }
    dc.cluster.wait_for_view(3).await;
    let c = dc.cluster.client().await;
    assert_eq!(value(&c).await, 120);
    assert_eq!(
        c.call("kv", "get", vec![Value::from("k")]).await.unwrap(),
        Value::from("v")
    );
    increments(&c, 5).await;
    assert_eq!(value(&c).await, 125);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_with_its_disk_rejoins_and_catches_up() {
    let mut dc = DurableCluster::start(3, "restart", &[]).await;
    let c = dc.cluster.client().await;
    increments(&c, 20).await;
    let leader = dc.cluster.leader().await;
    let follower = (leader + 1) % 3;
    dc.cluster.kill(follower);
    increments(&c, 30).await;
    dc.restart(follower);
    let target = dc.cluster.status_of(leader).await.unwrap().decided_upto;
    caught_up(&dc.cluster, follower, target).await;
    let s = dc.cluster.status_of(follower).await.unwrap();
    assert_eq!(s.view.members.len(), 3, "it rejoined as the same member");
    // With the third replica down, the restarted one completes the majority.
    let other = 3 - leader - follower;
    dc.cluster.kill(other);
    increments(&c, 5).await;
    assert_eq!(value(&c).await, 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_behind_replica_installs_a_snapshot() {
    let mut dc = DurableCluster::start(3, "snap", &["--snapshot-every", "20"]).await;
    let c = dc.cluster.client().await;
    let leader = dc.cluster.leader().await;
    let follower = (leader + 1) % 3;
    dc.cluster.kill(follower);
    // Far more slots than the log keeps behind a snapshot.
    increments(&c, 200).await;
    dc.restart(follower);
    let target = dc.cluster.status_of(leader).await.unwrap().decided_upto;
    caught_up(&dc.cluster, follower, target).await;
    // Its state is right: it must be part of every majority once another replica is gone.
    let other = 3 - leader - follower;
    dc.cluster.kill(other);
    increments(&c, 1).await;
    dc.cluster.kill(leader);
    dc.restart(other);
    assert_eq!(value(&c).await, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_disk_rejoins_as_a_new_member() {
    let mut dc = DurableCluster::start(3, "lost", &[]).await;
    let c = dc.cluster.client().await;
    increments(&c, 10).await;
    let leader = dc.cluster.leader().await;
    let victim = (leader + 1) % 3;
    let old_id = dc.cluster.status_of(victim).await.unwrap().replica;
    dc.cluster.kill(victim);
    dc.wipe(victim);
    let port = dc.cluster.replicas[victim].port;
    let boot = dc.cluster.replicas[leader].addr();
    let child = dc.spawn(port, victim, Some(boot));
    dc.cluster.replicas[victim].child = Some(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        if let Some(s) = dc.cluster.status_of(victim).await
            && s.replica != old_id
            && s.view.contains(s.replica)
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the wiped replica never rejoined"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!new.view.contains(old_id), "the old identity is retired");
    assert_eq!(new.view.members.len(), 3);
    caught_up(&dc.cluster, victim, new.decided_upto).await;
    increments(&c, 1).await;
    assert_eq!(value(&c).await, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_remove_and_add_one_at_a_time_including_the_leader() {
    let mut cluster = Cluster::start(3).await;
    let addrs = cluster.addrs();
    let c = cluster.client().await;
    increments(&c, 3).await;

    // Remove a follower: it stops serving clients with a clear reply.
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let gone = cluster.replicas[follower].addr();
    let view = remove_member(&addrs, &gone, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(view.members.len(), 2);
    assert!(view.id_of(&gone).is_none());
    let gone_id = cluster.status_of(follower).await.unwrap().replica;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster
        .status_of(follower)
        .await
        .is_some_and(|s| s.view.contains(gone_id))
    {
        assert!(
            Instant::now() < deadline,
            "the removed replica never learned of its removal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster.status_of(follower).await.unwrap().state, "removed");
    // Asked directly, it answers with a clear reason (a client then fails over).
    let reply = raw_request(&gone).await;
    assert!(
        matches!(&reply, ReplyResult::Unavailable { reason } if reason.contains("removed")),
        "a removed replica says so: {reply:?}"
    );
    cluster.kill(follower);

    // Remove the leader: it hands over first, and the group keeps going.
    let leader_addr = cluster.replicas[leader].addr();
    let started = Instant::now();
    let view = remove_member(&addrs, &leader_addr, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(view.members.len(), 1);
    eprintln!("removing the leader took {:?}", started.elapsed());
    cluster.kill(leader);
    increments(&c, 2).await;
    assert_eq!(value(&c).await, 5);

    // Add a fresh replica back: pre-add its address, then start it joining.
    let port = free_ports(1)[0];
    let fresh = format!("127.0.0.1:{port}");
    let survivor = 3 - leader - follower;
    let view = add_member(
        &cluster.replicas[survivor].addr(),
        &fresh,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    // It waits as a learner (not counted in majorities) until it runs and catches up.
    assert_eq!(view.members.len(), 1);
    assert!(view.id_of(&fresh).is_some_and(|id| view.is_learner(id)));
    increments(&c, 1).await;
    let child = spawn_replica(port, Some(cluster.replicas[survivor].addr()), &[]);
    cluster.replicas.push(Replica {
        port,
        child: Some(child),
    });
    let s = cluster.wait_for_view(2).await;
    let fresh_id = s.view.id_of(&fresh).expect("the fresh replica is a member");
    assert!(
        s.view.contains(fresh_id),
        "promoted to voter once caught up"
    );
    increments(&c, 1).await;
    let st = fetch_status(&fresh, Duration::from_secs(1)).await.unwrap();
    assert_eq!(st.replica, fresh_id, "it took the identity added for it");
    assert_eq!(value(&c).await, 7);
}

/// Mounts a tiny tmpfs (this needs root, which CI and the dev machines have).
struct TinyDisk(PathBuf);

impl TinyDisk {
    fn mount(kib: u32) -> TinyDisk {
        let dir = data_dir("tmpfs");
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the full-disk test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TinyDisk(dir)
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_replica_with_a_clear_error_and_acknowledges_nothing_unsaved() {
    let disk = TinyDisk::mount(256);
    let port = free_ports(1)[0];
    let dir = disk.0.join("data");
    let dir_s = dir.to_string_lossy().to_string();
    let mut cluster = Cluster {
        replicas: vec![Replica {
            port,
            child: Some(spawn_replica(port, None, &["--data-dir", &dir_s])),
        }],
    };
    cluster.wait_for_view(1).await;
    let opts = ClientOptions {
        failover_timeout: Duration::from_secs(3),
        call_timeout: Some(Duration::from_secs(5)),
        ..ClientOptions::default()
    };
    let c = Client::connect(&cluster.addrs(), opts.clone())
        .await
        .unwrap();
    c.create("kv", "dict", vec![]).await.unwrap();
    let blob = "x".repeat(16 * 1024);
    let mut acked = Vec::new();
    let mut error = None;
    for i in 0..64 {
        let key = format!("k{i}");
        match c
            .call(
                "kv",
                "set",
                vec![Value::from(key.as_str()), Value::from(blob.as_str())],
            )
            .await
        {
            Ok(_) => acked.push(key),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let error = error.expect("256 KiB cannot hold 1 MiB of values");
    assert!(
        error.contains("No space left") || error.contains("cannot write its log"),
        "the client learns why: {error}"
    );
    assert!(!acked.is_empty());
    // Status still answers, the process did not crash, and it says why it stopped.
    let halted = cluster.status_of(0).await.expect("status answers");
    assert!(halted.state.starts_with("halted:"), "{}", halted.state);
    // Free space (remount bigger is not possible; move the data to a roomy disk) and
    // restart: every acknowledged write is there.
    cluster.kill(0);
    let roomy = data_dir("roomy");
    let copy = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&dir)
        .arg(&roomy)
        .status()
        .unwrap();
    assert!(copy.success());
    let roomy_s = roomy.to_string_lossy().to_string();
    cluster.replicas[0].child = Some(spawn_replica(port, None, &["--data-dir", &roomy_s]));
    cluster.wait_for_view(1).await;
    let c = Client::connect(&cluster.addrs(), opts).await.unwrap();
    for key in &acked {
        let v = c
            .call("kv", "get", vec![Value::from(key.as_str())])
            .await
            .unwrap();
        assert_eq!(
            v,
            Value::from(blob.as_str()),
            "{key} was acknowledged and must survive"
        );
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&roomy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_restarted_as_a_founder_never_votes_in_its_old_group() {
    let mut dc = DurableCluster::start(3, "split", &[]).await;
    let c = dc.cluster.client().await;
    increments(&c, 5).await;
    // The founder (id 1) is wiped: founding again it is id 1 of a new group, and the old
    // group's leader (id 2 or 3) is an id it has never seen, exactly the dangerous case.
    let victim = 0;
    dc.cluster.kill(victim);
    dc.wipe(victim);
    let leader = dc.cluster.leader().await;
    // The operator's mistake: no -b, so it founds a group of its own at the same address.
    let child = dc.spawn(dc.cluster.replicas[victim].port, victim, None);
    dc.cluster.replicas[victim].child = Some(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dc.cluster.status_of(victim).await.is_none() {
        assert!(Instant::now() < deadline, "the wiped replica did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old group goes on with its other two members, many slots further (its clients
    // use its own addresses: the impostor is another group now)...
    drop(c);
    let others = format!(
        "{}, {}",
        dc.cluster.replicas[1].addr(),
        dc.cluster.replicas[2].addr()
    );
    let c = Client::connect(&others, ClientOptions::default())
        .await
        .unwrap();
    increments(&c, 50).await;
    assert_eq!(value(&c).await, 55);
    let old = dc.cluster.status_of(leader).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...and none of its slots reached the impostor: the old group's links are refused.
    let lone = dc.cluster.status_of(victim).await.unwrap();
    assert_eq!(lone.view.members.len(), 1, "{lone:?}");
    assert_ne!(lone.view.group, old.view.group);
    assert!(
        lone.decided_upto < 5 && old.decided_upto > 50,
        "the impostor must not follow the old group: {} vs {}",
        lone.decided_upto,
        old.decided_upto
    );
}
