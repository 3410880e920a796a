//! The server's resident memory and CPU time, from /proc, when it runs on
//! this machine and its pid was given.

/// Where to read the server's figures from (nothing when no pid was given).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerProbe {
    pid: Option<u32>,
}

impl ServerProbe {
    pub fn new(pid: Option<u32>) -> Self {
        Self { pid }
    }

    /// Resident set size in bytes.
    pub fn rss_bytes(self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// User plus system CPU time in seconds.
    pub fn cpu_seconds(self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / USER_HZ)
    }
}

/// Clock ticks per second in /proc: 100 on every Linux architecture the project builds for.
const USER_HZ: f64 = 100.0;
