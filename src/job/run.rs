//! One run of a job as a value that moves through its phases — the
//! precondition checks, the repository's turn, `Before`, restic,
//! `OnSuccess` or `OnFailure`, `After`, and `restic unlock` where restic
//! may have left a lock — while the job's thread drives it from one event
//! loop: [`Run::inputs`] says what the current phase waits for, and each
//! `on_*` method takes what came and moves the run on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never};
use log::{info, warn};

use crate::api::board::{Board, BoardEntry, Status};
use crate::config::job_file::{Job, JobName};
use crate::delivery::healthcheck::{Ping, PingSender};
use crate::delivery::notify::{NotifySender, Target};
use crate::job::exclusion::{Acquired, Guard, Repositories, Ticket};
use crate::job::hook::{HookCommand, HookName};
use crate::job::outcome::{HookRecord, Outcome, Reason, RunRecord};
use crate::job::preconditions::{self, Preconditions};
use crate::logging::LineRateLimit;
use crate::restic::process::{self, Output, RunningChild, Spec, Stream, describe_status};
use crate::restic::progress::{self, Summary};
use crate::restic::{self, Repository};
use crate::schedule;
use crate::schedule::clock;
use crate::secrets::keyring::Keyring;
use crate::service;

/// How much of a run's output is kept with its record.
const TAIL_BYTES: usize = 64 * 1024;
/// Between SIGTERM and SIGKILL when stopping restic or a hook.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for the pipes to close after a child exited before the
/// rest of its process group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// How often a running backup's progress is published at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How long `restic unlock` may take.
const UNLOCK_LIMIT: Duration = Duration::from_secs(15);
/// The variables a hook's environment describes its run with; the daemon's
/// own (a `--run` started from a hook) never leak into another run's hooks.
const HOOK_VARIABLES: &[&str] = &[
    "RESTIC_CRONNED_JOB",
    "RESTIC_CRONNED_HOOK",
    "RESTIC_CRONNED_REASON",
    "RESTIC_CRONNED_OUTCOME",
    "RESTIC_CRONNED_EXIT_CODE",
    "RESTIC_CRONNED_ERROR",
    "RESTIC_CRONNED_DURATION",
    "RESTIC_CRONNED_SNAPSHOT",
];

/// What a job tells the daemon.
#[derive(Debug)]
pub enum Notice {
    /// The job succeeded; trigger these jobs.
    FollowUp { from: JobName, next: Vec<JobName> },
}

/// What every job shares.
pub struct Context {
    pub board: Board,
    pub state_dir: PathBuf,
    pub job_dir: PathBuf,
    pub stop_grace: Duration,
    pub notices: Sender<Notice>,
    pub repositories: Arc<Repositories>,
    pub pings: PingSender,
    /// Where jobs with `Username`/`Service` find their password.
    pub keyring: Keyring,
    /// `false` for `--run`: the state file belongs to the daemon.
    pub persist: bool,
    /// `HistoryRuns`: the runs kept in each job's history; 0: no history
    /// (a `--run` by a user who does not own the StateDir).
    pub history_runs: usize,
    /// Where notifications go out (SPEC §6.5).
    pub notify: NotifySender,
    /// The config's `Notify`: for jobs without their own.
    pub default_notify: Vec<Target>,
    /// This machine's name, for notifications.
    pub host: String,
}

/// How `job` starts restic (without its password, which is read at each
/// run): its program, arguments and `Env`, in the job directory.
pub fn restic_spec(job: &Job, job_dir: &Path) -> Spec {
    let program = match &job.restic_path {
        Some(path) => path.clone().into_os_string(),
        None => "restic".into(),
    };
    Spec {
        program,
        args: job.restic_arguments.clone(),
        cwd: job_dir.to_path_buf(),
        env: job_env(job),
        // restic must not talk to systemd in the daemon's name.
        env_remove: service::NOTIFY_VARIABLES
            .iter()
            .map(|key| key.to_string())
            .collect(),
    }
}

fn job_env(job: &Job) -> Vec<(String, String)> {
    job.env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What the event loop listens to for the run's current phase (`never()`
/// for what it does not wait for).
pub struct Inputs {
    pub output: Receiver<Output>,
    pub exited: Receiver<()>,
    pub timer: Receiver<Instant>,
    pub checks: Receiver<Vec<String>>,
    pub granted: Receiver<()>,
    /// While checking, a trigger merges into this run; later it waits and
    /// makes one more run.
    pub merges_triggers: bool,
}

/// Where a run stands after an event.
pub enum Progress {
    /// Still going.
    Busy,
    /// It has its repository's turn: the job records it as pending (the
    /// state file must say so before restic starts), then calls
    /// [`Run::work`].
    Turn,
    /// A stop ended it before its turn: nothing ran, nothing is recorded.
    Abandoned,
    /// It ended; its preconditions failed, or it had its turn.
    Finished(Box<RunRecord>),
}

/// Why a run is cut short (the first reason wins).
#[derive(Clone, Copy)]
pub struct Stop {
    /// For the run's `error`, e.g. `stopped by /stop`.
    pub by: &'static str,
    /// The daemon is ending: hooks after restic get `StopGrace`, not
    /// their `HookTimeout`.
    pub shutdown: bool,
}

/// What a run is doing.
enum Phase {
    Checking {
        round: u32,
        answer: Receiver<Vec<String>>,
    },
    /// Between two rounds of checks.
    Pausing {
        round: u32,
        until: Instant,
    },
    Queued(Ticket),
    /// Granted; the job records the run before [`Run::work`].
    Turn,
    Child(Box<Following>),
    Over,
}

/// Which child a run follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Task {
    Hook(HookName),
    Restic,
    /// `restic unlock` after an interrupted run, or before trying once more
    /// with `UnlockStale`.
    Unlock {
        then_retry: bool,
    },
}

