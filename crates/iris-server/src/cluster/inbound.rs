//! What other nodes send this one, applied to the local router, directory and presence hub.
//! Nothing here forwards again: an item for a device that is not (or no longer) connected here
//! is dropped, and the device gets its entries from its inbox wherever it is.

use std::sync::Arc;

use bytes::Bytes;
use iris_proto::pb;
use prost::Message as _;
use tokio::sync::mpsc;

use super::wire::{self, node_item::Kind, NodeItem};
use crate::context::Ctx;
use crate::presence::Privacy;
use crate::router::Hint;

/// Applies every batch that arrives until the bus closes or the server stops.
pub async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Bytes>) {
    loop {
        let bytes = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            b = rx.recv() => match b { Some(b) => b, None => return },
        };
        let Some(batch) = wire::decode(&bytes) else {
            tracing::warn!(len = bytes.len(), "undecodable message on the cluster bus dropped");
            continue;
        };
        let from = u16::try_from(batch.from_node).unwrap_or(u16::MAX);
        ctx.metrics.cluster_items_in.inc_by(batch.items.len() as u64);
        for item in batch.items {
            apply(&ctx, from, item);
        }
    }
}

fn apply(ctx: &Ctx, from_node: u16, item: NodeItem) {
    let addr = item.addr();
    match item.kind {
        Some(Kind::Hint(h)) => {
            let _ = ctx.router.notify_local(addr, Hint { seq: h.seq, item: h.item });
        }
        Some(Kind::Ephemeral(bytes)) => {
            if let Ok(event) = pb::ServerEvent::decode(bytes) {
                ctx.sessions.calls.on_remote_event(addr, &event);
                ctx.router.notify_ephemeral_local(addr, event);
            }
        }
        Some(Kind::Kick(code)) => {
            ctx.router.kick_local(addr, wire::kick_from_code(code));
        }
        Some(Kind::InvalidateAccount(_)) => ctx.directory.invalidate(item.account),
        Some(Kind::Presence(p)) if from_node != ctx.config.node_id => {
            let privacy = Privacy::from_code(u8::try_from(p.privacy).unwrap_or(u8::MAX));
            ctx.presence.set_remote(item.account, from_node, p.online, p.last_seen_ms, privacy);
        }
        Some(Kind::CallOp(c)) => {
            let (calls, node) = (ctx.sessions.calls.clone(), u16::try_from(c.reply_to_node).unwrap_or(u16::MAX));
            tokio::spawn(async move { calls.apply_forwarded(node, addr, c.token, c.op).await });
        }
        Some(Kind::CallReply(r)) => ctx.sessions.calls.on_reply(r.token, r.answer),
        Some(Kind::Presence(_)) | None => {}
    }
}
