//! A scripted replica for the client's tests: it speaks the wire protocol on a real TCP
//! socket and hands each connection to the test, which decides every answer.

use crate::command::{ClientCommand, Operation, ReplicaId, Value, View};
use crate::net::frame;
use crate::net::wire::{
    ClientFrame, Hello, PROTOCOL_VERSION, ReplicaFrame, ReplyResult, StatusReport, Welcome,
};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(5);

/// How the fake answers a hello.
#[derive(Clone, Debug)]
pub enum Handshake {
    Accept,
    Refuse,
    /// Bytes that are a frame but not a Welcome.
    Garbage,
}

pub struct FakeReplica {
    pub addr: String,
    conns: mpsc::UnboundedReceiver<FakeConn>,
    task: JoinHandle<()>,
}

impl Drop for FakeReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeReplica {
    pub async fn start() -> FakeReplica {
        FakeReplica::start_with(Handshake::Accept).await
    }

    pub async fn start_with(handshake: Handshake) -> FakeReplica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, conns) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let handshake = handshake.clone();
                tokio::spawn(serve(stream, handshake, tx));
            }
        });
        FakeReplica { addr, conns, task }
    }

    /// Stops listening (new connections are refused); open connections stay.
    pub fn stop_listening(&mut self) {
        self.task.abort();
    }

    /// The next connection that completed the handshake.
    pub async fn accept(&mut self) -> FakeConn {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("no connection to the fake replica")
            .expect("fake replica stopped")
    }

    /// True when no client connected within `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, self.conns.recv()).await.is_err()
    }
}

enum Out {
    Frame(ReplicaFrame),
    Raw(Vec<u8>),
    Close,
}

async fn serve(stream: TcpStream, handshake: Handshake, conns: mpsc::UnboundedSender<FakeConn>) {
    let (r, w) = stream.into_split();
    let mut reader = frame::reader(r);
    let mut writer = frame::writer(w);
    let Ok(hello) = frame::read_frame::<_, Hello>(&mut reader).await else {
        return;
    };
    assert_eq!(hello, Hello::new(crate::net::wire::Role::Client));
    match handshake {
        Handshake::Accept => {
            let welcome = Welcome::Accepted {
                version: PROTOCOL_VERSION,
                replica: 1,
            };
            frame::write_frame(&mut writer, &welcome).await.unwrap();
        }
        Handshake::Refuse => {
            let welcome = Welcome::Refused {
                reason: "not now".into(),
            };
            let _ = frame::write_frame(&mut writer, &welcome).await;
            return;
        }
        Handshake::Garbage => {
            let _ = writer
                .get_mut()
                .write_all(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1])
                .await;
            return;
        }
    }
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    if conns
        .send(FakeConn {
            rx: in_rx,
            tx: out_tx,
            keepalives: 0,
        })
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            got = frame::read_frame::<_, ClientFrame>(&mut reader) => match got {
                Ok(f) => { let _ = in_tx.send(f); }
                Err(_) => return,
            },
            out = out_rx.recv() => match out {
                Some(Out::Frame(f)) => {
                    if frame::write_frame(&mut writer, &f).await.is_err() { return; }
                }
                Some(Out::Raw(bytes)) => {
                    if writer.get_mut().write_all(&bytes).await.is_err() { return; }
                }
                Some(Out::Close) | None => return,
            },
        }
    }
}

/// One client connection, as the test sees it.
pub struct FakeConn {
    rx: mpsc::UnboundedReceiver<ClientFrame>,
    tx: mpsc::UnboundedSender<Out>,
    /// Keep-alives skipped by [`FakeConn::request`].
    pub keepalives: usize,
}

impl FakeConn {
    /// The next frame from the client; None when it closed the connection.
    pub async fn frame(&mut self) -> Option<ClientFrame> {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("client sent nothing")
    }

    /// The next request, skipping status queries and keep-alives (which are counted).
    pub async fn request(&mut self) -> ClientCommand {
        loop {
            match self.frame().await.expect("connection closed") {
                ClientFrame::Request(cmd) => return cmd,
                ClientFrame::KeepAlive { .. } => self.keepalives += 1,
                ClientFrame::Status | ClientFrame::Membership(_) | ClientFrame::Fault(_) => {}
            }
        }
    }

    /// Expects OpenSession at seq 0 and accepts it.
    pub async fn open_session(&mut self) -> ClientCommand {
        let cmd = self.request().await;
        assert_eq!((cmd.seq, &cmd.op), (0, &Operation::OpenSession));
        assert_eq!(cmd.ack, 0);
        assert_ne!(cmd.session, 0);
        self.ok(&cmd, Value::Nil);
        cmd
    }

    pub fn send(&self, f: ReplicaFrame) {
        let _ = self.tx.send(Out::Frame(f));
    }

    pub fn reply(&self, cmd: &ClientCommand, result: ReplyResult) {
        self.send(ReplicaFrame::Reply {
            session: cmd.session,
            seq: cmd.seq,
            result,
        });
    }

    pub fn ok(&self, cmd: &ClientCommand, v: Value) {
        self.reply(cmd, ReplyResult::Ok(v));
    }

    pub fn raw(&self, bytes: &[u8]) {
        let _ = self.tx.send(Out::Raw(bytes.to_vec()));
    }

    pub fn close(&self) {
        let _ = self.tx.send(Out::Close);
    }
}

/// A status report of a group whose members listen at `members`, led by the first.
pub fn report(replica: ReplicaId, members: &[&str]) -> StatusReport {
    let mut view = View::founded_by(members[0]);
    for m in &members[1..] {
        view = view.apply(&crate::command::Reconfig::Add {
            addr: m.to_string(),
            replaces: None,
        });
        let id = view.next_id - 1;
        view = view.apply(&crate::command::Reconfig::Promote { id });
    }
    StatusReport {
        replica,
        addr: members[(replica as usize - 1).min(members.len() - 1)].to_string(),
        view,
        leader: Some(1),
        is_leader: replica == 1,
        ballot: (3, 1),
        decided_upto: 10,
        executed_upto: 9,
        sessions: 2,
        objects: 1,
        state: "member".into(),
    }
}