impl Task {
    /// What log lines and stop warnings call it.
    fn label(self) -> String {
        match self {
            Task::Hook(name) => format!("hook {}", name.key()),
            Task::Restic => "restic".into(),
            Task::Unlock { .. } => "restic unlock".into(),
        }
    }
}

/// Hooks after restic and `restic unlock` run to their end after a stop
/// (within their limit); `Before` and restic do not.
fn runs_after_a_stop(task: Task) -> bool {
    !matches!(task, Task::Restic | Task::Hook(HookName::Before))
}

/// Why a child is ending early.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    Stop(&'static str),
    Limit(Duration),
}

/// A child process followed to its end: its output, its exit, its time
/// limit and the stop ladder.
struct Following {
    task: Task,
    child: RunningChild,
    started: Instant,
    open_pipes: u8,
    exited_at: Option<Instant>,
    leftovers_killed: bool,
    /// When it is stopped for taking too long, and that limit.
    limit: Option<(Instant, Duration)>,
    ladder: Ladder,
    cut: Option<Cut>,
    /// The daemon is ending: at its limit the child gets SIGTERM at once,
    /// not SIGINT and the grace (a hook after restic during a shutdown).
    hurry: bool,
    /// restic's stderr, which explains a failure.
    stderr: restic::Stderr,
    /// What a hook said, for its error.
    said: HookSaid,
}

impl Following {
    fn new(task: Task, child: RunningChild, limit: Option<Duration>) -> Following {
        let started = Instant::now();
        Following {
            task,
            child,
            started,
            open_pipes: 2,
            exited_at: None,
            leftovers_killed: false,
            limit: limit.and_then(|l| started.checked_add(l).map(|at| (at, l))),
            ladder: Ladder::default(),
            cut: None,
            hurry: false,
            stderr: restic::Stderr::default(),
            said: HookSaid::default(),
        }
    }

    /// The earliest of its time limit, the ladder's next step and the end
    /// of the wait for its pipes.
    fn next_timer(&self) -> Option<Instant> {
        let limit = self.limit.filter(|_| self.cut.is_none()).map(|(at, _)| at);
        let pipes = self.exited_at.map(|at| at + PIPE_GRACE);
        [limit, self.ladder.next.map(|(at, _)| at), pipes]
            .into_iter()
            .flatten()
            .min()
    }

    fn is_done(&self) -> bool {
        self.exited_at.is_some() && self.open_pipes == 0
    }

    /// Starts the stop ladder, once.
    fn cut(&mut self, cut: Cut, grace: Duration) {
        if self.cut.is_some() {
            return;
        }
        self.cut = Some(cut);
        if let Task::Unlock { .. } = self.task {
            // `restic unlock` holds no lock of its own to remove.
            self.child.signal_group(libc::SIGKILL);
        } else if self.hurry {
            self.ladder.terminate(&self.child);
        } else {
            self.ladder.begin(&self.child, grace);
        }
    }
}

/// One run of a job.
pub struct Run {
    job: Arc<Job>,
    context: Arc<Context>,
    entry: BoardEntry,
    /// How the run-started line says why it runs (`retry 2`).
    why: String,
    repository: Option<Repository>,
    repository_error: Option<String>,
    phase: Phase,
    turn: Option<Guard>,
    stop: Option<Stop>,
    /// restic's spec with the password, once read.
    spec: Option<Spec>,
    retried_after_unlock: bool,
    /// restic said the password is wrong: no retry can fix that.
    wrong_password: bool,
    /// The daemon is ending: hooks after restic get `StopGrace`.
    hurry: bool,
    /// The record being built; its output fields come from `output`.
    record: RunRecord,
    output: RunOutput,
}

impl Run {
    /// Starts a run: its checks, or its wait for the repository.
    /// `repository_error` says why the repository is unknown (its file
    /// could not be read); the run then fails when restic would start.
    pub fn begin(
        job: Arc<Job>,
        context: Arc<Context>,
        entry: BoardEntry,
        reason: Reason,
        why: String,
        repository: (Option<Repository>, Option<String>),
    ) -> (Run, Progress) {
        let now = clock::now();
        let mut run = Run {
            job,
            context,
            entry,
            why,
            repository: repository.0,
            repository_error: repository.1,
            phase: Phase::Over,
            turn: None,
            stop: None,
            spec: None,
            retried_after_unlock: false,
            wrong_password: false,
            hurry: false,
            record: RunRecord {
                start: now,
                end: now,
                reason,
                outcome: Outcome::Success,
                exit_code: None,
                error: None,
                output_tail: String::new(),
                summary: None,
                snapshot: None,
                hooks: Vec::new(),
            },
            output: RunOutput::default(),
        };
        let progress = match run.job.preconditions.clone() {
            Some(checks) => run.check(1, &checks),
            None => run.queue(),
        };
        (run, progress)
    }

