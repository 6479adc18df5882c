//! `iris call offer|answer|reject|wait`: call signaling for scripts and tests, one JSON line per
//! event (`{"event":"INCOMING","call_id":"…",…}`, missed calls as `{"missed_call":"…",…}`).
//!
//! A call lives as long as its devices' connections (a device whose connection ends leaves it),
//! so `offer` and `answer` stay connected until the call ends for this device, and meanwhile
//! read commands from stdin, one per line: `ice CANDIDATE [ACCOUNT DEVICE]`, `hangup`. SDP and
//! candidates are opaque to the server; here they are text.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use iris_client::pb::{self, CallEndReason, CallEventType};
use iris_client::{CallTarget, ClientError, Event};
use serde_json::{json, Value};

use super::one_shot::accounts_of;
use super::session::Session;

/// The `iris call` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CallCommand {
    /// Call people (or a group); print the answer and every event until the call ends.
    Offer(OfferArgs),
    /// Wait for an incoming call (or the given one), answer it, print every event until it ends.
    Answer(AnswerArgs),
    /// Wait for an incoming call (or the given one) and decline it for the whole account.
    Reject(AnswerArgs),
    /// Print call events and missed calls as they come.
    Wait(WaitArgs),
}

/// What every `iris call` command takes.
#[derive(clap::Args, Debug)]
pub struct CallCommon {
    /// Profile written by `iris login`.
    #[arg(long, env = "IRIS_PROFILE")]
    pub profile: PathBuf,
    /// Stop after this many seconds without an event (0 = never).
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
}

/// Flags of `iris call offer`.
#[derive(clap::Args, Debug)]
pub struct OfferArgs {
    #[command(flatten)]
    pub common: CallCommon,
    /// Phone numbers (E.164) to call, comma-separated (a group call with several).
    #[arg(value_delimiter = ',', required_unless_present = "group")]
    pub phones: Vec<String>,
    /// Call the other members of this group instead.
    #[arg(long, conflicts_with = "phones")]
    pub group: Option<u64>,
    /// A video call.
    #[arg(long)]
    pub video: bool,
    /// File holding the SDP offer (default: a placeholder).
    #[arg(long)]
    pub sdp_file: Option<PathBuf>,
}

/// Flags of `iris call answer` and `iris call reject`.
#[derive(clap::Args, Debug)]
pub struct AnswerArgs {
    #[command(flatten)]
    pub common: CallCommon,
    /// The call (default: the first incoming one).
    #[arg(long)]
    pub call: Option<u64>,
    /// File holding the SDP answer (default: a placeholder).
    #[arg(long)]
    pub sdp_file: Option<PathBuf>,
}

/// Flags of `iris call wait`.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub common: CallCommon,
    /// Stop after this many lines.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Runs an `iris call` command.
pub async fn run(command: CallCommand) -> anyhow::Result<()> {
    let common = match &command {
        CallCommand::Offer(a) => &a.common,
        CallCommand::Answer(a) | CallCommand::Reject(a) => &a.common,
        CallCommand::Wait(a) => &a.common,
    };
    let silence = (common.timeout > 0.0).then(|| Duration::from_secs_f64(common.timeout));
    let mut session = Session::open(&common.profile, false).await?;
    if !matches!(command, CallCommand::Offer(_)) {
        // Connected: from now on an incoming call reaches this device (scripts wait for it).
        println!("{}", json!({ "listening": true }));
    }
    let outcome = execute(&mut session, &command, silence).await;
    session.close().await?;
    outcome
}

async fn execute(session: &mut Session, command: &CallCommand, silence: Option<Duration>) -> anyhow::Result<()> {
    match command {
        CallCommand::Offer(a) => {
            let target = match a.group {
                Some(g) => CallTarget::Group(g),
                None => CallTarget::Accounts(accounts_of(&session.client, &a.phones).await?),
            };
            let sdp = sdp_of(a.sdp_file.as_ref(), "offer").await?;
            let started = session.client.call_offer(target, a.video, sdp).await?;
            println!("{}", event_json(&started));
            follow(session, started.call_id, silence).await
        }
        CallCommand::Answer(a) => {
            let call_id = incoming(session, a.call, silence).await?;
            session.client.call_answer(call_id, sdp_of(a.sdp_file.as_ref(), "answer").await?).await?;
            println!("{}", json!({ "answered": call_id.to_string() }));
            follow(session, call_id, silence).await
        }
        CallCommand::Reject(a) => {
            let call_id = incoming(session, a.call, silence).await?;
            session.client.call_reject(call_id).await?;
            println!("{}", json!({ "rejected": call_id.to_string() }));
            Ok(())
        }
        CallCommand::Wait(a) => {
            let mut n = 0;
            while a.count.is_none_or(|c| n < c) {
                let Some(line) = next_line(session, silence).await? else { return Ok(()) };
                println!("{line}");
                n += 1;
            }
            Ok(())
        }
    }
}

async fn sdp_of(file: Option<&PathBuf>, what: &str) -> anyhow::Result<Bytes> {
    match file {
        Some(f) => Ok(tokio::fs::read(f).await.with_context(|| format!("reading {}", f.display()))?.into()),
        None => Ok(Bytes::from(format!("v=0 (placeholder {what})"))),
    }
}

