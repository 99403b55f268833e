//! `concoord logdaemon -p PORT`: the sink for replicas started with `-l HOST:PORT`. Prints
//! every line it receives, prefixed with the sender's address.

use crate::cli::{CliError, LogdaemonArgs};
use futures::StreamExt;
use std::io::Write;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};

/// A longer line ends that sender's connection (the logger reconnects), so a bad sender
/// cannot exhaust memory.
const MAX_LINE: usize = 64 * 1024;

pub async fn run(a: &LogdaemonArgs) -> Result<(), CliError> {
    let addr = format!("{}:{}", a.addr, a.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {addr}: {e}")))?;
    eprintln!("logdaemon listening on {addr}");
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    tokio::spawn(serve(listener, tx));
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{line}").is_err() {
                        return Ok(()); // stdout closed (e.g. piped into head)
                    }
                }
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Accepts senders and passes each of their lines, as `ADDR: line`, to `out`.
pub async fn serve(listener: TcpListener, out: mpsc::Sender<String>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(relay(stream, peer, out.clone()));
            }
            Err(e) => {
                // Usually too many open files: wait a little instead of spinning.
                tracing::warn!(error = %e, "logdaemon accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn relay(stream: TcpStream, peer: SocketAddr, out: mpsc::Sender<String>) {
    let mut lines = FramedRead::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(item) = lines.next().await {
        let (text, last) = match item {
            Ok(line) => (line, false),
            Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded) => {
                let note = format!("(line longer than {MAX_LINE} bytes; connection closed)");
                (note, true)
            }
            Err(_) => return,
        };
        if out.send(format!("{peer}: {text}")).await.is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn prints_lines_with_the_sender() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(serve(listener, tx));
        let mut s = TcpStream::connect(addr).await.unwrap();
        let me = s.local_addr().unwrap();
        s.write_all(b"one\ntwo\n").await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), format!("{me}: one"));
        assert_eq!(rx.recv().await.unwrap(), format!("{me}: two"));
        s.write_all(&vec![b'x'; MAX_LINE + 10]).await.unwrap();
        assert!(rx.recv().await.unwrap().contains("connection closed"));
    }
}
