//! `bench compare`: the fan-out and chat scenarios against several servers,
//! one after another on this machine, with the same load generator:
//! - `switchboard`: the engine (release binary, SQLite, every message durable);
//! - `centrifugo`: Centrifugo v6 (built with `go install` on first use),
//!   configured for chat: a namespace with client publish for subscribers,
//!   JWT auth, the memory engine, a small history per channel;
//! - `socketio`: a Socket.IO 4 server on Node with the same semantics;
//! - `ceiling`: the bare broadcast server of [`crate::ceiling`].
//!
//! Each system gets two phases: a closed loop (a window of sends in flight
//! per sender) that finds its maximum deliveries per second, then an open
//! loop at half of that maximum for the latency a user would see there.
//! Writes `summary.json`, `summary.md`, `chart.svg`, a timeline chart per
//! system and phase, and the log of each engine and Centrifugo run
//! (`<system>-<scenario>.log`) into the output folder.
//!
//! Every phase accounts for every delivery (each acked send owes one to
//! each other member): a peer that lost or repeated any is marked invalid
//! in the summaries, and an engine that did makes `compare` fail.
//!
//! `--repeat N` runs the whole comparison N times (see [`crate::rounds`]).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use charts_rs::{BarChart, Series};
use load_tests::Common;
use load_tests::dialect::Dialect;
use load_tests::traffic::{Accounting, Load, Measured};
use load_tests::{chat, fanout};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::rounds;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Short phases: the whole comparison in under two minutes.
    #[arg(long)]
    quick: bool,
    /// Folder for summary.json, summary.md and the charts.
    #[arg(long)]
    out: PathBuf,
    /// The engine's binary (default: the workspace's release build, brought
    /// up to date with `cargo build --release` first).
    #[arg(long)]
    switchboard_bin: Option<PathBuf>,
    /// Another build of the engine, measured as the system
    /// `switchboard-baseline` beside the current one: a change's before
    /// and after in the same run (with `--repeat`, in alternating order).
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Members per group.
    #[arg(long, default_value_t = 50)]
    group_size: usize,
    /// Groups, each with one sender.
    #[arg(long, default_value_t = 4)]
    groups: usize,
    /// Sends each sender keeps in flight in the maximum-throughput phase.
    #[arg(long, default_value_t = 16)]
    window: u32,
    /// Seconds of each phase (default 20, or 5 with --quick).
    #[arg(long)]
    phase_secs: Option<u64>,
    /// Only these systems (default: switchboard, dating, centrifugo, socketio and ceiling).
    #[arg(long, value_delimiter = ',')]
    systems: Vec<System>,
    /// Only these scenarios (default: both).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Pairs of users in the chat scenario.
    #[arg(long, default_value_t = 1000)]
    chat_pairs: usize,
    /// Messages per second, all users together, in the chat scenario's
    /// fixed-rate phase.
    #[arg(long, default_value_t = 5_000)]
    chat_rate: u32,
    /// The fan-out load every system is also measured at, as a fraction of
    /// the lowest maximum among them (with two systems or more).
    #[arg(long, default_value_t = 0.5)]
    common_load_fraction: f64,
    /// Rounds of the whole comparison, the systems in the given order in
    /// odd rounds and reversed in even ones; each round writes its own
    /// summaries into `round-K/`, and the top level gets each figure per
    /// round, its median and the verdict on the median. An earlier run's
    /// `round-K/` folders in `--out` are removed first.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    repeat: u32,
}

/// A traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Groups of `--group-size`, one sender each with `--window` sends in flight.
    Fanout,
    /// `--chat-pairs` 1:1 chats, everyone sending, one send in flight each.
    Chat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Switchboard,
    /// The same engine, spoken to in seed 000's dialect.
    Dating,
    /// The engine's build named by `--baseline-bin`.
    #[value(name = "switchboard-baseline")]
    #[serde(rename = "switchboard-baseline")]
    Baseline,
    /// Socket.IO 4 on Node as two workers (node:cluster and the cluster
    /// adapter): what a user of it runs on two cores.
    #[value(name = "socketio")]
    #[serde(rename = "socketio")]
    SocketIo,
    /// The same peer as one Node process.
    #[value(name = "socketio-single")]
    #[serde(rename = "socketio-single")]
    SocketIoSingle,
    /// Centrifugo v6, the standalone real-time messaging server.
    Centrifugo,
    Ceiling,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Switchboard => "switchboard",
            Self::Baseline => "switchboard-baseline",
            Self::Dating => "switchboard-dating",
            Self::SocketIo => "socketio",
            Self::SocketIoSingle => "socketio-single",
            Self::Centrifugo => "centrifugo",
            Self::Ceiling => "ceiling",
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            Self::Switchboard | Self::Baseline => Dialect::Switchboard,
            Self::Dating => Dialect::Dating,
            Self::SocketIo | Self::SocketIoSingle => Dialect::SocketIo,
            Self::Centrifugo => Dialect::Centrifugo,
            Self::Ceiling => Dialect::Ceiling,
        }
    }
}

