//! `--breakdown`: where one vmail-lda delivery's time goes, phase by phase
//! (`VMAIL_LDA_TIMING=1`), beside reference points that split the phases further.

use super::*;

/// The phases `VMAIL_LDA_TIMING=1` reports, in order, with what each covers.
pub(super) const PHASES: [(&str, &str); 9] = [
    ("args", "args: parse argv"),
    ("config", "config: read + parse vmail.toml"),
    ("runtime", "runtime: tokio current-thread"),
    ("open", "directory open (no I/O for MariaDB)"),
    ("stage", "stage: ask lookupd, write + fsync meanwhile"),
    ("lookup", "lookup: (rest of) lookupd's answer, or SQL"),
    ("close", "close: drop directory + connection"),
    ("deliver", "deliver: (write, fsync,) link, fsync"),
    ("teardown", "teardown: drop runtime"),
];

/// Runs 1 KiB deliveries with `VMAIL_LDA_TIMING=1` on each configuration and prints the
/// median of each phase.
pub(super) fn breakdown(
    bench: &Bench,
    bin: &Path,
    variants: &[(&str, &PathBuf)],
    runs: usize,
    body: &Path,
    (dovecot_p50_ms, dovecot_minflt): (f64, f64),
) -> Result<()> {
    let mut columns = Vec::new();
    for (name, cfg) in variants {
        let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut rss = 0;
        for i in 0..runs {
            let rcpt = recipient(i, bench.recipients);
            let lda = Lda::Vmail {
                bin: bin.to_path_buf(),
                config: (*cfg).clone(),
            };
            let mut cmd = lda.command(&bench.user, &rcpt);
            cmd.env("VMAIL_LDA_TIMING", "1");
            let r = run_child(&mut cmd, &trace_lines(&rcpt), Some(body), &bench.out)?;
            if r.status != 0 {
                bail!(
                    "vmail-lda ({name}) exited {}: {}",
                    r.status,
                    r.output.trim()
                );
            }
            let line = r
                .output
                .lines()
                .find_map(|l| l.strip_prefix("vmail-lda timing:"))
                .context("no timing line from vmail-lda")?;
            let mut total = 0.0;
            for kv in line.split_whitespace() {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let us: f64 = v.parse().context("timing value")?;
                if k == "total" {
                    total = us;
                }
                phases.entry(k.to_string()).or_default().push(us);
            }
            let wall = r.wall.as_secs_f64() * 1e6;
            phases.entry("wall".into()).or_default().push(wall);
            phases
                .entry("process".into())
                .or_default()
                .push(wall - total);
            phases
                .entry("minflt".into())
                .or_default()
                .push(r.minflt as f64);
            rss = rss.max(r.maxrss_kib);
        }
        columns.push((name, phases, rss));
    }
    println!();
    println!(
        "Where one vmail-lda invocation's time goes: 1 KiB message, median µs of {runs} runs \
         (VMAIL_LDA_TIMING=1; process = wall - in-process total)"
    );
    print!("{:>42}", "phase");
    for (name, _, _) in &columns {
        print!(" | {name:>14}");
    }
    println!();
    let row = |label: &str, key: &str| {
        print!("{label:>42}");
        for (_, phases, _) in &columns {
            let v = phases.get(key).map_or(0.0, |v| median(v));
            print!(" | {v:>14.0}");
        }
        println!();
    };
    row("process: fork, exec, ld.so, exit, wait4", "process");
    for (key, label) in PHASES {
        row(label, key);
    }
    row("in-process total", "total");
    row("wall (spawn to wait4)", "wall");
    row("minor page faults", "minflt");
    print!("{:>42}", "peak RSS (KiB)");
    for (_, _, rss) in &columns {
        print!(" | {rss:>14}");
    }
    println!();
    println!(
        "{:>42} | {:>14.0}",
        "dovecot-lda wall, for comparison (p50)",
        dovecot_p50_ms * 1000.0
    );
    println!(
        "{:>42} | {:>14.0}",
        "dovecot-lda minor page faults (p50)", dovecot_minflt
    );
    Ok(())
}

