//! A running restic child as a value: started in its own process group,
//! stdout and stderr read on their own threads into a bounded channel, its
//! exit reported on a channel of its own, signalled as a group, and always
//! reaped.

use std::ffi::{CString, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, bounded};

/// Longest line we keep in one piece; longer ones are split. A child that
/// floods output without newlines must not grow our memory.
const MAX_LINE: usize = 4 * 1024;
/// Lines read but not yet handled by the job. When the job falls behind, the
/// readers wait, the pipe fills and the child blocks on its next write: a
/// flood of output costs at most this many lines of memory, whatever its
/// rate (an unbounded queue grew the daemon by 365 MB in one second of `yes`).
const OUTPUT_QUEUE: usize = 256;

/// The first argument that makes the daemon's binary start one child in
/// its place: `restic-cronned --exec-child DAEMON_PID PROGRAM ARGS…`.
/// Internal, so not in `--help`.
pub const EXEC_CHILD_ARG: &str = "--exec-child";

/// Whether this process's binary answers [`EXEC_CHILD_ARG`]; set by the
/// daemon's `main`, never by the unit tests' harness.
static THROUGH_SHIM: AtomicBool = AtomicBool::new(false);

/// Says that this process's binary answers [`EXEC_CHILD_ARG`] with
/// [`exec_child`], so children are started through it.
pub fn start_children_through_this_binary() {
    THROUGH_SHIM.store(true, Ordering::Relaxed);
}

/// The daemon's binary as a child's first moment: sets the parent-death
/// signal, puts /dev/null on stdin, keeps a reader on its output pipes
/// for restic's last words, and execs `PROGRAM ARGS…` (searched in
/// `PATH`, with the environment it was given). `args` follow
/// [`EXEC_CHILD_ARG`]. Returns only when the exec failed, after writing its
/// errno on the pipe it found on stdin, where [`RunningChild::start`] reads
/// it: a missing restic fails the start as it did when std forked.
pub fn exec_child(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    let parent = args
        .next()
        .and_then(|pid| pid.to_str()?.parse::<libc::pid_t>().ok());
    let argv: Result<Vec<CString>, _> = args.map(|a| CString::new(a.into_vec())).collect();
    let (Some(parent), Ok(argv)) = (parent, argv) else {
        return ExitCode::from(2);
    };
    if argv.is_empty() {
        return ExitCode::from(2);
    }
    // SAFETY: plain syscalls on this (single-threaded) process's own file
    // descriptors and signal state; every pointer is to a live value.
    unsafe {
        if !set_parent_death_signal(parent) {
            // The daemon is gone: nothing would supervise the child.
            return ExitCode::from(127);
        }
        let error_pipe = libc::fcntl(libc::STDIN_FILENO, libc::F_DUPFD_CLOEXEC, 3);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, libc::STDIN_FILENO);
            libc::close(null);
        }
        // A second read end of each output pipe, kept open into restic: if
        // the daemon dies, restic's last words after its SIGINT ("signal
        // interrupt received, cleaning up") find a reader. Without one,
        // restic 0.14 died of SIGPIPE and left its lock (measured: exit by
        // signal 13 when its pipe's reader was gone before the SIGINT, exit
        // 130 and no lock with this); in the daemon that depends on whether
        // the kernel closes the daemon's files before or after it signals
        // the job thread's children, so the test for it fails only
        // sometimes without this. Nobody reads these ends, so a restic that
        // wrote more than a pipe's 64 KiB after the daemon died would wait
        // there; while the daemon lives, it reads everything first.
        for fd in [c"/proc/self/fd/1", c"/proc/self/fd/2"] {
            libc::open(fd.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK);
        }
        // As std does for its children: Rust ignores SIGPIPE at start, and
        // an ignored signal stays ignored across exec; the mask is the
        // daemon's.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // glibc's posix_spawn leaves its internal signals (32 and 33)
        // ignored in the child, which would outlive the exec too. No
        // program ignores these itself, so this undoes only what the spawn
        // did. glibc's sigaction refuses them: the system call it is, with
        // an all-zero `struct sigaction` (SIG_DFL, no flags, empty mask),
        // larger than the kernel's on every architecture.
        #[cfg(target_env = "gnu")]
        for signal in 32..libc::SIGRTMIN() {
            let default = [0u64; 4];
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        pointers.push(std::ptr::null());
        libc::execvp(pointers[0], pointers.as_ptr());
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        let bytes = errno.to_ne_bytes();
        libc::write(error_pipe, bytes.as_ptr().cast(), bytes.len());
    }
    ExitCode::from(127)
}

