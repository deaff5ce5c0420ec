//! Judging a machine against resolved [`Settings`]: pure functions over [`SystemFacts`].
//!
//! The facts are gathered by [`crate::system`]; keeping the judgement here means every finding
//! can be tested with a literal machine description.

use std::fmt;

use punktfunk_engine::config::{SendPathPreference, ThreadPriority};
use punktfunk_engine::pipeline::StageId;

use crate::settings::{Settings, core_list};

/// What the running machine looks like, as far as streaming cares. `None` means unknown
/// (the file was missing or unreadable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemFacts {
    /// Cores this process may run on (its affinity mask).
    pub allowed_cores: Option<Vec<usize>>,
    /// `/proc/sys/kernel/osrelease`, e.g. `6.8.0-45-generic`.
    pub kernel_release: Option<String>,
    /// `/proc/sys/net/core/rmem_max`, bytes.
    pub rmem_max: Option<u64>,
    /// `/proc/sys/net/core/wmem_max`, bytes.
    pub wmem_max: Option<u64>,
    /// `/proc/sys/net/core/busy_poll`, µs (poll/select/epoll).
    pub busy_poll: Option<u64>,
    /// `/proc/sys/net/core/busy_read`, µs (blocking reads without `SO_BUSY_POLL`).
    pub busy_read: Option<u64>,
    /// `/proc/sys/kernel/io_uring_disabled` (Linux 6.6+): 0 all, 1 privileged or
    /// `kernel.io_uring_group` only, 2 nobody. `None` on older kernels.
    pub io_uring_disabled: Option<u32>,
    /// `(cpu, governor)` from `/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`; empty
    /// where cpufreq is not exposed (most VMs and containers).
    pub governors: Vec<(usize, String)>,
    /// `CAP_SYS_NICE` in the effective set (`CapEff` of `/proc/self/status`, bit 23).
    pub cap_sys_nice: Option<bool>,
    /// Soft `RLIMIT_NICE` ("Max nice priority" in `/proc/self/limits`): a thread may lower its
    /// nice value down to `20 - limit` without `CAP_SYS_NICE`.
    pub rlimit_nice: Option<u64>,
    /// Soft `RLIMIT_RTPRIO` ("Max realtime priority"): the highest `SCHED_FIFO` priority a
    /// thread may take without `CAP_SYS_NICE`.
    pub rlimit_rtprio: Option<u64>,
    /// Soft `RLIMIT_MEMLOCK` in bytes ("Max locked memory"; unlimited = `u64::MAX`).
    pub memlock: Option<u64>,
    /// What the kernel's send paths did when probed (`None`: not probed).
    pub send_support: Option<SendSupport>,
    /// Physical network interfaces (those with a `device` in sysfs).
    pub nics: Vec<Nic>,
}

/// The send features a probe found working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendSupport {
    /// An io_uring could be set up and sent a datagram.
    pub io_uring: bool,
    /// A `UDP_SEGMENT` (GSO) send arrived as correctly cut datagrams.
    pub udp_segment: bool,
}

/// A network interface as `ethtool` and `/proc/interrupts` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nic {
    /// Interface name.
    pub name: String,
    /// `tx-udp-segmentation` (UDP GSO in hardware), if `ethtool -k` answered.
    pub udp_segmentation_offload: Option<bool>,
    /// `generic-receive-offload`.
    pub gro: Option<bool>,
    /// TX ring: (current, maximum) descriptors, if `ethtool -g` answered.
    pub tx_ring: Option<(u32, u32)>,
    /// RX ring: (current, maximum).
    pub rx_ring: Option<(u32, u32)>,
    /// Interrupts whose `/proc/interrupts` name contains the interface's: (irq, CPUs it may
    /// run on).
    pub irqs: Vec<(u32, Vec<usize>)>,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine as it is.
    Ok,
    /// Worth knowing; no action needed.
    Info,
    /// Will cost latency or throughput, or make a setting ineffective; says what to change.
    Warn,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warn => "warn",
        })
    }
}

/// One observation about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How much it matters.
    pub level: Level,
    /// Short subject: `cores`, `wmem_max`, `io_uring`, …
    pub topic: &'static str,
    /// What was found and, for a warning, what to do.
    pub text: String,
    /// The command that fixes it, where one does.
    pub fix: Option<Fix>,
}

/// How to fix a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// The exact command (as root), printed by `punktfunk tune check`.
    pub command: String,
    /// What `punktfunk tune apply` does itself: only changes that are safe to make unasked
    /// (raising limits and ring sizes, moving interrupts off the stage cores), never ones that
    /// weaken security or change power use.
    pub apply: Option<Apply>,
}

