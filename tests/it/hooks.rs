//! Hooks (SPEC §4.1) with the real daemon: what each hook's failure does to
//! the run, the order they run in, what they are told in their environment
//! (never the keyring password), stops and time limits on the ladder,
//! floods, and with real restic 0.14 and 0.18: a `Before` that writes into
//! the backup source, the snapshot id handed to the hooks, and an unmounted
//! disk that skips the run without a hook.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::real_restic::{Repo, Restic, test_with_each_restic};
use crate::support::{Daemon, RCKEYUTIL, TestEnv, process_alive};

/// A hook that says it ran: `hook LABEL [OPTION…]` appends `hook LABEL PID
/// PGID` to `$FAKE_RECORD` (the fake restic's record, so the order of hooks
/// and restic can be read from one file), writes its environment to
/// `$HOOK_OUT/LABEL.N.env` and its working directory to `LABEL.N.pwd` (N
/// counts its runs from 1), then does what its options say, in order:
///
/// - `say=TEXT`      prints TEXT on stdout
/// - `exit=N`        exits N at the end
/// - `fail-times=K`  exits 2 at the end in its first K runs
/// - `ignore-int`    ignores SIGINT from here on (so does a `sleep` after it)
/// - `sleep=S`       sleeps S seconds
/// - `hang-times=K`  sleeps 30 s in its first K runs
/// - `write=PATH`    writes a file
/// - `read-stdin`    reads a line from stdin and records what came
/// - `flood=BYTES`   writes BYTES of short lines, then as many zero bytes
const HOOK: &str = r#"#!/bin/sh
label=$1; shift
pgid=$(cut -d' ' -f5 /proc/$$/stat)
echo "hook $label $$ $pgid" >> "$FAKE_RECORD"
n=$(grep -c "^hook $label " "$FAKE_RECORD")
env > "$HOOK_OUT/$label.$n.env"
pwd > "$HOOK_OUT/$label.$n.pwd"
code=0
for a in "$@"; do
  case "$a" in
    say=*) echo "${a#say=}";;
    exit=*) code="${a#exit=}";;
    fail-times=*) [ "$n" -le "${a#fail-times=}" ] && code=2;;
    ignore-int) trap '' INT;;
    sleep=*) sleep "${a#sleep=}";;
    hang-times=*) [ "$n" -le "${a#hang-times=}" ] && sleep 30;;
    write=*) echo "written by the $label hook" > "${a#write=}";;
    read-stdin) if read line; then echo "stdin $label [$line]" >> "$FAKE_RECORD"; else echo "stdin $label EOF" >> "$FAKE_RECORD"; fi;;
    flood=*) yes 'a line a hook writes, over and over' | head -c "${a#flood=}"; head -c "${a#flood=}" /dev/zero;;
  esac
done
echo "hook-end $label $$ $code" >> "$FAKE_RECORD"
exit "$code"
"#;

/// The variables every hook is told about its run.
const HOOK_VARIABLES: [&str; 8] = [
    "RESTIC_CRONNED_JOB",
    "RESTIC_CRONNED_HOOK",
    "RESTIC_CRONNED_REASON",
    "RESTIC_CRONNED_OUTCOME",
    "RESTIC_CRONNED_EXIT_CODE",
    "RESTIC_CRONNED_ERROR",
    "RESTIC_CRONNED_DURATION",
    "RESTIC_CRONNED_SNAPSHOT",
];

/// A test environment with the [`HOOK`] script beside the fake restic.
pub struct HookEnv {
    pub env: TestEnv,
    pub script: PathBuf,
}

impl HookEnv {
    pub fn new() -> HookEnv {
        Self::with_config(json!({}))
    }

    pub fn with_config(config: Value) -> HookEnv {
        let env = TestEnv::with_config(config);
        let script = env.dir.path().join("hook");
        fs::write(&script, HOOK).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        HookEnv { env, script }
    }

    /// The hook `LABEL OPTIONS…` as an argv list.
    pub fn hook(&self, label: &str, options: &[&str]) -> Value {
        let mut argv = vec![self.script.display().to_string(), label.to_string()];
        argv.extend(options.iter().map(|s| s.to_string()));
        json!(argv)
    }

    /// The same as a shell command, run by `/bin/sh -c`.
    pub fn shell_hook(&self, label: &str, options: &[&str]) -> Value {
        let mut line = format!("'{}' {label}", self.script.display());
        for option in options {
            line.push_str(&format!(" '{option}'"));
        }
        json!(line)
    }

    /// A fake-restic job (see [`TestEnv::fake_job`]) whose hooks can find
    /// `$HOOK_OUT`.
    pub fn job(&self, name: &str, restic: &[&str], extra: Value) -> Value {
        let mut job = self.env.fake_job(name, restic, extra);
        add_hook_out(&mut job, &self.env);
        job
    }

    pub fn write_job(&self, name: &str, job: &Value) {
        self.env.write_job(name, job);
    }

    /// What ran, in order: `restic`, `unlock`, or the hook's label.
    pub fn sequence(&self) -> Vec<String> {
        fs::read_to_string(&self.env.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split(' ').collect();
                match words[0] {
                    "start" if words.contains(&"unlock") => Some("unlock".into()),
                    "start" => Some("restic".into()),
                    "hook" => Some(words[1].to_string()),
                    _ => None,
                }
            })
            .collect()
    }

    /// What ran for the job tagged `tag` (its restic runs carry the tag;
    /// its hooks' labels start with `tag-`), in order.
    pub fn sequence_of(&self, tag: &str) -> Vec<String> {
        fs::read_to_string(&self.env.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split(' ').collect();
                match words[0] {
                    "start" if words[1] == tag => Some("restic".into()),
                    "hook" => words[1]
                        .strip_prefix(&format!("{tag}-"))
                        .map(str::to_string),
                    _ => None,
                }
            })
            .collect()
    }

    /// How many times the hook `label` ran.
    pub fn runs_of(&self, label: &str) -> usize {
        self.sequence().iter().filter(|l| *l == label).count()
    }

    /// The environment of the `n`th run (from 1) of hook `label`.
    pub fn hook_env(&self, label: &str, n: usize) -> HashMap<String, String> {
        let path = self.env.dir.path().join(format!("{label}.{n}.env"));
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("hook {label} run {n} left no environment: {e}"));
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The `(pid, pgid)` of each run of hook `label`.
    pub fn hook_pids(&self, label: &str) -> Vec<(u32, u32)> {
        fs::read_to_string(&self.env.record)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|w| w[0] == "hook" && w[1] == label)
            .map(|w| (w[2].parse().unwrap(), w[3].parse().unwrap()))
            .collect()
    }

    /// Whether a run of hook `label` ran to its end.
    pub fn hook_ended(&self, label: &str) -> bool {
        fs::read_to_string(&self.env.record)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("hook-end {label} ")))
    }
}

