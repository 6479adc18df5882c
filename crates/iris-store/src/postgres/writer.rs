//! Which host of a shard takes writes. A shard URL may list a primary and its standbys
//! (libpq's multi-host form, `postgres://user@db1:5432,db2:5432/iris`); every connection this
//! engine opens — the committer's and both pools' — goes through [`Writer::connect`], which
//! tries the hosts one by one with `target_session_attrs=read-write` (a standby still in
//! recovery refuses) and keeps the one that accepted as the first to try next time. So after a
//! failover (the old primary gone, a standby promoted by `pg_ctl promote`, Patroni or
//! pg_auto_failover) a broken connection is replaced by one to the new primary, and the dead
//! host costs nothing on later connects.
//!
//! A search is bounded: [`PASSES_MAX`] passes over the hosts (one when there is one host),
//! [`PASS_PAUSE`] apart, each host's connect bounded by the connect timeout; then the caller
//! gets [`StoreError::Unavailable`] (nothing acknowledged) naming every host and why it
//! refused. A change of writable host is logged
//! once, as a warning, and counted ([`WriterEvent::Changed`]); a search that found none is
//! logged and counted too ([`WriterEvent::NotFound`]).
//!
//! It never promotes anything: choosing and promoting a new primary is the failover tool's
//! job (DESIGN.md "Storage").

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::Client;

use super::tls::PgTls;
use super::Shared;
use crate::{StoreError, StoreResult, WriterEvent};

/// How long opening a connection may take before the shard counts as unavailable.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Passes over a shard's hosts in one search before giving up (a promotion in progress
/// usually completes within them).
pub(super) const PASSES_MAX: usize = 3;
/// Pause between two passes.
pub(super) const PASS_PAUSE: Duration = Duration::from_millis(250);

/// The hosts of one shard and which of them took writes last.
pub(super) struct Writer {
    shard: usize,
    /// Per host, in the URL's order: its `host:port` (for logs) and a config naming only it.
    hosts: Vec<(String, tokio_postgres::Config)>,
    tls: PgTls,
    /// Index into `hosts` of the host that last accepted a read-write session: tried first.
    /// Shared by the writers of one shard (see [`sibling`](Self::sibling)), so a failover is
    /// found, logged and counted once per shard.
    current: Arc<AtomicUsize>,
    /// Where changes and failed searches are counted.
    shared: Arc<Shared>,
}

impl Writer {
    /// A writer over `hosts` (each a config of one host, see [`split_hosts`]); opens nothing.
    pub(super) fn new(
        shard: usize,
        hosts: Vec<(String, tokio_postgres::Config)>,
        tls: PgTls,
        shared: Arc<Shared>,
    ) -> Self {
        Self { shard, hosts, tls, current: Arc::new(AtomicUsize::new(0)), shared }
    }

