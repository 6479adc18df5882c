//! The native transport: length-prefixed protobuf frames over TCP or TLS.

use std::time::Instant;

use bytes::BytesMut;
use iris_proto::frame::{self, FrameDecoder};
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

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Framed<S> {
    async fn recv(&mut self) -> Result<Option<pb::ClientFrame>, TransportError> {
        loop {
            if let Some(body) = self.decoder.decode(&mut self.read_buf)? {
                self.partial_since = (!self.read_buf.is_empty()).then(Instant::now);
                if self.read_buf.is_empty() && self.read_buf.capacity() > READ_BUF_KEEP_BYTES {
                    self.read_buf = BytesMut::with_capacity(READ_BUF_INITIAL_BYTES);
                }
                return Ok(Some(frame::decode_body(&body)?));
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

    async fn send(&mut self, f: &pb::ServerFrame) -> std::io::Result<()> {
        // A buffer per frame rather than one kept per connection: an idle connection then holds
        // no write buffer at all, and one allocation per written frame is cheap next to its
        // syscall.
        let mut buf = BytesMut::new();
        frame::encode(f, &mut buf);
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
