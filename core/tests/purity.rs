//! The core must stay pure: no IO crate, no clock, no unseeded randomness, no threads.
//! The banned names live only in this file, so this check is the one place to read them.

use std::path::{Path, PathBuf};

const BANNED_SOURCE: &[&str] = &[
    "Instant::now",
    "SystemTime",
    "thread_rng",
    "rand::rng(",
    "rand::random",
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "std::env",
    "tokio",
    "bollard",
    "hcloud",
    "openssh",
    "rusqlite",
    "axum",
    "reqwest",
    "HashMap",
    "HashSet",
];

const BANNED_CRATES: &[&str] = &[
    "tokio",
    "bollard",
    "hcloud",
    "openssh",
    "rusqlite",
    "sqlx",
    "axum",
    "reqwest",
    "hyper",
    "rand",
    "getrandom",
    "chrono",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_sources_use_no_clock_io_threads_or_unordered_maps() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() >= 5, "found the sources");
    let mut hits = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("source is UTF-8");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for banned in BANNED_SOURCE {
                if code.contains(banned) {
                    hits.push(format!("{}:{}: {banned}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "core/src must stay pure (HashMap/HashSet iteration order could leak):\n{}",
        hits.join("\n")
    );
}

#[test]
fn core_depends_on_no_io_or_randomness_crate() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut hits = Vec::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            // dev-dependencies may use anything: tests are not the engine.
            in_deps = t == "[dependencies]" || t.starts_with("[dependencies.") || t.starts_with("[target.");
            continue;
        }
        if in_deps {
            let name = t.split(['=', ' ', '.']).next().unwrap_or("");
            if BANNED_CRATES.contains(&name) {
                hits.push(name.to_string());
            }
        }
    }
    assert!(hits.is_empty(), "core/Cargo.toml depends on {hits:?}");
}

#[test]
fn the_check_itself_catches_a_banned_name() {
    // Guard against a check that cannot fail: the scanner must see a banned call.
    let sample = "let t = std::time::Instant::now(); // not in a comment";
    assert!(BANNED_SOURCE.iter().any(|b| sample.split("//").next().unwrap().contains(b)));
}
