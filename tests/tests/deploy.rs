//! compose.yaml cannot be run here (no Docker engine), so check what can be checked: it parses,
//! names every service of the design, every file it mounts or builds from exists, and every
//! `VOXBRIDGE_*` variable it sets is one the binaries read. The Prometheus alert rules pass
//! `promtool check` and their unit tests, the Grafana dashboard is valid, and every metric the
//! two query is exported by the real services, under names that follow STYLE.md.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_yaml::Value;
use voxbridge_tests::workspace_root;

fn compose() -> Value {
    let text =
        std::fs::read_to_string(workspace_root().join("compose.yaml")).expect("compose.yaml");
    serde_yaml::from_str(&text).expect("compose.yaml parses")
}

#[test]
fn compose_describes_every_service() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "nats",
        "redis",
        "edge",
        "stt-worker",
        "mt-worker",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.contains_key(name),
            "compose.yaml lacks service {name}"
        );
    }
    for worker in ["mt-worker", "stt-worker"] {
        assert!(
            !compose["services"][worker]["deploy"]["replicas"].is_null(),
            "{worker} must be scalable through deploy.replicas"
        );
    }
}

#[test]
fn every_file_compose_references_exists() {
    let root = workspace_root();
    let compose = compose();
    let mut checked = 0;
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let name = name.as_str().unwrap_or_default();
        if let Some(context) = service["build"].as_str() {
            assert!(
                root.join(context).join("Dockerfile").is_file(),
                "{name}: no Dockerfile in {context}"
            );
            checked += 1;
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = volume.as_str().unwrap_or_default();
            let source = spec.split(':').next().unwrap_or_default();
            if !source.starts_with("./") {
                continue; // a named volume
            }
            // ./models is created by scripts/setup, not committed.
            if source == "./models" {
                continue;
            }
            assert!(
                Path::new(&root.join(source)).exists(),
                "{name} mounts missing {source}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} references checked");
    // The NATS config it mounts is the one tests run with; its include must exist too.
    assert!(root.join("nats/users.conf").is_file());
    let dashboard =
        std::fs::read(root.join("deploy/grafana/dashboards/voxbridge.json")).expect("dashboard");
    serde_json::from_slice::<serde_json::Value>(&dashboard).expect("dashboard is JSON");
}

#[test]
fn every_voxbridge_variable_in_compose_is_read_by_the_code() {
    let root = workspace_root();
    let mut sources = String::new();
    for dir in [
        "shared/src",
        "edge/src",
        "stt-worker/src",
        "mt-worker/src",
        "voxctl/src",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).expect("read"));
            }
        }
    }
    let text = std::fs::read_to_string(root.join("compose.yaml")).expect("compose.yaml");
    let mut n = 0;
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("VOXBRIDGE_") {
            assert!(
                sources.contains(&format!("\"{word}\"")),
                "compose sets {word}, which no binary reads"
            );
            n += 1;
        }
    }
    assert!(n >= 5, "found only {n} variables");
}