/// If the daemon dies without stopping us (SIGKILL, a crash), the kernel
/// sends the child SIGINT, so restic removes its lock and ends instead of
/// running on unsupervised. The setting survives exec. The signal follows
/// the thread that started the child: the job's thread, which outlives the
/// run. `false` (after raising SIGINT) when `parent` died before the
/// setting took effect.
///
/// # Safety
///
/// Async-signal-safe: only prctl, getppid and raise.
unsafe fn set_parent_death_signal(parent: libc::pid_t) -> bool {
    // SAFETY: plain syscalls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
        if libc::getppid() != parent {
            libc::raise(libc::SIGINT);
            return false;
        }
    }
    true
}

/// A pipe whose both ends close on exec, so other children started
/// meanwhile don't inherit them.
fn cloexec_pipe() -> io::Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills in two new descriptors, which we own from here.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// The errno of a failed exec, from the shim's pipe: end of file (the
/// write end closed on a successful exec) is `None`.
fn exec_error(mut reader: File) -> Option<i32> {
    let mut errno = [0; 4];
    match reader.read_exact(&mut errno) {
        Ok(()) => Some(i32::from_ne_bytes(errno)),
        Err(_) => None,
    }
}

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a running child's pipes report.
#[derive(Debug)]
pub enum Output {
    /// One line, cut at [`MAX_LINE`] bytes, with ANSI escapes and control
    /// characters removed (see [`clean_line`]).
    Line(Stream, String),
    /// One pipe reached end of file.
    Closed(Stream),
}

/// What to run.
#[derive(Clone)]
pub struct Spec {
    pub program: OsString,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Added to (or replacing in) the inherited environment.
    pub env: Vec<(String, String)>,
    /// Removed from the inherited environment.
    pub env_remove: Vec<String>,
}

// Not derived: `env` holds the repository password and the job's secrets
// (S3 keys and the like), so only their names are shown.
impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("Spec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &env_names)
            .field("env_remove", &self.env_remove)
            .finish()
    }
}

/// A started child. Dropping it kills the whole process group and reaps the
/// child, so no restic outlives the job that started it.
pub struct RunningChild {
    child: Child,
    reaped: Option<ExitStatus>,
    /// Its output, line by line.
    pub output: Receiver<Output>,
    /// Ready once the child has exited. It is not reaped yet, so its pid
    /// (and process group) cannot be reused until [`RunningChild::reap`].
    /// A channel of its own: the exit must not wait behind queued output.
    pub exited: Receiver<()>,
    watcher: Option<JoinHandle<()>>,
}

