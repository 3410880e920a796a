//! The server's resident memory and CPU time, from /proc, when it runs on
//! this machine and its pid was given: the process's and its live
//! descendants' together (a Node primary and its workers are one server).
//! And the machine's steal time: CPU time a virtual machine's hypervisor
//! gave to someone else while this one had work to run.

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

/// This process's own CPU time (user plus system, every thread, no
/// children) in seconds: the load generator's, beside the server's.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_of(std::process::id())
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

/// CPU seconds stolen from this machine's cores since boot (all cores
/// together), from /proc/stat; `None` where the kernel does not count it.
pub fn machine_steal_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    steal_ticks(&stat).map(|ticks| ticks as f64 / USER_HZ)
}

/// The steal column (the eighth number) of /proc/stat's all-cores `cpu` line.
fn steal_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.split_whitespace().next() == Some("cpu"))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

/// Clock ticks per second in /proc: 100 on every Linux architecture the project builds for.
const USER_HZ: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::steal_ticks;

    #[test]
    fn steal_is_the_eighth_number_of_the_all_cores_line() {
        let stat = "cpu  4705 356 584 3699176 23060 0 277 1234 0 0\n\
                    cpu0 1393 280 301 1849514 11572 0 150 617 0 0\n\
                    intr 123 0 0\n";
        assert_eq!(steal_ticks(stat), Some(1234));
    }

    #[test]
    fn a_stat_without_the_column_or_the_line_gives_nothing() {
        assert_eq!(steal_ticks("cpu  4705 356 584 3699176\n"), None, "a kernel before steal accounting");
        assert_eq!(steal_ticks("cpu0 1 2 3 4 5 6 7 8 9\n"), None, "only per-core lines");
        assert_eq!(steal_ticks("cpu  1 2 3 4 5 6 7 x 9\n"), None, "not a number");
        assert_eq!(steal_ticks(""), None);
    }

    #[test]
    fn this_machine_reports_its_steal() {
        assert!(super::machine_steal_seconds().is_some_and(|seconds| seconds >= 0.0));
    }
}
