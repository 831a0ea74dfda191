//! `voxctl score` as a user runs it: the binary on the committed fixtures prints sacreBLEU's
//! BLEU line, and refuses files that are not line-aligned with a message and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/eval")
}

fn voxctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxctl"))
        .arg("score")
        .args(args)
        .env("VOXBRIDGE_LOG", "warn")
        .output()
        .expect("run voxctl")
}

fn path(p: PathBuf) -> String {
    p.to_str().expect("UTF-8 path").to_string()
}

#[test]
fn prints_sacrebleus_bleu_line_for_two_references() {
    let case = fixtures().join("two-refs");
    let out = voxctl(&[
        "--metric",
        "bleu",
        &path(case.join("hyp.txt")),
        &path(case.join("ref.txt")),
        &path(case.join("ref2.txt")),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json"),
    )
    .expect("JSON");
    let line = reference["cases"]["two-refs"]["bleu"]["line"]
        .as_str()
        .expect("recorded line");
    assert_eq!(stdout.lines().next(), Some(line), "{stdout}");
    assert!(stdout.contains("signature: nrefs:2|"), "{stdout}");
}

#[test]
fn json_output_carries_the_statistics() {
    let case = fixtures().join("large");
    let out = voxctl(&[
        "--metric",
        "chrf++",
        "--json",
        &path(case.join("hyp.txt")),
        &path(case.join("ref.txt")),
    ]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["metric"], "chrf");
    assert_eq!(json["name"], "chrF2++");
    assert_eq!(json["statistics"].as_array().map(Vec::len), Some(8));
}

#[test]
fn refuses_files_that_are_not_line_aligned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hyp = dir.path().join("hyp.txt");
    let reference = dir.path().join("ref.txt");
    std::fs::write(&hyp, "one\ntwo\nthree\n").expect("write");
    std::fs::write(&reference, "one\ntwo\n").expect("write");
    let out = voxctl(&["--metric", "wer", &path(hyp), &path(reference)]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ref.txt has 2 lines but") && stderr.contains("line-aligned"),
        "{stderr}"
    );
}