    /// A writer over the same hosts with other session options (`hosts` in the same order),
    /// sharing this one's idea of which host is writable.
    pub(super) fn sibling(&self, hosts: Vec<(String, tokio_postgres::Config)>) -> Self {
        Self {
            shard: self.shard,
            hosts,
            tls: self.tls.clone(),
            current: Arc::clone(&self.current),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The most time one search can take: every pass, every host timing out.
    pub(super) fn search_timeout(&self) -> Duration {
        let n = self.hosts.len().max(1) as u32;
        (CONNECT_TIMEOUT * n + PASS_PAUSE) * PASSES_MAX as u32
    }

    /// A connection to a writable host, its driver running on a task of its own (the handle
    /// ends when the connection does). See the module doc for the order and the bounds; each
    /// host's socket connect is bounded by the config's connect timeout, the whole search by
    /// the caller (see [`search_timeout`](Self::search_timeout)).
    pub(super) async fn connect(&self) -> Result<(Client, JoinHandle<()>), NoWritableHost> {
        let n = self.hosts.len();
        let mut refusals = Vec::new();
        let mut last = None;
        for pass in 0..PASSES_MAX {
            if pass > 0 {
                tokio::time::sleep(PASS_PAUSE).await;
            }
            refusals.clear();
            let first = self.current.load(Ordering::Relaxed) % n.max(1);
            for k in 0..n {
                let idx = (first + k) % n;
                let (label, config) = &self.hosts[idx];
                match config.connect(self.tls.clone()).await {
                    Ok((client, connection)) => {
                        let shard = self.shard;
                        let driver = tokio::spawn(async move {
                            if let Err(e) = connection.await {
                                tracing::debug!(shard, error = %e, "PostgreSQL connection ended");
                            }
                        });
                        if idx != first
                            && self.current.compare_exchange(first, idx, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                        {
                            let was = &self.hosts[first].0;
                            tracing::warn!(shard, host = %label, was = %was, "PostgreSQL shard: writable host changed");
                            self.shared.writer_event(WriterEvent::Changed { shard });
                        }
                        return Ok((client, driver));
                    }
                    Err(e) => {
                        refusals.push(format!("{label}: {}", describe(&e)));
                        last = Some(e);
                    }
                }
            }
            if n > 1 {
                tracing::warn!(
                    shard = self.shard,
                    pass = pass + 1,
                    passes = PASSES_MAX,
                    refusals = %refusals.join("; "),
                    "PostgreSQL shard: no writable host"
                );
            } else {
                // One host: nothing to fail over to, so no second pass (the committer's probe
                // and the callers' retries try again).
                break;
            }
        }
        self.shared.writer_event(WriterEvent::NotFound { shard: self.shard });
        match last {
            Some(last) => Err(NoWritableHost { shard: self.shard, summary: refusals.join("; "), last }),
            None => unreachable!("a shard has at least one host (split_hosts)"),
        }
    }
}

/// A connect error with its causes (the driver's own text is often only "error connecting to
/// server"; the cause says refused, timed out, or "database does not allow writes").
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// No host of a shard accepted a read-write session.
pub(super) struct NoWritableHost {
    shard: usize,
    /// Every host of the last pass and why it refused.
    summary: String,
    /// The last refusal as the driver reported it (what the pool's interface carries).
    last: tokio_postgres::Error,
}

impl From<NoWritableHost> for StoreError {
    fn from(e: NoWritableHost) -> Self {
        StoreError::Unavailable(format!("PostgreSQL shard {}: no writable host ({})", e.shard, e.summary))
    }
}

/// A shard URL with several hosts (`postgres://u:p@h1:1,h2:2/db?opts`) as one URL per host
/// (`postgres://u:p@h1:1/db?opts`, …), in order, each with its `host:port` label. A URL with
/// one host comes back as it is. Hosts given as query parameters (`?host=…`) are not split.
pub(super) fn split_hosts(url: &str) -> StoreResult<Vec<(String, String)>> {
    let bad = |why: &str| StoreError::Unavailable(format!("bad PostgreSQL URL: {why}"));
    let scheme_end = url.find("://").map(|i| i + 3).ok_or_else(|| bad("no scheme"))?;
    let authority_end = url[scheme_end..].find(['/', '?']).map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (head, tail) = (&url[..scheme_end], &url[authority_end..]);
    hosts
        .split(',')
        .map(|host| {
            if host.is_empty() {
                return Err(bad("an empty host in the host list"));
            }
            Ok((host.to_owned(), format!("{head}{userinfo}{host}{tail}")))
        })
        .collect()
}

/// Pins what every connection of the engine must be: a session that can write. A standby
/// (in recovery) then refuses at connect time, with a clear reason, instead of failing the
/// first write.
pub(super) fn require_writable(config: &mut tokio_postgres::Config) {
    config.target_session_attrs(TargetSessionAttrs::ReadWrite);
}

/// Lets the pools open their connections through the [`Writer`].
pub(super) struct PoolConnect(pub Arc<Writer>);

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        _config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + '_>> {
        Box::pin(async move { self.0.connect().await.map_err(|e| e.last) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_host_urls_are_split_per_host() {
        // Proves each host of a libpq multi-host URL gets the same user, database and options,
        // in the listed order, and that a one-host URL is left alone.
        let split =
            split_hosts("postgres://iris:pw@db1:5432,db2:6432,[::1]:7/iris?target_session_attrs=read-write").unwrap();
        let urls: Vec<&str> = split.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(
            urls,
            [
                "postgres://iris:pw@db1:5432/iris?target_session_attrs=read-write",
                "postgres://iris:pw@db2:6432/iris?target_session_attrs=read-write",
                "postgres://iris:pw@[::1]:7/iris?target_session_attrs=read-write",
            ]
        );
        assert_eq!(split[1].0, "db2:6432");
        let one = split_hosts("postgresql://h/db").unwrap();
        assert_eq!(one, vec![("h".to_owned(), "postgresql://h/db".to_owned())]);
        assert!(split_hosts("postgres://a,,b/db").is_err());
        assert!(split_hosts("db1:5432").is_err());
    }
}