/// A change `punktfunk tune apply` can make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// Write `value` to the sysctl `key` (`net.core.wmem_max` → `/proc/sys/net/core/wmem_max`).
    Sysctl {
        /// Dotted name.
        key: String,
        /// New value.
        value: u64,
    },
    /// Write `value` to the file `path` (`/proc/irq/N/smp_affinity_list`).
    Write {
        /// File.
        path: String,
        /// Contents.
        value: String,
    },
    /// Run a program (`ethtool -G …`).
    Run(Vec<String>),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.level, self.topic, self.text)?;
        if let Some(fix) = &self.fix {
            let how = if fix.apply.is_some() {
                "fix (tune apply does it)"
            } else {
                "fix"
            };
            write!(f, "\n        {how}: {}", fix.command)?;
        }
        Ok(())
    }
}

/// Parses the leading `major.minor` of a kernel release string.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

struct Out(Vec<Finding>);

impl Out {
    fn push(&mut self, level: Level, topic: &'static str, text: String) {
        self.0.push(Finding {
            level,
            topic,
            text,
            fix: None,
        });
    }

    fn push_fix(&mut self, level: Level, topic: &'static str, text: String, fix: Fix) {
        self.0.push(Finding {
            level,
            topic,
            text,
            fix: Some(fix),
        });
    }
}

/// A sysctl fix `tune apply` may make: `sysctl -w key=value`.
fn sysctl_fix(key: &str, value: u64) -> Fix {
    Fix {
        command: format!(
            "sysctl -w {key}={value} (and to keep it: echo '{key} = {value}' > /etc/sysctl.d/90-punktfunk.conf)"
        ),
        apply: Some(Apply::Sysctl {
            key: key.to_owned(),
            value,
        }),
    }
}

/// Everything worth saying about `facts` given `settings`, in a fixed topic order.
pub fn findings(facts: &SystemFacts, settings: &Settings) -> Vec<Finding> {
    let mut out = Out(Vec::new());
    cores(facts, settings, &mut out);
    kernel(facts, settings, &mut out);
    buffers(facts, settings, &mut out);
    busy_polling(facts, settings, &mut out);
    io_uring(facts, settings, &mut out);
    governor(facts, settings, &mut out);
    priority(facts, settings, &mut out);
    send_support(facts, settings, &mut out);
    memlock(facts, settings, &mut out);
    nics(facts, settings, &mut out);
    out.0
}

fn send_support(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let Some(s) = facts.send_support else {
        return;
    };
    let path = settings.send.path;
    let uring = matches!(
        path,
        SendPathPreference::Auto | SendPathPreference::UringGso | SendPathPreference::Uring
    );
    let gso = matches!(
        path,
        SendPathPreference::Auto | SendPathPreference::UringGso
    );
    if uring && !s.io_uring {
        out.push(
            Level::Warn,
            "send_path",
            format!(
                "send.path = {path:?} but no io_uring could send here (kernel.io_uring_disabled,                  seccomp, or a kernel before 6.1): sends fall back to sendmmsg"
            ),
        );
    } else if gso && !s.udp_segment {
        out.push(
            Level::Warn,
            "send_path",
            format!(
                "send.path = {path:?} but UDP_SEGMENT (GSO, Linux 4.18) did not work here: one                  syscall per datagram"
            ),
        );
    } else {
        out.push(
            Level::Ok,
            "send_path",
            format!(
                "io_uring {}, UDP GSO {}",
                if s.io_uring { "works" } else { "unavailable" },
                if s.udp_segment {
                    "works"
                } else {
                    "unavailable"
                }
            ),
        );
    }
}

fn memlock(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let send = &settings.send;
    if !send.registered_buffers {
        return;
    }
    let need = (settings.pipeline.pool_frames * settings.pipeline.frame_capacity) as u64;
    // Registered buffers count against RLIMIT_MEMLOCK before Linux 5.12 (memory cgroup after).
    let old = facts
        .kernel_release
        .as_deref()
        .and_then(kernel_version)
        .is_some_and(|v| v < (5, 12));
    match facts.memlock {
        Some(have) if old && have < need => out.push_fix(
            Level::Warn,
            "memlock",
            format!(
                "send.registered_buffers pins up to {need} bytes but RLIMIT_MEMLOCK is {have}:                  registering fails and sends copy"
            ),
            Fix {
                command: "LimitMEMLOCK=infinity in the service unit (or `ulimit -l unlimited`                           before punktfunk serve)"
                    .into(),
                apply: None,
            },
        ),
        Some(have) => out.push(
            Level::Ok,
            "memlock",
            format!("RLIMIT_MEMLOCK {have} bytes; registered buffers need {need} (counted against it before Linux 5.12)"),
        ),
        None => out.push(Level::Info, "memlock", "RLIMIT_MEMLOCK unreadable".into()),
    }
}

