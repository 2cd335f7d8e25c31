//! One job as an actor: a thread that owns the job's state and blocks on
//! `select!` over its control inbox, its trigger inbox and its next deadline;
//! it runs restic, applies the retry and follow-up rules, persists its next
//! trigger and publishes its status on the board.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, after, bounded, never, select, unbounded};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use log::{info, warn};

use crate::board::{Board, JobStatus, Status};
use crate::exclusion::{Acquired, Guard, Repositories};
use crate::files::SlowRead;
use crate::healthcheck::{Ping, PingSender};
use crate::job_file::{Job, JobName};
use crate::keyring::Keyring;
use crate::logging::LineRateLimit;
use crate::outcome::{Outcome, Reason, RunRecord};
use crate::preconditions::{self, Preconditions};
use crate::process::{self, Output, RunningChild, Spec, Stream, describe_status};
use crate::progress::{self, Summary};
use crate::restic::{self, Repository, RepositorySource};
use crate::schedule::{self, Deadlines, Saved};
use crate::service;
use crate::state::{self, State};

/// How much of a run's output is kept with its record.
const TAIL_BYTES: usize = 64 * 1024;
/// A job re-reads the wall clock at least this often, so a deadline that
/// passed during a suspend fires within a minute of resume.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Between SIGTERM and SIGKILL when stopping restic.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for the pipes to close after restic exited before the
/// rest of its process group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// How often a running backup's progress is published at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How long `restic unlock` may take after an interrupted run.
const UNLOCK_LIMIT: Duration = Duration::from_secs(15);

/// What the daemon tells a job.
#[derive(Debug)]
pub enum Control {
    /// Stop: interrupt a running restic; wait for nothing until restarted.
    Stop,
    /// Stop if needed, then apply the start rules again.
    Restart,
    /// A new definition, applied after a running restic ends.
    Replace(Arc<Job>),
    /// Stop and end the thread: the job was removed (`/remove`, a reload).
    Exit,
    /// Stop and end the thread: the daemon is stopping. A run this
    /// interrupts runs again once after the next start.
    Shutdown,
}

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
}

/// The daemon's handle on a job thread.
pub struct JobHandle {
    // Field order is drop order: the senders go before the thread is joined
    // in `Drop`, so a thread that has not seen `Exit` still sees its inbox
    // disconnect and ends.
    control: Sender<Control>,
    trigger: Sender<()>,
    thread: Option<JoinHandle<()>>,
    pub owner: u64,
}

impl JobHandle {
    /// Publishes `job` on the board under `file_name` and starts its thread.
    /// `Err` when the system refuses the thread (`TasksMax`, `ulimit -u`);
    /// the caller then shows the job as invalid with that error.
    pub fn spawn(
        job: Arc<Job>,
        file_name: String,
        context: Arc<Context>,
    ) -> std::io::Result<JobHandle> {
        static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);
        let owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
        let (control_sender, control) = unbounded();
        // Capacity one: a trigger that arrives while one is pending (or while
        // the job runs) coalesces with it.
        let (trigger_sender, trigger) = bounded(1);
        context
            .board
            .insert(&file_name, JobStatus::new(owner, job.clone()));
        let name = job.name.to_string();
        let mut actor = Actor {
            job,
            file_name,
            owner,
            context,
            control,
            trigger,
            stopped: false,
            repository_source: None,
            repository: None,
            repository_error: None,
            repository_read: None,
            deadlines: Deadlines::default(),
            current_retry: 0,
            consecutive_failures: 0,
            gave_up: false,
            last_run: None,
            last_success: None,
            after_run: Vec::new(),
            pending_run: None,
            resume: false,
        };
        // The start rules run here, on the caller's thread: the job's own
        // thread then only ever waits and runs restic, so it stays small (a
        // thousand idle jobs cost a thousand idle stacks and little else).
        actor.start(false);
        let thread = thread::Builder::new()
            .name(format!("job {name}"))
            .stack_size(512 * 1024)
            .spawn(move || actor.run())?;
        Ok(JobHandle {
            control: control_sender,
            trigger: trigger_sender,
            thread: Some(thread),
            owner,
        })
    }

    pub fn send(&self, control: Control) {
        // A thread that has ended has nothing left to control.
        let _ = self.control.send(control);
    }

    /// Asks for a run; `false` when a run was already pending (coalesced).
    pub fn trigger(&self) -> bool {
        match self.trigger.try_send(()) {
            Ok(()) => true,
            Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => false,
        }
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Exit);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum Event {
    Control(Control),
    Trigger,
    Timer,
    /// The run the daemon's last end interrupted, again.
    Resume,
}

