//! A history recorder that tasks and threads share: stamp a call when it is sent, stamp its
//! outcome when it arrives, check the history at the end.

use super::{CallId, History, ObjectSpec, Op, Outcome};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Records calls with timestamps in microseconds since the recorder was made.
///
/// Stamp the invocation before the request leaves and the return after the reply
/// arrived: a window that is too wide only makes the check more lenient, one that is too
/// narrow makes it report false violations. A call whose outcome is unknown (timed out,
/// connection lost, session expired on a retry) is simply never returned.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    history: Mutex<History>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            history: Mutex::new(History::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        // A panic elsewhere while recording leaves the history usable.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Says how `object` starts, when not as its constructor's defaults.
    pub fn declare(&self, object: &str, spec: ObjectSpec) {
        self.lock().declare(object, spec);
    }

    /// `client` is the caller's session (the owner of the locks and permits it acquires).
    pub fn record_invoke(&self, client: u64, op: Op) -> CallId {
        let mut h = self.lock();
        let at = self.now();
        h.invoke(client, op, at)
    }

    pub fn record_return(&self, id: CallId, outcome: Outcome) {
        let mut h = self.lock();
        let at = self.now();
        h.ret(id, at, outcome);
    }

    /// A copy of what was recorded so far.
    pub fn history(&self) -> History {
        self.lock().clone()
    }

    /// Checks what was recorded so far (see [`super::check`]).
    pub fn check(&self) -> Result<(), super::Violation> {
        super::check(&self.history())
    }
}
