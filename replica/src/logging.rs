//! Logging: `tracing` to stderr, and with `-l HOST:PORT` also to a `concoord logdaemon`.
//!
//! `RUST_LOG` (e.g. `concoord=debug,info`) wins when set; otherwise `-d` means debug and the
//! default is info. Lines for the logdaemon go through a bounded queue to one background
//! thread: when the daemon is slow or down, lines are dropped, never waited for, and the
//! thread reconnects with backoff.

use crate::client::check_addr;
use std::io::{self, IsTerminal, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Lines waiting for the logdaemon; more are dropped.
const QUEUE_LINES: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid logger address (-l): {0}")]
    Logger(String),
    #[error("logging already initialised: {0}")]
    AlreadySet(String),
}

/// Sets up logging for a replica: info by default, debug with `-d`.
pub fn init(debug: bool, logger: Option<String>) -> Result<(), LoggingError> {
    install(if debug { "debug" } else { "info" }, logger)
}

/// Sets up logging for a command-line tool, whose stdout is its output: warnings only by
/// default, debug with `-d`.
pub fn init_tool(debug: bool) -> Result<(), LoggingError> {
    install(if debug { "debug" } else { "warn" }, None)
}

fn install(default_level: &str, logger: Option<String>) -> Result<(), LoggingError> {
    // hickory logs every DNS query at info: the nameserver would flood the log.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default_level},hickory_server=warn,hickory_net=warn,hickory_proto=warn,hickory_resolver=warn"
        ))
    });
    let network = match logger {
        Some(addr) => {
            check_addr(&addr).map_err(|e| LoggingError::Logger(e.to_string()))?;
            let sink = NetSink::start(addr, QUEUE_LINES);
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(sink),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        // Colours only for a person at a terminal, never in files, pipes or container logs.
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(io::stderr().is_terminal())
                .with_writer(io::stderr),
        )
        .with(network)
        .try_init()
        .map_err(|e| LoggingError::AlreadySet(e.to_string()))
}

/// A `MakeWriter` whose every event becomes one line queued for the logdaemon.
#[derive(Clone, Debug)]
pub struct NetSink {
    tx: SyncSender<Vec<u8>>,
}

impl NetSink {
    /// Starts the forwarding thread for `addr` (host:port) with room for `queue` lines.
    pub fn start(addr: String, queue: usize) -> NetSink {
        let (tx, rx) = sync_channel(queue.max(1));
        let spawned = std::thread::Builder::new()
            .name("concoord-log".into())
            .spawn(move || forward(&addr, &rx));
        if let Err(e) = spawned {
            // Without the thread the queue just fills and lines are dropped.
            eprintln!("cannot start the network logger: {e}");
        }
        NetSink { tx }
    }
}

impl<'a> MakeWriter<'a> for NetSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buf: Vec::new(),
            tx: self.tx.clone(),
        }
    }
}

/// Collects one formatted event and queues it when dropped.
pub struct LineWriter {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if !self.buf.ends_with(b"\n") {
            self.buf.push(b'\n');
        }
        // A full queue means the daemon is slow or down: drop the line, never wait.
        let _ = self.tx.try_send(std::mem::take(&mut self.buf));
    }
}

/// The forwarding thread: writes queued lines to the daemon, reconnecting with backoff;
/// lines that arrive while it is unreachable are dropped.
fn forward(addr: &str, rx: &Receiver<Vec<u8>>) {
    let mut conn: Option<TcpStream> = None;
    let mut retry_at = Instant::now();
    let mut backoff = BACKOFF_MIN;
    while let Ok(line) = rx.recv() {
        if conn.is_none() && Instant::now() >= retry_at {
            match connect(addr) {
                Ok(stream) => {
                    conn = Some(stream);
                    backoff = BACKOFF_MIN;
                }
                Err(_) => {
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        if let Some(stream) = conn.as_mut()
            && stream.write_all(&line).is_err()
        {
            conn = None;
            retry_at = Instant::now() + backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} has no address"));
    for sa in resolve_blocking(addr)? {
        match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `net::resolve` for this plain thread (the C resolver is missing in the container image).
fn resolve_blocking(addr: &str) -> io::Result<Vec<std::net::SocketAddr>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::net::resolve::lookup(addr))
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn log_line(sink: &NetSink, text: &str) {
        let mut w = sink.make_writer();
        w.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_reach_the_daemon() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink = NetSink::start(listener.local_addr().unwrap().to_string(), 16);
        log_line(&sink, "hello\n");
        log_line(&sink, "no newline");
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut lines = BufReader::new(stream).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "hello");
        assert_eq!(lines.next().unwrap().unwrap(), "no newline");
    }

    #[test]
    fn an_absent_daemon_never_blocks_the_logger() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let sink = NetSink::start(addr, 4);
        let start = Instant::now();
        for i in 0..10_000 {
            log_line(&sink, &format!("line {i}\n"));
        }
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_bad_logger_address_is_refused() {
        let e = install("info", Some("nohostport".into())).unwrap_err();
        assert!(matches!(e, LoggingError::Logger(_)), "{e}");
    }
}