/// What starts a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Deadline,
    Trigger,
    Resume,
}

/// How a round of precondition checks ended.
enum Checked {
    Hold,
    /// The last round failed: these checks.
    Failed(Vec<String>),
    /// A stop, restart or exit came; it is queued in `after_run`.
    Interrupted,
}

/// Why a run is ending early.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// By a control; says which, for the run's `error`.
    Stop(&'static str),
    Timeout,
}

struct Actor {
    job: Arc<Job>,
    file_name: String,
    owner: u64,
    context: Arc<Context>,
    control: Receiver<Control>,
    trigger: Receiver<()>,
    stopped: bool,
    repository_source: Option<RepositorySource>,
    repository: Option<Repository>,
    /// Why the repository file could not be read; fails the run.
    repository_error: Option<String>,
    /// A read of the repository file that has not answered yet.
    repository_read: Option<SlowRead>,
    deadlines: Deadlines,
    current_retry: u32,
    consecutive_failures: u32,
    /// Stopped by `StopAfterFailedRetries`; persisted, so the job stays
    /// stopped across a daemon restart until someone restarts it.
    gave_up: bool,
    last_run: Option<Timestamp>,
    last_success: Option<Timestamp>,
    /// Controls that arrived during a run, handled after it.
    after_run: Vec<Control>,
    /// The cause of the run going on, in the state file until its outcome
    /// is (SPEC §3: a run the daemon's end interrupted runs again).
    pending_run: Option<String>,
    /// Found a pending run at start: run it again first.
    resume: bool,
}

impl Actor {
    fn run(mut self) {
        self.resolve_repository();
        while let Some(event) = self.next_event() {
            let keep_going = match event {
                Event::Control(control) => self.handle(control),
                Event::Trigger => self.run_restic(Cause::Trigger),
                Event::Timer => self.run_restic(Cause::Deadline),
                Event::Resume => self.run_restic(Cause::Resume),
            };
            if !keep_going {
                break;
            }
        }
        info!("[{}] job ended", self.job.name);
    }

