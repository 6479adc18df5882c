//! Smoke test of `iris fire`: the catalog runs at small sizes, every test passes (or is skipped
//! with a reason where tmpfs cannot be mounted), and the table is printed. No timing assertions.

use std::process::Command;

/// The catalog's tests, in table order.
const TESTS: [&str; 7] = [
    "crash-durability",
    "slow-consumer",
    "hotspot",
    "presence-hotspot",
    "offline-delete-churn",
    "reconnect-storm",
    "disk-pressure",
];

#[test]
fn the_small_fire_catalog_passes_and_prints_its_table() {
    // Proves: `iris fire --small` exits 0 and prints one PASS (or SKIP) line with a figure per test.
    let out = Command::new(env!("CARGO_BIN_EXE_iris")).args(["fire", "--small"]).output().expect("run iris fire");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "iris fire failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().next().is_some_and(|l| l.starts_with("test")), "no table header:\n{stdout}");
    for name in TESTS {
        let line =
            stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(matches!(fields.get(1), Some(&"PASS") | Some(&"SKIP")), "{line}");
        assert!(fields.len() > 3, "a figure follows the result: {line}");
    }
}
