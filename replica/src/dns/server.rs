//! The listening side: UDP and TCP sockets on one address and port, both answered by our
//! hickory-server [`ZoneHandler`]: TCP through hickory's `Server`, UDP through [`super::udp`].

use super::DnsError;
use super::handler::ZoneHandler;
use super::zone::Zone;
use hickory_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Answers queued per TCP connection before its reader waits.
const TCP_RESPONSE_BUFFER: usize = 64;

/// A running nameserver.
pub struct Listening {
    /// Where it answers (the real port when 0 was asked for).
    pub addr: SocketAddr,
    tcp: Server<ZoneHandler>,
    udp: tokio::task::JoinHandle<std::io::Error>,
}

impl Listening {
    /// Serves until a socket fails.
    pub async fn run(mut self) -> Result<(), DnsError> {
        tokio::select! {
            done = self.tcp.block_until_done() => {
                self.udp.abort();
                done.map_err(|e| DnsError::Serve(format!("TCP: {e}")))
            }
            failed = &mut self.udp => Err(DnsError::Serve(match failed {
                Ok(e) => format!("UDP: {e}"),
                Err(e) => format!("UDP task: {e}"),
            })),
        }
    }
}

/// UDP and TCP sockets bound on one address and port, not yet answering.
pub struct Sockets {
    pub addr: SocketAddr,
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds UDP and TCP on `addr` (with port 0, both on the port UDP was given, trying again
/// when that port is taken for TCP). Done before the replica starts, so a port in use stops
/// it before it joins anything.
pub async fn bind(addr: SocketAddr) -> Result<Sockets, DnsError> {
    let mut tries = if addr.port() == 0 { 20 } else { 1 };
    loop {
        tries -= 1;
        let bind_error = |source: std::io::Error| DnsError::Bind { addr, source };
        let udp = UdpSocket::bind(addr).await.map_err(bind_error)?;
        let bound = udp.local_addr().map_err(bind_error)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(Sockets {
                    addr: bound,
                    udp,
                    tcp,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 0 => continue,
            Err(source) => {
                return Err(DnsError::Bind {
                    addr: bound,
                    source,
                });
            }
        }
    }
}

impl Sockets {
    /// Starts answering from `zone`.
    pub fn serve(self, zone: watch::Receiver<Arc<Zone>>) -> Listening {
        let udp = tokio::spawn(super::udp::serve(
            Arc::new(self.udp),
            Arc::new(ZoneHandler::new(zone.clone())),
            zone.clone(),
        ));
        let mut tcp = Server::new(ZoneHandler::new(zone));
        tcp.register_listener(self.tcp, TCP_IDLE, TCP_RESPONSE_BUFFER);
        Listening {
            addr: self.addr,
            tcp,
            udp,
        }
    }
}
