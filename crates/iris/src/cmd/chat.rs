//! `iris chat`: an interactive line-based chat for a person. Typed lines go to the chosen peer;
//! incoming messages print with sender and time; receipts print as ticks (✓ stored, ✓✓ delivered,
//! blue ✓✓ read). Messages from the current peer are marked read as they are shown. The peer's
//! presence (online, last seen) and typing show as they change, and the peer sees me typing while
//! I type (the keyboard is read key by key, see `keys.rs`).

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use iris_client::pb::{inbox_item, InboxItem, PresenceUpdate, ReceiptType, TypingEvent};
use iris_client::{Client, ClientError, DisconnectReason, E2e, Event, Opened, Recipient, TYPING_EXPIRES_AFTER};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::keys::{Input, Keyboard};
use super::session::Session;

/// Sent messages whose ticks are tracked for display.
const TRACKED_MAX: usize = 1000;
/// Unread message ids remembered per account, to mark read when the person switches to it.
const UNREAD_MAX: usize = 1000;
/// While I keep typing, how often the peer is told again (its indicator expires after 5 s).
const TYPING_REFRESH: Duration = Duration::from_secs(3);

const HELP: &str = "/to +E164  chat with that number      /quit  leave      /help  this text";

/// Flags of `iris chat`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Type /to +E164 to pick a peer, then type lines to send them. Times are UTC.")]
pub struct ChatArgs {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Start chatting with this number right away.
    #[arg(long)]
    pub to: Option<String>,
    /// Chat unencrypted (the server can read it; for tests).
    #[arg(long)]
    pub plaintext: bool,
}

/// Runs the chat until `/quit`, end of input, or a fatal error.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let mut session = Session::open_as(&args.profile, false, args.plaintext).await?;
    let (outcomes_tx, mut outcomes) = mpsc::unbounded_channel();
    let outbox = spawn_sender(session.client.clone(), session.e2e.clone(), outcomes_tx);
    let mut chat = Chat::new(session.client.clone(), outbox);
    chat.say(&format!("Signed in as {} (device {}). {HELP}", chat.me_phone, chat.me_device));
    if let Some(phone) = args.to {
        chat.choose_peer(&phone).await;
    }
    let mut keyboard = Keyboard::stdin();
    chat.echo = keyboard.echoes();
    // With the terminal out of line mode, Ctrl-C must end the chat through `keyboard`'s drop,
    // which restores it; otherwise the default (the process ends) is fine.
    let echo = chat.echo;
    let interrupted = async move {
        if echo {
            drop(tokio::signal::ctrl_c().await);
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(interrupted);
    let outcome = loop {
        let typing_ends = chat.peer_typing_until;
        tokio::select! {
            input = keyboard.next() => match input {
                Ok(Input::Edited { empty }) => chat.on_typing(empty),
                Ok(Input::Line(line)) => {
                    chat.typed = String::new();
                    if !chat.on_line(line.trim()).await {
                        break Ok(());
                    }
                }
                Ok(Input::End) => break Ok(()),
                Err(e) => break Err(e.into()),
            },
            () = tokio::time::sleep_until(typing_ends.unwrap_or_else(Instant::now)), if typing_ends.is_some() => {
                chat.peer_stopped_typing();
            }
            () = &mut interrupted => break Ok(()),
            event = session.events.next() => match event {
                Some(Event::Fatal(err)) => break Err(ClientError::Fatal(err).into()),
                Some(event) => {
                    let opened = match (&session.e2e, &event) {
                        (Some(e2e), Event::Message(item) | Event::Keys(item)) => Some(e2e.decrypt(item).await),
                        _ => None,
                    };
                    chat.on_event(event, opened)
                }
                None => break Err(anyhow::anyhow!("the client stopped")),
            },
            Some(outcome) = outcomes.recv() => chat.on_sent(outcome),
        }
        chat.typed = keyboard.pending().to_owned();
    };
    drop(keyboard);
    session.close().await?;
    outcome
}

/// A line to send, and what became of it.
struct Outgoing {
    peer: Peer,
    text: String,
}

struct SendOutcome {
    outgoing: Outgoing,
    result: Result<iris_client::pb::SendResult, ClientError>,
}

/// Sends typed lines one after the other, so they arrive in the order typed (end-to-end
/// encrypted when `e2e` is given).
fn spawn_sender(
    client: Client,
    e2e: Option<E2e>,
    outcomes: mpsc::UnboundedSender<SendOutcome>,
) -> mpsc::UnboundedSender<Outgoing> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    tokio::spawn(async move {
        while let Some(outgoing) = rx.recv().await {
            let to = outgoing.peer.account_id;
            let result = match &e2e {
                Some(e2e) => e2e.send_text(to, &outgoing.text).await,
                None => client.send(Recipient::Account(to), outgoing.text.clone().into_bytes()).await,
            };
            if outcomes.send(SendOutcome { outgoing, result }).is_err() {
                return;
            }
        }
    });
    tx
}