/// What went wrong over a system's phases of one scenario.
#[derive(Debug, Clone, Copy, Serialize)]
struct Faults {
    /// Whether every owed delivery of every phase arrived exactly once.
    valid: bool,
    /// Owed deliveries missing and repeated, error replies, and
    /// connections the server dropped.
    lost: u64,
    duplicated: u64,
    errors: u64,
    disconnects: u64,
}

impl Faults {
    /// Adds one more phase.
    fn add(&mut self, phase: &Measured) {
        self.lost += phase.accounting.lost;
        self.duplicated += phase.accounting.duplicated;
        self.errors += phase.errors;
        self.disconnects += phase.disconnects;
        self.valid = self.lost == 0 && self.duplicated == 0;
    }

    fn of(phases: &[&Measured]) -> Self {
        let mut faults = Self { valid: true, lost: 0, duplicated: 0, errors: 0, disconnects: 0 };
        for phase in phases {
            faults.add(phase);
        }
        faults
    }

    /// A row's system cell: its name, marked when the row is invalid.
    fn label(self, name: &str) -> String {
        if self.valid { name.to_owned() } else { format!("{name} (invalid: deliveries lost or repeated)") }
    }

    /// A row's last four cells: lost, duplicated, errors, disconnects.
    fn cells(self) -> String {
        format!("{} | {} | {} | {}", self.lost, self.duplicated, self.errors, self.disconnects)
    }
}

/// One system's fan-out figures in `summary.json`.
#[derive(Debug, Serialize)]
struct SystemResult {
    name: &'static str,
    #[serde(flatten)]
    faults: Faults,
    /// Maximum deliveries per second (closed-loop phase).
    deliveries_per_s: f64,
    /// Latency at half of the maximum (open-loop phase).
    p50_ms: f64,
    p99_ms: f64,
    /// Server memory at the end of the maximum phase, and its CPU seconds
    /// during that phase's measured window.
    server_rss_bytes: Option<u64>,
    server_cpu_s: Option<f64>,
    max_phase: PhaseResult,
    half_load_phase: PhaseResult,
    /// Latency at the load every system is given (see `common_load` in
    /// the scenario), on a fresh server.
    common_load_p99_ms: Option<f64>,
    common_load_phase: Option<PhaseResult>,
    #[serde(skip)]
    system: System,
}

#[derive(Debug, Serialize)]
struct PhaseResult {
    rate_per_sender: Option<u32>,
    window: Option<u32>,
    deliveries_per_s: f64,
    acked_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// In an open loop, the p99 of how late the generator's sends left
    /// their slots: part of the latencies above, which run from the slot.
    send_lag_p99_ms: Option<f64>,
    errors: u64,
    disconnects: u64,
    failed_connections: u64,
    server_cpu_s: Option<f64>,
    /// The generator's own CPU seconds in that window: on these shared
    /// cores, what is left for a server is what the load did not take.
    generator_cpu_s: Option<f64>,
    /// CPU seconds the hypervisor took from this machine's cores during
    /// the phase's measured window: the machine was that much slower.
    machine_steal_s: Option<f64>,
    /// Sends, and their acks.
    sent: u64,
    acked: u64,
    /// Text frames the generator received over the phase: how many
    /// events each one carried, beside `sent` and the accounting.
    frames: u64,
    accounting: Accounting,
}

impl PhaseResult {
    fn of(measured: &Measured, rate_per_sender: Option<u32>, window: Option<u32>) -> Self {
        Self {
            rate_per_sender,
            window,
            deliveries_per_s: measured.deliveries_per_s,
            acked_per_s: measured.acked_per_s,
            p50_ms: measured.latency_ms.p50,
            p99_ms: measured.latency_ms.p99,
            send_lag_p99_ms: measured.send_lag_ms.map(|lag| lag.p99),
            errors: measured.errors,
            disconnects: measured.disconnects,
            failed_connections: measured.failed_connections,
            server_cpu_s: measured.server_cpu_s,
            generator_cpu_s: measured.generator_cpu_s,
            machine_steal_s: measured.machine_steal_s,
            sent: measured.sent,
            acked: measured.acked,
            frames: measured.frames,
            accounting: measured.accounting,
        }
    }
}

/// The peers' token secret (Socket.IO's HMAC tokens, Centrifugo's JWTs).
const SECRET: &str = "bench-secret";

/// A server process under test; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    url: String,
    /// Its data folder (the engine's store, a peer's config) and log.
    data: Option<tempfile::TempDir>,
}

