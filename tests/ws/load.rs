//! The load generator's scenarios against the real server: they set
//! themselves up through the API, measure real deliveries, and leave the
//! server as they found it.

use load_tests::dialect::Dialect;
use load_tests::{Common, chat, churn, connect, fanout};

use crate::harness;

fn common(server: &harness::Server) -> Common {
    Common::new(&server.base, Some(std::process::id()), 2, 20).unwrap()
}

/// Two groups of four, closed loop with two sends in flight, one second:
/// small enough for a test, enough to count every delivery.
pub(crate) fn small_closed_loop() -> fanout::Args {
    fanout::Args {
        group_size: 4,
        groups: 2,
        rate: None,
        window: Some(2),
        duration_secs: 1,
        warmup_secs: 0,
        dialect: Dialect::Switchboard,
        peer_secret: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_message_to_every_other_member() {
    // A closed loop sends as fast as acks come back: lift the per-connection command limit.
    let server = harness::start_with(|config| config.commands_per_second = 1_000_000).await;
    let common = common(&server);
    let args = small_closed_loop();
    let connections = fanout::connections(&common, &args).await.unwrap();
    assert_eq!(connections.len(), 8);
    assert_eq!(connections.iter().filter(|c| c.sends).count(), 2, "one sender per group");
    let measured = fanout::measure(&common, &args, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0));
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    // Every acked message reaches the other 3 members of its group.
    assert_eq!(measured.delivered, measured.acked * 3, "{measured:?}");
    let accounting = measured.accounting;
    assert_eq!((accounting.expected, accounting.received), (measured.acked * 3, measured.delivered), "{measured:?}");
    assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");
    assert!(measured.latency_ms.p50 > 0.0 && measured.latency_ms.p99 >= measured.latency_ms.p50);
    // A closed loop sends the moment a slot frees: no lag to report.
    assert!(measured.send_lag_ms.is_none(), "{measured:?}");
    // Every delivery of the measured window gave its latency, none twice.
    let in_window = (measured.deliveries_per_s * args.duration_secs as f64).round() as u64;
    assert_eq!(measured.latency_samples, in_window, "{measured:?}");
    assert!(!measured.timeline.is_empty());
    // `batch=1` packs the events that leave together into one frame: a
    // write takes whole runs (64 events at most) until it holds 64, so
    // under 128 a frame, and the frames counted lie in between.
    let events = measured.delivered + measured.acked;
    assert!((events.div_ceil(128)..=events).contains(&measured.frames), "{measured:?}");
}

/// The same scenario in seed 000's dialect (`--dialect dating`): every
/// delivery counted through `/v1`'s frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_in_the_dating_dialect_delivers_every_message() {
    let server = harness::start_with(|config| config.commands_per_second = 1_000_000).await;
    let common = common(&server);
    let args = fanout::Args { dialect: Dialect::Dating, ..small_closed_loop() };
    let connections = fanout::connections(&common, &args).await.unwrap();
    let measured = fanout::measure(&common, &args, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0));
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    assert_eq!(measured.delivered, measured.acked * 3, "{measured:?}");
    let accounting = measured.accounting;
    assert_eq!((accounting.expected, accounting.received), (measured.acked * 3, measured.delivered), "{measured:?}");
    assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");
    // The dialect sends one event a frame, and a sender its own message too.
    assert!(measured.frames >= measured.delivered + measured.acked * 2, "{measured:?}");
}

