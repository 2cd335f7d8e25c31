//! `--check --probe` (SPEC §1.1): tries every valid job the way its run
//! would start — restic found, the keyring entry there, the repository
//! opened with the password, the preconditions holding, each hook's program
//! found — without writing anything, taking a lock or running a hook, one
//! thread per job, each bounded in time.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, unbounded};

use crate::config::job_file::{self, Job};
use crate::job::preconditions;
use crate::job::run;
use crate::restic::process::{self, Spec, Stream};
use crate::restic::{self, Stderr};
use crate::secrets::keyring::Keyring;

/// How long one job's probe may take in all.
pub const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// The most of restic's stderr a probe keeps to classify a failure; `cat
/// config` says little, but a broken `ResticPath` may say a lot.
const MAX_STDERR_TAIL: usize = 16 * 1024;

/// The least time a probe has after the deadline to report that its
/// restic was stopped there: the kill and the reap take a moment, more on a
/// busy machine.
const MIN_GRACE: Duration = Duration::from_millis(500);

/// What probing one job found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub name: String,
    /// One line per problem; empty when every probe passed.
    pub problems: Vec<String>,
}

/// Probes every job in parallel against the keyring the daemon would use,
/// each bounded by `limit`; the reports come in the order of `jobs`.
pub fn probe_all(
    jobs: &[Arc<Job>],
    job_dir: &Path,
    keyring: Keyring,
    limit: Duration,
) -> Vec<Report> {
    let job_dir = job_dir.to_path_buf();
    run_bounded_probes(jobs, limit, move |job, deadline| {
        probe_job(job, &job_dir, &keyring, deadline, limit)
    })
}

