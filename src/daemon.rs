//! The daemon: command line, start-up, and the supervisor that owns every
//! job thread, answers the API's commands, reloads job files and shuts
//! everything down on SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, select, unbounded};
use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle as SignalHandle, Signals};

use crate::api::board::{Board, BoardEntry, JobStatus, Status};
use crate::api::http::{Access, Command, Envelope, HttpServer, Reply};
use crate::config::command_line;
use crate::config::job_file::{self, Entry, Job};
use crate::config::{self, Config, KeyringChoice, Source};
use crate::delivery::healthcheck::{PingSender, Pinger};
use crate::delivery::notify::{self, NotifySender};
use crate::files;
use crate::job::outcome::Reason;
use crate::job::run::{Context, Notice};
use crate::job::state;
use crate::job::{self, Control, JobHandle, Prepared};
use crate::logging;
use crate::probe;
use crate::schedule::clock;
use crate::schedule::{self, Saved, Schedule};
use crate::secrets::keyring::{self, Keyring, SessionKeyring};
use crate::service::{self, Notifier};

pub const USAGE: &str = "\
Usage: restic-cronned [OPTIONS] [JOBDIR [ADDR]]

Runs restic jobs from the JSON job files in JOBDIR on their schedules and
serves a control API on ADDR.

Arguments:
  JOBDIR             job directory (default: the config's JobPath)
  ADDR               listen address: HOST:PORT, [V6]:PORT, or :PORT for
                     127.0.0.1 only; \"\" disables the HTTP server
                     (default: the config's SrvConf.Port, :8080)

Options:
  -c, --config FILE  read FILE instead of ~/.config/restic-cronned/config;
                     for a directory, its config, else its config.json
  -j DIR             the job directory, as JOBDIR
  -p PORT            the listen address, as ADDR: a bare port such as 8080
                     means :8080 (127.0.0.1 only); an address is as given
  --check            load the config and every job, print every problem,
                     exit 0 when all is valid and 1 otherwise
  --probe            with --check: then try every valid job as its run
                     would start (restic found, keyring entry present,
                     repository opens with `restic cat config --no-lock`,
                     preconditions hold, hook programs found), in
                     parallel, at most 30 s each; one line per job;
                     writes nothing, takes no lock
  --run NAME         run job NAME once in the foreground, as the daemon
                     would (preconditions, hooks, password, pings), and
                     exit 0 for success or warning, 1 otherwise; starts no
                     other job and no server, and leaves its schedule alone
  -h, --help         print this help
  -V, --version      print the version

-c, -j and -p are the later Go original's flags; its --configpath,
--jobpath and --port work too. Give the job directory and the address
once each: -j with JOBDIR, or -p with ADDR, is an error.
";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub check: bool,
    /// `--probe`: with `--check`, also probe every valid job.
    pub probe: bool,
    /// `--run NAME`: run that job once in the foreground.
    pub run: Option<String>,
    pub help: bool,
    pub version: bool,
    pub job_dir: Option<PathBuf>,
    pub addr: Option<String>,
}

/// Why the daemon stopped or could not start; `main` prints it and exits
/// with [`Error::exit_code`].
#[derive(Debug)]
pub enum Error {
    /// Bad command line (exit 2).
    Usage(String),
    /// The config file cannot be used (exit 2).
    Config(config::ConfigError),
    /// Neither JOBDIR nor JobPath, and no HOME to make a default (exit 2).
    NoJobDir,
    /// The listen address of ADDR, `-p` or the config (exit 2).
    ListenAddress(config::AddrError),
    /// `SrvConf.TokenFile` cannot be read (exit 2).
    TokenFile(config::TokenFileError),
    /// `LogDir` or `StateDir` cannot be made or is not safe (exit 2).
    PrivateDir(files::DirError),
    /// The log file cannot be opened (exit 2).
    LogFile(logging::LogFileError),
    /// The job directory cannot be read (exit 2).
    JobDir(job_file::DirError),
    /// `--run NAME` names no job in `dir` (exit 2).
    NoSuchJob {
        name: String,
        dir: PathBuf,
        jobs: Vec<String>,
    },
    /// `--run NAME` names a job whose file has problems (exit 2).
    InvalidJob { name: String, problems: Vec<String> },
    /// `--check` found problems (exit 1; they were printed).
    CheckFailed,
    /// The run of `--run` did not succeed (exit 1; it was printed).
    RunFailed,
    /// The system refused a thread the daemon needs (exit 1).
    Thread {
        /// Which thread, as in "the clock thread".
        what: &'static str,
        source: io::Error,
    },
    /// The signal handlers cannot be installed (exit 1).
    Signals(io::Error),
    /// The listen address cannot be bound (exit 1).
    Listen {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    /// The HTTP server cannot start (exit 1).
    Http(crate::api::http::SpawnError),
}

impl Error {
    /// 2 for what the user can fix in the command line, config or job
    /// files; 1 for everything else (SPEC §1).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::Config(_)
            | Error::NoJobDir
            | Error::ListenAddress(_)
            | Error::TokenFile(_)
            | Error::PrivateDir(_)
            | Error::LogFile(_)
            | Error::JobDir(_)
            | Error::NoSuchJob { .. }
            | Error::InvalidJob { .. } => 2,
            Error::CheckFailed
            | Error::RunFailed
            | Error::Thread { .. }
            | Error::Signals(_)
            | Error::Listen { .. }
            | Error::Http(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => f.write_str(m),
            Error::Config(e) => e.fmt(f),
            Error::NoJobDir => f.write_str(
                "no job directory: give JOBDIR, or JobPath in the config (HOME is not set)",
            ),
            Error::ListenAddress(e) => e.fmt(f),
            Error::TokenFile(e) => e.fmt(f),
            Error::PrivateDir(e) => e.fmt(f),
            Error::LogFile(e) => e.fmt(f),
            Error::JobDir(e) => e.fmt(f),
            Error::NoSuchJob { name, dir, jobs } => write!(
                f,
                "no job named {name:?} in {} (jobs: {})",
                dir.display(),
                if jobs.is_empty() {
                    "none".into()
                } else {
                    jobs.join(", ")
                }
            ),
            Error::InvalidJob { name, problems } => {
                write!(f, "job {name} is invalid: {}", problems.join("; "))
            }
            Error::CheckFailed => f.write_str("the check found problems"),
            Error::RunFailed => f.write_str("the run did not succeed"),
            Error::Thread { what, source } => write!(f, "cannot start the {what} thread: {source}"),
            Error::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            Error::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Http(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::ListenAddress(e) => Some(e),
            Error::TokenFile(e) => Some(e),
            Error::PrivateDir(e) => Some(e),
            Error::LogFile(e) => Some(e),
            Error::JobDir(e) => Some(e),
            Error::Thread { source, .. }
            | Error::Signals(source)
            | Error::Listen { source, .. } => Some(source),
            Error::Http(e) => Some(e),
            _ => None,
        }
    }
}

/// Every long option, so that one written with a single dash is refused:
/// `-check` would otherwise read as `-c heck`.
const LONG_OPTIONS: &[&str] = &[
    "check",
    "config",
    "configpath",
    "help",
    "jobpath",
    "port",
    "probe",
    "run",
    "version",
];

/// The listen address `-p` gives: a bare port is that port on the
/// loopback address (`8080` is `:8080`), as the later original's users
/// wrote it; anything else is an address, taken as given.
fn addr_of_port_flag(value: OsString) -> Result<String, String> {
    let value = command_line::text(value, "listen address")?;
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!(":{value}"))
    } else {
        Ok(value)
    }
}

