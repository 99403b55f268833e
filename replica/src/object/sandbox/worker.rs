//! The object interpreter in a process of its own.
//!
//! A replica starts `concoord sandbox-worker` (its own binary) and sends it requests over a
//! Unix socket pair (the worker's stdin and stdout), one length-prefixed msgpack frame
//! each, and reads each reply on the calling thread with a deadline. The
//! worker caps its address space, so a call that allocates without bound makes the worker
//! fail its allocation and abort; the replica reports MemoryError for that call (the same
//! on every replica: the same code asks for the same memory), keeps the object's state from
//! before the call, and starts a fresh worker for the next one. A call that runs far past
//! the step budget inside one opcode (`sum(range(10**12))`) is stopped by a deadline, the
//! last resort, since only the step budget is counted alike on every replica.

use super::{Reply, Request, Sandbox, WORKER_STACK};
use crate::object::ObjectError;
use std::collections::HashSet;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Address space of the worker: the binary, the interpreter thread's stack reservation and
/// the objects' heap. One call's working set is small (a state is at most 1 MiB).
pub const ADDRESS_SPACE_LIMIT: u64 = 2 << 30;
/// A call still running after this long is stopped (see the module notes).
pub const CALL_DEADLINE: Duration = Duration::from_secs(20);
/// Largest frame either side accepts.
const FRAME_LIMIT: usize = 64 << 20;

/// The subcommand a worker is started with.
pub const SUBCOMMAND: &str = "sandbox-worker";

struct Running {
    child: Child,
    requests: BufWriter<UnixStream>,
    /// Reads time out after [`CALL_DEADLINE`].
    replies: BufReader<UnixStream>,
    /// Code digests this worker has received the source of.
    known: HashSet<String>,
}

/// The replica's handle on its worker process (started on first use, restarted after a
/// crash). Requests are answered one at a time, in the order the replica applies them.
pub struct Worker {
    exe: PathBuf,
    running: Mutex<Option<Running>>,
}

fn write_frame(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)?;
    w.flush()
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_LIMIT {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

impl Worker {
    pub fn new(exe: PathBuf) -> Worker {
        Worker {
            exe,
            running: Mutex::new(None),
        }
    }

    fn start(&self) -> Result<Running, ObjectError> {
        let io = |e: std::io::Error| {
            ObjectError::runtime(format!("cannot connect to the object interpreter: {e}"))
        };
        let (ours, theirs) = UnixStream::pair().map_err(io)?;
        let theirs_out = theirs.try_clone().map_err(io)?;
        ours.set_read_timeout(Some(CALL_DEADLINE)).map_err(io)?;
        let child = Command::new(&self.exe)
            .arg(SUBCOMMAND)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(theirs_out)))
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                ObjectError::runtime(format!(
                    "cannot start the object interpreter ({} {SUBCOMMAND}): {e}",
                    self.exe.display()
                ))
            })?;
        let writer = ours.try_clone().map_err(io)?;
        Ok(Running {
            child,
            requests: BufWriter::new(writer),
            replies: BufReader::new(ours),
            known: HashSet::new(),
        })
    }

    /// Sends one request and waits for its reply.
    pub(super) fn execute(&self, mut req: Request) -> Result<Reply, ObjectError> {
        let mut slot = self
            .running
            .lock()
            .map_err(|_| ObjectError::runtime("the object interpreter is unusable"))?;
        if slot.is_none() {
            *slot = Some(self.start()?);
        }
        let Some(running) = slot.as_mut() else {
            return Err(ObjectError::runtime(
                "the object interpreter is not running",
            ));
        };
        let mut sent_code = Vec::new();
        for code in req.codes_mut() {
            if running.known.contains(&code.sha256) {
                code.source = None;
            } else {
                sent_code.push(code.sha256.clone());
            }
        }
        let bytes = rmp_serde::to_vec(&req)
            .map_err(|e| ObjectError::runtime(format!("cannot encode a request: {e}")))?;
        let outcome = write_frame(&mut running.requests, &bytes)
            .and_then(|()| read_frame(&mut running.replies));
        match outcome {
            Ok(frame) => {
                running.known.extend(sent_code);
                rmp_serde::from_slice::<Result<Reply, ObjectError>>(&frame).map_err(|e| {
                    ObjectError::runtime(format!("bad reply from the object interpreter: {e}"))
                })?
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let _ = running.child.kill();
                let _ = running.child.wait();
                *slot = None;
                Err(ObjectError::runtime(format!(
                    "the call ran for more than {} s and was stopped",
                    CALL_DEADLINE.as_secs()
                )))
            }
            Err(_) => {
                // The worker died during the call: almost always an allocation beyond its
                // address space (Rust aborts when an allocation fails).
                let _ = running.child.kill();
                let status = running.child.wait();
                *slot = None;
                tracing::warn!("the object interpreter stopped during a call: {status:?}");
                Err(ObjectError::new(
                    "MemoryError",
                    format!(
                        "the call needed more memory than an object may use (the interpreter's limit is {} MiB)",
                        ADDRESS_SPACE_LIMIT >> 20
                    ),
                ))
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.running.lock()
            && let Some(mut running) = slot.take()
        {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

/// The worker's side: bounds its address space, then answers requests from stdin until
/// stdin closes (its replica is gone).
pub fn serve() -> ExitCode {
    if let Err(e) = rlimit::setrlimit(
        rlimit::Resource::AS,
        ADDRESS_SPACE_LIMIT,
        ADDRESS_SPACE_LIMIT,
    ) {
        eprintln!("sandbox-worker: cannot bound its address space: {e}");
        return ExitCode::FAILURE;
    }
    let thread = std::thread::Builder::new()
        .name("concoord-python".into())
        .stack_size(WORKER_STACK)
        .spawn(|| {
            // The socket itself rather than std's stdout, which is line-buffered and would
            // split a frame at every newline byte into a write of its own.
            let (Ok(input), Ok(output)) = (
                std::io::stdin().as_fd().try_clone_to_owned(),
                std::io::stdout().as_fd().try_clone_to_owned(),
            ) else {
                return eprintln!("sandbox-worker: cannot take its stdin and stdout");
            };
            let sandbox = Sandbox::new();
            let mut stdin = BufReader::new(std::fs::File::from(input));
            let mut stdout = BufWriter::new(std::fs::File::from(output));
            loop {
                let Ok(frame) = read_frame(&mut stdin) else {
                    return;
                };
                let reply = match rmp_serde::from_slice::<Request>(&frame) {
                    Ok(req) => sandbox.interp.enter(|vm| sandbox.handle(vm, req)),
                    Err(e) => Err(ObjectError::runtime(format!("bad request: {e}"))),
                };
                let bytes = match rmp_serde::to_vec(&reply) {
                    Ok(b) => b,
                    Err(e) => return eprintln!("sandbox-worker: cannot encode a reply: {e}"),
                };
                if write_frame(&mut stdout, &bytes).is_err() {
                    return;
                }
            }
        });
    match thread.map(|t| t.join()) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