impl RunningChild {
    /// Starts `spec` with stdin from /dev/null in a new process group.
    pub fn start(spec: &Spec) -> io::Result<RunningChild> {
        let through_shim = THROUGH_SHIM.load(Ordering::Relaxed);
        let mut command;
        let mut exec_errors = None;
        if through_shim {
            // The daemon's own binary starts the child (see `exec_child`):
            // with no `pre_exec`, std takes the posix_spawn (vfork) path,
            // which does not copy the daemon's mappings as a fork does (a
            // fork copied those of 1 000 job threads: 4 to 8 ms per run).
            // /proc/self/exe is this binary even after a package upgrade
            // replaced the file.
            command = Command::new("/proc/self/exe");
            command
                .arg0("restic-cronned")
                .arg(EXEC_CHILD_ARG)
                .arg(std::process::id().to_string())
                .arg(&spec.program)
                .args(&spec.args);
            // The shim's stdin is the pipe on which it reports a failed
            // exec; it puts /dev/null in its place before the exec.
            let (reader, writer) = cloexec_pipe()?;
            command.stdin(Stdio::from(writer));
            exec_errors = Some(reader);
        } else {
            // A program that links this library without answering
            // `--exec-child` (the unit tests): fork, set the parent-death
            // signal in the child, exec.
            command = Command::new(&spec.program);
            command.args(&spec.args).stdin(Stdio::null());
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: prctl, getppid and raise are async-signal-safe, and the
            // closure touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    // Exec'd all the same, as before the shim existed.
                    let _ = set_parent_death_signal(parent);
                    Ok(())
                });
            }
        }
        command
            .current_dir(&spec.cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a stop reaches ssh or rclone started by
            // restic, and a Ctrl-C on the daemon's terminal doesn't.
            .process_group(0);
        for key in &spec.env_remove {
            command.env_remove(key);
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn()?;
        // The command holds our copy of the pipe's write end: closing it
        // lets the read below see end of file once the shim has exec'd.
        drop(command);
        if let Some(reader) = exec_errors
            && let Some(errno) = exec_error(reader)
        {
            let _ = child.wait();
            return Err(io::Error::from_raw_os_error(errno));
        }
        let (sender, output) = bounded(OUTPUT_QUEUE);
        let (exit_sender, exited) = bounded(1);
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        // One thread per pipe: reading one to its end before the other
        // deadlocks once restic fills the pipe we are not reading.
        let threads = spawn_reader(stdout, Stream::Stdout, sender.clone())
            .and_then(|_| spawn_reader(stderr, Stream::Stderr, sender))
            .and_then(|_| spawn_exit_watcher(child.id(), exit_sender));
        let watcher = match threads {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                // Nobody would watch this child: it must not run on.
                // SAFETY: plain syscall on the group we just created.
                unsafe {
                    libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
                }
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(RunningChild {
            child,
            reaped: None,
            output,
            exited,
            watcher,
        })
    }

    /// Sends `signal` to the child's process group (a no-op once reaped).
    pub fn signal_group(&self, signal: libc::c_int) {
        if self.reaped.is_some() {
            return;
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall; the group still exists because its leader
        // is not reaped yet.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }

    /// Reaps the child after [`exited`](Self::exited) (returns at once then).
    /// Before this, the group id cannot be reused, so call
    /// [`signal_group`](Self::signal_group) first for anything that must
    /// reach the rest of the group.
    pub fn reap(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.reaped = Some(status);
        Ok(status)
    }
}

impl Drop for RunningChild {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.signal_group(libc::SIGKILL);
            let _ = self.reap();
        }
        // The reader threads end at end of file; they are not joined, since
        // a process that left our group may hold the pipes open forever.
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

fn spawn_reader(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    sender: Sender<Output>,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("{stream:?}").to_lowercase())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut reader = BufReader::with_capacity(MAX_LINE, pipe);
            let mut line = Vec::new();
            while read_line(&mut reader, &mut line).unwrap_or(0) > 0 {
                // Blocks while the queue is full; fails once the job has
                // stopped listening.
                if sender
                    .send(Output::Line(stream, clean_line(&line)))
                    .is_err()
                {
                    return;
                }
            }
            let _ = sender.send(Output::Closed(stream));
        })
}

/// The last `bytes` of `text`, cut at a character boundary.
pub fn last_bytes(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A line as it may be logged and shown: valid UTF-8, without its line end,
/// without ANSI escape sequences (`ESC[2K` and colours, which restic writes
/// around its progress) and without other control characters, which could
/// forge log lines or drive a terminal that shows the log. A carriage
/// return keeps what a terminal would show: the text after it. Tabs become
/// spaces.
pub fn clean_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\n', '\r']);
    let text = text.rsplit('\r').next().unwrap_or_default();
    let mut clean = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => {
                    let _ = chars.by_ref().find(|c| ('\u{40}'..='\u{7e}').contains(c));
                }
                // OSC (a window title, a link): up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // Any other escape is two characters long.
                _ => {}
            },
            '\t' => clean.push(' '),
            c if c.is_control() => {}
            c => clean.push(c),
        }
    }
    clean
}

/// Reads up to a newline or [`MAX_LINE`] bytes into `line`.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    line.clear();
    while line.len() < MAX_LINE {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let room = MAX_LINE - line.len();
        let (take, done) = match buf.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            break;
        }
    }
    Ok(line.len())
}

/// Waits for the child to exit without reaping it (`WNOWAIT`), so the job
/// thread can keep selecting on its inbox while restic runs, and signals
/// never reach a recycled pid.
fn spawn_exit_watcher(pid: u32, sender: Sender<()>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("exit-watcher".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            loop {
                // SAFETY: siginfo_t is plain data; waitid fills it in.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: plain syscall on our own child.
                let rc = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            let _ = sender.send(());
        })
}