    fn next_event(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.resume) && !self.stopped {
            return Some(Event::Resume);
        }
        let now = Timestamp::now();
        let timer = match self.deadlines.next() {
            Some(deadline) if !self.stopped => after(schedule::until(deadline, now).min(MAX_SLEEP)),
            _ => never(),
        };
        let trigger = if self.stopped {
            never()
        } else {
            self.trigger.clone()
        };
        select! {
            recv(self.control) -> msg => msg.ok().map(Event::Control),
            recv(trigger) -> msg => msg.ok().map(|()| Event::Trigger),
            recv(timer) -> _ => Some(Event::Timer),
        }
    }

    /// Handles a control message; `false` ends the thread.
    fn handle(&mut self, control: Control) -> bool {
        match control {
            Control::Stop => {
                if !self.stopped {
                    info!("[{}] stopped", self.job.name);
                }
                self.stopped = true;
                self.publish(|s| {
                    s.status = Status::Stopped;
                    s.next_run = None;
                });
            }
            Control::Restart => {
                info!("[{}] restarting", self.job.name);
                self.start(true);
            }
            Control::Replace(job) => {
                info!("[{}] new definition from {}", job.name, job.file.display());
                self.job = job.clone();
                self.publish(|s| {
                    s.name = job.name.to_string();
                    s.job = Some(job);
                });
                if self.stopped {
                    // A stopped job stays stopped until it is restarted.
                    self.refresh_repository();
                } else {
                    self.start(false);
                }
            }
            Control::Exit | Control::Shutdown => return false,
        }
        true
    }

    fn state_path(&self) -> PathBuf {
        state::path(&self.context.state_dir, self.job.name.as_str())
    }

    fn publish(&self, change: impl FnOnce(&mut JobStatus)) {
        self.context
            .board
            .update(&self.file_name, self.owner, change);
    }

    /// Works out (again) where the job's repository is named, and shows it
    /// unless it is in a file: this may run on the supervisor, which must
    /// never wait for a file (see [`Actor::resolve_repository`]).
    fn refresh_repository(&mut self) {
        let daemon_env = |key: &str| std::env::var(key).ok();
        self.repository_source = restic::repository_source(
            &self.job.restic_arguments,
            &self.job.env,
            &daemon_env,
            &self.context.job_dir,
        );
        match &self.repository_source {
            Some(RepositorySource::File(_)) => {}
            Some(RepositorySource::Named(repository)) => {
                self.repository = Some(repository.clone());
                self.repository_error = None;
                let shown = repository.to_string();
                self.publish(|s| s.repository = Some(shown));
            }
            None => {
                self.repository = None;
                self.repository_error = None;
                self.publish(|s| s.repository = None);
            }
        }
    }

    /// Reads a repository file, on the job's own thread: when the thread
    /// starts, and before each run, which fails when the file is unusable.
    fn resolve_repository(&mut self) {
        let Some(source @ RepositorySource::File(_)) = &self.repository_source else {
            return;
        };
        let read = &mut self.repository_read;
        let (repository, error) = match source.resolve(&self.context.job_dir, read) {
            Ok(repository) => (Some(repository), None),
            Err(error) => (None, Some(error)),
        };
        let shown = repository.as_ref().map(|r| r.to_string());
        self.publish(|s| s.repository = shown);
        self.repository = repository;
        self.repository_error = error;
    }

    /// The start rules of SPEC §3, from the state file. `restart`: asked
    /// for by someone, so a job that stopped itself after failing starts too.
    fn start(&mut self, restart: bool) {
        if restart {
            self.gave_up = false;
        }
        if self.stopped {
            // A stopped job ignores triggers; one sent meanwhile must not
            // fire now.
            while self.trigger.try_recv().is_ok() {}
        }
        self.stopped = false;
        self.refresh_repository();
        let path = self.state_path();
        let saved = match state::read(&path) {
            Ok(None) => Saved::Missing,
            Ok(Some(state)) => {
                // Not after a /restart: someone stopped that run.
                self.pending_run = state.pending_run.clone().filter(|_| !restart);
                self.resume = self.pending_run.is_some();
                if let Some(cause) = &self.pending_run {
                    info!(
                        "[{}] the daemon ended during its last run ({cause}); it runs again now",
                        self.job.name
                    );
                }
                self.last_run = state.last_run;
                self.last_success = state.last_success;
                self.consecutive_failures = state.consecutive_failures;
                self.gave_up = state.gave_up && !restart;
                state.saved()
            }
            Err(why) => {
                warn!("[{}] ignoring the state file: {why}", self.job.name);
                Saved::Unreadable
            }
        };
        let failures = self.consecutive_failures;
        if self.gave_up {
            warn!(
                "[{}] stopped after its retries ran out ({failures} failures in a row); /restart it",
                self.job.name
            );
            self.stopped = true;
            self.publish(|s| {
                s.status = Status::Stopped;
                s.consecutive_failures = failures;
            });
            return;
        }
        let now = Timestamp::now();
        let (deadlines, current_retry) =
            schedule::start_deadlines(self.job.schedule.as_ref(), &saved, now, &TimeZone::system());
        self.deadlines = deadlines;
        self.current_retry = current_retry;
        match deadlines.next() {
            Some(next) if next <= now => info!("[{}] due now", self.job.name),
            Some(next) => info!(
                "[{}] next run at {}",
                self.job.name,
                state::local_rfc3339(next)
            ),
            None => info!("[{}] runs only when triggered", self.job.name),
        }
        if saved == Saved::Unreadable {
            self.persist();
        }
        let (last_run, last_success) = (self.last_run, self.last_success);
        self.publish(|s| {
            s.status = Status::Waiting;
            s.current_retry = current_retry;
            s.consecutive_failures = failures;
            s.last_success = s.last_success.or(last_success);
            s.next_run = deadlines.next();
            s.wait_start = deadlines.next().map(|_| now);
            s.wait_end = deadlines.next();
            if s.runs.is_empty() && last_run.is_some() {
                s.error = None;
            }
        });
    }

    /// Writes the state file; a failure is logged, never fatal.
    fn persist(&self) {
        let state = State {
            next_trigger: self.deadlines.next(),
            next_regular: self
                .deadlines
                .regular
                .filter(|_| self.deadlines.retry.is_some()),
            current_retry: self.current_retry,
            last_run: self.last_run,
            last_success: self.last_success,
            consecutive_failures: self.consecutive_failures,
            gave_up: self.gave_up,
            pending_run: self.pending_run.clone(),
        };
        if let Err(e) = state::write(&self.state_path(), &state) {
            warn!("[{}] {e}", self.job.name);
        }
    }

    /// One run of restic, for a trigger or a deadline. Returns `false` when
    /// the thread must end.
    fn run_restic(&mut self, cause: Cause) -> bool {
        let now = Timestamp::now();
        let regular_due = self.deadlines.regular.filter(|d| *d <= now);
        let retry_due = self.deadlines.retry.filter(|d| *d <= now);
        if cause == Cause::Deadline && regular_due.is_none() && retry_due.is_none() {
            // The 60-second re-check of the wall clock: nothing is due yet.
            return true;
        }
        // Before the repository's turn: a job waiting for a disk to be
        // mounted must not hold up the other jobs on its repository.
        if let Some(preconditions) = self.job.preconditions.clone() {
            match self.check_preconditions(&preconditions) {
                Checked::Hold => {}
                Checked::Failed(failures) => return self.skip(&failures),
                Checked::Interrupted => {
                    let pending = std::mem::take(&mut self.after_run);
                    return pending.into_iter().all(|control| self.handle(control));
                }
            }
        }
        self.resolve_repository();
        let Ok(turn) = self.take_turn() else {
            // A stop (or restart, or exit) came while we waited.
            let pending = std::mem::take(&mut self.after_run);
            return pending.into_iter().all(|control| self.handle(control));
        };
        // Deadlines that came due while we waited are served by this run too.
        let now = Timestamp::now();
        let regular_due = self.deadlines.regular.filter(|d| *d <= now);
        let retry_due = self.deadlines.retry.filter(|d| *d <= now);
        let why = match (cause, regular_due, retry_due) {
            (Cause::Resume, _, _) => "again: the daemon ended during the last run".to_string(),
            (Cause::Trigger, _, _) => "triggered".to_string(),
            (_, _, Some(_)) => format!("retry {}", self.current_retry),
            _ => "scheduled".to_string(),
        };
        // Recorded before restic starts, with the deadlines it serves still
        // due: if the daemon ends before the outcome is recorded, the next
        // start runs it once more, on the schedule's old phase.
        let recorded = match (cause, retry_due) {
            (Cause::Resume, _) => self.pending_run.clone().unwrap_or_else(|| "trigger".into()),
            (Cause::Trigger, _) => "trigger".into(),
            (Cause::Deadline, Some(_)) => "retry".into(),
            (Cause::Deadline, None) => "schedule".into(),
        };
        self.pending_run = Some(recorded);
        self.persist();
        // A run serves every deadline that is due when it starts.
        if regular_due.is_some() {
            self.deadlines.regular = None;
        }
        if retry_due.is_some() {
            self.deadlines.retry = None;
        }
        let mut record = self.execute(&why);
        if record.outcome == Outcome::Locked && self.job.unlock_stale {
            warn!(
                "[{}] the repository is locked; UnlockStale: removing stale locks, then trying once more",
                self.job.name
            );
            self.publish(|s| s.record(record.clone()));
            self.remove_stale_locks(&self.spec());
            record = self.execute("again after restic unlock");
        }
        // Only now, with restic reaped and any stale lock removed, may the
        // next job touch the repository.
        drop(turn);
        let end = record.end;
        let exit = match record.exit_code {
            Some(code) => format!("exit code {code}"),
            None => "no exit code".into(),
        };
        let ended = format!(
            "[{}] run ended: {} ({exit}) after {:.3}s",
            self.job.name,
            record.outcome.as_str(),
            end.duration_since(record.start).as_secs_f64()
        );
        // The reason on the same line, at a level a person can filter on.
        match (&record.error, record.outcome) {
            (Some(error), Outcome::Stopped) => info!("{ended}: {error}"),
            (Some(error), _) => warn!("{ended}: {error}"),
            (None, _) => info!("{ended}"),
        }
        self.last_run = Some(record.start);
        let outcome = record.outcome;
        let shutting_down = self
            .after_run
            .iter()
            .any(|c| matches!(c, Control::Shutdown));
        if outcome == Outcome::Stopped && shutting_down {
            // The daemon's end interrupted this run: what was due stays due,
            // and the run stays pending, so the next start runs it again.
            self.deadlines.regular = self.deadlines.regular.or(regular_due);
            self.deadlines.retry = self.deadlines.retry.or(retry_due);
        } else {
            // Done, or stopped by someone: either way it is over.
            self.pending_run = None;
            if let (Some(schedule), Some(slot)) = (&self.job.schedule, regular_due) {
                self.deadlines.regular = Some(schedule.next_slot(slot, end, &TimeZone::system()));
            }
        }
        if outcome.succeeded() {
            self.current_retry = 0;
            self.consecutive_failures = 0;
            self.deadlines.retry = None;
            self.last_success = Some(end);
        } else if outcome != Outcome::Stopped {
            self.consecutive_failures += 1;
            if restic::wrong_password(record.exit_code, &record.output_tail) {
                warn!("[{}] wrong password: no retry can fix that", self.job.name);
                self.give_up();
            } else {
                self.schedule_retry(&record);
            }
        }
        self.persist();
        let (deadlines, current_retry, failures, stopped) = (
            self.deadlines,
            self.current_retry,
            self.consecutive_failures,
            self.stopped,
        );
        let last_success = self.last_success;
        self.publish(|s| {
            s.status = if stopped {
                Status::Stopped
            } else {
                Status::Waiting
            };
            s.running_since = None;
            s.progress = 0.0;
            s.progress_detail = None;
            s.current_retry = current_retry;
            s.consecutive_failures = failures;
            s.last_success = last_success;
            s.next_run = deadlines.next().filter(|_| !stopped);
            if let Some(next) = deadlines.next() {
                s.wait_start = Some(end);
                s.wait_end = Some(next);
            }
            s.error = record.error.clone();
            s.record(record);
        });
        if outcome.succeeded() && !self.job.next_jobs.is_empty() {
            let notice = Notice::FollowUp {
                from: self.job.name.clone(),
                next: self.job.next_jobs.clone(),
            };
            let _ = self.context.notices.send(notice);
        }
        let pending = std::mem::take(&mut self.after_run);
        pending.into_iter().all(|control| self.handle(control))
    }

    /// Rounds of precondition checks (SPEC §3.1) until one passes or
    /// `CheckPrecondsMaxTimes` have failed. The checks run on a thread of
    /// their own (a DNS lookup cannot be interrupted), so a stop interrupts
    /// at once; a trigger that arrives meanwhile merges into this run.
    fn check_preconditions(&mut self, preconditions: &Preconditions) -> Checked {
        let name = self.job.name.clone();
        self.publish(|s| s.status = Status::Checking);
        let mut failures = Vec::new();
        for round in 1..=preconditions.rounds {
            let (sender, answer) = bounded(1);
            let checks = preconditions.clone();
            // Not joined: a lookup that hangs ends by itself within
            // CHECK_LIMIT, and nobody waits for its answer then.
            let started = thread::Builder::new()
                .name(format!("checks {name}"))
                .stack_size(128 * 1024)
                .spawn(move || {
                    let _ = sender.send(preconditions::check_round(&checks));
                });
            failures = match started {
                Ok(_) => loop {
                    select! {
                        recv(answer) -> failures => break failures.unwrap_or_default(),
                        recv(self.control) -> msg => if self.defer(msg.ok()) {
                            return Checked::Interrupted;
                        },
                        recv(self.trigger) -> _ => {},
                    }
                },
                Err(e) => vec![format!("cannot start a thread for the checks: {e}")],
            };
            if failures.is_empty() {
                self.publish(|s| {
                    s.status = Status::Waiting;
                    s.error = None;
                });
                return Checked::Hold;
            }
            let shown = failures.join("; ");
            info!(
                "[{name}] preconditions failed (round {round} of {}): {shown}",
                preconditions.rounds
            );
            self.publish(|s| s.error = Some(format!("preconditions failed: {shown}")));
            if round < preconditions.rounds {
                let next_round = after(preconditions.every);
                loop {
                    select! {
                        recv(next_round) -> _ => break,
                        recv(self.control) -> msg => if self.defer(msg.ok()) {
                            return Checked::Interrupted;
                        },
                        recv(self.trigger) -> _ => {},
                    }
                }
            }
        }
        Checked::Failed(failures)
    }

    /// A run whose preconditions did not hold: recorded as `skipped`, no
    /// restic, no hook, no healthcheck ping, no retry spent; the deadlines
    /// it would have served are over, and the job waits for its next
    /// regular slot.
    fn skip(&mut self, failures: &[String]) -> bool {
        let now = Timestamp::now();
        let regular_due = self.deadlines.regular.filter(|d| *d <= now);
        if let (Some(schedule), Some(slot)) = (&self.job.schedule, regular_due) {
            self.deadlines.regular = Some(schedule.next_slot(slot, now, &TimeZone::system()));
        }
        if self.deadlines.retry.is_some_and(|d| d <= now) {
            self.deadlines.retry = None;
        }
        let error = format!("preconditions failed: {}", failures.join("; "));
        warn!("[{}] run skipped: {error}", self.job.name);
        let record = RunRecord {
            start: now,
            end: now,
            outcome: Outcome::Skipped,
            exit_code: None,
            error: Some(error.clone()),
            output_tail: String::new(),
            summary: None,
            reason: Reason::Schedule,
            snapshot: None,
            hooks: Vec::new(),
        };
        self.persist();
        let deadlines = self.deadlines;
        self.publish(|s| {
            s.status = Status::Waiting;
            s.next_run = deadlines.next();
            if let Some(next) = deadlines.next() {
                s.wait_start = Some(now);
                s.wait_end = Some(next);
            }
            s.error = Some(error);
            s.record(record);
        });
        let pending = std::mem::take(&mut self.after_run);
        pending.into_iter().all(|control| self.handle(control))
    }

    /// Waits for this job's turn on its repository (`None`: the repository
    /// is unknown, so there is nothing to wait for). `Err` when a stop,
    /// restart or exit ended the wait; it is queued in `after_run`.
    fn take_turn(&mut self) -> Result<Option<Guard>, ()> {
        let Some(repository) = self.repository.clone() else {
            return Ok(None);
        };
        let name = self.job.name.clone();
        let ticket = match self
            .context
            .repositories
            .acquire(&repository, name.as_str())
        {
            Acquired::Now(guard) => return Ok(Some(guard)),
            Acquired::Later { holder, ticket } => {
                info!("[{name}] waits for {holder}, which is using {repository}");
                self.publish(|s| s.waiting_for = Some(holder));
                ticket
            }
        };
        let result = loop {
            select! {
                recv(ticket.granted) -> _ => break Ok(()),
                recv(self.control) -> msg => if self.defer(msg.ok()) {
                    break Err(());
                },
            }
        };
        self.publish(|s| s.waiting_for = None);
        result.map(|()| Some(ticket.into_guard()))
    }

    /// Keeps a control that arrived while the job was busy (waiting for its
    /// repository or running restic) for after that; `None` is a closed
    /// inbox, which means exit. `true` when the busy work must be cut short:
    /// anything but a new definition, which waits for the next run.
    fn defer(&mut self, control: Option<Control>) -> bool {
        // A closed inbox: the daemon is going away.
        let control = control.unwrap_or(Control::Shutdown);
        let interrupts = !matches!(control, Control::Replace(_));
        self.after_run.push(control);
        interrupts
    }

    /// Decides on a retry after a failed run.
    fn schedule_retry(&mut self, record: &RunRecord) {
        let name = &self.job.name;
        let retries_left = match self.job.max_failed_retries {
            n if n < 0 => true,
            n => i64::from(self.current_retry) < n,
        };
        match &self.job.retry_timer {
            Some(timer) if retries_left => {
                self.current_retry += 1;
                let at =
                    schedule::retry_deadline(timer, record.start, record.end, &TimeZone::system());
                self.deadlines.retry = Some(at);
                info!(
                    "[{name}] retry {} at {}",
                    self.current_retry,
                    state::local_rfc3339(at)
                );
            }
            _ => {
                if self.job.retry_timer.is_some() {
                    warn!("[{name}] failed and no retries are left");
                }
                self.give_up();
            }
        }
    }

    /// Ends a failure cycle: back to the regular schedule, or stopped with
    /// `StopAfterFailedRetries`.
    fn give_up(&mut self) {
        self.current_retry = 0;
        self.deadlines.retry = None;
        if self.job.stop_after_failed_retries {
            warn!("[{}] job stopped (StopAfterFailedRetries)", self.job.name);
            self.stopped = true;
            self.gave_up = true;
        }
    }

    /// One run with its healthcheck pings.
    fn execute(&mut self, why: &str) -> RunRecord {
        let healthcheck = self.job.healthcheck.clone();
        let name = self.job.name.as_str();
        if let Some(url) = &healthcheck {
            self.context.pings.send(Ping::start(name, url));
        }
        let record = self.run_child(why);
        if let Some(url) = &healthcheck {
            self.context
                .pings
                .send(Ping::end(self.job.name.as_str(), url, &record));
        }
        record
    }

    /// Starts restic and follows it to its end.
    fn run_child(&mut self, why: &str) -> RunRecord {
        let name = self.job.name.clone();
        let asked = Timestamp::now();
        let failed = |error: String| RunRecord {
            start: asked,
            end: Timestamp::now(),
            outcome: Outcome::Failure,
            exit_code: None,
            error: Some(error),
            output_tail: String::new(),
            summary: None,
            reason: Reason::Schedule,
            snapshot: None,
            hooks: Vec::new(),
        };
        if let Some(error) = self.repository_error.clone() {
            warn!("[{name}] {error}; restic was not started");
            return failed(error);
        }
        let mut spec = self.spec();
        if let Some(entry) = &self.job.keyring {
            // Read at every run, so a keyring unlocked or filled after the
            // daemon started works without a restart.
            match self.context.keyring.lookup(&entry.service, &entry.username) {
                Ok(password) => restic::give_password(&mut spec, &password),
                Err(e) => {
                    let error = format!("{e}; restic was not started");
                    warn!("[{name}] {error}");
                    return failed(error);
                }
            }
        }
        let mut child = match RunningChild::start(&spec) {
            Ok(child) => child,
            Err(e) => {
                let error = format!("cannot start {}: {e}", spec.program.to_string_lossy());
                warn!("[{name}] {error}");
                return failed(error);
            }
        };
        // A run starts when restic does (SPEC §8), after any keyring lookup.
        let start = Timestamp::now();
        info!(
            "[{name}] run started ({why}): {}",
            spec.program.to_string_lossy()
        );
        self.publish(|s| {
            s.status = Status::Working;
            s.running_since = Some(start);
        });
        let mut output = RunOutput::default();
        let mut interrupt: Option<Interrupt> = None;
        let mut ladder = Ladder::default();
        let timeout = self.job.timeout.and_then(|t| Instant::now().checked_add(t));
        let mut open_pipes = 2;
        let mut exited_at: Option<Instant> = None;
        let mut leftovers_killed = false;
        let mut inbox_open = true;
        // Output and exit come on separate channels, and `select!` picks
        // fairly among ready ones: a flood of output never hides the exit,
        // a stop or a timeout.
        loop {
            let exited = if exited_at.is_none() {
                child.exited.clone()
            } else {
                never()
            };
            let timeout_timer = match timeout {
                Some(at) if interrupt.is_none() => crossbeam_channel::at(at),
                _ => never(),
            };
            let ladder_timer = ladder.timer();
            let pipe_timer =
                exited_at.map_or_else(never, |at| crossbeam_channel::at(at + PIPE_GRACE));
            let control = if exited_at.is_none() && inbox_open {
                self.control.clone()
            } else {
                never()
            };
            // A restic (or a wrapper script) may close its output long
            // before it exits: then only the exit ends the run.
            let lines = if open_pipes > 0 {
                child.output.clone()
            } else {
                never()
            };
            select! {
                recv(lines) -> event => match event {
                    Ok(Output::Line(stream, line)) => self.output_line(&mut output, stream, &line),
                    Ok(Output::Closed(_)) => open_pipes -= 1,
                    Err(_) => open_pipes = 0,
                },
                recv(exited) -> _ => exited_at = Some(Instant::now()),
                recv(control) -> msg => {
                    inbox_open = msg.is_ok();
                    if self.defer(msg.ok()) && interrupt.is_none() {
                        let by = match self.after_run.last() {
                            Some(Control::Stop) => "stopped by /stop",
                            Some(Control::Restart) => "stopped by /restart",
                            Some(Control::Exit) => "stopped by a /remove or a reload",
                            _ => "stopped by the daemon's shutdown; it runs again after the next start",
                        };
                        interrupt = Some(Interrupt::Stop(by));
                        info!("[{name}] stopping restic");
                        ladder.begin(&child, self.context.stop_grace);
                    }
                },
                recv(timeout_timer) -> _ => {
                    warn!("[{name}] still running after the timeout of {}; stopping restic",
                        schedule::format_duration(self.job.timeout.unwrap_or_default()));
                    interrupt = Some(Interrupt::Timeout);
                    ladder.begin(&child, self.context.stop_grace);
                },
                recv(ladder_timer) -> _ => ladder.escalate(&child, &name),
                recv(pipe_timer) -> _ => {
                    if leftovers_killed {
                        // Something that left restic's group (setsid) holds
                        // the pipes: we cannot reach it, so stop listening.
                        warn!("[{name}] a process restic started outside its group keeps its output open; not waiting for it");
                        break;
                    }
                    // restic is gone but something it started holds the
                    // pipes; the group is still ours until the reap below.
                    child.signal_group(libc::SIGKILL);
                    leftovers_killed = true;
                    exited_at = Some(Instant::now());
                },
            }
            if exited_at.is_some() && open_pipes == 0 {
                break;
            }
        }
        if let Some(dropped) = output.log_limit.take() {
            info!("[{name}] {dropped}");
        }
        // Anything restic left in its group must not outlive the run.
        child.signal_group(libc::SIGKILL);
        let status = child.reap();
        let died = status.as_ref().is_ok_and(|s| s.code().is_none());
        if interrupt.is_some() || died {
            self.remove_stale_locks(&spec);
        }
        let end = Timestamp::now();
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
                let (outcome, error) = match interrupt {
                    Some(Interrupt::Stop(by)) => (Outcome::Stopped, Some(by.to_string())),
                    Some(Interrupt::Timeout) => (
                        Outcome::Timeout,
                        Some(format!(
                            "timed out after {}",
                            schedule::format_duration(self.job.timeout.unwrap_or_default())
                        )),
                    ),
                    None => {
                        let outcome = restic::classify(code, &output.tail.text);
                        let status = describe_status(status);
                        let error = restic::failure_reason(
                            outcome,
                            code,
                            &status,
                            &output.stderr,
                            &output.tail.text,
                        );
                        (outcome, error)
                    }
                };
                (outcome, code, error)
            }
        };
        RunRecord {
            start,
            end,
            outcome,
            exit_code,
            error,
            output_tail: output.tail.into_text(),
            summary: output.summary,
            reason: Reason::Schedule,
            snapshot: None,
            hooks: Vec::new(),
        }
    }

    /// One line of restic's output: `--json` status lines move the job's
    /// progress (published at most every [`PROGRESS_EVERY`]), the summary is
    /// kept for the run's record, and the rest is logged and kept.
    fn output_line(&self, output: &mut RunOutput, stream: Stream, line: &str) {
        let name = &self.job.name;
        if line.is_empty() {
            return;
        }
        if let Some(dropped) = output.log_limit.report_due() {
            info!("[{name}] {dropped}");
        }
        if stream == Stream::Stderr {
            output.stderr.push(line);
            if output.log_limit.admit(line.len()) {
                info!("[{name}] stderr: {line}");
            }
            output.tail.push(line);
            return;
        }
        match progress::read_line(line) {
            progress::Line::Status(progress) => {
                let due = output
                    .published
                    .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
                if due || progress.percent_done >= 1.0 {
                    output.published = Some(Instant::now());
                    self.publish(|s| {
                        s.progress = progress.percent_done;
                        s.progress_detail = Some(progress);
                    });
                }
            }
            progress::Line::Summary(summary) => {
                if output.log_limit.admit(line.len()) {
                    info!("[{name}] {}", summary.describe());
                }
                output.summary = Some(summary);
            }
            progress::Line::Other => {
                if output.log_limit.admit(line.len()) {
                    info!("[{name}] {line}");
                }
                output.tail.push(line);
            }
        }
    }

    /// After restic was interrupted: restic 0.14 sometimes leaves its lock
    /// behind even on SIGINT, and always on SIGTERM/SIGKILL. Its process is
    /// reaped now, so its lock is stale, and `restic unlock` (which removes
    /// stale locks only) cleans it up without touching anyone else's.
    fn remove_stale_locks(&self, run: &Spec) {
        let name = &self.job.name;
        let spec = Spec {
            args: restic::unlock_arguments(&run.args),
            ..run.clone()
        };
        info!("[{name}] removing the stale lock the interrupted restic may have left");
        let mut log_limit = LineRateLimit::default();
        let result = process::run_bounded(&spec, UNLOCK_LIMIT, |_, line| {
            if !line.is_empty() && log_limit.admit(line.len()) {
                info!("[{name}] unlock: {line}");
            }
        });
        if let Some(dropped) = log_limit.take() {
            info!("[{name}] unlock: {dropped}");
        }
        match result {
            Ok(status) if status.success() => {}
            Ok(status) => warn!(
                "[{name}] restic unlock failed ({})",
                describe_status(status)
            ),
            Err(e) => warn!("[{name}] cannot run restic unlock: {e}"),
        }
    }

    fn spec(&self) -> Spec {
        restic_spec(&self.job, &self.context.job_dir)
    }
}

