//! The real `switchboard` binary as a user runs it: flags and environment,
//! the embedded store in the data dir, health over HTTP, and a clean exit
//! on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

struct Running {
    child: Child,
    addr: String,
    /// Every log line after the listening one, as parsed JSON.
    logs: mpsc::Receiver<Value>,
}

/// Starts the binary with JSON logs and waits for its listening address.
/// Each test waits for (or kills) the child it gets back.
#[allow(clippy::zombie_processes, reason = "the caller owns the child and waits for it")]
fn start(command: &mut Command) -> Running {
    let mut child =
        command.env("SWITCHBOARD_LOG_FORMAT", "json").stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let (tx, logs) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(value);
            }
        }
    });
    loop {
        let line = logs.recv_timeout(Duration::from_secs(30)).expect("the server logs its address");
        if line["message"] == "switchboard serving" {
            let addr = line["addr"].as_str().unwrap().to_owned();
            return Running { child, addr, logs };
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_exit(running: &mut Running) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = running.child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    running.child.kill().unwrap();
    panic!("the server did not exit within 15 s of the signal");
}

async fn health(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/health")).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn serve_by_default_and_exit_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut running =
        start(Command::new(BIN).args(["--listen", "127.0.0.1:0"]).env("SWITCHBOARD_DATA_DIR", dir.path()));
    assert!(dir.path().join("switchboard.db").exists(), "the store lives in the data dir from the environment");
    assert!(dir.path().join("files").is_dir());
    let body = health(&running.addr).await;
    assert_eq!(body["data"]["status"], "healthy");
    assert_eq!(body["data"]["version"], env!("CARGO_PKG_VERSION"));

    signal(&running.child, "TERM");
    let status = wait_exit(&mut running);
    assert!(status.success(), "exit status {status}");
    let messages: Vec<String> =
        running.logs.try_iter().filter_map(|line| line["message"].as_str().map(str::to_owned)).collect();
    assert!(messages.iter().any(|m| m.contains("shutting down")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("store flushed")), "{messages:?}");
    assert!(reqwest::get(format!("http://{}/health", running.addr)).await.is_err());
}

#[tokio::test]
async fn serve_subcommand_with_flags_and_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let mut running = start(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--node-id", "3", "--dev"])
            .arg("--data-dir")
            .arg(&data),
    );
    assert!(data.join("switchboard.db").exists());
    assert_eq!(health(&running.addr).await["data"]["services"]["database"], "healthy");
    signal(&running.child, "INT");
    assert!(wait_exit(&mut running).success());
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let cases: [&[&str]; 4] =
        [&["--listen", "not-an-address"], &["--node-id", "16"], &["--log-format", "xml"], &["serve", "--bogus"]];
    for args in cases {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?} should be a usage error");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_taken_port_fails_fast_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["--listen", &taken.local_addr().unwrap().to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("binding"), "{stderr}");
}