/// Parses the command line (without the program name).
///
/// The later original's flags are aliases (SPEC §1.1): `-c`/`--configpath`
/// for `--config`, `-j`/`--jobpath` for JOBDIR, `-p`/`--port` for ADDR. Its
/// parser (kingpin) took `-c X`, `-cX`, `--configpath X` and
/// `--configpath=X`; the shared grammar also takes `-c=X`.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Args, Error> {
    parse_words(args).map_err(Error::Usage)
}

fn parse_words(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use command_line::Arg::{Long, Short, Value};
    let mut parsed = Args::default();
    let mut positional = Vec::new();
    let mut job_dir_flag: Option<PathBuf> = None;
    let mut addr_flag: Option<String> = None;
    let mut parser = command_line::Parser::new(args, LONG_OPTIONS);
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Long("check") => parsed.check = true,
            Long("probe") => parsed.probe = true,
            Short('h') | Long("help") => parsed.help = true,
            Short('V') | Long("version") => parsed.version = true,
            Long("config") => parsed.config = Some(parser.value("a file")?.into()),
            Short('c') | Long("configpath") => {
                parsed.config = Some(parser.value("a file or a directory")?.into());
            }
            Short('j') | Long("jobpath") => {
                job_dir_flag = Some(parser.value("a directory")?.into());
            }
            Short('p') | Long("port") => {
                addr_flag = Some(addr_of_port_flag(parser.value("a port or an address")?)?);
            }
            Long("run") => {
                parsed.run = Some(command_line::text(parser.value("a job name")?, "job name")?);
            }
            // Paths need not be UTF-8; the address must be (below).
            Value(value) => positional.push(value),
            _ => return Err(parser.unknown()),
        }
    }
    let mut positional = positional.into_iter();
    // A flag and its positional together are refused, not ranked: with
    // `-j DIR X` the user may have meant X as the address, and guessing
    // wrong would watch the wrong directory or bind the wrong port.
    parsed.job_dir = match (job_dir_flag, positional.next()) {
        (Some(flag), Some(arg)) => {
            return Err(format!(
                "the job directory is given twice, by -j {flag:?} and as the argument {arg:?}; \
                 give it once (with -j, give the address with -p)"
            ));
        }
        (flag, arg) => flag.or(arg.map(PathBuf::from)),
    };
    let addr = match positional.next() {
        Some(addr) => Some(command_line::text(addr, "listen address")?),
        None => None,
    };
    parsed.addr = match (addr_flag, addr) {
        (Some(flag), Some(arg)) => {
            return Err(format!(
                "the listen address is given twice, by -p {flag:?} and as the argument {arg:?}; \
                 give it once"
            ));
        }
        (flag, arg) => flag.or(arg),
    };
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    if parsed.probe && !parsed.check {
        return Err("--probe works only with --check".into());
    }
    if parsed.run.is_some() && parsed.check {
        return Err("--run and --check do not go together".into());
    }
    Ok(parsed)
}

/// Runs the daemon (or the check) until SIGTERM/SIGINT.
pub fn run(args: Args) -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).ok();
    let (mut config, source, warnings) =
        config::load(args.config.as_deref(), &env).map_err(Error::Config)?;
    if let Some(dir) = args.job_dir {
        config.job_path = dir;
    }
    if config.job_path.as_os_str().is_empty() {
        return Err(Error::NoJobDir);
    }
    if let Some(addr) = args.addr {
        config::parse_addr(&addr).map_err(Error::ListenAddress)?;
        config.addr = addr;
    }
    if args.check {
        return check(&config, &warnings, args.probe);
    }
    if let Some(name) = &args.run {
        return run_one(&config, &warnings, name);
    }
    limit_malloc_arenas();
    // Everything we write lives in these two; nobody else may plant links
    // in them (SPEC §9).
    for (what, dir) in private_dirs(&config) {
        files::make_private_dir(what, dir).map_err(Error::PrivateDir)?;
    }
    logging::init(&config).map_err(Error::LogFile)?;
    match &source {
        Source::File(path) => info!("config from {}", path.display()),
        Source::Defaults(path) => info!("no config file at {}; using defaults", path.display()),
    }
    for warning in &warnings {
        warn!("config: {warning}");
    }
    join_session_keyring(&config);
    job_file::check_dir(&config.job_path).map_err(Error::JobDir)?;
    Daemon::start(config)?.run()
}

