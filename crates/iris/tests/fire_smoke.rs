//! Smoke test of `iris fire`: the catalog runs at small sizes, every test passes (or is skipped
//! with a reason where tmpfs cannot be mounted), and the table is printed. No timing assertions.

use std::process::Command;

/// Tests in the catalog.
const N_TESTS: usize = 7;

#[test]
fn the_small_fire_catalog_passes_and_prints_its_table() {
    // Proves: `iris fire --small` exits 0 and prints one PASS (or SKIP) line with a figure per test.
    let out = Command::new(env!("CARGO_BIN_EXE_iris")).args(["fire", "--small"]).output().expect("run iris fire");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "iris fire failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().next().is_some_and(|l| l.starts_with("test")), "no table header:\n{stdout}");
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), N_TESTS, "one line per test:\n{stdout}");
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(matches!(fields.get(1), Some(&"PASS") | Some(&"SKIP")), "{line}");
        assert!(fields.len() > 3, "a figure follows the result: {line}");
    }
}
