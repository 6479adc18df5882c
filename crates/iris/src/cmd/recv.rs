//! `iris recv`: prints inbox items as JSON lines (with `--save-dir`, after saving their media),
//! acks each after printing, saves the cursor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use iris_client::media::MediaApi;
use iris_client::pb::{inbox_item, IdentityChangeType, InboxItem, MediaMessage, MessageAction, MessageActionType};
use iris_client::{ClientError, Event, Opened};
use serde::Serialize;

use super::receipt_name;
use super::session::Session;

/// Silence after which `iris recv` without `--count` stops.
const DEFAULT_SILENCE_S: f64 = 5.0;

/// Flags of `iris recv`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Stops after --count messages (receipts are printed but not counted), or after \
--timeout seconds without any event. Defaults: without --count, stop after 5 s of silence; with --count, \
wait as long as it takes. --timeout 0 waits forever.")]
pub struct RecvArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds without an event (0 = never) [default: 5 without --count, never with it].
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Do not decrypt: print payloads as they came (for tests and benchmarks).
    #[arg(long)]
    pub plaintext: bool,
    /// Save the media of received messages into this folder (decrypted and checked); each
    /// message line then lists the saved files' paths.
    #[arg(long)]
    pub save_dir: Option<PathBuf>,
}

/// Receives until the count or the silence limit is reached.
pub async fn run(args: RecvArgs) -> anyhow::Result<()> {
    let silence = match (args.timeout, args.count) {
        (Some(s), _) if s > 0.0 => Some(Duration::from_secs_f64(s)),
        (Some(_), _) | (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs_f64(DEFAULT_SILENCE_S)),
    };
    let mut session = Session::open_as(&args.profile, false, args.plaintext).await?;
    let me = session.client.credentials().account_id;
    let mut n_messages = 0;
    let outcome = loop {
        if args.count.is_some_and(|count| n_messages >= count) {
            break Ok(());
        }
        let event = match silence {
            Some(limit) => match tokio::time::timeout(limit, session.events.next()).await {
                Ok(event) => event,
                Err(_) => break Ok(()),
            },
            None => session.events.next().await,
        };
        let item_json = match event {
            None => break Err(anyhow!("the client stopped")),
            Some(Event::Fatal(err)) => break Err(ClientError::Fatal(err).into()),
            Some(Event::Message(item)) => {
                let opened = match &session.e2e {
                    Some(e2e) => Some(e2e.decrypt(&item).await),
                    None => None,
                };
                if opened == Some(Opened::Control) {
                    session.client.ack(item.seq); // a group's key: nothing to show
                    continue;
                }
                n_messages += 1;
                let media = media_in(&item, opened.as_ref());
                let (saved, forward_with) = match (&args.save_dir, &media) {
                    (Some(dir), Some(media)) => (
                        save_media(&session, media, dir).await?,
                        Some(super::actions::save_forwardable(item.server_msg_id, media, dir)?),
                    ),
                    _ => (HashMap::new(), None),
                };
                let line = message_json(&item, me, opened.as_ref(), media.as_ref(), &saved);
                match (line, forward_with) {
                    (Some((seq, line)), Some(path)) => {
                        let mut line: serde_json::Value = serde_json::from_str(&line)?;
                        line["forward_with"] = path.display().to_string().into();
                        Some((seq, line.to_string()))
                    }
                    (line, _) => line,
                }
            }
            Some(Event::Receipt(item)) => receipt_json(&item),
            Some(Event::Timer(item)) => super::timer::changed_json(&item),
            Some(Event::Account(item)) => account_json(&item),
            Some(Event::Group(item)) => super::group::notice_json(&item),
            Some(Event::Keys(item)) => match &session.e2e {
                Some(e2e) => match e2e.decrypt(&item).await {
                    Opened::IdentityChange(change) => identity_change_json(&item, &change),
                    _ => {
                        session.client.ack(item.seq); // KeysLow: keys were uploaded
                        continue;
                    }
                },
                None => {
                    session.client.ack(item.seq);
                    continue;
                }
            },
            Some(Event::MissedCall(item)) => {
                let m = item.body.as_ref().and_then(|b| match b {
                    iris_client::pb::inbox_item::Body::MissedCall(m) => Some(m),
                    _ => None,
                });
                let line = serde_json::json!({
                    "seq": item.seq,
                    "missed_call": item.server_msg_id.to_string(),
                    "from_account_id": m.map_or(0, |m| m.from_account_id),
                    "video": m.is_some_and(|m| m.video),
                    "server_ts_ms": item.server_ts_ms,
                });
                Some((item.seq, line.to_string()))
            }
            Some(
                Event::Connected(_) | Event::Disconnected(_) | Event::Presence(_) | Event::Typing(_) | Event::Call(_),
            ) => continue,
        };
        if let Some((seq, line)) = item_json {
            println!("{line}");
            session.client.ack(seq);
        }
    };
    session.close().await?;
    outcome
}

