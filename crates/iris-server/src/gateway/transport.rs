//! One client connection as a stream of decoded frames, whatever carries them (TCP, TLS,
//! WebSocket binary or JSON). Sessions are written against this trait only.

use std::future::Future;

use iris_proto::outgoing::OutFrame;
use iris_proto::pb;
use iris_proto::FrameError;

/// Why a connection cannot yield another frame.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket failed or closed in the middle of a frame.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A JSON text frame did not parse.
    #[error("invalid JSON frame: {0}")]
    Json(String),
    /// A frame exceeded the size limit (WebSocket).
    #[error("frame too large")]
    TooLarge,
    /// A WebSocket message in the other format than the connection's subprotocol chose
    /// (binary on `iris.v1.json`, text on `iris.v1.proto`): one format per connection.
    #[error("{0}")]
    WrongFormat(&'static str),
}

/// A bidirectional stream of protocol frames.
pub trait Transport: Send + 'static {
    /// The next frame from the client, or `None` when it closed cleanly. Must be cancel-safe:
    /// a partly received frame stays buffered if the future is dropped. A `Pending` answer must
    /// leave the task's wake-up arranged after the future is dropped, as `AsyncRead::poll_read`
    /// and `Stream::poll_next` do: the session polls it once and then relies on that
    /// arrangement until it fires (`session/wakeups.rs`).
    fn recv(&mut self) -> impl Future<Output = Result<Option<pb::ClientFrame>, TransportError>> + Send;

    /// The next frame if one is already complete in this connection's buffer, without touching
    /// the socket: the session takes every frame one read brought before it writes or yields.
    /// `Ok(None)` means "none buffered", not "closed". Transports that deliver one message per
    /// read (WebSocket) keep the default.
    fn try_recv_buffered(&mut self) -> Result<Option<pb::ClientFrame>, TransportError> {
        Ok(None)
    }

    /// Writes one frame to the client (one syscall where possible).
    fn send(&mut self, frame: &OutFrame) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Since when a partly received frame has been waiting for its remaining bytes, if one is.
    fn partial_frame_since(&self) -> Option<std::time::Instant> {
        None
    }

    /// Closes the connection after pending writes.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}
