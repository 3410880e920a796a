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
    // Far more lines than a test's short-lived server writes: the reader
    // never waits, so the child never blocks on its stderr pipe.
    let (tx, logs) = mpsc::sync_channel(4096);
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
        #[expect(clippy::disallowed_methods, reason = "a synchronous helper waiting for a child process to exit")]
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
    let cases: [&[&str]; 9] = [
        &["--listen", "not-an-address"],
        &["--node-id", "16"],
        &["--log-format", "xml"],
        &["serve", "--bogus"],
        &["gateway", "--node-id", "1"],
        &["sidecar", "--node-id", "3"],
        &["--trusted-proxy", "10.0.0.0/33"],
        &["--store", "scylla"],
        &["--store", "cassandra"],
    ];
    for args in cases {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?} should be a usage error");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
}

/// Runs the binary with `args` on a fresh data dir; asserts it fails and
/// answers what it said on stderr.
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN).args(args).arg("--data-dir").arg(dir.path()).output().unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_redis_url_is_refused_before_serving() {
    let stderr = refused(&["gateway", "--listen", "127.0.0.1:0", "--redis-url", "http://not-redis"]);
    assert!(stderr.contains("bad Redis URL"), "{stderr}");
}

#[test]
fn an_unreachable_scylla_cluster_is_refused_before_serving() {
    // Nothing listens on a port that was just freed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let stderr = refused(&["--listen", "127.0.0.1:0", "--store", "scylla", "--scylla-uri", &closed]);
    assert!(stderr.contains("opening ScyllaDB keyspace switchboard at"), "{stderr}");
    let stderr = refused(&[
        "--listen",
        "127.0.0.1:0",
        "--store",
        "scylla",
        "--scylla-uri",
        &closed,
        "--scylla-keyspace",
        "Bad-Name",
    ]);
    assert!(stderr.contains("keyspace"), "{stderr}");
}

#[test]
fn a_taken_port_fails_fast_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stderr = refused(&["--listen", &taken.local_addr().unwrap().to_string()]);
    assert!(stderr.contains("binding"), "{stderr}");
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let serve = || {
        let mut command = Command::new(BIN);
        command.args(["--listen", "127.0.0.1:0"]).arg("--data-dir").arg(dir.path());
        command
    };
    let mut running = start(&mut serve());
    let http = reqwest::Client::new();
    let base = format!("http://{}", running.addr);
    let register = |phone: &str, name: &str| {
        let body = serde_json::json!({"phone": phone, "username": name, "password": "password123"});
        http.post(format!("{base}/api/auth/register")).json(&body).send()
    };
    let alice: Value = register("13800000001", "alice").await.unwrap().json().await.unwrap();
    let bob: Value = register("13800000002", "bob").await.unwrap().json().await.unwrap();
    let token = alice["data"]["access_token"].as_str().unwrap().to_owned();
    let chat: Value = http
        .post(format!("{base}/api/chats"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"type": "group", "members": [bob["data"]["user"]["id"]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["data"]["id"].as_i64().unwrap();

    let mut sends = tokio::task::JoinSet::new();
    for n in 0..40 {
        let request = http
            .post(format!("{base}/api/chats/{chat}/messages"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"content": format!("m{n}"), "client_message_id": format!("c{n}")}));
        sends.spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() });
    }
    let mut acked = Vec::new();
    while let Some(reply) = sends.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply["code"], 200, "{reply}");
        acked.push(reply["data"]["id"].as_i64().unwrap());
    }
    running.child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    running.child.wait().unwrap();

    let mut restarted = start(&mut serve());
    let history: Value = http
        .get(format!("http://{}/api/chats/{chat}/messages?limit=100", restarted.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = history["data"]["messages"].as_array().unwrap_or_else(|| panic!("{history}"));
    let seqs: Vec<u64> = messages.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "contiguous after the crash");
    let stored: std::collections::HashSet<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(acked.iter().all(|id| stored.contains(id)), "every acknowledged message survived");
    signal(&restarted.child, "TERM");
    assert!(wait_exit(&mut restarted).success());
}
