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
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.level, self.topic, self.text)
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
        self.0.push(Finding { level, topic, text });
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
    out.0
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
        Some(max) if max < want => out.push(
            Level::Warn,
            "wmem_max",
            format!(
                "send.socket_send_buffer = {want} but net.core.wmem_max = {max}: the kernel caps \
                 SO_SNDBUF there (socket(7)) unless the process has CAP_NET_ADMIN; raise it with \
                 `sysctl -w net.core.wmem_max={want}`"
            ),
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
        Some(max) if want > 0 && max < want => out.push(
            Level::Info,
            "rmem_max",
            format!(
                "net.core.rmem_max = {max} is below the {want}-byte send buffer: a receiver on \
                 this machine (loopback benches) may drop; `sysctl -w net.core.rmem_max={want}`"
            ),
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
        Some(v) => out.push(
            Level::Warn,
            "io_uring",
            format!(
                "kernel.io_uring_disabled = {v}: io_uring is off; the driver falls back to \
                 sendmmsg (`sysctl -w kernel.io_uring_disabled=0`)"
            ),
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
    out.push(
        Level::Warn,
        "governor",
        format!(
            "cores {} use {}: frequency ramps add frame-time jitter; \
             `cpupower frequency-set -g performance`",
            core_list(&cpus),
            names.join("/")
        ),
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
        (Some(false), Some(false)) => out.push(
            Level::Warn,
            "priority",
            format!(
                "pipeline.priority = \"{p}\" asks for {what}, which this process may not take \
                 (no CAP_SYS_NICE, RLIMIT_NICE/RLIMIT_RTPRIO too low): sessions log one warning \
                 each and stream at normal priority, losing to a busy game. \
                 `setcap cap_sys_nice+ep $(command -v punktfunk)`, or `LimitNICE=-10` / \
                 `LimitRTPRIO=10` in the service unit, or set pipeline.priority = \"normal\""
            ),
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