fn add_hook_out(job: &mut Value, env: &TestEnv) {
    job["Env"]["HOOK_OUT"] = json!(env.dir.path());
    job["Env"]["FAKE_RECORD"] = json!(env.record);
}

/// The runs `/job` lists for `name`, newest first.
fn runs(daemon: &Daemon, name: &str) -> Vec<Value> {
    let (status, body) = daemon.get(&format!("/job?name={name}"));
    assert_eq!(status, 200, "{body}");
    let job: Value = serde_json::from_str(&body).expect("/job is JSON");
    job["runs"].as_array().cloned().unwrap_or_default()
}

/// The `hooks` of a run record as `(hook, exitCode, error)`, after checking
/// that each has a duration.
fn hook_records(run: &Value) -> Vec<(String, Value, Value)> {
    run["hooks"]
        .as_array()
        .unwrap_or_else(|| panic!("no hooks in {run}"))
        .iter()
        .map(|h| {
            let duration = h["duration"].as_f64().unwrap_or(-1.0);
            assert!(duration >= 0.0, "no duration in {h}");
            (
                h["hook"].as_str().unwrap().to_string(),
                h["exitCode"].clone(),
                h["error"].clone(),
            )
        })
        .collect()
}

fn log_line<'a>(log: &'a str, text: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in the log:\n{log}"))
}

// --- What each hook's failure does (SPEC §4.1's table) ---

