//! Once a second: the counters' rates, the server's CPU and RSS, one live
//! progress line on stderr, and a sample for the report's timeline.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::proc_stats::{ServerProbe, machine_steal_seconds, own_cpu_seconds};
use crate::traffic::Counters;

/// One second of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Seconds since the clock started (end of this sample's second).
    pub t_s: u32,
    /// Connections open at the end of the second.
    pub open: u64,
    pub sent_per_s: u64,
    pub acked_per_s: u64,
    pub deliveries_per_s: u64,
    pub errors: u64,
    pub disconnects: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub server_cpu_s: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    /// This generator's own CPU time over the second: on a shared machine,
    /// what the load itself took from the cores the server runs on.
    pub generator_cpu_s: Option<f64>,
    /// CPU time the hypervisor took from this machine's cores over the
    /// second (all cores together): a slower machine for that second.
    pub machine_steal_s: Option<f64>,
}

/// The sampler of one run.
#[derive(Debug)]
pub struct Progress {
    label: String,
    server: ServerProbe,
    started: Instant,
    samples: Vec<Sample>,
    last: [u64; 3],
    last_cpu: Option<f64>,
    last_generator_cpu: Option<f64>,
    last_steal: Option<f64>,
    /// A terminal gets one line rewritten in place; a log gets a line every 5 s.
    terminal: bool,
}

impl Progress {
    pub(crate) fn start(label: &str, server: ServerProbe) -> Self {
        Self {
            label: label.to_owned(),
            server,
            started: Instant::now(),
            samples: Vec::new(),
            last: [0; 3],
            last_cpu: server.cpu_seconds(),
            last_generator_cpu: own_cpu_seconds(),
            last_steal: machine_steal_seconds(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// When the next sample is due.
    pub(crate) fn next_tick(&self) -> Instant {
        self.started + Duration::from_secs(self.samples.len() as u64 + 1)
    }

    /// Takes one second's sample; `last` forces it onto the log.
    pub(crate) fn sample(&mut self, counters: &Counters, last: bool) {
        let now = [
            counters.sent.load(Ordering::Relaxed),
            counters.acked.load(Ordering::Relaxed),
            counters.delivered.load(Ordering::Relaxed),
        ];
        let cpu = self.server.cpu_seconds();
        let generator_cpu = own_cpu_seconds();
        let steal = machine_steal_seconds();
        let sample = Sample {
            t_s: self.samples.len() as u32 + 1,
            open: counters.open.load(Ordering::Relaxed).saturating_sub(counters.closed.load(Ordering::Relaxed)),
            sent_per_s: now[0] - self.last[0],
            acked_per_s: now[1] - self.last[1],
            deliveries_per_s: now[2] - self.last[2],
            errors: counters.errors.load(Ordering::Relaxed),
            disconnects: counters.disconnects.load(Ordering::Relaxed),
            p50_ms: None,
            p99_ms: None,
            server_cpu_s: since(cpu, self.last_cpu),
            server_rss_bytes: self.server.rss_bytes(),
            generator_cpu_s: since(generator_cpu, self.last_generator_cpu),
            machine_steal_s: since(steal, self.last_steal),
        };
        self.last = now;
        self.last_cpu = cpu;
        self.last_generator_cpu = generator_cpu;
        self.last_steal = steal;
        let line = format!(
            "{} {:>3}s  open {}  sent/s {}  acked/s {}  delivered/s {}  errors {}  disconnects {}  server {}  generator cpu {}  steal {}",
            self.label,
            sample.t_s,
            sample.open,
            sample.sent_per_s,
            sample.acked_per_s,
            sample.deliveries_per_s,
            sample.errors,
            sample.disconnects,
            match (sample.server_cpu_s, sample.server_rss_bytes) {
                (Some(cpu), Some(rss)) => format!("cpu {:.0}% rss {} MiB", cpu * 100.0, rss >> 20),
                _ => "-".to_owned(),
            },
            percent(sample.generator_cpu_s),
            percent(sample.machine_steal_s),
        );
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K{line}");
        } else if last || sample.t_s.is_multiple_of(5) {
            let _ = writeln!(stderr, "{line}");
        }
        self.samples.push(sample);
    }

    /// Prints a message without tearing the progress line.
    pub(crate) fn note(&self, message: &str) {
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal { writeln!(stderr, "\r\x1b[2K{message}") } else { writeln!(stderr, "{message}") };
    }

    /// Ends the live line and answers the timeline.
    pub(crate) fn finish(self) -> Vec<Sample> {
        if self.terminal {
            eprintln!();
        }
        self.samples
    }
}

/// A running total's growth since `before`, when both were read.
fn since(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    now.zip(before).map(|(now, before)| now - before)
}

/// Seconds of CPU over one second as a share of a core, `-` when unknown.
fn percent(seconds: Option<f64>) -> String {
    seconds.map_or("-".to_owned(), |seconds| format!("{:.0}%", seconds * 100.0))
}
