//! One LDA run as pipe(8) runs it: the child process as the mail user, the message fed on
//! its stdin, its exit status, page faults and peak RSS from wait4().

use super::*;

/// One finished child process.
pub(super) struct Run {
    pub(super) wall: Duration,
    pub(super) maxrss_kib: u64,
    /// Minor page faults: in this kind of VM each costs microseconds, and a fresh process
    /// takes one for every page of code and heap it touches first.
    pub(super) minflt: u64,
    /// Exit status, or minus the signal number.
    pub(super) status: i32,
    /// stdout and stderr together.
    pub(super) output: String,
}

/// What to run for one delivery.
pub(super) enum Lda {
    Vmail { bin: PathBuf, config: PathBuf },
    Dovecot { bin: PathBuf, config: PathBuf },
}

impl Lda {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Lda::Vmail { .. } => "vmail-lda",
            Lda::Dovecot { .. } => "dovecot-lda",
        }
    }

    pub(super) fn command(&self, user: &MailUser, recipient: &str) -> Command {
        let (bin, config_opt, config) = match self {
            Lda::Vmail { bin, config } => (bin, "--config", config),
            Lda::Dovecot { bin, config } => (bin, "-c", config),
        };
        let mut c = Command::new(bin);
        c.arg(config_opt)
            .arg(config)
            .args(["-f", SENDER, "-a", recipient, "-d", recipient]);
        as_mail_user(&mut c, user);
        c
    }
}

/// pipe(8) runs its command with a minimal environment, as the `user=` of master.cf, from
/// the queue directory. (std drops root's supplementary groups itself when `uid` is set.)
pub(super) fn as_mail_user(c: &mut Command, user: &MailUser) {
    c.env_clear().current_dir("/").uid(user.uid).gid(user.gid);
}

/// Runs `cmd` with `head` and then the file `body` on its stdin (one pipe, like pipe(8)),
/// reaps it with wait4() for its resource usage, and collects its output through `out` (a
/// memory file from [`output_file`], so a chatty child can never block on a full pipe while
/// we wait for it).
///
/// The body is streamed from a file rather than held in memory because Linux carries the
/// parent's resident size at fork() into the child's `ru_maxrss` (exec records the old
/// address space's high-water mark): a 10 MiB message in our heap would show up as 10 MiB
/// of every LDA's peak. `floor` in the output is what remains of that effect.
pub(super) fn run_child(
    cmd: &mut Command,
    head: &[u8],
    body: Option<&Path>,
    out: &File,
) -> Result<Run> {
    out.set_len(0)?;
    (&*out).seek(SeekFrom::Start(0))?;
    let mut body = body.map(File::open).transpose()?;
    cmd.stdin(Stdio::piped())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A child that stops reading early (an error) reports why in its status.
        let _ = feed(&mut stdin, head, body.as_mut());
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child, not yet reaped; both pointers are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let wall = start.elapsed();
    let status = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Ok(Run {
        wall,
        maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
        minflt: u64::try_from(ru.ru_minflt).unwrap_or(0),
        status,
        output: read_output(out),
    })
}

/// Where children write stdout and stderr: a memfd, because truncating a file on ext4 that
/// still has unwritten data forces it out (`auto_da_alloc`), and that disk traffic would land
/// in the middle of the LDAs' fsyncs.
pub(super) fn output_file() -> Result<File> {
    // SAFETY: the name is a valid C string; the returned descriptor is checked and owned.
    let fd = unsafe { libc::memfd_create(c"vmail-bench-lda-output".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub(super) fn read_output(out: &File) -> String {
    let mut s = String::new();
    if (&*out).seek(SeekFrom::Start(0)).is_ok() {
        let _ = (&*out).read_to_string(&mut s);
    }
    s
}

pub(super) fn feed(
    to: &mut impl Write,
    head: &[u8],
    body: Option<&mut File>,
) -> std::io::Result<()> {
    to.write_all(head)?;
    if let Some(f) = body {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            to.write_all(&buf[..n])?;
        }
    }
    Ok(())
}
