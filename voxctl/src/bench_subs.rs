//! `voxctl bench subs`: a subtitle file end to end as a batch job (`POST /v1/jobs`, sentence
//! units translated in batches through the MT queue) against the old service's behaviour —
//! every cue translated by its own request, one at a time (`POST /v1/translate` per cue) — on
//! the same running system, in the same command. Each side gets its own generated file (same
//! structure, different nonce words) so neither is served from the other's cache.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchSubsArgs {
    /// Edge base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Cues in the generated file.
    #[arg(long, default_value_t = 500)]
    pub cues: usize,
    #[arg(long, default_value = "en")]
    pub source: String,
    #[arg(long, default_value = "vi")]
    pub target: String,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// The results.
#[derive(Debug, Clone, Serialize)]
pub struct SubsReport {
    pub cues: usize,
    /// Sentence units the job translated (cues merged/split into sentences).
    pub job_sentences: u64,
    pub job_seconds: f64,
    pub per_cue_requests: usize,
    pub per_cue_seconds: f64,
    /// per-cue time / job time.
    pub speedup: f64,
}

const SUBJECTS: [&str; 8] = [
    "The ferry",
    "Our neighbour",
    "The old library",
    "My sister",
    "The night train",
    "The committee",
    "A small bakery",
    "The museum guide",
];
const VERBS: [&str; 6] = [
    "will open again",
    "was waiting for us",
    "has changed its plans",
    "needs more time",
    "should arrive",
    "is closed",
];
const ENDS: [&str; 5] = [
    "before the storm reaches the coast.",
    "at seven o'clock tonight.",
    "because nobody told them about the delay.",
    "next to the harbour.",
    "after the long winter.",
];

/// An SRT file of `n` cues: most cues one sentence, every fourth sentence spread over two cues,
/// each text starting with `nonce` (so two files of one structure share no cache entries).
pub fn generated_srt(n: usize, nonce: &str) -> String {
    let ts = |ms: u64| {
        format!(
            "{:02}:{:02}:{:02},{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    let mut out = String::new();
    let mut i = 0;
    let mut k = 0usize;
    while i < n {
        let sentence = format!(
            "{nonce} {} {} {}",
            SUBJECTS[k % SUBJECTS.len()].to_lowercase(),
            VERBS[(k / 3) % VERBS.len()],
            ENDS[(k / 7) % ENDS.len()]
        );
        let parts: Vec<String> = if k % 4 == 3 && i + 1 < n {
            let words: Vec<&str> = sentence.split(' ').collect();
            let half = words.len() / 2;
            vec![words[..half].join(" "), words[half..].join(" ")]
        } else {
            vec![sentence]
        };
        for part in parts {
            let start = i as u64 * 2_500;
            out.push_str(&format!(
                "{}\n{} --> {}\n{part}\n\n",
                i + 1,
                ts(start),
                ts(start + 2_200)
            ));
            i += 1;
        }
        k += 1;
    }
    out
}

/// Runs both sides and reports.
pub async fn run(args: &BenchSubsArgs) -> anyhow::Result<SubsReport> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let base = args.url.trim_end_matches('/');

    // Fresh nonces each run: no de-duplication with an earlier run's job, no cache hits.
    let (job_nonce, cue_nonce) = nonces();
    // 1. The batch job.
    let file = generated_srt(args.cues, &job_nonce);
    let started = Instant::now();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(file.into_bytes()).file_name("bench.srt"),
        )
        .text("to", args.target.clone())
        .text("from", args.source.clone());
    let response = http
        .post(format!("{base}/v1/jobs"))
        .multipart(form)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "POST /v1/jobs: {}",
        response.text().await?
    );
    let job: Value = response.json().await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    loop {
        let job: Value = http
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await?
            .json()
            .await?;
        match job["state"].as_str() {
            Some("succeeded") => break,
            Some("failed") => anyhow::bail!("the job failed: {}", job["error"]),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let result = http
        .get(format!("{base}/v1/jobs/{id}/result?lang={}", args.target))
        .send()
        .await?;
    anyhow::ensure!(result.status().is_success(), "result download failed");
    let _ = result.bytes().await?;
    let job_seconds = started.elapsed().as_secs_f64();
    let job_sentences = units_of(args.cues);
    eprintln!(
        "[bench subs] job: {job_seconds:.1} s for {} cues",
        args.cues
    );

    // 2. One request per cue, one at a time.
    let file = generated_srt(args.cues, &cue_nonce);
    let subtitles = voxbridge_shared::subtitles::Subtitles::parse(file.as_bytes())?;
    let texts: Vec<String> = subtitles.cues().iter().map(|c| c.plain_text()).collect();
    let started = Instant::now();
    for text in &texts {
        let response = http
            .post(format!("{base}/v1/translate"))
            .json(&json!({"q": text, "source": args.source, "target": args.target}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "POST /v1/translate: {}",
            response.text().await?
        );
        let _: Value = response.json().await?;
    }
    let per_cue_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "[bench subs] one request per cue: {per_cue_seconds:.1} s for {} requests",
        texts.len()
    );
    let report = SubsReport {
        cues: args.cues,
        job_sentences,
        job_seconds,
        per_cue_requests: texts.len(),
        per_cue_seconds,
        speedup: per_cue_seconds / job_seconds.max(1e-9),
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

/// Two different capitalised six-letter words, different on every run.
fn nonces() -> (String, String) {
    let word = |seed: u128| -> String {
        let mut x = seed;
        (0..6)
            .map(|i| {
                let c = (b'a' + (x % 26) as u8) as char;
                x /= 26;
                if i == 0 { c.to_ascii_uppercase() } else { c }
            })
            .collect()
    };
    let a = ulid::Ulid::new().random();
    let b = ulid::Ulid::new().random();
    let (a, b) = (word(a), word(b ^ 1));
    if a == b {
        (a, format!("{}x", &b[..5]))
    } else {
        (a, b)
    }
}

/// Sentence units of the generated file (what the job translates).
fn units_of(cues: usize) -> u64 {
    let file = generated_srt(cues, "Quilan");
    voxbridge_shared::subtitles::Subtitles::parse(file.as_bytes())
        .map(|s| {
            s.sentence_units(&voxbridge_shared::subtitles::SentenceOptions::default())
                .len() as u64
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_has_the_cues_asked_for_and_merges_split_sentences() {
        let file = generated_srt(500, "Quilan");
        let s = voxbridge_shared::subtitles::Subtitles::parse(file.as_bytes()).expect("parses");
        assert_eq!(s.cues().len(), 500);
        let units = units_of(500);
        assert!(units < 500 && units > 350, "{units}");
        // Same structure with another nonce.
        let other = generated_srt(500, "Zorvex");
        assert_eq!(other.len(), file.len());
        assert_ne!(other, file);
    }
}