fn nics(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    if facts.nics.is_empty() {
        out.push(
            Level::Info,
            "nic",
            "no physical network interface found (virtual machine with virtio only, or a              container); rings, offloads and interrupts not checked"
                .into(),
        );
        return;
    }
    let pinned: Vec<usize> = StageId::ALL
        .iter()
        .filter_map(|s| s.core(&settings.pipeline.cores))
        .collect();
    let allowed = facts.allowed_cores.clone().unwrap_or_default();
    for nic in &facts.nics {
        let n = &nic.name;
        // A full TX ring drops a frame's burst at the NIC: the send path's bursts want room.
        match nic.tx_ring {
            Some((cur, max)) if cur < max => out.push_fix(
                Level::Warn,
                "nic",
                format!("{n}: TX ring {cur} of {max} descriptors: paced bursts of a large frame can overflow it"),
                Fix {
                    command: format!("ethtool -G {n} tx {max}"),
                    apply: Some(Apply::Run(vec![
                        "ethtool".into(),
                        "-G".into(),
                        n.clone(),
                        "tx".into(),
                        max.to_string(),
                    ])),
                },
            ),
            Some((cur, _)) => out.push(Level::Ok, "nic", format!("{n}: TX ring at its maximum ({cur})")),
            None => out.push(Level::Info, "nic", format!("{n}: ring sizes unknown (no ethtool, or the driver does not say)")),
        }
        let offload = match (nic.udp_segmentation_offload, nic.gro) {
            (Some(u), Some(g)) => format!(
                "{n}: UDP segmentation offload {}, GRO {}",
                if u {
                    "on"
                } else {
                    "off (GSO is cut in software at the device)"
                },
                if g { "on" } else { "off" }
            ),
            _ => format!("{n}: offloads unknown (no ethtool)"),
        };
        out.push(Level::Info, "nic", offload);
        // Interrupts on a pinned stage's core preempt it at packet rate.
        if pinned.is_empty() {
            continue;
        }
        let others: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|c| !pinned.contains(c))
            .collect();
        for (irq, cpus) in &nic.irqs {
            let hit: Vec<usize> = cpus
                .iter()
                .copied()
                .filter(|c| pinned.contains(c))
                .collect();
            if hit.is_empty() {
                continue;
            }
            let list = core_list(&others);
            let apply = (!others.is_empty()).then(|| Apply::Write {
                path: format!("/proc/irq/{irq}/smp_affinity_list"),
                value: list.clone(),
            });
            out.push_fix(
                Level::Warn,
                "irq",
                format!(
                    "{n}: IRQ {irq} may run on pinned stage cores {}",
                    core_list(&hit)
                ),
                Fix {
                    command: if others.is_empty() {
                        "leave a core unpinned for interrupts (pipeline.cores)".into()
                    } else {
                        format!("echo {list} > /proc/irq/{irq}/smp_affinity_list (and stop irqbalance from moving it back)")
                    },
                    apply,
                },
            );
        }
    }
}

fn cores(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let pinned: Vec<(StageId, usize)> = StageId::ALL
        .iter()
        .filter_map(|&s| s.core(&settings.pipeline.cores).map(|c| (s, c)))
        .collect();
    let Some(allowed) = &facts.allowed_cores else {
        out.push(
            Level::Info,
            "cores",
            "affinity mask unreadable; pinning not checked".into(),
        );
        return;
    };
    let n = allowed.len();
    if pinned.is_empty() {
        out.push(
            Level::Info,
            "cores",
            format!(
                "{n} cores available ({}); no stage is pinned",
                core_list(allowed)
            ),
        );
        return;
    }
    let mut bad = false;
    for &(stage, core) in &pinned {
        if !allowed.contains(&core) {
            bad = true;
            out.push(
                Level::Warn,
                "cores",
                format!(
                    "pipeline.cores.{stage} = {core}, but this process may only run on cores {}; \
                     the {stage} stage will run unpinned",
                    core_list(allowed)
                ),
            );
        }
    }
    for (i, &(stage, core)) in pinned.iter().enumerate() {
        if let Some(&(other, _)) = pinned[..i].iter().find(|&&(_, c)| c == core) {
            bad = true;
            out.push(
                Level::Warn,
                "cores",
                format!("the {other} and {stage} stages are both pinned to core {core}"),
            );
        }
    }
    if n < 4 {
        bad = true;
        out.push(
            Level::Warn,
            "cores",
            format!(
                "only {n} cores: pinned busy stages leave little for the control plane and \
                 interrupts; pin on machines with 4 or more"
            ),
        );
    }
    if !bad {
        let list: Vec<usize> = pinned.iter().map(|&(_, c)| c).collect();
        out.push(
            Level::Ok,
            "cores",
            format!(
                "stages pinned to cores {} of {n} available",
                core_list(&list)
            ),
        );
    }
}

