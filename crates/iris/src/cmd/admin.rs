//! `iris admin lookup | revoke | suspend | unsuspend | lift | reports | review`: the operators' commands, talking to a server's admin listener
//! (`[admin] listen`) with the admin token. One JSON document per answer on stdout; refusals are
//! the usual one JSON line `{"code","message"}` on stderr with a failing exit status.

use anyhow::Context as _;
use iris_client::admin::AdminApi;
use iris_proto::admin::AdminReviewCursor;

/// `iris admin …`.
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Show an account: devices (linked, last seen, connected node, inbox depth) and the rate
    /// limits it hit lately.
    Lookup(LookupArgs),
    /// Revoke one device of an account: its connections close, its tokens stop working, and the
    /// account's other devices are told.
    Revoke(RevokeArgs),
    /// Suspend an account pending review: its sends, connections and logins are refused.
    Suspend(SuspendArgs),
    /// Lift an account's suspension after review.
    Unsuspend(AccountArgs),
    /// End an account's sending restriction (`sending`) or forwarding limit (`forwarding`) now.
    Lift(LiftArgs),
    /// Show the reports against an account, newest first, with what reporters disclosed.
    Reports(ReportsArgs),
    /// List the accounts to review: suspended, or reported within the report window, newest
    /// first (`next` in the answer gives the flags of the next page).
    Review(ReviewArgs),
}

/// Flags of `iris admin review`.
#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// Accounts at most (1 to 100).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Continue below this item: the previous answer's `next.before_ms`.
    #[arg(long, requires = "before_account")]
    before_ms: Option<u64>,
    /// With `--before-ms`: the previous answer's `next.before_account`.
    #[arg(long, requires = "before_ms")]
    before_account: Option<u64>,
}

/// Flags of a command on one account.
#[derive(clap::Args, Debug)]
pub struct AccountArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The account: its id, or its phone number in E.164.
    account: String,
}

/// Flags of `iris admin suspend`.
#[derive(clap::Args, Debug)]
pub struct SuspendArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The account: its id, or its phone number in E.164.
    account: String,
    /// Why, for the next reviewer (recorded as `operator: <reason>`).
    #[arg(long)]
    reason: String,
}

/// Flags of `iris admin lift`.
#[derive(clap::Args, Debug)]
pub struct LiftArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The account: its id, or its phone number in E.164.
    account: String,
    /// Which: `sending` (to non-contacts) or `forwarding`.
    #[arg(value_parser = ["sending", "forwarding"])]
    which: String,
}

/// Flags of `iris admin reports`.
#[derive(clap::Args, Debug)]
pub struct ReportsArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The account: its id, or its phone number in E.164.
    account: String,
    /// Reports at most (1 to 100).
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

/// Where the admin API is and the token it wants.
#[derive(clap::Args, Debug)]
pub struct AdminTarget {
    /// The admin listener's URL (the server's `[admin] listen`).
    #[arg(long, env = "IRIS_ADMIN_URL", default_value = "http://127.0.0.1:7702")]
    pub admin_url: String,
    /// The admin token (the server's `[admin] token`); prefer the environment variable, which
    /// other users cannot read in the process list.
    #[arg(long, env = "IRIS_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// Flags of `iris admin lookup`.
#[derive(clap::Args, Debug)]
pub struct LookupArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The account: its id, or its phone number in E.164 (`+14155550100`).
    account: String,
}

/// Flags of `iris admin revoke`.
#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// The account: its id, or its phone number in E.164.
    account: String,
    /// The device number to revoke.
    device: u32,
}

/// Runs an `iris admin` command.
pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Lookup(args) => {
            let api = AdminApi::new(&args.target.admin_url, &args.target.token)?;
            let account = api.lookup(&args.account).await.with_context(|| format!("looking up {}", args.account))?;
            println!("{}", serde_json::to_string_pretty(&account)?);
        }
        AdminCommand::Revoke(args) => {
            let api = AdminApi::new(&args.target.admin_url, &args.target.token)?;
            let revoked = api
                .revoke(&args.account, args.device)
                .await
                .with_context(|| format!("revoking device {} of {}", args.device, args.account))?;
            println!("{}", serde_json::to_string(&revoked)?);
        }
        AdminCommand::Suspend(args) => {
            let api = AdminApi::new(&args.target.admin_url, &args.target.token)?;
            let change = api
                .suspend(&args.account, &args.reason)
                .await
                .with_context(|| format!("suspending {}", args.account))?;
            println!("{}", serde_json::to_string(&change)?);
        }
        AdminCommand::Unsuspend(args) => {
            let api = AdminApi::new(&args.target.admin_url, &args.target.token)?;
            let change =
                api.unsuspend(&args.account).await.with_context(|| format!("unsuspending {}", args.account))?;
            println!("{}", serde_json::to_string(&change)?);
        }
        AdminCommand::Lift(args) => {
            let api = AdminApi::new(&args.target.admin_url, &args.target.token)?;
            let change = api
                .lift(&args.account, &args.which)
                .await
                .with_context(|| format!("lifting the {} restriction of {}", args.which, args.account))?;
            println!("{}", serde_json::to_string(&change)?);
        }
        AdminCommand::Reports(args) => {
            let api = AdminApi::new(&args.target.admin_url, &args.target.token)?;
            let reports = api
                .reports(&args.account, args.limit)
                .await
                .with_context(|| format!("reading the reports against {}", args.account))?;
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
        AdminCommand::Review(args) => {
            let api = AdminApi::new(&args.target.admin_url, &args.target.token)?;
            let before = args
                .before_ms
                .zip(args.before_account)
                .map(|(before_ms, before_account)| AdminReviewCursor { before_ms, before_account });
            let queue = api.review(args.limit, before).await.context("reading the review queue")?;
            println!("{}", serde_json::to_string_pretty(&queue)?);
        }
    }
    Ok(())
}