impl Server {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    pub async fn stop(mut self) {
        self.terminate().await;
    }

    /// [`Server::stop`], keeping the server's log (the engine's and
    /// Centrifugo's) as `log`, so that a fault in the summary can be explained.
    pub async fn stop_keeping_log(mut self, log: &Path) -> anyhow::Result<()> {
        self.terminate().await;
        if let Some(data) = &self.data {
            std::fs::copy(data.path().join("server.log"), log)
                .with_context(|| format!("keep the server's log as {}", log.display()))?;
        }
        Ok(())
    }

    async fn terminate(&mut self) {
        if let Some(pid) = self.child.id() {
            // SIGTERM first so the engine drains and flushes; then make sure.
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
                let _ = self.child.kill().await;
            }
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

async fn wait_for_port(port: u16, child: &mut Child) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("server exited during start-up: {status}");
        }
        if tokio::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("server did not listen on port {port} within 30 s")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench sits in the workspace").to_path_buf()
}

/// The engine's release binary, built from the workspace as it is now
/// (cargo does nothing when it is current), so an old build is never
/// measured by mistake.
fn switchboard_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "no engine binary at {}", path.display());
        return Ok(path.to_path_buf());
    }
    eprintln!("bringing the engine up to date: cargo build --release --bin switchboard");
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--bin", "switchboard"])
        .current_dir(workspace_root())
        .status()?;
    anyhow::ensure!(status.success(), "building switchboard failed");
    Ok(workspace_root().join("target/release/switchboard"))
}

/// Installs the peer's packages (`bench/socketio/package-lock.json`) with
/// `npm ci` into a cache folder unless that lockfile is installed there
/// already; answers the `node_modules` folder to put on `NODE_PATH`.
fn socketio_modules() -> anyhow::Result<PathBuf> {
    // Callers in one process (tests run in parallel) install one at a time.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = workspace_root().join("target/bench-cache/socketio");
    let modules = cache.join("node_modules");
    let source = workspace_root().join("bench/socketio");
    let lockfile = std::fs::read(source.join("package-lock.json"))?;
    // npm ci writes its own copy of the lockfile into node_modules.
    let installed = modules.join(".switchboard-lock.json");
    if std::fs::read(&installed).is_ok_and(|copy| copy == lockfile) {
        return Ok(modules);
    }
    std::fs::create_dir_all(&cache)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), cache.join(file))?;
    }
    eprintln!("installing the Socket.IO peer's packages with npm ci into {}", cache.display());
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--omit=dev"])
        .current_dir(&cache)
        .status()
        .context("npm is needed for the Socket.IO peer (apt-get install nodejs npm)")?;
    anyhow::ensure!(status.success(), "npm ci for the Socket.IO peer failed");
    std::fs::write(installed, lockfile)?;
    Ok(modules)
}

/// What each system keeps of a message it acked, the same statement for
/// every report.
const DURABILITY: &str = "switchboard: every acked message is in SQLite (WAL, synchronous=FULL: each group commit \
     is fsynced); centrifugo: the last 16 publications per channel in memory (history), lost on restart; \
     socketio and ceiling: nothing";

/// How each system frames the events it sends.
const FRAMING: &str = "switchboard's clients connect with `/ws?batch=1&echo=0&compact=1`: the events that leave a \
     connection together share one text frame, a line each, as Centrifugo's JSON protocol does by default, a sender \
     takes its own message from its ack instead of a second copy, and events leave out their members at a default \
     (false, 0, \"\", null, []), as Centrifugo's protocol leaves out its empty fields; switchboard-dating, socketio and ceiling send one event \
     per frame, and centrifugo and socketio send a sender its own publication too";

/// What the steal columns count.
const STEAL: &str = "steal is CPU time the hypervisor gave to other guests while this machine had work to run, \
     both cores together, over the maximum's measured window: rows measured with much of it ran on a slower \
     machine, so their ratio is not the engines' alone";

/// The Centrifugo release the peer is built from.
const CENTRIFUGO_VERSION: &str = "6.9.1";

/// Centrifugo's binary, built with `go install` into a cache folder on
/// first use (a few minutes; the Go module proxy must be reachable).
fn centrifugo_bin() -> anyhow::Result<PathBuf> {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = workspace_root().join(format!("target/bench-cache/centrifugo-{CENTRIFUGO_VERSION}"));
    let bin = cache.join("centrifugo");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&cache)?;
    let module = format!("github.com/centrifugal/centrifugo/v6@v{CENTRIFUGO_VERSION}");
    eprintln!("building the Centrifugo peer: go install {module} into {}", cache.display());
    let status = std::process::Command::new("go")
        .args(["install", &module])
        .env("GOBIN", &cache)
        .status()
        .context("the Go toolchain is needed for the Centrifugo peer (apt-get install golang)")?;
    anyhow::ensure!(status.success() && bin.is_file(), "go install {module} failed");
    Ok(bin)
}