/// One received message, as printed (field order is the documented one).
#[derive(Serialize)]
struct MessageLine<'a> {
    seq: u64,
    server_msg_id: u64,
    server_ts_ms: u64,
    from_phone: &'a str,
    from_account_id: u64,
    from_device_id: u32,
    to_phone: &'a str,
    text: Cow<'a, str>,
    sent_by_me: bool,
    /// Whether it came end-to-end encrypted.
    encrypted: bool,
    /// Why it could not be decrypted (then `text` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// Only on replies.
    #[serde(skip_serializing_if = "is_zero")]
    reply_to_server_msg_id: u64,
    /// Only on forwards.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    forwarded: bool,
    /// Only on media messages (`text` is then the caption).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    media: Vec<MediaLine<'a>>,
    /// Only on disappearing messages: when it is gone (ms since the Unix epoch).
    #[serde(skip_serializing_if = "is_zero")]
    expires_at_ms: u64,
}

/// One medium of a message, as printed.
#[derive(Serialize)]
struct MediaLine<'a> {
    media_id: &'a str,
    /// `[photo 1280×960 312 KiB]`.
    description: String,
    mime: &'a str,
    size_bytes: u64,
    /// The thumbnail its sender made, if any.
    #[serde(skip_serializing_if = "str::is_empty")]
    thumbnail_id: &'a str,
    /// Where `--save-dir` saved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

/// Saves every medium of a 1:1 or group message into `dir`; media id → path.
async fn save_media(session: &Session, media: &MediaMessage, dir: &Path) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut saved = HashMap::new();
    let api = MediaApi::new(session.client.http_url(), &session.client.credentials().access_token)?;
    for r in &media.media {
        let path = iris_client::media::save_media(&api, r, dir, &|_, _| {}).await?;
        saved.insert(r.media_id.clone(), path);
    }
    Ok(saved)
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One received edit, deletion or reaction, as printed.
#[derive(Serialize)]
struct ActionLine<'a> {
    action: &'static str,
    seq: u64,
    server_msg_id: u64,
    server_ts_ms: u64,
    target_server_msg_id: u64,
    from_account_id: u64,
    from_device_id: u32,
    /// The 1:1 conversation (the other side from this device's view); 0 in groups.
    peer_account_id: u64,
    /// 0 for 1:1 conversations.
    group_id: u64,
    /// EDIT: the new text.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Cow<'a, str>>,
    /// REACT: the reaction, empty when removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<&'a str>,
    /// Whether it came end-to-end encrypted.
    encrypted: bool,
    /// Why it could not be decrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// One received receipt, as printed.
#[derive(Serialize)]
struct ReceiptLine<'a> {
    receipt: &'static str,
    seq: u64,
    from_account_id: u64,
    from_device_id: u32,
    peer_account_id: u64,
    server_msg_ids: &'a [u64],
}

/// What decryption made of an item: its text (None: the payload as it came), whether it was
/// encrypted, and why it could not be opened.
fn shown(opened: Option<&Opened>) -> (Option<&str>, bool, Option<&str>) {
    match opened {
        Some(Opened::Text { text, encrypted } | Opened::Edit { text, encrypted }) => (Some(text), *encrypted, None),
        Some(Opened::Media { media, encrypted }) => (Some(&media.caption), *encrypted, None),
        Some(Opened::React { emoji, encrypted }) => (Some(emoji), *encrypted, None),
        Some(Opened::Undecryptable { reason }) => (Some(""), true, Some(reason)),
        _ => (None, false, None),
    }
}

