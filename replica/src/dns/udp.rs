//! UDP answering: the same hickory-server [`RequestHandler`] as TCP, driven by a loop of our
//! own. hickory's UDP loop spawns a task per query and hands each answer back through a
//! channel to the socket's task; here one task receives, answers in place (the handler never
//! waits on anything) and sends straight from the socket, and repeated questions are
//! answered from [`AnswerCache`]. Malformed input is answered (FORMERR) or dropped, never
//! fatal.

use super::answer_cache::AnswerCache;
use super::zone::Zone;
use std::sync::Mutex;
use tokio::sync::watch;

use hickory_proto::op::MessageType;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Largest datagram read; a longer one is cut to this and then fails to decode (FORMERR).
const MAX_DATAGRAM: usize = 4096;
const HEADER_LEN: usize = 12;

/// Answers every datagram on `socket` with `handler` (which answers from `zone`), until the
/// socket fails.
pub async fn serve<H: RequestHandler>(
    socket: Arc<UdpSocket>,
    handler: Arc<H>,
    zone: watch::Receiver<Arc<Zone>>,
) -> std::io::Error {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut cache = AnswerCache::default();
    let mut key = Vec::new();
    let mut out = Vec::new();
    let encoded = Arc::new(Mutex::new(None));
    loop {
        let (len, src) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors from earlier sends surface here on some systems: not fatal.
            Err(e) if is_transient(&e) => continue,
            Err(e) => return e,
        };
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        if src.port() == 0 || datagram.len() < HEADER_LEN {
            continue;
        }
        cache.follow(&zone.borrow());
        let plain = AnswerCache::key(datagram, &mut key);
        if let Some(p) = &plain
            && cache.answer(&key, p, datagram, &mut out)
        {
            send(&socket, &out, src).await;
            continue;
        }
        let responder = Responder {
            socket: socket.clone(),
            dst: src,
            keep: plain.is_some().then(|| encoded.clone()),
        };
        match Request::from_bytes(datagram.to_vec(), src, Protocol::Udp) {
            // Answers are never answered (no reflection loops).
            Ok(request) if request.metadata.message_type == MessageType::Response => {}
            Ok(request) => {
                handler
                    .handle_request::<_, TokioTime>(&request, responder)
                    .await;
                let answer = encoded.lock().ok().and_then(|mut slot| slot.take());
                if let (Some(answer), Some(_)) = (answer, &plain) {
                    cache.store(key.clone(), answer);
                }
            }
            Err(_) => responder.form_error(datagram),
        }
    }
}

/// Sends without waiting when the socket has room (nearly always).
async fn send(socket: &UdpSocket, bytes: &[u8], dst: SocketAddr) {
    match socket.try_send_to(bytes, dst) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let _ = socket.send_to(bytes, dst).await;
        }
        Err(e) => tracing::debug!("DNS: cannot answer {dst}: {e}"),
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
    )
}

/// Sends one answer from the listening socket to the asker.
#[derive(Clone)]
struct Responder {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
    /// Where the encoded answer is left for the cache, when the question is cacheable.
    keep: Option<Arc<Mutex<Option<Vec<u8>>>>>,
}

impl Responder {
    /// FORMERR for a query whose header is readable but whose body is not: the header with
    /// QR set, the opcode kept, no records.
    fn form_error(&self, datagram: &[u8]) {
        let (Some(id), Some(&flags)) = (datagram.get(..2), datagram.get(2)) else {
            return;
        };
        if flags & 0x80 != 0 {
            return;
        }
        let mut out = [0u8; HEADER_LEN];
        out[..2].copy_from_slice(id);
        out[2] = 0x80 | (flags & 0x78);
        out[3] = 1; // FORMERR
        let _ = self.socket.try_send_to(&out, self.dst);
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Responder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // The answer fits what the asker can take: our EDNS payload (already capped to
        // theirs by the handler), or 512 bytes without EDNS; the rest is cut and TC set.
        let max = response.edns().map_or(512, |e| e.max_payload().max(512));
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = response.destructive_emit(&mut encoder)?;
        send(&self.socket, &bytes, self.dst).await;
        if let Some(slot) = &self.keep
            && let Ok(mut slot) = slot.lock()
        {
            *slot = Some(bytes);
        }
        Ok(info)
    }
}
