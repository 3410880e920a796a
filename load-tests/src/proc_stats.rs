//! The server's resident memory and CPU time, from /proc, when it runs on
//! this machine and its pid was given: the process's and its live
//! descendants' together (a Node primary and its workers are one server).

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
        let pid = self.pid?;
        let own = rss_of(pid)?;
        Some(own + descendants(pid).into_iter().filter_map(rss_of).sum::<u64>())
    }

    /// User plus system CPU time in seconds.
    pub fn cpu_seconds(self) -> Option<f64> {
        let pid = self.pid?;
        let own = cpu_of(pid)?;
        Some(own + descendants(pid).into_iter().filter_map(cpu_of).sum::<f64>())
    }
}

/// Every live descendant of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else { continue };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|child| child.parse().ok()) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / USER_HZ)
}

/// Clock ticks per second in /proc: 100 on every Linux architecture the project builds for.
const USER_HZ: f64 = 100.0;
