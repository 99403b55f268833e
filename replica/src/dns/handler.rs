//! The hickory-server request handler: reads the current zone and answers one question.
//! hickory decodes the request (malformed ones get FORMERR there) and encodes the answer,
//! truncating it over UDP to the size the client can take.

use super::answer::answer;
use super::zone::Zone;
use async_trait::async_trait;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::sync::Arc;
use tokio::sync::watch;

/// Largest UDP answer we send even when a client offers more: 1232 bytes avoids IP
/// fragmentation (DNS flag day 2020).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers from whatever zone the publisher last built.
pub struct ZoneHandler {
    zone: watch::Receiver<Arc<Zone>>,
}

impl ZoneHandler {
    pub fn new(zone: watch::Receiver<Arc<Zone>>) -> ZoneHandler {
        ZoneHandler { zone }
    }
}

#[async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let zone = self.zone.borrow().clone();
        let mut meta = Metadata::response_from_request(&request.metadata);
        // Answer EDNS with EDNS; the payload we advertise also caps our UDP answer.
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let empty: &[Record] = &[];
        let (answers, additionals, soa) =
            match (request.metadata.op_code, request.queries.queries()) {
                _ if request.edns.as_ref().is_some_and(|e| e.version() > 0) => {
                    meta.response_code = ResponseCode::BADVERS;
                    (empty, empty, None)
                }
                (OpCode::Query, [query]) => {
                    let a = answer(&zone, query.name(), query.query_type(), query.query_class());
                    meta.response_code = a.code;
                    meta.authoritative = a.authoritative;
                    (a.answers, a.additionals, a.soa)
                }
                (OpCode::Query, _) => {
                    meta.response_code = ResponseCode::FormErr;
                    (empty, empty, None)
                }
                _ => {
                    meta.response_code = ResponseCode::NotImp;
                    (empty, empty, None)
                }
            };
        let message = builder.build(meta, answers.iter(), empty.iter(), soa, additionals.iter());
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("cannot send a DNS answer to {}: {e}", request.src());
                let mut metadata = meta;
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
