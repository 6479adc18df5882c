//! One framed TCP connection, plain or TLS: writes `ClientFrame`s, and reads `ServerFrame`s on a
//! task of its own so the socket keeps draining while a large write is in progress.
//!
//! Knows framing, sockets and TLS, nothing of requests, retries or the handshake.

use std::time::Duration;

use bytes::BytesMut;
use iris_proto::frame::{self, FrameDecoder};
use iris_proto::pb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::error::ClientError;

/// Decoded frames buffered between the reader task and the connection's owner.
const READ_QUEUE_FRAMES: usize = 64;

/// How to speak TLS on a connection: the trusted CAs and the name the certificate must carry.
pub(crate) struct Tls {
    /// The configured CAs.
    pub connector: tokio_rustls::TlsConnector,
    /// The server's name (the HTTP API's host).
    pub name: ServerName<'static>,
}

/// The write half of a plain or TLS socket.
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A connected socket. Dropping it stops the reader and closes the socket.
pub(crate) struct Connection {
    writer: Writer,
    frames: mpsc::Receiver<Result<pb::ServerFrame, ClientError>>,
    reader: JoinHandle<()>,
    write_buf: BytesMut,
}

impl Connection {
    /// Connects to `addr` (`host:port`) with Nagle off (frames are already batched), then
    /// completes a TLS handshake when `tls` is given (within the same `connect_timeout` as the
    /// rest of the handshake, which the caller applies).
    pub(crate) async fn open(addr: &str, tls: Option<Tls>, max_frame_bytes: u32) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (tx, frames) = mpsc::channel(READ_QUEUE_FRAMES);
        let decoder = FrameDecoder::new(max_frame_bytes);
        let (reader, writer): (JoinHandle<()>, Writer) = match tls {
            None => {
                let (rd, wr) = stream.into_split();
                (tokio::spawn(read_frames(rd, decoder, tx)), Box::new(wr))
            }
            Some(Tls { connector, name }) => {
                let stream = connector.connect(name, stream).await?;
                let (rd, wr) = tokio::io::split(stream);
                (tokio::spawn(read_frames(rd, decoder, tx)), Box::new(wr))
            }
        };
        Ok(Self { writer, frames, reader, write_buf: BytesMut::with_capacity(16 * 1024) })
    }

    /// Writes one frame; a write that makes no progress for `timeout` fails, since a peer that
    /// stopped reading is as good as gone.
    pub(crate) async fn write(&mut self, frame: &pb::ClientFrame, timeout: Duration) -> Result<(), ClientError> {
        self.write_buf.clear();
        frame::encode(frame, &mut self.write_buf);
        match tokio::time::timeout(timeout, self.writer.write_all(&self.write_buf)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClientError::Timeout("writing a frame")),
        }
    }

    /// The next frame from the server; `None` when it closed the connection cleanly.
    /// Cancel-safe, so it can sit in a `select!`.
    pub(crate) async fn next_frame(&mut self) -> Option<Result<pb::ServerFrame, ClientError>> {
        self.frames.recv().await
    }

    /// Closes the write side so the server sees a clean end of stream.
    pub(crate) async fn shutdown(&mut self) {
        let _ = self.writer.shutdown().await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads and decodes frames until the socket ends, an error occurs or nobody listens.
async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    decoder: FrameDecoder,
    tx: mpsc::Sender<Result<pb::ServerFrame, ClientError>>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(body)) => frame::decode_body::<pb::ServerFrame>(&body).map_err(ClientError::from),
                Ok(None) => break,
                Err(e) => Err(e.into()),
            };
            let failed = frame.is_err();
            if tx.send(frame).await.is_err() || failed {
                return;
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        }
    }
}
