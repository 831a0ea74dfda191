//! `voxctl bench translate`: measures the translation API the way its users feel it — latency of
//! one sentence, a batch of 4 against one text, and throughput with concurrent clients — by
//! calling `POST /v1/translate` on a running edge. `scripts/bench-mt` runs it side by side with
//! the Python CTranslate2 baseline on the same model and prints the ratios.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

/// The study's six benchmark sentences, from a greeting to a 200+ character one.
pub const SENTENCES: [&str; 6] = [
    "Hello world",
    "Where is the nearest train station?",
    "I would like to book a table for two people at seven o'clock tonight.",
    "The committee will carefully review the new proposal next week and will announce its final decision before the end of May",
    "Because the storm had knocked out power across the region, the hospital switched to its backup generators and postponed every operation that was not urgent.",
    "After several years of negotiations, the two countries finally signed an agreement that will allow their citizens to travel, study and work across the border without a visa, starting from the first day of next year.",
];

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Edge base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Source language.
    #[arg(long, default_value = "en")]
    pub source: String,
    /// Target language.
    #[arg(long, default_value = "vi")]
    pub target: String,
    /// Runs per sentence for the latency percentiles.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Concurrent clients for the throughput phase.
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Seconds of the throughput phase (0 skips it).
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Latency summary in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// Percentiles by the nearest-rank method.
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.sort_by(|a, b| a.total_cmp(b));
        let n = samples.len();
        let rank = |p: f64| -> f64 {
            if n == 0 {
                return f64::NAN;
            }
            let i = ((p / 100.0) * n as f64).ceil() as usize;
            samples[i.clamp(1, n) - 1]
        };
        Self {
            n,
            mean: if n == 0 {
                f64::NAN
            } else {
                samples.iter().sum::<f64>() / n as f64
            },
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
        }
    }
}

/// All results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sentences: Vec<(usize, Summary)>,
    pub one_text: Summary,
    pub batch_of_4: Summary,
    pub batch4_over_one: f64,
    pub throughput_clients: usize,
    pub throughput_seconds: f64,
    pub throughput_requests: usize,
    pub throughput_errors: usize,
    pub throughput_per_s: f64,
}

async fn call(
    client: &reqwest::Client,
    args: &BenchArgs,
    q: serde_json::Value,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let response = client
        .post(format!("{}/v1/translate", args.url))
        .json(&json!({ "q": q, "source": args.source, "target": args.target }))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.is_success(), "HTTP {status}: {body}");
    Ok(started.elapsed().as_secs_f64())
}

/// Runs the benchmark.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    // Warm-up: the first call pays for lazy initialisation.
    call(&client, args, json!(SENTENCES[0])).await?;

    let mut sentences = Vec::new();
    for sentence in SENTENCES {
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            samples.push(call(&client, args, json!(sentence)).await?);
        }
        let summary = Summary::of(samples);
        eprintln!(
            "{:>3} chars: p50 {:.3} s  p95 {:.3} s  p99 {:.3} s",
            sentence.len(),
            summary.p50,
            summary.p95,
            summary.p99
        );
        sentences.push((sentence.len(), summary));
    }

    let four: Vec<&str> = SENTENCES[1..5].to_vec();
    let mut one = Vec::new();
    let mut batch = Vec::new();
    for _ in 0..args.runs {
        one.push(call(&client, args, json!([SENTENCES[3]])).await?);
        batch.push(call(&client, args, json!(four)).await?);
    }
    let one_text = Summary::of(one);
    let batch_of_4 = Summary::of(batch);
    eprintln!(
        "batch of 4: p50 {:.3} s vs one text {:.3} s = {:.2}x",
        batch_of_4.p50,
        one_text.p50,
        batch_of_4.p50 / one_text.p50
    );

    let (mut requests, mut errors, mut elapsed) = (0, 0, 0.0);
    if args.duration_s > 0 {
        let deadline = Instant::now() + Duration::from_secs(args.duration_s);
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.clients)
            .map(|c| {
                let client = client.clone();
                let args = args.clone();
                tokio::spawn(async move {
                    let (mut ok, mut failed, mut i) = (0usize, 0usize, c);
                    while Instant::now() < deadline {
                        match call(&client, &args, json!(SENTENCES[i % SENTENCES.len()])).await {
                            Ok(_) => ok += 1,
                            Err(_) => failed += 1,
                        }
                        i += 1;
                    }
                    (ok, failed)
                })
            })
            .collect();
        for task in tasks {
            let (ok, failed) = task.await?;
            requests += ok;
            errors += failed;
        }
        elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "throughput: {requests} requests ({errors} errors) in {elapsed:.1} s with {} clients = {:.2} req/s",
            args.clients,
            requests as f64 / elapsed
        );
    }
    let report = Report {
        sentences,
        batch4_over_one: batch_of_4.p50 / one_text.p50,
        one_text,
        batch_of_4,
        throughput_clients: args.clients,
        throughput_seconds: elapsed,
        throughput_requests: requests,
        throughput_errors: errors,
        throughput_per_s: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=100).map(f64::from).collect());
        assert_eq!((s.p50, s.p95, s.p99), (50.0, 95.0, 99.0));
        let one = Summary::of(vec![2.0]);
        assert_eq!((one.p50, one.p99), (2.0, 2.0));
    }

    #[test]
    fn sentences_span_the_study_range() {
        assert_eq!(SENTENCES[0], "Hello world");
        assert!(SENTENCES[5].len() > 200);
        assert!(SENTENCES.iter().any(|s| (110..=130).contains(&s.len())));
    }
}