/// Centrifugo's configuration for chat, as its documentation recommends:
/// JWT (HMAC) connection tokens; a `chat` namespace whose channels any
/// connected user may subscribe to and whose subscribers may publish; the
/// memory engine with a small history per channel and recovery forced on,
/// so a client that reconnects gets what it missed (the nearest to `sync`).
fn centrifugo_config(port: u16, secret: &str) -> serde_json::Value {
    serde_json::json!({
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "error"},
        "usage_stats": {"disabled": true},
        "engine": {"type": "memory"},
        "client": {"token": {"hmac_secret_key": secret}},
        "channel": {
            "namespaces": [{
                "name": "chat",
                "allow_subscribe_for_client": true,
                "allow_publish_for_subscriber": true,
                "history_size": 16,
                "history_ttl": "300s",
                "force_recovery": true,
            }],
        },
    })
}

/// Starts `system` on a free loopback port (`switchboard` is the engine's
/// binary, the baseline's for `Baseline`; `secret` signs the peers'
/// tokens) and waits until it listens.
pub async fn start(system: System, switchboard: &Path, secret: &str) -> anyhow::Result<Server> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let (mut child, data) = match system {
        System::Switchboard | System::Dating | System::Baseline => {
            let data = tempfile::tempdir()?;
            let child = Command::new(switchboard)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
                .arg("--data-dir")
                .arg(data.path())
                // The generator registers its users in a burst and sends far
                // above a person's rate: lift the per-user limits, not the work.
                .args(["--rate-api-per-hour", "100000000", "--ws-commands-per-second", "1000000"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(data.path().join("server.log"))?)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("start {}", switchboard.display()))?;
            (child, Some(data))
        }
        System::SocketIo | System::SocketIoSingle => {
            let modules = socketio_modules()?;
            let workers = if system == System::SocketIo { "2" } else { "1" };
            let mut child = Command::new("node")
                .arg(workspace_root().join("bench/socketio/server.js"))
                .env("NODE_PATH", modules)
                .env("PORT", port.to_string())
                .env("WORKERS", workers)
                .env("TOKEN_SECRET", secret)
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("start node")?;
            // It prints its port once every worker listens; connections
            // made before would all go to the first worker.
            let stdout = child.stdout.take().context("node's stdout")?;
            let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
            let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            anyhow::ensure!(matches!(ready, Ok(Ok(Some(_)))), "the Socket.IO peer did not start: {ready:?}");
            (child, None)
        }
        System::Centrifugo => {
            let bin = centrifugo_bin()?;
            let data = tempfile::tempdir()?;
            let config = data.path().join("config.json");
            std::fs::write(&config, serde_json::to_vec_pretty(&centrifugo_config(port, secret))?)?;
            let child = Command::new(bin)
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(data.path().join("server.log"))?)
                .kill_on_drop(true)
                .spawn()
                .context("start centrifugo")?;
            (child, Some(data))
        }
        System::Ceiling => {
            let child = Command::new(std::env::current_exe()?)
                .args(["ceiling", "--listen", &format!("127.0.0.1:{port}")])
                .kill_on_drop(true)
                .spawn()?;
            (child, None)
        }
    };
    wait_for_port(port, &mut child).await?;
    Ok(Server { child, url, data })
}

impl Args {
    /// Members a fan-out message reaches, over all groups.
    fn receivers(&self) -> f64 {
        (self.groups * (self.group_size - 1)) as f64
    }

    /// The fan-out scenario for `system`, closed loop at `--window`.
    fn fanout(&self, system: System, secs: u64) -> fanout::Args {
        fanout::Args {
            group_size: self.group_size,
            groups: self.groups,
            rate: None,
            window: Some(self.window),
            duration_secs: secs,
            warmup_secs: 2,
            dialect: system.dialect(),
            peer_secret: SECRET.to_owned(),
        }
    }
}

/// Starts `system` (the baseline from `--baseline-bin`) and the
/// generator's view of it.
async fn serve(args: &Args, system: System, switchboard: &Path) -> anyhow::Result<(Server, Common)> {
    let bin = match (system, &args.baseline_bin) {
        (System::Baseline, Some(baseline)) => baseline.as_path(),
        (System::Baseline, None) => anyhow::bail!("the system switchboard-baseline needs --baseline-bin"),
        _ => switchboard,
    };
    let server = start(system, bin, SECRET).await?;
    let common = Common::new(&server.url, server.pid(), 1, 200)?;
    Ok((server, common))
}

