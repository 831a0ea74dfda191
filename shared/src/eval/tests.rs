//! The metrics against the numbers sacreBLEU and jiwer computed for the cases in
//! `tests/fixtures/eval/` (recorded in `reference.json` by `scripts/eval-reference`).
//!
//! Each case is a directory with `hyp.txt`, `ref.txt` and optionally `ref2.txt`, … (further
//! references for BLEU and chrF; WER uses `ref.txt`). Scores must agree within 0.01 (the
//! issue's bound); the integer statistics, the 13a tokens, the normalised text and the BLEU
//! score line must agree exactly. The deviations are printed (`cargo test -- --nocapture`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::*;

/// The bound on the difference from sacreBLEU's and jiwer's numbers.
const TOLERANCE: f64 = 0.01;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/eval")
}

#[derive(Debug, Deserialize)]
struct Reference {
    versions: BTreeMap<String, String>,
    cases: BTreeMap<String, Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    lines: usize,
    references: Vec<String>,
    bleu: Bleu,
    chrf: ChrfNumbers,
    #[serde(rename = "chrf++")]
    chrf_plus_plus: ChrfNumbers,
    #[serde(rename = "chrf++_eps")]
    chrf_plus_plus_eps: ChrfNumbers,
    wer: Wer,
    tok_13a: Option<HypRef>,
    whisper_normalised: Option<HypRef>,
}

#[derive(Debug, Deserialize)]
struct Bleu {
    score: f64,
    counts: [u64; 4],
    totals: [u64; 4],
    precisions: [f64; 4],
    bp: f64,
    sys_len: u64,
    ref_len: u64,
    signature: String,
    line: String,
}

#[derive(Debug, Deserialize)]
struct ChrfNumbers {
    score: f64,
    name: String,
    signature: String,
}

#[derive(Debug, Deserialize)]
struct Wer {
    wer: f64,
    errors: u64,
    ref_words: u64,
    hyp_words: u64,
    line_errors: Vec<u64>,
}

#[derive(Debug, Deserialize)]
struct HypRef {
    hyp: Vec<String>,
    #[serde(rename = "ref")]
    reference: Vec<String>,
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lines(&text).into_iter().map(str::to_string).collect()
}

/// sacreBLEU's signature with this port's version marker.
fn ours(signature: &str) -> String {
    let version = format!("version:{}", crate::eval::SACREBLEU_VERSION);
    assert!(signature.ends_with(&version), "{signature}");
    signature.replace(&version, &format!("version:{SIGNATURE_VERSION}"))
}

/// Largest deviation seen per metric.
#[derive(Debug, Default)]
struct Deviations(BTreeMap<&'static str, f64>);

impl Deviations {
    fn check(&mut self, case: &str, metric: &'static str, ours: f64, theirs: f64) {
        let d = (ours - theirs).abs();
        let max = self.0.entry(metric).or_insert(0.0);
        *max = max.max(d);
        println!("{case:20} {metric:11} ours {ours:20.15} reference {theirs:20.15} |Δ| {d:.1e}");
        assert!(
            d <= TOLERANCE,
            "{case}: {metric} {ours} differs from the reference {theirs} by {d}"
        );
    }
}

#[test]
fn metrics_match_sacrebleu_and_jiwer() {
    let path = fixtures_dir().join("reference.json");
    let text = std::fs::read_to_string(&path).expect("reference.json (scripts/eval-reference)");
    let reference: Reference = serde_json::from_str(&text).expect("reference.json parses");
    assert_eq!(
        reference.versions.get("sacrebleu").map(String::as_str),
        Some(SACREBLEU_VERSION)
    );
    println!("reference versions: {:?}", reference.versions);

    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("hyp.txt").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    on_disk.sort();
    let recorded: Vec<String> = reference.cases.keys().cloned().collect();
    assert_eq!(on_disk, recorded, "rerun scripts/eval-reference");
    assert!(recorded.len() >= 10, "{recorded:?}");

    let mut deviations = Deviations::default();
    for (name, case) in &reference.cases {
        let dir = fixtures_dir().join(name);
        let hyps = read_lines(&dir.join("hyp.txt"));
        let refs: Vec<Vec<String>> = case
            .references
            .iter()
            .map(|r| read_lines(&dir.join(r)))
            .collect();
        assert_eq!(hyps.len(), case.lines, "{name}");

        let bleu = corpus_bleu(&hyps, &refs).expect("aligned");
        deviations.check(name, "BLEU", bleu.score, case.bleu.score);
        for (n, (ours, theirs)) in bleu.precisions.iter().zip(case.bleu.precisions).enumerate() {
            assert!((ours - theirs).abs() <= TOLERANCE, "{name}: precision {n}");
        }
        assert!((bleu.bp - case.bleu.bp).abs() <= 1e-9, "{name}: BP");
        assert_eq!(
            (bleu.counts, bleu.totals, bleu.sys_len, bleu.ref_len),
            (
                case.bleu.counts,
                case.bleu.totals,
                case.bleu.sys_len,
                case.bleu.ref_len
            ),
            "{name}: BLEU statistics"
        );
        assert_eq!(bleu.to_string(), case.bleu.line, "{name}");
        assert_eq!(bleu.signature, ours(&case.bleu.signature), "{name}");

        for (label, chrf, theirs) in [
            ("chrF", Chrf::CHRF, &case.chrf),
            ("chrF++", Chrf::CHRF_PLUS_PLUS, &case.chrf_plus_plus),
            (
                "chrF++ eps",
                Chrf {
                    eps_smoothing: true,
                    ..Chrf::CHRF_PLUS_PLUS
                },
                &case.chrf_plus_plus_eps,
            ),
        ] {
            let score = chrf.corpus_score(&hyps, &refs).expect("aligned");
            deviations.check(name, label, score.score, theirs.score);
            assert_eq!(score.name, theirs.name, "{name}");
            assert_eq!(score.signature, ours(&theirs.signature), "{name}");
        }

        let wer = corpus_wer(&hyps, &refs[0]).expect("aligned");
        deviations.check(name, "WER", wer.wer, case.wer.wer);
        assert_eq!(
            (wer.errors, wer.ref_words, wer.hyp_words),
            (case.wer.errors, case.wer.ref_words, case.wer.hyp_words),
            "{name}: WER statistics"
        );
        let line_errors: Vec<u64> = wer.lines.iter().map(|l| l.errors).collect();
        assert_eq!(line_errors, case.wer.line_errors, "{name}: per-line WER");

        if let Some(tokens) = &case.tok_13a {
            let ours: Vec<String> = hyps
                .iter()
                .map(|h| tokenize_13a(python_str::rstrip(h)))
                .collect();
            assert_eq!(ours, tokens.hyp, "{name}: 13a tokens of hyp.txt");
            let ours: Vec<String> = refs[0]
                .iter()
                .map(|r| tokenize_13a(python_str::rstrip(r)))
                .collect();
            assert_eq!(ours, tokens.reference, "{name}: 13a tokens of ref.txt");
        }
        if let Some(normalised) = &case.whisper_normalised {
            let ours: Vec<String> = hyps.iter().map(|h| whisper_basic(h)).collect();
            assert_eq!(ours, normalised.hyp, "{name}: normalised hyp.txt");
            let ours: Vec<String> = refs[0].iter().map(|r| whisper_basic(r)).collect();
            assert_eq!(ours, normalised.reference, "{name}: normalised ref.txt");
        }
    }
    println!(
        "{} cases; largest |Δ| per metric: {:?}",
        reference.cases.len(),
        deviations.0
    );
}