fn kernel(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let Some(release) = &facts.kernel_release else {
        out.push(
            Level::Info,
            "kernel",
            "release unreadable; features not checked".into(),
        );
        return;
    };
    let Some(version) = kernel_version(release) else {
        out.push(
            Level::Info,
            "kernel",
            format!("cannot parse release {release:?}"),
        );
        return;
    };
    let send = &settings.send;
    let mut warned = false;
    // IORING_OP_SEND_ZC arrived in Linux 6.0; UDP_SEGMENT (GSO) in 4.18.
    if send.zero_copy && version < (6, 0) {
        warned = true;
        out.push(
            Level::Warn,
            "kernel",
            format!("Linux {release} predates IORING_OP_SEND_ZC (6.0); send.zero_copy is ignored"),
        );
    }
    if matches!(
        send.path,
        SendPathPreference::UringGso | SendPathPreference::Auto
    ) && version < (4, 18)
    {
        warned = true;
        out.push(
            Level::Warn,
            "kernel",
            format!("Linux {release} predates UDP GSO (4.18); sends go one datagram at a time"),
        );
    }
    if !warned {
        out.push(Level::Ok, "kernel", format!("Linux {release}"));
    }
}

fn buffers(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let want = settings.send.socket_send_buffer as u64;
    match facts.wmem_max {
        None => out.push(
            Level::Info,
            "wmem_max",
            "net.core.wmem_max unreadable".into(),
        ),
        Some(_) if want == 0 => out.push(
            Level::Info,
            "wmem_max",
            "send.socket_send_buffer = 0: the kernel's default SO_SNDBUF is used".into(),
        ),
        Some(max) if max < want => out.push_fix(
            Level::Warn,
            "wmem_max",
            format!(
                "send.socket_send_buffer = {want} but net.core.wmem_max = {max}: the kernel caps \
                 SO_SNDBUF there (socket(7)) unless the process has CAP_NET_ADMIN; raise it with \
                 `sysctl -w net.core.wmem_max={want}`"
            ),
            sysctl_fix("net.core.wmem_max", want),
        ),
        Some(max) => out.push(
            Level::Ok,
            "wmem_max",
            format!("net.core.wmem_max = {max} allows send.socket_send_buffer = {want}"),
        ),
    }
    // The host only sends video; a large receive buffer matters to a receiver on this machine
    // (loopback benches, the reference client), which wants to match the sender.
    match facts.rmem_max {
        None => out.push(
            Level::Info,
            "rmem_max",
            "net.core.rmem_max unreadable".into(),
        ),
        Some(max) if want > 0 && max < want => out.push_fix(
            Level::Info,
            "rmem_max",
            format!(
                "net.core.rmem_max = {max} is below the {want}-byte send buffer: a receiver on \
                 this machine (loopback benches) may drop; `sysctl -w net.core.rmem_max={want}`"
            ),
            sysctl_fix("net.core.rmem_max", want),
        ),
        Some(max) => out.push(Level::Ok, "rmem_max", format!("net.core.rmem_max = {max}")),
    }
}