/// `scripts/bench-mt` compares ratios only if both sides translate the same sentences.
#[test]
fn the_python_baseline_uses_the_same_benchmark_sentences() {
    let baseline = std::fs::read_to_string(workspace_root().join("scripts/bench/ct2_baseline.py"))
        .expect("baseline script");
    for sentence in voxctl::bench::SENTENCES {
        assert!(
            baseline.contains(&format!("\"{sentence}\"")),
            "scripts/bench/ct2_baseline.py lacks {sentence:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus alert rules and the Grafana dashboard (deploy/).

/// The `promtool` binary (`VOXBRIDGE_PROMTOOL`, else `promtool` on `PATH`).
fn promtool() -> std::path::PathBuf {
    let bin = std::env::var_os("VOXBRIDGE_PROMTOOL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "promtool".into());
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => bin,
        _ => panic!(
            "promtool not found ({}): run scripts/setup (it installs Debian's prometheus \
             package, which provides /usr/bin/promtool), or set VOXBRIDGE_PROMTOOL",
            bin.display()
        ),
    }
}

fn run_promtool(args: &[&str]) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    println!("promtool {args:?}:\n{text}");
}

/// `*.yml` files of a workspace directory, as paths relative to the workspace root.
fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(workspace_root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {dir}");
    files
}

const RULES_DIR: &str = "deploy/prometheus/rules";
const RULE_TESTS_DIR: &str = "deploy/prometheus/tests";
const DASHBOARD: &str = "deploy/grafana/dashboards/voxbridge.json";

/// Every alerting rule: (name, rule).
fn alert_rules() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for file in yaml_files(RULES_DIR) {
        let text = std::fs::read_to_string(workspace_root().join(&file)).expect("read rules");
        let doc: Value = serde_yaml::from_str(&text).expect("rules parse");
        for group in doc["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                if let Some(name) = rule["alert"].as_str() {
                    out.push((name.to_string(), rule.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_fires_and_stays_silent_in_a_test() {
    let rules = yaml_files(RULES_DIR);
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    run_promtool(&args);
    // The config loads the rules (rule_files resolve relative to it, as in compose).
    run_promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    let tests = yaml_files(RULE_TESTS_DIR);
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    run_promtool(&args);

    let alerts = alert_rules();
    let names: Vec<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    // The alerts (issue 8 / the study), by name.
    for required in [
        "VoxbridgeTranslationLatencyHigh",
        "VoxbridgeApiErrorRateHigh",
        "VoxbridgeMtMemoryHigh",
        "VoxbridgeCacheHitRateLow",
        "VoxbridgeConsumerLagGrowing",
        "VoxbridgeDlqNotEmpty",
        "VoxbridgeDlqGrowing",
        "VoxbridgeNoSttWorker",
        "VoxbridgeNoMtWorker",
    ] {
        assert!(names.contains(&required), "no alert {required}: {names:?}");
    }
    for (name, rule) in &alerts {
        let r#for = rule["for"].as_str().unwrap_or_default();
        assert!(
            !r#for.is_empty() && r#for != "0s" && r#for != "0m",
            "{name}: give it a `for:` so a blip does not page"
        );
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?} is not critical|warning|info"
        );
        for key in ["summary", "description"] {
            assert!(
                !rule["annotations"][key]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .is_empty(),
                "{name}: no {key} annotation"
            );
        }
    }

    // Every alert fires in one unit test and stays silent in another.
    let mut fires = std::collections::HashSet::new();
    let mut silent = std::collections::HashSet::new();
    for file in &tests {
        let text = std::fs::read_to_string(workspace_root().join(file)).expect("read tests");
        let doc: Value = serde_yaml::from_str(&text).expect("rule tests parse");
        for test in doc["tests"].as_sequence().expect("tests") {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_string();
                let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
                if expected > 0 {
                    fires.insert(name);
                } else {
                    silent.insert(name);
                }
            }
        }
    }
    for name in &names {
        assert!(fires.contains(*name), "no rule test where {name} fires");
        assert!(
            silent.contains(*name),
            "no rule test where {name} stays silent"
        );
    }
}

/// The dashboard's panels (rows included).
fn dashboard() -> serde_json::Value {
    let bytes = std::fs::read(workspace_root().join(DASHBOARD)).expect("dashboard");
    serde_json::from_slice(&bytes).expect("dashboard is JSON")
}

/// Every query of the dashboard: (panel title, expr).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or_default().to_string(),
                target["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

#[test]
fn the_dashboard_is_valid_grafana_json_and_provisioned_by_compose() {
    let d = dashboard();
    assert_eq!(d["uid"], "voxbridge");
    assert!(d["title"].is_string() && d["schemaVersion"].is_u64());
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = std::collections::HashSet::new();
    let mut cells: Vec<(String, [u64; 4])> = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} used twice ({title})");
        let g = &panel["gridPos"];
        let pos = ["x", "y", "w", "h"].map(|k| {
            g[k].as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(
            pos[0] + pos[2] <= 24 && pos[2] > 0 && pos[3] > 0,
            "{title}: {pos:?}"
        );
        for (other, p) in &cells {
            let apart = pos[0] + pos[2] <= p[0]
                || p[0] + p[2] <= pos[0]
                || pos[1] + pos[3] <= p[1]
                || p[1] + p[3] <= pos[1];
            assert!(apart, "panels {title:?} and {other:?} overlap");
        }
        cells.push((title.to_string(), pos));
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = std::collections::HashSet::new();
        for t in targets {
            assert!(
                !t["expr"].as_str().unwrap_or_default().trim().is_empty(),
                "{title}: empty expr"
            );
            let r = t["refId"].as_str().expect("refId");
            assert!(refs.insert(r.to_string()), "{title}: refId {r} twice");
        }
    }
    // What the issue asks the dashboard to show, by the metrics it must query.
    let all: String = dashboard_queries(&d)
        .into_iter()
        .map(|(_, e)| e)
        .collect::<Vec<_>>()
        .join("\n");
    for metric in [
        "voxbridge_mt_translate_duration_seconds_bucket",
        "voxbridge_stt_inference_seconds_bucket",
        "voxbridge_edge_live_first_partial_seconds_bucket",
        "voxbridge_edge_live_final_latency_seconds_bucket",
        "voxbridge_edge_live_translation_latency_seconds_bucket",
        "voxbridge_mt_requests_total",
        "voxbridge_edge_http_requests_total",
        "voxbridge_mt_process_resident_memory_bytes",
        "voxbridge_mt_cache_hits_total",
        "voxbridge_edge_consumer_pending_messages",
        "voxbridge_edge_workers_alive",
        "voxbridge_stt_active_sessions",
        "voxbridge_edge_stream_messages{stream=\"DLQ\"}",
    ] {
        assert!(all.contains(metric), "the dashboard does not show {metric}");
    }
    // Every query is valid PromQL: promtool checks them as recording rules (Grafana's
    // `$__rate_interval` replaced by a duration).
    let dir = tempfile::tempdir().expect("tmp");
    let rules: Vec<serde_json::Value> = dashboard_queries(&d)
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            serde_json::json!({
                "record": format!("dashboard:query_{i}"),
                "expr": expr.replace("$__rate_interval", "1m"),
            })
        })
        .collect();
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(
        &file,
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .expect("write");
    run_promtool(&["check", "rules", file.to_str().expect("utf-8 path")]);

    // compose mounts the dashboards where the provisioning file looks for them.
    let provisioning: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            workspace_root().join("deploy/grafana/provisioning/dashboards/voxbridge.yml"),
        )
        .expect("provisioning"),
    )
    .expect("provisioning parses");
    let path = provisioning["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let grafana = &compose()["services"]["grafana"]["volumes"];
    assert!(
        grafana
            .as_sequence()
            .expect("grafana volumes")
            .iter()
            .any(|v| v.as_str() == Some(&format!("./deploy/grafana/dashboards:{path}:ro"))),
        "compose must mount deploy/grafana/dashboards at {path}"
    );
    let prometheus = &compose()["services"]["prometheus"]["volumes"];
    assert!(
        prometheus
            .as_sequence()
            .expect("prometheus volumes")
            .iter()
            .any(|v| v.as_str() == Some("./deploy/prometheus/rules:/etc/prometheus/rules:ro")),
        "compose must mount the alert rules beside prometheus.yml"
    );
}

/// The metric names a PromQL expression selects: identifiers outside label matchers, range
/// brackets, strings and `by (…)`-style groupings that are not functions or keywords.
fn promql_metric_names(expr: &str) -> Vec<String> {
    // Blank out strings, {…}, […] and by/without/on/ignoring (…).
    let mut text = String::with_capacity(expr.len());
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            text.push(' ');
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                quote = Some(c);
                text.push(' ');
            }
            '{' => {
                depth_brace += 1;
                text.push(' ');
            }
            '}' => {
                depth_brace -= 1;
                text.push(' ');
            }
            '[' => {
                depth_bracket += 1;
                text.push(' ');
            }
            ']' => {
                depth_bracket -= 1;
                text.push(' ');
            }
            _ if depth_brace > 0 || depth_bracket > 0 => text.push(' '),
            _ => text.push(c),
        }
    }
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Binary operators and aggregations (which may come before their `by (…)`).
    const KEYWORDS: [&str; 17] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = text.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_word = (c.is_ascii_alphabetic() || c == '_' || c == ':')
            && (i == 0
                || !(chars[i - 1].is_ascii_alphanumeric()
                    || chars[i - 1] == '.'
                    || chars[i - 1] == '_'));
        if !starts_word {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let called = j < chars.len() && chars[j] == '(';
        if GROUPING.contains(&word.as_str()) && called {
            // Skip the label list.
            while j < chars.len() && chars[j] != ')' {
                j += 1;
            }
            i = j + 1;
            continue;
        }
        if called || KEYWORDS.contains(&word.as_str()) {
            continue;
        }
        names.push(word);
    }
    names
}