async fn measure_system(args: &Args, system: System, switchboard: &Path, secs: u64) -> anyhow::Result<SystemResult> {
    let (server, common) = serve(args, system, switchboard).await?;
    let mut scenario = args.fanout(system, secs);
    let connections = fanout::connections(&common, &scenario).await?;
    eprintln!("== {}: maximum (window {} per sender)", system.name(), args.window);
    let max = fanout::measure(&common, &scenario, connections.clone()).await?;
    let rss = common.server.rss_bytes();
    let half_rate = ((max.deliveries_per_s / 2.0 / args.receivers()).round() as u32).max(1);
    scenario.window = None;
    scenario.rate = Some(half_rate);
    eprintln!("== {}: half of the maximum ({half_rate} msg/s per sender)", system.name());
    let half = fanout::measure(&common, &scenario, connections).await?;
    server.stop_keeping_log(&args.out.join(format!("{}-fanout.log", system.name()))).await?;
    write_timelines(&args.out, system, "fanout", &[("max", &max), ("half", &half)])?;
    Ok(SystemResult {
        name: system.name(),
        faults: Faults::of(&[&max, &half]),
        deliveries_per_s: max.deliveries_per_s,
        p50_ms: half.latency_ms.p50,
        p99_ms: half.latency_ms.p99,
        server_rss_bytes: rss,
        server_cpu_s: max.server_cpu_s,
        max_phase: PhaseResult::of(&max, None, Some(args.window)),
        half_load_phase: PhaseResult::of(&half, Some(half_rate), None),
        common_load_p99_ms: None,
        common_load_phase: None,
        system,
    })
}

/// One more fan-out phase for `system` on a fresh server: an open loop at
/// `rate` messages per second per sender.
async fn measure_common(
    args: &Args,
    system: System,
    switchboard: &Path,
    secs: u64,
    rate: u32,
) -> anyhow::Result<Measured> {
    let (server, common) = serve(args, system, switchboard).await?;
    let scenario = fanout::Args { rate: Some(rate), window: None, ..args.fanout(system, secs) };
    let connections = fanout::connections(&common, &scenario).await?;
    eprintln!("== {}: the common load ({rate} msg/s per sender)", system.name());
    let measured = fanout::measure(&common, &scenario, connections).await;
    server.stop_keeping_log(&args.out.join(format!("{}-common.log", system.name()))).await?;
    let measured = measured?;
    write_timelines(&args.out, system, "fanout", &[("common", &measured)])?;
    Ok(measured)
}

/// Writes each phase's timeline chart into `out` as `<system>-<phase>.svg`.
fn write_timelines(out: &Path, system: System, scenario: &str, phases: &[(&str, &Measured)]) -> anyhow::Result<()> {
    for (phase, measured) in phases {
        let title = format!("{} {scenario} ({phase})", system.name());
        let chart = load_tests::report::timeline_chart(&title, &measured.timeline)?;
        std::fs::write(out.join(format!("{}-{phase}.svg", system.name())), chart)?;
    }
    Ok(())
}

/// One system's chat figures in `summary.json`.
#[derive(Debug, Serialize)]
struct ChatResult {
    name: &'static str,
    #[serde(flatten)]
    faults: Faults,
    /// Maximum deliveries per second with one send in flight per user.
    deliveries_per_s: f64,
    /// Latency at the fixed total rate.
    p50_ms: f64,
    p99_ms: f64,
    max_phase: PhaseResult,
    fixed_rate_phase: PhaseResult,
}

/// `chat`: `--chat-pairs` 1:1 chats, both users sending; the maximum with
/// one send in flight per user, then latency at `--chat-rate` in total.
async fn measure_chat(args: &Args, system: System, switchboard: &Path, secs: u64) -> anyhow::Result<ChatResult> {
    let (server, common) = serve(args, system, switchboard).await?;
    let dialect = system.dialect();
    let connections = chat::connections(&common, dialect, SECRET, args.chat_pairs).await?;
    let (warmup, duration) = (Duration::from_secs(2), Duration::from_secs(secs));
    eprintln!("== {}: chat maximum ({} pairs, one send in flight each)", system.name(), args.chat_pairs);
    let max = chat::measure(&common, dialect, Load::Window(1), warmup, duration, connections.clone()).await?;
    let rate = (args.chat_rate / (2 * args.chat_pairs as u32)).max(1);
    eprintln!("== {}: chat at {rate} msg/s per user", system.name());
    let fixed = chat::measure(&common, dialect, Load::Rate(rate), warmup, duration, connections).await?;
    server.stop_keeping_log(&args.out.join(format!("{}-chat.log", system.name()))).await?;
    write_timelines(&args.out, system, "chat", &[("chat-max", &max), ("chat-rate", &fixed)])?;
    Ok(ChatResult {
        name: system.name(),
        faults: Faults::of(&[&max, &fixed]),
        deliveries_per_s: max.deliveries_per_s,
        p50_ms: fixed.latency_ms.p50,
        p99_ms: fixed.latency_ms.p99,
        max_phase: PhaseResult::of(&max, None, Some(1)),
        fixed_rate_phase: PhaseResult::of(&fixed, Some(rate), None),
    })
}

