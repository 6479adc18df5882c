//! offline-delete churn: an account links a device, messages pile up in that device's inbox
//! while it is offline, then the device is revoked (its inbox deleted) — over and over. The
//! primary must get every message exactly once, every revoked device must be refused, the
//! account must end with one device, and the server's memory must not grow with the cycles.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use iris_client::pb::SendStatus;
use iris_client::{HttpApi, Recipient};

use super::kit::{self, Received};
use super::{Line, Sizes};
use crate::bench::raw::{Handshake, RawConn};
use crate::bench::{harness, storm};

/// Messages sent to the account per cycle (queued for the offline device).
const PER_CYCLE: usize = 20;
/// Growth of the server's RSS over the churn that passes.
const RSS_GROWTH_MAX: u64 = 64 * 1024 * 1024;

/// Runs the test.
pub async fn run(sizes: Sizes) -> anyhow::Result<Line> {
    let server = kit::server("").await?;
    let http = HttpApi::new(&server.url())?;
    let creds = harness::login_all(&server.url(), 0, 2).await?;
    let (primary, sender) = (creds[0].clone(), creds[1].clone());
    let received = Arc::new(Received::default());
    let (p, pe) = kit::connect(&server, primary.clone()).await?;
    let collector = kit::collect(p.clone(), pe, received.clone());
    let (s, _se) = kit::connect(&server, sender.clone()).await?;
    let baseline = server.rss_bytes().unwrap_or(0);
    let mut accepted = HashMap::new();
    let mut revoked = Vec::new();
    for cycle in 0..sizes.churn_cycles {
        http.request_code(&primary.phone).await?;
        let linked = http.link_approved_by(&primary.phone, "000000", "churn", &primary.access_token).await?;
        for i in 0..PER_CYCLE {
            let id = format!("c{cycle}-{i}");
            let r = s.send_with_id(Recipient::Account(primary.account_id), id.clone(), id.clone()).await?;
            if r.status == SendStatus::Accepted as i32 {
                accepted.insert(id, (primary.account_id, r.server_msg_id));
            }
        }
        http.revoke_device(&primary.access_token, linked.device_id).await?;
        revoked.push(linked);
    }
    let n = accepted.len();
    kit::wait_until(Duration::from_secs(30), || received.len() >= n).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = server.rss_bytes().unwrap_or(0);
    let devices = http.devices(&primary.access_token).await?.len();
    let mut refused = 0;
    for r in revoked.iter().rev().take(3) {
        let mut conn = RawConn::open(server.tcp, 0).await?;
        if matches!(conn.hello(r, 0).await, Ok(Handshake::Refused(_)) | Err(_)) {
            refused += 1;
        }
    }
    collector.abort();
    harness::close_all(&[p, s]).await;
    let (lost, duplicates, _) = storm::check(&accepted, &received.messages.lock().expect("lock"));
    let repeats = received.repeats.load(Relaxed);
    let growth = rss.saturating_sub(baseline);
    let checked = revoked.len().min(3);
    let ok =
        lost == 0 && duplicates == 0 && repeats == 0 && devices == 1 && refused == checked && growth <= RSS_GROWTH_MAX;
    let figure = format!(
        "{} link→{PER_CYCLE} offline msgs→revoke cycles: primary got {}/{n} ({lost} lost, {} repeated); \
         {refused}/{checked} revoked devices refused; {devices} device(s) left; server RSS +{:.1} MiB",
        sizes.churn_cycles,
        n - lost as usize,
        duplicates + repeats,
        kit::mib(growth)
    );
    Ok(Line::check("offline-delete-churn", ok, figure))
}