#[test]
fn promql_metric_names_finds_selected_metrics_only() {
    let names = promql_metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(voxbridge_mt_x_seconds_bucket{a=\"b\"}[5m]))) > 1.2e9 \
         and on (job) max without (instance) (up) or vector(1) / sum(rate(voxbridge_y_total[$__rate_interval]))",
    );
    assert_eq!(
        names,
        ["voxbridge_mt_x_seconds_bucket", "up", "voxbridge_y_total"]
    );
}

/// The sample names an exposition exports (`_total` for counters, `_bucket/_sum/_count` for
/// histograms), from its `# TYPE` lines.
fn exported_series_names(exposition: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// (series name, [(label, value)]) of every sample line.
fn samples(exposition: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for line in exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.chars().peekable();
            loop {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                if key.is_empty() || chars.next() != Some('"') {
                    break;
                }
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.push((key.trim_start_matches(',').to_string(), value));
                match chars.next() {
                    Some(',') => continue,
                    _ => break,
                }
            }
        }
        out.push((name.to_string(), labels));
    }
    out
}

/// A value that identifies one thing (a ULID or UUID): never a label value.
fn looks_like_an_id(value: &str) -> bool {
    let ulid = value.len() == 26 && value.chars().all(|c| c.is_ascii_alphanumeric());
    let uuid = value.len() == 36
        && value.chars().filter(|c| *c == '-').count() == 4
        && value.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ulid || uuid
}

