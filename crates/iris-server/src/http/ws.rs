//! WebSocket transport on the HTTP port: binary messages carry protobuf frames (subprotocol
//! `iris.v1.proto`), text messages carry the same frames in protobuf's JSON mapping
//! (`iris.v1.json`, for browsers). The server answers in the negotiated form.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use iris_proto::frame::decode_body;
use iris_proto::pb;
use prost::Message as _;

use crate::context::Ctx;
use crate::gateway::transport::{Transport, TransportError};
use crate::session;

/// Where the WebSocket endpoint lives.
pub const PATH: &str = "/v1/ws";
/// Subprotocol for binary protobuf frames.
pub const PROTO_SUBPROTOCOL: &str = "iris.v1.proto";
/// Subprotocol for JSON text frames.
pub const JSON_SUBPROTOCOL: &str = "iris.v1.json";

/// `GET /v1/ws`: upgrades and runs a session.
pub async fn upgrade(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = ctx.limits.max_frame_bytes as usize;
    ws.protocols([PROTO_SUBPROTOCOL, JSON_SUBPROTOCOL]).max_message_size(max).max_frame_size(max).on_upgrade(
        move |socket| async move {
            let _tracked = ctx.tasks.token();
            let json = socket.protocol().is_some_and(|p| p.as_bytes() == JSON_SUBPROTOCOL.as_bytes());
            session::run(ctx.sessions.clone(), WsTransport { socket, json }, peer.ip()).await;
        },
    )
}

/// A session's view of a WebSocket.
struct WsTransport {
    socket: WebSocket,
    json: bool,
}

impl Transport for WsTransport {
    async fn recv(&mut self) -> Result<Option<pb::ClientFrame>, TransportError> {
        loop {
            let Some(msg) = self.socket.recv().await else { return Ok(None) };
            let msg = msg.map_err(|e| {
                let text = e.to_string();
                if text.contains("too long") || text.contains("too big") {
                    TransportError::TooLarge
                } else {
                    TransportError::Io(std::io::Error::other(text))
                }
            })?;
            return match msg {
                Message::Binary(bytes) => Ok(Some(decode_body(&bytes)?)),
                Message::Text(text) => {
                    serde_json::from_str(text.as_str()).map(Some).map_err(|e| TransportError::Json(e.to_string()))
                }
                Message::Close(_) => Ok(None),
                Message::Ping(_) | Message::Pong(_) => continue,
            };
        }
    }

    async fn send(&mut self, frame: &pb::ServerFrame) -> std::io::Result<()> {
        let msg = if self.json {
            Message::Text(serde_json::to_string(frame).map_err(std::io::Error::other)?.into())
        } else {
            Message::Binary(frame.encode_to_vec().into())
        };
        self.socket.send(msg).await.map_err(std::io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.socket.send(Message::Close(None)).await;
    }
}