#[test]
fn a_failing_before_fails_the_run_without_restic_runs_on_failure_and_after_and_is_retried() {
    let h = HookEnv::new();
    h.write_job(
        "dump",
        &h.job(
            "dump",
            &[],
            json!({
                "retryTimer": "100ms", "maxFailedRetries": 1,
                "Before": h.hook("before", &["say=pg_dump: cannot reach the database", "fail-times=1"]),
                "OnSuccess": h.hook("on-success", &[]),
                "OnFailure": h.hook("on-failure", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let daemon = h.env.start();
    assert_eq!(daemon.get("/trigger?name=dump").0, 200);
    // The failed run, then its retry, which succeeds.
    let job = daemon.wait_for("the retry to succeed", |d| {
        let job = d.job("dump");
        (job["lastRun"]["outcome"] == "success" && job["status"] == "waiting").then_some(job)
    });
    assert_eq!(
        h.sequence(),
        [
            "before",
            "on-failure",
            "after",
            "before",
            "restic",
            "on-success",
            "after"
        ],
        "restic must not start after a failed Before; OnFailure and After still run"
    );
    assert_eq!(job["CurrentRetry"], 0, "{job}");
    let runs = runs(&daemon, "dump");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let failed = &runs[1];
    assert_eq!(failed["outcome"], "failure", "{failed}");
    assert_eq!(
        failed["error"], "Before hook exited 2: pg_dump: cannot reach the database",
        "{failed}"
    );
    assert!(failed["exitCode"].is_null(), "restic never ran: {failed}");
    assert_eq!(failed["reason"], "trigger");
    assert_eq!(runs[0]["reason"], "retry");
    let hooks = hook_records(failed);
    assert_eq!(
        hooks.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(),
        ["Before", "OnFailure", "After"]
    );
    assert_eq!(hooks[0].1, 2);
    assert_eq!(
        hooks[0].2,
        "Before hook exited 2: pg_dump: cannot reach the database"
    );
    assert!(hooks[1].2.is_null() && hooks[2].2.is_null(), "{hooks:?}");
    // The hooks after the failed Before are told why.
    for label in ["on-failure", "after"] {
        let vars = h.hook_env(label, 1);
        assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "failure", "{label}");
        assert_eq!(
            vars["RESTIC_CRONNED_ERROR"],
            "Before hook exited 2: pg_dump: cannot reach the database"
        );
        assert_eq!(
            vars["RESTIC_CRONNED_EXIT_CODE"], "",
            "{label}: restic never ran"
        );
        assert_eq!(vars["RESTIC_CRONNED_REASON"], "trigger");
    }
    assert_eq!(h.hook_env("before", 2)["RESTIC_CRONNED_REASON"], "retry");
    // The hook's output is in the run's tail, and in the log.
    assert!(
        failed["outputTail"]
            .as_str()
            .unwrap()
            .contains("pg_dump: cannot reach the database"),
        "{failed}"
    );
    let log = daemon.stderr();
    log_line(&log, "[dump] hook Before: started");
    log_line(
        &log,
        "[dump] hook Before: pg_dump: cannot reach the database",
    );
    let warned = log_line(&log, "[dump] hook Before: failed after ");
    assert!(warned.contains("WARN"), "{warned}");
    assert!(
        warned.ends_with("Before hook exited 2: pg_dump: cannot reach the database"),
        "{warned}"
    );
    log_line(&log, "[dump] hook Before: ended: exit code 0 after ");
}

#[test]
fn a_failing_on_success_or_after_makes_a_warning_and_a_failing_on_failure_changes_nothing() {
    let h = HookEnv::new();
    // OnSuccess fails: the backup is there, but what should follow it (an
    // upload, an unmount) did not happen.
    h.write_job(
        "upload",
        &h.job(
            "upload",
            &[],
            json!({
                "NextJob": "then",
                "OnSuccess": h.hook("upload-on-success", &["say=rclone: quota exceeded", "exit=4"]),
                "After": h.hook("upload-after", &[]),
            }),
        ),
    );
    h.write_job(
        "unmount",
        &h.job(
            "unmount",
            &[],
            json!({
                "OnSuccess": h.hook("unmount-on-success", &[]),
                "After": h.shell_hook("unmount-after", &["say=umount: target is busy", "exit=32"]),
            }),
        ),
    );
    h.write_job(
        "broken",
        &h.job(
            "broken",
            &["exit=1", "err=Fatal: unable to open repository"],
            json!({
                "OnFailure": h.hook("broken-on-failure", &["say=sendmail: not found", "exit=127"]),
                "After": h.hook("broken-after", &["exit=1"]),
            }),
        ),
    );
    h.write_job("then", &h.job("then", &[], json!({})));
    let daemon = h.env.start();
    for name in ["upload", "unmount", "broken"] {
        assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
    }

    let upload = daemon.wait_outcome("upload", "warning");
    assert_eq!(upload["lastRun"]["exitCode"], 0, "{upload}");
    assert_eq!(
        upload["lastRun"]["error"], "OnSuccess hook exited 4: rclone: quota exceeded",
        "{upload}"
    );
    assert_eq!(upload["consecutiveFailures"], 0, "a warning is no failure");
    // A warning counts as a success: the follow-up runs.
    daemon.wait_outcome("then", "success");
    let run = &runs(&daemon, "upload")[0];
    assert_eq!(
        hook_records(run),
        [
            (
                "OnSuccess".to_string(),
                json!(4),
                json!("OnSuccess hook exited 4: rclone: quota exceeded")
            ),
            ("After".to_string(), json!(0), Value::Null),
        ]
    );
    // After is told the run's outcome as it now stands.
    assert_eq!(
        h.hook_env("upload-after", 1)["RESTIC_CRONNED_OUTCOME"],
        "warning"
    );

    let unmount = daemon.wait_outcome("unmount", "warning");
    assert_eq!(
        unmount["lastRun"]["error"], "After hook exited 32: umount: target is busy",
        "{unmount}"
    );
    let run = &runs(&daemon, "unmount")[0];
    assert_eq!(
        hook_records(run),
        [
            ("OnSuccess".to_string(), json!(0), Value::Null),
            (
                "After".to_string(),
                json!(32),
                json!("After hook exited 32: umount: target is busy")
            ),
        ]
    );

    let broken = daemon.wait_outcome("broken", "failure");
    assert_eq!(broken["lastRun"]["exitCode"], 1);
    assert_eq!(
        broken["lastRun"]["error"], "restic exit code 1: unable to open repository",
        "a failing OnFailure or After is recorded, not the run's error: {broken}"
    );
    let run = &runs(&daemon, "broken")[0];
    assert_eq!(
        hook_records(run),
        [
            (
                "OnFailure".to_string(),
                json!(127),
                json!("OnFailure hook exited 127: sendmail: not found")
            ),
            ("After".to_string(), json!(1), json!("After hook exited 1")),
        ]
    );
    assert_eq!(
        h.sequence_of("broken"),
        ["restic", "on-failure", "after"],
        "After runs after a failed OnFailure"
    );
    for (job, hook) in [
        ("upload", "OnSuccess"),
        ("unmount", "After"),
        ("broken", "OnFailure"),
    ] {
        let line = log_line(
            &daemon.stderr(),
            &format!("[{job}] hook {hook}: failed after "),
        )
        .to_string();
        assert!(line.contains("WARN"), "{line}");
    }
}

#[test]
fn a_hook_that_cannot_start_is_a_failure_of_that_hook_with_its_program_named() {
    let h = HookEnv::new();
    let missing = h.env.dir.path().join("no-such-dump-script");
    h.write_job(
        "nodump",
        &h.job(
            "nodump",
            &[],
            json!({"Before": [missing], "After": h.hook("after", &[])}),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=nodump");
    let job = daemon.wait_outcome("nodump", "failure");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("Before hook") && error.contains(&missing.display().to_string()),
        "{job}"
    );
    assert_eq!(h.sequence(), ["after"], "restic started without its Before");
}

#[test]
fn a_relative_hook_program_is_found_in_the_job_directory() {
    let h = HookEnv::new();
    let script = h.env.jobs.join("pre-backup.sh");
    fs::write(
        &script,
        "#!/bin/sh\necho \"hook relative $$\" >> \"$FAKE_RECORD\"\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    h.write_job(
        "rel",
        &h.job(
            "rel",
            &[],
            json!({"Before": ["./pre-backup.sh"], "After": "./pre-backup.sh"}),
        ),
    );
    // The daemon's own working directory is elsewhere.
    let mut command = h.env.daemon_command(&[]);
    command.current_dir(h.env.dir.path());
    let daemon = Daemon::spawn(command);
    daemon.get("/trigger?name=rel");
    let job = daemon.wait_outcome("rel", "success");
    assert_eq!(h.sequence(), ["relative", "restic", "relative"], "{job}");
}

#[test]
fn warnings_locks_and_timeouts_tell_on_success_and_on_failure_what_happened() {
    let h = HookEnv::new();
    let hooks = |name: &str| {
        json!({
            "OnSuccess": h.hook(&format!("{name}-on-success"), &[]),
            "OnFailure": h.hook(&format!("{name}-on-failure"), &[]),
        })
    };
    h.write_job(
        "partial",
        &h.job(
            "partial",
            &["exit=3", "err=can not read /home/u/.cache"],
            hooks("partial"),
        ),
    );
    h.write_job("held", &h.job("held", &["locked-times=9"], hooks("held")));
    let mut slow = hooks("slow");
    slow["Timeout"] = json!("200ms");
    h.write_job("slow", &h.job("slow", &["exec-sleep=30"], slow));
    let daemon = h.env.start();
    for name in ["partial", "held", "slow"] {
        daemon.get(&format!("/trigger?name={name}"));
    }
    daemon.wait_outcome("partial", "warning");
    daemon.wait_outcome("held", "locked");
    daemon.wait_outcome("slow", "timeout");
    let ran: Vec<String> = h
        .sequence()
        .into_iter()
        .filter(|s| s.contains('-'))
        .collect();
    for expected in ["partial-on-success", "held-on-failure", "slow-on-failure"] {
        assert_eq!(
            ran.iter().filter(|s| *s == expected).count(),
            1,
            "{expected} in {ran:?}"
        );
    }
    assert_eq!(ran.len(), 3, "{ran:?}");
    let vars = h.hook_env("partial-on-success", 1);
    assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "warning");
    assert_eq!(vars["RESTIC_CRONNED_EXIT_CODE"], "3");
    assert!(
        vars["RESTIC_CRONNED_ERROR"].contains("can not read /home/u/.cache"),
        "{vars:?}"
    );
    let vars = h.hook_env("held-on-failure", 1);
    assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "locked");
    assert_eq!(vars["RESTIC_CRONNED_EXIT_CODE"], "1");
    assert_eq!(
        vars["RESTIC_CRONNED_ERROR"],
        "repository is locked by PID 1"
    );
    // A timeout is a failure (a stop is not): OnFailure hears of it.
    let vars = h.hook_env("slow-on-failure", 1);
    assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "timeout");
    assert_eq!(vars["RESTIC_CRONNED_ERROR"], "timed out after 200ms");
}

// --- What the hooks are told ---

/// A kernel keyring entry (the Linux keyring needs no daemon), deleted when
/// the test ends.
pub struct KernelEntry {
    pub service: String,
    pub username: String,
}

impl KernelEntry {
    pub fn new(password: Option<&str>) -> KernelEntry {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let entry = KernelEntry {
            service: format!(
                "rc-test-hooks-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
            username: "backup".into(),
        };
        if let Some(password) = password {
            let out = entry.rckeyutil("set", &format!("{password}\n"));
            assert!(out.status.success(), "rckeyutil set: {out:?}");
        }
        entry
    }

    fn rckeyutil(&self, action: &str, stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(&*RCKEYUTIL)
            .args([
                "--backend",
                "keyutils",
                action,
                &self.service,
                &self.username,
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for KernelEntry {
    fn drop(&mut self) {
        let _ = self.rckeyutil("del", "");
    }
}

#[test]
fn hooks_get_the_jobs_env_and_what_the_run_was_but_never_the_keyring_password() {
    let password = format!("Zq7-{}-hooks-never-see-me", std::process::id());
    let entry = KernelEntry::new(Some(&password));
    let h = HookEnv::with_config(json!({"Keyring": "keyutils"}));
    let keyring = json!({"Service": entry.service, "Username": entry.username});
    let mut good = h.job(
        "good",
        &["sleep=0.2", "env=RESTIC_PASSWORD"],
        json!({
            "Before": h.hook("before", &[]),
            "OnSuccess": h.hook("on-success", &[]),
            // A shell string, expanding a variable of the job's Env.
            "After": "\"$HOOK_SCRIPT\" after",
        }),
    );
    good["Env"]["S3_BUCKET"] = json!("nas backups");
    good["Env"]["HOOK_SCRIPT"] = json!(h.script);
    good["Service"] = keyring["Service"].clone();
    good["Username"] = keyring["Username"].clone();
    h.write_job("good", &good);
    let mut bad = h.job(
        "bad",
        &["exit=5", "err=Fatal: disk on fire"],
        json!({"OnFailure": h.hook("bad-on-failure", &[])}),
    );
    bad["Service"] = keyring["Service"].clone();
    bad["Username"] = keyring["Username"].clone();
    h.write_job("bad", &bad);
    // A daemon started from another job's hook inherits that hook's
    // variables; they must not leak into this daemon's hooks.
    let mut command = h.env.daemon_command(&[]);
    command
        .env("RESTIC_CRONNED_OUTCOME", "leaked")
        .env("RESTIC_CRONNED_JOB", "leaked")
        .env("RESTIC_CRONNED_SNAPSHOT", "leaked");
    let daemon = Daemon::spawn(command);
    daemon.get("/trigger?name=good");
    let job = daemon.wait_outcome("good", "success");
    assert_eq!(
        h.sequence(),
        ["before", "restic", "on-success", "after"],
        "{job}"
    );
    // restic got the keyring's password; no hook did.
    let record = fs::read_to_string(&h.env.record).unwrap();
    assert!(
        record.contains(&format!("env good RESTIC_PASSWORD={password}")),
        "{record}"
    );
    let daemon_pgid = fs::read_to_string(format!("/proc/{}/stat", daemon.pid()))
        .unwrap()
        .split(' ')
        .nth(4)
        .unwrap()
        .to_string();
    let run_secs = {
        let run = &runs(&daemon, "good")[0];
        let start = crate::support::rfc3339_ms(&run["start"]);
        let end = crate::support::rfc3339_ms(&run["end"]);
        (end - start) as f64 / 1000.0
    };
    for (label, hook) in [
        ("before", "before"),
        ("on-success", "on-success"),
        ("after", "after"),
    ] {
        let vars = h.hook_env(label, 1);
        assert!(
            !vars.contains_key("RESTIC_PASSWORD"),
            "{label} got the keyring password"
        );
        for (key, value) in &vars {
            assert!(
                !value.contains(&password),
                "{label}: {key} has the password"
            );
        }
        assert_eq!(vars["S3_BUCKET"], "nas backups", "{label}: the job's Env");
        assert_eq!(vars["FAKE_RECORD"], h.env.record.display().to_string());
        assert_eq!(vars["RESTIC_CRONNED_JOB"], "good", "{label}");
        assert_eq!(vars["RESTIC_CRONNED_HOOK"], hook, "{label}");
        assert_eq!(vars["RESTIC_CRONNED_REASON"], "trigger", "{label}");
        let pwd = fs::read_to_string(h.env.dir.path().join(format!("{label}.1.pwd"))).unwrap();
        assert_eq!(
            Path::new(pwd.trim()).canonicalize().unwrap(),
            h.env.jobs.canonicalize().unwrap(),
            "{label} runs in the job directory"
        );
        if label == "before" {
            for key in &HOOK_VARIABLES[3..] {
                assert!(
                    !vars.contains_key(*key),
                    "Before runs before restic; it has {key}={}",
                    vars[*key]
                );
            }
            continue;
        }
        assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "success", "{label}");
        assert_eq!(vars["RESTIC_CRONNED_EXIT_CODE"], "0", "{label}");
        assert_eq!(vars["RESTIC_CRONNED_ERROR"], "", "{label}");
        assert_eq!(
            vars["RESTIC_CRONNED_SNAPSHOT"], "",
            "{label}: no snapshot named"
        );
        let duration: f64 = vars["RESTIC_CRONNED_DURATION"]
            .parse()
            .unwrap_or_else(|e| panic!("{label}: {:?}: {e}", vars["RESTIC_CRONNED_DURATION"]));
        assert!(
            duration >= 0.2 && (duration - run_secs).abs() < 0.05,
            "{label}: restic slept 0.2 s and ran {run_secs} s, the hook was told {duration}"
        );
    }
    // Each hook in a process group of its own (not the daemon's).
    for label in ["before", "on-success"] {
        let (pid, pgid) = h.hook_pids(label)[0];
        assert_eq!(pid, pgid, "{label} leads its own process group");
        assert_ne!(pgid.to_string(), daemon_pgid, "{label}");
    }

    daemon.get("/trigger?name=bad");
    daemon.wait_outcome("bad", "failure");
    let vars = h.hook_env("bad-on-failure", 1);
    assert!(!vars.contains_key("RESTIC_PASSWORD"));
    assert_eq!(vars["RESTIC_CRONNED_JOB"], "bad");
    assert_eq!(vars["RESTIC_CRONNED_HOOK"], "on-failure");
    assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "failure");
    assert_eq!(vars["RESTIC_CRONNED_EXIT_CODE"], "5");
    assert_eq!(
        vars["RESTIC_CRONNED_ERROR"],
        "restic exit code 5: disk on fire"
    );
    assert_eq!(vars["RESTIC_CRONNED_SNAPSHOT"], "");
}

#[test]
fn a_failed_password_lookup_runs_on_failure_and_after_but_not_before() {
    let entry = KernelEntry::new(None);
    let h = HookEnv::with_config(json!({"Keyring": "keyutils"}));
    let mut job = h.job(
        "lost",
        &[],
        json!({
            "Before": h.hook("before", &[]),
            "OnFailure": h.hook("on-failure", &[]),
            "After": h.hook("after", &[]),
        }),
    );
    job["Service"] = json!(entry.service);
    job["Username"] = json!(entry.username);
    h.write_job("lost", &job);
    let daemon = h.env.start();
    daemon.get("/trigger?name=lost");
    let job = daemon.wait_outcome("lost", "failure");
    let error = job["lastRun"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("restic was not started"), "{job}");
    assert_eq!(
        h.sequence(),
        ["on-failure", "after"],
        "a dump in Before is wasted work when restic cannot run"
    );
    let vars = h.hook_env("on-failure", 1);
    assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "failure");
    assert_eq!(vars["RESTIC_CRONNED_ERROR"], error);
    assert_eq!(vars["RESTIC_CRONNED_EXIT_CODE"], "");
}

#[test]
fn every_reason_reaches_the_hooks_and_the_record() {
    let h = HookEnv::new();
    let before = |label: &str| json!({"Before": h.hook(label, &[])});
    // No state file and a schedule: runs at once, catching up.
    let mut caught = before("caught");
    caught["regularTimer"] = json!("1h");
    caught["NextJob"] = json!("follower");
    h.write_job("caught", &h.job("caught", &[], caught));
    h.write_job("follower", &h.job("follower", &[], before("follower")));
    let mut retried = before("retried");
    retried["retryTimer"] = json!("100ms");
    retried["maxFailedRetries"] = json!(1);
    h.write_job("retried", &h.job("retried", &["fail-times=1"], retried));
    let daemon = h.env.start();
    // A job whose slot comes a moment after it is loaded (by a reload, so
    // that the daemon's start-up cannot eat the moment).
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(500);
    h.env.write_state(
        "scheduled",
        &format!(
            r#"{{"NextTrigger":"{}"}}"#,
            at.display_with_offset(jiff::tz::offset(0))
        ),
    );
    let mut scheduled = before("scheduled");
    scheduled["regularTimer"] = json!("1h");
    h.write_job("scheduled", &h.job("scheduled", &[], scheduled));
    assert_eq!(daemon.get("/reload").0, 200);

    daemon.wait_outcome("caught", "success");
    daemon.wait_outcome("follower", "success");
    daemon.wait_outcome("scheduled", "success");
    daemon.get("/trigger?name=retried");
    daemon.wait_outcome("retried", "success");
    daemon.get("/trigger?name=caught");
    daemon.wait_for("the triggered run", |_| {
        (h.runs_of("caught") == 2).then_some(())
    });
    daemon.wait_outcome("caught", "success");

    let reason = |label: &str, n: usize| h.hook_env(label, n)["RESTIC_CRONNED_REASON"].clone();
    assert_eq!(reason("caught", 1), "catch-up");
    assert_eq!(reason("caught", 2), "trigger");
    assert_eq!(reason("follower", 1), "next-job");
    assert_eq!(reason("scheduled", 1), "schedule");
    assert_eq!(reason("retried", 1), "trigger");
    assert_eq!(reason("retried", 2), "retry");
    let reasons = |name: &str| -> Vec<Value> {
        runs(&daemon, name)
            .iter()
            .map(|r| r["reason"].clone())
            .collect()
    };
    assert_eq!(reasons("retried"), ["retry", "trigger"]);
    assert_eq!(reasons("scheduled"), ["schedule"]);
    assert_eq!(reasons("follower"), ["next-job"]);
}

// --- Stops and limits ---

#[test]
fn stop_during_before_stops_the_hook_and_the_run_and_after_still_runs() {
    let h = HookEnv::new();
    h.write_job(
        "dump",
        &h.job(
            "dump",
            &[],
            json!({
                "retryTimer": "100ms", "maxFailedRetries": 3,
                "Before": h.hook("before", &["sleep=30"]),
                "OnFailure": h.hook("on-failure", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=dump");
    let (pid, _) = daemon.wait_for("Before to start", |_| {
        h.hook_pids("before").first().copied()
    });
    let asked = Instant::now();
    assert_eq!(daemon.get("/stop?name=dump").0, 200);
    let job = daemon.wait_status("dump", "stopped");
    daemon.wait_for("the Before hook to be gone", |_| {
        (!process_alive(pid)).then_some(())
    });
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the stop took {:?}",
        asked.elapsed()
    );
    assert_eq!(job["lastRun"]["outcome"], "stopped", "{job}");
    assert!(!h.hook_ended("before"), "Before ran to its end");
    assert_eq!(
        h.sequence(),
        ["before", "after"],
        "restic must not start and OnFailure must not run after a stop"
    );
    let vars = h.hook_env("after", 1);
    assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "stopped");
    assert_eq!(vars["RESTIC_CRONNED_EXIT_CODE"], "");
    let run = &runs(&daemon, "dump")[0];
    let hooks = hook_records(run);
    assert_eq!(hooks[0].0, "Before");
    assert!(hooks[0].2.is_string(), "{run}");
    assert_eq!(hooks[1], ("After".to_string(), json!(0), Value::Null));
    // A stop is no failure: nothing is retried.
    assert_eq!(job["consecutiveFailures"], 0, "{job}");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(h.runs_of("before"), 1, "the stopped run was retried");
}

#[test]
fn stop_during_restic_runs_after_but_not_on_failure() {
    let h = HookEnv::new();
    h.write_job(
        "hung",
        &h.job(
            "hung",
            &["exec-sleep=30"],
            json!({
                "Before": h.hook("before", &[]),
                "OnSuccess": h.hook("on-success", &[]),
                "OnFailure": h.hook("on-failure", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=hung");
    let pid: u32 = daemon.wait_for("restic to start", |_| {
        let lines = h.env.record_lines("hung");
        lines
            .iter()
            .find(|w| w[0] == "start")
            .map(|w| w[2].parse().unwrap())
    });
    assert_eq!(daemon.get("/stop?name=hung").0, 200);
    let job = daemon.wait_status("hung", "stopped");
    assert_eq!(job["lastRun"]["outcome"], "stopped", "{job}");
    assert!(!process_alive(pid), "restic is still running");
    let ran: Vec<String> = h.sequence().into_iter().filter(|s| s != "unlock").collect();
    assert_eq!(ran, ["before", "restic", "after"], "{job}");
    let vars = h.hook_env("after", 1);
    assert_eq!(vars["RESTIC_CRONNED_OUTCOME"], "stopped");
    assert_eq!(vars["RESTIC_CRONNED_ERROR"], "stopped by /stop");
    let run = &runs(&daemon, "hung")[0];
    assert_eq!(
        hook_records(run)
            .iter()
            .map(|h| h.0.as_str())
            .collect::<Vec<_>>(),
        ["Before", "After"]
    );
}

#[test]
fn a_hook_over_its_timeout_that_ignores_sigint_is_ended_by_the_ladder_and_the_job_goes_on() {
    // StopGrace 300 ms (the tests' config): SIGINT, then SIGTERM.
    let h = HookEnv::new();
    h.write_job(
        "stuck",
        &h.job(
            "stuck",
            &[],
            json!({
                "HookTimeout": "200ms",
                "Before": h.hook("before", &["ignore-int", "hang-times=1"]),
                "OnFailure": h.hook("on-failure", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let daemon = h.env.start();
    let asked = Instant::now();
    daemon.get("/trigger?name=stuck");
    let job = daemon.wait_outcome("stuck", "failure");
    let took = asked.elapsed();
    assert_eq!(
        job["lastRun"]["error"], "Before hook timed out after 200ms",
        "{job}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "200 ms limit + 300 ms grace, then SIGTERM; it took {took:?}"
    );
    let (pid, _) = h.hook_pids("before")[0];
    assert!(!process_alive(pid), "the hook outlived its run");
    assert!(!h.hook_ended("before"));
    assert_eq!(h.sequence(), ["before", "on-failure", "after"]);
    let log = daemon.stderr();
    log_line(
        &log,
        "[stuck] hook Before still running after the timeout of 200ms",
    );
    log_line(&log, "[stuck] hook Before ignored SIGINT; sending SIGTERM");
    let run = &runs(&daemon, "stuck")[0];
    let hooks = hook_records(run);
    assert_eq!(hooks[0].0, "Before");
    assert_eq!(hooks[0].2, "Before hook timed out after 200ms");
    // The job goes on: the next run's Before is quick, and restic runs.
    daemon.get("/trigger?name=stuck");
    daemon.wait_for("a second run", |_| (h.runs_of("after") == 2).then_some(()));
    let job = daemon.wait_outcome("stuck", "success");
    assert!(job["error"].is_null(), "{job}");
    assert_eq!(h.env.starts("stuck").len(), 1);
}

#[test]
fn a_hook_that_floods_its_output_keeps_memory_bounded_and_the_run_ends() {
    let h = HookEnv::new();
    h.write_job(
        "loud",
        &h.job(
            "loud",
            &[],
            json!({
                "Before": h.hook("before", &["flood=8000000"]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let daemon = h.env.start();
    let rss = |pid: u32| -> u64 {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let started = Instant::now();
    daemon.get("/trigger?name=loud");
    let mut peak = 0;
    let job = daemon.wait_for("the run to end", |d| {
        peak = peak.max(rss(d.pid()));
        let job = d.job("loud");
        (job["lastRun"].is_object() && job["status"] != "working").then_some(job)
    });
    eprintln!(
        "16 MB from a hook: run ended after {:?}, peak RSS {} kB",
        started.elapsed(),
        peak / 1024
    );
    assert_eq!(job["lastRun"]["outcome"], "success", "{job}");
    assert_eq!(h.sequence(), ["before", "restic", "after"]);
    assert!(peak < 32 << 20, "RSS peaked at {} kB", peak / 1024);
    let run = &runs(&daemon, "loud")[0];
    let tail = run["outputTail"].as_str().unwrap();
    assert!(tail.len() <= 64 * 1024, "tail of {} bytes", tail.len());
    assert!(
        tail.contains("\na line a hook writes, over and over\n"),
        "{tail:.300}"
    );
    // 8 MB of lines, logged at the bounded rate (a burst of 256 KiB, then
    // 64 KiB a second), and the zeros as lines cut at 4 KiB.
    let logged = daemon.stderr().len();
    assert!(logged < 1 << 20, "{logged} bytes logged");
}

#[test]
fn a_daemon_shutdown_during_before_stops_it_and_a_hung_after_cannot_hold_the_exit() {
    // StopGrace 300 ms: a hook after restic gets that much at a shutdown,
    // not its HookTimeout, then the ladder.
    let h = HookEnv::new();
    h.write_job(
        "dump",
        &h.job(
            "dump",
            &[],
            json!({
                "Before": h.hook("before", &["sleep=30"]),
                "After": h.hook("after", &["ignore-int", "sleep=30"]),
            }),
        ),
    );
    let mut daemon = h.env.start();
    daemon.get("/trigger?name=dump");
    daemon.wait_for("Before to start", |_| {
        (h.runs_of("before") == 1).then_some(())
    });
    let asked = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit();
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    assert!(took < Duration::from_secs(5), "the shutdown took {took:?}");
    assert_eq!(h.sequence(), ["before", "after"], "{}", daemon.stderr());
    for label in ["before", "after"] {
        let (pid, _) = h.hook_pids(label)[0];
        assert!(!process_alive(pid), "{label} outlived the daemon");
    }
}

#[test]
fn unlock_stale_tries_restic_again_inside_one_round_of_hooks() {
    let h = HookEnv::new();
    h.write_job(
        "stale",
        &h.job(
            "stale",
            &["locked-times=1"],
            json!({
                "UnlockStale": true,
                "Before": h.hook("before", &[]),
                "OnSuccess": h.hook("on-success", &[]),
                "OnFailure": h.hook("on-failure", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=stale");
    daemon.wait_outcome("stale", "success");
    // The daemon's own `restic unlock` is not a run: no hooks around it.
    assert_eq!(
        h.sequence(),
        [
            "before",
            "restic",
            "unlock",
            "restic",
            "on-success",
            "after"
        ]
    );
}

// --- Hooks and restic's result ---

#[test]
fn hook_output_does_not_decide_how_restics_exit_is_classified() {
    // A Before that checks the repository itself and tolerates a lock
    // (`restic check || true`) prints restic's lock message; restic then
    // fails for a reason of its own. That is a failure, not a lock: SPEC §4
    // reads the lock message from restic's stderr.
    let h = HookEnv::new();
    h.write_job(
        "checked",
        &h.job(
            "checked",
            &["exit=1", "err=Fatal: unable to save snapshot: disk full"],
            json!({
                "Before": h.hook("before", &["say=unable to create lock in backend: repository is already locked by PID 77"]),
            }),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=checked");
    let job = daemon.wait_for("the run to end", |d| {
        let job = d.job("checked");
        (job["lastRun"].is_object() && job["status"] != "working").then_some(job)
    });
    assert_eq!(job["lastRun"]["outcome"], "failure", "{job}");
    assert_eq!(
        job["lastRun"]["error"], "restic exit code 1: unable to save snapshot: disk full",
        "{job}"
    );
}

#[test]
fn hook_output_does_not_make_a_failure_look_like_a_wrong_password() {
    // An OnFailure that mails the last errors from the log, one of which was
    // last week's wrong password. This run failed for another reason, which
    // a retry can fix: the retry must happen (SPEC §4: no retries are spent
    // only on restic's own "wrong password").
    let h = HookEnv::new();
    h.write_job(
        "mailing",
        &h.job(
            "mailing",
            &["fail-times=1", "err=Fatal: unable to save snapshot: disk full"],
            json!({
                "retryTimer": "100ms", "maxFailedRetries": 1,
                "OnFailure": h.hook("on-failure", &["say=last week: Fatal: wrong password or no key found"]),
            }),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=mailing");
    daemon.wait_for("the failed run", |d| {
        d.job("mailing")["lastRun"].is_object().then_some(())
    });
    let job = daemon.wait_for("the retry to succeed", |d| {
        let job = d.job("mailing");
        (job["lastRun"]["outcome"] == "success" || d.stderr().contains("gave up")).then_some(job)
    });
    assert_eq!(
        job["lastRun"]["outcome"],
        "success",
        "no retry: {job}\n{}",
        daemon.stderr()
    );
    assert_eq!(h.env.starts("mailing").len(), 2);
}

// --- Triggers around hooks ---

#[test]
fn a_trigger_during_before_makes_exactly_one_more_run() {
    let h = HookEnv::new();
    h.write_job(
        "slow",
        &h.job(
            "slow",
            &[],
            json!({"Before": h.hook("before", &["sleep=0.4"])}),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=slow");
    daemon.wait_for("Before to start", |_| {
        (h.runs_of("before") == 1).then_some(())
    });
    for _ in 0..3 {
        assert_eq!(daemon.get("/trigger?name=slow").0, 200);
    }
    daemon.wait_for("two runs", |_| {
        (h.env.spans("slow").len() == 2).then_some(())
    });
    daemon.wait_status("slow", "waiting");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        h.sequence(),
        ["before", "restic", "before", "restic"],
        "triggers during Before coalesce into one more run"
    );
}

// --- With real restic ---

test_with_each_restic!(
    a_file_written_by_before_is_in_the_real_snapshot,
    an_unmounted_disk_skips_the_run_with_no_hook_and_no_new_snapshot,
    the_snapshot_id_reaches_the_hooks_and_the_record,
);

/// A real-restic job with the [`HOOK`] script's `$HOOK_OUT` and record.
fn real_job(h: &HookEnv, repo: &Repo, name: &str, command: &[&str], extra: Value) -> Value {
    let mut job = repo.job(name, command, extra);
    add_hook_out(&mut job, &h.env);
    job
}

fn a_file_written_by_before_is_in_the_real_snapshot(restic: &Restic) {
    let h = HookEnv::new();
    let repo = Repo::init(&h.env, restic);
    let dump = repo.data.join("database.sql");
    let data = repo.data.display().to_string();
    h.write_job(
        "nas",
        &real_job(
            &h,
            &repo,
            "nas",
            &["backup", &data],
            json!({
                "Before": h.hook("before", &[&format!("write={}", dump.display())]),
                "After": format!("rm -f '{}'", dump.display()),
            }),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=nas");
    let job = daemon.wait_outcome("nas", "success");
    assert!(!dump.exists(), "After did not run: {job}");
    let listing = repo.restic(&["ls", "latest"]);
    assert!(
        listing.lines().any(|l| l == dump.display().to_string()),
        "the dump Before wrote is not in the snapshot:\n{listing}"
    );
    assert_eq!(repo.snapshots().len(), 1);
    assert_eq!(repo.locks().trim(), "");
}

fn an_unmounted_disk_skips_the_run_with_no_hook_and_no_new_snapshot(restic: &Restic) {
    let h = HookEnv::new();
    let repo = Repo::init(&h.env, restic);
    let mount = h.env.dir.path().join("mnt-usb");
    fs::create_dir(&mount).unwrap();
    let source = mount.display().to_string();
    repo.restic(&["backup", &repo.data.display().to_string()]);
    let before: Value = repo.snapshots().into();
    h.write_job(
        "usb",
        &real_job(
            &h,
            &repo,
            "usb",
            &["backup", &source],
            json!({
                "Preconditions": {"PathesMust": [mount]},
                "Before": h.hook("before", &[]),
                "OnSuccess": h.hook("on-success", &[]),
                "OnFailure": h.hook("on-failure", &[]),
                "After": h.hook("after", &[]),
            }),
        ),
    );
    let daemon = h.env.start();
    daemon.get("/trigger?name=usb");
    let job = daemon.wait_outcome("usb", "skipped");
    assert_eq!(
        job["lastRun"]["error"],
        format!("preconditions failed: {source}: empty directory"),
        "{job}"
    );
    assert_eq!(
        Value::from(repo.snapshots()),
        before,
        "the snapshots changed"
    );
    assert!(
        h.sequence().is_empty(),
        "a skipped run ran {:?}",
        h.sequence()
    );
    let run = &runs(&daemon, "usb")[0];
    assert!(
        run["hooks"].as_array().is_none_or(|a| a.is_empty()),
        "{run}"
    );
    assert!(
        !daemon.stderr().contains("[usb] hook "),
        "{}",
        daemon.stderr()
    );
}

fn the_snapshot_id_reaches_the_hooks_and_the_record(restic: &Restic) {
    let h = HookEnv::new();
    let repo = Repo::init(&h.env, restic);
    let data = repo.data.display().to_string();
    // Most users run a plain backup: restic prints `snapshot 1a2b3c4d
    // saved`. With --json its summary names the snapshot.
    for (name, command) in [
        ("plain", vec!["backup", data.as_str()]),
        ("json", vec!["backup", "--json", data.as_str()]),
    ] {
        h.write_job(
            name,
            &real_job(
                &h,
                &repo,
                name,
                &command,
                json!({
                    "OnSuccess": h.hook(&format!("{name}-on-success"), &[]),
                    "After": h.hook(&format!("{name}-after"), &[]),
                }),
            ),
        );
    }
    let daemon = h.env.start();
    for name in ["json", "plain"] {
        daemon.get(&format!("/trigger?name={name}"));
        daemon.wait_outcome(name, "success");
        let snapshots = repo.snapshots();
        let newest = snapshots
            .iter()
            .max_by_key(|s| s["time"].as_str().unwrap().to_string())
            .unwrap();
        let id = newest["id"].as_str().unwrap();
        let short = newest["short_id"].as_str().unwrap();
        for label in [format!("{name}-on-success"), format!("{name}-after")] {
            let told = h.hook_env(&label, 1)["RESTIC_CRONNED_SNAPSHOT"].clone();
            assert!(
                told == id || told == short,
                "{label} was told snapshot {told:?}; restic saved {id}"
            );
        }
        let run = &runs(&daemon, name)[0];
        assert!(
            run["snapshot"] == id || run["snapshot"] == short,
            "{name}: {run}"
        );
        // restic 0.18's --json summary names the full id (SPEC §8).
        if name == "json" && restic.path != Path::new("/usr/bin/restic") {
            assert_eq!(run["snapshot"], id, "{run}");
            assert_eq!(h.hook_env("json-after", 1)["RESTIC_CRONNED_SNAPSHOT"], id);
        }
    }
}
