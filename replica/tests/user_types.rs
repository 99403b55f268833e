//! User-defined object types with real replica processes: the seed's TenCounter tutorial,
//! `concoord type load | list | show`, `--replace`, sandbox escapes, and durability
//! (kill -9 of every replica with -w, snapshots, state transfer to a new member).

mod common;

use common::{BIN, Cluster, Replica, TIMING_FLAGS, free_ports};
use concoord::client::{Client, ClientError};
use concoord::command::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The seed's advanced tutorial, verbatim.
const TEN_COUNTER: &str = r#"class TenCounter:
    def __init__(self, value=0):
        self.value = value

    def decrement(self):
        self.value -= 10

    def increment(self):
        self.value += 10

    def getvalue(self):
        return self.value

    def __str__(self):
        return "The counter value is %d" % self.value
"#;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "concoord-ut-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Starts a replica serving `-o OBJ`, with PYTHONPATH set to `pythonpath`.
fn spawn(port: u16, boot: Option<&str>, object: &str, pythonpath: &Path, extra: &[&str]) -> Child {
    let mut cmd = Command::new(BIN);
    // The test's own lease, when it gives one, replaces the short one of TIMING_FLAGS.
    let timing: Vec<&str> = if extra.contains(&"--session-lease-ms") {
        TIMING_FLAGS[..4].to_vec()
    } else {
        TIMING_FLAGS.to_vec()
    };
    cmd.args(["replica", "-o", object, "-a", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(timing)
        .args(extra)
        .env("PYTHONPATH", pythonpath)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if std::env::var_os("CONCOORD_TEST_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    if let Some(b) = boot {
        cmd.arg("-b").arg(b);
    }
    cmd.spawn().expect("start concoord replica")
}

/// `n` replicas of `-o OBJ`; `extra(i)` adds flags to replica i.
async fn start(
    n: usize,
    object: &str,
    pythonpath: &Path,
    extra: impl Fn(usize) -> Vec<String>,
) -> Cluster {
    let ports = free_ports(n);
    let mut cluster = Cluster {
        replicas: Vec::new(),
    };
    for (i, &port) in ports.iter().enumerate() {
        let boot = (i > 0).then(|| format!("127.0.0.1:{}", ports[0]));
        let flags = extra(i);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let child = spawn(port, boot.as_deref(), object, pythonpath, &flags);
        cluster.replicas.push(Replica {
            port,
            child: Some(child),
        });
        cluster.wait_for_view(i + 1).await;
    }
    cluster
}

async fn str_of(c: &Client, object: &str) -> String {
    c.describe(object).await.expect("__str__")
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run concoord")
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_tencounter_tutorial_runs_on_three_replicas_alike() {
    let foo = scratch("ten");
    std::fs::write(foo.join("tencounter.py"), TEN_COUNTER).unwrap();
    let mut cluster = start(3, "tencounter.TenCounter", &foo, |_| Vec::new()).await;
    let c = cluster.client().await;
    assert_eq!(
        c.list()
            .await
            .unwrap()
            .get("tencounter")
            .map(String::as_str),
        Some("TenCounter")
    );
    c.call("tencounter", "increment", vec![]).await.unwrap();
    c.call("tencounter", "increment", vec![]).await.unwrap();
    c.call("tencounter", "decrement", vec![]).await.unwrap();
    c.call("tencounter", "increment", vec![]).await.unwrap();
    assert_eq!(
        c.call("tencounter", "getvalue", vec![]).await.unwrap(),
        Value::from(20)
    );
    assert_eq!(str_of(&c, "tencounter").await, "The counter value is 20");
    // __concoordinit__ resets, as in the seed's Counter tutorial.
    c.reinit("tencounter", vec![]).await.unwrap();
    c.call("tencounter", "increment", vec![]).await.unwrap();
    assert_eq!(str_of(&c, "tencounter").await, "The counter value is 10");
    // A method that raises reaches the caller by name.
    match c
        .call("tencounter", "increment", vec![Value::from(1)])
        .await
    {
        Err(ClientError::Remote { kind, message }) => {
            assert_eq!(kind, "TypeError", "{message}");
        }
        other => panic!("an extra argument was accepted: {other:?}"),
    }
    // Every replica applied the same calls to the same code: each one, as leader, shows
    // the same __str__ (two of three can be asked this way, a majority staying up).
    let first = cluster.leader().await;
    cluster.kill(first);
    assert_eq!(str_of(&c, "tencounter").await, "The counter value is 10");
    let second = cluster.leader().await;
    assert_ne!(first, second);
    assert_eq!(
        c.call("tencounter", "getvalue", vec![]).await.unwrap(),
        Value::from(10)
    );

    // The CLI: call, type list and type show.
    let addrs = cluster.addrs();
    let out = cli(&["call", &addrs, "tencounter", "getvalue"]);
    assert_eq!(text(&out).0.trim(), "10", "{:?}", text(&out));
    let out = cli(&["type", "list", &addrs]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let sha = concoord::object::sandbox::sha256_hex(TEN_COUNTER.as_bytes());
    assert!(
        stdout.starts_with(&format!(
            "tencounter.TenCounter\tsha256:{sha}\t{} bytes\t1 object(s)",
            TEN_COUNTER.len()
        )),
        "{stdout}"
    );
    let out = cli(&["type", "show", &addrs, "tencounter.TenCounter"]);
    let (stdout, _) = text(&out);
    assert!(stdout.ends_with(TEN_COUNTER), "{stdout}");
    let _ = std::fs::remove_dir_all(&foo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_stops_the_founder_with_the_interpreters_message() {
    let foo = scratch("broken");
    std::fs::write(foo.join("broken.py"), "class Broken(:\n    pass\n").unwrap();
    let port = free_ports(1)[0];
    let out = Command::new(BIN)
        .args(["replica", "-o", "broken.Broken", "-p", &port.to_string()])
        .env("PYTHONPATH", &foo)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("-o broken.Broken: SyntaxError"), "{stderr}");
    let out = Command::new(BIN)
        .args(["replica", "-o", "nowhere.Nothing", "-p", &port.to_string()])
        .env("PYTHONPATH", &foo)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("no module 'nowhere' (nowhere.py) in "),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&foo);
}

const V2: &str = r#"class TenCounter:
    def __init__(self, value=0):
        self.value = value

    def increment(self):
        self.value += 100

    def getvalue(self):
        return self.value
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_load_refuses_bad_code_and_replace_keeps_state() {
    let foo = scratch("load");
    let cluster = start(3, "counter", &foo, |_| Vec::new()).await;
    let addrs = cluster.addrs();
    let file = foo.join("tencounter.py");
    std::fs::write(&file, TEN_COUNTER).unwrap();
    let load = |extra: &[&str]| {
        let mut args = vec!["type", "load", &addrs, file.to_str().unwrap()];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let out = load(&[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let c = cluster.client().await;
    c.create("hits", "tencounter.TenCounter", vec![Value::from(5)])
        .await
        .unwrap();
    c.call("hits", "increment", vec![]).await.unwrap();
    assert_eq!(
        c.call("hits", "getvalue", vec![]).await.unwrap(),
        Value::from(15)
    );

    // Other code under the same name needs --replace; broken code is refused either way.
    std::fs::write(&file, V2).unwrap();
    let out = load(&[]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("already defined with other code"),
        "{:?}",
        text(&out)
    );
    // Without --class the group takes the file's only class, and refuses to guess among several.
    std::fs::write(
        &file,
        "class A:\n    def f(self):\n        pass\nclass B:\n    def g(self):\n        pass\n",
    )
    .unwrap();
    let out = load(&[]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("several classes (A, B)"),
        "{:?}",
        text(&out)
    );
    for (broken, expect) in [
        ("class TenCounter(:\n", "SyntaxError"),
        (
            "class Other:\n    def f(self):\n        pass\n",
            "NameError",
        ),
        ("class TenCounter:\n    pass\n", "has no methods"),
    ] {
        std::fs::write(&file, broken).unwrap();
        let out = load(&["--class", "TenCounter", "--replace"]);
        assert!(!out.status.success(), "{broken:?} was accepted");
        assert!(
            text(&out).1.contains(expect),
            "{broken:?}: {:?}",
            text(&out)
        );
    }
    assert_eq!(
        c.call("hits", "getvalue", vec![]).await.unwrap(),
        Value::from(15)
    );
    c.call("hits", "increment", vec![]).await.unwrap();
    assert_eq!(
        c.call("hits", "getvalue", vec![]).await.unwrap(),
        Value::from(25)
    );

    // --replace swaps the code of the live object and keeps its state.
    std::fs::write(&file, V2).unwrap();
    let out = load(&["--replace", "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let summary: serde_json::Value = serde_json::from_str(text(&out).0.trim()).unwrap();
    assert_eq!(
        summary["sha256"],
        concoord::object::sandbox::sha256_hex(V2.as_bytes())
    );
    assert_eq!(
        summary["methods"],
        serde_json::json!(["getvalue", "increment"])
    );
    assert_eq!(
        c.call("hits", "getvalue", vec![]).await.unwrap(),
        Value::from(25)
    );
    c.call("hits", "increment", vec![]).await.unwrap();
    assert_eq!(
        c.call("hits", "getvalue", vec![]).await.unwrap(),
        Value::from(125)
    );
    // The method the new code dropped is gone.
    assert!(matches!(
        c.call("hits", "decrement", vec![]).await,
        Err(ClientError::Remote { kind, .. }) if kind == "AttributeError"
    ));
    let _ = std::fs::remove_dir_all(&foo);
}

const ESCAPES: &str = r#"class Sandbox:
    def __init__(self):
        self.calls = 0

    def ok(self):
        self.calls += 1
        return self.calls

    def read_file(self):
        return open('/etc/passwd').read()

    def import_os(self):
        return __import__('os').getcwd()

    def import_socket(self):
        import socket

    def clock(self):
        import time
        return time.time()

    def dice(self):
        import random
        return random.random()

    def globals_trick(self):
        return self.ok.__globals__['__builtins__']['open']('/etc/passwd')

    def spin(self):
        while True:
            pass

    def recurse(self, n=0):
        return self.recurse(n + 1)

    def big_list(self):
        self.big = [0] * 10**9

    def keep_function(self):
        self.f = lambda: 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_escapes_fail_clearly_while_the_group_keeps_serving() {
    let foo = scratch("escape");
    std::fs::write(foo.join("escapes.py"), ESCAPES).unwrap();
    let cluster = start(3, "escapes.Sandbox", &foo, |_| Vec::new()).await;
    let c = cluster.client().await;
    c.create("counter", "counter", vec![]).await.unwrap();
    // Another client keeps incrementing a built-in counter the whole time.
    let other = cluster.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let busy = tokio::spawn(async move {
        let mut served = 0u64;
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            other
                .call("counter", "increment", vec![])
                .await
                .expect("the other client was refused");
            served += 1;
        }
        served
    });
    let cases: [(&str, &[&str], &str); 11] = [
        ("read_file", &["NameError"], "name 'open' is not defined"),
        (
            "import_os",
            &["ImportError"],
            "import of 'os' is not allowed",
        ),
        (
            "import_socket",
            &["ImportError"],
            "import of 'socket' is not allowed",
        ),
        ("clock", &["ImportError"], "import of 'time' is not allowed"),
        (
            "dice",
            &["ImportError"],
            "import of 'random' is not allowed",
        ),
        (
            "globals_trick",
            &["KeyError", "TypeError", "AttributeError"],
            "",
        ),
        ("spin", &["RuntimeError"], "step budget exceeded"),
        ("recurse", &["RecursionError", "RuntimeError"], ""),
        ("big_list", &["MemoryError"], ""),
        (
            "keep_function",
            &["TypeError"],
            "attribute 'f': a 'function' cannot be kept",
        ),
        ("ok", &[], ""),
    ];
    for (method, kinds, message) in cases {
        let started = Instant::now();
        let result = c.call("sandbox", method, vec![]).await;
        println!("{method}: {result:?} in {:?}", started.elapsed());
        match result {
            Ok(v) => {
                assert!(kinds.is_empty(), "{method} escaped: {v}");
                // Only `ok` changed the state: every failed call rolled back.
                assert_eq!(v, Value::from(1));
            }
            Err(ClientError::Remote { kind, message: m }) => {
                assert!(kinds.contains(&kind.as_str()), "{method}: {kind}: {m}");
                assert!(m.contains(message), "{method}: {kind}: {m}");
            }
            Err(e) => panic!("{method}: {e}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = busy.await.unwrap();
    println!("the other client's increments meanwhile: {served}");
    assert!(served > 0, "the other client was not served");
    assert_eq!(
        c.call("counter", "getvalue", vec![]).await.unwrap(),
        Value::from(served)
    );
    // Every replica is still up and in the view.
    assert_eq!(cluster.wait_for_view(3).await.view.members.len(), 3);
    let _ = std::fs::remove_dir_all(&foo);
}

/// Data on disk, snapshots every 20 slots, and the default 10 s session lease: the client
/// must keep its session while leaders are killed over and over (with the tests' 2 s lease,
/// a reconnect that backs off past it legitimately loses the session).
fn data_flags(dir: &Path, i: usize) -> Vec<String> {
    vec![
        "--data-dir".into(),
        dir.join(format!("r{i}")).to_string_lossy().into_owned(),
        "--snapshot-every".into(),
        "20".into(),
        "--session-lease-ms".into(),
        "10000".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_object_survives_kill_9_snapshots_and_state_transfer() {
    let foo = scratch("durable");
    std::fs::write(foo.join("tencounter.py"), TEN_COUNTER).unwrap();
    let data = foo.join("data");
    let mut cluster = start(3, "tencounter.TenCounter", &foo, |i| data_flags(&data, i)).await;
    let c = cluster.client().await;
    // Far more slots than --snapshot-every: the log is compacted behind snapshots that
    // must carry the type and the object.
    for _ in 0..60 {
        c.call("tencounter", "increment", vec![]).await.unwrap();
    }
    drop(c);
    // kill -9 of every replica, then a restart from the disks alone (no -b, and no module
    // on the path: the group's copy of the type comes from its snapshots and log).
    let empty = scratch("empty");
    let ports: Vec<u16> = cluster.replicas.iter().map(|r| r.port).collect();
    for i in 0..3 {
        cluster.kill(i);
    }
    for (i, &port) in ports.iter().enumerate() {
        let flags = data_flags(&data, i);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        cluster.replicas[i].child = Some(spawn(port, None, "counter", &empty, &flags));
    }
    cluster.wait_for_view(3).await;
    let c = cluster.client().await;
    assert_eq!(
        c.call("tencounter", "getvalue", vec![]).await.unwrap(),
        Value::from(600)
    );

    // A new member receives the state by transfer (a snapshot: the log is compacted).
    let port = free_ports(1)[0];
    let flags = data_flags(&data, 3);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let boot = cluster.replicas[0].addr();
    let child = spawn(port, Some(&boot), "counter", &empty, &flags);
    cluster.replicas.push(Replica {
        port,
        child: Some(child),
    });
    cluster.wait_for_view(4).await;
    c.call("tencounter", "increment", vec![]).await.unwrap();
    // Reads are answered by the leader from its own state: move the leadership until the
    // new member has it (a killed leader restarts from its disk), then read.
    let mut rounds = 0;
    loop {
        let leader = cluster.leader().await;
        if leader == 3 {
            break;
        }
        rounds += 1;
        assert!(rounds <= 25, "the new member never became leader");
        cluster.kill(leader);
        c.call("tencounter", "increment", vec![]).await.unwrap();
        let flags = data_flags(&data, leader);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let port = cluster.replicas[leader].port;
        cluster.replicas[leader].child = Some(spawn(port, None, "counter", &empty, &flags));
        cluster.wait_for_view(4).await;
    }
    let expected = 610 + 10 * rounds;
    assert_eq!(
        c.call("tencounter", "getvalue", vec![]).await.unwrap(),
        Value::from(expected)
    );
    assert_eq!(
        str_of(&c, "tencounter").await,
        format!("The counter value is {expected}")
    );
    let _ = std::fs::remove_dir_all(&foo);
    let _ = std::fs::remove_dir_all(&empty);
}