    pub fn inputs(&self) -> Inputs {
        let mut inputs = Inputs {
            output: never(),
            exited: never(),
            timer: never(),
            checks: never(),
            granted: never(),
            merges_triggers: false,
        };
        match &self.phase {
            Phase::Checking { answer, .. } => {
                inputs.checks = answer.clone();
                inputs.merges_triggers = true;
            }
            Phase::Pausing { until, .. } => {
                inputs.timer = crossbeam_channel::at(*until);
                inputs.merges_triggers = true;
            }
            Phase::Queued(ticket) => inputs.granted = ticket.granted.clone(),
            Phase::Child(f) => {
                if f.open_pipes > 0 {
                    // A child (or a wrapper script) may close its output
                    // long before it exits: then only the exit ends it.
                    inputs.output = f.child.output.clone();
                }
                if f.exited_at.is_none() {
                    inputs.exited = f.child.exited.clone();
                }
                if let Some(at) = f.next_timer() {
                    inputs.timer = crossbeam_channel::at(at);
                }
            }
            Phase::Turn | Phase::Over => {}
        }
        inputs
    }

    // --- The checks (SPEC §3.1) ---

    /// Starts round `round` of the checks. They run on a thread of their own
    /// (a DNS lookup cannot be interrupted), so a stop ends the run at once.
    fn check(&mut self, round: u32, checks: &Preconditions) -> Progress {
        self.entry.publish(|s| s.status = Status::Checking);
        let (sender, answer) = bounded(1);
        let round_checks = checks.clone();
        // Not joined: a lookup that hangs ends by itself within the checks'
        // bound, and nobody waits for its answer then.
        let started = thread::Builder::new()
            .name(format!("checks {}", self.job.name))
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = sender.send(preconditions::check_round(&round_checks));
            });
        match started {
            Ok(_) => {
                self.phase = Phase::Checking { round, answer };
                Progress::Busy
            }
            Err(e) => {
                let failure = format!("cannot start a thread for the checks: {e}");
                self.checked(round, vec![failure])
            }
        }
    }

    pub fn on_checks(&mut self, failures: Option<Vec<String>>) -> Progress {
        let Phase::Checking { round, .. } = self.phase else {
            return Progress::Busy;
        };
        // A checks thread that ended without an answer held nothing.
        let failures =
            failures.unwrap_or_else(|| vec!["the checks ended without an answer".into()]);
        self.checked(round, failures)
    }

    fn checked(&mut self, round: u32, failures: Vec<String>) -> Progress {
        let name = &self.job.name;
        let Some(checks) = self.job.preconditions.clone() else {
            return Progress::Busy;
        };
        if failures.is_empty() {
            self.entry.publish(|s| {
                s.status = Status::Waiting;
                s.error = None;
            });
            return self.queue();
        }
        let shown = format!("preconditions failed: {}", failures.join("; "));
        info!("[{name}] {shown} (round {round} of {})", checks.rounds);
        let error = shown.clone();
        self.entry.publish(|s| s.error = Some(error));
        if round < checks.rounds {
            self.phase = Phase::Pausing {
                round,
                until: Instant::now() + checks.every,
            };
            return Progress::Busy;
        }
        // Skipped: no restic, no hook, no healthcheck ping.
        self.record.outcome = Outcome::Skipped;
        self.record.error = Some(shown);
        self.record.start = clock::now();
        self.record.end = self.record.start;
        self.phase = Phase::Over;
        self.finish()
    }

    // --- The repository's turn ---

    fn queue(&mut self) -> Progress {
        let Some(repository) = self.repository.clone() else {
            // Unknown: there is nothing to wait for.
            self.phase = Phase::Turn;
            return Progress::Turn;
        };
        let name = self.job.name.clone();
        match self
            .context
            .repositories
            .acquire(&repository, name.as_str())
        {
            Acquired::Now(guard) => {
                self.turn = Some(guard);
                self.phase = Phase::Turn;
                Progress::Turn
            }
            Acquired::Later { holder, ticket } => {
                info!("[{name}] waits for {holder}, which is using {repository}");
                self.entry.publish(|s| s.waiting_for = Some(holder));
                self.phase = Phase::Queued(ticket);
                Progress::Busy
            }
        }
    }

    pub fn on_granted(&mut self) -> Progress {
        let Phase::Queued(ticket) = std::mem::replace(&mut self.phase, Phase::Turn) else {
            return Progress::Busy;
        };
        self.turn = Some(ticket.into_guard());
        self.entry.publish(|s| s.waiting_for = None);
        Progress::Turn
    }

    // --- The work: Before, restic, the hooks after it ---

    /// Starts the work once the run is recorded: the password, then
    /// `Before`, then restic.
    pub fn work(&mut self) -> Progress {
        let name = self.job.name.clone();
        self.record.start = clock::now();
        if let Some(url) = &self.job.healthcheck {
            self.context.pings.send(Ping::start(name.as_str(), url));
        }
        let since = self.record.start;
        self.entry.publish(|s| {
            s.status = Status::Working;
            s.running_since = Some(since);
        });
        // The password and the repository first: when restic cannot run,
        // a database dump in `Before` is wasted work.
        if let Err(error) = self.prepare_restic() {
            warn!("[{name}] {error}; restic was not started");
            return self.fail(Outcome::Failure, format!("{error}; restic was not started"));
        }
        if self.job.hooks.before.is_some() {
            return self.start_hook(HookName::Before);
        }
        self.start_restic()
    }

    fn prepare_restic(&mut self) -> Result<(), String> {
        if let Some(error) = &self.repository_error {
            return Err(error.clone());
        }
        let mut spec = restic_spec(&self.job, &self.context.job_dir);
        if let Some(entry) = &self.job.keyring {
            // Read at every run, so a keyring unlocked or filled after the
            // daemon started works without a restart.
            let password = self
                .context
                .keyring
                .lookup(&entry.service, &entry.username)
                .map_err(|e| e.to_string())?;
            restic::give_password(&mut spec, &password);
        }
        self.spec = Some(spec);
        Ok(())
    }

    /// The run failed before or without restic.
    fn fail(&mut self, outcome: Outcome, error: String) -> Progress {
        self.record.outcome = outcome;
        self.record.error = Some(error);
        self.record.end = clock::now();
        self.after_restic()
    }

    fn start_restic(&mut self) -> Progress {
        let name = self.job.name.clone();
        let Some(spec) = self.spec.clone() else {
            return self.fail(Outcome::Failure, "restic has no spec".into());
        };
        let child = match RunningChild::start(&spec) {
            Ok(child) => child,
            Err(e) => {
                let error = format!("cannot start {}: {e}", spec.program.to_string_lossy());
                warn!("[{name}] {error}");
                return self.fail(Outcome::Failure, error);
            }
        };
        // A run starts when restic does (SPEC §8).
        self.record.start = clock::now();
        self.output.restic = Tail::default();
        info!(
            "[{name}] run started ({}): {}",
            self.why,
            spec.program.to_string_lossy()
        );
        let since = self.record.start;
        self.entry.publish(|s| s.running_since = Some(since));
        self.follow(Task::Restic, child, self.job.timeout)
    }

    fn follow(&mut self, task: Task, child: RunningChild, limit: Option<Duration>) -> Progress {
        self.phase = Phase::Child(Box::new(Following::new(task, child, limit)));
        // A stop that came before this child started applies to it too.
        match self.stop {
            Some(stop) if !runs_after_a_stop(task) => self.cut(Cut::Stop(stop.by)),
            _ => {}
        }
        Progress::Busy
    }

    fn cut(&mut self, cut: Cut) {
        let grace = self.context.stop_grace;
        if let Phase::Child(f) = &mut self.phase {
            if f.cut.is_none()
                && let Cut::Stop(_) = cut
            {
                info!("[{}] stopping {}", self.job.name, f.task.label());
            }
            f.cut(cut, grace);
        }
    }

    /// A stop, restart, removal or shutdown: ends the run before its turn,
    /// stops `Before` or restic, and lets the rest finish.
    pub fn interrupt(&mut self, stop: Stop) -> Progress {
        // The first reason stays (a run someone stopped was stopped, even
        // when the daemon ends before its hooks do); a shutdown after it
        // still hurries the hooks.
        self.hurry |= stop.shutdown;
        let stop = *self.stop.get_or_insert(stop);
        let stop_grace = self.context.stop_grace;
        match &mut self.phase {
            Phase::Checking { .. } | Phase::Pausing { .. } | Phase::Queued(_) => {
                self.phase = Phase::Over;
                self.entry.publish(|s| s.waiting_for = None);
                Progress::Abandoned
            }
            Phase::Child(f) if !runs_after_a_stop(f.task) => {
                self.cut(Cut::Stop(stop.by));
                Progress::Busy
            }
            Phase::Child(f) => {
                if self.hurry && matches!(f.task, Task::Hook(_)) {
                    // The daemon is ending: a hook after restic gets the
                    // stop grace, then SIGTERM, then SIGKILL, so the
                    // shutdown stays within the unit's TimeoutStopSec.
                    let at = Instant::now() + stop_grace;
                    if f.limit.is_none_or(|(limit, _)| at < limit) {
                        f.limit = Some((at, stop_grace));
                    }
                    f.hurry = true;
                }
                Progress::Busy
            }
            Phase::Turn | Phase::Over => Progress::Busy,
        }
    }

    /// Whether restic said the password is wrong.
    pub fn wrong_password(&self) -> bool {
        self.wrong_password
    }

    /// Whether the daemon's shutdown stopped the run (first): it runs
    /// again after the next start.
    pub fn stopped_by_shutdown(&self) -> bool {
        self.stop.is_some_and(|s| s.shutdown)
    }

    pub fn on_output(&mut self, output: Result<Output, crossbeam_channel::RecvError>) -> Progress {
        let Phase::Child(f) = &mut self.phase else {
            return Progress::Busy;
        };
        match output {
            Ok(Output::Line(stream, line)) => {
                let task = f.task;
                if task == Task::Restic && stream == Stream::Stderr {
                    f.stderr.push(&line);
                }
                if let Task::Hook(_) = task {
                    f.said.push(stream, &line);
                }
                self.output_line(task, stream, &line);
            }
            Ok(Output::Closed(_)) => f.open_pipes = f.open_pipes.saturating_sub(1),
            Err(_) => f.open_pipes = 0,
        }
        self.maybe_ended()
    }

    pub fn on_exit(&mut self) -> Progress {
        if let Phase::Child(f) = &mut self.phase {
            f.exited_at = Some(Instant::now());
        }
        self.maybe_ended()
    }

    /// A time limit, a step of the stop ladder, or the end of the wait for
    /// a child's pipes; or the next round of checks.
    pub fn on_timer(&mut self) -> Progress {
        let now = Instant::now();
        let name = self.job.name.clone();
        let grace = self.context.stop_grace;
        let f = match &mut self.phase {
            Phase::Pausing { round, until } if *until <= now => {
                let next = *round + 1;
                let Some(checks) = self.job.preconditions.clone() else {
                    return Progress::Busy;
                };
                return self.check(next, &checks);
            }
            Phase::Child(f) => f,
            _ => return Progress::Busy,
        };
        let label = f.task.label();
        if let Some(at) = f.exited_at
            && at + PIPE_GRACE <= now
        {
            if f.leftovers_killed {
                // Something that left the group (setsid) holds the pipes:
                // we cannot reach it, so stop listening.
                warn!(
                    "[{name}] a process {label} started outside its group keeps its output open; not waiting for it"
                );
                f.open_pipes = 0;
            } else {
                // The child is gone but something it started holds the
                // pipes; the group is still ours until the reap.
                f.child.signal_group(libc::SIGKILL);
                f.leftovers_killed = true;
                f.exited_at = Some(now);
            }
            return self.maybe_ended();
        }
        if let Some((at, limit)) = f.limit
            && f.cut.is_none()
            && at <= now
        {
            warn!(
                "[{name}] {label} still running after the timeout of {}; stopping it",
                schedule::format_duration(limit)
            );
            f.cut(Cut::Limit(limit), grace);
            return Progress::Busy;
        }
        if f.ladder.next.is_some_and(|(at, _)| at <= now) {
            f.ladder.escalate(&f.child, &name, &label);
        }
        Progress::Busy
    }

    fn maybe_ended(&mut self) -> Progress {
        let Phase::Child(f) = &self.phase else {
            return Progress::Busy;
        };
        if !f.is_done() {
            return Progress::Busy;
        }
        let Phase::Child(mut f) = std::mem::replace(&mut self.phase, Phase::Over) else {
            return Progress::Busy;
        };
        if let Some(dropped) = self.output.log_limit.take() {
            info!("[{}] {dropped}", self.job.name);
        }
        // Anything the child left in its group must not outlive it.
        f.child.signal_group(libc::SIGKILL);
        let status = f.child.reap();
        match f.task {
            Task::Hook(name) => self.hook_ended(name, &f, status),
            Task::Restic => self.restic_ended(&f, status),
            Task::Unlock { then_retry } => self.unlock_ended(then_retry, status),
        }
    }

    fn restic_ended(
        &mut self,
        f: &Following,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> Progress {
        self.record.end = clock::now();
        let died = status.as_ref().is_ok_and(|s| s.code().is_none());
        let (outcome, exit_code, error) = match status {
            Err(e) => (
                Outcome::Failure,
                None,
                Some(format!("cannot wait for restic: {e}")),
            ),
            Ok(status) => {
                let code = status.code();
                // An interrupted run is stopped or timed out because we
                // interrupted it, whatever restic exited with (0.14 exits
                // 130 on SIGINT, 0.18 exits 1).
                let (outcome, error) = match f.cut {
                    Some(Cut::Stop(by)) => (Outcome::Stopped, Some(by.to_string())),
                    Some(Cut::Limit(limit)) => {
                        // restic 0.18 retries a server that is down for 15
                        // minutes: what it last said is the real reason.
                        let after = schedule::format_duration(limit);
                        let error = match f.stderr.said() {
                            Some(said) => format!(
                                "timed out after {after}; restic last said: {}",
                                restic::mask_credentials(said)
                            ),
                            None => format!("timed out after {after}"),
                        };
                        (Outcome::Timeout, Some(error))
                    }
                    None => {
                        // What restic said, not what a hook before it did.
                        let said = &self.output.restic.text;
                        let outcome = restic::classify(code, said);
                        self.wrong_password =
                            outcome == Outcome::Failure && restic::wrong_password(code, said);
                        let error = restic::failure_reason(
                            outcome,
                            code,
                            &describe_status(status),
                            &f.stderr,
                            said,
                        );
                        (outcome, error)
                    }
                };
                (outcome, code, error)
            }
        };
        self.record.outcome = outcome;
        self.record.exit_code = exit_code;
        self.record.error = error;
        if f.cut.is_some() || died {
            // restic 0.14 sometimes leaves its lock behind even on SIGINT,
            // and always on SIGTERM/SIGKILL. It is reaped, so its lock is
            // stale, and `restic unlock` removes stale locks only.
            info!(
                "[{}] removing the stale lock the interrupted restic may have left",
                self.job.name
            );
            return self.start_unlock(false);
        }
        if outcome == Outcome::Locked && self.job.unlock_stale && !self.retried_after_unlock {
            warn!(
                "[{}] the repository is locked; UnlockStale: removing stale locks, then trying once more",
                self.job.name
            );
            self.retried_after_unlock = true;
            // The first attempt is a run of its own on the board.
            let attempt = self.record();
            self.entry.publish(|s| s.record(attempt));
            return self.start_unlock(true);
        }
        self.after_restic()
    }

    fn start_unlock(&mut self, then_retry: bool) -> Progress {
        let Some(run) = &self.spec else {
            return self.after_restic();
        };
        let spec = Spec {
            args: restic::unlock_arguments(&run.args),
            ..run.clone()
        };
        match RunningChild::start(&spec) {
            Ok(child) => self.follow(Task::Unlock { then_retry }, child, Some(UNLOCK_LIMIT)),
            Err(e) => {
                warn!("[{}] cannot run restic unlock: {e}", self.job.name);
                self.after_restic()
            }
        }
    }

    fn unlock_ended(
        &mut self,
        then_retry: bool,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> Progress {
        let name = &self.job.name;
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => warn!(
                "[{name}] restic unlock failed ({})",
                describe_status(status)
            ),
            Err(e) => warn!("[{name}] cannot wait for restic unlock: {e}"),
        }
        match self.stop {
            None if then_retry => {
                self.why = "again after restic unlock".into();
                self.start_restic()
            }
            // Stopped before the second try: the run is stopped, not locked.
            Some(stop) if then_retry => {
                self.record.outcome = Outcome::Stopped;
                self.record.error = Some(stop.by.into());
                self.after_restic()
            }
            _ => self.after_restic(),
        }
    }

    /// After restic (or instead of it): `OnSuccess` or `OnFailure`, then
    /// `After`.
    fn after_restic(&mut self) -> Progress {
        let next = match self.record.outcome {
            Outcome::Success | Outcome::Warning => HookName::OnSuccess,
            Outcome::Failure | Outcome::Locked | Outcome::Timeout => HookName::OnFailure,
            Outcome::Stopped | Outcome::Skipped => HookName::After,
        };
        self.start_hook(next)
    }

    /// Starts hook `name`, or the next one when the job has no such hook.
    fn start_hook(&mut self, name: HookName) -> Progress {
        let Some(command) = self.job.hooks.get(name).cloned() else {
            return self.hook_skipped(name);
        };
        let job = self.job.name.clone();
        let spec = self.hook_spec(name, &command);
        info!("[{job}] hook {}: started", name.key());
        match RunningChild::start(&spec) {
            Ok(child) => {
                let hurry = self.hurry && name != HookName::Before;
                let mut limit = self.job.hook_timeout;
                if hurry {
                    limit = limit.min(self.context.stop_grace);
                }
                let progress = self.follow(Task::Hook(name), child, Some(limit));
                if let Phase::Child(f) = &mut self.phase {
                    f.hurry = hurry;
                }
                progress
            }
            Err(e) => {
                let error = format!(
                    "{} hook cannot start {}: {e}",
                    name.key(),
                    spec.program.to_string_lossy()
                );
                self.hook_failed(name, None, Duration::ZERO, error)
            }
        }
    }

    /// What follows hook `name` when it did not run or succeeded.
    fn hook_skipped(&mut self, name: HookName) -> Progress {
        match name {
            HookName::Before => self.start_restic(),
            HookName::OnSuccess | HookName::OnFailure => self.start_hook(HookName::After),
            HookName::After => self.finish(),
        }
    }

    fn hook_ended(
        &mut self,
        name: HookName,
        f: &Following,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> Progress {
        let job = self.job.name.clone();
        let duration = f.started.elapsed();
        let exit_code = status.as_ref().ok().and_then(|s| s.code());
        let key = name.key();
        let why = match (&status, f.cut) {
            (_, Some(Cut::Stop(by))) => Some(format!("{key} hook {by}")),
            (_, Some(Cut::Limit(limit))) => Some(format!(
                "{key} hook timed out after {}",
                schedule::format_duration(limit)
            )),
            (Ok(status), None) if status.success() => None,
            (Ok(status), None) => {
                let status = match status.code() {
                    Some(code) => format!("exited {code}"),
                    None => describe_status(*status),
                };
                Some(match f.said.line() {
                    Some(line) => format!("{key} hook {status}: {line}"),
                    None => format!("{key} hook {status}"),
                })
            }
            (Err(e), None) => Some(format!("cannot wait for the {key} hook: {e}")),
        };
        let Some(error) = why else {
            info!(
                "[{job}] hook {key}: ended: exit code 0 after {:.3}s",
                duration.as_secs_f64()
            );
            self.record.hooks.push(HookRecord {
                hook: name,
                exit_code,
                duration,
                error: None,
            });
            return self.hook_skipped(name);
        };
        if name == HookName::Before
            && let Some(Cut::Stop(by)) = f.cut
        {
            // Stopped, not failed: the run is stopped, and `After` runs.
            self.record.hooks.push(HookRecord {
                hook: name,
                exit_code,
                duration,
                error: Some(error),
            });
            self.record.outcome = Outcome::Stopped;
            self.record.error = Some(by.to_string());
            self.record.end = clock::now();
            return self.start_hook(HookName::After);
        }
        self.hook_failed(name, exit_code, duration, error)
    }

    /// Hook `name` failed (SPEC §4.1's table says what that does).
    fn hook_failed(
        &mut self,
        name: HookName,
        exit_code: Option<i32>,
        duration: Duration,
        error: String,
    ) -> Progress {
        warn!(
            "[{}] hook {}: failed after {:.3}s: {error}",
            self.job.name,
            name.key(),
            duration.as_secs_f64()
        );
        self.record.hooks.push(HookRecord {
            hook: name,
            exit_code,
            duration,
            error: Some(error.clone()),
        });
        match name {
            HookName::Before => {
                self.record.end = clock::now();
                self.record.outcome = Outcome::Failure;
                self.record.error = Some(error);
                self.start_hook(HookName::OnFailure)
            }
            HookName::OnSuccess | HookName::After => {
                if self.record.outcome.succeeded() {
                    self.record.outcome = Outcome::Warning;
                    self.record.error = Some(match self.record.error.take() {
                        Some(earlier) => format!("{earlier}; {error}"),
                        None => error,
                    });
                }
                self.hook_skipped(name)
            }
            HookName::OnFailure => self.hook_skipped(name),
        }
    }

    /// How hook `name` starts: in the job directory, with the job's `Env`
    /// (never the keyring password) and what it needs to know of the run.
    fn hook_spec(&self, name: HookName, command: &HookCommand) -> Spec {
        let mut env = job_env(&self.job);
        let mut set = |key: &str, value: String| env.push((key.to_string(), value));
        set("RESTIC_CRONNED_JOB", self.job.name.to_string());
        set("RESTIC_CRONNED_HOOK", name.env_name().into());
        set("RESTIC_CRONNED_REASON", self.record.reason.as_str().into());
        if name != HookName::Before {
            set(
                "RESTIC_CRONNED_OUTCOME",
                self.record.outcome.as_str().into(),
            );
            set(
                "RESTIC_CRONNED_EXIT_CODE",
                self.record
                    .exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            );
            set(
                "RESTIC_CRONNED_ERROR",
                self.record.error.clone().unwrap_or_default(),
            );
            let duration = self
                .record
                .end
                .duration_since(self.record.start)
                .as_secs_f64()
                .max(0.0);
            set("RESTIC_CRONNED_DURATION", format!("{duration:.3}"));
            set(
                "RESTIC_CRONNED_SNAPSHOT",
                self.output.snapshot().unwrap_or_default(),
            );
        }
        let mut env_remove: Vec<String> = service::NOTIFY_VARIABLES
            .iter()
            .chain(HOOK_VARIABLES)
            .map(|key| key.to_string())
            .collect();
        env_remove.retain(|key| !env.iter().any(|(k, _)| k == key));
        command.spec(&self.context.job_dir, env, env_remove)
    }

    /// One line of output: restic's `--json` status lines move the job's
    /// progress (published at most every [`PROGRESS_EVERY`]), its summary is
    /// kept for the record, and the rest is logged and kept in the tail.
    fn output_line(&mut self, task: Task, stream: Stream, line: &str) {
        let name = &self.job.name;
        if line.is_empty() {
            return;
        }
        let output = &mut self.output;
        if let Some(dropped) = output.log_limit.report_due() {
            info!("[{name}] {dropped}");
        }
        let admitted = output.log_limit.admit(line.len());
        match task {
            Task::Hook(hook) => {
                if admitted {
                    info!("[{name}] hook {}: {line}", hook.key());
                }
                output.tail.push(line);
            }
            Task::Unlock { .. } => {
                if admitted {
                    info!("[{name}] unlock: {line}");
                }
            }
            Task::Restic if stream == Stream::Stderr => {
                if admitted {
                    info!("[{name}] stderr: {line}");
                }
                output.tail.push(line);
                output.restic.push(line);
            }
            Task::Restic => match progress::read_line(line) {
                progress::Line::Status(progress) => {
                    let due = output
                        .published
                        .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
                    if due || progress.percent_done >= 1.0 {
                        output.published = Some(Instant::now());
                        self.entry.publish(|s| {
                            s.progress = progress.percent_done;
                            s.progress_detail = Some(progress);
                        });
                    }
                }
                progress::Line::Summary(summary) => {
                    if admitted {
                        info!("[{name}] {}", summary.describe());
                    }
                    output.summary = Some(summary);
                }
                progress::Line::Other => {
                    if admitted {
                        info!("[{name}] {line}");
                    }
                    if let Some(id) = restic::snapshot_in_line(line) {
                        output.snapshot_line = Some(id.to_string());
                    }
                    output.tail.push(line);
                    output.restic.push(line);
                }
            },
        }
    }

    /// The record as it stands, with the output so far.
    fn record(&self) -> RunRecord {
        RunRecord {
            end: self.record.end.max(self.record.start),
            output_tail: self.output.tail.clone().into_text(),
            summary: self.output.summary.clone(),
            snapshot: self.output.snapshot(),
            ..self.record.clone()
        }
    }

    /// The run is over: the turn goes to the next job, and the end ping
    /// says how it went.
    fn finish(&mut self) -> Progress {
        self.phase = Phase::Over;
        self.turn = None;
        let record = self.record();
        if record.outcome != Outcome::Skipped
            && let Some(url) = &self.job.healthcheck
        {
            self.context
                .pings
                .send(Ping::end(self.job.name.as_str(), url, &record));
        }
        Progress::Finished(Box::new(record))
    }
}

/// The line that best says why a hook failed: its last stderr line that
/// is not indented (a tool's `error:` line, not the hint under it), else
/// its last stderr line, else its last stdout line; trimmed.
#[derive(Default)]
struct HookSaid {
    stderr_head: Option<String>,
    stderr: Option<String>,
    stdout: Option<String>,
}

impl HookSaid {
    fn push(&mut self, stream: Stream, line: &str) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        match stream {
            Stream::Stdout => self.stdout = Some(trimmed.to_string()),
            Stream::Stderr => {
                if !line.starts_with(char::is_whitespace) {
                    self.stderr_head = Some(trimmed.to_string());
                }
                self.stderr = Some(trimmed.to_string());
            }
        }
    }

    fn line(&self) -> Option<&str> {
        self.stderr_head
            .as_deref()
            .or(self.stderr.as_deref())
            .or(self.stdout.as_deref())
    }
}

