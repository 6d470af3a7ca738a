//! The binary: verdicts, exit statuses 0/1/2, JSON, HTML, many files in one process.

use std::process::Command;

fn write(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("zabkeeper-check-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const GOOD: &str = r#"{"process":0,"type":"invoke","f":"write","value":1,"time":10}
{"process":0,"type":"ok","f":"write","value":1,"time":20}
{"process":1,"type":"invoke","f":"read","value":null,"time":30}
{"process":1,"type":"ok","f":"read","value":1,"time":40}
"#;
const BAD: &str = r#"{"process":0,"type":"invoke","f":"write","value":1,"time":10}
{"process":0,"type":"ok","f":"write","value":1,"time":20}
{"process":1,"type":"invoke","f":"read","value":null,"time":30}
{"process":1,"type":"ok","f":"read","value":2,"time":40}
"#;

fn run(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zabkeeper-check"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn exit_codes_text_json_and_html() {
    let d = tmpdir("a");
    let good = write(&d, "good.jsonl", GOOD);
    let bad = write(&d, "bad.jsonl", BAD);
    let broken = write(&d, "broken.jsonl", "{nope\n");
    let m = std::ffi::OsStr::new("--model");
    let reg = std::ffi::OsStr::new("register");
    let (code, out) = run(&[m, reg, good.as_os_str()]);
    assert_eq!(code, 0);
    assert!(out.contains("linearizable"), "{out}");
    let (code, out) = run(&[m, reg, bad.as_os_str()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("not linearizable") && out.contains("VIOLATION linearizable"),
        "{out}"
    );
    let (code, _) = run(&[m, reg, broken.as_os_str()]);
    assert_eq!(code, 2);
    // Many files in one process, JSON output, HTML report.
    let html = d.join("r.html");
    let (code, out) = run(&[
        m,
        reg,
        std::ffi::OsStr::new("--json"),
        std::ffi::OsStr::new("--html"),
        html.as_os_str(),
        good.as_os_str(),
        bad.as_os_str(),
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "not linearizable");
    assert_eq!(v["files"][0]["verdict"], "linearizable");
    assert_eq!(v["files"][1]["verdict"], "not linearizable");
    assert_eq!(
        v["files"][1]["violations"][0]["ops"],
        serde_json::json!([1])
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<!DOCTYPE html>") && page.contains("op bad") && page.contains("process 1")
    );
    let _ = std::fs::remove_dir_all(&d);
}