fn busy_polling(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let send = &settings.send;
    let sysctls = match (facts.busy_poll, facts.busy_read) {
        (Some(p), Some(r)) => Some((p, r)),
        _ => None,
    };
    if send.so_busy_poll_us > 0 {
        match sysctls {
            // The busy_* sysctls exist only with CONFIG_NET_RX_BUSY_POLL.
            None => out.push(
                Level::Warn,
                "busy_poll",
                format!(
                    "send.so_busy_poll_us = {} but net.core.busy_poll/busy_read are absent: the \
                     kernel may lack CONFIG_NET_RX_BUSY_POLL and SO_BUSY_POLL would fail",
                    send.so_busy_poll_us
                ),
            ),
            Some((p, r)) => out.push(
                Level::Info,
                "busy_poll",
                format!(
                    "SO_BUSY_POLL = {} µs per socket (system defaults busy_poll = {p}, \
                     busy_read = {r}); raising it requires CAP_NET_ADMIN (socket(7))",
                    send.so_busy_poll_us
                ),
            ),
        }
    } else {
        match sysctls {
            None => out.push(
                Level::Info,
                "busy_poll",
                "net.core.busy_poll unreadable".into(),
            ),
            Some((p, r)) => out.push(
                Level::Info,
                "busy_poll",
                format!(
                    "sockets not busy-polled by the profile; system defaults busy_poll = {p} µs, \
                     busy_read = {r} µs"
                ),
            ),
        }
    }
    if send.busy_poll {
        let n = facts.allowed_cores.as_ref().map_or(0, Vec::len);
        let level = if n > 0 && n < 4 {
            Level::Warn
        } else {
            Level::Info
        };
        out.push(
            level,
            "busy_poll",
            format!(
                "send.busy_poll spins on the io_uring completion queue: the send stage keeps \
                 one core busy while streaming ({n} cores available)"
            ),
        );
    }
}

fn io_uring(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let path = settings.send.path;
    let wants = matches!(
        path,
        SendPathPreference::Auto | SendPathPreference::UringGso | SendPathPreference::Uring
    );
    if !wants {
        out.push(
            Level::Info,
            "io_uring",
            format!("not used: send.path = {path:?}"),
        );
        return;
    }
    match facts.io_uring_disabled {
        Some(0) => out.push(
            Level::Ok,
            "io_uring",
            "enabled (kernel.io_uring_disabled = 0)".into(),
        ),
        Some(1) => out.push(
            Level::Warn,
            "io_uring",
            "kernel.io_uring_disabled = 1: only CAP_SYS_ADMIN processes and members of \
             kernel.io_uring_group may create rings; otherwise the driver falls back to sendmmsg"
                .into(),
        ),
        Some(v) => out.push_fix(
            Level::Warn,
            "io_uring",
            format!(
                "kernel.io_uring_disabled = {v}: io_uring is off; the driver falls back to \
                 sendmmsg (`sysctl -w kernel.io_uring_disabled=0`)"
            ),
            // A machine-wide security choice: printed, never applied by `tune apply`.
            Fix {
                command: "sysctl -w kernel.io_uring_disabled=0".into(),
                apply: None,
            },
        ),
        None => out.push(
            Level::Info,
            "io_uring",
            "kernel.io_uring_disabled absent (Linux < 6.6): io_uring is available unless \
             compiled out or blocked by seccomp; the driver probes at start-up"
                .into(),
        ),
    }
}

fn governor(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    if facts.governors.is_empty() {
        out.push(
            Level::Info,
            "governor",
            "cpufreq not exposed (virtual machine or container?); not checked".into(),
        );
        return;
    }
    // The cores that matter: the pinned ones, or all when nothing is pinned.
    let pinned: Vec<usize> = StageId::ALL
        .iter()
        .filter_map(|s| s.core(&settings.pipeline.cores))
        .collect();
    let relevant = |cpu: usize| pinned.is_empty() || pinned.contains(&cpu);
    let mut slow: Vec<(usize, &str)> = facts
        .governors
        .iter()
        .filter(|(cpu, g)| relevant(*cpu) && g.trim() != "performance")
        .map(|(cpu, g)| (*cpu, g.trim()))
        .collect();
    if slow.is_empty() {
        out.push(
            Level::Ok,
            "governor",
            "performance on every relevant core".into(),
        );
        return;
    }
    slow.sort_unstable();
    let mut names: Vec<&str> = slow.iter().map(|&(_, g)| g).collect();
    names.dedup();
    let cpus: Vec<usize> = slow.iter().map(|&(c, _)| c).collect();
    out.push_fix(
        Level::Warn,
        "governor",
        format!(
            "cores {} use {}: frequency ramps add frame-time jitter; \
             `cpupower frequency-set -g performance`",
            core_list(&cpus),
            names.join("/")
        ),
        // Changes power use machine-wide: printed, not applied.
        Fix {
            command: format!(
                "cpupower -c {} frequency-set -g performance",
                core_list(&cpus)
            ),
            apply: None,
        },
    );
}