/// What a run's output leaves behind.
#[derive(Default)]
struct RunOutput {
    tail: Tail,
    /// restic's own lines of the current attempt, which classify its end.
    restic: Tail,
    summary: Option<Summary>,
    /// The snapshot restic's text output named (`snapshot 1a2b3c4d saved`).
    snapshot_line: Option<String>,
    /// When progress was last published.
    published: Option<Instant>,
    log_limit: LineRateLimit,
}

impl RunOutput {
    /// The snapshot restic reported: the full id of its `--json` summary,
    /// else the short one of its text output.
    fn snapshot(&self) -> Option<String> {
        self.summary
            .as_ref()
            .and_then(|s| s.snapshot_id.clone())
            .or_else(|| self.snapshot_line.clone())
    }
}

/// The last [`TAIL_BYTES`] of a run's output.
#[derive(Clone, Default)]
struct Tail {
    text: String,
}

impl Tail {
    /// Trimmed only once twice the tail has piled up, so a verbose restic
    /// does not move 64 KiB of text for every line.
    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        if self.text.len() > 2 * TAIL_BYTES {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let cut = self.text.len() - process::last_bytes(&self.text, TAIL_BYTES).len();
        self.text.drain(..cut);
    }

    /// The last [`TAIL_BYTES`].
    fn into_text(mut self) -> String {
        self.trim();
        self.text
    }
}