/// Runs `probe` for each job on a thread of its own, all against one
/// deadline `limit` from now, and collects what they report. A probe that
/// has not reported shortly after the deadline is reported as not having
/// finished in time.
///
/// Those threads are left behind, not joined: whatever holds them (a path
/// on a hung NFS mount, a keyring that does not answer) cannot be
/// interrupted, and `--check` ends the process right after printing, which
/// ends them. Every thread that did report is joined.
fn run_bounded_probes<P>(jobs: &[Arc<Job>], limit: Duration, probe: P) -> Vec<Report>
where
    P: Fn(&Job, Instant) -> Vec<String> + Clone + Send + 'static,
{
    let deadline = Instant::now() + limit;
    // A probe bounds its own restic by the deadline; this grace lets it say
    // so itself ("did not finish within …") before we give up on it.
    let collect_until = deadline + (limit / 10).max(MIN_GRACE);
    let mut problems: Vec<Option<Vec<String>>> = vec![None; jobs.len()];
    let mut threads = Vec::new();
    let (sender, receiver) = unbounded();
    for (index, job) in jobs.iter().enumerate() {
        let sender = sender.clone();
        let job = Arc::clone(job);
        let probe = probe.clone();
        let spawned = thread::Builder::new()
            .name(format!("probe {}", job.name))
            .spawn(move || {
                let found = probe(&job, deadline);
                // The receiver is gone only after the deadline passed; the
                // job is reported as not finished then.
                let _ = sender.send((index, found));
            });
        match spawned {
            Ok(handle) => threads.push((index, handle)),
            Err(e) => problems[index] = Some(vec![format!("cannot start the probe thread: {e}")]),
        }
    }
    drop(sender);
    let mut waiting = threads.len();
    while waiting > 0 {
        let left = collect_until.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((index, found)) => {
                problems[index] = Some(found);
                waiting -= 1;
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    for (index, handle) in threads {
        if problems[index].is_some() {
            // It has sent its report, so it is at its end.
            let _ = handle.join();
        }
    }
    jobs.iter()
        .zip(problems)
        .map(|(job, problems)| Report {
            name: job.name.to_string(),
            problems: problems.unwrap_or_else(|| {
                vec![format!(
                    "the probe did not finish within {}",
                    seconds(limit)
                )]
            }),
        })
        .collect()
}

/// `30 s`, or `0.2 s` for the short limits of tests.
fn seconds(limit: Duration) -> String {
    format!("{} s", limit.as_secs_f64())
}

/// Probes one job, in the order its run goes, and returns every problem.
fn probe_job(
    job: &Job,
    job_dir: &Path,
    keyring: &Keyring,
    deadline: Instant,
    limit: Duration,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut spec = run::restic_spec(job, job_dir);
    spec.args = repository_probe_arguments(&job.restic_arguments);
    let program = spec.program.to_string_lossy().into_owned();
    let restic = match &job.restic_path {
        Some(path) => format!("ResticPath {}", path.display()),
        None => "restic (no ResticPath)".to_string(),
    };
    let found = match find_program(&restic, &program, &job.env, job_dir) {
        Ok(path) => Some(path),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    if let Some(preconditions) = &job.preconditions {
        problems.extend(
            preconditions::check_round(preconditions)
                .into_iter()
                .map(|failed| format!("precondition failed: {failed}")),
        );
    }
    let mut password_ready = true;
    if let Some(entry) = &job.keyring {
        match keyring.lookup(&entry.service, &entry.username) {
            Ok(password) => restic::give_password(&mut spec, &password),
            Err(e) => {
                problems.push(e.to_string());
                password_ready = false;
            }
        }
    }
    // Hooks (SPEC §4.1): each one's program found, as starting it would
    // find it. None is run: a hook may dump a database or unmount a disk.
    for (name, command) in job.hooks.iter() {
        let hook = format!("{} hook {}", name.key(), command.program());
        if let Err(problem) = find_program(&hook, command.program(), &job.env, job_dir) {
            problems.push(problem);
        }
    }
    if found.is_some() && password_ready {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(problem) = open_repository(&spec, left, limit) {
            problems.push(problem);
        }
    }
    problems
}

/// Finds `program` as starting it for a job with `job_env` would (see
/// [`job_file::resolve_job_program`]) and checks that it may be executed.
/// A problem starts with `what`, which names the program for the user.
fn find_program(
    what: &str,
    program: &str,
    job_env: &BTreeMap<String, String>,
    job_dir: &Path,
) -> Result<PathBuf, String> {
    let Some(path) = job_file::resolve_job_program(program, job_dir, job_env) else {
        return Err(if program.contains('/') {
            format!("{what}: no such file")
        } else {
            format!("{what}: not found on PATH")
        });
    };
    match fs::metadata(&path) {
        Ok(meta) if !meta.is_file() => Err(format!("{what}: {} is not a file", path.display())),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
            Err(format!("{what}: {} is not executable", path.display()))
        }
        Ok(_) => Ok(path),
        Err(e) => Err(format!("{what}: {}: {e}", path.display())),
    }
}

/// `restic cat config` on the repository that `args` use: it opens the
/// repository with the password and reads one small file. `--no-lock`
/// takes no lock and `--no-cache` leaves restic's cache alone, so the
/// probe writes nothing.
fn repository_probe_arguments(args: &[String]) -> Vec<String> {
    let mut probe = restic::repository_arguments(args);
    probe.extend(["--no-lock", "--no-cache", "cat", "config"].map(String::from));
    probe
}

/// Runs the repository probe `spec` for at most `left`; `None` when the
/// repository opened, else why not, in the words of a failed run.
fn open_repository(spec: &Spec, left: Duration, limit: Duration) -> Option<String> {
    let started = Instant::now();
    let mut stderr = Stderr::default();
    let mut tail = String::new();
    let result = process::run_bounded(spec, left, |stream, line| {
        if stream == Stream::Stderr {
            stderr.push(line);
            if tail.len() + line.len() < MAX_STDERR_TAIL {
                tail.push_str(line);
                tail.push('\n');
            }
        }
    });
    let program = spec.program.to_string_lossy();
    let status = match result {
        Ok(status) if status.success() => return None,
        Ok(status) => status,
        Err(e) => return Some(format!("cannot start {program}: {e}")),
    };
    if started.elapsed() >= left {
        return Some(format!(
            "restic cat config did not finish within {}",
            seconds(limit)
        ));
    }
    let code = status.code();
    let outcome = restic::classify(code, &tail);
    let described = process::describe_status(status);
    Some(
        restic::failure_reason(outcome, code, &described, &stderr, &tail)
            .unwrap_or_else(|| format!("restic cat config failed ({described})")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    use crossbeam_channel::bounded;
    use serde_json::Value;

    use crate::config::KeyringChoice;
    use crate::config::job_file::JobName;
    use crate::job::hook::{HookCommand, Hooks};
    use crate::secrets::redacted::Redacted;

    fn job(name: &str, restic_path: &str, args: &[&str]) -> Arc<Job> {
        Arc::new(Job {
            name: JobName::new(name).unwrap(),
            file: PathBuf::from(format!("/jobs/{name}.json")),
            schedule: None,
            retry_timer: None,
            max_failed_retries: 0,
            next_jobs: Vec::new(),
            next_job_raw: Value::Null,
            keyring: None,
            restic_path: (!restic_path.is_empty()).then(|| restic_path.into()),
            restic_arguments: args.iter().map(|a| a.to_string()).collect(),
            env: Redacted(BTreeMap::new()),
            timeout: None,
            stop_after_failed_retries: false,
            healthcheck: None,
            unlock_stale: false,
            preconditions: None,
            hooks: Default::default(),
            hook_timeout: crate::job::hook::DEFAULT_TIMEOUT,
            notify: None,
            stale_after: None,
        })
    }

    #[test]
    fn a_probe_that_does_not_report_in_time_is_named_and_the_others_are_kept() {
        let jobs = [job("stuck", "", &[]), job("quick", "", &[])];
        // The stuck probe waits on a channel that the test closes only
        // after the reports are in, so it cannot finish in time.
        let (release, held) = bounded::<()>(0);
        let started = Instant::now();
        let reports = run_bounded_probes(&jobs, Duration::from_millis(100), move |job, _| {
            if job.name.as_str() == "stuck" {
                let _ = held.recv();
            }
            vec![format!("{} was probed", job.name)]
        });
        drop(release);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            reports,
            [
                Report {
                    name: "stuck".into(),
                    problems: vec!["the probe did not finish within 0.1 s".into()],
                },
                Report {
                    name: "quick".into(),
                    problems: vec!["quick was probed".into()],
                },
            ]
        );
    }

    #[test]
    fn a_restic_that_hangs_is_killed_at_the_deadline_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hanging-restic");
        let mut file = fs::File::create(&script).unwrap();
        file.write_all(b"#!/bin/sh\nexec sleep 60\n").unwrap();
        drop(file);
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let jobs = [job(
            "hangs",
            script.to_str().unwrap(),
            &["-r", "/srv/repo", "backup", "/"],
        )];
        let started = Instant::now();
        let reports = probe_all(
            &jobs,
            dir.path(),
            Keyring::unattended(KeyringChoice::Keyutils),
            Duration::from_millis(300),
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            reports[0].problems,
            ["restic cat config did not finish within 0.3 s"]
        );
    }

    #[test]
    fn the_repository_probe_keeps_the_repository_options_and_reads_the_config() {
        let args: Vec<String> = [
            "-r",
            "/srv/repo",
            "--password-file=/etc/pw",
            "backup",
            "--exclude",
            "*.tmp",
            "/home",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            repository_probe_arguments(&args),
            [
                "-r",
                "/srv/repo",
                "--password-file=/etc/pw",
                "--no-lock",
                "--no-cache",
                "cat",
                "config"
            ]
        );
    }

    #[test]
    fn each_hook_program_is_looked_for_as_its_run_would_and_none_is_run() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let restic = script("restic", "#!/bin/sh\nexit 0\n");
        let ran = dir.path().join("a hook ran");
        script(
            "dump.sh",
            &format!("#!/bin/sh\ntouch '{}'\n", ran.display()),
        );
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let mut found = job("found", restic.to_str().unwrap(), &["-r", "/srv/repo"]);
        let touch = format!("touch '{}'", ran.display());
        Arc::get_mut(&mut found).unwrap().hooks = Hooks {
            before: Some(HookCommand::Argv(vec!["./dump.sh".into()])),
            on_success: Some(HookCommand::Shell(touch)),
            on_failure: Some(HookCommand::Argv(vec![
                "touch".into(),
                ran.display().to_string(),
            ])),
            after: None,
        };
        let mut missing = job("missing", restic.to_str().unwrap(), &["-r", "/srv/repo"]);
        let missing_job = Arc::get_mut(&mut missing).unwrap();
        // Bare names are looked up on the job's PATH, not the daemon's.
        missing_job.env = Redacted(BTreeMap::from([(
            "PATH".to_string(),
            bin.display().to_string(),
        )]));
        missing_job.hooks = Hooks {
            before: Some(HookCommand::Argv(vec!["/nope/dump.sh".into()])),
            on_success: None,
            on_failure: Some(HookCommand::Argv(vec!["touch".into()])),
            after: Some(HookCommand::Argv(vec!["restic".into()])),
        };
        let reports = probe_all(
            &[found, missing],
            dir.path(),
            Keyring::unattended(KeyringChoice::Keyutils),
            Duration::from_secs(10),
        );
        assert_eq!(reports[0].problems, [""; 0]);
        assert_eq!(
            reports[1].problems,
            [
                "Before hook /nope/dump.sh: no such file",
                "OnFailure hook touch: not found on PATH",
                "After hook restic: not found on PATH",
            ]
        );
        assert!(!ran.exists(), "a probe ran a hook");
    }

    #[test]
    fn a_missing_or_unexecutable_restic_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let no_env = BTreeMap::new();
        assert_eq!(
            find_program(
                "ResticPath /nope/restic",
                "/nope/restic",
                &no_env,
                dir.path()
            ),
            Err("ResticPath /nope/restic: no such file".into())
        );
        let plain = dir.path().join("plain");
        fs::write(&plain, "").unwrap();
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            find_program("ResticPath ./plain", "./plain", &no_env, dir.path()),
            Err(format!(
                "ResticPath ./plain: {} is not executable",
                dir.path().join("./plain").display()
            ))
        );
    }
}
