//! Length-prefixed msgpack frames: a 4-byte big-endian length, then an rmp-serde body.
//!
//! Framing is tokio-util's `LengthDelimitedCodec`; this module adds the size limit, the
//! (de)serialization and errors that say what went wrong with which peer.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// The largest frame a replica or client accepts; a larger length prefix closes the link.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How long the other side has to send its hello before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame larger than {max} bytes or malformed length prefix: {source}")]
    Framing {
        max: usize,
        #[source]
        source: std::io::Error,
    },
    /// The connection itself failed (reset, refused, a TLS alert), not a frame on it.
    #[error("connection failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("undecodable frame of {len} bytes: {source}")]
    Decode {
        len: usize,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("cannot encode frame: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("timed out waiting for a frame")]
    Timeout,
    #[error("handshake refused: {0}")]
    Handshake(String),
}

/// An error from reading or writing frames: the codec's own (a length beyond the limit)
/// or the connection's.
pub fn io_error(source: std::io::Error) -> FrameError {
    let from_codec = source
        .get_ref()
        .is_some_and(|e| e.is::<tokio_util::codec::LengthDelimitedCodecError>());
    if from_codec {
        FrameError::Framing {
            max: MAX_FRAME_BYTES,
            source,
        }
    } else {
        FrameError::Io(source)
    }
}

pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

pub type FrameReader<R> = FramedRead<R, LengthDelimitedCodec>;
pub type FrameWriter<W> = FramedWrite<W, LengthDelimitedCodec>;

pub fn reader<R: AsyncRead>(r: R) -> FrameReader<R> {
    FramedRead::new(r, codec())
}

pub fn writer<W: AsyncWrite>(w: W) -> FrameWriter<W> {
    FramedWrite::new(w, codec())
}

/// Serializes a message into a frame body (named fields, so the format is self-describing
/// enough for clients in other languages).
pub fn encode<T: Serialize>(msg: &T) -> Result<Bytes, FrameError> {
    Ok(Bytes::from(rmp_serde::to_vec_named(msg)?))
}

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    rmp_serde::from_slice(body).map_err(|source| FrameError::Decode {
        len: body.len(),
        source,
    })
}

/// Reads and decodes the next frame.
pub async fn read_frame<R, T>(r: &mut FrameReader<R>) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    match r.next().await {
        None => Err(FrameError::Closed),
        Some(Err(source)) => Err(io_error(source)),
        Some(Ok(body)) => decode(&body),
    }
}

/// Like [`read_frame`], failing with `Timeout` after `limit`.
pub async fn read_frame_within<R, T>(
    r: &mut FrameReader<R>,
    limit: Duration,
) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    tokio::time::timeout(limit, read_frame(r))
        .await
        .map_err(|_| FrameError::Timeout)?
}

/// Encodes and sends one frame, flushing it.
pub async fn write_frame<W, T>(w: &mut FrameWriter<W>, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = encode(msg)?;
    w.send(body).await.map_err(io_error)
}

/// Queues one frame without flushing, so a burst of replies leaves in one write.
pub async fn feed_frame<W, T>(w: &mut FrameWriter<W>, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = encode(msg)?;
    w.feed(body).await.map_err(io_error)
}

pub async fn flush<W: AsyncWrite + Unpin>(w: &mut FrameWriter<W>) -> Result<(), FrameError> {
    SinkExt::<Bytes>::flush(w).await.map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::{Hello, Role};

    #[tokio::test]
    async fn round_trip_and_limits() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = writer(a);
        let mut r = reader(b);
        let hello = Hello::new(Role::Client);
        write_frame(&mut w, &hello).await.unwrap();
        let got: Hello = read_frame(&mut r).await.unwrap();
        assert_eq!(got, hello);
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_an_error() {
        use tokio::io::AsyncWriteExt;
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let mut r = reader(b);
        a.write_all(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        let got: Result<Hello, _> = read_frame(&mut r).await;
        assert!(matches!(got, Err(FrameError::Framing { .. })), "{got:?}");
    }

    #[tokio::test]
    async fn garbage_body_is_a_decode_error() {
        use tokio::io::AsyncWriteExt;
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let mut r = reader(b);
        a.write_all(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]).await.unwrap();
        let got: Result<Hello, _> = read_frame(&mut r).await;
        assert!(
            matches!(got, Err(FrameError::Decode { len: 3, .. })),
            "{got:?}"
        );
    }

    /// Feeds `bytes` to a reader and decodes frames of type T until it stops; must not panic.
    fn drain<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = reader(bytes);
            let mut n = 0;
            while read_frame::<_, T>(&mut r).await.is_ok() {
                n += 1;
            }
            n
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, .. Default::default() })]

        /// The decoder never panics on any byte string, for every frame type a replica
        /// or client reads from the network.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            use crate::net::wire::{ClientFrame, PeerFrame, ReplicaFrame, Welcome};
            drain::<Hello>(&bytes);
            drain::<Welcome>(&bytes);
            drain::<ClientFrame>(&bytes);
            drain::<ReplicaFrame>(&bytes);
            drain::<PeerFrame>(&bytes);
        }

        /// Valid frames survive a random split into arbitrary length-prefixed garbage
        /// before them only as errors, never as panics; valid ones alone all decode.
        #[test]
        fn valid_frames_decode_after_any_prefix_of_garbage(
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            n in 1usize..8,
        ) {
            use crate::net::wire::ClientFrame;
            let mut bytes = Vec::new();
            for _ in 0..n {
                let body = encode(&ClientFrame::Status).unwrap();
                bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
                bytes.extend_from_slice(&body);
            }
            proptest::prop_assert_eq!(drain::<ClientFrame>(&bytes), n);
            let mut dirty = garbage.clone();
            dirty.extend_from_slice(&bytes);
            drain::<ClientFrame>(&dirty);
        }
    }

    #[tokio::test]
    async fn truncated_frame_then_eof_is_an_error() {
        use tokio::io::AsyncWriteExt;
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let mut r = reader(b);
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        drop(a);
        let got: Result<Hello, _> = read_frame(&mut r).await;
        assert!(got.is_err(), "{got:?}");
    }
}
