//! `iris bench`: load scenarios that drive an Iris server with many client connections from one
//! process (issue #7): `throughput` (open-loop step-up), `latency` (fixed open-loop rate),
//! `hotspot`, `fanout`, `drain`, `recovery` (kill -9 with a full inbox log), `idle`, `storm` and
//! `media` (upload and download MiB/s, server memory during a large upload),
//! plus `sink`, a stand-in server that only
//! acks, to measure the generator alone. Each run is bounded in count and time, targets only
//! loopback servers, and ends with a human table (or, with `--json`, one JSON object as the last
//! line of stdout); `--report FILE.html` also writes charts. A run whose `lost` is not zero exits
//! 1. `iris fire` reuses this machinery.

mod closed_loop;
mod drain;
mod fanout;
mod generator;
pub(crate) mod harness;
pub(crate) mod hotspot;
mod html;
pub(crate) mod idle;
mod latency;
mod load;
mod media;
mod open_loop;
mod presence;
pub(crate) mod raw;
mod recovery;
pub(crate) mod server;
mod sink;
pub(crate) mod stats;
pub(crate) mod storm;
mod throughput;
mod timeline;

use std::time::Duration;

/// Flags shared by every scenario: which server, output format, CPU pinning.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Base URL of a running `--dev` server's HTTP API, or of several nodes of a cluster,
    /// comma-separated: clients are spread over them round-robin (loopback only; its auth rate limits must
    /// allow the load, e.g. every `[rate_limits]` entry 0).
    #[arg(long, conflicts_with_all = ["spawn", "sink", "spawn_sink"])]
    pub server: Option<String>,
    /// Start `iris serve --dev` (this executable) on free loopback ports and a temporary data
    /// directory, and stop it at the end.
    #[arg(long, conflicts_with_all = ["sink", "spawn_sink"])]
    pub spawn: bool,
    /// The TCP address of a running `iris bench sink` (a stand-in server that only acks) instead
    /// of a server: measures what the generator alone can offer (throughput, latency, hotspot).
    #[arg(long, conflicts_with = "spawn_sink")]
    pub sink: Option<std::net::SocketAddr>,
    /// Start `iris bench sink` (this executable) on a free loopback port, and stop it at the end.
    #[arg(long)]
    pub spawn_sink: bool,
    /// Print one JSON object as the last line of stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// With `--spawn` or `--spawn-sink`: run the server (or sink) under `taskset -c 0` and this
    /// process on CPU 1.
    #[arg(long)]
    pub pin: bool,
    /// After sending stops, how long to keep receiving until every ACCEPTED message arrived;
    /// what has not arrived by then is `lost`.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_s: u64,
    /// throughput, latency, hotspot, fanout: drive the load with SDK clients (what applications
    /// use, with retries, dedup and a task per client) instead of raw framed connections; the
    /// SDK's own cost is then part of the figures.
    #[arg(long)]
    pub sdk: bool,
    /// Raw clients: longest an ack of received entries waits to ride with the client's next
    /// send, as a phone batches its radio use and TCP delays its acks (the server holds receipts
    /// the same way, `session.receipt_hold_ms`); 100 unacked entries are acked at once. 0 acks at
    /// the next 1 ms tick.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub ack_delay_ms: u64,
    /// Raw clients: their thread polls its sockets without ever sleeping, so it takes a core
    /// whole (use with `--pin`). Over loopback, a server's write to a sleeping client also
    /// pays for waking the client's thread, a cost its writes to a network do not have; with
    /// this the server's figures leave it out.
    #[arg(long, conflicts_with = "sdk")]
    pub spin: bool,
    /// Also write a self-contained HTML report (charts and the summary table) to this file.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// A shell command run (and waited for) at the edges of the measured phase, with
    /// `IRIS_BENCH_PHASE` naming the edge: `sending` and `settled` around the closed-loop
    /// sends of raw clients and around `latency`'s fixed-rate phase (after set-up and the
    /// warm-up; after every accepted message arrived), `connecting`,
    /// `connected` and `closed` around `idle`'s connects. `scripts/cluster-costs.sh` reads
    /// PostgreSQL's and Redis's counters with it, so set-up costs stay out of per-message counts.
    #[arg(long)]
    pub phase_cmd: Option<String>,
}

impl CommonArgs {
    /// The drain time as a duration.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_s)
    }

    /// How the raw clients ack and wait, from these flags.
    pub fn raw_options(&self) -> load::RawOptions {
        load::RawOptions { ack_delay: Duration::from_millis(self.ack_delay_ms), spin: self.spin, read_groups: false }
    }
}

