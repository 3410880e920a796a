//! `bench compare --repeat` and `--baseline-bin`: the real engine binary
//! beside itself as the baseline, two short chat rounds in alternating
//! order, and the top level's medians taken from what each round measured.

use std::path::Path;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: bench::compare::Args,
}

fn parse(extra: &[&str]) -> Result<bench::compare::Args, clap::Error> {
    let base = ["compare", "--switchboard-bin", env!("CARGO_BIN_EXE_switchboard")];
    Cli::try_parse_from(base.iter().chain(extra)).map(|cli| cli.args)
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

/// The chat maximum of `system` in a round's own summary.
fn chat_max(round: &serde_json::Value, system: &str) -> f64 {
    let systems = round["scenarios"]["chat"]["systems"].as_array().unwrap();
    let row = systems.iter().find(|row| row["name"] == system).unwrap_or_else(|| panic!("no {system}: {round}"));
    assert_eq!(
        (row["valid"].as_bool(), row["lost"].as_u64(), row["duplicated"].as_u64()),
        (Some(true), Some(0), Some(0))
    );
    row["deliveries_per_s"].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_rounds_alternate_the_order_and_report_the_median_of_each_ratio() {
    let out = tempfile::tempdir().unwrap();
    let out_arg = out.path().to_str().unwrap();
    let args = parse(&[
        "--out",
        out_arg,
        "--baseline-bin",
        env!("CARGO_BIN_EXE_switchboard"),
        "--systems",
        "switchboard,switchboard-baseline",
        "--scenarios",
        "chat",
        "--chat-pairs",
        "10",
        "--chat-rate",
        "200",
        "--phase-secs",
        "1",
        "--repeat",
        "2",
    ])
    .unwrap();
    bench::compare::run(args).await.unwrap();

    let rounds: Vec<serde_json::Value> =
        (1..=2).map(|k| json(&out.path().join(format!("round-{k}/summary.json")))).collect();
    let order = |round: &serde_json::Value| -> Vec<String> {
        let systems = round["scenarios"]["chat"]["systems"].as_array().unwrap();
        systems.iter().map(|row| row["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(order(&rounds[0]), ["switchboard", "switchboard-baseline"]);
    assert_eq!(order(&rounds[1]), ["switchboard-baseline", "switchboard"]);
    let ratios: Vec<f64> =
        rounds.iter().map(|round| chat_max(round, "switchboard") / chat_max(round, "switchboard-baseline")).collect();

    let summary = json(&out.path().join("summary.json"));
    assert_eq!(summary["repeat"], 2);
    assert_eq!(summary["rounds"][1]["dir"], "round-2");
    assert_eq!(summary["rounds"][1]["order"], serde_json::json!(["switchboard-baseline", "switchboard"]));
    let figures = summary["figures"].as_array().unwrap();
    let ratio = figures
        .iter()
        .find(|figure| figure["name"] == "chat max, switchboard / switchboard-baseline")
        .unwrap_or_else(|| panic!("no ratio: {summary}"));
    let values: Vec<f64> = ratio["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    // Equal up to the last bit that JSON's decimal form may round.
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
    assert!(values.len() == 2 && values.iter().zip(&ratios).all(|(&a, &b)| same(a, b)), "{values:?} {ratios:?}");
    let median = ratio["median"].as_f64().unwrap();
    assert!(same(median, f64::midpoint(ratios[0], ratios[1])), "{median} {ratios:?}");
    // No target is set against a baseline.
    assert_eq!((&ratio["target"], &ratio["met"]), (&serde_json::Value::Null, &serde_json::Value::Null));
    let p99 = figures.iter().find(|figure| figure["name"] == "chat p99 at the fixed rate, switchboard").unwrap();
    assert_eq!(p99["values"].as_array().unwrap().len(), 2, "{p99}");
    assert!(p99["values"].as_array().unwrap().iter().all(|v| v.as_f64().is_some_and(|ms| ms > 0.0)), "{p99}");

    let markdown = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(markdown.contains("- round 2 (`round-2/`): switchboard-baseline, switchboard"), "{markdown}");
    let row = format!("| chat max, switchboard / switchboard-baseline | {:.2}x | {:.2}x |", ratios[0], ratios[1]);
    assert!(markdown.contains(&row), "{row} not in\n{markdown}");
}

#[test]
fn a_repeat_outside_1_to_99_is_refused() {
    for bad in ["0", "100", "-1", "two", ""] {
        let error = parse(&["--out", "unused", &format!("--repeat={bad}")])
            .err()
            .unwrap_or_else(|| panic!("--repeat {bad} accepted"));
        assert!(error.to_string().contains("--repeat"), "{bad}: {error}");
    }
    assert!(parse(&["--out", "unused", "--repeat=3"]).is_ok());
}

#[tokio::test]
async fn a_baseline_without_its_binary_is_refused_before_anything_runs() {
    let out = tempfile::tempdir().unwrap();
    let out_arg = out.path().to_str().unwrap();
    let missing = out.path().join("no-such-binary");
    let cases = [
        (vec!["--systems", "switchboard,switchboard-baseline"], "needs --baseline-bin"),
        (vec!["--baseline-bin", missing.to_str().unwrap()], "no baseline binary at"),
    ];
    for (extra, expected) in cases {
        let mut argv = vec!["--out", out_arg, "--scenarios", "chat"];
        argv.extend(extra);
        let error = bench::compare::run(parse(&argv).unwrap()).await.expect_err("refused");
        assert!(error.to_string().contains(expected), "{argv:?}: {error}");
    }
    assert!(!out.path().join("summary.json").exists());
}