/// How `job` starts restic (without its password, which is read at each
/// run): its program, arguments and `Env`, in the job directory.
pub fn restic_spec(job: &Job, job_dir: &Path) -> Spec {
    let program = if job.restic_path.is_empty() {
        "restic".into()
    } else {
        job.restic_path.clone().into()
    };
    Spec {
        program,
        args: job.restic_arguments.clone(),
        cwd: job_dir.to_path_buf(),
        env: job
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // restic must not talk to systemd in the daemon's name.
        env_remove: service::NOTIFY_VARIABLES
            .iter()
            .map(|key| key.to_string())
            .collect(),
    }
}

/// What a run's output leaves behind.
#[derive(Default)]
struct RunOutput {
    tail: Tail,
    summary: Option<Summary>,
    /// When progress was last published.
    published: Option<Instant>,
    log_limit: LineRateLimit,
    /// What explains a failure.
    stderr: restic::Stderr,
}

/// The last [`TAIL_BYTES`] of a run's output.
#[derive(Default)]
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
        if self.text.len() > TAIL_BYTES {
            let mut cut = self.text.len() - TAIL_BYTES;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
        }
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

    fn timer(&self) -> Receiver<Instant> {
        self.next
            .map_or_else(never, |(at, _)| crossbeam_channel::at(at))
    }

    fn escalate(&mut self, child: &RunningChild, name: &JobName) {
        let Some((_, signal)) = self.next else { return };
        if signal == libc::SIGTERM {
            warn!("[{name}] restic ignored SIGINT; sending SIGTERM");
            self.next = Some((Instant::now() + TERM_GRACE, libc::SIGKILL));
        } else {
            warn!("[{name}] restic ignored SIGTERM; sending SIGKILL");
            self.next = None;
        }
        child.signal_group(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
