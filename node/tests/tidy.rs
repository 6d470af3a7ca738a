//! Tidy: the pure layers (core, state, proto, server) keep the determinism rules.
//!
//! They must not use tokio, wall clocks (std::time, SystemTime, Instant),
//! threads, unseeded randomness, or iterate std HashMap/HashSet (whose order
//! differs between runs). HashMap/HashSet may appear only on a line marked
//! `tidy: lookup-only`, promising the map is never iterated.

use std::path::{Path, PathBuf};

const PURE_DIRS: &[&str] = &["src/core", "src/state", "src/proto", "src/server"];

/// (pattern, why it is forbidden)
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "the pure layers never use tokio"),
    ("std::time", "time arrives as ticks, never from a clock"),
    ("SystemTime", "time arrives as ticks, never from a clock"),
    ("Instant", "time arrives as ticks, never from a clock"),
    ("std::thread", "no threads in the pure layers"),
    ("thread::spawn", "no threads in the pure layers"),
    ("thread_rng", "randomness is a seeded PRNG passed in"),
    ("rand::random", "randomness is a seeded PRNG passed in"),
    ("from_entropy", "randomness is a seeded PRNG passed in"),
    ("OsRng", "randomness is a seeded PRNG passed in"),
    ("getrandom", "randomness is a seeded PRNG passed in"),
    (
        "std::fs",
        "the pure layers never touch files: the runtime does I/O",
    ),
    ("std::net::TcpStream", "the pure layers never open sockets"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Returns one message per violation in `source`.
fn violations(name: &str, source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let code = match line.find("//") {
            Some(pos) => &line[..pos],
            None => line,
        };
        for (pat, why) in FORBIDDEN {
            if code.contains(pat) {
                found.push(format!("{name}:{}: `{pat}`: {why}", i + 1));
            }
        }
        if (code.contains("HashMap") || code.contains("HashSet"))
            && !line.contains("tidy: lookup-only")
        {
            found.push(format!(
                "{name}:{}: HashMap/HashSet in a pure layer: use BTreeMap/BTreeSet, or mark a \
                 never-iterated map `// tidy: lookup-only`",
                i + 1
            ));
        }
    }
    found
}

#[test]
fn pure_layers_keep_the_determinism_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for d in PURE_DIRS {
        rust_files(&root.join(d), &mut files);
    }
    assert!(files.len() >= 3, "tidy found too few files: {files:?}");
    let mut all = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let name = f.strip_prefix(root).unwrap().display().to_string();
        all.extend(violations(&name, &src));
    }
    assert!(
        all.is_empty(),
        "determinism rules broken:\n{}",
        all.join("\n")
    );
}

#[test]
fn tidy_catches_each_forbidden_pattern() {
    let bad = "use tokio::net::TcpStream;\nlet t = std::time::Instant::now();\n\
               let r = rand::thread_rng();\nstd::thread::spawn(|| ());\n\
               let m: std::collections::HashMap<u8, u8> = Default::default();\n";
    let v = violations("bad.rs", bad);
    assert!(v.iter().any(|m| m.contains("`tokio`")));
    assert!(v.iter().any(|m| m.contains("`std::time`")));
    assert!(v.iter().any(|m| m.contains("`thread_rng`")));
    assert!(v.iter().any(|m| m.contains("`std::thread`")));
    assert!(v.iter().any(|m| m.contains("HashMap/HashSet")));
    let ok = "// tokio is mentioned only in a comment\n\
              let m: HashMap<u8, u8> = HashMap::new(); // tidy: lookup-only\n";
    assert!(violations("ok.rs", ok).is_empty());
}