fn priority(facts: &SystemFacts, settings: &Settings, out: &mut Out) {
    let p = settings.pipeline.priority;
    let (limit_ok, what) = match p {
        ThreadPriority::Normal => {
            out.push(
                Level::Ok,
                "priority",
                "pipeline.priority = \"normal\": stage threads keep the host's priority".into(),
            );
            return;
        }
        ThreadPriority::High => (
            // RLIMIT_NICE n allows nice values down to 20 - n (getrlimit(2)).
            facts
                .rlimit_nice
                .map(|n| n >= u64::from((20 - ThreadPriority::HIGH_NICE).unsigned_abs())),
            format!("nice {}", ThreadPriority::HIGH_NICE),
        ),
        ThreadPriority::Realtime => (
            facts
                .rlimit_rtprio
                .map(|l| l >= ThreadPriority::REALTIME_PRIORITY.unsigned_abs().into()),
            format!("SCHED_FIFO {}", ThreadPriority::REALTIME_PRIORITY),
        ),
    };
    match (facts.cap_sys_nice, limit_ok) {
        (Some(true), _) | (_, Some(true)) => out.push(
            Level::Ok,
            "priority",
            format!("pipeline.priority = \"{p}\": the stage threads may take {what}"),
        ),
        (Some(false), Some(false)) => out.push_fix(
            Level::Warn,
            "priority",
            format!(
                "pipeline.priority = \"{p}\" asks for {what}, which this process may not take \
                 (no CAP_SYS_NICE, RLIMIT_NICE/RLIMIT_RTPRIO too low): sessions log one warning \
                 each and stream at normal priority, losing to a busy game. \
                 `setcap cap_sys_nice+ep $(command -v punktfunk)`, or `LimitNICE=-10` / \
                 `LimitRTPRIO=10` in the service unit, or set pipeline.priority = \"normal\""
            ),
            Fix {
                command: "setcap cap_sys_nice+ep \"$(command -v punktfunk)\" (or LimitNICE=-10 / \
                          LimitRTPRIO=10 in the unit: tuning/systemd/)"
                    .into(),
                apply: None,
            },
        ),
        _ => out.push(
            Level::Info,
            "priority",
            format!(
                "could not read CAP_SYS_NICE or the nice/realtime limits; whether {what} is \
                 allowed shows in the log when a session starts"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use punktfunk_engine::config::StageCores;

    use super::*;

    fn good_machine() -> SystemFacts {
        SystemFacts {
            allowed_cores: Some((0..8).collect()),
            kernel_release: Some("6.8.0-45-generic".into()),
            rmem_max: Some(64 << 20),
            wmem_max: Some(64 << 20),
            busy_poll: Some(0),
            busy_read: Some(0),
            io_uring_disabled: Some(0),
            governors: (0..8).map(|c| (c, "performance".to_owned())).collect(),
            cap_sys_nice: Some(true),
            rlimit_nice: Some(0),
            rlimit_rtprio: Some(0),
            memlock: Some(u64::MAX),
            send_support: Some(SendSupport {
                io_uring: true,
                udp_segment: true,
            }),
            nics: vec![Nic {
                name: "eth0".into(),
                udp_segmentation_offload: Some(false),
                gro: Some(true),
                tx_ring: Some((4096, 4096)),
                rx_ring: Some((4096, 4096)),
                irqs: vec![(40, vec![4, 5, 6, 7])],
            }],
        }
    }

    fn pinned_settings() -> Settings {
        let mut s = Settings::default();
        s.pipeline.cores = StageCores {
            capture: Some(0),
            encode: Some(1),
            fec: Some(2),
            send: Some(3),
        };
        s
    }

    fn levels(f: &[Finding], topic: &str) -> Vec<Level> {
        f.iter()
            .filter(|x| x.topic == topic)
            .map(|x| x.level)
            .collect()
    }

    #[test]
    fn a_good_machine_has_no_warnings() {
        let f = findings(&good_machine(), &pinned_settings());
        assert!(f.iter().all(|x| x.level != Level::Warn), "{f:#?}");
        assert_eq!(levels(&f, "cores"), [Level::Ok]);
        assert_eq!(levels(&f, "io_uring"), [Level::Ok]);
        assert_eq!(levels(&f, "wmem_max"), [Level::Ok]);
    }

    #[test]
    fn small_machine_and_missing_cores() {
        let facts = SystemFacts {
            allowed_cores: Some(vec![0, 1]),
            ..good_machine()
        };
        let f = findings(&facts, &pinned_settings());
        let cores: Vec<_> = f.iter().filter(|x| x.topic == "cores").collect();
        assert_eq!(cores.len(), 3, "{cores:#?}"); // fec on 2, send on 3, only 2 cores
        assert!(cores.iter().all(|x| x.level == Level::Warn));
        assert!(
            cores[0].text.contains("pipeline.cores.fec = 2"),
            "{}",
            cores[0]
        );
        assert!(cores[0].text.contains("cores 0-1"), "{}", cores[0]);
    }

    #[test]
    fn unpinned_is_info() {
        let f = findings(&good_machine(), &Settings::default());
        assert_eq!(levels(&f, "cores"), [Level::Info]);
    }

    #[test]
    fn socket_buffer_above_wmem_max_warns_with_the_fix() {
        let facts = SystemFacts {
            wmem_max: Some(212_992),
            rmem_max: Some(212_992),
            ..good_machine()
        };
        let f = findings(&facts, &Settings::default());
        let w = f.iter().find(|x| x.topic == "wmem_max").unwrap();
        assert_eq!(w.level, Level::Warn);
        assert!(
            w.text.contains("sysctl -w net.core.wmem_max=8388608"),
            "{w}"
        );
        assert_eq!(levels(&f, "rmem_max"), [Level::Info]);
    }

    #[test]
    fn fixes_name_the_command_and_only_safe_ones_are_applied() {
        let facts = SystemFacts {
            wmem_max: Some(212_992),
            io_uring_disabled: Some(2),
            governors: vec![(0, "powersave".into())],
            nics: vec![Nic {
                name: "enp1s0".into(),
                tx_ring: Some((256, 4096)),
                irqs: vec![(33, vec![0, 1]), (34, vec![6])],
                ..Nic::default()
            }],
            ..good_machine()
        };
        let f = findings(&facts, &pinned_settings());
        let fix = |topic: &str| {
            f.iter()
                .find(|x| x.topic == topic)
                .and_then(|x| x.fix.clone())
        };
        let w = fix("wmem_max").unwrap();
        assert!(
            w.command.starts_with("sysctl -w net.core.wmem_max=8388608"),
            "{w:?}"
        );
        assert_eq!(
            w.apply,
            Some(Apply::Sysctl {
                key: "net.core.wmem_max".into(),
                value: 8_388_608
            })
        );
        // Security and power choices are printed, not applied.
        assert_eq!(fix("io_uring").unwrap().apply, None);
        assert_eq!(fix("governor").unwrap().apply, None);
        let ring = f
            .iter()
            .find(|x| x.topic == "nic" && x.level == Level::Warn)
            .unwrap();
        assert_eq!(
            ring.fix.as_ref().unwrap().command,
            "ethtool -G enp1s0 tx 4096"
        );
        // IRQ 33 may run on the capture (0) and encode (1) cores; IRQ 34 on core 6 is fine.
        let irqs: Vec<&Finding> = f.iter().filter(|x| x.topic == "irq").collect();
        assert_eq!(irqs.len(), 1, "{irqs:#?}");
        assert!(
            irqs[0].text.contains("IRQ 33") && irqs[0].text.contains("cores 0-1"),
            "{}",
            irqs[0]
        );
        assert_eq!(
            irqs[0].fix.as_ref().unwrap().apply,
            Some(Apply::Write {
                path: "/proc/irq/33/smp_affinity_list".into(),
                value: "4-7".into()
            })
        );
        assert!(
            irqs[0]
                .to_string()
                .contains("fix (tune apply does it): echo 4-7 > /proc/irq/33/smp_affinity_list")
        );
    }

    #[test]
    fn send_paths_the_probe_refused_warn() {
        let s = Settings::default();
        for (io_uring, udp_segment, level) in [
            (true, true, Level::Ok),
            (false, true, Level::Warn),
            (true, false, Level::Warn),
        ] {
            let facts = SystemFacts {
                send_support: Some(SendSupport {
                    io_uring,
                    udp_segment,
                }),
                ..good_machine()
            };
            assert_eq!(levels(&findings(&facts, &s), "send_path"), [level]);
        }
    }

    #[test]
    fn memlock_matters_for_registered_buffers_before_5_12() {
        let mut s = Settings::default();
        s.send.registered_buffers = true;
        let old = SystemFacts {
            kernel_release: Some("5.10.0".into()),
            memlock: Some(64 << 10),
            ..good_machine()
        };
        assert_eq!(levels(&findings(&old, &s), "memlock"), [Level::Warn]);
        let new = SystemFacts {
            memlock: Some(64 << 10),
            ..good_machine()
        };
        assert_eq!(levels(&findings(&new, &s), "memlock"), [Level::Ok]);
        assert!(levels(&findings(&old, &Settings::default()), "memlock").is_empty());
    }

    #[test]
    fn io_uring_states() {
        let s = Settings::default();
        for (v, level) in [
            (Some(0), Level::Ok),
            (Some(1), Level::Warn),
            (Some(2), Level::Warn),
            (None, Level::Info),
        ] {
            let facts = SystemFacts {
                io_uring_disabled: v,
                ..good_machine()
            };
            assert_eq!(levels(&findings(&facts, &s), "io_uring"), [level], "{v:?}");
        }
        let mut s = Settings::default();
        s.send.path = SendPathPreference::Sendto;
        let facts = SystemFacts {
            io_uring_disabled: Some(2),
            ..good_machine()
        };
        assert_eq!(levels(&findings(&facts, &s), "io_uring"), [Level::Info]);
    }

    #[test]
    fn busy_poll_findings() {
        let mut s = Settings::default();
        s.send.so_busy_poll_us = 50;
        s.send.busy_poll = true;
        let f = findings(&good_machine(), &s);
        assert_eq!(levels(&f, "busy_poll"), [Level::Info, Level::Info]);
        let facts = SystemFacts {
            busy_poll: None,
            busy_read: None,
            allowed_cores: Some(vec![0, 1]),
            ..good_machine()
        };
        assert_eq!(
            levels(&findings(&facts, &s), "busy_poll"),
            [Level::Warn, Level::Warn]
        );
    }

    #[test]
    fn governor_checks_pinned_cores_only() {
        let mut facts = good_machine();
        facts.governors[5].1 = "powersave".into();
        facts.governors[6].1 = "schedutil\n".into();
        let f = findings(&facts, &pinned_settings());
        assert_eq!(
            levels(&f, "governor"),
            [Level::Ok],
            "cores 5 and 6 run no stage"
        );
        let f = findings(&facts, &Settings::default());
        let g = f.iter().find(|x| x.topic == "governor").unwrap();
        assert_eq!(g.level, Level::Warn);
        assert!(g.text.contains("cores 5-6 use powersave/schedutil"), "{g}");
        let facts = SystemFacts {
            governors: Vec::new(),
            ..good_machine()
        };
        assert_eq!(
            levels(&findings(&facts, &Settings::default()), "governor"),
            [Level::Info]
        );
    }

    #[test]
    fn old_kernels() {
        assert_eq!(kernel_version("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(kernel_version("4.19.0"), Some((4, 19)));
        assert_eq!(kernel_version("garbage"), None);
        let mut s = Settings::default();
        s.send.zero_copy = true;
        let facts = SystemFacts {
            kernel_release: Some("5.15.0".into()),
            ..good_machine()
        };
        assert_eq!(levels(&findings(&facts, &s), "kernel"), [Level::Warn]);
        let facts = SystemFacts {
            kernel_release: Some("4.14.0".into()),
            ..good_machine()
        };
        assert_eq!(
            levels(&findings(&facts, &s), "kernel"),
            [Level::Warn, Level::Warn]
        );
        assert_eq!(
            levels(&findings(&good_machine(), &s), "kernel"),
            [Level::Ok]
        );
    }

    #[test]
    fn unknown_machine_is_all_info() {
        let f = findings(&SystemFacts::default(), &pinned_settings());
        assert!(f.iter().all(|x| x.level == Level::Info), "{f:#?}");
        assert!(!f.is_empty());
    }

    #[test]
    fn priority_needs_cap_sys_nice_or_a_limit() {
        let mut s = Settings::default();
        assert_eq!(s.pipeline.priority, ThreadPriority::High);
        let mut m = good_machine();
        assert_eq!(levels(&findings(&m, &s), "priority"), [Level::Ok]);
        m.cap_sys_nice = Some(false);
        let f = findings(&m, &s);
        assert_eq!(levels(&f, "priority"), [Level::Warn]);
        let w = f.iter().find(|x| x.topic == "priority").unwrap();
        assert!(w.text.contains("setcap cap_sys_nice"), "{}", w.text);
        // RLIMIT_NICE 30 allows nice 20 - 30 = -10.
        m.rlimit_nice = Some(30);
        assert_eq!(levels(&findings(&m, &s), "priority"), [Level::Ok]);
        s.pipeline.priority = ThreadPriority::Realtime;
        assert_eq!(levels(&findings(&m, &s), "priority"), [Level::Warn]);
        m.rlimit_rtprio = Some(10);
        assert_eq!(levels(&findings(&m, &s), "priority"), [Level::Ok]);
        s.pipeline.priority = ThreadPriority::Normal;
        m.rlimit_rtprio = Some(0);
        assert_eq!(levels(&findings(&m, &s), "priority"), [Level::Ok]);
    }
}