/// Checks one service's exposition against STYLE.md: names (`voxbridge_<component>_<what>_<unit>`,
/// counters `_total`, time histograms `_seconds`) and labels from small fixed sets.
fn style_violations(service: &str, exposition: &str) -> Vec<String> {
    let mut bad: Vec<String> = voxbridge_shared::metrics::naming_violations(exposition)
        .into_iter()
        .map(|v| format!("{service}: {v}"))
        .collect();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if !name.starts_with(&format!("voxbridge_{service}_")) {
                bad.push(format!(
                    "{service}: {name} lacks the voxbridge_{service}_ prefix"
                ));
            }
            // A histogram of durations must say so: time is always `_seconds`.
            let timing = name
                .split('_')
                .any(|w| ["duration", "latency", "wait", "lag", "time"].contains(&w));
            if rest.ends_with(" histogram") && timing && !name.ends_with("_seconds") {
                bad.push(format!(
                    "{service}: time histogram {name} must end in _seconds"
                ));
            }
        }
    }
    const FORBIDDEN: [&str; 12] = [
        "session",
        "session_id",
        "request_id",
        "job_id",
        "segment_id",
        "id",
        "text",
        "message",
        "error",
        "api_key",
        "subject",
        "user",
    ];
    let mut values: std::collections::HashMap<(String, String), std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (name, labels) in samples(exposition) {
        for (key, value) in labels {
            if FORBIDDEN.contains(&key.as_str()) {
                bad.push(format!("{service}: {name} has an unbounded label {key}"));
            }
            if looks_like_an_id(&value) || value.len() > 48 {
                bad.push(format!(
                    "{service}: {name}{{{key}={value:?}}} is an id or a text"
                ));
            }
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_total")
                .to_string();
            values.entry((family, key)).or_default().insert(value);
        }
    }
    for ((family, key), set) in values {
        if key != "le" && set.len() > 32 {
            bad.push(format!(
                "{service}: {family} has {} values of {key}",
                set.len()
            ));
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn the_style_check_catches_ids_and_unbounded_labels() {
    let exposition = "# TYPE voxbridge_edge_x counter\n\
        voxbridge_edge_x_total{session=\"a\"} 1\n\
        voxbridge_edge_x_total{code=\"01J0000000000000000000000A\"} 1\n\
        # TYPE voxbridge_edge_wait histogram\n\
        # TYPE voxbridge_mt_y gauge\n";
    let bad = style_violations("edge", exposition).join("\n");
    for expected in [
        "unbounded label session",
        "is an id or a text",
        "voxbridge_mt_y lacks the voxbridge_edge_ prefix",
        "time histogram voxbridge_edge_wait must end in _seconds",
    ] {
        assert!(bad.contains(expected), "{expected:?} not in:\n{bad}");
    }
}

/// Every metric the dashboard and the alert rules query is exported by a real service, and every
/// exported name follows STYLE.md. Runs the edge, an MT worker (nllb-tiny) and an STT worker
/// (whisper tiny.en), sends a REST translation and a live session so labelled families and the
/// end-to-end latency histograms have samples, then scrapes all three.
#[tokio::test]
async fn every_metric_in_the_dashboard_and_the_alerts_is_exported_and_well_named() {
    use voxbridge_tests::live::LiveClient;
    use voxbridge_tests::{
        TestEnv, audio_dir, metric_value, read_wav, scrape, start_edge, start_mt_worker,
        start_stt_worker, wait_for,
    };
    let env = TestEnv::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let edge = start_edge(&env, &["--queue-poll-s", "1"], shutdown.clone()).await;

    // Traffic: a translation, a client error, and one live session to its end.
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/translate", edge.addr);
    for (target, expected) in [("vi", 200), ("xx-nope", 400)] {
        let response = client
            .post(&url)
            .json(&serde_json::json!({"q": "Hello world.", "source": "en", "target": target}))
            .send()
            .await
            .expect("POST /v1/translate");
        assert_eq!(response.status().as_u16(), expected);
    }
    let samples_in = read_wav(&audio_dir().join("en_01.wav"));
    let mut speaker = LiveClient::connect(edge.addr, None).await;
    speaker.start("en", &["vi"]).await;
    speaker.wait_for("ready", Duration::from_secs(10)).await;
    // A frame of half a sample: a non-fatal `bad_frame` error (live_errors_total{code}).
    speaker.send_binary(vec![0; 3]).await;
    speaker.wait_for("error", Duration::from_secs(10)).await;
    speaker.send_audio(&samples_in, 100, false).await;
    speaker.stop().await;
    let close = speaker.read_to_close(Duration::from_secs(240)).await;
    assert_eq!(close.map(|c| c.0), Some(1000), "{:#?}", speaker.events);

    // Failures, so the families that only count failures have samples too: malformed payloads
    // for each worker (malformed + dead-letter counters) and a subtitle job whose input is
    // missing (a failed job run).
    {
        use voxbridge_shared::jobs::JobStore;
        use voxbridge_shared::messages::{JobKind, JobSpec, now_unix_ms};
        let client = env.client().await;
        let js = async_nats::jetstream::new(client.clone());
        for subject in [
            env.namespace.mt_request("vie_Latn"),
            env.namespace.session_open(),
        ] {
            js.publish(subject, bytes::Bytes::from_static(b"\xc1 not msgpack"))
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
        let store = JobStore::open(client, js, env.namespace.clone())
            .await
            .expect("job store");
        let spec = JobSpec {
            v: 1,
            job_id: voxbridge_shared::JobId::new(),
            kind: JobKind::Subtitles,
            input_object: "no-such-object".into(),
            file_name: "missing.srt".into(),
            source_lang: Some("eng_Latn".into()),
            target_langs: vec!["vie_Latn".into()],
            output_format: None,
            content_hash: "deploy-test".into(),
            submitted_at_ms: now_unix_ms(),
        };
        store.enqueue(&spec, "").await.expect("job queued");
    }
    for (addr, families) in [
        (
            mt.metrics_addr,
            &[
                "voxbridge_mt_malformed_messages_total{",
                "voxbridge_mt_dlq_messages_total{",
                "voxbridge_mt_job_runs_total{",
            ][..],
        ),
        (
            stt.metrics_addr,
            &[
                "voxbridge_stt_malformed_messages_total{",
                "voxbridge_stt_dlq_messages_total{",
            ][..],
        ),
    ] {
        wait_for("failures counted", Duration::from_secs(60), || async move {
            let m = scrape(addr).await;
            families.iter().all(|f| m.contains(f)).then_some(())
        })
        .await;
    }

    // The edge has counted both workers and read the queues.
    let addr = edge.addr;
    let edge_metrics = wait_for(
        "the edge to see both workers",
        Duration::from_secs(30),
        || async move {
            let m = scrape(addr).await;
            let alive = |c: &str| {
                metric_value(
                    &m,
                    &format!("voxbridge_edge_workers_alive{{component=\"{c}\"}}"),
                )
            };
            (alive("stt") == Some(1.0)
                && alive("mt") == Some(1.0)
                && m.contains("voxbridge_edge_stream_messages{stream=\"DLQ\"}"))
            .then_some(m)
        },
    )
    .await;
    for series in [
        "voxbridge_edge_live_first_partial_seconds_count",
        "voxbridge_edge_live_final_latency_seconds_count",
        "voxbridge_edge_live_translation_latency_seconds_count",
    ] {
        assert!(
            metric_value(&edge_metrics, series).unwrap_or(0.0) > 0.0,
            "{series} did not move:\n{edge_metrics}"
        );
    }
    let expositions = [
        ("edge", edge_metrics),
        ("mt", scrape(mt.metrics_addr).await),
        ("stt", scrape(stt.metrics_addr).await),
    ];

    let mut exported = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    for (service, text) in &expositions {
        exported.extend(exported_series_names(text));
        bad.extend(style_violations(service, text));
    }
    assert_eq!(bad, Vec::<String>::new(), "metrics that break STYLE.md");

    // Prometheus' own series may be queried too.
    let builtin = ["up"];
    let mut queried: Vec<(String, String)> = dashboard_queries(&dashboard())
        .into_iter()
        .map(|(title, expr)| (format!("dashboard panel {title:?}"), expr))
        .collect();
    for (name, rule) in alert_rules() {
        queried.push((
            format!("alert {name}"),
            rule["expr"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for (place, expr) in &queried {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{place} queries no metric: {expr}");
        for name in names {
            checked += 1;
            if !exported.contains(&name) && !builtin.contains(&name.as_str()) {
                missing.push(format!("{place}: {name}"));
            }
        }
    }
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "queried but not exported (exported: {exported:#?})"
    );
    println!(
        "{} queries, {checked} metric references, {} exported series names",
        queried.len(),
        exported.len()
    );
    shutdown.cancel();
}
