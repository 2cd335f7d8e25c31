//! `rccommand`: sends one command to a running daemon and prints the answer
//! — a table for `queue`, a summary for `job`, the body as it is otherwise.
//!
//! The address and the token are found as the daemon's users expect: a
//! flag, else an environment variable, else the daemon's own config file.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

use crate::api::{JobDetail, NextJob, Queue, QueueEntry, Run, Status, Time};
use crate::config::command_line;
use crate::config::{self, Env};

pub const USAGE: &str = "\
Usage: rccommand [OPTIONS] COMMAND [JOBNAME]
       rccommand [OPTIONS] ADDR COMMAND [JOBNAME]

Sends COMMAND to a running restic-cronned and prints its answer.

Commands:
  queue            every job: status, next run, last result
  job NAME         NAME's full status and its last 20 runs
  trigger NAME     run NAME now (or once after its current run)
  stop NAME        stop NAME; a running restic is interrupted
  stopall          stop every job
  restart NAME     start NAME again
  reload [NAME]    re-read NAME's job file, or the whole job directory
  remove NAME      stop NAME and drop it until the next reload
  healthz          check that the daemon answers
  metrics          the daemon's Prometheus metrics

Options:
  --addr HOST:PORT  the daemon's address; :PORT means 127.0.0.1:PORT
                    (default: $RC_ADDR, else SrvConf.Port of the config)
  --token TOKEN     the API token (default: $RC_TOKEN, else SrvConf.Token or
                    SrvConf.TokenFile of the config); prefer RC_TOKEN, as
                    other users can read command lines
  --config FILE     the daemon's config file
                    (default: ~/.config/restic-cronned/config)
  --json            print the daemon's JSON as it is (queue, job)
  -h, --help        print this help
  -V, --version     print the version

The original's order `rccommand ADDR COMMAND [JOBNAME]` works too: a first
argument with a `:` in it is the address.

Exit status: 0 done; 1 the daemon answered with an error; 2 a usage or
config error; 3 the daemon could not be reached.
";

/// How long connecting may take.
const CONNECT_TIME: Duration = Duration::from_secs(5);
/// How long a whole request may take. The daemon answers every command
/// within 10 s (503 otherwise), so this is generous.
const REQUEST_TIME: Duration = Duration::from_secs(30);
/// The largest answer read (a `/queue` of 1000 jobs is about 1 MB).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Every command and whether it takes a job name.
const COMMANDS: &[(&str, Name)] = &[
    ("queue", Name::No),
    ("job", Name::Required),
    ("trigger", Name::Required),
    ("stop", Name::Required),
    ("stopall", Name::No),
    ("restart", Name::Required),
    ("reload", Name::Optional),
    ("remove", Name::Required),
    ("healthz", Name::No),
    ("metrics", Name::No),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    No,
    Optional,
    Required,
}

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub addr: Option<String>,
    pub token: Option<String>,
    pub config: Option<PathBuf>,
    pub json: bool,
    pub help: bool,
    pub version: bool,
    pub command: String,
    pub name: Option<String>,
}