fn chat_markdown(results: &[ChatResult], args: &Args) -> String {
    let rate = results.first().and_then(|r| r.fixed_rate_phase.rate_per_sender).unwrap_or(0);
    let mut table = format!(
        "\nChat: {} pairs of users in 1:1 chats, both sending; the maximum with one send in flight per user, \
         latency at {} msg/s in total.\n\n\
         | system | max deliveries/s | server CPU during max (s) | generator CPU during max (s) | steal during max (s) | p50 at the fixed rate (ms) | p99 at the fixed rate (ms) | generator send lag p99 at the fixed rate (ms) | lost | duplicated | errors | disconnects |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.chat_pairs,
        u64::from(rate) * 2 * args.chat_pairs as u64
    );
    for r in results {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {} | {} | {} | {:.2} | {:.2} | {} | {} |",
            r.faults.label(r.name),
            r.deliveries_per_s,
            seconds(r.max_phase.server_cpu_s),
            seconds(r.max_phase.generator_cpu_s),
            seconds(r.max_phase.machine_steal_s),
            r.p50_ms,
            r.p99_ms,
            r.fixed_rate_phase.send_lag_p99_ms.map_or("-".to_owned(), |lag| format!("{lag:.2}")),
            r.faults.cells(),
        );
    }
    let rows: Vec<_> = results.iter().map(|r| (r.name, r.deliveries_per_s, r.faults.valid)).collect();
    ratio_lines(&mut table, "chat", &rows);
    table
}

/// Appends the engine's ratio to each peer in `rows` (name, maximum
/// deliveries/s, whether the row is valid) that has a target in
/// `scenario`, with that target, saying so when the peer's row is invalid.
fn ratio_lines(table: &mut String, scenario: &str, rows: &[(&str, f64, bool)]) {
    let Some(&(_, engine, _)) = rows.iter().find(|&&(name, ..)| name == "switchboard") else { return };
    let prefix = if scenario == "fanout" { "" } else { "chat, " };
    for &(peer, rate, valid) in rows {
        let Some(target) = rounds::ratio_target(scenario, peer) else { continue };
        if rate > 0.0 {
            let caveat = if valid { "" } else { "; the peer's row is invalid" };
            let target = target.text("x");
            let _ = writeln!(table, "\n{prefix}switchboard / {peer}: {:.2}x (target {target}{caveat})", engine / rate);
        }
    }
}

/// A figure in seconds for a table cell, `-` when it was not measured.
fn seconds(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |seconds| format!("{seconds:.1}"))
}

fn markdown(results: &[SystemResult], scenario: &serde_json::Value) -> String {
    let mut table = format!(
        "Scenario: `{scenario}` on {} cores.\n\nDurability: {DURABILITY}.\n\nFraming: {FRAMING}.\n\nSteal: {STEAL}.\n\n\
         | system | max deliveries/s | p50 at half max (ms) | p99 at half max (ms) | p99 at the common load (ms) | generator send lag p99 at the common load (ms) | server RSS (MiB) | server CPU during max (s) | generator CPU during max (s) | steal during max (s) | lost | duplicated | errors | disconnects |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for r in results {
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            r.faults.label(r.name),
            r.deliveries_per_s,
            r.p50_ms,
            r.p99_ms,
            r.common_load_p99_ms.map_or("-".to_owned(), |p99| format!("{p99:.2}")),
            r.common_load_phase
                .as_ref()
                .and_then(|phase| phase.send_lag_p99_ms)
                .map_or("-".to_owned(), |lag| format!("{lag:.2}")),
            r.server_rss_bytes.map_or("-".to_owned(), |b| format!("{:.0}", b as f64 / 1_048_576.0)),
            seconds(r.server_cpu_s),
            seconds(r.max_phase.generator_cpu_s),
            seconds(r.max_phase.machine_steal_s),
            r.faults.cells(),
        );
    }
    let rows: Vec<_> = results.iter().map(|r| (r.name, r.deliveries_per_s, r.faults.valid)).collect();
    ratio_lines(&mut table, "fanout", &rows);
    table
}

