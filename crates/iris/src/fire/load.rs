//! The fire tests that are bench scenarios with a verdict: hotspot (every message to one device
//! arrives, none twice) and reconnect storm (every device back, nothing lost or repeated).

use std::time::Duration;

use super::kit;
use super::{Line, Sizes};
use crate::bench::hotspot::{self, HotspotArgs};
use crate::bench::server::{ServerProcess, Target};
use crate::bench::{storm, CommonArgs};

/// Seconds of hotspot load.
const HOTSPOT_S: u64 = 3;
/// Wait for the hot device's backlog after the load.
const HOTSPOT_DRAIN_S: u64 = 120;
/// Wait for messages after the storm.
const STORM_DRAIN: Duration = Duration::from_secs(30);

/// M senders into one device for a few seconds; PASS when all of it arrives exactly once.
pub async fn hotspot(sizes: Sizes) -> anyhow::Result<Line> {
    let common = CommonArgs {
        server: None,
        spawn: true,
        sink: None,
        spawn_sink: false,
        json: false,
        pin: false,
        drain_s: HOTSPOT_DRAIN_S,
        // The SDK path, as when the figures in BENCHMARKS.md were taken.
        sdk: true,
        ack_delay_ms: 20,
        spin: false,
        report: None,
        phase_cmd: None,
    };
    let target = Target::open(&common).await?;
    let args = HotspotArgs { common, senders: sizes.hot_senders, duration_s: HOTSPOT_S, inflight: 8 };
    let result = hotspot::run(&args, &target).await;
    target.stop();
    let r = result?;
    let ok = r.lost == 0 && r.duplicates == 0 && r.accepted > 0;
    let figure = format!(
        "{} senders → 1 device for {HOTSPOT_S} s: {} accepted, {} delivered ({:.0} msgs/s), {} lost, {} duplicates",
        sizes.hot_senders, r.accepted, r.delivered, r.msgs_per_s, r.lost, r.duplicates
    );
    Ok(Line::check("hotspot", ok, figure))
}

/// N devices drop and reconnect at once while messages are sent to them.
pub async fn storm(sizes: Sizes) -> anyhow::Result<Line> {
    let server = kit::server("").await?;
    let s = storm::storm(&server.url(), sizes.storm, STORM_DRAIN).await?;
    drop::<ServerProcess>(server);
    let r = &s.report;
    let reconnect_s = r.extra.get("reconnect_s").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let ok = s.back == s.n && r.lost == 0 && r.duplicates == 0 && r.accepted > 0;
    let figure = format!(
        "{}/{} devices back in {reconnect_s:.2} s; {} msgs accepted around the storm, {} delivered, {} lost, {} duplicates",
        s.back, s.n, r.accepted, r.delivered, r.lost, r.duplicates
    );
    Ok(Line::check("reconnect-storm", ok, figure))
}
