//! Smoke tests of `iris bench`: tiny runs of each scenario against a spawned server lose
//! nothing, duplicate nothing and fill their JSON fields (no timing assertions; benchmarks are
//! not timed tests).

use std::process::Command;

use serde_json::Value;

/// Runs `iris bench ARGS --spawn --json` and returns the JSON report (the last stdout line).
fn bench(args: &[&str]) -> Value {
    bench_against("--spawn", args)
}

/// Runs `iris bench ARGS TARGET --json` (`--spawn` or `--spawn-sink`) and returns the report.
fn bench_against(target: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_iris"))
        .arg("bench")
        .args(args)
        .args([target, "--json"])
        .output()
        .expect("run iris bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "iris bench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().expect("some output")).expect("last line is JSON")
}

/// The fields every scenario's report has.
fn assert_common_fields(report: &Value) {
    for key in ["scenario", "sent", "accepted", "delivered", "lost", "duplicates", "duration_s", "msgs_per_s"] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    for key in ["p50", "p99", "p999", "max"] {
        assert!(report["latency_ms"].get(key).is_some(), "missing latency_ms.{key}: {report}");
    }
    assert!(report["server_rss_bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["server_cpu_s"].as_f64().is_some(), "{report}");
    assert!(report["generator_cpu_s"].as_f64().is_some(), "{report}");
    assert!(report["generator_limited"].is_boolean(), "{report}");
    assert!(report["backlog_at_end"].as_u64().is_some(), "{report}");
}

#[test]
fn a_small_closed_loop_throughput_run_delivers_everything_exactly_once() {
    // Proves: the closed-loop form runs on raw clients, loses or repeats nothing, and prices the
    // capacity figure in server CPU per message.
    let report = bench(&["throughput", "--closed-loop", "--users", "10", "--duration-s", "1"]);
    assert_common_fields(&report);
    assert_eq!(report["scenario"], "throughput");
    assert_eq!(report["clients"], "raw", "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert!(report["delivered"].as_u64().unwrap() > 0, "{report}");
    assert!(report["server_cpu_us_per_msg"].as_f64().is_some(), "{report}");
}

#[test]
fn the_sdk_path_still_runs_the_closed_loop() {
    // Proves: `--sdk` keeps the SDK-based load, with the same loss accounting.
    let report = bench(&["throughput", "--sdk", "--closed-loop", "--users", "10", "--duration-s", "1"]);
    assert_common_fields(&report);
    assert_eq!(report["clients"], "sdk", "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["delivered"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn the_generator_runs_against_the_sink_and_everything_it_accepts_is_echoed() {
    // Proves: `--spawn-sink` starts `iris bench sink`, which answers every send and echoes it, so
    // the open-loop step-up runs end to end without a server and nothing goes missing.
    let report = bench_against(
        "--spawn-sink",
        &["throughput", "--users", "20", "--start-rate", "2000", "--step-s", "1", "--steps-max", "2"],
    );
    assert_common_fields(&report);
    assert!(report["target"].as_str().unwrap().contains("sink"), "{report}");
    let (accepted, delivered) = (report["accepted"].as_u64().unwrap(), report["delivered"].as_u64().unwrap());
    assert!(accepted > 0 && delivered == accepted, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
}

#[test]
fn a_small_hotspot_run_loses_nothing_and_reports_its_backlog() {
    // Proves: many raw senders into one device; whatever was still queued when sending stopped
    // is drained, so `lost` is 0 and the backlog is reported apart from it.
    let report = bench(&["hotspot", "--senders", "20", "--duration-s", "1"]);
    assert_common_fields(&report);
    assert_eq!(report["scenario"], "hotspot");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["accepted"], report["delivered"], "{report}");
    assert!(report["delivered_during_load_per_s"].as_f64().is_some(), "{report}");
}

#[test]
fn a_small_open_loop_step_up_reports_its_steps() {
    // Proves: the open-loop step-up runs its (bounded) steps and reports each, nothing lost.
    let report = bench(&["throughput", "--users", "10", "--start-rate", "100", "--step-s", "1", "--steps-max", "2"]);
    assert_common_fields(&report);
    let steps = report["steps"].as_array().expect("steps array");
    assert!(!steps.is_empty() && steps.len() <= 2, "{report}");
    assert!(steps[0]["offered_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
}

#[test]
fn a_short_latency_run_measures_and_writes_an_html_report() {
    // Proves: a fixed-rate run measures latency for what it sent and writes a self-contained page.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("latency.html");
    let html_arg = html.to_str().unwrap();
    let report = bench(&["latency", "--users", "10", "--rate", "100", "--duration-s", "1", "--report", html_arg]);
    assert_common_fields(&report);
    assert_eq!(report["scenario"], "latency");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{report}");
    let page = std::fs::read_to_string(&html).expect("report written");
    assert_eq!(page.matches("<svg").count(), 2, "histogram and rate charts");
    assert!(!page.contains("<script"), "no scripts");
}

#[test]
fn a_spinning_load_thread_counts_only_its_work_as_busy() {
    // Proves: with `--spin` the load thread polls without sleeping (its core is never free),
    // yet its report counts only the turns that had work: a light run is not ~100 % busy and
    // not called generator-limited for a busy core, and nothing is lost. (Other tests share
    // these cores: a preempted moment can make a few of its 200 sends late, which the report
    // rightly calls limited; that, late or skipped sends, is the only way it may be.)
    let report = bench(&["latency", "--users", "10", "--rate", "100", "--duration-s", "2", "--spin"]);
    assert_common_fields(&report);
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["delivered"], report["accepted"], "{report}");
    assert!(report["generator_busy_pct"].as_f64().unwrap() < 50.0, "{report}");
    if report["generator_limited"] == true {
        let behind =
            report["generator_late_sends"].as_u64().unwrap_or(0) + report["generator_skipped"].as_u64().unwrap_or(0);
        assert!(behind > 0, "limited, and not for its schedule: {report}");
    }
}

#[test]
fn a_small_idle_run_holds_every_connection_and_measures_memory() {
    // Proves: 200 raw authenticated connections are held and the per-connection figures are filled.
    let report = bench(&["idle", "--connections", "200"]);
    assert_common_fields(&report);
    assert_eq!(report["connections"], 200, "{report}");
    assert_eq!(report["fd_limited"], false, "{report}");
    assert!(report["server_rss_per_conn_bytes"].as_u64().is_some(), "{report}");
    assert!(report["logins_per_s"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn a_small_storm_brings_every_device_back_and_loses_nothing() {
    // Proves: 50 devices dropped at once all reconnect, and every message accepted around the
    // storm reaches its device exactly once (no inbox seq skipped).
    let report = bench(&["storm", "--connections", "50"]);
    assert_common_fields(&report);
    assert_eq!(report["reconnected"], 50, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["accepted"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["seq_gaps"], 0, "{report}");
}

#[test]
fn a_small_recovery_run_loses_nothing_across_the_kill() {
    // Proves: `iris bench recovery` kills a server holding 400 un-acked entries, restarts it, and
    // every accepted message still reaches its device exactly once.
    let report = bench(&["recovery", "--devices", "20", "--queued", "20", "--senders", "4"]);
    assert_eq!(report["scenario"], "recovery");
    assert_eq!(report["entries_at_kill"], 400, "{report}");
    assert_eq!(report["delivered"], 400, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert!(report["restart_ms"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn a_small_fanout_run_delivers_every_group_message_to_every_member() {
    // Proves: `iris bench fanout` drives the group path end to end: each accepted group message
    // reaches every other member's device, none lost or repeated.
    let report = bench(&["fanout", "--members", "20", "--senders", "2", "--duration-s", "1"]);
    assert_eq!(report["scenario"], "fanout");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    let (accepted, delivered) = (report["accepted"].as_u64().unwrap(), report["delivered"].as_u64().unwrap());
    assert!(accepted > 0 && delivered == accepted * 19, "{report}");
    assert_eq!(report["messages_to_all_members"], accepted, "{report}");
}

#[test]
fn a_fixed_rate_fanout_run_sends_that_many_group_messages() {
    // Proves: `bench fanout --rate` is open loop to the group: about rate × duration messages
    // (a closed loop at 4 in flight sends hundreds per second), each reaching every other
    // member (a 1:1 open run would reach one).
    let report = bench(&["fanout", "--members", "12", "--senders", "3", "--duration-s", "2", "--rate", "20"]);
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["group_msgs_per_s_target"], 20, "{report}");
    let (accepted, delivered) = (report["accepted"].as_u64().unwrap(), report["delivered"].as_u64().unwrap());
    assert!((36..=44).contains(&accepted), "{report}");
    assert!(delivered == accepted * 11, "{report}");
    assert_eq!(report["messages_to_all_members"], accepted, "{report}");
}

#[test]
fn a_small_presence_run_reaches_every_watcher_with_each_change() {
    // Proves: `iris bench presence` measures every change at every watcher (3 changes, 5
    // watchers, spaced past the spawned server's 1 s push interval): none missed, latencies
    // filled; with one node every watcher is on the subject's node.
    let report = bench(&["presence", "--watchers", "5", "--changes", "3", "--every-ms", "1200"]);
    assert_eq!(report["scenario"], "presence");
    assert_common_fields(&report);
    assert_eq!((report["delivered"].as_u64(), report["missed_updates"].as_u64()), (Some(15), Some(0)), "{report}");
    assert_eq!(report["cross_node_updates"], 0, "{report}");
    assert!(report["same_node_ms"]["max"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn a_small_media_run_uploads_downloads_and_samples_the_server() {
    // Proves: `iris bench media` uploads in chunks, downloads the same bytes back (it fails
    // otherwise), and reports MiB/s both ways and the server's memory during the upload.
    let report = bench(&["media", "--size-mb", "24", "--chunk-mb", "4"]);
    assert_eq!(report["scenario"], "media");
    assert_eq!(report["lost"], 0, "{report}");
    for key in ["upload_mib_per_s", "download_mib_per_s"] {
        assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
    }
    let max = report["server_rss_max_during_upload_bytes"].as_u64().unwrap();
    assert!(max > 0 && report["server_rss_samples"].as_u64().unwrap() > 0, "{report}");
    assert!(report["server_rss_bytes"].as_u64().is_some(), "{report}");
}