/// Every system's maximum in each scenario run, and its fan-out p99 at
/// half of that maximum on a second axis.
fn bar_chart(results: &[SystemResult], chats: &[ChatResult]) -> anyhow::Result<String> {
    let mut names: Vec<String> = results.iter().map(|r| r.name.to_owned()).collect();
    for chat in chats {
        if !names.iter().any(|name| name == chat.name) {
            names.push(chat.name.to_owned());
        }
    }
    let column = |pairs: Vec<(&str, f64)>| -> Vec<f32> {
        let of = |name: &String| pairs.iter().find(|(of, _)| of == name).map_or(0.0, |(_, value)| *value as f32);
        names.iter().map(of).collect()
    };
    let mut series = Vec::new();
    if !results.is_empty() {
        let fanout = column(results.iter().map(|r| (r.name, r.deliveries_per_s)).collect());
        series.push(Series::new("fanout max deliveries/s".to_owned(), fanout));
    }
    if !chats.is_empty() {
        let chat = column(chats.iter().map(|r| (r.name, r.deliveries_per_s)).collect());
        series.push(Series::new("chat max deliveries/s".to_owned(), chat));
    }
    if !results.is_empty() {
        let mut p99 = Series::new(
            "fanout p99 ms at half max".to_owned(),
            column(results.iter().map(|r| (r.name, r.p99_ms)).collect()),
        );
        p99.y_axis_index = 1;
        series.push(p99);
    }
    let mut chart = BarChart::new(series, names);
    "switchboard vs centrifugo vs socket.io vs ceiling".clone_into(&mut chart.base.title.text);
    chart.base.width = 800.0;
    chart.base.height = 450.0;
    let mut latency_axis = chart.y_axis_configs[0].clone();
    latency_axis.formatter = Some("{c} ms".to_owned());
    chart.y_axis_configs.push(latency_axis);
    chart.svg().map_err(|error| anyhow::anyhow!("chart: {error:?}"))
}

/// What one comparison measured.
struct Outcome {
    results: Vec<SystemResult>,
    chats: Vec<ChatResult>,
}

impl Outcome {
    /// Its rows as [`rounds`] takes them.
    fn rows(&self) -> Vec<rounds::Row> {
        let fanout = self.results.iter().map(|r| rounds::Row {
            name: r.name,
            scenario: "fanout",
            max_deliveries_per_s: r.deliveries_per_s,
            same_load_p99_ms: r.common_load_p99_ms,
            valid: r.faults.valid,
            max_steal_s: r.max_phase.machine_steal_s,
        });
        let chat = self.chats.iter().map(|r| rounds::Row {
            name: r.name,
            scenario: "chat",
            max_deliveries_per_s: r.deliveries_per_s,
            same_load_p99_ms: Some(r.p99_ms),
            valid: r.faults.valid,
            max_steal_s: r.max_phase.machine_steal_s,
        });
        fanout.chain(chat).collect()
    }

    /// The engine's rows that lost or repeated deliveries.
    fn faulty_engine(&self) -> Vec<&'static str> {
        let engine = [System::Switchboard.name(), System::Dating.name(), System::Baseline.name()];
        let fanout = self.results.iter().map(|r| (r.name, r.faults));
        let chat = self.chats.iter().map(|r| (r.name, r.faults));
        fanout
            .chain(chat)
            .filter(|(name, faults)| !faults.valid && engine.contains(name))
            .map(|(name, _)| name)
            .collect()
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let secs = args.phase_secs.unwrap_or(if args.quick { 5 } else { 20 });
    anyhow::ensure!(args.group_size >= 2 && args.groups >= 1, "groups of at least 2 members");
    anyhow::ensure!(args.chat_pairs >= 1, "at least one pair of users");
    anyhow::ensure!(
        args.common_load_fraction > 0.0 && args.common_load_fraction <= 1.0,
        "--common-load-fraction is in (0, 1]"
    );
    std::fs::create_dir_all(&args.out)?;
    let systems = if args.systems.is_empty() {
        vec![System::Switchboard, System::Dating, System::Centrifugo, System::SocketIo, System::Ceiling]
    } else {
        args.systems.clone()
    };
    if let Some(baseline) = &args.baseline_bin {
        anyhow::ensure!(baseline.is_file(), "no baseline binary at {}", baseline.display());
    }
    anyhow::ensure!(
        !systems.contains(&System::Baseline) || args.baseline_bin.is_some(),
        "the system switchboard-baseline needs --baseline-bin"
    );
    let switchboard = switchboard_bin(args.switchboard_bin.as_deref())?;
    let scenarios =
        if args.scenarios.is_empty() { vec![Scenario::Fanout, Scenario::Chat] } else { args.scenarios.clone() };
    if args.repeat == 1 {
        let outcome = run_once(&args, &systems, &scenarios, &switchboard, secs).await?;
        let faulty = outcome.faulty_engine();
        anyhow::ensure!(
            faulty.is_empty(),
            "the engine lost or repeated deliveries ({}): see summary.md",
            faulty.join(", ")
        );
        return Ok(());
    }
    let cleared = rounds::clear_earlier_rounds(&args.out)?;
    if !cleared.is_empty() {
        eprintln!("removed an earlier run's {} from {}", cleared.join(", "), args.out.display());
    }
    let started = Instant::now();
    let mut done = Vec::new();
    let mut faulty = Vec::new();
    for round in 1..=args.repeat as usize {
        let order = rounds::order(&systems, round);
        let dir = format!("round-{round}");
        let names: Vec<&'static str> = order.iter().map(|system| system.name()).collect();
        eprintln!("=== round {round} of {}: {}", args.repeat, names.join(", "));
        let round_args = Args { out: args.out.join(&dir), ..args.clone() };
        std::fs::create_dir_all(&round_args.out)?;
        let outcome = run_once(&round_args, &order, &scenarios, &switchboard, secs).await?;
        faulty.extend(outcome.faulty_engine().into_iter().map(|name| format!("{name} in {dir}")));
        done.push(rounds::Round { round, dir, order: names, figures: rounds::figures(&outcome.rows()) });
        // After every round, so that an interrupted run keeps what it measured.
        write_rounds(&args.out, &done, started)?;
    }
    println!("{}", std::fs::read_to_string(args.out.join("summary.md"))?);
    anyhow::ensure!(
        faulty.is_empty(),
        "the engine lost or repeated deliveries ({}): see each round's summary.md",
        faulty.join(", ")
    );
    Ok(())
}