/// Logs what a reload (`/reload` or SIGHUP) did, or one line per problem
/// when it changed nothing.
fn log_reload(by: &str, reply: &Reply) {
    let text = reply.body.pieces().concat();
    let lines = text.lines().filter(|line| !line.trim().is_empty());
    if reply.status == 200 {
        for line in lines {
            info!("{by}: {line}");
        }
    } else {
        for line in lines {
            warn!("{by}: {line}");
        }
    }
}

/// `--run NAME`: runs job NAME once in the foreground, as the daemon would,
/// but writes no state file and triggers no `NextJob` (SPEC §1.1). SIGINT
/// (Ctrl-C) and SIGTERM stop it the way `/stop` stops a run.
fn run_one(config: &Config, config_warnings: &[String], name: &str) -> Result<(), Error> {
    logging::init_stderr(config.log_level);
    for warning in config_warnings {
        warn!("config: {warning}");
    }
    let entries = job_file::load_dir(&config.job_path).map_err(Error::JobDir)?;
    let Some(entry) = entries.iter().find(|e| e.name == name) else {
        return Err(Error::NoSuchJob {
            name: name.to_string(),
            dir: config.job_path.clone(),
            jobs: entries.iter().map(|e| e.name.clone()).collect(),
        });
    };
    let job = match &entry.job {
        Ok(job) => job.clone(),
        Err(problems) => {
            return Err(Error::InvalidJob {
                name: name.to_string(),
                problems: problems.iter().map(|p| p.to_string()).collect(),
            });
        }
    };
    join_session_keyring(config);
    let pinger = Pinger::spawn().map_err(|source| Error::Thread {
        what: "healthcheck",
        source,
    })?;
    let notifications = notify::Notifier::new(Arc::default());
    // Nobody reads the notices: `--run` starts no other job.
    let board = Board::new(&job_dir(config).display().to_string());
    let mut context = job_context(
        config,
        board,
        unbounded().0,
        pinger.sender(),
        notifications.sender(),
        false,
    );
    // The run goes into the history the daemon keeps, in a StateDir the
    // daemon made and checked: `--run` makes none, and writes no file
    // another user (root running `--run` against a service's StateDir)
    // would lock the daemon out of.
    let state_dir = &config.state_dir;
    let no_history = if !state_dir.is_dir() {
        Some(format!(
            "{} does not exist yet (the daemon makes it)",
            state_dir.display()
        ))
    } else if let Some(owner) = foreign_owner(state_dir) {
        Some(format!(
            "{} belongs to uid {owner}; run --run as that user (e.g. runuser -u \
             restic-cronned -- restic-cronned --run {name})",
            state_dir.display()
        ))
    } else {
        files::check_private_dir("StateDir", state_dir)
            .err()
            .map(|e| e.to_string())
    };
    if let Some(why) = no_history {
        warn!("not recording this run in the history: {why}");
        context.history_runs = 0;
    }
    let context = Arc::new(context);
    let (control_sender, control) = unbounded();
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(Error::Signals)?;
    let signal_handle = signals.handle();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                info!("signal {signal}: stopping the run");
                if control_sender.send(Control::Signal).is_err() {
                    break;
                }
            }
        })
        .map_err(|source| Error::Thread {
            what: "signal",
            source,
        })?;
    let record = job::run_once(job, context, control);
    signal_handle.close();
    // Dropping these sends the end ping and the notifications (within
    // their timeouts).
    drop(pinger);
    drop(notifications);
    match record {
        Some(record) => {
            let exit = record
                .exit_code
                .map_or("no exit code".into(), |c| format!("exit code {c}"));
            let error = record
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            println!("{name}: {} ({exit}){error}", record.outcome.as_str());
            if record.outcome.succeeded() {
                Ok(())
            } else {
                Err(Error::RunFailed)
            }
        }
        None => {
            println!("{name}: stopped before it started");
            Err(Error::RunFailed)
        }
    }
}

/// The owner of `dir` when it exists and is not this process's user.
fn foreign_owner(dir: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let owner = std::fs::metadata(dir).ok()?.uid();
    (owner != me).then_some(owner)
}

/// How long healthcheck pings and notifications still queued when the
/// jobs have ended may take at shutdown, all together.
const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the clock watcher compares the clocks: a minute; test builds
/// (debug, or the `test-hooks` feature) take `RESTIC_CRONNED_CLOCK_CHECK_MS`,
/// so a test can see a jump without waiting a minute.
fn clock_check_every() -> std::time::Duration {
    #[cfg(any(debug_assertions, feature = "test-hooks"))]
    if let Some(ms) = std::env::var("RESTIC_CRONNED_CLOCK_CHECK_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        return std::time::Duration::from_millis(ms);
    }
    clock::CHECK_EVERY
}

/// The job directory, absolute (restic's working directory).
fn job_dir(config: &Config) -> PathBuf {
    std::path::absolute(&config.job_path).unwrap_or(config.job_path.clone())
}

/// What every job shares: the daemon's jobs (`persist`: they own their
/// state files) or `--run`'s one.
fn job_context(
    config: &Config,
    board: Board,
    notices: Sender<Notice>,
    pings: PingSender,
    notify: NotifySender,
    persist: bool,
) -> Context {
    Context {
        board,
        state_dir: config.state_dir.clone(),
        job_dir: job_dir(config),
        stop_grace: config.stop_grace,
        notices,
        repositories: Arc::default(),
        pings,
        keyring: Keyring::unattended(config.keyring),
        persist,
        history_runs: config.history_runs,
        notify,
        default_notify: config.notify.clone(),
        host: notify::host_name(),
    }
}

/// Makes sure the kernel keyring can find its keys (unless only the Secret
/// Service is used). Call it before any thread starts: threads inherit the
/// session keyring.
fn join_session_keyring(config: &Config) {
    if config.keyring == KeyringChoice::SecretService {
        return;
    }
    match keyring::join_session_keyring() {
        Ok(SessionKeyring::Joined) => info!(
            "joined a session keyring of our own: the process had only the user-default \
             one, where the kernel keyring cannot find its keys"
        ),
        Ok(SessionKeyring::Kept) => {}
        Err(e) => {
            warn!("cannot look at the session keyring ({e}); the kernel keyring may fail")
        }
    }
}