#[derive(Debug, Clone)]
struct Peer {
    phone: String,
    account_id: u64,
}

/// Tick levels of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tick {
    Stored,
    Delivered,
    Read,
}

struct Chat {
    client: Client,
    outbox: mpsc::UnboundedSender<Outgoing>,
    me: u64,
    me_phone: String,
    me_device: u32,
    peer: Option<Peer>,
    /// Best tick seen per sent message, with a snippet to show; bounded (oldest forgotten).
    ticks: HashMap<u64, (Tick, String)>,
    tick_order: VecDeque<u64>,
    /// Ids of shown messages not yet marked read, per sender account.
    unread: HashMap<u64, Vec<u64>>,
    color: bool,
    was_disconnected: bool,
    /// The keyboard echoes (a terminal): printing must redraw the line being typed under it.
    echo: bool,
    /// The line being typed, to redraw.
    typed: String,
    /// The peer's presence as last shown.
    peer_presence: Option<PresenceUpdate>,
    /// When the peer's typing indicator expires, while it shows.
    peer_typing_until: Option<Instant>,
    /// Who was last told I am typing, and when.
    typing_told: Option<(u64, Instant)>,
}

impl Chat {
    fn new(client: Client, outbox: mpsc::UnboundedSender<Outgoing>) -> Self {
        let creds = client.credentials();
        Self {
            client,
            outbox,
            me: creds.account_id,
            me_phone: creds.phone,
            me_device: creds.device_id,
            peer: None,
            ticks: HashMap::new(),
            tick_order: VecDeque::new(),
            unread: HashMap::new(),
            color: std::io::stdout().is_terminal(),
            was_disconnected: false,
            echo: false,
            typed: String::new(),
            peer_presence: None,
            peer_typing_until: None,
            typing_told: None,
        }
    }

    /// A key changed the line being typed: tells the peer I am typing (again every
    /// [`TYPING_REFRESH`] while I go on), or that I stopped when the line is empty again.
    fn on_typing(&mut self, empty: bool) {
        let now = Instant::now();
        let Some(peer) = self.peer.as_ref().map(|p| p.account_id) else { return };
        let due = match self.typing_told {
            Some((told, at)) => told != peer || now.duration_since(at) >= TYPING_REFRESH,
            None => true,
        };
        if empty {
            self.stop_typing();
        } else if due {
            self.typing_told = Some((peer, now));
            self.tell_typing(peer, true);
        }
    }

    /// Tells whoever was told I am typing that I stopped (a sent message says it by itself).
    fn stop_typing(&mut self) {
        if let Some((told, _)) = self.typing_told.take() {
            self.tell_typing(told, false);
        }
    }

