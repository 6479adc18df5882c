//! `iris fire`: the fire-test catalog of issue #7, run against servers this process spawns
//! itself (this executable's `serve`, temporary data directories, loopback ports). Each test
//! prints a PASS, FAIL or SKIP line with the figure behind it; any FAIL makes the exit status
//! non-zero. The load and the checks reuse `iris bench`'s machinery.

mod churn;
mod consumer;
mod crash;
mod disk;
mod kit;
mod load;
mod presence;

use std::time::Instant;

/// Flags of `iris fire`.
#[derive(clap::Args, Debug, Clone)]
pub struct FireArgs {
    /// kill -9 cycles of the crash-durability test.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub cycles: u32,
    /// Small sizes everywhere (CI): a few cycles, tens of clients.
    #[arg(long)]
    pub small: bool,
    /// Run only the tests whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
}

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Pass,
    /// A check failed (the figure says which).
    Fail,
    /// Could not run here (the figure says why).
    Skip,
}

/// One line of the table.
pub struct Line {
    /// Test name.
    pub name: &'static str,
    /// Result.
    pub outcome: Outcome,
    /// The measured figure behind the result.
    pub figure: String,
}

impl Line {
    /// PASS when `ok`, else FAIL, with `figure`.
    pub fn check(name: &'static str, ok: bool, figure: String) -> Self {
        Self { name, outcome: if ok { Outcome::Pass } else { Outcome::Fail }, figure }
    }
}

/// Sizes of one run (full or `--small`).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// kill -9 cycles.
    pub cycles: usize,
    /// Messages accepted between two kills.
    pub per_cycle: usize,
    /// Messages sent to the device that stops reading.
    pub flood: usize,
    /// Bound on the p99 of the other pair's messages during the flood, in ms: tight on a full
    /// run (meant for a quiet machine), loose on a small one, which the test suite runs on a
    /// loaded machine where only starvation, not a slow second, may fail it.
    pub pair_p99_max_ms: f64,
    /// Senders into the hot device, and the hotspot's seconds.
    pub hot_senders: u32,
    /// Presence subscribers and flaps.
    pub subscribers: usize,
    /// Presence changes of the hot account.
    pub flaps: usize,
    /// Link → receive offline → revoke cycles.
    pub churn_cycles: usize,
    /// Devices in the reconnect storm.
    pub storm: usize,
}

impl Sizes {
    fn of(args: &FireArgs) -> Self {
        if args.small {
            return Self {
                cycles: args.cycles.min(3) as usize,
                per_cycle: 40,
                flood: 3_000,
                pair_p99_max_ms: 5_000.0,
                hot_senders: 10,
                subscribers: 30,
                flaps: 20,
                churn_cycles: 4,
                storm: 50,
            };
        }
        Self {
            cycles: args.cycles as usize,
            per_cycle: 300,
            flood: 50_000,
            pair_p99_max_ms: 500.0,
            hot_senders: 200,
            subscribers: 1000,
            flaps: 200,
            churn_cycles: 50,
            storm: 2000,
        }
    }
}

/// Runs the catalog, prints the table; an error (exit status 1) when any test failed.
pub async fn run(args: FireArgs) -> anyhow::Result<()> {
    let sizes = Sizes::of(&args);
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| name.contains(o));
    let mut lines = Vec::new();
    for name in [
        "crash-durability",
        "slow-consumer",
        "hotspot",
        "presence-hotspot",
        "offline-delete-churn",
        "reconnect-storm",
        "disk-pressure",
    ] {
        if !wanted(name) {
            continue;
        }
        eprintln!("fire: {name} …");
        let started = Instant::now();
        let result = match name {
            "crash-durability" => crash::run(sizes).await,
            "slow-consumer" => consumer::run(sizes).await,
            "hotspot" => load::hotspot(sizes).await,
            "presence-hotspot" => presence::run(sizes).await,
            "offline-delete-churn" => churn::run(sizes).await,
            "reconnect-storm" => load::storm(sizes).await,
            _ => disk::run(sizes).await,
        };
        let line = result.unwrap_or_else(|e| Line::check(name, false, format!("error: {e:#}")));
        eprintln!("fire: {name} {:?} in {:.1} s", line.outcome, started.elapsed().as_secs_f64());
        lines.push(line);
    }
    print_table(&lines);
    let failed = lines.iter().filter(|l| l.outcome == Outcome::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} fire test(s) failed");
    }
    Ok(())
}

fn print_table(lines: &[Line]) {
    println!("{:<22} {:<6} figure", "test", "result");
    for l in lines {
        let result = match l.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        };
        println!("{:<22} {result:<6} {}", l.name, l.figure);
    }
}
