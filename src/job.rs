//! One job as an actor: a thread that owns the job's state and blocks on
//! `select!` over its control inbox, its trigger inbox and its next deadline;
//! it drives each run (a [`Run`] moving through its phases) from one event
//! loop, applies the rules after a run ([`rules::after_run`]), persists its
//! next trigger and publishes its status on the board.
//!
//! The job's parts: a run and its phases (`run`), the pure rules after it
//! (`rules`), its outcome, the repository exclusion, preconditions, hooks,
//! the state file and the run history.

pub mod exclusion;
pub mod history;
pub mod hook;
pub mod outcome;
pub mod preconditions;
pub mod rules;
pub mod run;
pub mod stack;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError, after, bounded, never, select, unbounded};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use log::{error, info, warn};

use crate::api::board::{BoardEntry, JobStatus, Status};
use crate::config::job_file::{Job, JobName};
use crate::delivery::notify::Message;
use crate::files::SlowRead;
use crate::job::history::History;
use crate::job::outcome::{Outcome, Reason, RunRecord};
use crate::job::rules::{Counters, Decision, Ended, GiveUp, Policy};
use crate::job::run::{Context, Notice, Progress, Run, Stop};
use crate::job::state::State;
use crate::restic::{self, Repository, RepositorySource};
use crate::schedule::clock;
use crate::schedule::{self, Deadlines, Saved};

/// What the daemon tells a job.
#[derive(Debug)]
pub enum Control {
    /// Stop: interrupt a running restic; wait for nothing until restarted.
    Stop,
    /// Stop if needed, then apply the start rules again.
    Restart,
    /// A new definition, applied after a running restic ends; the job
    /// shows it on its board entry at once and says so on `shown`.
    Replace { job: Arc<Job>, shown: Sender<()> },
    /// Stop and end the thread: the job was removed (`/remove`, a reload).
    Exit,
    /// Stop and end the thread: the daemon is stopping. A run this
    /// interrupts runs again once after the next start.
    Shutdown,
    /// `--run`'s SIGINT (Ctrl-C) or SIGTERM: stop the run.
    Signal,
    /// The wall clock jumped (a suspend, a clock set): look at it again.
    ClockJumped,
}

impl Control {
    /// How this control cuts a run short (`None`: it waits for the run).
    fn stop(&self) -> Option<Stop> {
        let (by, shutdown) = match self {
            Control::Stop => ("stopped by /stop", false),
            Control::Restart => ("stopped by /restart", false),
            Control::Signal => ("stopped by a signal (Ctrl-C or SIGTERM)", false),
            Control::Exit => ("stopped by a /remove or a reload", false),
            Control::Shutdown => (
                "stopped by the daemon's shutdown; it runs again after the next start",
                true,
            ),
            Control::Replace { .. } | Control::ClockJumped => return None,
        };
        Some(Stop { by, shutdown })
    }
}

/// The daemon's handle on a job thread.
///
/// Dropping it ends the thread: `drop` sends `Exit`, then joins while both
/// senders are still alive. The thread therefore ends on that `Exit` (or on
/// a `Shutdown` sent before it), never on a disconnected inbox; field order
/// plays no part, and without the `Exit` the join would wait forever.
pub struct JobHandle {
    name: JobName,
    control: Sender<Control>,
    trigger: Sender<Reason>,
    thread: Option<JoinHandle<()>>,
}

