//! The server's layering, as ARCHITECTURE.md states it, checked on the sources: the services
//! form a DAG (each imports only layers below it), no service takes the root's `Ctx`, sessions
//! never name the store, and the delivery machine has no I/O. A change that breaks a rule fails
//! here with the file and the reference, before a reviewer has to notice it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers, bottom up. A module may reference modules of lower layers only; foundations (0) may
/// reference each other but nothing above. Modules not listed are the root and the edges
/// (`lib`, `context`, `services`, `http`, `gateway::tcp`, auth's HTTP flows, cluster tasks):
/// they may reference anything, and nothing listed may reference them.
const LAYERS: &[(&str, u8)] = &[
    // Foundations: state and rules every service may use.
    ("error", 0),
    ("clock", 0),
    ("ids", 0),
    ("config", 0),
    ("client_tls", 0),
    ("metrics", 0),
    ("ratelimit", 0),
    ("limit_log", 0),
    ("router", 0),
    ("backlog", 0),
    ("held_receipts", 0),
    ("presence", 0),
    ("directory", 0),
    ("gateway::transport", 0),
    ("gateway::admission", 0),
    ("gateway::listen", 0),
    ("auth::token", 0),
    ("cluster", 0),
    ("cluster::bus", 0),
    ("cluster::outbound", 0),
    ("cluster::wire", 0),
    // The send kernel and the small services.
    ("fanout", 1),
    ("message_index", 1),
    ("chat_timers", 1),
    ("group_payloads", 1),
    ("send_checks", 1),
    ("send_gate", 1),
    ("abuse", 1),
    ("media_refs", 1),
    ("media", 1),
    ("blocks", 1),
    ("key_signatures", 1),
    ("auth::access", 1),
    ("cluster::registry", 1),
    ("push", 1),
    // Receipts, and the services beside them.
    ("receipts", 2),
    ("contacts", 2),
    ("typing", 2),
    ("calls", 2),
    ("identity_notices", 2),
    ("device_notices", 2),
    // The inbox and the sending services.
    ("inbox", 3),
    ("messaging", 3),
    ("groups", 3),
    ("visibility", 3),
    ("profiles", 3),
    ("keys", 3),
    // Built on sends.
    ("actions", 4),
    ("forward", 4),
    // Connections.
    ("session", 5),
];

/// Modules whose first path segment names a folder of separately layered files.
const FOLDERS: &[&str] = &["auth", "cluster", "gateway", "http"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layering key of a file: `messaging`, `groups` (for `groups/ops.rs`), `auth::access`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    let first = parts[0].clone();
    if FOLDERS.contains(&first.as_str()) && parts.len() > 1 && parts[1] != "mod" {
        format!("{first}::{}", parts[1])
    } else {
        first
    }
}

/// The code of a file without comments (doc comments mention modules in prose).
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read a source file");
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every `crate::…` module a piece of code references, with the layering key.
fn references(code: &str) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let first = ident(rest);
        let after = &rest[first.len()..];
        let key = match after.strip_prefix("::") {
            Some(more) if FOLDERS.contains(&first.as_str()) && !more.starts_with('{') => {
                let second = ident(more);
                let is_module =
                    more[second.len()..].starts_with("::") || second.chars().next().is_some_and(char::is_lowercase);
                if is_module {
                    format!("{first}::{second}")
                } else {
                    first
                }
            }
            _ => first,
        };
        out.push(key);
    }
    out
}

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// Files outside tests and test-only helpers.
fn production_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.retain(|f| !f.ends_with("testing.rs") && !f.ends_with("tests.rs"));
    files.sort();
    files
}

/// The code of a file before its `#[cfg(test)]` module.
fn production_code(file: &Path) -> String {
    let code = code_of(file);
    match code.find("#[cfg(test)]") {
        Some(i) => code[..i].to_string(),
        None => code,
    }
}

#[test]
fn every_module_imports_only_layers_below_it() {
    let mut violations = BTreeMap::new();
    for file in production_files() {
        let module = module_of(&file);
        let Some(own) = layer(&module) else { continue };
        for referenced in references(&production_code(&file)) {
            if referenced == module {
                continue;
            }
            let ok = match layer(&referenced) {
                Some(l) if own == 0 => l == 0,
                Some(l) => l < own,
                None => false,
            };
            if !ok {
                let rel = file.strip_prefix(src()).unwrap().display().to_string();
                violations.entry(rel).or_insert_with(Vec::new).push(referenced);
            }
        }
    }
    assert!(violations.is_empty(), "imports against the layering (file → modules): {violations:#?}");
}

#[test]
fn messaging_and_actions_do_not_import_each_other() {
    for (file, other) in [("messaging.rs", "actions"), ("actions.rs", "messaging")] {
        let refs = references(&production_code(&src().join(file)));
        assert!(!refs.iter().any(|r| r == other), "{file} imports {other}");
    }
}

#[test]
fn sessions_never_name_the_store() {
    let mut files = Vec::new();
    rust_files(&src().join("session"), &mut files);
    for file in files {
        let code = code_of(&file);
        for word in [".store", "Store", "crate::context", "Ctx"] {
            assert!(
                !code.contains(word),
                "{} names `{word}`: sessions reach the store through services",
                file.display()
            );
        }
    }
}

#[test]
fn the_delivery_machine_does_no_io_and_reads_no_clock() {
    let code = production_code(&src().join("session/delivery.rs"));
    for word in [".await", "async ", "Instant::now", "tokio", "SystemTime"] {
        assert!(!code.contains(word), "session/delivery.rs contains `{word}`");
    }
}

#[test]
fn the_checker_sees_what_a_file_references() {
    // Proves the rules above look at something: references are found in imports and paths, with
    // folder modules keyed by their file.
    let code = "use crate::auth::access::Authenticator;\nuse crate::cluster::{registry, Cluster};\n\
                let m = crate::messaging::Messaging::new();\nuse crate::gateway::transport::TransportError;";
    assert_eq!(references(code), ["auth::access", "cluster", "messaging", "gateway::transport"]);
    assert_eq!(module_of(&src().join("groups/ops.rs")), "groups");
    assert_eq!(module_of(&src().join("cluster/bus/breaker.rs")), "cluster::bus");
    assert_eq!(module_of(&src().join("cluster/mod.rs")), "cluster");
    assert_eq!(module_of(&src().join("session/delivery.rs")), "session");
    let session_refs = references(&production_code(&src().join("session/mod.rs")));
    assert!(session_refs.iter().any(|r| r == "messaging") && session_refs.iter().any(|r| r == "inbox"));
}