    /// Sends a typing indicator in the background; it is soft state, so failures are only logged.
    fn tell_typing(&self, to: u64, typing: bool) {
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.typing(to, typing).await {
                tracing::debug!("typing indicator not sent: {e}");
            }
        });
    }

    /// Shows the peer's presence when it differs from what was shown last.
    fn on_presence(&mut self, p: PresenceUpdate) {
        let Some(peer) = &self.peer else { return };
        if p.account_id != peer.account_id || self.peer_presence.as_ref() == Some(&p) {
            return;
        }
        let line = format!("  {} {}", peer.phone, presence_text(&p));
        self.peer_presence = Some(p);
        self.say(&line);
    }

    /// Shows the peer starting or stopping to type in our 1:1 conversation.
    fn on_peer_typing(&mut self, t: &TypingEvent) {
        let Some(peer) = &self.peer else { return };
        if t.group_id != 0 || t.from_account_id != peer.account_id {
            return;
        }
        if !t.typing {
            return self.peer_stopped_typing();
        }
        if self.peer_typing_until.is_none() {
            let line = format!("  {} is typing…", peer.phone);
            self.say(&line);
        }
        self.peer_typing_until = Some(Instant::now() + TYPING_EXPIRES_AFTER);
    }

    /// Hides the peer's typing indicator (stopped, expired, or their message arrived).
    fn peer_stopped_typing(&mut self) {
        if self.peer_typing_until.take().is_some() {
            if let Some(peer) = &self.peer {
                let line = format!("  {} stopped typing", peer.phone);
                self.say(&line);
            }
        }
    }

    /// Handles one typed line; `false` to leave.
    async fn on_line(&mut self, line: &str) -> bool {
        let is_message = !line.is_empty() && !line.starts_with('/');
        if is_message {
            self.typing_told = None; // the message itself ends my indicator on the peer's side
        } else {
            self.stop_typing();
        }
        match line.split_once(' ').map_or((line, ""), |(cmd, rest)| (cmd, rest.trim())) {
            ("", _) => {}
            ("/quit" | "/exit", _) => return false,
            ("/help", _) => self.say(HELP),
            ("/to", phone) => self.choose_peer(phone).await,
            (cmd, _) if cmd.starts_with('/') => self.say(&format!("unknown command {cmd}; {HELP}")),
            _ => match &self.peer {
                None => self.say("pick a peer first: /to +E164"),
                Some(peer) => {
                    let outgoing = Outgoing { peer: peer.clone(), text: line.to_owned() };
                    if self.outbox.send(outgoing).is_err() {
                        self.say("✗ the sender stopped");
                    }
                }
            },
        }
        true
    }

    async fn choose_peer(&mut self, phone: &str) {
        let phone = match iris_proto::phone::validate(phone) {
            Ok(phone) => phone,
            Err(e) => return self.say(&e.to_string()),
        };
        match self.client.account_info(&phone).await {
            Ok(info) => {
                self.say(&format!("now chatting with {phone}"));
                let peer = Peer { phone, account_id: info.account_id };
                let before = self.peer.replace(peer.clone());
                self.peer_presence = None;
                self.peer_typing_until = None;
                if let Some(ids) = self.unread.remove(&peer.account_id) {
                    self.mark_read(peer.account_id, ids);
                }
                self.watch_peer(before.map(|p| p.account_id), peer.account_id).await;
            }
            Err(e) if e.code() == Some(iris_client::pb::ErrorCode::NotFound) => {
                self.say(&format!("no account has the number {phone}"))
            }
            Err(e) => self.say(&format!("could not look up {phone}: {e}")),
        }
    }

    /// Watches the new peer's presence instead of the old one's and shows it now.
    async fn watch_peer(&mut self, before: Option<u64>, peer: u64) {
        if let Some(old) = before.filter(|&old| old != peer) {
            let _ = self.client.presence_unsubscribe(vec![old]).await;
        }
        match self.client.presence_subscribe(vec![peer]).await {
            Ok(states) => states.into_iter().for_each(|p| self.on_presence(p)),
            Err(e) => self.say(&format!("(presence unavailable: {e})")),
        }
    }

    fn on_event(&mut self, event: Event, opened: Option<Opened>) {
        match event {
            Event::Message(item) => self.on_message(&item, opened),
            Event::Keys(item) => {
                if let Some(Opened::IdentityChange(c)) = opened {
                    let what = match iris_client::pb::IdentityChangeType::try_from(c.r#type) {
                        Ok(iris_client::pb::IdentityChangeType::DeviceRemoved) => "removed",
                        _ => "added",
                    };
                    self.say(&format!("  security code with {} changed (device {} {what})", c.phone, c.device_id));
                }
                self.client.ack(item.seq);
            }
            Event::Receipt(item) => self.on_receipt(&item),
            Event::Group(item) => self.client.ack(item.seq),
            Event::Timer(item) => {
                if let Some(line) = super::timer::describe(&item) {
                    self.say(&format!("  {line}"));
                }
                self.client.ack(item.seq);
            }
            Event::Account(item) => {
                match &item.body {
                    Some(inbox_item::Body::DeviceChange(c)) => {
                        let what = match iris_client::pb::DeviceChangeType::try_from(c.r#type) {
                            Ok(iris_client::pb::DeviceChangeType::Removed) => "removed from",
                            _ => "added to",
                        };
                        self.say(&format!("  device {} ({}) was {what} your account", c.device_id, c.device_name));
                    }
                    Some(inbox_item::Body::ProfileChange(c)) if !c.display_name.is_empty() => {
                        self.say(&format!("  {} is now called {:?}", c.phone, c.display_name));
                    }
                    _ => {}
                }
                self.client.ack(item.seq);
            }
            Event::Connected(_) if self.was_disconnected => {
                self.was_disconnected = false;
                self.say("(connected)");
            }
            Event::Connected(_) => {}
            Event::Disconnected(reason) => {
                self.was_disconnected = true;
                self.say(&format!("(connection lost: {}; reconnecting…)", describe(&reason)));
            }
            Event::Fatal(err) => self.say(&format!("(connection ended: {err})")),
            Event::Presence(p) => self.on_presence(p),
            Event::Typing(t) => self.on_peer_typing(&t),
            Event::MissedCall(item) => {
                if let Some(inbox_item::Body::MissedCall(m)) = &item.body {
                    self.say(&format!("  missed call from account {}", m.from_account_id));
                }
                self.client.ack(item.seq);
            }
            Event::Call(_) => {} // `iris call` handles calls
        }
    }

    fn on_message(&mut self, item: &InboxItem, opened: Option<Opened>) {
        if let Some(inbox_item::Body::MessageAction(a)) = &item.body {
            self.on_action(item.server_ts_ms, a, opened.as_ref());
        }
        let Some(inbox_item::Body::Message(m)) = &item.body else {
            self.client.ack(item.seq);
            return;
        };
        let described = |media: &iris_client::pb::MediaMessage| {
            // Media show as `[photo 1280×960 312 KiB]` before their caption.
            let described: Vec<String> = media.media.iter().map(iris_client::media::describe).collect();
            format!("{} {}", described.join(" "), media.caption).trim_end().to_owned()
        };
        let text = match opened {
            Some(Opened::Text { text, .. }) => text,
            Some(Opened::Media { media, .. }) => described(&media),
            Some(Opened::Undecryptable { reason }) => format!("✗ (cannot decrypt: {reason})"),
            _ => match iris_client::media::media_of(m) {
                Some(media) => described(&media),
                None => String::from_utf8_lossy(&m.payload).into_owned(),
            },
        };
        let time = clock(item.server_ts_ms);
        if m.from_account_id == self.me {
            self.say(&format!("[{time}] me (device {}) → {}: {text}", m.from_device_id, m.to_phone));
        } else {
            let from_peer = self.peer.as_ref().is_some_and(|p| p.account_id == m.from_account_id);
            if from_peer {
                self.peer_typing_until = None; // their message ends their typing
            }
            self.say(&format!("[{time}] {}: {text}", m.from_phone));
            let from_peer = self.peer.as_ref().is_some_and(|p| p.account_id == m.from_account_id);
            if from_peer {
                self.mark_read(m.from_account_id, vec![item.server_msg_id]);
            } else {
                let ids = self.unread.entry(m.from_account_id).or_default();
                ids.push(item.server_msg_id);
                if ids.len() > UNREAD_MAX {
                    ids.remove(0);
                }
            }
        }
        self.client.ack(item.seq);
    }

    /// Shows an edit, deletion or reaction (of any conversation) on one line.
    fn on_action(&mut self, ts_ms: u64, a: &iris_client::pb::MessageAction, opened: Option<&Opened>) {
        use iris_client::pb::MessageActionType;
        let who = if a.from_account_id == self.me {
            "me".to_owned()
        } else {
            match &self.peer {
                Some(p) if p.account_id == a.from_account_id => p.phone.clone(),
                _ => format!("account {}", a.from_account_id),
            }
        };
        let what = match MessageActionType::try_from(a.r#type) {
            _ if matches!(opened, Some(Opened::Undecryptable { .. })) => {
                "sent an action that cannot be decrypted".into()
            }
            Ok(MessageActionType::Edit) => match opened {
                Some(Opened::Edit { text, .. }) => format!("edited: {text}"),
                _ => format!("edited: {}", String::from_utf8_lossy(&a.payload)),
            },
            Ok(MessageActionType::Delete) => "deleted a message".to_owned(),
            Ok(MessageActionType::React) => {
                let emoji = match opened {
                    Some(Opened::React { emoji, .. }) => emoji.as_str(),
                    _ => a.emoji.as_str(),
                };
                if emoji.is_empty() {
                    "removed a reaction".to_owned()
                } else {
                    format!("reacted {emoji}")
                }
            }
            _ => return,
        };
        self.say(&format!("[{}] {who} {what} (#{})", clock(ts_ms), a.target_server_msg_id));
    }

    fn on_receipt(&mut self, item: &InboxItem) {
        self.client.ack(item.seq);
        let Some(inbox_item::Body::Receipt(r)) = &item.body else { return };
        if r.from_account_id == self.me {
            return; // my other device read something: nothing to show here
        }
        let tick = match ReceiptType::try_from(r.r#type) {
            Ok(ReceiptType::Delivered) => Tick::Delivered,
            Ok(ReceiptType::Read) => Tick::Read,
            _ => return,
        };
        for id in &r.server_msg_ids {
            let upgraded = match self.ticks.get_mut(id) {
                Some((best, _)) if *best >= tick => None,
                Some((best, snippet)) => {
                    *best = tick;
                    Some(snippet.clone())
                }
                None => None, // sent before this chat started
            };
            if let Some(snippet) = upgraded {
                let line = format!("  {} {snippet}", self.tick_mark(tick));
                self.say(&line);
            }
        }
    }

    fn on_sent(&mut self, outcome: SendOutcome) {
        let SendOutcome { outgoing, result } = outcome;
        match result {
            Ok(sent) => {
                let line = format!(
                    "[{}] me → {}: {} {}",
                    clock(sent.server_ts_ms),
                    outgoing.peer.phone,
                    outgoing.text,
                    self.tick_mark(Tick::Stored)
                );
                self.say(&line);
                self.track(sent.server_msg_id, Tick::Stored, snippet(&outgoing.text));
            }
            Err(e) => self.say(&format!("✗ not sent to {}: {} ({e})", outgoing.peer.phone, outgoing.text)),
        }
    }

    /// Sends a READ receipt in the background; a failure is only reported.
    fn mark_read(&self, sender: u64, ids: Vec<u64>) {
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.send_read_receipt(sender, ids).await {
                eprintln!("(could not send read receipt: {e})");
            }
        });
    }

    fn track(&mut self, id: u64, tick: Tick, snippet: String) {
        if self.ticks.insert(id, (tick, snippet)).is_none() {
            self.tick_order.push_back(id);
            if self.tick_order.len() > TRACKED_MAX {
                if let Some(old) = self.tick_order.pop_front() {
                    self.ticks.remove(&old);
                }
            }
        }
    }

    fn tick_mark(&self, tick: Tick) -> String {
        match (tick, self.color) {
            (Tick::Stored, _) => "✓".into(),
            (Tick::Delivered, _) => "✓✓".into(),
            (Tick::Read, true) => "\x1b[34m✓✓ read\x1b[0m".into(),
            (Tick::Read, false) => "✓✓ read".into(),
        }
    }

    /// Prints a line; on a terminal, above the line being typed, which is drawn again.
    fn say(&self, line: &str) {
        if self.echo {
            print!("\r\x1b[K{line}\r\n{}", self.typed);
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else {
            println!("{line}");
        }
    }
}

