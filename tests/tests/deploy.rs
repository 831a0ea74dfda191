//! compose.yaml cannot be run here (no Docker engine), so check what can be checked: it parses,
//! names every service of the design, every file it mounts or builds from exists, and every
//! `VOXBRIDGE_*` variable it sets is one the binaries read.

use std::path::Path;

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
