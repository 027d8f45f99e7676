//! CPU time of a process, for the benchmarks' per-operation figures.

use std::time::Duration;

/// CPU time of process `pid` ("self" for this one) so far, summed over its threads, in
/// nanoseconds: the first field of each `/proc/{pid}/task/{tid}/schedstat` (time spent
/// on a CPU). Finer than the 10 ms ticks of `/proc/{pid}/stat`.
pub(crate) fn cpu_time_of(pid: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Times process `pid` ("self" for this one) was put on a CPU so far, summed over its
/// threads: the third field of each `schedstat`. Per operation, it says how well work
/// is batched: each wake-up of a thread that slept counts one.
#[allow(dead_code)]
pub(crate) fn runs_of(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}
