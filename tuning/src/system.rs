//! Reading the running machine and the profile file: the only part of this crate that touches
//! the file system.
//!
//! Every read is best effort: a missing or unreadable file becomes `None` in [`SystemFacts`]
//! (and an `info` finding), never an error, because containers and VMs hide much of `/proc`
//! and `/sys`.

use std::fs;
use std::path::{Path, PathBuf};

use punktfunk_engine::io::pin;

use crate::check::{self, Finding, SystemFacts};
use crate::error::{TuningError, Warning};
use crate::settings::Settings;

/// A profile loaded from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// The resolved values.
    pub settings: Settings,
    /// Values that work but look wrong; already logged at `warn` level.
    pub warnings: Vec<Warning>,
}

/// Reads, parses and validates a profile, checking pinned cores against the cores this process
/// may run on. Warnings are logged with `tracing` and returned.
pub fn load(path: impl AsRef<Path>) -> Result<Loaded, TuningError> {
    let path = path.as_ref();
    let text = fs::read_to_string(path).map_err(|error| TuningError::Read {
        path: path.to_owned(),
        error,
    })?;
    let allowed = pin::allowed_cores();
    let loaded = crate::parse(&text, path, allowed.as_deref())?;
    for w in &loaded.warnings {
        tracing::warn!(profile = %path.display(), field = w.field, "{}", w.reason);
    }
    Ok(loaded)
}

/// Inspects the running machine against `settings`: core count and affinity vs pinned cores,
/// socket buffer limits, busy-polling sysctls, io_uring availability, kernel version and CPU
/// frequency governors.
pub fn check_system(settings: &Settings) -> Vec<Finding> {
    check::findings(&read_facts(), settings)
}

/// Gathers [`SystemFacts`] from `/proc`, `/sys` and the affinity mask.
pub fn read_facts() -> SystemFacts {
    SystemFacts {
        allowed_cores: pin::allowed_cores(),
        kernel_release: read_trimmed("/proc/sys/kernel/osrelease"),
        rmem_max: read_number("/proc/sys/net/core/rmem_max"),
        wmem_max: read_number("/proc/sys/net/core/wmem_max"),
        busy_poll: read_number("/proc/sys/net/core/busy_poll"),
        busy_read: read_number("/proc/sys/net/core/busy_read"),
        io_uring_disabled: read_number("/proc/sys/kernel/io_uring_disabled")
            .and_then(|v| u32::try_from(v).ok()),
        governors: read_governors(Path::new("/sys/devices/system/cpu")),
        cap_sys_nice: read_trimmed("/proc/self/status").and_then(|s| cap_sys_nice(&s)),
        rlimit_nice: read_trimmed("/proc/self/limits")
            .and_then(|s| soft_limit(&s, "Max nice priority")),
        rlimit_rtprio: read_trimmed("/proc/self/limits")
            .and_then(|s| soft_limit(&s, "Max realtime priority")),
    }
}

/// Whether `CapEff` in a `/proc/self/status` text has `CAP_SYS_NICE` (bit 23, capability.h).
fn cap_sys_nice(status: &str) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << 23) != 0)
}

/// The soft limit of the `/proc/self/limits` row named `name` ("unlimited" reads as u64::MAX).
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        v => v.parse().ok(),
    }
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn read_number(path: impl AsRef<Path>) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// `cpuN/cpufreq/scaling_governor` for every `cpuN` under `root`, sorted by N.
fn read_governors(root: &Path) -> Vec<(usize, String)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<(usize, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let cpu: usize = name.to_str()?.strip_prefix("cpu")?.parse().ok()?;
            let governor = read_trimmed(e.path().join("cpufreq/scaling_governor"))?;
            Some((cpu, governor))
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governors_are_read_from_a_sysfs_like_tree() {
        let root = std::env::temp_dir().join(format!("pf-tuning-gov-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (cpu, gov) in [(10, "powersave"), (2, "performance")] {
            let dir = root.join(format!("cpu{cpu}/cpufreq"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("scaling_governor"), format!("{gov}\n")).unwrap();
        }
        fs::create_dir_all(root.join("cpufreq")).unwrap(); // not a cpuN entry
        fs::create_dir_all(root.join("cpu3")).unwrap(); // no cpufreq
        let got = read_governors(&root);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            got,
            [(2, "performance".to_owned()), (10, "powersave".to_owned())]
        );
    }

    #[test]
    fn priority_facts_are_read_from_proc_texts() {
        assert_eq!(
            cap_sys_nice("Name:\tx\nCapEff:\t000001fffeffffff\n"),
            Some(true)
        );
        assert_eq!(cap_sys_nice("CapEff:\t0000000000000000\n"), Some(false));
        assert_eq!(cap_sys_nice("Name:\tx\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max nice priority         30                   40                   \n\
                      Max realtime priority     unlimited            unlimited            \n";
        assert_eq!(soft_limit(limits, "Max nice priority"), Some(30));
        assert_eq!(soft_limit(limits, "Max realtime priority"), Some(u64::MAX));
        assert_eq!(soft_limit(limits, "Max open files"), None);
    }

    #[test]
    fn this_machine_can_be_checked() {
        let findings = check_system(&Settings::default());
        assert!(findings.iter().any(|f| f.topic == "cores"));
        for f in &findings {
            eprintln!("{f}");
        }
    }
}
