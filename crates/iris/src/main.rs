//! `iris`: one binary for the server (`iris serve`) and a command-line client (`login`, `send`,
//! `recv`, `chat`). Parses the command line and dispatches; each command lives in its own file.

mod bench;
mod cmd;
mod fire;
mod profile;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Iris, a WhatsApp-class messaging server and its command-line client.
#[derive(Parser, Debug)]
#[command(name = "iris", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Link this machine as a device of a phone number's account and save a profile.
    Login(cmd::login::LoginArgs),
    /// The account itself: `iris account delete`.
    #[command(subcommand)]
    Account(cmd::account::AccountCommand),
    /// Send one text message and print the server's answer as a JSON line.
    Send(cmd::send::SendArgs),
    /// Print received messages and receipts as JSON lines, acking each.
    Recv(cmd::recv::RecvArgs),
    /// Create, manage and send to groups.
    #[command(subcommand)]
    Group(cmd::group::GroupCommand),
    /// Chat interactively with one peer at a time.
    Chat(cmd::chat::ChatArgs),
    /// Voice/video call signaling for scripts: offer, answer, reject, wait (JSON lines).
    #[command(subcommand)]
    Call(cmd::call::CallCommand),
    /// Show this device's end-to-end identity and fingerprint, and a conversation's safety number.
    Keys(cmd::identity::KeysArgs),
    /// Push notifications: register this device's target, remove it, send a test wake-up.
    #[command(subcommand)]
    Push(cmd::push::PushCommand),
    /// This account's devices: list, revoke, and approve or refuse a new device's link code.
    #[command(subcommand)]
    Devices(cmd::devices::DevicesCommand),
    /// The registration PIN that registering a new primary for this number needs.
    #[command(subcommand)]
    Pin(cmd::devices::PinCommand),
    /// My profile (display name, about, photo, who sees it), and others' as I may see them.
    #[command(subcommand)]
    Profile(cmd::devices::ProfileCommand),
    /// Contacts, discovery, blocks, message actions and presence (one subcommand each).
    #[command(flatten)]
    Social(cmd::social::SocialCommand),
    /// Operator tools on a server's admin listener: look up an account, revoke a device.
    #[command(subcommand)]
    Admin(cmd::admin::AdminCommand),
    /// Measure a server under load (throughput, latency, hotspot, fanout, drain, idle, storm), or
    /// run a stand-in server that only acks (sink) to measure the generator itself.
    Bench(bench::BenchArgs),
    /// Run the fire-test catalog (kill -9, slow consumer, storms, full disk) on spawned servers.
    Fire(fire::FireArgs),
}

/// mimalloc instead of glibc malloc: the message path allocates small buffers at a high rate,
/// and glibc's allocator was ~15% of the server's CPU in `iris bench throughput` (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, as Redis does (`disable-thp`). With them,
/// a growing hash table's fresh memory came in 2 MiB pages that the kernel zeroes on the first
/// touch, on whichever thread touched it: on the benchmark host (a VM that backs guest memory
/// lazily) that stalled the log's committer, and every send behind it, for 40–350 ms a few times
/// a run. Without them, p99 at 10k msgs/s went from 10–35 ms to 5–6 ms (BENCHMARKS.md, "Huge
/// pages off"). A failure is only logged: it costs latency, not correctness.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("iris: could not turn transparent huge pages off: {e}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Login(args) => cmd::with_logging(cmd::login::run(args)).await,
        Command::Account(command) => cmd::with_logging(cmd::account::run(command)).await,
        Command::Send(args) => cmd::with_logging(cmd::send::run(args)).await,
        Command::Recv(args) => cmd::with_logging(cmd::recv::run(args)).await,
        Command::Chat(args) => cmd::with_logging(cmd::chat::run(args)).await,
        Command::Keys(args) => cmd::with_logging(cmd::identity::run(args)).await,
        Command::Call(command) => cmd::with_logging(cmd::call::run(command)).await,
        Command::Group(command) => cmd::with_logging(cmd::group::run(command)).await,
        Command::Social(command) => cmd::with_logging(cmd::social::run(command)).await,
        Command::Push(command) => cmd::with_logging(cmd::push::run(command)).await,
        Command::Devices(command) => cmd::with_logging(cmd::devices::devices(command)).await,
        Command::Pin(command) => cmd::with_logging(cmd::devices::pin(command)).await,
        Command::Profile(command) => cmd::with_logging(cmd::devices::profile(command)).await,
        Command::Admin(command) => cmd::with_logging(cmd::admin::run(command)).await,
        Command::Bench(args) => cmd::with_logging(bench::run(args)).await,
        Command::Fire(args) => cmd::with_logging(fire::run(args)).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            cmd::report_error(&err);
            ExitCode::FAILURE
        }
    }
}