fn describe(reason: &DisconnectReason) -> String {
    match reason {
        DisconnectReason::ServerClosed => "server closed the connection".into(),
        DisconnectReason::Io(e) => e.to_string(),
        DisconnectReason::Protocol(msg) => msg.clone(),
        DisconnectReason::HeartbeatTimeout => "server stopped answering".into(),
        DisconnectReason::GoAway { reason, .. } => format!("server going away ({reason})"),
        DisconnectReason::Error(e) => e.to_string(),
    }
}

/// `online`, `last seen HH:MM:SS UTC` or `offline` (hidden or never seen).
fn presence_text(p: &PresenceUpdate) -> String {
    match (p.online, p.last_seen_ms) {
        (true, _) => "is online".into(),
        (false, 0) => "is offline".into(),
        (false, ms) => format!("was last seen at {} UTC", clock(ms)),
    }
}

/// A sent text shortened for tick lines.
fn snippet(text: &str) -> String {
    const MAX_CHARS: usize = 30;
    let mut s: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().count() > MAX_CHARS {
        s.push('…');
    }
    format!("\"{s}\"")
}

/// `HH:MM:SS` (UTC) of a server timestamp in ms.
fn clock(ts_ms: u64) -> String {
    let s = (ts_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_snippets_are_short_and_readable() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock((13 * 3600 + 5 * 60 + 9) * 1000 + 999 + 86_400_000 * 3), "13:05:09");
        assert_eq!(snippet("hi"), "\"hi\"");
        assert_eq!(snippet(&"x".repeat(40)), format!("\"{}…\"", "x".repeat(30)));
        let p = |online, last_seen_ms| PresenceUpdate { account_id: 1, online, last_seen_ms };
        assert_eq!(presence_text(&p(true, 0)), "is online");
        assert_eq!(presence_text(&p(false, 0)), "is offline");
        assert_eq!(presence_text(&p(false, 3_600_000)), "was last seen at 01:00:00 UTC");
    }
}