/// Why a command did not succeed; `main` maps each to an exit code.
#[derive(Debug)]
pub enum Error {
    /// Bad command line (exit 2).
    Usage(String),
    /// The config file that should say the address or token is unusable
    /// (exit 2).
    Config(String),
    /// The daemon answered with an error status (exit 1).
    Answer { status: u16, body: String },
    /// The answer could not be understood (exit 1).
    BadAnswer(String),
    /// No answer: refused, unresolvable, timed out (exit 3).
    Unreachable {
        addr: String,
        from: &'static str,
        message: String,
    },
    /// Printing the answer failed (exit 1).
    Output(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Config(m) | Error::BadAnswer(m) => f.write_str(m),
            Error::Answer { status, body } => {
                write!(f, "the daemon answered {status}: {}", body.trim_end())?;
                if *status == 401 {
                    f.write_str(" (pass --token, set RC_TOKEN, or set the config's Token)")?;
                }
                Ok(())
            }
            Error::Unreachable {
                addr,
                from,
                message,
            } => write!(
                f,
                "cannot reach the daemon at {addr} ({from}): {message}; is restic-cronned \
                 running and listening there?"
            ),
            Error::Output(e) => write!(f, "cannot print the answer: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Every long option, so that one written with a single dash is refused
/// with a hint rather than read as a group of short options.
const LONG_OPTIONS: &[&str] = &["addr", "config", "help", "json", "token", "version"];

/// Parses the command line (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Args, Error> {
    parse_words(args).map_err(Error::Usage)
}

fn parse_words(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use command_line::Arg::{Long, Short, Value};
    let mut parsed = Args::default();
    let mut positional = Vec::new();
    let mut parser = command_line::Parser::new(args, LONG_OPTIONS);
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Long("json") => parsed.json = true,
            Short('h') | Long("help") => parsed.help = true,
            Short('V') | Long("version") => parsed.version = true,
            Long("addr") => {
                let addr = parser.value("an address")?;
                parsed.addr = Some(command_line::text(addr, "address")?);
            }
            Long("token") => {
                // Never echo it, not even when it is not UTF-8.
                let token = parser.value("a token")?;
                let token = token.into_string().map_err(|_| "the token is not UTF-8")?;
                parsed.token = Some(token);
            }
            Long("config") => parsed.config = Some(parser.value("a file")?.into()),
            // Addresses, commands and job names are UTF-8.
            Value(value) => positional.push(command_line::text(value, "argument")?),
            _ => return Err(parser.unknown()),
        }
    }
    if parsed.help || parsed.version {
        return Ok(parsed);
    }
    let mut positional = positional.into_iter().peekable();
    // The original's order: ADDR COMMAND [NAME]. Job names cannot hold a
    // `:`, commands neither, so a `:` marks the address.
    if let Some(addr) = positional.next_if(|first| first.contains(':')) {
        if parsed.addr.is_some() {
            return Err(format!("two addresses: --addr and {addr:?}"));
        }
        parsed.addr = Some(addr);
    }
    let Some(command) = positional.next() else {
        return Err("no command given".into());
    };
    let Some((_, name_rule)) = COMMANDS.iter().find(|(c, _)| *c == command) else {
        return Err(format!("unknown command {command:?}"));
    };
    parsed.name = positional.next();
    match (name_rule, &parsed.name) {
        (Name::Required, None) => {
            return Err(format!("{command} needs a job name"));
        }
        (Name::No, Some(name)) => {
            return Err(format!("{command} takes no job name (got {name:?})"));
        }
        _ => {}
    }
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    parsed.command = command;
    Ok(parsed)
}

