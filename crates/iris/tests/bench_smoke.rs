//! Smoke test of `iris bench`: a tiny throughput run against a spawned server loses nothing and
//! duplicates nothing (no timing assertions; benchmarks are not timed tests).

use std::process::Command;

#[test]
fn a_small_throughput_run_delivers_everything_exactly_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["bench", "throughput", "--spawn", "--users", "10", "--duration-s", "1", "--json"])
        .output()
        .expect("run iris bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "iris bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().expect("some output");
    let report: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(report["scenario"], "throughput");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert!(report["delivered"].as_u64().unwrap() > 0, "{report}");
    assert!(report["server_rss_bytes"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn a_small_fanout_run_delivers_every_group_message_to_every_member() {
    // Proves: `iris bench fanout` drives the group path end to end: each accepted group message
    // reaches every other member's device, none lost or repeated.
    let out = Command::new(env!("CARGO_BIN_EXE_iris"))
        .args(["bench", "fanout", "--spawn", "--members", "20", "--senders", "2", "--duration-s", "1", "--json"])
        .output()
        .expect("run iris bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "iris bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON");
    assert_eq!(report["scenario"], "fanout");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    let (accepted, delivered) = (report["accepted"].as_u64().unwrap(), report["delivered"].as_u64().unwrap());
    assert!(accepted > 0 && delivered == accepted * 19, "{report}");
}