/// The directories the daemon writes to, by their config names.
fn private_dirs(config: &Config) -> [(&'static str, &std::path::Path); 2] {
    [("LogDir", &config.log_dir), ("StateDir", &config.state_dir)]
}

/// `--check`: print every problem, then with `probe` probe every valid job;
/// `Err(CheckFailed)` when there are errors or a probe failed.
fn check(config: &Config, config_warnings: &[String], probe: bool) -> Result<(), Error> {
    for warning in config_warnings {
        println!("warning: config: {warning}");
    }
    // A directory that is missing is made at start; one that exists must
    // pass the start-up checks already.
    let mut errors = 0;
    for (what, dir) in private_dirs(config) {
        if dir.exists()
            && let Err(e) = files::check_private_dir(what, dir)
        {
            println!("error: {e}");
            errors += 1;
        }
    }
    let entries = job_file::load_dir(&config.job_path).map_err(|e| {
        println!("error: {e}");
        Error::CheckFailed
    })?;
    for entry in &entries {
        for warning in &entry.warnings {
            println!("warning: {warning}");
        }
        match &entry.job {
            Ok(job) => {
                let schedule = job
                    .schedule
                    .as_ref()
                    .map_or("only when triggered".into(), |s| s.to_string());
                println!("ok: {} ({}): {schedule}", job.name, entry.path.display());
                if let Some(schedule) = &job.schedule {
                    println!("  next runs: {}", next_runs(config, job, schedule));
                }
            }
            Err(problems) => {
                errors += problems.len();
                for problem in problems {
                    println!("error: {problem}");
                }
            }
        }
    }
    println!(
        "{} job file(s) in {}, {} valid, {errors} error(s)",
        entries.len(),
        config.job_path.display(),
        entries.iter().filter(|e| e.job.is_ok()).count()
    );
    if probe {
        errors += probe_jobs(config, &entries);
    }
    if errors > 0 {
        Err(Error::CheckFailed)
    } else {
        Ok(())
    }
}

/// `--probe`: probes every valid job of `entries` and prints one line per
/// job, or per problem; returns the number of jobs whose probe failed.
fn probe_jobs(config: &Config, entries: &[Entry]) -> usize {
    let jobs: Vec<Arc<Job>> = entries
        .iter()
        .filter_map(|entry| entry.job.as_ref().ok().cloned())
        .collect();
    join_session_keyring(config);
    // As the daemon's jobs see it (`Daemon::start`).
    let job_dir = std::path::absolute(&config.job_path).unwrap_or(config.job_path.clone());
    let reports = probe::probe_all(
        &jobs,
        &job_dir,
        Keyring::unattended(config.keyring),
        probe::PROBE_LIMIT,
    );
    let mut failed = 0;
    for report in &reports {
        if report.problems.is_empty() {
            println!("ok: {} (probe)", report.name);
        } else {
            failed += 1;
        }
        for problem in &report.problems {
            println!("error: {}: {problem}", report.name);
        }
    }
    println!("{} job(s) probed, {failed} failed", reports.len());
    failed
}

/// Keeps a daemon with many job threads small: one malloc arena instead of
/// one per thread (our threads allocate little and rarely, so they never
/// contend for it).
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes allocator settings; called before any
    // thread but main exists. glibc only: musl's malloc has no arenas.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives memory that loading job files used and freed back to the system,
/// so the idle daemon does not keep the high-water mark of a (re)load.
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free memory to the system. glibc
    // only: musl's malloc returns freed memory by itself.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The next three regular runs of `job` if the daemon started now, in local
/// time, so that users see what their schedule means.
fn next_runs(config: &Config, job: &Job, schedule: &Schedule) -> String {
    let path = state::path(&config.state_dir, job.name.as_str());
    // As the job reads it at start (`job::Actor::start`), without the
    // warning: `--check` is about the job file.
    let saved = match state::read(&path) {
        Ok(None) => Saved::Missing,
        Ok(Some(state)) => state.saved(),
        Err(_) => Saved::Unreadable,
    };
    let now = clock::now();
    let tz = jiff::tz::TimeZone::system();
    schedule::upcoming_runs(schedule, &saved, now, &tz, 3)
        .into_iter()
        .map(|run| {
            if run <= now {
                "now".to_string()
            } else {
                // Interval slots counted from now carry its nanoseconds.
                state::local_rfc3339(run.round(jiff::Unit::Second).unwrap_or(run))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long a reload's answer waits for a job to show its new definition.
const SHOWN_WITHIN: std::time::Duration = std::time::Duration::from_millis(250);

/// A job file the daemon runs: its definition, its thread (none when it is
/// invalid) and its entry on the board, which the daemon reads and lists
/// but never writes.
struct Slot {
    entry: Entry,
    handle: Option<JobHandle>,
    status: BoardEntry,
}

impl Slot {
    /// The job's thread, when it takes triggers (it is valid and not
    /// stopped).
    fn triggerable(&self) -> Option<&JobHandle> {
        let running = matches!(
            self.status.read(|s| s.status),
            Status::Waiting | Status::Checking | Status::Working
        );
        self.handle.as_ref().filter(|_| running)
    }
}

struct Daemon {
    context: Arc<Context>,
    notices: Receiver<Notice>,
    commands: Receiver<Envelope>,
    signals: Receiver<i32>,
    /// Jumps of the wall clock (a suspend, a clock set); the watcher ends
    /// when its stop sender drops with the daemon.
    clock_jumps: Receiver<jiff::SignedDuration>,
    _clock_stop: Sender<()>,
    // Drop order: the HTTP server goes first (it sends us commands), then
    // the jobs are stopped, then the signal thread.
    http: Option<HttpServer>,
    slots: BTreeMap<String, Slot>,
    /// Removed jobs whose thread may still be stopping restic.
    retiring: Vec<JobHandle>,
    signal_thread: Option<(SignalHandle, JoinHandle<()>)>,
    /// systemd, when it started us with `Type=notify`.
    notifier: Notifier,
    /// Ticks at half the watchdog period when systemd watches us; never
    /// otherwise. A tick (not a deadline) is right here: a missed beat needs
    /// no catching up, and a supervisor too busy to take the tick is exactly
    /// what the watchdog is for.
    watchdog: Receiver<std::time::Instant>,
    /// Last: they send the end pings and notifications of the runs the
    /// shutdown stopped, within one grace period (`shutdown`).
    pinger: Pinger,
    notifications: notify::Notifier,
}

impl Daemon {
    fn start(config: Config) -> Result<Daemon, Error> {
        let (signal_sender, signals) = unbounded();
        let mut signal_source = Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(Error::Signals)?;
        let signal_handle = signal_source.handle();
        let signal_thread = thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for signal in signal_source.forever() {
                    if signal_sender.send(signal).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| Error::Thread {
                what: "signal",
                source,
            })?;

        let (jump_sender, clock_jumps) = unbounded();
        let (clock_stop, stop_watching) = crossbeam_channel::bounded(0);
        clock::watch(clock_check_every(), jump_sender, stop_watching).map_err(|source| {
            Error::Thread {
                what: "clock",
                source,
            }
        })?;
        let (notice_sender, notices) = unbounded();
        let pinger = Pinger::spawn().map_err(|source| Error::Thread {
            what: "healthcheck",
            source,
        })?;
        let board = Board::new(&job_dir(&config).display().to_string());
        let notifications = notify::Notifier::new(board.notifications_failed().clone());
        let context = Arc::new(job_context(
            &config,
            board.clone(),
            notice_sender,
            pinger.sender(),
            notifications.sender(),
            true,
        ));
        let directory = context.job_dir.display().to_string();
        let token = config.api_token().map_err(Error::TokenFile)?;
        let (command_sender, commands) = unbounded();
        // Bind first, so a taken port fails before any job starts; serve
        // after the jobs are on the board, so the first answer lists them.
        let server = match config::parse_addr(&config.addr).map_err(Error::ListenAddress)? {
            None => {
                info!("no listen address: the HTTP server is off");
                None
            }
            Some(addr) => {
                let listen_error = |source| Error::Listen { addr, source };
                let server = std::net::TcpListener::bind(addr).map_err(listen_error)?;
                let bound = server.local_addr().map_err(listen_error)?;
                info!("listening on {bound}");
                if !addr.ip().is_loopback() && token.is_none() {
                    warn!(
                        "listening on {addr}, which is not a loopback address, without a \
                         token: anyone who can reach it can control the jobs; set \
                         SrvConf.Token or SrvConf.TokenFile"
                    );
                }
                Some(server)
            }
        };
        let notifier = Notifier::from_env(&|key| std::env::var(key).ok());
        let mut daemon = Daemon {
            context,
            notices,
            commands,
            signals,
            http: None,
            slots: BTreeMap::new(),
            retiring: Vec::new(),
            signal_thread: Some((signal_handle, signal_thread)),
            clock_jumps,
            _clock_stop: clock_stop,
            watchdog: notifier
                .watchdog_interval()
                .map_or_else(crossbeam_channel::never, crossbeam_channel::tick),
            notifier,
            pinger,
            notifications,
        };
        let entries = job_file::load_dir(&daemon.context.job_dir).map_err(Error::JobDir)?;
        info!("{} job file(s) in {directory}", entries.len());
        // Every job is on the board with its next run before the API
        // answers; the threads start after (a thousand take about 30 ms),
        // and commands wait for them in the supervisor's inbox.
        let prepared: Vec<(String, Prepared)> = entries
            .into_iter()
            .filter_map(|entry| daemon.prepare(entry))
            .collect();
        let access = Access::new(token);
        daemon.http = server
            .map(|server| HttpServer::spawn(server, access, board, command_sender))
            .transpose()
            .map_err(Error::Http)?;
        for (file_name, prepared) in prepared {
            // A job without a thread is shown invalid; start-up goes on.
            let _ = daemon.launch(&file_name, prepared);
        }
        release_free_memory();
        daemon.tell_systemd("READY=1");
        Ok(daemon)
    }

    /// Sends `state` (may be empty) to systemd with the current status line.
    fn tell_systemd(&self, state: &str) {
        if !self.notifier.is_active() {
            return;
        }
        let status = service::status_line(&self.context.board.overview(), clock::now());
        let message = if state.is_empty() {
            format!("STATUS={status}")
        } else {
            format!("{state}\nSTATUS={status}")
        };
        self.notifier.notify(&message);
    }

    /// `/reload` (of one job or all) and SIGHUP, with systemd told.
    fn reload(&mut self, name: Option<&str>) -> Reply {
        self.tell_systemd("RELOADING=1");
        let reply = match name {
            Some(name) => self.reload_one(name),
            None => {
                let reply = self.reload_all();
                release_free_memory();
                reply
            }
        };
        self.tell_systemd("READY=1");
        reply
    }

    fn run(mut self) -> Result<(), Error> {
        loop {
            select! {
                recv(self.commands) -> msg => match msg {
                    Ok((command, reply)) => {
                        let reload = match &command {
                            Command::Reload(Some(name)) => Some(format!("[{name}] /reload")),
                            Command::Reload(None) => Some("/reload".to_string()),
                            _ => None,
                        };
                        let answer = self.command(command);
                        if let Some(by) = reload {
                            log_reload(&by, &answer);
                        }
                        let _ = reply.send(answer);
                        self.tell_systemd("");
                    }
                    // No HTTP server: a disconnected channel is always ready,
                    // so stop selecting on it rather than spin.
                    Err(_) => self.commands = crossbeam_channel::never(),
                },
                recv(self.notices) -> msg => if let Ok(Notice::FollowUp { from, next }) = msg {
                    for name in next {
                        self.follow_up(from.as_str(), name.as_str());
                    }
                },
                recv(self.signals) -> msg => match msg {
                    Ok(SIGHUP) => {
                        let reply = self.reload(None);
                        log_reload("SIGHUP", &reply);
                    }
                    Ok(signal) => {
                        info!("signal {signal}: stopping every job");
                        break;
                    }
                    Err(_) => break,
                },
                // From this loop, so systemd hears nothing while the
                // supervisor is stuck, and restarts it.
                recv(self.watchdog) -> _ => self.tell_systemd("WATCHDOG=1"),
                recv(self.clock_jumps) -> jump => if let Ok(jump) = jump {
                    info!(
                        "the wall clock jumped by {} (a suspend, or the clock was set): every job \
                         looks at it again",
                        schedule::format_duration(jump.round(jiff::Unit::Second).map_or(
                            jump.unsigned_abs(),
                            |j| j.unsigned_abs()
                        ))
                    );
                    for handle in self.slots.values().filter_map(|s| s.handle.as_ref()) {
                        handle.send(Control::ClockJumped);
                    }
                },
            }
            self.retiring.retain(|handle| !handle.is_finished());
        }
        self.tell_systemd("STOPPING=1");
        self.shutdown();
        info!("stopped");
        Ok(())
    }

    /// Starts a slot for `entry` (a job thread when it is valid). `Err` when
    /// the system refused the job its thread: the job is invalid then, with
    /// that error, and the daemon and every other job go on.
    fn add(&mut self, entry: Entry) -> Result<(), String> {
        match self.prepare(entry) {
            Some((file_name, prepared)) => self.launch(&file_name, prepared),
            None => Ok(()),
        }
    }

    /// Makes the slot of `entry` and lists its entry on the board; a valid
    /// job comes back with its start rules applied, for [`Daemon::launch`].
    fn prepare(&mut self, entry: Entry) -> Option<(String, Prepared)> {
        let file_name = entry.file_name();
        for warning in &entry.warnings {
            warn!("{warning}");
        }
        let (status, prepared) = match &entry.job {
            Ok(job) => {
                // A removed job of this name whose thread is still ending
                // hands over to the new one.
                let predecessor = self
                    .retiring
                    .iter()
                    .position(|h| h.name().as_str() == entry.name)
                    .map(|i| self.retiring.swap_remove(i));
                let status = BoardEntry::new(JobStatus::new(job.clone()));
                let context = self.context.clone();
                let prepared =
                    JobHandle::prepare(job.clone(), status.clone(), context, predecessor);
                (status, Some(prepared))
            }
            Err(problems) => {
                for problem in problems {
                    error!("{problem}");
                }
                // The entry of a job without a thread is written once, here.
                (BoardEntry::new(JobStatus::invalid(&entry)), None)
            }
        };
        self.context.board.list(&file_name, status.clone());
        let slot = Slot {
            entry,
            handle: None,
            status,
        };
        self.slots.insert(file_name.clone(), slot);
        prepared.map(|prepared| (file_name, prepared))
    }

    /// Starts the thread of the job prepared for the slot `file_name`.
    fn launch(&mut self, file_name: &str, prepared: Prepared) -> Result<(), String> {
        let name = prepared.name().to_string();
        let Some(slot) = self.slots.get_mut(file_name) else {
            return Ok(());
        };
        match prepared.launch() {
            Ok(handle) => {
                slot.handle = Some(handle);
                Ok(())
            }
            Err(e) => {
                let error = format!(
                    "cannot start a thread for job {name}: {e} (a task limit such as \
                     systemd's TasksMax or ulimit -u?)"
                );
                error!("{error}");
                slot.entry.invalidate(error.clone());
                slot.status = BoardEntry::new(JobStatus::invalid(&slot.entry));
                self.context.board.list(file_name, slot.status.clone());
                Err(error)
            }
        }
    }

    /// Removes the slot of `file_name`; its thread stops in the background.
    fn retire(&mut self, file_name: &str) {
        if let Some(slot) = self.slots.remove(file_name) {
            self.context.board.unlist(file_name);
            if let Some(handle) = slot.handle {
                handle.send(Control::Exit);
                self.retiring.push(handle);
            }
        }
    }

    /// The job called `name`: its file name and slot.
    fn find(&self, name: &str) -> Option<(&String, &Slot)> {
        let (file_name, _) = self.context.board.find(name)?;
        self.slots.get_key_value(&file_name)
    }

    fn command(&mut self, command: Command) -> Reply {
        match command {
            Command::StopAll => {
                info!("/stopall: stopping every job");
                for slot in self.slots.values() {
                    if let Some(handle) = &slot.handle {
                        handle.send(Control::Stop);
                    }
                }
                Reply::done()
            }
            Command::Reload(name) => self.reload(name.as_deref()),
            #[cfg(any(debug_assertions, feature = "test-hooks"))]
            Command::HangSupervisor(how_long) => {
                thread::sleep(how_long);
                Reply::done()
            }
            Command::Stop(name) => self.send(&name, Control::Stop, "/stop"),
            Command::Restart(name) => self.send(&name, Control::Restart, "/restart"),
            Command::Trigger(name) => {
                let Some((_, slot)) = self.find(&name) else {
                    return Reply::no_such_job();
                };
                match slot.triggerable() {
                    Some(handle) => {
                        if handle.trigger(Reason::Trigger) {
                            info!("[{name}] /trigger: runs as soon as it can");
                        } else {
                            info!(
                                "[{name}] /trigger: a run is already asked for; this one joins it"
                            );
                        }
                        Reply::done()
                    }
                    None => {
                        let why = format!(
                            "job {name} is stopped or invalid; /restart or /reload it first"
                        );
                        warn!("[{name}] /trigger refused: {why}");
                        Reply::text(409, why)
                    }
                }
            }
            Command::Remove(name) => {
                let Some((file_name, _)) = self.find(&name) else {
                    return Reply::no_such_job();
                };
                let file_name = file_name.clone();
                self.retire(&file_name);
                info!("[{name}] /remove: removed until the next reload");
                Reply::done()
            }
        }
    }

    /// `/stop` or `/restart` (`what`) of the job `name`.
    fn send(&self, name: &str, control: Control, what: &str) -> Reply {
        let Some((_, slot)) = self.find(name) else {
            return Reply::no_such_job();
        };
        info!("[{name}] {what}");
        match &slot.handle {
            Some(handle) => {
                handle.send(control);
                Reply::done()
            }
            None if matches!(control, Control::Stop) => Reply::done(),
            None => Reply::text(
                409,
                format!(
                    "job {name} is invalid: {}",
                    JobStatus::invalid(&slot.entry).error.unwrap_or_default()
                ),
            ),
        }
    }

    fn follow_up(&self, from: &str, name: &str) {
        let Some((_, slot)) = self.find(name) else {
            warn!("[{from}] follow-up job {name} no longer exists");
            return;
        };
        match slot.triggerable() {
            Some(handle) => {
                info!("[{from}] triggers {name}");
                handle.trigger(Reason::NextJob);
            }
            None => warn!("[{from}] follow-up job {name} is stopped or invalid; not triggered"),
        }
    }

    /// `/reload?name=N`: re-reads N's file; the old definition stays when the
    /// new one is invalid.
    fn reload_one(&mut self, name: &str) -> Reply {
        let Some((file_name, slot)) = self.find(name) else {
            return Reply::no_such_job();
        };
        let file_name = file_name.clone();
        let path = slot.entry.path.clone();
        // Whatever is there now (a FIFO, a huge file), load_file says what
        // is wrong with it; only a file that is gone needs the full reload.
        if !path.exists() {
            return Reply::text(
                422,
                format!(
                    "{} no longer exists; /reload re-reads the whole directory",
                    path.display()
                ),
            );
        }
        // The new file is checked against every other (a JobName two
        // files claim).
        let mut entries = Vec::with_capacity(self.slots.len());
        let mut index = 0;
        for (other, slot) in &self.slots {
            if *other == file_name {
                index = entries.len();
                entries.push(job_file::load_file(&path));
            } else {
                entries.push(slot.entry.clone());
            }
        }
        job_file::validate_set(&mut entries);
        let entry = entries.swap_remove(index);
        if let Err(problems) = &entry.job {
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            return Reply::text(422, text.join("\n"));
        }
        match self.replace(&file_name, entry) {
            Ok(()) => Reply::done(),
            Err(error) => Reply::text(422, error),
        }
    }

    /// Puts a valid `entry` in the slot `file_name`, reusing its thread
    /// unless the job's name changed: a new name is a new job, with its own
    /// state file. `Err` as [`Daemon::add`].
    fn replace(&mut self, file_name: &str, entry: Entry) -> Result<(), String> {
        match (self.slots.get_mut(file_name), &entry.job) {
            (
                Some(Slot {
                    entry: old,
                    handle: Some(handle),
                    ..
                }),
                Ok(job),
            ) if old.name == entry.name => {
                for warning in &entry.warnings {
                    warn!("{warning}");
                }
                // The job shows the new definition on the board when it
                // reads this, and applies it after a run that may be going
                // on. The answer waits for the board (microseconds), but
                // never long for a thread busy with a slow file.
                let (shown, on_board) = crossbeam_channel::bounded(1);
                handle.send(Control::Replace {
                    job: job.clone(),
                    shown,
                });
                let _ = on_board.recv_timeout(SHOWN_WITHIN);
                *old = entry;
                Ok(())
            }
            _ => {
                self.retire(file_name);
                self.add(entry)
            }
        }
    }

    /// `/reload` and SIGHUP: all or nothing.
    fn reload_all(&mut self) -> Reply {
        let entries = match job_file::load_dir(&self.context.job_dir) {
            Ok(entries) => entries,
            Err(e) => return Reply::text(422, e.to_string()),
        };
        let problems: Vec<String> = entries
            .iter()
            .filter_map(|e| e.job.as_ref().err())
            .flatten()
            .map(|p| p.to_string())
            .collect();
        if !problems.is_empty() {
            return Reply::text(422, format!("nothing reloaded:\n{}", problems.join("\n")));
        }
        let mut new: BTreeMap<String, Entry> =
            entries.into_iter().map(|e| (e.file_name(), e)).collect();
        let gone: Vec<String> = self
            .slots
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        let removed = gone.len();
        for file_name in gone {
            if let Some(slot) = self.slots.get(&file_name) {
                info!("[{}] removed: {} is gone", slot.entry.name, file_name);
            }
            self.retire(&file_name);
        }
        let (mut added, mut changed, mut unchanged) = (0, 0, 0);
        let mut not_started = Vec::new();
        // A renamed job must not meet its old name still running elsewhere:
        // removals above happen first, and a new thread for a name whose old
        // thread is still ending waits for it (`Daemon::add`).
        for (file_name, entry) in std::mem::take(&mut new) {
            let result = match self.slots.get(&file_name) {
                None => {
                    added += 1;
                    info!("[{}] added from {file_name}", entry.name);
                    self.add(entry)
                }
                Some(slot) if slot.entry.job == entry.job && slot.handle.is_some() => {
                    unchanged += 1;
                    Ok(())
                }
                Some(_) => {
                    changed += 1;
                    self.replace(&file_name, entry)
                }
            };
            not_started.extend(result.err());
        }
        let summary = format!(
            "reloaded: {added} added, {changed} changed, {removed} removed, {unchanged} unchanged"
        );
        if not_started.is_empty() {
            Reply::text(200, summary)
        } else {
            // Everything else was applied; these jobs stay listed as invalid
            // until a reload finds room for their threads.
            Reply::text(422, format!("{summary}\n{}", not_started.join("\n")))
        }
    }

    /// Stops the HTTP server, then every job (in parallel), and waits.
    fn shutdown(&mut self) {
        drop(self.http.take());
        // Removed jobs still ending hear it too: their hooks hurry as well.
        let handles = self.slots.values().filter_map(|s| s.handle.as_ref());
        for handle in handles.chain(&self.retiring) {
            handle.send(Control::Shutdown);
        }
        self.slots.clear();
        self.retiring.clear();
        // The jobs are done: what they queued gets one grace period, for
        // pings and notifications together (SPEC §6.5: 10 s).
        let give_up_at = std::time::Instant::now() + DELIVERY_GRACE;
        self.pinger.give_up_at(give_up_at);
        self.notifications.give_up_at(give_up_at);
        if let Some((handle, thread)) = self.signal_thread.take() {
            handle.close();
            let _ = thread.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, Error> {
        parse_args(list.iter().map(OsString::from))
    }

    #[test]
    fn takes_the_later_originals_flags_in_every_form_it_took() {
        let want = Args {
            config: Some("/etc/rc".into()),
            job_dir: Some("/srv/jobs".into()),
            addr: Some(":8080".into()),
            ..Args::default()
        };
        for line in [
            &["-c", "/etc/rc", "-j", "/srv/jobs", "-p", "8080"][..],
            &["-c=/etc/rc", "-j=/srv/jobs", "-p=8080"],
            &["-c/etc/rc", "-j/srv/jobs", "-p8080"],
            &[
                "--configpath",
                "/etc/rc",
                "--jobpath",
                "/srv/jobs",
                "--port",
                "8080",
            ],
            &[
                "--configpath=/etc/rc",
                "--jobpath=/srv/jobs",
                "--port=:8080",
            ],
            &["--config", "/etc/rc", "-p", ":8080", "/srv/jobs"],
        ] {
            assert_eq!(args(line).unwrap(), want, "{line:?}");
        }
        // -p: a bare port is on the loopback address; an address is as
        // given; "" disables the server, as ADDR "" does.
        for (value, addr) in [
            ("0", ":0"),
            (":9000", ":9000"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("0.0.0.0:9000", "0.0.0.0:9000"),
            ("[::1]:9000", "[::1]:9000"),
            ("", ""),
        ] {
            assert_eq!(args(&["-p", value]).unwrap().addr.as_deref(), Some(addr));
        }
        // The last of two -c (or --config) counts, as for any option.
        assert_eq!(
            args(&["--config", "a", "-c", "b"]).unwrap().config,
            Some("b".into())
        );
    }

    fn usage_error(list: &[&str]) -> String {
        match args(list) {
            Err(Error::Usage(message)) => message,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    #[test]
    fn a_flag_and_its_positional_together_are_refused() {
        assert_eq!(
            usage_error(&["-j", "/srv/jobs", "/other"]),
            "the job directory is given twice, by -j \"/srv/jobs\" and as the argument \
             \"/other\"; give it once (with -j, give the address with -p)"
        );
        assert_eq!(
            usage_error(&["-p", "8080", "jobs", ":9000"]),
            "the listen address is given twice, by -p \":8080\" and as the argument \
             \":9000\"; give it once"
        );
        assert_eq!(usage_error(&["-c"]), "-c needs a file or a directory");
        assert_eq!(usage_error(&["-j"]), "-j needs a directory");
        assert_eq!(
            usage_error(&["--port"]),
            "--port needs a port or an address"
        );
        assert_eq!(
            usage_error(&["-check"]),
            "unknown option \"-check\" (did you mean \"--check\"?)"
        );
        assert!(usage_error(&["-port=1"]).contains("--port"));
        assert_eq!(usage_error(&["-x"]), "unknown option \"-x\"");
    }

    #[test]
    fn parses_positionals_and_options() {
        let a = args(&["--config", "c.json", "jobs", ":9000"]).unwrap();
        assert_eq!(a.config, Some("c.json".into()));
        assert_eq!(a.job_dir, Some("jobs".into()));
        assert_eq!(a.addr.as_deref(), Some(":9000"));
        assert!(args(&["--check", "--config=x", "j"]).unwrap().check);
        assert!(args(&["--", "--weird-dir"]).unwrap().job_dir.is_some());
        assert!(matches!(args(&["--bogus"]), Err(Error::Usage(_))));
        assert!(matches!(args(&["a", "b", "c"]), Err(Error::Usage(_))));
        assert!(matches!(args(&["--config"]), Err(Error::Usage(_))));
        assert_eq!(usage_error(&["--check=yes"]), "--check takes no value");
        assert_eq!(usage_error(&["--bogus=1"]), "unknown option \"--bogus=1\"");
    }

    #[test]
    fn paths_need_not_be_utf8_but_the_address_and_the_job_name_must() {
        use std::os::unix::ffi::OsStringExt;
        let odd = || OsString::from_vec(b"/srv/jobs\xff".to_vec());
        let parsed = parse_args([
            OsString::from("--config"),
            odd(),
            OsString::from("-j"),
            odd(),
        ]);
        let parsed = parsed.unwrap();
        assert_eq!(parsed.config, Some(PathBuf::from(odd())));
        assert_eq!(parsed.job_dir, Some(PathBuf::from(odd())));
        for line in [
            vec![OsString::from("jobs"), odd()],
            vec![OsString::from("-p"), odd()],
            vec![OsString::from("--run"), odd()],
        ] {
            match parse_args(line.clone()) {
                Err(Error::Usage(message)) => {
                    assert!(message.contains("is not UTF-8"), "{message}")
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn probe_needs_check() {
        let a = args(&["--probe", "--check", "j"]).unwrap();
        assert!(a.check && a.probe);
        assert_eq!(usage_error(&["--probe"]), "--probe works only with --check");
        assert_eq!(
            usage_error(&["-probe"]),
            "unknown option \"-probe\" (did you mean \"--probe\"?)"
        );
    }

    #[test]
    fn run_takes_a_job_name_and_goes_without_check() {
        assert_eq!(args(&["--run", "nas"]).unwrap().run.as_deref(), Some("nas"));
        assert_eq!(
            args(&["--run=nas", "j"]).unwrap().run.as_deref(),
            Some("nas")
        );
        assert_eq!(usage_error(&["--run"]), "--run needs a job name");
        assert_eq!(
            usage_error(&["--run", "nas", "--check"]),
            "--run and --check do not go together"
        );
    }
}
