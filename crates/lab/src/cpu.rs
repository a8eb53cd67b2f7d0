//! CPU time of processes and threads from `/proc`, for the benches' CPU
//! per call: what a proxy, a generator or a worker thread used over a run.

/// What `/proc/PID/stat` (or a task's `stat`) says about CPU use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// utime + stime, in clock ticks (all threads, for a process).
    pub ticks: u64,
    /// The parent's pid.
    pub ppid: u32,
    /// The state letter (`R`, `S`, `Z` for a zombie whose ticks are final).
    pub state: char,
}

/// Parses a `stat` line. The command name is in parentheses and may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let ppid = f.get(1)?.parse().ok()?;
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the
    // name and the state.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(ProcStat {
        ticks: utime + stime,
        ppid,
        state,
    })
}

/// A process's CPU, `None` once it is gone.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of `pids` and of every process whose parent is in
/// `parents` (or which is itself in `parents`), in clock ticks: a
/// Kamailio's workers are children of its main process.
pub fn ticks(pids: &[u32], parents: &[u32]) -> u64 {
    let mut sum: u64 = pids
        .iter()
        .filter_map(|&p| proc_stat(p))
        .map(|s| s.ticks)
        .sum();
    if parents.is_empty() {
        return sum;
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pids.contains(&pid) {
                continue;
            }
            if let Some(s) = proc_stat(pid) {
                if parents.contains(&pid) || parents.contains(&s.ppid) {
                    sum += s.ticks;
                }
            }
        }
    }
    sum
}

/// utime + stime of the threads of `pid` whose name starts with `prefix`.
pub fn thread_ticks(pid: u32, prefix: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|s| s.find('(').is_some_and(|i| s[i + 1..].starts_with(prefix)))
        .filter_map(|s| parse_stat(&s))
        .map(|s| s.ticks)
        .sum()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> f64 {
    sys::clock_ticks_per_second() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "4242 (dce worker (0)) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 31 0 0 20 0 3 0 1000 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.ticks, 281);
        assert_eq!(s.ppid, 17);
        assert_eq!(s.state, 'S');
    }

    #[test]
    fn this_process_has_a_stat_and_a_parent() {
        let s = proc_stat(std::process::id()).unwrap();
        assert!(s.ppid > 0);
        assert!(ticks(&[std::process::id()], &[]) >= s.ticks);
    }
}