/// The stop ladder: SIGINT (restic removes its lock), after the grace
/// SIGTERM, ten seconds later SIGKILL.
#[derive(Default)]
struct Ladder {
    next: Option<(Instant, libc::c_int)>,
}

impl Ladder {
    fn begin(&mut self, child: &RunningChild, grace: Duration) {
        child.signal_group(libc::SIGINT);
        let at = Instant::now()
            .checked_add(grace)
            .unwrap_or_else(Instant::now);
        self.next = Some((at, libc::SIGTERM));
    }

    /// Straight to SIGTERM, SIGKILL ten seconds later.
    fn terminate(&mut self, child: &RunningChild) {
        child.signal_group(libc::SIGTERM);
        self.next = Some((Instant::now() + TERM_GRACE, libc::SIGKILL));
    }

    fn escalate(&mut self, child: &RunningChild, name: &JobName, label: &str) {
        let Some((_, signal)) = self.next else { return };
        if signal == libc::SIGTERM {
            warn!("[{name}] {label} ignored SIGINT; sending SIGTERM");
            self.next = Some((Instant::now() + TERM_GRACE, libc::SIGKILL));
        } else {
            warn!("[{name}] {label} ignored SIGTERM; sending SIGKILL");
            self.next = None;
        }
        child.signal_group(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hooks_error_is_its_last_unindented_stderr_line() {
        let mut said = HookSaid::default();
        said.push(Stream::Stdout, "dumping mydb");
        assert_eq!(said.line(), Some("dumping mydb"));
        said.push(
            Stream::Stderr,
            "pg_dump: error: connection to server failed: No such file or directory",
        );
        said.push(
            Stream::Stderr,
            "        Is the server running locally and accepting connections?",
        );
        said.push(Stream::Stdout, "bye");
        assert_eq!(
            said.line(),
            Some("pg_dump: error: connection to server failed: No such file or directory")
        );
        let mut said = HookSaid::default();
        said.push(Stream::Stderr, "   only indented  ");
        assert_eq!(said.line(), Some("only indented"));
    }

    #[test]
    fn tail_keeps_the_last_bytes_on_char_boundaries() {
        let mut tail = Tail::default();
        for _ in 0..20_000 {
            tail.push("äöü line");
        }
        let text = tail.into_text();
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.ends_with("äöü line\n"));
    }
}