/// The chat shape `bench compare` measures: private chats, both users
/// sending with one send in flight; every message reaches the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_pairs_deliver_every_message_to_the_other_user() {
    let server = harness::start_with(|config| config.commands_per_second = 1_000_000).await;
    let common = common(&server);
    let connections = chat::connections(&common, Dialect::Switchboard, "", 3).await.unwrap();
    let chats: std::collections::HashSet<i64> = connections.iter().map(|c| c.chat).collect();
    assert_eq!((connections.len(), chats.len()), (6, 3), "a private chat per pair");
    let second = std::time::Duration::from_secs(1);
    let load = load_tests::traffic::Load::Window(1);
    let measured = chat::measure(&common, Dialect::Switchboard, load, second, second, connections).await.unwrap();
    assert_eq!((measured.errors, measured.disconnects, measured.failed_connections), (0, 0, 0));
    assert!(measured.acked > 0 && measured.acked == measured.sent, "{measured:?}");
    let accounting = measured.accounting;
    assert_eq!((accounting.expected, accounting.received), (measured.acked, measured.delivered), "{measured:?}");
    assert!(accounting.is_clean() && accounting.unacked_delivered == 0, "{measured:?}");
    // Every delivery of the measured window gave its latency, none twice.
    let in_window = (measured.deliveries_per_s * second.as_secs_f64()).round() as u64;
    assert_eq!(measured.latency_samples, in_window, "{measured:?}");
    // The generator's own CPU is reported (here the server runs in the
    // same process, so it counts too): a closed loop for a second uses some.
    assert!(measured.generator_cpu_s.is_some_and(|cpu| cpu > 0.0), "{measured:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_rate_is_kept_and_reported() {
    let server = harness::start().await;
    let common = common(&server);
    let args = fanout::Args {
        group_size: 2,
        groups: 1,
        rate: Some(20),
        window: None,
        duration_secs: 2,
        warmup_secs: 0,
        dialect: Dialect::Switchboard,
        peer_secret: String::new(),
    };
    let report = fanout::run(&common, args).await.unwrap();
    let measured = &report.summary["measured"];
    let sent = measured["sent"].as_u64().unwrap();
    assert!((30..=45).contains(&sent), "20/s for 2 s, got {sent}");
    assert_eq!(measured["delivered"], measured["sent"]);
    assert_eq!(measured["accounting"]["lost"], 0, "{measured}");
    assert_eq!(measured["accounting"]["expected"], measured["acked"], "{measured}");
    // How late the sends left their slots is reported, since every latency
    // runs from the slot.
    let lag = &measured["send_lag_ms"];
    let (p50, p99, max) = (lag["p50"].as_f64().unwrap(), lag["p99"].as_f64().unwrap(), lag["max"].as_f64().unwrap());
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{measured}");
    // What the hypervisor took from the machine is reported beside the server's CPU.
    assert!(measured["machine_steal_s"].as_f64().is_some_and(|steal| steal >= 0.0), "{measured}");
    assert!(report.timeline.iter().all(|sample| sample.machine_steal_s.is_some()), "{measured}");
    // So is the generator's own CPU, each second and over the window.
    assert!(measured["generator_cpu_s"].as_f64().is_some_and(|cpu| cpu >= 0.0), "{measured}");
    assert!(report.timeline.iter().all(|sample| sample.generator_cpu_s.is_some()), "{measured}");
    let chart = load_tests::report::timeline_chart(&report.title, &report.timeline).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("deliveries/s"));
    let dir = tempfile::tempdir().unwrap();
    load_tests::report::write(dir.path(), &report.summary, &report.timeline, &report.title).unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(written["scenario"], "fanout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_holds_connections_from_several_source_addresses() {
    let server = harness::start().await;
    let report = connect::run(&common(&server), connect::Args::for_test(40, 1)).await.unwrap();
    assert_eq!(report.summary["opened"], 40);
    assert_eq!(report.summary["failed"], 0);
    assert_eq!(report.summary["source_addresses"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_connection_behind() {
    let server = harness::start().await;
    let report = churn::run(&common(&server), churn::Args::for_test(40, 100, 2)).await.unwrap();
    let summary = &report.summary;
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(summary["opened"].as_u64().unwrap() >= 60, "{summary}");
    assert_eq!(summary["disconnects"], 0, "{summary}");
    // Every connection was closed by the generator: none is open at the end.
    assert_eq!(report.timeline.last().unwrap().open, 0, "{summary}");
    // The server's gauge is process-wide (other tests share it here), so only its presence is checked.
    assert!(summary["server_live_connections_after"].is_number(), "{summary}");
}

#[tokio::test]
async fn refuses_targets_off_loopback() {
    let error = Common::new("http://10.1.2.3:8080", None, 1, 1).unwrap_err();
    assert!(error.to_string().contains("loopback"), "{error}");
    assert!(Common::new("http://127.0.0.1:8080", None, 0, 1).is_err(), "at least one source address");
}