/// Runs `spec` to its end, handing each output line to `on_line`; after
/// `limit` its group is killed. For short helper runs such as
/// `restic unlock`, where nothing else needs the thread meanwhile.
pub fn run_bounded(
    spec: &Spec,
    limit: std::time::Duration,
    mut on_line: impl FnMut(Stream, &str),
) -> io::Result<ExitStatus> {
    let mut child = RunningChild::start(spec)?;
    let deadline = crossbeam_channel::after(limit);
    let mut open_pipes = 2;
    let mut exited = child.exited.clone();
    let mut has_exited = false;
    while !(has_exited && open_pipes == 0) {
        // Output may end long before the child does.
        let lines = if open_pipes > 0 {
            child.output.clone()
        } else {
            crossbeam_channel::never()
        };
        crossbeam_channel::select! {
            recv(lines) -> output => match output {
                Ok(Output::Line(stream, line)) => on_line(stream, &line),
                Ok(Output::Closed(_)) => open_pipes -= 1,
                Err(_) => open_pipes = 0,
            },
            recv(exited) -> _ => {
                has_exited = true;
                exited = crossbeam_channel::never();
            },
            recv(deadline) -> _ => {
                child.signal_group(libc::SIGKILL);
                break;
            },
        }
    }
    child.reap()
}

/// The exit code, or the signal that killed the process, as words.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended for an unknown reason".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn splits_long_lines_and_keeps_short_ones() {
        let mut input = io::Cursor::new([b"ab\n".to_vec(), vec![b'x'; MAX_LINE + 5]].concat());
        let mut line = Vec::new();
        assert_eq!(read_line(&mut input, &mut line).unwrap(), 3);
        assert_eq!(read_line(&mut input, &mut line).unwrap(), MAX_LINE);
        assert_eq!(read_line(&mut input, &mut line).unwrap(), 5);
        assert_eq!(read_line(&mut input, &mut line).unwrap(), 0);
    }

    #[test]
    fn clean_lines_carry_no_escapes_or_control_characters() {
        let clean = |bytes: &[u8]| clean_line(bytes);
        assert_eq!(
            clean(b"\x1b[2Ksignal interrupt received\n"),
            "signal interrupt received"
        );
        assert_eq!(clean(b"\x1b[1;31mFatal:\x1b[0m wrong\r\n"), "Fatal: wrong");
        assert_eq!(clean(b"\x1b]0;title\x07text"), "text");
        assert_eq!(clean(b"\x1b]8;;http://x\x1b\\link"), "link");
        assert_eq!(clean(b"10%\r50%\r100% done"), "100% done");
        assert_eq!(clean(b"a\tb\x00c\x08d\x7f"), "a bcd");
        assert_eq!(clean(b"fake\x1bMline"), "fakeline");
        assert_eq!(clean(&[0; 100]), "");
        assert_eq!(clean(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
    }

    fn shell(script: &str) -> Spec {
        Spec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: Vec::new(),
            env_remove: Vec::new(),
        }
    }

    #[test]
    fn a_bounded_run_waits_for_the_exit_after_the_output_ends_and_not_past_its_limit() {
        let quiet = shell("exec >/dev/null 2>&1; sleep 0.2; exit 4");
        let status = run_bounded(&quiet, Duration::from_secs(20), |_, _| {}).unwrap();
        assert_eq!(status.code(), Some(4));
        let hung = shell("exec >/dev/null 2>&1; exec sleep 20");
        let status = run_bounded(&hung, Duration::from_millis(100), |_, _| {}).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn reports_lines_from_both_pipes_then_exit() {
        let mut child = RunningChild::start(&shell("echo out; echo err >&2; exit 3")).unwrap();
        let mut lines = Vec::new();
        let mut closed = 0;
        while closed < 2 {
            match child.output.recv().unwrap() {
                Output::Line(s, l) => lines.push((s, l)),
                Output::Closed(_) => closed += 1,
            }
        }
        child.exited.recv().unwrap();
        assert_eq!(child.reap().unwrap().code(), Some(3));
        lines.sort_by_key(|(s, _)| *s == Stream::Stderr);
        assert_eq!(
            lines,
            [
                (Stream::Stdout, "out".to_string()),
                (Stream::Stderr, "err".to_string())
            ]
        );
    }
}