impl JobHandle {
    /// Makes the job `job`, which alone writes `entry` from then on, with
    /// its start rules applied and shown on `entry`; [`Prepared::launch`]
    /// starts its thread. The daemon's start prepares every job, answers
    /// the API, then launches the threads. `predecessor`: the thread of a
    /// job of the same name that was removed and may still be ending (its
    /// hooks, its state file); the start rules then wait for it, on the new
    /// thread, before they read the job's files.
    pub fn prepare(
        job: Arc<Job>,
        entry: BoardEntry,
        context: Arc<Context>,
        predecessor: Option<JobHandle>,
    ) -> Prepared {
        let (control_sender, control) = unbounded();
        // Capacity one: a trigger that arrives while one is pending (or while
        // the job runs) coalesces with it.
        let (trigger_sender, trigger) = bounded(1);
        let name = job.name.clone();
        // Boxed: the thread then keeps a pointer on its stack, not two
        // copies of the actor (~1.1 kB each), so an idle job's stack stays
        // within the one page it shares with its TLS.
        let mut actor = Box::new(Actor::new(job, entry, context, control, trigger));
        // The start rules run here, on the caller's thread, when nothing
        // else may be writing the job's files: the job's own thread then
        // only waits and runs, so it stays small (a thousand idle jobs cost
        // a thousand idle stacks and little else).
        if predecessor.is_none() {
            actor.start(false);
        }
        Prepared {
            handle: JobHandle {
                name,
                control: control_sender,
                trigger: trigger_sender,
                thread: None,
            },
            actor,
            predecessor,
        }
    }
    pub fn send(&self, control: Control) {
        // A thread that has ended has nothing left to control.
        let _ = self.control.send(control);
    }

