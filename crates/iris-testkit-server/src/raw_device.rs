//! A device over raw framed TCP that reads only when the test says so ([`RawDevice`]): bytes the
//! server sends stay in the socket meanwhile, which is how a slow consumer looks to the server.
//! Unlike [`crate::RawConn`] it completes the handshake on connect and acks what it receives.

use std::net::SocketAddr;
use std::time::Duration;

use iris_client::api::Credentials;
use iris_client::pb::InboxItem;

use crate::PATIENCE;

/// A device connected over raw framed TCP: it sends `Hello` and then only what the test says;
/// bytes the server sends stay in the socket until the test reads them.
pub struct RawDevice {
    stream: tokio::net::TcpStream,
    read_buf: bytes::BytesMut,
    decoder: iris_proto::FrameDecoder,
    pending: std::collections::VecDeque<iris_client::pb::ServerEvent>,
}

impl RawDevice {
    /// Connects to `tcp` and completes the handshake as `creds`; returns after the `Welcome`
    /// (events that came in the same frame stay queued for [`RawDevice::next_event`]).
    pub async fn connect(tcp: SocketAddr, creds: &Credentials) -> Self {
        use iris_client::pb::{client_op, server_event};
        let stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut device = Self {
            stream,
            read_buf: bytes::BytesMut::new(),
            // Server frames are not bounded by the announced (client) frame limit.
            decoder: iris_proto::FrameDecoder::new(256 << 20),
            pending: Default::default(),
        };
        let hello = iris_client::pb::Hello {
            versions: vec![iris_proto::version::CURRENT],
            token: creds.access_token.clone(),
            device_id: creds.device_id,
            capabilities: vec![],
            resume_after_seq: 0,
            receipts_unwanted: vec![],
        };
        device.send_ops(vec![iris_client::pb::ClientOp { request_id: 1, op: Some(client_op::Op::Hello(hello)) }]).await;
        let first = device.next_event(PATIENCE).await.expect("Welcome");
        assert!(matches!(first.event, Some(server_event::Event::Welcome(_))), "expected Welcome, got {first:?}");
        device
    }

    /// Sends one frame with `ops`.
    pub async fn send_ops(&mut self, ops: Vec<iris_client::pb::ClientOp>) {
        use tokio::io::AsyncWriteExt;
        let bytes = iris_proto::frame::encode_to_bytes(&iris_client::pb::ClientFrame { ops });
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// Sends a cumulative ack.
    pub async fn ack(&mut self, up_to_seq: u64) {
        use iris_client::pb::{client_op, Ack, ClientOp};
        self.send_ops(vec![ClientOp { request_id: 0, op: Some(client_op::Op::Ack(Ack { up_to_seq })) }]).await;
    }

    /// The next event from the server, `None` once it closed the connection (or reset it);
    /// fails the test if nothing arrives within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<iris_client::pb::ServerEvent> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if let Some(body) = self.decoder.decode(&mut self.read_buf).unwrap() {
                let frame: iris_client::pb::ServerFrame = iris_proto::frame::decode_body(&body).unwrap();
                self.pending.extend(frame.events);
                continue;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read_buf))
                .await
                .unwrap_or_else(|_| panic!("no event from the server within {wait:?}"));
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads and acks deliveries until `n` inbox items arrived; returns them in order. Fails on
    /// a repeated or out-of-order seq.
    pub async fn receive_and_ack(&mut self, n: usize) -> Vec<InboxItem> {
        use iris_client::pb::server_event;
        let mut items: Vec<InboxItem> = Vec::with_capacity(n);
        while items.len() < n {
            let event = self.next_event(PATIENCE).await.expect("the server closed the connection");
            let Some(server_event::Event::Delivery(d)) = event.event else { continue };
            for item in d.items {
                let last = items.last().map_or(0, |i| i.seq);
                assert!(item.seq > last, "seq {} after {last}: repeated or out of order", item.seq);
                items.push(item);
            }
            let last = items.last().map_or(0, |i| i.seq);
            self.ack(last).await;
        }
        assert_eq!(items.len(), n, "more items than expected");
        items
    }
}