/// The media of a message: what decryption found, or (not decrypting) what its payload holds.
fn media_in(item: &InboxItem, opened: Option<&Opened>) -> Option<MediaMessage> {
    match (opened, &item.body) {
        (Some(Opened::Media { media, .. }), _) => Some(media.clone()),
        (Some(_), _) => None,
        (None, Some(inbox_item::Body::Message(m))) => iris_client::media::media_of(m),
        (None, Some(inbox_item::Body::GroupMessage(m))) => iris_client::media::group_media_of(m),
        (None, _) => None,
    }
}

/// A message's JSON line: its text as decryption opened it, its media (if any) with the paths
/// in `saved` (media id → path).
fn message_json(
    item: &InboxItem,
    me: u64,
    opened: Option<&Opened>,
    media: Option<&MediaMessage>,
    saved: &HashMap<String, PathBuf>,
) -> Option<(u64, String)> {
    let (text, encrypted, error) = shown(opened);
    if let Some(inbox_item::Body::GroupMessage(m)) = &item.body {
        let (seq, line) = super::group::message_json(item, m, me, media, saved)?;
        let mut line: serde_json::Value = serde_json::from_str(&line).ok()?;
        if let Some(text) = text {
            line["text"] = text.into();
        }
        line["encrypted"] = encrypted.into();
        if let Some(error) = error {
            line["error"] = error.into();
        }
        return Some((seq, line.to_string()));
    }
    if let Some(inbox_item::Body::MessageAction(a)) = &item.body {
        return action_json(item, a, opened);
    }
    let Some(inbox_item::Body::Message(m)) = &item.body else { return None };
    let media_lines: Vec<MediaLine> = media
        .map(|media| {
            media
                .media
                .iter()
                .map(|r| MediaLine {
                    media_id: &r.media_id,
                    description: iris_client::media::describe(r),
                    mime: &r.mime,
                    size_bytes: r.size_bytes,
                    thumbnail_id: &r.thumbnail_id,
                    path: saved.get(&r.media_id).map(|p| p.display().to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    let text = text.or(media.map(|media| media.caption.as_str()));
    let line = MessageLine {
        seq: item.seq,
        server_msg_id: item.server_msg_id,
        server_ts_ms: item.server_ts_ms,
        from_phone: &m.from_phone,
        from_account_id: m.from_account_id,
        from_device_id: m.from_device_id,
        to_phone: &m.to_phone,
        text: text.map_or_else(|| String::from_utf8_lossy(&m.payload), Cow::Borrowed),
        sent_by_me: m.from_account_id == me,
        encrypted,
        error,
        reply_to_server_msg_id: m.reply_to_server_msg_id,
        forwarded: m.forwarded,
        media: media_lines,
        expires_at_ms: item.expires_at_ms,
    };
    Some((item.seq, serde_json::to_string(&line).ok()?))
}

fn action_json(item: &InboxItem, a: &MessageAction, opened: Option<&Opened>) -> Option<(u64, String)> {
    let kind = MessageActionType::try_from(a.r#type).unwrap_or(MessageActionType::Unspecified);
    let (shown_text, encrypted, error) = shown(opened);
    let line = ActionLine {
        action: super::actions::action_name(a.r#type),
        seq: item.seq,
        server_msg_id: item.server_msg_id,
        server_ts_ms: item.server_ts_ms,
        target_server_msg_id: a.target_server_msg_id,
        from_account_id: a.from_account_id,
        from_device_id: a.from_device_id,
        peer_account_id: a.peer_account_id,
        group_id: a.group_id,
        text: (kind == MessageActionType::Edit)
            .then(|| shown_text.map_or_else(|| String::from_utf8_lossy(&a.payload), Cow::Borrowed)),
        emoji: (kind == MessageActionType::React).then_some(shown_text.unwrap_or(a.emoji.as_str())),
        encrypted,
        error,
    };
    Some((item.seq, serde_json::to_string(&line).ok()?))
}

/// An identity change ("security code changed") as printed.
fn identity_change_json(item: &InboxItem, c: &iris_client::pb::IdentityChange) -> Option<(u64, String)> {
    let kind = IdentityChangeType::try_from(c.r#type)
        .map_or("UNSPECIFIED", |t| t.as_str_name().trim_start_matches("IDENTITY_CHANGE_TYPE_"));
    let line = serde_json::json!({
        "identity_change": kind,
        "seq": item.seq,
        "account_id": c.account_id,
        "phone": c.phone,
        "device_id": c.device_id,
        "ed25519": c.identity.as_ref().map(|i| i.ed25519.as_str()),
    });
    Some((item.seq, line.to_string()))
}

/// A `DeviceChange` (my account's devices) or `ProfileChange` (a profile I may see) as a line.
fn account_json(item: &InboxItem) -> Option<(u64, String)> {
    let line = match &item.body {
        Some(inbox_item::Body::DeviceChange(c)) => {
            let kind = iris_client::pb::DeviceChangeType::try_from(c.r#type)
                .map_or("UNSPECIFIED", |t| t.as_str_name().trim_start_matches("DEVICE_CHANGE_TYPE_"));
            serde_json::json!({
                "device_change": kind,
                "seq": item.seq,
                "device_id": c.device_id,
                "device_name": c.device_name,
                "by_device_id": c.by_device_id,
            })
        }
        Some(inbox_item::Body::ProfileChange(c)) => serde_json::json!({
            "profile_change": c.phone,
            "seq": item.seq,
            "account_id": c.account_id,
            "display_name": c.display_name,
            "about": c.about,
            "photo_media_id": c.photo_media_id,
        }),
        _ => return None,
    };
    Some((item.seq, line.to_string()))
}

fn receipt_json(item: &InboxItem) -> Option<(u64, String)> {
    let Some(inbox_item::Body::Receipt(r)) = &item.body else { return None };
    let line = ReceiptLine {
        receipt: receipt_name(r.r#type),
        seq: item.seq,
        from_account_id: r.from_account_id,
        from_device_id: r.from_device_id,
        peer_account_id: r.peer_account_id,
        server_msg_ids: &r.server_msg_ids,
    };
    Some((item.seq, serde_json::to_string(&line).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iris_client::pb::{Message, Receipt, ReceiptType};
    use serde_json::{json, Value};

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).expect("valid JSON")
    }

    #[test]
    fn items_render_as_the_documented_json_lines() {
        let item = InboxItem {
            expires_at_ms: 0,
            seq: 4,
            server_msg_id: 99,
            server_ts_ms: 1000,
            body: Some(inbox_item::Body::Message(Message {
                from_account_id: 7,
                from_device_id: 2,
                from_phone: "+14155550001".into(),
                to_phone: "+14155550002".into(),
                payload: bytes::Bytes::from_static(b"hi \xff"),
                ..Default::default()
            })),
        };
        let (seq, line) = message_json(&item, 7, None, None, &HashMap::new()).expect("a message");
        assert!(line.starts_with(r#"{"seq":4,"server_msg_id":99,"#), "documented field order: {line}");
        let line = parse(&line);
        assert_eq!(seq, 4);
        assert_eq!(line["text"], "hi \u{fffd}");
        assert_eq!(line["sent_by_me"], true);
        assert_eq!(line["from_phone"], "+14155550001");
        let item = InboxItem {
            seq: 5,
            body: Some(inbox_item::Body::Receipt(Receipt {
                r#type: ReceiptType::Read as i32,
                from_account_id: 8,
                server_msg_ids: vec![99],
                ..Default::default()
            })),
            ..Default::default()
        };
        let (_, line) = receipt_json(&item).expect("a receipt");
        assert_eq!(
            parse(&line),
            json!({"receipt":"READ","seq":5,"from_account_id":8,"from_device_id":0,"peer_account_id":0,"server_msg_ids":[99]})
        );
    }
}