/// Sends the command, prints the answer on `out`.
pub fn run(args: &Args, env: Env, out: &mut dyn Write) -> Result<(), Error> {
    let target = Target::find(args, env)?;
    let mut url = format!("http://{}/{}", target.addr, args.command);
    if let Some(name) = &args.name {
        url.push_str("?name=");
        url.push_str(&percent_encode(name));
    }
    let body = target.send(&url, reads_only(&args.command))?;
    let now = Timestamp::now();
    let text = match args.command.as_str() {
        "queue" if !args.json => queue_table(&parse_answer(&body)?, now),
        "job" if !args.json => job_summary(&parse_answer(&body)?, now),
        _ => body,
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// Commands that only read are sent as GET, the others as POST (the daemon
/// takes both everywhere).
fn reads_only(command: &str) -> bool {
    matches!(command, "queue" | "job" | "healthz" | "metrics")
}

/// Where to send the command and with which token.
struct Target {
    addr: String,
    /// Where the address came from, for messages.
    from: &'static str,
    token: Option<String>,
}

impl Target {
    fn find(args: &Args, env: Env) -> Result<Target, Error> {
        let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let given_addr = match (&args.addr, nonempty("RC_ADDR")) {
            (Some(addr), _) => Some((addr.clone(), "from the command line")),
            (None, Some(addr)) => Some((addr, "from RC_ADDR")),
            (None, None) => None,
        };
        let given_token = args.token.clone().or_else(|| nonempty("RC_TOKEN"));
        // The daemon's config is read only for what is still missing.
        let config = if given_addr.is_none() || given_token.is_none() {
            let (config, _, _) = config::load(args.config.as_deref(), env)
                .map_err(|e| Error::Config(e.to_string()))?;
            Some(config)
        } else {
            None
        };
        let (addr, from) = match (given_addr, &config) {
            (Some(given), _) => given,
            (None, Some(config)) if config.addr.trim().is_empty() => {
                return Err(Error::Config(
                    "the daemon's config sets no listen address (SrvConf.Port or ServerPort is empty); \
                     pass --addr or set RC_ADDR"
                        .into(),
                ));
            }
            (None, Some(config)) => (
                config.addr.clone(),
                "from the config's SrvConf.Port or ServerPort",
            ),
            (None, None) => unreachable!("the config is read when no address is given"),
        };
        let token = match (given_token, &config) {
            (Some(token), _) => Some(token),
            (None, Some(config)) => config
                .api_token()
                .map_err(|e| Error::Config(format!("{e}; pass --token or set RC_TOKEN")))?,
            (None, None) => None,
        };
        Ok(Target {
            addr: connect_address(&addr).map_err(Error::Usage)?,
            from,
            token: token.map(|t| t.trim().to_string()),
        })
    }

    /// Sends one request; the body of a 2xx answer, or why there is none.
    fn send(&self, url: &str, get: bool) -> Result<String, Error> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIME))
            .timeout_global(Some(REQUEST_TIME))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("rccommand/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let answer = if get {
            let mut request = agent.get(url);
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            request.call()
        } else {
            let mut request = agent.post(url);
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            request.send_empty()
        };
        let unreachable = |message: String| Error::Unreachable {
            addr: self.addr.clone(),
            from: self.from,
            message,
        };
        let mut answer = answer.map_err(|e| unreachable(describe(&e)))?;
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| unreachable(format!("the answer broke off: {}", describe(&e))))?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(Error::Answer { status, body })
        }
    }
}

/// ureq's errors in words a user can act on.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(what) => format!("no answer in time ({what})"),
        ureq::Error::Io(e) => e.to_string(),
        ureq::Error::HostNotFound => "the host name does not resolve".into(),
        other => other.to_string(),
    }
}

