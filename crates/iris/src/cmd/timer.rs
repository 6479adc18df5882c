//! `iris timer PHONE|--group ID off|24h|7d|90d`: set a conversation's disappearing-messages
//! timer, and how `iris recv` and `iris chat` show a timer change. The CLI keeps no message
//! history, so there are no local copies to delete; `iris recv` prints each disappearing
//! message's `expires_at_ms` for whoever stores its output.

use iris_client::pb::{inbox_item, InboxItem};
use iris_client::{Client, TimerChat};
use serde_json::{json, Value};

use super::one_shot::{account_of, CommonArgs};

/// Flags of `iris timer`: `PHONE TIMER` for a 1:1, `--group ID TIMER` for a group.
#[derive(clap::Args, Debug)]
pub struct TimerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The group conversation (then the only argument is the timer).
    #[arg(long)]
    pub group: Option<u64>,
    /// `PHONE TIMER` (the other side's E.164 number) or, with --group, `TIMER`; a timer is
    /// off, 24h, 7d or 90d.
    #[arg(required = true, num_args = 1..=2, value_name = "PHONE|TIMER")]
    pub args: Vec<String>,
}

/// The seconds of a timer as the CLI names it.
fn parse_timer(s: &str) -> Result<u32, String> {
    match s {
        "off" | "0" => Ok(0),
        "24h" | "1d" => Ok(86_400),
        "7d" => Ok(604_800),
        "90d" => Ok(7_776_000),
        other => Err(format!("`{other}` is not a timer: use off, 24h, 7d or 90d")),
    }
}

/// The name of a timer, for output.
pub fn timer_name(seconds: u32) -> String {
    match seconds {
        0 => "off".into(),
        86_400 => "24h".into(),
        604_800 => "7d".into(),
        7_776_000 => "90d".into(),
        s => format!("{s}s"),
    }
}

/// Sets the timer; one JSON line with the result.
pub async fn set(client: &Client, a: &TimerArgs) -> anyhow::Result<Vec<Value>> {
    let (chat, timer) = match (a.group, a.args.as_slice()) {
        (Some(group), [timer]) => (TimerChat::Group(group), timer),
        (None, [phone, timer]) => (TimerChat::Direct(account_of(client, phone).await?), timer),
        _ => anyhow::bail!("usage: iris timer PHONE off|24h|7d|90d, or iris timer --group ID off|24h|7d|90d"),
    };
    let seconds = parse_timer(timer).map_err(anyhow::Error::msg)?;
    let r = client.set_timer(chat, seconds).await?;
    Ok(vec![json!({
        "timer": timer_name(r.seconds),
        "seconds": r.seconds,
        "server_msg_id": r.server_msg_id,
        "server_ts_ms": r.server_ts_ms,
    })])
}

/// A `TimerChanged` item as `iris recv` prints it: `{"timer_changed": "7d", …}`.
pub fn changed_json(item: &InboxItem) -> Option<(u64, String)> {
    let Some(inbox_item::Body::TimerChanged(t)) = &item.body else { return None };
    let line = json!({
        "timer_changed": timer_name(t.seconds),
        "seconds": t.seconds,
        "seq": item.seq,
        "server_msg_id": item.server_msg_id,
        "server_ts_ms": item.server_ts_ms,
        "by_phone": t.by_phone,
        "by_account_id": t.by_account_id,
        "by_device_id": t.by_device_id,
        "to_phone": t.to_phone,
        "group_id": t.group_id,
    });
    Some((item.seq, line.to_string()))
}

/// A `TimerChanged` item as `iris chat` says it.
pub fn describe(item: &InboxItem) -> Option<String> {
    let Some(inbox_item::Body::TimerChanged(t)) = &item.body else { return None };
    let what = match t.seconds {
        0 => "turned off disappearing messages".to_owned(),
        s => format!("set disappearing messages to {}", timer_name(s)),
    };
    Some(match t.group_id {
        0 => format!("{} {what}", t.by_phone),
        g => format!("{} {what} in group {g}", t.by_phone),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_parse_by_name_and_others_are_refused() {
        assert_eq!(parse_timer("off"), Ok(0));
        assert_eq!(parse_timer("24h"), Ok(86_400));
        assert_eq!(parse_timer("7d"), Ok(604_800));
        assert_eq!(parse_timer("90d"), Ok(7_776_000));
        assert!(parse_timer("1h").is_err());
        assert_eq!(timer_name(604_800), "7d");
    }
}