/// The top-level `summary.json` and `summary.md` of a repeated comparison.
fn write_rounds(out: &Path, done: &[rounds::Round], started: Instant) -> anyhow::Result<()> {
    let figures = rounds::aggregate(done);
    let summary = serde_json::json!({
        "repeat": done.len(),
        "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "elapsed_s": started.elapsed().as_secs_f64(),
        "persistence": DURABILITY,
        "framing": FRAMING,
        "steal": STEAL,
        "rounds": done,
        "figures": figures,
    });
    std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    let notes = format!("Durability: {DURABILITY}.\n\nFraming: {FRAMING}.\n\nSteal: {STEAL}.");
    std::fs::write(out.join("summary.md"), rounds::markdown(done, &figures, &notes))?;
    eprintln!("wrote {}/summary.json and summary.md ({} rounds)", out.display(), done.len());
    Ok(())
}

/// One comparison of `systems`, in that order, writing its summaries and
/// charts into `args.out`.
async fn run_once(
    args: &Args,
    systems: &[System],
    scenarios: &[Scenario],
    switchboard: &Path,
    secs: u64,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut results = Vec::new();
    let mut chats = Vec::new();
    for &system in systems {
        if scenarios.contains(&Scenario::Fanout) {
            results.push(measure_system(args, system, switchboard, secs).await?);
        }
        if scenarios.contains(&Scenario::Chat) {
            chats.push(measure_chat(args, system, switchboard, secs).await?);
        }
    }
    let mut common_load = None;
    if results.len() >= 2 {
        let lowest = results.iter().map(|r| r.deliveries_per_s).fold(f64::INFINITY, f64::min);
        let receivers = args.receivers();
        let rate = ((lowest * args.common_load_fraction / receivers).round() as u32).max(1);
        for result in &mut results {
            let measured = measure_common(args, result.system, switchboard, secs, rate).await?;
            result.faults.add(&measured);
            result.common_load_p99_ms = Some(measured.latency_ms.p99);
            result.common_load_phase = Some(PhaseResult::of(&measured, Some(rate), None));
        }
        common_load = Some(f64::from(rate) * receivers);
    }
    let scenario = serde_json::json!({
        "name": "fanout",
        "common_load": common_load.map(|deliveries| serde_json::json!({
            "deliveries_per_s": deliveries,
            "fraction_of_lowest_max": args.common_load_fraction,
        })),
        "group_size": args.group_size,
        "groups": args.groups,
        "window": args.window,
        "phase_secs": secs,
        "warmup_secs": 2,
        "persistence": DURABILITY,
        "framing": FRAMING,
        "steal": STEAL,
    });
    let summary = serde_json::json!({
        "scenario": scenario,
        "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "elapsed_s": started.elapsed().as_secs_f64(),
        "systems": results,
        "scenarios": {
            "chat": {
                "pairs": args.chat_pairs,
                "fixed_rate_total": args.chat_rate,
                "phase_secs": secs,
                "warmup_secs": 2,
                "systems": chats,
            },
        },
    });
    std::fs::write(args.out.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    let mut table = markdown(&results, &scenario);
    if !chats.is_empty() {
        table.push_str(&chat_markdown(&chats, args));
    }
    std::fs::write(args.out.join("summary.md"), &table)?;
    std::fs::write(args.out.join("chart.svg"), bar_chart(&results, &chats)?)?;
    println!("{table}");
    eprintln!("wrote {}/summary.json, summary.md and chart.svg", args.out.display());
    Ok(Outcome { results, chats })
}
