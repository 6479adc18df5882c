//! The native transport: length-prefixed protobuf frames over TCP or TLS.

use std::time::Instant;

use bytes::BytesMut;
use iris_proto::frame::{self, FrameDecoder};
use iris_proto::outgoing::OutFrame;
use iris_proto::pb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::transport::{Transport, TransportError};

/// Read buffer of a new connection. Small, because an idle connection holds it for as long as it
/// waits for its next frame (the idle target is 4 KiB of server memory per connection); it grows
/// to the largest frame received (the decoder reserves what a frame announces) and to
/// [`READ_SPARE_BYTES`] of room per read.
const READ_BUF_INITIAL_BYTES: usize = 512;
/// Room a read gets when the buffer is nearly full, so a busy connection reads in few syscalls.
const READ_SPARE_BYTES: usize = 4096;
/// An emptied read buffer larger than this (after a burst of large frames) is given back.
const READ_BUF_KEEP_BYTES: usize = 64 * 1024;

/// Frames over any byte stream.
pub struct Framed<S> {
    stream: S,
    decoder: FrameDecoder,
    read_buf: BytesMut,
    /// When the bytes now waiting in `read_buf` started to arrive.
    partial_since: Option<Instant>,
}

impl<S> Framed<S> {
    /// Wraps `stream`, refusing frames over `max_frame_bytes`.
    pub fn new(stream: S, max_frame_bytes: u32) -> Self {
        Self {
            stream,
            decoder: FrameDecoder::new(max_frame_bytes),
            read_buf: BytesMut::with_capacity(READ_BUF_INITIAL_BYTES),
            partial_since: None,
        }
    }
}

impl<S> Framed<S> {
    /// A frame complete in the read buffer, decoded; `None` when the buffer holds none.
    fn decode_buffered(&mut self) -> Result<Option<pb::ClientFrame>, TransportError> {
        let Some(body) = self.decoder.decode(&mut self.read_buf)? else { return Ok(None) };
        self.partial_since = (!self.read_buf.is_empty()).then(Instant::now);
        if self.read_buf.is_empty() && self.read_buf.capacity() > READ_BUF_KEEP_BYTES {
            self.read_buf = BytesMut::with_capacity(READ_BUF_INITIAL_BYTES);
        }
        Ok(Some(frame::decode_body(&body)?))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Framed<S> {
    async fn recv(&mut self) -> Result<Option<pb::ClientFrame>, TransportError> {
        loop {
            if let Some(frame) = self.decode_buffered()? {
                return Ok(Some(frame));
            }
            if !self.read_buf.is_empty() && self.partial_since.is_none() {
                self.partial_since = Some(Instant::now());
            }
            // A buffer that holds part of a frame and little room: read more than a sliver.
            if !self.read_buf.is_empty() && self.read_buf.capacity() - self.read_buf.len() < READ_BUF_INITIAL_BYTES {
                self.read_buf.reserve(READ_SPARE_BYTES);
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                if self.read_buf.is_empty() {
                    return Ok(None);
                }
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    fn try_recv_buffered(&mut self) -> Result<Option<pb::ClientFrame>, TransportError> {
        self.decode_buffered()
    }

    async fn send(&mut self, f: &OutFrame) -> std::io::Result<()> {
        // A buffer per frame rather than one kept per connection: an idle connection then holds
        // no write buffer at all, and one allocation per written frame is cheap next to its
        // syscall.
        let mut buf = BytesMut::new();
        f.encode_framed(&mut buf);
        self.stream.write_all(&buf).await?;
        self.stream.flush().await
    }

    fn partial_frame_since(&self) -> Option<Instant> {
        self.partial_since
    }

    async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(request_id: u64) -> pb::ClientFrame {
        pb::ClientFrame {
            ops: vec![pb::ClientOp { request_id, op: Some(pb::client_op::Op::Ping(pb::Ping::default())) }],
        }
    }

    #[tokio::test]
    async fn every_frame_of_one_read_is_taken_without_another_read() {
        // Proves: three frames that arrive in one write are all handed over after one `recv`
        // (the other two from the buffer), and an empty buffer answers "none", not "closed".
        let (client, server) = tokio::io::duplex(4096);
        let mut framed = Framed::new(server, 1 << 20);
        let mut bytes = BytesMut::new();
        for id in 1..=3 {
            frame::encode(&ping(id), &mut bytes);
        }
        let mut client = client;
        client.write_all(&bytes).await.unwrap();
        assert_eq!(framed.recv().await.unwrap().unwrap().ops[0].request_id, 1);
        assert_eq!(framed.try_recv_buffered().unwrap().unwrap().ops[0].request_id, 2);
        assert_eq!(framed.try_recv_buffered().unwrap().unwrap().ops[0].request_id, 3);
        assert!(framed.try_recv_buffered().unwrap().is_none());
        assert!(framed.partial_frame_since().is_none());
        // Half a frame stays buffered and is not handed over.
        let mut half = BytesMut::new();
        frame::encode(&ping(4), &mut half);
        client.write_all(&half[..3]).await.unwrap();
        client.write_all(&half[3..]).await.unwrap();
        drop(client);
        assert_eq!(framed.recv().await.unwrap().unwrap().ops[0].request_id, 4);
        assert!(framed.recv().await.unwrap().is_none(), "the client closed");
    }
}
