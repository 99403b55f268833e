//! Outbound links to the other members of the view: one task per peer that connects,
//! introduces itself and streams consensus messages, reconnecting with backoff.
//!
//! Consensus tolerates lost messages, so a link that is down or slow drops messages rather
//! than blocking the replica.

use crate::auth::Token;
use crate::command::{ReplicaId, View};
use crate::net::frame::{self, FrameError};
use crate::net::secure::{self, ReplicaTls};
use crate::net::wire::{Hello, PeerFrame, Role, Welcome};
use crate::paxos::Message;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages queued per peer before new ones are dropped.
const LINK_QUEUE: usize = 4096;
/// Links to removed members kept open at most.
const MAX_RETIRED: usize = 16;

pub struct Peers {
    me: ReplicaId,
    my_addr: String,
    /// Our current IP, announced in every hello (`--advertise-ip`).
    my_ip: Option<IpAddr>,
    /// Our group, announced in every hello so other groups refuse us (and we them).
    group: u64,
    links: HashMap<ReplicaId, (String, mpsc::Sender<Message>)>,
    /// Removed members whose links are still open, oldest first.
    retired: VecDeque<ReplicaId>,
    view_number: u64,
    /// Links are TLS, with this replica's certificate, when the replica serves TLS.
    tls: Option<Arc<ReplicaTls>>,
    /// `--token`: shown on every link, for peers with an auth file and no TLS.
    token: Option<Token>,
}

impl Peers {
    pub fn new(
        me: ReplicaId,
        my_addr: String,
        my_ip: Option<IpAddr>,
        group: u64,
        tls: Option<Arc<ReplicaTls>>,
        token: Option<Token>,
    ) -> Peers {
        Peers {
            me,
            my_addr,
            my_ip,
            group,
            tls,
            token,
            links: HashMap::new(),
            retired: VecDeque::new(),
            view_number: 0,
        }
    }

    /// Opens links to new members and closes those to members that left. Views older than
    /// one already seen (replayed history) change nothing.
    pub fn update(&mut self, view: &View) {
        if view.number < self.view_number {
            return;
        }
        self.view_number = view.number;
        // Links to members that left are kept a while (the newest few): a removed replica
        // that missed its removal still needs our answers to learn of it.
        let leaving: Vec<ReplicaId> = self
            .links
            .iter()
            .filter(|(id, (addr, _))| view.addr_of(**id) != Some(addr.as_str()))
            .map(|(id, _)| *id)
            .collect();
        for id in leaving {
            if view.addr_of(id).is_some() {
                // Same id at a new address: the old link is useless.
                self.links.remove(&id);
            } else if !self.retired.contains(&id) {
                self.retired.push_back(id);
            }
        }
        // Links made for replicas our view had not reached are ordinary ones now.
        self.retired.retain(|id| view.addr_of(*id).is_none());
        while self.retired.len() > MAX_RETIRED {
            if let Some(old) = self.retired.pop_front() {
                self.links.remove(&old);
            }
        }
        for (id, addr) in view.everyone() {
            if id == self.me || self.links.contains_key(&id) {
                continue;
            }
            self.open(id, addr);
        }
    }

    fn open(&mut self, id: ReplicaId, addr: &str) {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let hello = Hello::with_token(
            Role::Peer {
                id: self.me,
                addr: self.my_addr.clone(),
                group: self.group,
                ip: self.my_ip,
            },
            self.token.clone(),
        );
        tokio::spawn(run_link(hello, id, addr.to_string(), rx, self.tls.clone()));
        self.links.insert(id, (addr.to_string(), tx));
    }

    /// Makes sure we can answer a replica that linked to us, though our view may not
    /// know it (we lag behind its add, or it was removed). Such links count among the
    /// retired ones, so there are few.
    pub fn ensure(&mut self, id: ReplicaId, addr: &str) {
        // Known ids keep the link the view gave them.
        if id == self.me || self.links.contains_key(&id) {
            return;
        }
        self.open(id, addr);
        if !self.retired.contains(&id) {
            self.retired.push_back(id);
        }
        while self.retired.len() > MAX_RETIRED {
            if let Some(old) = self.retired.pop_front()
                && old != id
            {
                self.links.remove(&old);
            }
        }
    }

    pub fn send(&self, to: ReplicaId, msg: Message) {
        if let Some((_, tx)) = self.links.get(&to) {
            // A full queue means the peer is down or far behind: drop, Paxos retransmits.
            let _ = tx.try_send(msg);
        }
    }
}

async fn run_link(
    hello: Hello,
    peer: ReplicaId,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    tls: Option<Arc<ReplicaTls>>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match stream_to(&hello, &addr, &mut rx, tls.as_deref()).await {
            Ok(()) => return, // the view dropped this peer
            Err(e) => {
                tracing::debug!(peer, %addr, "peer link down: {e}");
            }
        }
        // Drain what piled up while down: it is stale, and Paxos retransmits what matters.
        while rx.try_recv().is_ok() {}
        if rx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Connects and streams until the channel closes (Ok) or the connection fails (Err).
async fn stream_to(
    hello: &Hello,
    addr: &str,
    rx: &mut mpsc::Receiver<Message>,
    tls: Option<&ReplicaTls>,
) -> Result<(), FrameError> {
    let stream = tokio::time::timeout(Duration::from_secs(2), crate::net::resolve::connect(addr))
        .await
        .map_err(|_| FrameError::Timeout)?
        .map_err(FrameError::Io)?;
    let _ = stream.set_nodelay(true);
    let (r, w) = match secure::dial(stream, addr, tls.map(ReplicaTls::client).as_ref()).await {
        Ok(sides) => sides,
        Err(e) => {
            tracing::warn!(%addr, "cannot link to the peer: {e}");
            return Err(FrameError::Handshake(e.to_string()));
        }
    };
    let mut reader = frame::reader(r);
    let mut writer = frame::writer(w);
    frame::write_frame(&mut writer, hello).await?;
    match frame::read_frame_within::<_, Welcome>(&mut reader, frame::HANDSHAKE_TIMEOUT).await? {
        Welcome::Accepted { .. } => {}
        Welcome::Refused { reason } => {
            tracing::warn!(%addr, "peer refused our link: {reason}");
            return Err(FrameError::Closed);
        }
    }
    // The peer never writes on this link after the welcome; watch it only to notice a close.
    let mut closed = Box::pin(async move {
        let _ = frame::read_frame::<_, PeerFrame>(&mut reader).await;
    });
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = &mut closed => return Err(FrameError::Closed),
        };
        let Some(msg) = msg else { return Ok(()) };
        frame::feed_frame(&mut writer, &PeerFrame::Paxos(msg)).await?;
        while let Ok(more) = rx.try_recv() {
            frame::feed_frame(&mut writer, &PeerFrame::Paxos(more)).await?;
        }
        frame::flush(&mut writer).await?;
    }
}