/// Waits for an incoming call (`call`, or any), printing it; its id.
async fn incoming(session: &mut Session, call: Option<u64>, silence: Option<Duration>) -> anyhow::Result<u64> {
    loop {
        let event = next_event(session, silence).await?.ok_or(ClientError::Timeout("waiting for a call"))?;
        if let Event::Call(c) = event {
            if c.r#type == CallEventType::Incoming as i32 && call.is_none_or(|id| id == c.call_id) {
                println!("{}", event_json(&c));
                return Ok(c.call_id);
            }
        }
    }
}

/// Prints the call's events and carries out stdin's commands until the call ends for this
/// device (or `silence` passes without an event).
async fn follow(session: &mut Session, call_id: u64, silence: Option<Duration>) -> anyhow::Result<()> {
    let mut stdin = Some(stdin_lines());
    loop {
        let command = async {
            match &mut stdin {
                Some(lines) => lines.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = command => match line {
                Some(line) => {
                    if command_of(session, call_id, &line).await? {
                        return Ok(()); // hung up: the call is over for this device
                    }
                }
                None => stdin = None,
            },
            event = next_event(session, silence) => {
                let Some(event) = event? else { return Ok(()) };
                if let Some(line) = line_of(session, &event) {
                    println!("{line}");
                }
                if let Event::Call(c) = &event {
                    if c.call_id == call_id && ends_here(c) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Stdin's lines, read on a thread of its own: tokio's stdin would keep the runtime (and so the
/// process) alive at exit until stdin closes.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// One stdin command: `ice CANDIDATE [ACCOUNT DEVICE]` or `hangup`; true after a hang-up.
async fn command_of(session: &Session, call_id: u64, line: &str) -> anyhow::Result<bool> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ice = |candidate: &str| Bytes::from(candidate.to_owned());
    match words.as_slice() {
        [] => {}
        ["hangup"] => {
            session.client.call_hangup(call_id).await?;
            println!("{}", json!({ "hung_up": call_id.to_string() }));
            return Ok(true);
        }
        ["ice", candidate] => session.client.call_ice(call_id, ice(candidate), None).await?,
        ["ice", candidate, account, device] => {
            let to = (account.parse()?, device.parse()?);
            session.client.call_ice(call_id, ice(candidate), Some(to)).await?;
        }
        _ => anyhow::bail!("unknown command {line:?}: `ice CANDIDATE [ACCOUNT DEVICE]` or `hangup`"),
    }
    Ok(false)
}

/// Whether the call is over for this device after `c`.
fn ends_here(c: &pb::CallEvent) -> bool {
    matches!(
        CallEventType::try_from(c.r#type),
        Ok(CallEventType::Ended | CallEventType::AnsweredElsewhere | CallEventType::RejectedElsewhere)
    )
}

/// The next event (`None` after `silence` without one).
async fn next_event(session: &mut Session, silence: Option<Duration>) -> anyhow::Result<Option<Event>> {
    let next = session.events.next();
    let event = match silence {
        Some(d) => match tokio::time::timeout(d, next).await {
            Ok(e) => e,
            Err(_) => return Ok(None),
        },
        None => next.await,
    };
    match event {
        Some(Event::Fatal(e)) => Err(ClientError::Fatal(e).into()),
        Some(e) => Ok(Some(e)),
        None => Err(ClientError::Closed.into()),
    }
}

/// The next line to print (call events and missed calls; other events are skipped).
async fn next_line(session: &mut Session, silence: Option<Duration>) -> anyhow::Result<Option<Value>> {
    loop {
        let Some(event) = next_event(session, silence).await? else { return Ok(None) };
        if let Some(line) = line_of(session, &event) {
            return Ok(Some(line));
        }
    }
}

/// The JSON line of a call event or missed call (acked once printed); `None` for the rest
/// (messages are left unacked for `iris recv`).
fn line_of(session: &Session, event: &Event) -> Option<Value> {
    match event {
        Event::Call(c) => Some(event_json(c)),
        Event::MissedCall(item) => {
            let m = event.missed_call()?;
            session.client.ack(item.seq);
            Some(json!({
                "missed_call": m.call_id.to_string(),
                "from_account_id": m.from_account_id,
                "from_device_id": m.from_device_id,
                "video": m.video,
                "group_id": m.group_id,
                "started_ms": m.started_ms,
                "seq": item.seq,
            }))
        }
        _ => None,
    }
}

fn event_json(c: &pb::CallEvent) -> Value {
    let name = |s: &'static str, prefix: &str| s.trim_start_matches(prefix).to_owned();
    let kind = CallEventType::try_from(c.r#type).map_or("UNSPECIFIED", |t| t.as_str_name());
    let mut v = json!({
        "event": name(kind, "CALL_EVENT_TYPE_"),
        "call_id": c.call_id.to_string(),
        "from_account_id": c.from_account_id,
        "from_device_id": c.from_device_id,
        "video": c.video,
        "group_id": c.group_id,
        "participants": c.participant_account_ids,
    });
    if !c.payload.is_empty() {
        v["payload"] = String::from_utf8_lossy(&c.payload).into();
    }
    if let Ok(
        reason @ (CallEndReason::Hangup | CallEndReason::NoAnswer | CallEndReason::Cancelled | CallEndReason::Rejected),
    ) = CallEndReason::try_from(c.reason)
    {
        v["reason"] = name(reason.as_str_name(), "CALL_END_REASON_").into();
    }
    if let Some(t) = &c.turn {
        v["turn"] = json!({ "username": t.username, "password": t.password, "ttl_s": t.ttl_s, "uris": t.uris });
    }
    v
}
