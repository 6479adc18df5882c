//! WebSocket transport on the HTTP port: binary messages carry protobuf frames (subprotocol
//! `iris.v1.proto`), text messages carry the same frames in protobuf's JSON mapping
//! (`iris.v1.json`, for browsers).
//!
//! The upgrade must offer one of the two subprotocols (else a typed 400
//! `UNSUPPORTED_SUBPROTOCOL`): the format is fixed for the connection, the server answers in it,
//! and a message in the other format is `BAD_FRAME`. Nothing is guessed from the message type.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use iris_proto::frame::decode_body;
use iris_proto::outgoing::OutFrame;
use iris_proto::pb;

use super::client::ClientIp;
use super::ApiError;
use crate::context::Ctx;
use crate::error::ServiceError;
use crate::gateway::transport::{Transport, TransportError};
use crate::session;

/// Where the WebSocket endpoint lives.
pub const PATH: &str = "/v1/ws";
/// Subprotocol for binary protobuf frames.
pub const PROTO_SUBPROTOCOL: &str = "iris.v1.proto";
/// Subprotocol for JSON text frames.
pub const JSON_SUBPROTOCOL: &str = "iris.v1.json";

/// The one format a connection speaks, chosen by its subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `iris.v1.proto`: binary messages, protobuf.
    Proto,
    /// `iris.v1.json`: text messages, protobuf's canonical JSON mapping.
    Json,
}

/// `GET /v1/ws`: upgrades and runs a session, if the client offered a subprotocol we speak.
#[utoipa::path(get, path = "/v1/ws", tag = "socket",
    params(("Sec-WebSocket-Protocol" = String, Header, description = "iris.v1.json (text messages, protobuf's \
        canonical JSON mapping) or iris.v1.proto (binary messages, protobuf); the server answers with the one it \
        chose and speaks only that", example = "iris.v1.json")),
    responses(
        (status = 101, description = "Switching Protocols: the socket protocol (PROTOCOL.md) starts with Hello"),
        (status = 400, description = "UNSUPPORTED_SUBPROTOCOL (neither subprotocol offered) or INVALID_ARGUMENT \
            (not a WebSocket upgrade)", body = iris_proto::http::ApiError)))]
pub async fn upgrade(
    State(ctx): State<Arc<Ctx>>,
    ClientIp(client): ClientIp,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws
        .map_err(|e| ServiceError::InvalidArgument(format!("{PATH} only takes WebSocket upgrades: {}", e.body_text())))?
        .protocols([PROTO_SUBPROTOCOL, JSON_SUBPROTOCOL]);
    let format = match ws.selected_protocol() {
        Some(p) if p.as_bytes() == JSON_SUBPROTOCOL.as_bytes() => Format::Json,
        Some(_) => Format::Proto,
        None => {
            return Err(ServiceError::UnsupportedSubprotocol(format!(
                "offer the subprotocol {JSON_SUBPROTOCOL} (JSON text messages) or {PROTO_SUBPROTOCOL} \
                 (binary protobuf messages) in Sec-WebSocket-Protocol"
            ))
            .into())
        }
    };
    let max = ctx.limits.max_frame_bytes as usize;
    Ok(ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        let _tracked = ctx.tasks.token();
        // The session's own span names the client (one span per connection: see `session::run`).
        session::run(ctx.sessions.clone(), WsTransport { socket, format }, client).await;
    }))
}

/// A session's view of a WebSocket.
struct WsTransport {
    socket: WebSocket,
    format: Format,
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
            return match (msg, self.format) {
                (Message::Binary(bytes), Format::Proto) => Ok(Some(decode_body(&bytes)?)),
                (Message::Text(text), Format::Json) => {
                    serde_json::from_str(text.as_str()).map(Some).map_err(|e| TransportError::Json(e.to_string()))
                }
                (Message::Binary(_), Format::Json) => {
                    Err(TransportError::WrongFormat("a binary message on the iris.v1.json subprotocol (text only)"))
                }
                (Message::Text(_), Format::Proto) => {
                    Err(TransportError::WrongFormat("a text message on the iris.v1.proto subprotocol (binary only)"))
                }
                (Message::Close(_), _) => Ok(None),
                (Message::Ping(_) | Message::Pong(_), _) => continue,
            };
        }
    }

    async fn send(&mut self, frame: &OutFrame) -> std::io::Result<()> {
        let msg = if self.format == Format::Json {
            // JSON needs the decoded items: stored deliveries are decoded here, once.
            let frame = frame.to_pb().map_err(std::io::Error::other)?;
            Message::Text(serde_json::to_string(&frame).map_err(std::io::Error::other)?.into())
        } else {
            Message::Binary(frame.encode_to_vec().into())
        };
        self.socket.send(msg).await.map_err(std::io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.socket.send(Message::Close(None)).await;
    }
}