/// Turns a listen address into one to connect to: `:PORT` and the
/// wildcard addresses mean this machine's loopback address.
fn connect_address(raw: &str) -> Result<String, String> {
    let addr = raw.trim();
    let addr = addr.strip_prefix("http://").unwrap_or(addr);
    let addr = addr.trim_end_matches('/');
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!(
            "address {raw:?} has no port; write HOST:PORT or :PORT"
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("address {raw:?}: {port:?} is not a port number"));
    }
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        host => host,
    };
    Ok(format!("{host}:{port}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The daemon's JSON answer as `T`; keys `T` does not know are skipped.
fn parse_answer<'a, T: Deserialize<'a>>(body: &'a str) -> Result<T, Error> {
    serde_json::from_str(body).map_err(|e| {
        Error::BadAnswer(format!(
            "the daemon's answer is not the JSON rccommand reads ({e}): {body:.200}"
        ))
    })
}

/// "in 3h 12m", "5m ago", "now": the two largest units are enough to read.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let seconds = t.as_second() - now.as_second();
    if seconds == 0 {
        return "now".into();
    }
    let span = humantime::format_duration(Duration::from_secs(seconds.unsigned_abs())).to_string();
    let short: Vec<&str> = span.split(' ').take(2).collect();
    let short = short.join(" ");
    if seconds > 0 {
        format!("in {short}")
    } else {
        format!("{short} ago")
    }
}

/// How a run ended, in a few words: `success 5m ago`, `failure (exit 1) 2h ago`.
fn run_result(run: Option<&Run>, now: Timestamp) -> String {
    let Some(run) = run else {
        return "never ran".into();
    };
    let mut result = run.outcome.as_str().to_string();
    if let Some(code) = run.exit_code.filter(|&c| c != 0) {
        result.push_str(&format!(" (exit {code})"));
    }
    result.push(' ');
    result.push_str(&relative(run.end.at, now));
    result
}

/// The job's status as one word or a few; `, stale` when its last
/// success is older than its `StaleAfter`.
fn status_text(job: &QueueEntry) -> String {
    let status = status_word(job);
    if job.stale {
        format!("{status}, stale")
    } else {
        status
    }
}

fn status_word(job: &QueueEntry) -> String {
    let status = job.status.as_str();
    if let Some(holder) = &job.waiting_for {
        return format!("{status} for {holder}");
    }
    if job.status == Status::Working && job.progress > 0.0 {
        format!("{status} {:.0}%", job.progress * 100.0)
    } else {
        status.to_string()
    }
}

fn next_run_text(job: &QueueEntry, now: Timestamp) -> String {
    match (job.next_run, job.status) {
        (Some(next), _) => relative(next.at, now),
        (None, Status::Waiting) => "when triggered".into(),
        _ => "-".into(),
    }
}

/// `rccommand queue`: one line per job, then the errors of invalid ones.
pub fn queue_table(queue: &Queue, now: Timestamp) -> String {
    let jobs = &queue.jobs;
    if jobs.is_empty() {
        return format!("no jobs in {}\n", queue.directory);
    }
    let mut rows = vec![[
        "JOB".to_string(),
        "STATUS".into(),
        "NEXT RUN".into(),
        "LAST RESULT".into(),
    ]];
    for job in jobs {
        rows.push([
            job.job_name.to_string(),
            status_text(job),
            next_run_text(job, now),
            run_result(job.last_run.as_ref(), now),
        ]);
    }
    let mut widths = [0; 3];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    // Why: the error of every job that has one, in full.
    let mut why = String::new();
    for job in jobs {
        let Some(error) = &job.error else {
            continue;
        };
        let name = &job.job_name;
        if job.status == Status::Invalid {
            why.push_str(&format!("{name} is invalid: {error}\n"));
        } else {
            why.push_str(&format!("{name}: {error}\n"));
        }
    }
    if !why.is_empty() {
        out.push('\n');
        out.push_str(&why);
    }
    out
}

/// A time with its relative form: `2026-11-30T03:00:00+01:00 (5m ago)`.
fn when(time: Option<Time>, now: Timestamp) -> Option<String> {
    let time = time?;
    Some(format!(
        "{} ({})",
        time.to_the_second(),
        relative(time.at, now)
    ))
}

/// `rccommand job NAME`: the status, the runs, and the newest run's output.
pub fn job_summary(detail: &JobDetail, now: Timestamp) -> String {
    let job = &detail.entry;
    let mut out = format!("{}: {}\n", job.job_name, status_text(job));
    let mut field = |label: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.push_str(&format!("  {label:<14}{value}\n"));
        }
    };
    field(
        "schedule",
        Some(
            job.schedule
                .as_deref()
                .unwrap_or("only when triggered")
                .to_string(),
        ),
    );
    field("next run", when(job.next_run, now));
    field("last run", Some(run_result(job.last_run.as_ref(), now)));
    field("last success", when(job.last_success, now));
    let retries = match job.max_failed_retries {
        max if max < 0 => format!(", retry {} (no limit)", job.current_retry),
        max if max > 0 => format!(", retry {} of {max}", job.current_retry),
        _ => String::new(),
    };
    field(
        "failures",
        Some(format!("{} in a row{retries}", job.consecutive_failures)),
    );
    field("repository", job.repository.as_deref().map(str::to_string));
    let restic = Some(&*job.restic_path)
        .filter(|p| !p.is_empty())
        .unwrap_or("restic");
    if let Some(arguments) = &job.restic_arguments {
        field("command", Some(format!("{restic} {}", arguments.join(" "))));
    }
    let next_jobs = match &job.next_job {
        NextJob::Name(name) => name.to_string(),
        NextJob::List(names) => names.join(", "),
    };
    field("then runs", Some(next_jobs));
    field("error", job.error.as_deref().map(str::to_string));

    let runs = &detail.runs;
    let Some(newest) = runs.first() else {
        out.push_str("\nno runs yet\n");
        return out;
    };
    out.push_str("\nruns, newest first:\n");
    for run in runs {
        let seconds = (run.end.at.as_second() - run.start.at.as_second())
            .max(0)
            .unsigned_abs();
        let took = format!(
            "took {}",
            humantime::format_duration(Duration::from_secs(seconds))
        );
        let exit = match run.exit_code {
            Some(code) => format!("exit {code}"),
            None => "no exit code".into(),
        };
        let mut line = format!(
            "  {}  {:<8} {:<12}  {:<10} {took}",
            run.start.to_the_second(),
            run.outcome.as_str(),
            exit,
            run.reason.as_str(),
        );
        if let Some(error) = &run.error {
            line.push_str(&format!("  {error}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if !run.hooks.is_empty() {
            let shown: Vec<String> = run
                .hooks
                .iter()
                .map(|hook| match &hook.error {
                    Some(error) => error.clone(),
                    None => format!("{} ok", hook.hook.key()),
                })
                .collect();
            out.push_str(&format!("    hooks: {}\n", shown.join("; ")));
        }
    }
    let tail = newest.output_tail.as_deref().unwrap_or_default();
    let lines: Vec<&str> = tail.lines().collect();
    let shown = &lines[lines.len().saturating_sub(20)..];
    if shown.len() < lines.len() {
        out.push_str(&format!(
            "\noutput of the newest run, its last {} lines:\n",
            shown.len()
        ));
    } else if !shown.is_empty() {
        out.push_str("\noutput of the newest run:\n");
    }
    for line in shown {
        out.push_str(&format!("  | {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn args(list: &[&str]) -> Result<Args, Error> {
        parse_args(list.iter().map(OsString::from))
    }

    #[test]
    fn parses_both_argument_orders() {
        let a = args(&["--addr", ":9000", "--json", "trigger", "nightly"]).unwrap();
        assert_eq!(a.addr.as_deref(), Some(":9000"));
        assert!(a.json);
        assert_eq!(
            (a.command.as_str(), a.name.as_deref()),
            ("trigger", Some("nightly"))
        );
        let a = args(&["127.0.0.1:8080", "stop", "x", "--token=t"]).unwrap();
        assert_eq!(a.addr.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(a.token.as_deref(), Some("t"));
        assert_eq!(a.command, "stop");
        assert_eq!(args(&["reload"]).unwrap().name, None);
        assert!(args(&["--help"]).unwrap().help);
        assert!(args(&["-V"]).unwrap().version);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let message = |list: &[&str]| match args(list) {
            Err(Error::Usage(m)) => m,
            other => panic!("{list:?}: {other:?}"),
        };
        assert_eq!(message(&[]), "no command given");
        assert_eq!(message(&["queu"]), "unknown command \"queu\"");
        assert_eq!(message(&["stop"]), "stop needs a job name");
        assert!(message(&["queue", "x"]).contains("takes no job name"));
        assert!(message(&["stop", "a", "b"]).contains("unexpected argument \"b\""));
        assert!(message(&["--addr", "h:1", "h:2", "queue"]).contains("two addresses"));
        assert_eq!(message(&["--token"]), "--token needs a token");
        assert!(message(&["--bogus", "queue"]).contains("unknown option"));
        // Flags take no value: `--json=1` is refused, not read as `--json`.
        assert_eq!(message(&["--json=1", "queue"]), "--json takes no value");
        assert_eq!(
            message(&["-json", "queue"]),
            "unknown option \"-json\" (did you mean \"--json\"?)"
        );
    }

    #[test]
    fn options_take_their_value_either_way_and_a_double_dash_ends_them() {
        for line in [
            &["--addr", "h:1", "--token", "t", "--config", "c", "queue"][..],
            &["--addr=h:1", "--token=t", "--config=c", "queue"],
        ] {
            let a = args(line).unwrap();
            assert_eq!(a.addr.as_deref(), Some("h:1"), "{line:?}");
            assert_eq!(a.token.as_deref(), Some("t"), "{line:?}");
            assert_eq!(a.config, Some(PathBuf::from("c")), "{line:?}");
        }
        let a = args(&["--", "trigger", "-odd-name"]).unwrap();
        assert_eq!(a.name.as_deref(), Some("-odd-name"));
        assert!(matches!(
            args(&["trigger", "-odd-name"]),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn listen_addresses_become_addresses_to_connect_to() {
        assert_eq!(connect_address(":8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(connect_address("0.0.0.0:1").unwrap(), "127.0.0.1:1");
        assert_eq!(connect_address("[::]:2").unwrap(), "[::1]:2");
        assert_eq!(connect_address("http://nas:3/").unwrap(), "nas:3");
        assert!(connect_address("8080").unwrap_err().contains("no port"));
        assert!(connect_address("h:http").is_err());
    }

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(percent_encode("a-b_c.d~1"), "a-b_c.d~1");
        assert_eq!(
            percent_encode("a b&c#d+e%/é"),
            "a%20b%26c%23d%2Be%25%2F%C3%A9"
        );
    }

    #[test]
    fn relative_times_keep_two_units() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        assert_eq!(relative(at(3 * 3600 + 12 * 60 + 5), now), "in 3h 12m");
        assert_eq!(relative(at(-300), now), "5m ago");
        assert_eq!(relative(at(0), now), "now");
        assert_eq!(relative(at(-(2 * 86400 + 3600)), now), "2days 1h ago");
    }

    #[test]
    fn the_queue_table_lines_up_and_says_why_jobs_fail_or_are_invalid() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let t = |s: i64| {
            Timestamp::from_second(1_700_000_000 + s)
                .unwrap()
                .to_string()
        };
        // The keys every `/queue` entry has, and ones this rccommand does
        // not know (a newer daemon's).
        let entry = |fields: Value| {
            let mut entry = json!({
                "JobName": "", "status": "waiting", "regularTimer": -1_000_000_000,
                "retryTimer": -1_000_000_000, "maxFailedRetries": 0, "CurrentRetry": 0,
                "progress": 0, "progressDetail": null, "WaitStart": 0, "WaitEnd": 0,
                "NextJob": "", "Username": "", "Service": "", "ResticPath": "",
                "ResticArguments": [], "schedule": null, "nextRun": null, "repository": null,
                "WaitingFor": null, "lastRun": null, "lastSuccess": null,
                "consecutiveFailures": 0, "stale": false, "error": null,
                "aNewerKey": {"with": ["anything"]},
            });
            entry
                .as_object_mut()
                .unwrap()
                .extend(fields.as_object().unwrap().clone());
            entry
        };
        let run = |outcome: &str, exit_code: i32, end: String| {
            json!({"start": end, "end": end, "outcome": outcome, "exitCode": exit_code,
                   "error": null, "reason": "schedule", "aNewerKey": 1})
        };
        let queue = json!({"Jobs": [
            entry(json!({"JobName": "ExampleBackup", "status": "waiting", "nextRun": t(3600),
                         "stale": true, "lastRun": run("success", 0, t(-60))})),
            entry(json!({"JobName": "b", "status": "working", "progress": 0.42,
                         "error": "wrong password: Fatal: wrong password or no key found",
                         "lastRun": run("failure", 1, t(-7200))})),
            entry(json!({"JobName": "c", "status": "invalid", "error": "c.json: bad",
                         "ResticArguments": null})),
        ], "Wg": {}, "Directory": "/jobs"});
        let queue = serde_json::to_string(&queue).unwrap();
        assert_eq!(
            queue_table(&parse_answer(&queue).unwrap(), now),
            "JOB            STATUS          NEXT RUN  LAST RESULT\n\
             ExampleBackup  waiting, stale  in 1h     success 1m ago\n\
             b              working 42%     -         failure (exit 1) 2h ago\n\
             c              invalid         -         never ran\n\
             \nb: wrong password: Fatal: wrong password or no key found\n\
             c is invalid: c.json: bad\n"
        );
        assert_eq!(
            queue_table(
                &parse_answer(r#"{"Jobs": [], "Directory": "/jobs"}"#).unwrap(),
                now
            ),
            "no jobs in /jobs\n"
        );
    }
}
