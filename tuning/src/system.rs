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
        memlock: read_trimmed("/proc/self/limits")
            .and_then(|s| soft_limit(&s, "Max locked memory")),
        send_support: Some({
            let caps = punktfunk_engine::io::Caps::probe();
            crate::check::SendSupport {
                io_uring: caps.uring && caps.uring_send,
                udp_segment: caps.gso,
            }
        }),
        nics: read_nics(),
    }
}

/// Physical interfaces (with a `device` link in `/sys/class/net`), their offloads and rings
/// from `ethtool` (when installed) and their interrupts from `/proc/interrupts`.
fn read_nics() -> Vec<crate::check::Nic> {
    let Ok(entries) = fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let interrupts = read_trimmed("/proc/interrupts").unwrap_or_default();
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("device").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let ethtool = |flag: &str| {
                std::process::Command::new("ethtool")
                    .args([flag, &name])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            };
            let features = ethtool("-k");
            let rings = ethtool("-g").map(|t| parse_rings(&t)).unwrap_or_default();
            let irqs = irqs_of(&interrupts, &name)
                .into_iter()
                .map(|irq| {
                    let cpus = read_trimmed(format!("/proc/irq/{irq}/smp_affinity_list"))
                        .map(|l| parse_cpu_list(&l))
                        .unwrap_or_default();
                    (irq, cpus)
                })
                .collect();
            crate::check::Nic {
                udp_segmentation_offload: features
                    .as_deref()
                    .and_then(|t| feature(t, "tx-udp-segmentation")),
                gro: features
                    .as_deref()
                    .and_then(|t| feature(t, "generic-receive-offload")),
                tx_ring: rings.1,
                rx_ring: rings.0,
                irqs,
                name,
            }
        })
        .collect()
}

/// `name: on|off [fixed]` from `ethtool -k` output.
fn feature(text: &str, name: &str) -> Option<bool> {
    let rest = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))?;
    match rest.split_whitespace().next()? {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// A ring's (current, maximum) descriptors.
type Ring = Option<(u32, u32)>;

/// (RX ring, TX ring) from `ethtool -g` output: the first `RX:` and `TX:` rows are the
/// maxima, the second ones the current settings.
fn parse_rings(text: &str) -> (Ring, Ring) {
    let values = |key: &str| -> Vec<u32> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    };
    let pair = |v: Vec<u32>| (v.len() >= 2).then(|| (v[1], v[0]));
    (pair(values("RX:")), pair(values("TX:")))
}

/// IRQ numbers of `/proc/interrupts` rows whose name mentions `iface` (`eth0-TxRx-0`).
fn irqs_of(interrupts: &str, iface: &str) -> Vec<u32> {
    interrupts
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .last()
                .is_some_and(|n| n == iface || n.starts_with(&format!("{iface}-")))
        })
        .filter_map(|l| l.trim().split(':').next()?.trim().parse().ok())
        .collect()
}

/// `0-3,8,10-11` → [0, 1, 2, 3, 8, 10, 11].
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Makes the change `apply` describes (act; needs root). Returns what changed, e.g.
/// `net.core.wmem_max: 212992 -> 8388608`.
pub fn apply(apply: &crate::check::Apply) -> Result<String, String> {
    use crate::check::Apply;
    match apply {
        Apply::Sysctl { key, value } => {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let before = read_trimmed(&path).unwrap_or_else(|| "?".into());
            fs::write(&path, value.to_string()).map_err(|e| format!("{key}: {e}"))?;
            Ok(format!("{key}: {before} -> {value}"))
        }
        Apply::Write { path, value } => {
            let before = read_trimmed(path).unwrap_or_else(|| "?".into());
            fs::write(path, value).map_err(|e| format!("{path}: {e}"))?;
            Ok(format!("{path}: {before} -> {value}"))
        }
        Apply::Run(argv) => {
            let (prog, args) = argv.split_first().ok_or("empty command")?;
            let out = std::process::Command::new(prog)
                .args(args)
                .output()
                .map_err(|e| format!("{prog}: {e}"))?;
            if out.status.success() {
                Ok(format!("ran `{}`", argv.join(" ")))
            } else {
                Err(format!(
                    "`{}`: {}",
                    argv.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
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
    fn ethtool_and_interrupt_texts_parse() {
        let k = "Features for eth0:\nrx-checksumming: on\ntx-udp-segmentation: off [fixed]\n\
                 generic-receive-offload: on\n";
        assert_eq!(feature(k, "tx-udp-segmentation"), Some(false));
        assert_eq!(feature(k, "generic-receive-offload"), Some(true));
        assert_eq!(feature(k, "rx-gro-hw"), None);
        let g = "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nRX Mini:\tn/a\n\
                 TX:\t\t4096\nCurrent hardware settings:\nRX:\t\t1024\nTX:\t\t256\n";
        assert_eq!(parse_rings(g), (Some((1024, 4096)), Some((256, 4096))));
        assert_eq!(parse_rings("nothing"), (None, None));
        let irq = "           CPU0       CPU1\n  33:   1  2  PCI-MSI 1-edge  eth0-TxRx-0\n\
                   34:  0  0  PCI-MSI  eth0\n 35: 0 0 PCI-MSI eth01\n NMI: 0 0 Non-maskable\n";
        assert_eq!(irqs_of(irq, "eth0"), [33, 34]);
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("garbage"), Vec::<usize>::new());
    }

    #[test]
    fn applying_writes_and_reports_the_change() {
        let path = std::env::temp_dir().join(format!("pf-tuning-apply-{}", std::process::id()));
        fs::write(&path, "1\n").unwrap();
        let what = apply(&crate::check::Apply::Write {
            path: path.to_string_lossy().into_owned(),
            value: "4-7".into(),
        })
        .unwrap();
        assert!(what.ends_with(": 1 -> 4-7"), "{what}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "4-7");
        fs::remove_file(&path).unwrap();
        let e = apply(&crate::check::Apply::Run(vec!["false".into()])).unwrap_err();
        assert!(e.contains("`false`"), "{e}");
    }

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
