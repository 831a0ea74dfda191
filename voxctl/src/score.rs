//! `voxctl score`: scores a hypothesis file against line-aligned reference files with the
//! metric implementations Voxbridge's own evaluation uses ([`voxbridge_shared::eval`]), so
//! outputs produced elsewhere can be compared with Voxbridge's numbers.
//!
//! Files are read as UTF-8, one segment per line, the way sacreBLEU's command line reads them
//! ([`eval::lines`]). BLEU and chrF accept several reference files (multi-reference); WER takes
//! one.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use voxbridge_shared::eval::{self, BleuScore, Chrf, ChrfScore, WerScore};

/// `--metric`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    /// Word error rate after Whisper's basic normaliser, as jiwer computes it.
    Wer,
    /// sacreBLEU's default corpus BLEU (13a tokenizer, exp smoothing).
    Bleu,
    /// sacreBLEU's chrF (character 6-grams, β = 2).
    Chrf,
    /// sacreBLEU's chrF++ (chrF plus word 1- and 2-grams).
    #[value(name = "chrf++")]
    ChrfPlusPlus,
}

/// `voxctl score`
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// The metric.
    #[arg(long, value_enum)]
    pub metric: Metric,
    /// Hypothesis file: UTF-8 text, one segment per line.
    pub hypothesis: PathBuf,
    /// Reference files, each with one line per hypothesis line (several: multi-reference BLEU
    /// and chrF).
    #[arg(required = true)]
    pub references: Vec<PathBuf>,
    /// Print the score and its statistics as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A score with its statistics.
#[derive(Debug, Serialize)]
#[serde(tag = "metric", rename_all = "lowercase")]
pub enum Report {
    Wer(WerScore),
    Bleu(BleuScore),
    Chrf(ChrfScore),
}

impl Report {
    /// The human-readable result: sacreBLEU's score line and signature for BLEU and chrF.
    pub fn render(&self) -> String {
        match self {
            Report::Bleu(s) => format!("{s}\nsignature: {}\n", s.signature),
            Report::Chrf(s) => format!("{} = {:.2}\nsignature: {}\n", s.name, s.score, s.signature),
            Report::Wer(s) => format!(
                "WER = {:.2} % ({} errors / {} reference words, {} lines; Whisper basic \
                 normalisation)\n",
                100.0 * s.wer,
                s.errors,
                s.ref_words,
                s.lines.len()
            ),
        }
    }
}

/// Reads a file's segments.
fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    Ok(eval::lines(&text).into_iter().map(str::to_string).collect())
}

/// Scores the files.
pub fn score(args: &ScoreArgs) -> anyhow::Result<Report> {
    if args.metric == Metric::Wer && args.references.len() > 1 {
        bail!(
            "WER takes one reference file, got {}",
            args.references.len()
        );
    }
    let hypotheses = read_lines(&args.hypothesis)?;
    let mut references = Vec::with_capacity(args.references.len());
    for path in &args.references {
        let lines = read_lines(path)?;
        if lines.len() != hypotheses.len() {
            bail!(
                "{} has {} lines but {} has {}: the files must be line-aligned (one segment per \
                 line)",
                path.display(),
                lines.len(),
                args.hypothesis.display(),
                hypotheses.len()
            );
        }
        references.push(lines);
    }
    Ok(match args.metric {
        Metric::Wer => Report::Wer(eval::corpus_wer(&hypotheses, &references[0])?),
        Metric::Bleu => Report::Bleu(eval::corpus_bleu(&hypotheses, &references)?),
        Metric::Chrf => Report::Chrf(Chrf::CHRF.corpus_score(&hypotheses, &references)?),
        Metric::ChrfPlusPlus => {
            Report::Chrf(Chrf::CHRF_PLUS_PLUS.corpus_score(&hypotheses, &references)?)
        }
    })
}

/// Runs `voxctl score`: prints the score (JSON with `--json`).
pub fn run(args: &ScoreArgs) -> anyhow::Result<i32> {
    let report = score(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn args(metric: Metric, hypothesis: PathBuf, references: Vec<PathBuf>) -> ScoreArgs {
        ScoreArgs {
            metric,
            hypothesis,
            references,
            json: false,
        }
    }

    #[test]
    fn scores_line_aligned_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hyp = write(
            dir.path(),
            "hyp.txt",
            "The cat sat on the mat.\nHello there!\n",
        );
        let reference = write(
            dir.path(),
            "ref.txt",
            "The cat sat on the mat.\nHello, there!\r\n",
        );
        let bleu = score(&args(Metric::Bleu, hyp.clone(), vec![reference.clone()]))
            .expect("score")
            .render();
        assert!(bleu.starts_with("BLEU = "), "{bleu}");
        assert!(bleu.contains("hyp_len = 10 ref_len = 11"), "{bleu}");
        assert!(bleu.contains("signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp"));

        let chrf = score(&args(
            Metric::ChrfPlusPlus,
            hyp.clone(),
            vec![reference.clone()],
        ))
        .expect("score")
        .render();
        assert!(chrf.starts_with("chrF2++ = "), "{chrf}");

        let Report::Wer(wer) =
            score(&args(Metric::Wer, hyp.clone(), vec![reference.clone()])).expect("score")
        else {
            panic!("not a WER report");
        };
        assert_eq!((wer.errors, wer.ref_words), (0, 8));
        let json = serde_json::to_value(Report::Wer(wer)).expect("json");
        assert_eq!(json["metric"], "wer");
        assert_eq!(json["wer"], 0.0);
    }

    #[test]
    fn refuses_files_of_different_length_and_several_wer_references() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hyp = write(dir.path(), "hyp.txt", "a\nb\nc\n");
        let short = write(dir.path(), "ref.txt", "a\nb\n");
        let error = score(&args(Metric::Chrf, hyp.clone(), vec![short.clone()]))
            .expect_err("misaligned")
            .to_string();
        assert!(error.contains("has 2 lines but"), "{error}");
        assert!(error.contains("line-aligned"), "{error}");
        let error = score(&args(Metric::Wer, hyp.clone(), vec![hyp.clone(), hyp]))
            .expect_err("two references")
            .to_string();
        assert!(error.contains("one reference file"), "{error}");
    }
}