/// Reference points that split the phases further: a bare process, a bare MariaDB
/// connection, the directory's cold and warm lookups, and the durable-write floor of the
/// file system.
#[allow(clippy::too_many_arguments)]
pub(super) fn reference(
    rt: &tokio::runtime::Runtime,
    mysql: &Config,
    db: &TestDb,
    runs: usize,
    work: &Path,
    user: MailUser,
    vmail_bin: &Path,
    dovecot_conf: &Path,
    bench: &Bench,
) -> Result<()> {
    let time_us = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(median(&v))
    };
    let mut rows: Vec<(&str, f64)> = Vec::new();

    let out = &bench.out;
    rows.push((
        "fork+exec+wait4 of /bin/true as the mail user",
        time_us(&mut || {
            let mut c = Command::new("/bin/true");
            as_mail_user(&mut c, &user);
            run_child(&mut c, b"", None, out).map(drop)
        })?,
    ));
    rows.push((
        "vmail-lda --version (exec, Rust start, clap, exit)",
        time_us(&mut || {
            let mut c = Command::new(vmail_bin);
            c.arg("--version");
            as_mail_user(&mut c, &user);
            run_child(&mut c, b"", None, out).map(drop)
        })?,
    ));

    rows.push((
        "doveconf -c (dovecot-lda re-execs it per message)",
        time_us(&mut || {
            let mut c = Command::new("/usr/bin/doveconf");
            c.arg("-c").arg(dovecot_conf).args(["-h", "base_dir"]);
            as_mail_user(&mut c, &user);
            let r = run_child(&mut c, b"", None, out)?;
            if r.status != 0 {
                bail!("doveconf: {}", r.output.trim());
            }
            Ok(())
        })?,
    ));

    let (host, port) = db.host.rsplit_once(':').context("db host:port")?;
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port.parse()?)
        .user(Some(db.user.clone()))
        .pass(Some(db.password.clone()))
        .db_name(Some(db.name.clone()))
        .prefer_socket(false)
        .into();
    let mut conns = Vec::new();
    rows.push((
        "MariaDB TCP connect + auth (mysql_async)",
        time_us(&mut || {
            conns.push(rt.block_on(mysql_async::Conn::new(opts.clone()))?);
            Ok(())
        })?,
    ));
    rt.block_on(async {
        for c in conns.drain(..) {
            let _ = c.disconnect().await;
        }
    });
    let rcpt = recipient(0, bench.recipients);
    rows.push((
        "fresh Directory + inspect() (connect + schema)",
        time_us(&mut || {
            rt.block_on(async {
                Directory::open(mysql).await?.inspect().await?;
                anyhow::Ok(())
            })
        })?,
    ));
    rows.push((
        "fresh Directory + recipient() (as the LDA)",
        time_us(&mut || {
            rt.block_on(async {
                let d = Directory::open(mysql).await?;
                d.recipient(&rcpt).await?.context("recipient not found")?;
                anyhow::Ok(())
            })
        })?,
    ));
    let dir = rt.block_on(Directory::open(mysql))?;
    rt.block_on(dir.recipient(&rcpt))?;
    rows.push((
        "recipient() on an open Directory (warm)",
        time_us(&mut || {
            rt.block_on(dir.recipient(&rcpt))?;
            Ok(())
        })?,
    ));
    rows.push((
        "schema detection (information_schema, warm)",
        time_us(&mut || {
            rt.block_on(dir.inspect())?;
            Ok(())
        })?,
    ));

    let floor = work.join("floor");
    for sub in ["tmp", "new"] {
        std::fs::create_dir_all(floor.join(sub))?;
    }
    let data = vec![b'x'; 1024];
    let mut n = 0u64;
    for (label, sync) in [
        ("1 KiB: create, write, fsync, link, fsync new/", true),
        ("1 KiB: create, write, link (no fsync)", false),
    ] {
        rows.push((
            label,
            time_us(&mut || {
                n += 1;
                let tmp = floor.join("tmp").join(n.to_string());
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)?;
                f.write_all(&data)?;
                if sync {
                    f.sync_all()?;
                }
                std::fs::hard_link(&tmp, floor.join("new").join(n.to_string()))?;
                if sync {
                    File::open(floor.join("new"))?.sync_all()?;
                }
                std::fs::remove_file(&tmp)?;
                Ok(())
            })?,
        ));
    }

    println!();
    println!("Reference points (median µs of {runs}, from the benchmark process):");
    for (label, us) in rows {
        println!("{label:>52} | {us:>8.0}");
    }
    Ok(())
}
