//! How hard the generator (this process) worked over a measured phase, so that every report
//! says whether its figures are the server's or the generator's: the CPU it used, how busy
//! that kept the core(s) it may run on (or its load thread), and whether it kept its schedule.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use super::server;
use super::stats::Report;

/// Busy share of its core at which the generator counts as the limit.
pub const BUSY_LIMIT: f64 = 0.9;
/// Share of open-loop sends that may be late (a preempted moment on a shared machine, a cold
/// start) before the generator counts as having fallen behind its schedule.
pub const LATE_SHARE_MAX: f64 = 0.01;

/// The raw clients' load thread, whose CPU time says how busy the generator was.
#[derive(Clone, Debug)]
pub struct LoadThread {
    /// Its Linux thread id.
    pub tid: u32,
    /// Nanoseconds it spent spinning with nothing to do (`--spin`; stays 0 otherwise), which its
    /// CPU time includes and its busy share must not.
    pub spin_idle_ns: Arc<AtomicU64>,
}

/// CPU time readings at the start of a phase.
pub struct CpuMeter {
    started: Instant,
    process_s: f64,
    /// The load thread (raw clients), its CPU time and its idle spinning at the start.
    thread: Option<(LoadThread, f64, u64)>,
}

/// The generator's use of CPU over one phase.
#[derive(Debug, Clone, Copy)]
pub struct GeneratorUse {
    /// CPU seconds (user + system) of the whole process, less the load thread's idle spinning.
    pub cpu_s: f64,
    /// Busy share: the process's CPU over the cores it may use, or the load thread's over one
    /// core, whichever is higher (a single load thread saturates one core, not two).
    pub busy: f64,
}

impl CpuMeter {
    /// Starts measuring; `load_thread` is the raw load driver's thread, if any.
    pub fn start(load_thread: Option<LoadThread>) -> Self {
        let process_s = server::cpu_seconds(std::process::id()).unwrap_or(0.0);
        let thread = load_thread.filter(|t| t.tid != 0).and_then(|t| {
            let cpu_s = thread_cpu_seconds(t.tid)?;
            let idle_ns = t.spin_idle_ns.load(Relaxed);
            Some((t, cpu_s, idle_ns))
        });
        Self { started: Instant::now(), process_s, thread }
    }

    /// The use since [`start`](Self::start).
    pub fn stop(&self) -> GeneratorUse {
        let wall_s = self.started.elapsed().as_secs_f64().max(1e-9);
        let idle_s = self
            .thread
            .as_ref()
            .map_or(0.0, |(t, _, before)| t.spin_idle_ns.load(Relaxed).saturating_sub(*before) as f64 / 1e9);
        let process_s = server::cpu_seconds(std::process::id()).unwrap_or(0.0) - self.process_s;
        let cpu_s = (process_s - idle_s).max(0.0);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let thread_busy = self
            .thread
            .as_ref()
            .and_then(|(t, before, _)| Some((thread_cpu_seconds(t.tid)? - before - idle_s).max(0.0) / wall_s))
            .unwrap_or(0.0);
        GeneratorUse { cpu_s, busy: (cpu_s / (wall_s * cores)).max(thread_busy) }
    }
}

impl GeneratorUse {
    /// Whether the generator was the limit: its core ≥ 90% busy, sends skipped, or more than
    /// [`LATE_SHARE_MAX`] of `sent` written late.
    pub fn limited(&self, sent: u64, skipped: u64, late: u64) -> bool {
        self.busy >= BUSY_LIMIT || skipped > 0 || late as f64 > LATE_SHARE_MAX * sent as f64
    }

    /// Writes `generator_cpu_s`, `generator_busy_pct`, `generator_limited` and, when `sent` is
    /// not zero, `generator_us_per_msg` (CPU per send of the phase, both halves of each message
    /// included: what one core's ceiling is made of, whatever else ran on that core).
    pub fn write_to(&self, report: &mut Report, limited: bool, sent: u64) {
        report.generator_cpu_s = Some(round3(self.cpu_s));
        report.generator_limited = Some(limited);
        report.set("generator_busy_pct", (self.busy * 1000.0).round() / 10.0);
        if sent > 0 {
            report.set("generator_us_per_msg", (self.cpu_s * 1e7 / sent as f64).round() / 10.0);
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The Linux thread id of the calling thread (`/proc/thread-self` → `PID/task/TID`).
pub fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// User plus system CPU time of thread `tid` of this process, in seconds.
pub fn thread_cpu_seconds(tid: u32) -> Option<f64> {
    server::stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_cpu_time_is_readable() {
        let tid = current_thread_id().expect("thread id");
        assert!(thread_cpu_seconds(tid).is_some());
        let meter = CpuMeter::start(Some(LoadThread { tid, spin_idle_ns: Arc::default() }));
        let u = meter.stop();
        assert!(u.cpu_s >= 0.0 && u.busy >= 0.0);
    }

    #[test]
    fn idle_spinning_is_not_counted_busy() {
        let tid = current_thread_id().expect("thread id");
        let idle = Arc::new(AtomicU64::new(0));
        let meter = CpuMeter::start(Some(LoadThread { tid, spin_idle_ns: idle.clone() }));
        let started = Instant::now();
        while started.elapsed().as_millis() < 200 {
            std::hint::spin_loop();
        }
        let spinning = meter.stop();
        assert!(spinning.busy > 0.5, "busy {}", spinning.busy);
        // The same time reported as idle spinning.
        let meter = CpuMeter::start(Some(LoadThread { tid, spin_idle_ns: idle.clone() }));
        let started = Instant::now();
        while started.elapsed().as_millis() < 200 {
            std::hint::spin_loop();
        }
        idle.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        let idle_use = meter.stop();
        assert!(idle_use.busy < 0.5, "busy {}", idle_use.busy);
    }

    #[test]
    fn skipped_or_late_sends_or_a_busy_core_mean_limited() {
        let calm = GeneratorUse { cpu_s: 1.0, busy: 0.1 };
        assert!(!calm.limited(100_000, 0, 1_000));
        assert!(calm.limited(100_000, 1, 0));
        assert!(calm.limited(100_000, 0, 1_001));
        assert!(GeneratorUse { busy: 0.95, ..calm }.limited(1, 0, 0));
    }
}
