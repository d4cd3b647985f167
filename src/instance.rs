//! The instance's memory, for sizing Noslated to it.
//!
//! Noslated admits a worker only if its declared memory (the profile's
//! `resourceLimit.memory`, 512 MiB unless set) still fits in a virtual pool,
//! `NOSLATED_VIRTUAL_MEMORY_POOL_SIZE`, 1 GiB by default whatever the machine.
//! When a scale-up does not fit, the control plane fails the requests that
//! wait for it ("No enough virtual memory") instead of letting them wait for
//! a running worker. The instance's memory is the honest size of that pool:
//! the cgroup limit a container runs under (FC's instance memory), else the
//! machine's memory. noslate-fc passes it to the planes it starts when the
//! user has not set the variable.

use std::path::Path;

/// Limits at or above this are "no limit" (cgroup v1 reports
/// 9223372036854771712 when unlimited; v2 says `max`).
const UNLIMITED: u64 = 1 << 62;

/// The tightest memory limit that applies to this process, in bytes, and
/// where it was read; None when no cgroup limits it and /proc/meminfo is
/// unreadable.
pub fn memory_limit() -> Option<(u64, String)> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let own = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    let mut files = vec![
        // Inside a container (cgroup namespace, or v1 with the container's
        // cgroup mounted as the hierarchy's root).
        "/sys/fs/cgroup/memory.max".to_string(),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
    ];
    // On a host: our own cgroup's file in each hierarchy.
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            files.push(format!("/sys/fs/cgroup/{path}/memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(format!("/sys/fs/cgroup/memory/{path}/memory.limit_in_bytes"));
        }
    }
    let cgroup = files
        .iter()
        .filter_map(|f| Some((parse_limit(&read(Path::new(f))?)?, f.clone())))
        .min_by_key(|(bytes, _)| *bytes);
    cgroup.or_else(|| Some((parse_mem_total(&read(Path::new("/proc/meminfo"))?)?, "/proc/meminfo".to_string())))
}

/// A cgroup limit file's content: bytes, or None for no limit or garbage.
pub fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n > 0 && n < UNLIMITED).then_some(n)
}

/// `MemTotal:  24683312 kB` from /proc/meminfo, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limits_in_bytes_and_the_unlimited_forms() {
        assert_eq!(parse_limit("536870912\n"), Some(512 << 20));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("0\n"), None);
        assert_eq!(parse_limit(""), None);
    }

    #[test]
    fn mem_total_from_meminfo() {
        let meminfo = "MemTotal:       24683312 kB\nMemFree:        16555052 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24683312 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }
}
