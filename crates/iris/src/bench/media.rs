//! `iris bench media`: one account uploads a file of `--size-mb` through the media API in
//! `--chunk-mb` chunks (resumable PATCHes, as the SDK sends them), then downloads it back by its
//! signed URL; reports upload and download MB/s on loopback and the spawned server's resident
//! memory sampled every 100 ms during the upload, which must stay flat: the server streams
//! chunks to disk and never holds a blob.
//!
//! The bytes are generated (a fixed pseudo-random stream, hashed once before the upload) rather
//! than read from a file, so the generator's disk does not compete with the server's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use iris_client::api::UploadRequest;
use iris_client::media::MediaApi;
use sha2::{Digest, Sha256};

use super::generator::CpuMeter;
use super::server::Target;
use super::stats::{LatencyMs, Report};
use super::{harness, CommonArgs};

/// How often the server's memory is sampled.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// Flags of `iris bench media`.
#[derive(clap::Args, Debug)]
pub struct MediaArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of the file uploaded and downloaded, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=2048))]
    pub size_mb: u64,
    /// Bytes per upload PATCH, in MiB.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub chunk_mb: u64,
}

/// The generated file: chunk `i` of `chunk` bytes, the same every time it is asked for.
fn chunk_of(i: u64, chunk: usize, total: u64) -> Vec<u8> {
    let start = i * chunk as u64;
    let len = (total - start).min(chunk as u64) as usize;
    let mut x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Samples the spawned server's resident memory until stopped: (min, max, samples).
struct RssSampler {
    stop: Arc<AtomicBool>,
    min: Arc<AtomicU64>,
    max: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(target: &Arc<Target>) -> Self {
        let (stop, min, max, samples) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(u64::MAX)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let task = tokio::spawn({
            let (target, stop, min, max, samples) =
                (target.clone(), stop.clone(), min.clone(), max.clone(), samples.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some((rss, _)) = target.usage() {
                        min.fetch_min(rss, Ordering::Relaxed);
                        max.fetch_max(rss, Ordering::Relaxed);
                        samples.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(RSS_EVERY).await;
                }
            }
        });
        Self { stop, min, max, samples, task }
    }

    async fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let min = self.min.load(Ordering::Relaxed);
        (if min == u64::MAX { 0 } else { min }, self.max.load(Ordering::Relaxed), self.samples.load(Ordering::Relaxed))
    }
}

/// Uploads, downloads, checks, reports; stops a spawned server at the end either way.
pub async fn run(args: &MediaArgs, target: Target) -> anyhow::Result<Report> {
    let target = Arc::new(target);
    let result = measure(args, &target).await;
    target.stop();
    result
}

async fn measure(args: &MediaArgs, target: &Arc<Target>) -> anyhow::Result<Report> {
    target.require_server("media")?;
    let url = harness::server_urls(&target.url).first().copied().unwrap_or(&target.url).to_owned();
    let creds = harness::login_all(&url, 0, 1).await?.remove(0);
    let api = MediaApi::new(&url, &creds.access_token)?;
    let total = args.size_mb << 20;
    let chunk = (args.chunk_mb << 20) as usize;
    let n_chunks = total.div_ceil(chunk as u64);
    let mut hasher = Sha256::new();
    for i in 0..n_chunks {
        hasher.update(chunk_of(i, chunk, total));
    }
    let sha: [u8; 32] = hasher.finalize().into();
    let req = UploadRequest {
        kind: "document".into(),
        size_bytes: total,
        sha256: hex::encode(sha),
        encrypted: true,
        mime: "application/octet-stream".into(),
        idempotency_key: format!("bench-{}", hex::encode(rand::random::<[u8; 8]>())),
    };

    let rss_before = target.usage().map_or(0, |(rss, _)| rss);
    let cpu = CpuMeter::start(None);
    let sampler = RssSampler::start(target);
    let started = Instant::now();
    let mut state = api.start(&req).await.context("starting the upload")?;
    for i in 0..n_chunks {
        state = api.patch(&state.upload_id, i * chunk as u64, chunk_of(i, chunk, total)).await?;
    }
    let upload = started.elapsed();
    let (rss_min, rss_max, samples) = sampler.finish().await;
    let Some(media) = state.media else { bail!("the upload did not complete at {} of {total} bytes", state.offset) };

    let started = Instant::now();
    let mut hasher = Sha256::new();
    let n = api.stream(&media.media_id, |chunk| hasher.update(chunk)).await?;
    let received: (u64, [u8; 32]) = (n, hasher.finalize().into());
    let download_took = started.elapsed();
    let used = cpu.stop();
    if received.1 != sha || received.0 != total {
        bail!("downloaded {} bytes with another SHA-256 than uploaded", received.0);
    }

    let mb = total as f64 / f64::from(1 << 20);
    let zero = LatencyMs { p50: 0.0, p99: 0.0, p999: 0.0, max: 0.0 };
    let mut report = Report {
        scenario: "media",
        sent: 1,
        accepted: 1,
        delivered: 1,
        lost: 0,
        duplicates: 0,
        send_errors: 0,
        duration_s: (upload + download_took).as_secs_f64(),
        msgs_per_s: 0.0,
        latency_ms: zero,
        server_rss_bytes: None,
        server_cpu_s: None,
        generator_cpu_s: None,
        generator_limited: None,
        extra: Default::default(),
        charts: Default::default(),
    };
    used.write_to(&mut report, used.limited(0, 0, 0), 0);
    report.set("size_mib", args.size_mb);
    report.set("chunk_mib", args.chunk_mb);
    report.set("upload_s", round3(upload.as_secs_f64()));
    report.set("upload_mib_per_s", round3(mb / upload.as_secs_f64().max(1e-9)));
    report.set("download_s", round3(download_took.as_secs_f64()));
    report.set("download_mib_per_s", round3(mb / download_took.as_secs_f64().max(1e-9)));
    report.set("server_rss_before_upload_bytes", rss_before);
    report.set("server_rss_min_during_upload_bytes", rss_min);
    report.set("server_rss_max_during_upload_bytes", rss_max);
    report.set("server_rss_samples", samples);
    report.set("backlog_at_end", 0);
    if let Some((rss, cpu)) = target.usage() {
        (report.server_rss_bytes, report.server_cpu_s) = (Some(rss), Some(cpu));
    }
    Ok(report)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_is_the_same_each_time_and_ends_where_it_should() {
        assert_eq!(chunk_of(3, 1000, 3500), chunk_of(3, 1000, 3500));
        assert_eq!(chunk_of(3, 1000, 3500).len(), 500);
        assert_ne!(chunk_of(0, 1000, 3500), chunk_of(1, 1000, 3500));
    }
}