/// Flags of `iris bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Subcommand, Debug)]
enum Scenario {
    /// U users send 1:1 to random others, open-loop, stepping the rate up until delivery falls
    /// behind or p99 passes its bound; reports the highest sustained rate.
    Throughput(throughput::ThroughputArgs),
    /// U users send 1:1 at a fixed open-loop rate; send→delivered latency from scheduled times.
    Latency(latency::LatencyArgs),
    /// N idle authenticated connections: server memory per connection, logins per second.
    Idle(idle::IdleArgs),
    /// N connected devices drop and reconnect at once: time until all are back, nothing lost.
    Storm(storm::StormArgs),
    /// M senders send to one recipient device.
    Hotspot(hotspot::HotspotArgs),
    /// D offline devices get K messages each, then all connect; time until all are delivered.
    Drain(drain::DrainArgs),
    /// D offline devices get K messages each, the spawned server is killed (SIGKILL) and
    /// restarted: time until it listens again, then everything must arrive.
    Recovery(recovery::RecoveryArgs),
    /// S members send to one group of G members; every other member's device receives each.
    Fanout(fanout::FanoutArgs),
    /// One account uploads a file of --size-mb in chunks and downloads it back: upload and
    /// download MiB/s, and the server's memory during the upload (must stay flat).
    Media(media::MediaArgs),
    /// W accounts watch one account whose presence changes every --every-ms: time from
    /// SetPresence to each watcher's update, same node and across the nodes of a cluster.
    Presence(presence::PresenceArgs),
    /// A stand-in server that answers every send ACCEPTED and echoes it to its recipient, for
    /// measuring the generator's own ceiling (`--sink ADDR` or `--spawn-sink` on a scenario).
    Sink(sink::SinkArgs),
}

/// Runs the chosen scenario and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (common, name) = match &args.scenario {
        Scenario::Sink(a) => return sink::run(a.clone()).await,
        Scenario::Throughput(a) => (a.common.clone(), "throughput"),
        Scenario::Latency(a) => (a.common.clone(), "latency"),
        Scenario::Idle(a) => (a.common.clone(), "idle"),
        Scenario::Storm(a) => (a.common.clone(), "storm"),
        Scenario::Hotspot(a) => (a.common.clone(), "hotspot"),
        Scenario::Drain(a) => (a.common.clone(), "drain"),
        Scenario::Recovery(a) => (a.common.clone(), "recovery"),
        Scenario::Fanout(a) => (a.common.clone(), "fanout"),
        Scenario::Media(a) => (a.common.clone(), "media"),
        Scenario::Presence(a) => (a.common.clone(), "presence"),
    };
    if let Scenario::Media(a) = &args.scenario {
        // The media scenario samples the server from a task of its own, so it owns the target.
        let target = server::Target::open(&common).await?;
        let report = media::run(a, target).await.map_err(|e| e.context("bench media"))?;
        report.print(common.json);
        return Ok(());
    }
    let target = server::Target::open(&common).await?;
    let whole_run = generator::CpuMeter::start(None);
    let result = match args.scenario {
        Scenario::Throughput(a) => throughput::run(&a, &target).await,
        Scenario::Latency(a) => latency::run(&a, &target).await,
        Scenario::Idle(a) => idle::run(&a, &target).await,
        Scenario::Storm(a) => storm::run(&a, &target).await,
        Scenario::Hotspot(a) => hotspot::run(&a, &target).await,
        Scenario::Drain(a) => drain::run(&a, &target).await,
        Scenario::Recovery(a) => recovery::run(&a, &target).await,
        Scenario::Fanout(a) => fanout::run(&a, &target).await,
        Scenario::Presence(a) => presence::run(&a, &target).await,
        Scenario::Sink(_) | Scenario::Media(_) => unreachable!("returned above"),
    };
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            target.stop();
            return Err(e.context(format!("bench {name}")));
        }
    };
    if let Some((rss, cpu)) = target.usage() {
        report.server_rss_bytes = Some(rss);
        report.server_cpu_s = Some(cpu);
    }
    if target.sink.is_some() {
        report.set("target", "bench sink (acks and echoes only): server_* figures are the sink's");
    }
    target.stop();
    if report.generator_cpu_s.is_none() {
        // Scenarios without a phase of their own measured (idle, storm): the whole run.
        let whole = whole_run.stop();
        let sent = report.sent;
        whole.write_to(&mut report, whole.limited(0, 0, 0), sent);
    }
    if let Some(path) = &common.report {
        std::fs::write(path, html::render(&report)).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    report.print(common.json);
    if report.lost > 0 {
        anyhow::bail!(
            "{} deliveries of ACCEPTED messages never arrived within the drain ({} s after sending stopped)",
            report.lost,
            common.drain_s
        );
    }
    Ok(())
}