    /// Asks for a run; `false` when a run was already pending (coalesced).
    pub fn trigger(&self, reason: Reason) -> bool {
        match self.trigger.try_send(reason) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    pub fn name(&self) -> &JobName {
        &self.name
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

/// A job ready to start: see [`JobHandle::prepare`].
pub struct Prepared {
    handle: JobHandle,
    actor: Box<Actor>,
    predecessor: Option<JobHandle>,
}

impl Prepared {
    pub fn name(&self) -> &JobName {
        &self.handle.name
    }

    /// Starts the job's thread. `Err` when the system refuses the thread
    /// (`TasksMax`, `ulimit -u`); the caller then shows the job as invalid
    /// with that error.
    pub fn launch(self) -> std::io::Result<JobHandle> {
        let Prepared {
            mut handle,
            mut actor,
            predecessor,
        } = self;
        let thread = thread::Builder::new()
            .name(format!("job {}", handle.name))
            .stack_size(512 * 1024)
            .spawn(move || {
                if let Some(predecessor) = predecessor {
                    drop(predecessor);
                    actor.start(false);
                }
                actor.run()
            })?;
        handle.thread = Some(thread);
        Ok(handle)
    }
}

/// Runs `job` once in the foreground (`restic-cronned --run NAME`), as the
/// daemon would but without its state file, its schedule or other jobs;
/// `control` may stop it (Ctrl-C). The run's record, or `None` when a stop
/// came before its turn.
pub fn run_once(
    job: Arc<Job>,
    context: Arc<Context>,
    control: Receiver<Control>,
) -> Option<RunRecord> {
    // Nobody reads the entry of a `--run`, nor triggers it.
    let entry = BoardEntry::new(JobStatus::new(job.clone()));
    let (_, trigger) = bounded(1);
    let mut actor = Actor::new(job, entry, context, control, trigger);
    actor.open_history();
    actor.refresh_repository();
    actor.resolve_repository();
    actor.begin_run(Reason::Run);
    actor.last_record.take()
}

/// What the rules need to know of a run beyond its record.
struct RunEnd {
    /// The deadlines it served.
    served: Deadlines,
    wrong_password: bool,
    /// The daemon's shutdown stopped it: it runs again after the next start.
    by_shutdown: bool,
}

enum Wake {
    Control(Control),
    Trigger(Reason),
    Timer,
    /// The run the daemon's last end interrupted, again.
    Resume,
}

struct Actor {
    job: Arc<Job>,
    entry: BoardEntry,
    context: Arc<Context>,
    control: Receiver<Control>,
    trigger: Receiver<Reason>,
    stopped: bool,
    repository_source: Option<RepositorySource>,
    repository: Option<Repository>,
    /// Why the repository file could not be read; fails the run.
    repository_error: Option<String>,
    /// A read of the repository file that has not answered yet.
    repository_read: Option<SlowRead>,
    deadlines: Deadlines,
    counters: Counters,
    /// Stopped by `StopAfterFailedRetries`; persisted, so the job stays
    /// stopped across a daemon restart until someone restarts it.
    gave_up: bool,
    last_run: Option<Timestamp>,
    last_success: Option<Timestamp>,
    /// Controls that arrived during a run, handled after it.
    after_run: Vec<Control>,
    /// Whether the control inbox is still open.
    inbox_open: bool,
    /// The reason of the run going on, in the state file until its outcome
    /// is (SPEC §3: a run the daemon's end interrupted runs again).
    pending_run: Option<String>,
    /// Found a pending run at start: run it again first.
    resume: bool,
    /// A deadline was due when the job started: its run is a catch-up.
    catch_up: bool,
    /// The last run's record, for `--run`.
    last_record: Option<RunRecord>,
    /// The job's run history; opened by the job's thread.
    history: Option<History>,
    /// When the daemon first saw the job (for `StaleAfter` before any
    /// success).
    first_seen: Option<Timestamp>,
    /// The last success is older than `StaleAfter`.
    stale: bool,
    /// The `stale` notification went out (once until the next success).
    stale_notified: bool,
}

impl Actor {
    fn new(
        job: Arc<Job>,
        entry: BoardEntry,
        context: Arc<Context>,
        control: Receiver<Control>,
        trigger: Receiver<Reason>,
    ) -> Actor {
        Actor {
            job,
            entry,
            context,
            control,
            trigger,
            stopped: false,
            repository_source: None,
            repository: None,
            repository_error: None,
            repository_read: None,
            deadlines: Deadlines::default(),
            counters: Counters::default(),
            gave_up: false,
            last_run: None,
            last_success: None,
            after_run: Vec::new(),
            inbox_open: true,
            pending_run: None,
            resume: false,
            catch_up: false,
            last_record: None,
            history: None,
            first_seen: None,
            stale: false,
            stale_notified: false,
        }
    }

    fn run(mut self: Box<Self>) {
        self.open_history();
        if self.job.stale_after.is_some() && self.first_seen.is_none() {
            // A job that has never succeeded is stale `StaleAfter` after
            // the daemon first saw it, across restarts. Written here, not
            // at start on the supervisor: a thousand fsyncs would hold up
            // every answer.
            self.first_seen = Some(clock::now());
            self.persist();
        }
        self.check_stale(clock::now());
        self.resolve_repository();
        while let Some(event) = self.next_event() {
            let keep_going = match event {
                Wake::Control(control) => self.handle(control),
                Wake::Trigger(reason) => self.begin_run(reason),
                Wake::Timer => {
                    self.check_stale(clock::now());
                    match self.due_reason().filter(|_| !self.stopped) {
                        Some(reason) => self.begin_run(reason),
                        // The stale check, or a wait that woke early.
                        None => true,
                    }
                }
                Wake::Resume => self.begin_run(Reason::CatchUp),
            };
            if !keep_going {
                break;
            }
        }
        info!("[{}] job ended", self.job.name);
    }

    fn next_event(&mut self) -> Option<Wake> {
        // The wait may last days; what the start or the last event needed
        // of the stack is dead meanwhile (src/job/stack.rs).
        stack::release_unused();
        if std::mem::take(&mut self.resume) && !self.stopped {
            return Some(Wake::Resume);
        }
        let now = clock::now();
        // A stopped job runs nothing, but can still go stale: that is the
        // backup nobody knows has stopped.
        let run_deadline = self.deadlines.next().filter(|_| !self.stopped);
        // Until the deadline on the monotonic clock: an idle job wakes for
        // nothing else. A suspend or a clock set comes as `ClockJumped`.
        let timer = match [run_deadline, self.stale_at()].into_iter().flatten().min() {
            Some(deadline) => after(schedule::until(deadline, now)),
            None => never(),
        };
        let trigger = if self.stopped {
            never()
        } else {
            self.trigger.clone()
        };
        select! {
            recv(self.control) -> msg => msg.ok().map(Wake::Control),
            recv(trigger) -> msg => msg.ok().map(Wake::Trigger),
            recv(timer) -> _ => Some(Wake::Timer),
        }
    }

    /// When the job becomes stale: `StaleAfter` after its last success (or
    /// after the daemon first saw it); `None` when it is already, or has
    /// no `StaleAfter`.
    fn stale_at(&self) -> Option<Timestamp> {
        let after = self.job.stale_after?;
        let since = self.last_success.or(self.first_seen)?;
        (!self.stale).then(|| schedule::add(since, after))
    }

    /// Marks the job stale once its time has come, and says so once.
    fn check_stale(&mut self, now: Timestamp) {
        if self.stale_at().is_none_or(|at| at > now) {
            return;
        }
        self.stale = true;
        self.publish(|s| s.stale = true);
        let since = match self.last_success {
            Some(t) => format!("its last success was at {}", state::local_rfc3339(t)),
            None => "it has not succeeded since the daemon first saw it".into(),
        };
        warn!(
            "[{}] stale: {since}, longer ago than StaleAfter ({})",
            self.job.name,
            schedule::format_duration(self.job.stale_after.unwrap_or_default())
        );
        if !self.stale_notified {
            self.stale_notified = true;
            self.notify(&[rules::Event::Stale], None);
            self.persist();
        }
    }

    /// Sends `events` to the job's notification targets (its `Notify`, else
    /// the config's); never blocks.
    fn notify(&self, events: &[rules::Event], run: Option<&RunRecord>) {
        let targets = self
            .job
            .notify
            .as_deref()
            .unwrap_or(&self.context.default_notify);
        if targets.is_empty() {
            return;
        }
        let (name, host) = (self.job.name.as_str(), self.context.host.as_str());
        let failures = self.counters.consecutive_failures;
        for &event in events {
            let message = match run {
                Some(run) => Message::of_run(name, event, run, host, failures),
                None => Message::new(name, event, host, failures),
            };
            self.context.notify.send(targets, message);
        }
    }

    /// Why a deadline run is due now; `None` when nothing is.
    fn due_reason(&self) -> Option<Reason> {
        let due = self.due(clock::now());
        match (due.retry, due.regular) {
            (Some(_), _) => Some(Reason::Retry),
            (None, Some(_)) if self.catch_up => Some(Reason::CatchUp),
            (None, Some(_)) => Some(Reason::Schedule),
            (None, None) => None,
        }
    }

    /// The deadlines that have come.
    fn due(&self, now: Timestamp) -> Deadlines {
        Deadlines {
            regular: self.deadlines.regular.filter(|d| *d <= now),
            retry: self.deadlines.retry.filter(|d| *d <= now),
        }
    }

    /// Opens the job's history, and shows the runs from before the daemon
    /// started. On the job's thread: the file may be large.
    fn open_history(&mut self) {
        if self.context.history_runs == 0 {
            return;
        }
        let path = history::path(&self.context.state_dir, self.job.name.as_str());
        let (history, runs) = History::open(path.clone(), self.context.history_runs);
        let keep = self.context.history_runs;
        self.publish(|s| s.history = Some((path, keep)));
        match runs {
            Ok(runs) if !runs.is_empty() => {
                // The history knows the last success even without a state
                // file that says so.
                let succeeded = runs.iter().rev().find(|r| r.outcome.succeeded());
                self.last_success = self.last_success.max(succeeded.map(|r| r.end));
                self.publish(|s| s.restore(&runs));
            }
            Ok(_) => {}
            Err(e) => warn!("[{}] {e}; past runs are not shown", self.job.name),
        }
        self.history = Some(history);
    }

    /// Handles a control message; `false` ends the thread.
    fn handle(&mut self, control: Control) -> bool {
        match control {
            Control::Stop | Control::Signal => {
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
            Control::Replace { job, shown } => {
                info!("[{}] new definition from {}", job.name, job.file.display());
                self.job = job.clone();
                self.publish(|s| s.job = Some(job));
                let _ = shown.send(());
                if self.stopped {
                    // A stopped job stays stopped until it is restarted.
                    self.refresh_repository();
                } else {
                    self.start(false);
                }
            }
            // The wait for the next deadline starts over from the wall
            // clock as it is now.
            Control::ClockJumped => {}
            Control::Exit | Control::Shutdown => return false,
        }
        true
    }

    /// Handles the controls that arrived during a run; `false` ends the
    /// thread.
    fn handle_deferred(&mut self) -> bool {
        let pending = std::mem::take(&mut self.after_run);
        pending.into_iter().all(|control| self.handle(control))
    }

    fn state_path(&self) -> PathBuf {
        state::path(&self.context.state_dir, self.job.name.as_str())
    }

    fn publish(&self, change: impl FnOnce(&mut JobStatus)) {
        self.entry.publish(change);
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
                self.counters.consecutive_failures = state.consecutive_failures;
                self.counters.awaiting_recovery = state.awaiting_recovery;
                self.first_seen = state.first_seen;
                self.stale_notified = state.stale_notified;
                self.gave_up = state.gave_up && !restart;
                state.saved()
            }
            Err(why) => {
                warn!("[{}] ignoring the state file: {why}", self.job.name);
                Saved::Unreadable
            }
        };
        let failures = self.counters.consecutive_failures;
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
        let now = clock::now();
        let (deadlines, current_retry) =
            schedule::start_deadlines(self.job.schedule.as_ref(), &saved, now, &TimeZone::system());
        self.deadlines = deadlines;
        self.counters.current_retry = current_retry;
        self.catch_up = deadlines.next().is_some_and(|next| next <= now);
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
        if !self.context.persist {
            return;
        }
        let state = State {
            next_trigger: self.deadlines.next(),
            next_regular: self
                .deadlines
                .regular
                .filter(|_| self.deadlines.retry.is_some()),
            current_retry: self.counters.current_retry,
            last_run: self.last_run,
            last_success: self.last_success,
            consecutive_failures: self.counters.consecutive_failures,
            awaiting_recovery: self.counters.awaiting_recovery,
            first_seen: self.first_seen,
            stale_notified: self.stale_notified,
            gave_up: self.gave_up,
            pending_run: self.pending_run.clone(),
        };
        if let Err(e) = state::write(&self.state_path(), &state) {
            warn!("[{}] {e}", self.job.name);
        }
    }

    /// Runs the job once for `reason`. Returns `false` when the thread must
    /// end.
    fn begin_run(&mut self, reason: Reason) -> bool {
        let why = match reason {
            Reason::Retry => format!("retry {}", self.counters.current_retry),
            Reason::CatchUp if self.pending_run.is_some() => {
                "again: the daemon ended during the last run".into()
            }
            reason => reason.as_str().into(),
        };
        self.catch_up = false;
        // The deadline this run serves is no next run, while it checks or
        // waits for its turn either.
        let now = clock::now();
        let next = self.deadlines.next().filter(|d| *d > now);
        self.publish(|s| s.next_run = next);
        self.resolve_repository();
        let repository = (self.repository.clone(), self.repository_error.clone());
        let (run, progress) = Run::begin(
            self.job.clone(),
            self.context.clone(),
            self.entry.clone(),
            reason,
            why,
            repository,
        );
        self.drive(run, progress, reason)
    }

    /// The run's event loop: what its phase waits for, the control inbox,
    /// and (while it checks) the triggers that merge into it.
    fn drive(&mut self, mut run: Run, mut progress: Progress, reason: Reason) -> bool {
        let mut served = None;
        loop {
            match progress {
                Progress::Busy => {}
                Progress::Turn => {
                    served = Some(self.record_pending(reason));
                    progress = run.work();
                    continue;
                }
                Progress::Abandoned => {
                    self.abandoned(reason, run.stopped_by_shutdown());
                    return self.handle_deferred();
                }
                Progress::Finished(record) => {
                    // A skipped run never had its turn: it serves what is
                    // due now.
                    let served = served.unwrap_or_else(|| self.take_due());
                    let ended = RunEnd {
                        served,
                        wrong_password: run.wrong_password(),
                        by_shutdown: run.stopped_by_shutdown(),
                    };
                    return self.finish(*record, ended);
                }
            }
            let inputs = run.inputs();
            let control = if self.inbox_open {
                self.control.clone()
            } else {
                never()
            };
            let trigger = if inputs.merges_triggers {
                self.trigger.clone()
            } else {
                never()
            };
            progress = select! {
                recv(control) -> msg => {
                    self.inbox_open = msg.is_ok();
                    // A closed inbox: the daemon is going away.
                    let control = msg.unwrap_or(Control::Shutdown);
                    let stop = control.stop();
                    // A new definition applies after the run; the board
                    // shows it now.
                    if let Control::Replace { job, shown } = &control {
                        self.publish(|s| s.job = Some(job.clone()));
                        let _ = shown.send(());
                    }
                    self.after_run.push(control);
                    match stop {
                        Some(stop) => run.interrupt(stop),
                        None => Progress::Busy,
                    }
                },
                recv(trigger) -> _ => Progress::Busy,
                recv(inputs.output) -> line => run.on_output(line),
                recv(inputs.exited) -> _ => run.on_exit(),
                recv(inputs.timer) -> _ => run.on_timer(),
                recv(inputs.checks) -> answer => run.on_checks(answer.ok()),
                recv(inputs.granted) -> _ => run.on_granted(),
            };
        }
    }

    /// Takes the deadlines that are due: this run serves them.
    fn take_due(&mut self) -> Deadlines {
        let due = self.due(clock::now());
        if due.regular.is_some() {
            self.deadlines.regular = None;
        }
        if due.retry.is_some() {
            self.deadlines.retry = None;
        }
        due
    }

    /// The run has its turn: it is recorded in the state file before
    /// anything starts, with the deadlines it serves still due, so that if
    /// the daemon ends before its outcome is recorded, the next start runs
    /// it once more on the schedule's old phase. Deadlines that came due
    /// while it waited are served by this run too.
    fn record_pending(&mut self, reason: Reason) -> Deadlines {
        let recorded = match reason {
            Reason::CatchUp => self.pending_run.clone(),
            _ => None,
        };
        self.pending_run = Some(recorded.unwrap_or_else(|| reason.as_str().into()));
        self.persist();
        let served = self.take_due();
        // The deadline this run serves is not a next run any more.
        let next = self.deadlines.next();
        self.publish(|s| s.next_run = next);
        served
    }

    /// A run that a stop ended before its turn (while it checked or waited
    /// for its repository): a stop by someone ends it for good, also when
    /// it was the run the daemon's last end interrupted; the daemon's
    /// shutdown leaves it pending, so it runs after the next start, whatever
    /// started it.
    fn abandoned(&mut self, reason: Reason, by_shutdown: bool) {
        let pending = by_shutdown.then(|| {
            self.pending_run
                .clone()
                .unwrap_or_else(|| reason.as_str().into())
        });
        if pending != self.pending_run {
            self.pending_run = pending;
            self.persist();
        }
    }

    /// Applies the rules after a run and tells everyone.
    fn finish(&mut self, record: RunRecord, run: RunEnd) -> bool {
        let name = self.job.name.clone();
        log_run_ended(&name, &record);
        let RunEnd {
            served,
            wrong_password,
            by_shutdown,
        } = run;
        let policy = Policy {
            schedule: self.job.schedule.as_ref(),
            retry_timer: self.job.retry_timer.as_ref(),
            max_failed_retries: self.job.max_failed_retries,
            stop_after_failed_retries: self.job.stop_after_failed_retries,
            has_next_jobs: !self.job.next_jobs.is_empty(),
        };
        let ended = Ended {
            outcome: record.outcome,
            start: record.start,
            end: record.end,
            wrong_password,
            served,
            by_shutdown,
        };
        let decision = rules::after_run(
            policy,
            self.counters,
            self.deadlines,
            ended,
            &TimeZone::system(),
        );
        self.apply(&decision, &record);
        let (deadlines, counters, stopped) = (self.deadlines, self.counters, self.stopped);
        let (last_success, end) = (self.last_success, record.end);
        if let Some(history) = &mut self.history
            && let Err(e) = history.append(&record)
        {
            warn!("[{name}] {e}; this run is not in the history");
        }
        // `--run` knows nothing of the daemon's failure cycles: it tells of
        // its run, not of giving up or recovering.
        let events: Vec<rules::Event> = decision
            .events
            .iter()
            .copied()
            .filter(|e| {
                self.context.persist || !matches!(e, rules::Event::GiveUp | rules::Event::Recovery)
            })
            .collect();
        self.notify(&events, Some(&record));
        let stale = self.stale;
        if !self.context.persist {
            // `--run` returns it; the daemon's jobs keep theirs on the board.
            self.last_record = Some(record.clone());
        }
        self.publish(|s| {
            s.status = if stopped {
                Status::Stopped
            } else {
                Status::Waiting
            };
            s.running_since = None;
            s.progress = 0.0;
            s.progress_detail = None;
            s.current_retry = counters.current_retry;
            s.consecutive_failures = counters.consecutive_failures;
            s.last_success = last_success;
            s.stale = stale;
            s.next_run = deadlines.next().filter(|_| !stopped);
            if let Some(next) = deadlines.next() {
                s.wait_start = Some(end);
                s.wait_end = Some(next);
            }
            s.error = record.error.clone();
            s.record(record);
        });
        if decision.follow_ups {
            let notice = Notice::FollowUp {
                from: name,
                next: self.job.next_jobs.clone(),
            };
            let _ = self.context.notices.send(notice);
        }
        self.handle_deferred()
    }

    /// Takes `decision` on as the job's state, logs what it decided and
    /// persists it.
    fn apply(&mut self, decision: &Decision, record: &RunRecord) {
        let name = &self.job.name;
        self.deadlines = decision.deadlines;
        self.counters = decision.counters;
        if decision.finished {
            self.pending_run = None;
        }
        self.last_run = Some(record.start);
        if decision.success {
            self.last_success = Some(record.end);
            self.stale = false;
            self.stale_notified = false;
        }
        if !self.context.persist {
            // `--run`: the daemon's schedule is not ours to tell about.
            return;
        }
        if let Some((number, at)) = decision.retry {
            info!("[{name}] retry {number} at {}", state::local_rfc3339(at));
        }
        if let Some(why) = decision.give_up {
            let why = match why {
                GiveUp::RetriesSpent => "no retries are left",
                GiveUp::NoRetries => "it has no retryTimer",
                GiveUp::WrongPassword => "a wrong password, which no retry can fix",
            };
            let then = if decision.stop {
                "the job is stopped (StopAfterFailedRetries) until /restart".to_string()
            } else {
                match self.deadlines.next() {
                    Some(next) => format!("next run at {}", state::local_rfc3339(next)),
                    None => "it runs again when triggered".into(),
                }
            };
            let failures = match self.counters.consecutive_failures {
                1 => "1 failure".to_string(),
                n => format!("{n} failures in a row"),
            };
            error!("[{name}] gave up after {failures}: {why}; {then}");
        }
        if decision.stop {
            self.stopped = true;
            self.gave_up = true;
        }
        self.persist();
    }
}

/// The `run ended` line, with the reason on it, at a level a person can
/// filter on (SPEC §6.1).
fn log_run_ended(name: &JobName, record: &RunRecord) {
    if record.outcome == Outcome::Skipped {
        let error = record.error.as_deref().unwrap_or_default();
        warn!("[{name}] run skipped: {error}");
        return;
    }
    let exit = match record.exit_code {
        Some(code) => format!("exit code {code}"),
        None => "no exit code".into(),
    };
    let ended = format!(
        "[{name}] run ended: {} ({exit}) after {:.3}s",
        record.outcome.as_str(),
        record.duration().as_secs_f64()
    );
    match (&record.error, record.outcome) {
        (None, Outcome::Success) => info!("{ended}"),
        (None, _) => warn!("{ended}"),
        (Some(error), Outcome::Stopped) => info!("{ended}: {error}"),
        (Some(error), _) => warn!("{ended}: {error}"),
    }
}
