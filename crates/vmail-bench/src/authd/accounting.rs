//! Whose CPU a figure cost: counters of the machine, this process, the server's threads or
//! processes and MariaDB, taken before and after a measurement.

use super::*;

/// Whose CPU time counts as the server's.
pub(super) enum Server {
    /// Threads of this process whose name starts with this (an in-process vmail-authd).
    Threads(String),
    /// Every process working under this directory (a private Dovecot).
    Procs(PathBuf),
}

/// CPU counters (clock ticks) at one instant.
pub(super) struct Snap {
    pub(super) at: Instant,
    /// All CPUs, busy (not idle or iowait).
    pub(super) busy: u64,
    /// All CPUs, idle or iowait.
    pub(super) idle: u64,
    /// This whole process (client, in-process daemons).
    pub(super) me: u64,
    /// Per server thread or process (threads and processes come and go).
    pub(super) server: std::collections::HashMap<u32, u64>,
    pub(super) db: u64,
    /// Whether `server` is outside this process.
    pub(super) server_outside: bool,
}

/// utime + stime from a `/proc/.../stat` file.
pub(super) fn stat_ticks(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // After the command: state, ppid, ... utime is the 12th, stime the 13th.
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

impl Snap {
    pub(super) fn take(server: &Server, db_pid: Option<u32>) -> Snap {
        let (busy, idle) = crate::cpu::machine()
            .map(|f| {
                let idle = f[3] + f[4];
                (f.iter().sum::<u64>() - idle, idle)
            })
            .unwrap_or((0, 0));
        let (srv, outside) = match server {
            Server::Threads(prefix) => {
                let mut t = std::collections::HashMap::new();
                if let Ok(d) = std::fs::read_dir("/proc/self/task") {
                    for e in d.flatten() {
                        let Some(tid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                            continue;
                        };
                        let p = e.path();
                        let named = std::fs::read_to_string(p.join("comm")).is_ok_and(|c| {
                            let c = c.trim_end();
                            // comm keeps at most 15 bytes of the name.
                            !c.is_empty()
                                && prefix.starts_with(c)
                                && c.len() >= prefix.len().min(15)
                        });
                        if named {
                            t.insert(tid, stat_ticks(&format!("{}/stat", p.display())));
                        }
                    }
                }
                (t, false)
            }
            Server::Procs(dir) => (
                vmail_test_support::postfix::processes_under(dir)
                    .into_iter()
                    .map(|pid| (pid, stat_ticks(&format!("/proc/{pid}/stat"))))
                    .collect(),
                true,
            ),
        };
        Snap {
            at: Instant::now(),
            busy,
            idle,
            me: stat_ticks("/proc/self/stat"),
            server: srv,
            db: db_pid.map_or(0, |p| stat_ticks(&format!("/proc/{p}/stat"))),
            server_outside: outside,
        }
    }
}

/// A figure with the CPU it cost.
pub(super) struct Measured {
    pub(super) fig: Figure,
    /// Server CPU per authentication.
    pub(super) server_us: f64,
    /// MariaDB CPU per authentication.
    pub(super) db_us: f64,
    /// CPU busy with other work on the machine, in % of all CPUs.
    pub(super) foreign_pct: f64,
    /// CPU idle, in % of all CPUs.
    pub(super) idle_pct: f64,
}

impl Measured {
    pub(super) fn new(fig: Figure, a: &Snap, b: &Snap) -> Measured {
        let tck = crate::cpu::ticks_per_sec();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let auths = (fig.per_sec * secs).max(1.0);
        let d = |x: u64, y: u64| y.saturating_sub(x) as f64;
        // Those gone by the end are left out: an idle thread or process exits, so it spent
        // (almost) nothing during the figure.
        let server: f64 = b
            .server
            .iter()
            .map(|(id, t)| d(a.server.get(id).copied().unwrap_or(0), *t))
            .sum();
        let ours = d(a.me, b.me) + d(a.db, b.db) + if b.server_outside { server } else { 0.0 };
        let foreign = (d(a.busy, b.busy) - ours).max(0.0);
        Measured {
            server_us: server / tck / auths * 1e6,
            db_us: d(a.db, b.db) / tck / auths * 1e6,
            foreign_pct: foreign / tck / (secs * cpus) * 100.0,
            idle_pct: d(a.idle, b.idle) / tck / (secs * cpus) * 100.0,
            fig,
        }
    }
}

/// The shared MariaDB server (`mariadbd` without a private `--datadir`).
pub(super) fn mariadbd_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "mariadbd")
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| !String::from_utf8_lossy(&c).contains("--datadir"))
        })
}
