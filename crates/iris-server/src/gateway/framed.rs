//! The native transport: length-prefixed protobuf frames over TCP or TLS.

use std::time::Instant;

use bytes::BytesMut;
use iris_proto::frame::{self, FrameDecoder};
use iris_proto::pb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::transport::{Transport, TransportError};

/// Frames over any byte stream.
pub struct Framed<S> {
    stream: S,
    decoder: FrameDecoder,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// When the bytes now waiting in `read_buf` started to arrive.
    partial_since: Option<Instant>,
}

impl<S> Framed<S> {
    /// Wraps `stream`, refusing frames over `max_frame_bytes`.
    pub fn new(stream: S, max_frame_bytes: u32) -> Self {
        Self {
            stream,
            decoder: FrameDecoder::new(max_frame_bytes),
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::with_capacity(4096),
            partial_since: None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for Framed<S> {
    async fn recv(&mut self) -> Result<Option<pb::ClientFrame>, TransportError> {
        loop {
            if let Some(body) = self.decoder.decode(&mut self.read_buf)? {
                self.partial_since = (!self.read_buf.is_empty()).then(Instant::now);
                return Ok(Some(frame::decode_body(&body)?));
            }
            if !self.read_buf.is_empty() && self.partial_since.is_none() {
                self.partial_since = Some(Instant::now());
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
        self.write_buf.clear();
        frame::encode(f, &mut self.write_buf);
        self.stream.write_all(&self.write_buf).await?;
        self.stream.flush().await?;
        if self.write_buf.capacity() > 1 << 20 {
            self.write_buf = BytesMut::with_capacity(4096);
        }
        Ok(())
    }

    fn partial_frame_since(&self) -> Option<Instant> {
        self.partial_since
    }

    async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
