//! The `concoord` command line, run as a user runs it: the real binary against real replica
//! processes on 127.0.0.1. Every wait has a deadline, and every process a test starts is
//! killed when the test ends, also when it fails (see [`Proc`]).
//!
//! The README's commands and its Rust client example are exercised here too; when you
//! change one, change the other.

mod common;

use common::{BIN, Cluster};
use concoord::client::{Client, ClientError, ClientOptions};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one short `concoord` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long a long-running process may take to print what we wait for.
const START_LIMIT: Duration = Duration::from_secs(30);

// ----- helpers -----------------------------------------------------------------------------

/// What a finished `concoord` command printed.
#[derive(Debug)]
struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(&self) -> bool {
        self.status.success()
    }

    /// The one line on stdout of a successful command.
    fn line(&self) -> &str {
        assert!(self.ok(), "command failed: {self:?}");
        assert!(self.stderr.is_empty(), "unexpected stderr: {self:?}");
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stdout: {self:?}");
        lines[0]
    }

    /// A successful command that may or may not print (create, delete).
    fn line_or_empty(&self) -> &str {
        assert!(self.ok(), "command failed: {self:?}");
        self.stdout.trim_end()
    }

    /// The one line on stderr of a failed command (stdout must be empty).
    fn error_line(&self) -> &str {
        assert!(!self.ok(), "command should have failed: {self:?}");
        assert!(self.stdout.is_empty(), "unexpected stdout: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        lines[0]
    }
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on it.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `concoord ARGS...` to completion (killed, and the test failed, after `limit`).
fn concoord_within(args: &[&str], limit: Duration) -> Out {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start concoord");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for concoord") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`concoord {}` did not finish within {limit:?}; stderr: {}",
                args.join(" "),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn concoord(args: &[&str]) -> Out {
    concoord_within(args, COMMAND_LIMIT)
}

/// `concoord call ADDRS ARGS...`
fn call(addrs: &str, args: &[&str]) -> Out {
    let mut all = vec!["call", addrs];
    all.extend_from_slice(args);
    concoord(&all)
}

/// A long-running `concoord` process whose output lines we watch. Dropping it kills the
/// process.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<(&'static str, String)>,
    seen: Vec<(&'static str, String)>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_in(args, None)
    }

    fn spawn_in(args: &[&str], dir: Option<&std::path::Path>) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("start concoord");
        let (tx, lines) = mpsc::channel();
        for (stream, pipe) in [
            (
                "stdout",
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            ),
            ("stderr", Box::new(child.stderr.take().expect("stderr"))),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    if tx.send((stream, line)).is_err() {
                        return;
                    }
                }
            });
        }
        Proc {
            name: format!("concoord {}", args.join(" ")),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line on `stream` ("stdout" or "stderr") that satisfies `want`.
    fn wait_for_line(&mut self, stream: &str, want: impl Fn(&str) -> bool) -> String {
        self.try_wait_for_line(stream, want)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Proc::wait_for_line`], but says why there was no such line instead of failing.
    fn try_wait_for_line(
        &mut self,
        stream: &str,
        want: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        if let Some((_, line)) = self.seen.iter().find(|(s, l)| *s == stream && want(l)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((s, line)) => {
                    self.seen.push((s, line.clone()));
                    if s == stream && want(&line) {
                        return Ok(line);
                    }
                }
                Err(e) => {
                    let printed = self.printed();
                    return Err(format!(
                        "`{}`: no such line on {stream} ({e}); it printed:\n{printed}",
                        self.name
                    ));
                }
            }
        }
    }

    /// Everything printed so far, for failure messages.
    fn printed(&mut self) -> String {
        while let Ok(item) = self.lines.try_recv() {
            self.seen.push(item);
        }
        self.seen
            .iter()
            .map(|(s, l)| format!("[{s}] {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {} failed", self.pid());
    }

    /// Waits for the process to exit on its own.
    fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let printed = self.printed();
                panic!(
                    "`{}` did not exit within {limit:?}; it printed:\n{printed}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` consecutive ports on 127.0.0.1 that were free a moment ago (for `concoord local`,
/// which numbers its replicas from one port). Below Linux's ephemeral range, so outgoing
/// connections do not take them meanwhile.
fn consecutive_free_ports(n: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = u64::from(std::process::id()) ^ u64::from(nanos);
    for attempt in 0..1000u64 {
        let base = 20_000 + ((seed.wrapping_mul(7919) + attempt * 97) % 10_000) as u16;
        let bound: Vec<_> = (0..n)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if bound.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "concoord-cli-{tag}-{}-{}",
            std::process::id(),
            common::free_ports(1)[0]
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns true (the test fails after `limit`).
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- concoord call ---------------------------------------------------------------------

/// The seed's tutorial (counter with two replicas, reset) through `concoord call`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_follows_the_seed_tutorial() {
    let cluster = Cluster::start(2).await;
    let addrs = cluster.addrs();
    assert!(addrs.contains(", "), "{addrs}");

    assert_eq!(call(&addrs, &["counter", "increment"]).line(), "null");
    assert_eq!(call(&addrs, &["counter", "increment"]).line(), "null");
    let out = call(&addrs, &["counter", "getvalue"]);
    assert!(out.ok());
    assert_eq!(out.stdout, "2\n");
    assert!(out.stderr.is_empty(), "{out:?}");

    // __concoordinit__ re-runs the constructor: a reset.
    assert_eq!(
        call(&addrs, &["counter", "__concoordinit__"]).line(),
        "null"
    );
    assert_eq!(call(&addrs, &["counter", "getvalue"]).line(), "0");
    call(&addrs, &["counter", "increment"]).line();
    assert_eq!(call(&addrs, &["counter", "getvalue"]).line(), "1");
    // With constructor arguments, and through one address only.
    let one = cluster.replicas[1].addr();
    call(&one, &["counter", "__concoordinit__", "40"]).line();
    call(&one, &["counter", "increment"]).line();
    assert_eq!(call(&addrs, &["counter", "getvalue"]).line(), "41");
    assert_eq!(
        call(&addrs, &["counter", "__str__"]).line(),
        "\"The counter value is 41\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_errors_are_one_line_on_stderr_with_a_failing_exit() {
    let cluster = Cluster::start(1).await;
    let addrs = cluster.addrs();
    for (args, expected) in [
        (
            &["counter", "nosuch"][..],
            "AttributeError: 'Counter' object has no attribute 'nosuch'",
        ),
        (
            &["counter", "increment", "5"],
            "TypeError: increment() takes 0 positional arguments but 1 was given",
        ),
        (
            &["nosuch", "getvalue"],
            "NameError: name 'nosuch' is not defined",
        ),
    ] {
        let out = call(&addrs, args);
        assert_eq!(out.error_line(), expected, "{args:?}");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }

    call(&addrs, &["--create", "lk", "Lock"]);
    assert_eq!(
        call(&addrs, &["lk", "release"]).error_line(),
        "RuntimeError: cannot release un-acquired lock"
    );
    call(&addrs, &["--create", "sem", "BoundedSemaphore", "1"]);
    assert_eq!(
        call(&addrs, &["sem", "release"]).error_line(),
        "ValueError: Semaphore released too many times"
    );
    // Errors before any replica is asked are one line too.
    let out = call(&addrs, &["counter"]);
    assert!(out.error_line().contains("OBJECT METHOD"), "{out:?}");
    let free = common::free_ports(1)[0];
    let out = concoord(&[
        "call",
        "--timeout",
        "3s",
        &format!("127.0.0.1:{free}"),
        "counter",
        "getvalue",
    ]);
    let line = out.error_line();
    assert!(
        line.contains("no replica reachable") || line.starts_with("Timeout"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_arguments_are_json_else_strings() {
    let cluster = Cluster::start(1).await;
    let addrs = cluster.addrs();
    assert!(call(&addrs, &["--create", "kv", "Dict"]).ok());

    call(&addrs, &["kv", "set", "k", r#"{"a":[1,2]}"#]).line();
    assert_eq!(call(&addrs, &["kv", "get", "k"]).line(), r#"{"a":[1,2]}"#);
    // Not JSON: taken as a string.
    call(&addrs, &["kv", "set", "s", "hello world"]).line();
    assert_eq!(call(&addrs, &["kv", "get", "s"]).line(), r#""hello world""#);
    // Numbers, negative numbers, booleans, null; a quoted number stays a string.
    call(&addrs, &["kv", "set", "n", "-5"]).line();
    call(&addrs, &["kv", "set", "f", "1.5"]).line();
    call(&addrs, &["kv", "set", "t", "true"]).line();
    call(&addrs, &["kv", "set", "z", "null"]).line();
    call(&addrs, &["kv", "set", "q", r#""5""#]).line();
    assert_eq!(
        call(&addrs, &["kv", "items"]).line(),
        r#"[["f",1.5],["k",{"a":[1,2]}],["n",-5],["q","5"],["s","hello world"],["t",true],["z",null]]"#
    );
    // `--` lets an argument that starts with a dash through as a string.
    call(&addrs, &["kv", "set", "--", "dash", "--x"]).line();
    assert_eq!(call(&addrs, &["kv", "get", "dash"]).line(), r#""--x""#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_create_list_delete() {
    let cluster = Cluster::start(1).await;
    let addrs = cluster.addrs();
    assert_eq!(call(&addrs, &["--list"]).line(), r#"{"counter":"Counter"}"#);

    // --create prints nothing; the remaining arguments go to the constructor.
    let out = call(&addrs, &["--create", "q", "Queue", "2"]);
    assert!(
        out.ok() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{out:?}"
    );
    let out = call(
        &addrs,
        &["--create", "c2", "concoord.object.counter.Counter", "7"],
    );
    assert!(out.ok(), "{out:?}");
    assert_eq!(call(&addrs, &["c2", "getvalue"]).line(), "7");
    assert_eq!(
        call(&addrs, &["--list"]).line(),
        r#"{"c2":"Counter","counter":"Counter","q":"Queue"}"#
    );
    call(&addrs, &["q", "put", "a"]).line();
    call(&addrs, &["q", "put", "b"]).line();
    assert_eq!(call(&addrs, &["q", "full"]).line(), "true");
    assert_eq!(call(&addrs, &["q", "get"]).line(), r#""a""#);

    assert_eq!(
        call(&addrs, &["--create", "q", "Queue"]).error_line(),
        "ValueError: object 'q' already exists"
    );
    assert!(
        call(&addrs, &["--create", "x", "NoSuchType"])
            .error_line()
            .contains("NoSuchType")
    );

    let out = call(&addrs, &["--delete", "q"]);
    assert!(out.ok() && out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        call(&addrs, &["--list"]).line(),
        r#"{"c2":"Counter","counter":"Counter"}"#
    );
    assert_eq!(
        call(&addrs, &["--delete", "q"]).error_line(),
        "NameError: name 'q' is not defined"
    );
    assert_eq!(
        call(&addrs, &["q", "qsize"]).error_line(),
        "NameError: name 'q' is not defined"
    );
    assert!(
        call(&addrs, &["--list", "extra"])
            .error_line()
            .contains("--list takes no further arguments")
    );
}

/// The README's lock walk-through: one `concoord call --hold` holds a lock, another call
/// waits for it, and gets it once the holder is interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_one_call_blocks_another() {
    let cluster = Cluster::start(1).await;
    let addrs = cluster.addrs();
    call(&addrs, &["--create", "lk", "Lock"]).line_or_empty();

    // ConCoord 1.1's Lock.acquire() returns None, printed as null.
    let mut holder = Proc::spawn(&["call", &addrs, "lk", "acquire", "--hold"]);
    holder.wait_for_line("stdout", |l| l == "null");
    assert_eq!(call(&addrs, &["lk", "locked"]).line(), "true");
    // A non-blocking attempt says no; a blocking one waits until its deadline.
    assert_eq!(call(&addrs, &["lk", "acquire", "false"]).line(), "false");
    let started = Instant::now();
    assert_eq!(
        call(&addrs, &["--timeout", "1s", "lk", "acquire"]).error_line(),
        "Timeout: no reply before the deadline"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A waiter in the background gets the lock as soon as the holder lets go.
    let mut waiter = Proc::spawn(&["call", &addrs, "lk", "acquire", "--hold"]);
    std::thread::sleep(Duration::from_millis(300));
    // It prints its result (null) only once it holds the lock.
    assert!(
        !waiter.printed().contains("[stdout]"),
        "the waiter got a held lock"
    );
    holder.interrupt();
    assert!(holder.wait_for_exit(COMMAND_LIMIT).success());
    waiter.wait_for_line("stdout", |l| l == "null");
    waiter.interrupt();
    assert!(waiter.wait_for_exit(COMMAND_LIMIT).success());
    // Ending a session releases what it held.
    eventually("the lock is free again", COMMAND_LIMIT, || {
        call(&addrs, &["lk", "locked"]).line() == "false"
    });
}

/// `concoord lock ADDRS NAME -- COMMAND` holds the lock in one session while the command
/// runs: two of them never overlap, the command's exit code is kept, and the lock is free
/// again afterwards (also after a failing command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_a_command_while_holding_the_lock() {
    let cluster = Cluster::start(1).await;
    let addrs = cluster.addrs();
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal");
    let script = format!(
        "echo \"start $CONCOORD_LOCK\" >> {j}; sleep 0.5; echo end >> {j}",
        j = journal.display()
    );
    // Two at once: the second waits for the first (the lock is created on first use).
    let runs: Vec<std::thread::JoinHandle<Out>> = (0..2)
        .map(|_| {
            let (addrs, script) = (addrs.clone(), script.clone());
            std::thread::spawn(move || {
                concoord(&["lock", &addrs, "deploy", "--", "sh", "-c", &script])
            })
        })
        .collect();
    for run in runs {
        let out = run.join().expect("lock thread");
        assert!(out.ok(), "{out:?}");
    }
    let lines = std::fs::read_to_string(&journal).expect("journal");
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        ["start deploy", "end", "start deploy", "end"],
        "the two commands overlapped"
    );
    assert_eq!(
        call(&addrs, &["--list"]).line(),
        r#"{"counter":"Counter","deploy":"Lock"}"#
    );

    // A failing command: its exit code is ours, and the lock is released all the same.
    let out = concoord(&["lock", &addrs, "deploy", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(call(&addrs, &["deploy", "locked"]).line(), "false");

    // --no-wait while another session holds it: one clear line, the command never runs.
    let mut holder = Proc::spawn(&["call", &addrs, "deploy", "acquire", "--hold"]);
    holder.wait_for_line("stdout", |l| !l.is_empty());
    let marker = dir.path().join("ran");
    let out = concoord(&[
        "lock",
        "--no-wait",
        &addrs,
        "deploy",
        "--",
        "touch",
        &marker.display().to_string(),
    ]);
    assert_eq!(out.error_line(), "deploy is held by another session");
    assert!(!marker.exists());
    holder.interrupt();
    assert!(holder.wait_for_exit(COMMAND_LIMIT).success());
    // A command that cannot start: one line, and nothing stays held.
    let out = concoord(&["lock", &addrs, "deploy", "--", "/no/such/program"]);
    assert!(
        out.error_line().starts_with("cannot run /no/such/program"),
        "{out:?}"
    );
    assert_eq!(call(&addrs, &["deploy", "locked"]).line(), "false");
}

/// The README's semaphore walk-through: permits are counted across callers, and a holder
/// killed without a word gives its permit back when its session lease runs out (2 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_through_the_command_line() {
    let cluster = Cluster::start(1).await;
    let addrs = cluster.addrs();
    call(&addrs, &["--create", "sem", "Semaphore", "2"]).line_or_empty();
    // As in ConCoord 1.1, __str__ names the type and __repr__ shows the count.
    assert_eq!(
        call(&addrs, &["sem", "__str__"]).line(),
        r#""<DSemaphore object>""#
    );
    assert_eq!(
        call(&addrs, &["sem", "__repr__"]).line(),
        r#""<DSemaphore count=2>""#
    );
    let mut first = Proc::spawn(&["call", &addrs, "sem", "acquire", "--hold"]);
    first.wait_for_line("stdout", |l| l == "true");
    let mut second = Proc::spawn(&["call", &addrs, "sem", "acquire", "--hold"]);
    second.wait_for_line("stdout", |l| l == "true");
    assert_eq!(
        call(&addrs, &["sem", "__repr__"]).line(),
        r#""<DSemaphore count=0>""#
    );
    assert_eq!(call(&addrs, &["sem", "acquire", "false"]).line(), "false");
    first.interrupt();
    assert!(first.wait_for_exit(COMMAND_LIMIT).success());
    eventually("one permit is back", COMMAND_LIMIT, || {
        call(&addrs, &["sem", "__repr__"]).line() == r#""<DSemaphore count=1>""#
    });

    // SIGKILL: the session is not closed, so the permit stays taken until the lease ends.
    let killed = Instant::now();
    drop(second);
    assert_eq!(
        call(&addrs, &["sem", "__repr__"]).line(),
        r#""<DSemaphore count=1>""#
    );
    eventually("the dead holder's permit is back", START_LIMIT, || {
        call(&addrs, &["sem", "__repr__"]).line() == r#""<DSemaphore count=2>""#
    });
    assert!(
        killed.elapsed() >= Duration::from_millis(500),
        "released before the lease ran out"
    );
}

// ----- concoord status -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_replica_the_leader_and_the_view() {
    let cluster = Cluster::start(3).await;
    let expected = cluster.wait_for_view(3).await;
    let view = expected.view.number;
    // One address is enough: the others are found through the view.
    let first = cluster.replicas[0].addr();

    let table = concoord(&["status", &first]);
    assert!(table.ok(), "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "header and three replicas:\n{}",
        table.stdout
    );
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "ADDRESS", "LEADER", "VIEW", "BALLOT", "DECIDED", "EXECUTED", "STATE"
        ]
    );
    for r in &cluster.replicas {
        let row = lines[1..]
            .iter()
            .find(|l| l.contains(&r.addr()))
            .unwrap_or_else(|| panic!("{} missing:\n{}", r.addr(), table.stdout));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert!(row.ends_with("ok"), "{row}");
        let is_leader = cells[2] == "*";
        let view_cell = if is_leader { cells[3] } else { cells[2] };
        assert_eq!(view_cell, view.to_string(), "{row}");
    }
    let leaders: Vec<&&str> = lines[1..].iter().filter(|l| l.contains(" * ")).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader:\n{}", table.stdout);
    let leader_addr = expected.view.members[&expected.replica].clone();
    assert!(leaders[0].contains(&leader_addr), "{}", table.stdout);

    let json = concoord(&["status", &first, "--json"]);
    let parsed: serde_json::Value =
        serde_json::from_str(json.line()).expect("status --json prints JSON");
    let items = parsed.as_array().expect("an array of replicas");
    assert_eq!(items.len(), 3, "{parsed}");
    let mut leaders = 0;
    for item in items {
        assert_eq!(item["reachable"], true, "{item}");
        assert_eq!(item["view"], view, "{item}");
        assert_eq!(
            item["members"].as_object().map(|m| m.len()),
            Some(3),
            "{item}"
        );
        assert_eq!(item["leader"], expected.replica, "{item}");
        if item["is_leader"] == true {
            leaders += 1;
            assert_eq!(item["addr"], leader_addr.as_str(), "{item}");
            assert_eq!(item["replica"], expected.replica, "{item}");
        }
        for key in [
            "ballot",
            "decided_upto",
            "executed_upto",
            "sessions",
            "objects",
        ] {
            assert!(item.get(key).is_some(), "{key} missing: {item}");
        }
    }
    assert_eq!(leaders, 1, "{parsed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_marks_a_dead_replica_unreachable() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let dead = (leader + 1) % 3;
    let dead_addr = cluster.replicas[dead].addr();
    cluster.kill(dead);
    let out = concoord(&["status", &cluster.addrs(), "--timeout", "1s"]);
    assert!(out.ok(), "some replicas answer: {out:?}");
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains(&dead_addr))
        .unwrap_or_else(|| panic!("{dead_addr} missing:\n{}", out.stdout));
    assert!(row.contains("unreachable"), "{row}");

    // No replica at all: an error line and a failing exit.
    let free = common::free_ports(1)[0];
    let out = concoord(&["status", &format!("127.0.0.1:{free}"), "--timeout", "1s"]);
    assert!(!out.ok());
    assert!(out.stderr.contains("no replica answered"), "{out:?}");
}

// ----- concoord local --------------------------------------------------------------------

#[test]
fn local_starts_a_cluster_that_answers_and_stops_on_ctrl_c() {
    // Another process may take one of the ports between our check and the start: try again.
    let mut attempts = 0;
    let (port, mut local, up) = loop {
        attempts += 1;
        let port = consecutive_free_ports(3);
        let mut local = Proc::spawn(&["local", "--replicas", "3", "--port", &port.to_string()]);
        match local.try_wait_for_line("stdout", |l| l.contains("is up")) {
            Ok(up) => break (port, local, up),
            Err(e) if attempts < 3 && e.contains("cannot listen") => continue,
            Err(e) => panic!("{e}"),
        }
    };
    let addrs = up
        .split_once("is up: ")
        .map(|(_, a)| a.to_string())
        .unwrap_or_else(|| panic!("no addresses in {up:?}"));
    let expected: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", port + i)).collect();
    assert_eq!(addrs, expected.join(", "));
    // It tells the newcomer what to type next.
    local.wait_for_line("stdout", |l| {
        l.contains("concoord call") && l.contains("counter getvalue")
    });

    call(&addrs, &["counter", "increment"]).line();
    call(&addrs, &["counter", "increment"]).line();
    assert_eq!(call(&addrs, &["counter", "getvalue"]).line(), "2");
    // All three replicas are in one view.
    eventually("a view of three", START_LIMIT, || {
        let out = concoord(&["status", &addrs, "--json"]);
        let parsed: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
        parsed.as_array().is_some_and(|items| {
            items.len() == 3
                && items.iter().all(|i| {
                    i["members"].as_object().map(|m| m.len()) == Some(3) && i["leader"].is_u64()
                })
        })
    });

    local.interrupt();
    let status = local.wait_for_exit(COMMAND_LIMIT);
    assert!(
        status.success(),
        "exit {status:?}; printed:\n{}",
        local.printed()
    );
    // The ports are free again.
    eventually("the replicas' ports are released", COMMAND_LIMIT, || {
        (0..3).all(|i| TcpListener::bind(("127.0.0.1", port + i)).is_ok())
    });
}

// ----- -l and concoord logdaemon ---------------------------------------------------------

#[test]
fn logdaemon_prints_replica_lines_prefixed_with_the_sender() {
    let [log_port, port] = common::free_ports(2)[..] else {
        unreachable!()
    };
    let mut daemon = Proc::spawn(&["logdaemon", "-p", &log_port.to_string()]);
    daemon.wait_for_line("stderr", |l| l.contains("logdaemon listening on"));

    let logger = format!("127.0.0.1:{log_port}");
    let _replica = Proc::spawn(&[
        "replica",
        "-o",
        "concoord.object.counter.Counter",
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-l",
        &logger,
    ]);
    let line = daemon.wait_for_line("stdout", |l| l.contains("founded a new group"));
    // "127.0.0.1:PORT: <the replica's log line>"
    let (sender, text) = line
        .split_once(": ")
        .unwrap_or_else(|| panic!("no sender prefix: {line:?}"));
    let sender: std::net::SocketAddr = sender
        .parse()
        .unwrap_or_else(|e| panic!("sender {sender:?} is not an address ({e}): {line:?}"));
    assert!(sender.ip().is_loopback(), "{line}");
    assert!(
        text.contains(&format!("127.0.0.1:{port} founded a new group")),
        "{line}"
    );
    assert!(text.contains("INFO"), "{line}");
    // Lines keep coming while the replica runs.
    call(&format!("127.0.0.1:{port}"), &["counter", "increment"]).line();
}

// ----- concoord replica: the flags of later issues ---------------------------------------
//
// One small test per flag, so each is easy to find and update when its issue moves on.

/// `-n DOMAIN` (issue 5) serves DNS for the group; a bad domain is one clear line.
#[test]
fn replica_flag_n_serves_dns_for_the_domain() {
    let [port, dns_port] = common::free_ports(2)[..] else {
        unreachable!()
    };
    let mut replica = Proc::spawn(&[
        "replica",
        "-p",
        &port.to_string(),
        "-n",
        "counterdomain.com",
        "--dns-port",
        &dns_port.to_string(),
    ]);
    replica.wait_for_line("stderr", |l| {
        l.contains("serving counterdomain.com.") && l.contains(&format!("127.0.0.1:{dns_port}"))
    });

    let out = concoord(&["replica", "-p", &port.to_string(), "-n", ""]);
    assert!(out.error_line().starts_with("-n: "), "{out:?}");
}

/// `-r` (Route53, issue 5) only goes with `-n`.
#[test]
fn replica_flag_r_needs_a_domain() {
    let port = common::free_ports(1)[0].to_string();
    let out = concoord(&["replica", "-p", &port, "-r"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error:"), "{out:?}");
    assert!(out.stderr.contains("--domainname"), "{out:?}");
}

/// `-w` is live: the replica keeps its log in ./concoord-data-ADDR-PORT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_flag_w_writes_to_disk_in_the_working_directory() {
    let dir = TempDir::new("w");
    let port = common::free_ports(1)[0];
    let mut replica = Proc::spawn_in(
        &["replica", "-o", "counter", "-p", &port.to_string(), "-w"],
        Some(&dir.0),
    );
    replica.wait_for_line("stderr", |l| l.contains("founded a new group"));
    let addr = format!("127.0.0.1:{port}");
    call(&addr, &["counter", "increment"]).line();
    let data = dir.0.join(format!("concoord-data-127.0.0.1-{port}"));
    assert!(data.is_dir(), "{} was not created", data.display());
    let files = std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0);
    assert!(files > 0, "{} is empty", data.display());
}

/// `ec2` refuses a cluster name that could not be a tag value or a script word, in one
/// line, before it talks to AWS (tests/ec2.rs covers the rest against moto).
#[test]
fn ec2_refuses_a_bad_cluster_name_in_one_line() {
    let out = concoord(&["ec2", "user-data", "--cluster", "a b"]);
    assert_eq!(
        out.error_line(),
        "--cluster \"a b\": use 1 to 64 letters, digits, '-', '_' or '.'"
    );
}

// ----- concoord replica: bad input -------------------------------------------------------

#[test]
fn replica_with_a_bad_boot_address_says_so_in_one_line() {
    let port = common::free_ports(1)[0].to_string();
    for (boot, needle) in [
        ("nohost", "expected host:port"),
        ("127.0.0.1:abc", "port must be a number"),
        ("127.0.0.1:0", "port must be a number"),
    ] {
        let out = concoord(&["replica", "-p", &port, "-b", boot]);
        let line = out.error_line();
        assert!(line.starts_with("-b: "), "{boot}: {line}");
        assert!(
            line.contains(boot) && line.contains(needle),
            "{boot}: {line}"
        );
    }
    let out = concoord(&["replica", "-p", &port, "-l", "nohost"]);
    assert!(out.error_line().starts_with("-l: "), "{out:?}");
}

#[test]
fn replica_with_a_bad_port_says_so_clearly() {
    // Refused by the argument parser: its error line names the flag and the value, then a
    // hint to --help; exit code 2 as for every usage error.
    for port in ["0", "99999", "abc"] {
        let out = concoord(&["replica", "-p", port]);
        assert_eq!(out.status.code(), Some(2), "{port}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{port}: {}", out.stderr);
        assert!(errors[0].contains("--port"), "{port}: {}", errors[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_on_a_port_in_use_says_so_in_one_line() {
    let cluster = Cluster::start(1).await;
    let port = cluster.replicas[0].port.to_string();
    let out = concoord(&["replica", "-a", "127.0.0.1", "-p", &port]);
    let line = out.error_line();
    assert!(
        line.starts_with(&format!("cannot listen on 127.0.0.1:{port}")),
        "{line}"
    );
}

// ----- the README's Rust client example ------------------------------------------------------
//
// README.md shows `tutorial` below verbatim (the test checks). It compiles and runs here.

// README-RUST-START
async fn tutorial(addrs: &str) -> Result<(), ClientError> {
    // One client is one session; it finds the leader among `addrs` by itself.
    let client = Client::connect(addrs, ClientOptions::default()).await?;

    // The counter the replicas were started with (-o ...Counter), through a typed proxy.
    let counter = client.counter("counter");
    counter.increment().await?;
    counter.increment().await?;
    assert_eq!(counter.getvalue().await?, 2);
    // __concoordinit__ re-runs the constructor: back to 0.
    counter.reinit(vec![]).await?;
    counter.increment().await?;
    assert_eq!(counter.getvalue().await?, 1);

    // Any method by name, with msgpack values: the dynamic form of the same call.
    let value = client.call("counter", "getvalue", vec![]).await?;
    assert_eq!(value.as_i64(), Some(1));

    // A lock held by one client blocks another until it is released.
    client.create("lk", "Lock", vec![]).await?;
    let other = Client::connect(addrs, ClientOptions::default()).await?;
    let mine = client.lock("lk");
    let theirs = other.lock("lk");
    assert!(mine.acquire().await?);
    assert!(!theirs.try_acquire().await?); // held: would have to wait
    let waiting = tokio::spawn(async move { theirs.acquire().await });
    mine.release().await?;
    assert!(waiting.await.expect("task")?); // granted once released
    other.close().await?; // ending a session releases its locks

    // A semaphore with two permits.
    client.create("sem", "Semaphore", vec![2.into()]).await?;
    let sem = client.semaphore("sem");
    assert!(sem.acquire().await?);
    assert!(sem.acquire().await?);
    assert!(!sem.try_acquire().await?);
    assert_eq!(sem.repr().await?, "<DSemaphore count=0>");
    sem.release().await?;
    assert_eq!(sem.repr().await?, "<DSemaphore count=1>");
    assert_eq!(sem.describe().await?, "<DSemaphore object>"); // __str__, as ConCoord's

    // Errors carry the Python exception name and message.
    let err = client.call("counter", "nosuch", vec![]).await.unwrap_err();
    assert!(err.is_remote("AttributeError"));

    client.close().await?;
    Ok(())
}
// README-RUST-END

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_rust_client_example_runs() {
    let cluster = Cluster::start(2).await;
    tutorial(&cluster.addrs())
        .await
        .expect("the README example");
}

#[test]
fn readme_shows_the_rust_client_example_verbatim() {
    let source = include_str!("cli.rs");
    let marker = "// README-RUST-START\n";
    let start = source.find(marker).expect("start marker") + marker.len();
    let end = source.find("// README-RUST-END").expect("end marker");
    let example = &source[start..end];
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(example),
        "README.md should contain this example verbatim:\n{example}"
    );
}
