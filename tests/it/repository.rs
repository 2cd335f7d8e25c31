//! Repository safety: one restic per repository in arrival order, parallel
//! runs on different repositories (a fake restic), and the exit codes and
//! messages of old and new restic, faked and for real with restic 0.14 and
//! 0.18: a lock held by a live restic, a wrong password, no repository.

use std::io::Write;

use serde_json::json;

use crate::real_restic::{Repo, Restic, last_output, test_with_each_restic};
use crate::support::TestEnv;

fn overlap(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn jobs_on_one_repository_take_turns_and_others_run_in_parallel() {
    let env = TestEnv::new();
    let repo = env.dir.path().join("repo").display().to_string();
    env.write_job(
        "a",
        &env.fake_job("a", &["-r", &repo, "sleep=1"], json!({})),
    );
    // The same repository, written differently, through the environment.
    let same = format!("{}/../repo/", env.jobs.display());
    env.write_job(
        "b",
        &env.fake_job(
            "b",
            &["sleep=0.1"],
            json!({"Env": {"FAKE_RECORD": env.record, "RESTIC_REPOSITORY": same}}),
        ),
    );
    env.write_job(
        "c",
        &env.fake_job("c", &["--repo=/elsewhere", "sleep=1"], json!({})),
    );
    let daemon = env.start();
    assert_eq!(daemon.job("a")["repository"], repo.as_str());
    assert_eq!(daemon.job("b")["repository"], repo.as_str());
    daemon.get("/trigger?name=a");
    daemon.wait_status("a", "working");
    daemon.get("/trigger?name=b");
    daemon.get("/trigger?name=c");
    let b = daemon.wait_for("b to wait for a", |d| {
        let b = d.job("b");
        (b["WaitingFor"] == "a").then_some(b)
    });
    assert_eq!(b["status"], "waiting");
    for job in ["a", "b", "c"] {
        daemon.wait_outcome(job, "success");
    }
    let (a, b, c) = (env.spans("a")[0], env.spans("b")[0], env.spans("c")[0]);
    assert!(!overlap(a, b), "a {a:?} and b {b:?} share a repository");
    assert!(
        overlap(a, c),
        "a {a:?} and c {c:?} use different repositories"
    );
    assert!(daemon.job("b")["WaitingFor"].is_null());
}

#[test]
fn waiting_jobs_run_in_arrival_order_and_a_stopped_waiter_gives_up_its_turn() {
    let env = TestEnv::new();
    for name in ["first", "second", "third", "fourth"] {
        env.write_job(
            name,
            &env.fake_job(name, &["-r", "/one/repo", "sleep=0.2"], json!({})),
        );
    }
    let daemon = env.start();
    daemon.get("/trigger?name=first");
    daemon.wait_status("first", "working");
    for name in ["fourth", "second", "third"] {
        daemon.get(&format!("/trigger?name={name}"));
        daemon.wait_for("the waiter to queue", |d| {
            (!d.job(name)["WaitingFor"].is_null()).then_some(())
        });
    }
    assert_eq!(daemon.get("/stop?name=second").0, 200);
    daemon.wait_outcome("third", "success");
    daemon.wait_outcome("fourth", "success");
    let start = |name: &str| env.spans(name)[0].0;
    assert!(start("fourth") < start("third"), "arrival order");
    assert!(
        env.starts("second").is_empty(),
        "a stopped waiter does not run"
    );
    assert_eq!(daemon.job("second")["status"], "stopped");
}

#[test]
fn exit_codes_of_new_and_old_restic() {
    let env = TestEnv::new();
    let retrying = json!({"retryTimer": "50ms", "maxFailedRetries": 2});
    let with = |extra: &serde_json::Value| {
        let mut job = retrying.clone();
        for (k, v) in extra.as_object().unwrap() {
            job[k] = v.clone();
        }
        job
    };
    env.write_job(
        "locked11",
        &env.fake_job("locked11", &["exit=11"], with(&json!({}))),
    );
    env.write_job(
        "locked014",
        &env.fake_job(
            "locked014",
            &[
                "err=unable to create lock in backend: repository is already locked by PID 7",
                "exit=1",
            ],
            with(&json!({})),
        ),
    );
    env.write_job(
        "password12",
        &env.fake_job("password12", &["exit=12"], with(&json!({}))),
    );
    env.write_job(
        "password014",
        &env.fake_job(
            "password014",
            &["err=Fatal: wrong password or no key found", "exit=1"],
            with(&json!({})),
        ),
    );
    env.write_job(
        "missing10",
        &env.fake_job("missing10", &["exit=10"], with(&json!({}))),
    );
    let daemon = env.start();
    for name in [
        "locked11",
        "locked014",
        "password12",
        "password014",
        "missing10",
    ] {
        daemon.get(&format!("/trigger?name={name}"));
    }
    for name in ["locked11", "locked014"] {
        let job = daemon.wait_for("three locked runs", |d| {
            let job = d.job(name);
            (job["consecutiveFailures"] == 3 && job["status"] == "waiting").then_some(job)
        });
        assert_eq!(job["lastRun"]["outcome"], "locked", "{job}");
    }
    // A wrong password spends no retries.
    for name in ["password12", "password014"] {
        let job = daemon.wait_outcome(name, "failure");
        assert_eq!(job["CurrentRetry"], 0, "{job}");
        assert_eq!(env.starts(name).len(), 1, "{name} was retried");
    }
    // A missing repository (restic 0.17 exit 10) is a failure that is retried.
    daemon.wait_for("three runs", |_| {
        (env.starts("missing10").len() == 3).then_some(())
    });
    assert_eq!(
        daemon.wait_outcome("missing10", "failure")["lastRun"]["exitCode"],
        10
    );
    assert_eq!(env.starts("password12").len(), 1);
}

#[test]
fn unlock_stale_runs_restic_unlock_with_the_repository_options_then_retries_once() {
    let env = TestEnv::new();
    // Locked on the first run only, as a stale lock would be until unlocked.
    env.write_job(
        "relock",
        &env.fake_job(
            "relock",
            &[
                "-r",
                "/some/repo",
                "--password-file=/pw",
                "forget",
                "locked-times=1",
            ],
            json!({"UnlockStale": true}),
        ),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=relock");
    let job = daemon.wait_outcome("relock", "success");
    assert_eq!(job["consecutiveFailures"], 0);
    let record = std::fs::read_to_string(&env.record).unwrap();
    assert!(
        record.contains("start run ")
            && record.contains("-r /some/repo --password-file=/pw unlock"),
        "restic unlock with the repository options: {record}"
    );
    assert_eq!(env.starts("relock").len(), 2, "one retry after the unlock");
}

#[test]
fn passwords_in_repository_urls_are_masked_in_the_api() {
    let env = TestEnv::new();
    let url = "rest:https://backup:hunter2-secret@nas.local:8000/repo/";
    env.write_job("remote", &env.fake_job("remote", &["-r", url], json!({})));
    let daemon = env.start();
    let job = daemon.job("remote");
    assert_eq!(
        job["repository"],
        "rest:https://backup:***@nas.local:8000/repo/"
    );
    assert_eq!(
        job["ResticArguments"][2],
        "rest:https://backup:***@nas.local:8000/repo/"
    );
    for path in ["/queue", "/job?name=remote", "/metrics", "/"] {
        let (_, body) = daemon.get(path);
        assert!(
            !body.contains("hunter2"),
            "{path} shows the password: {body}"
        );
    }
}

test_with_each_restic!(
    a_lock_held_by_a_live_restic_is_locked_and_unlock_stale_does_not_break_it,
    a_wrong_password_spends_no_retries_and_a_missing_repository_is_retried,
);

fn a_lock_held_by_a_live_restic_is_locked_and_unlock_stale_does_not_break_it(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    // A backup on another machine, say: it runs, holding its lock, until
    // its stdin closes.
    let mut outside = repo.spawn_held_backup();
    repo.wait_for_lock(|| outside.try_wait().unwrap().is_none());
    // forget needs an exclusive lock. One retry, so the retry rules show.
    let forget = ["forget", "--keep-last", "1"];
    let retry = json!({"retryTimer": "50ms", "maxFailedRetries": 1});
    env.write_job("plain", &repo.job("plain", &forget, retry.clone()));
    let mut unlocking = repo.job("unlocking", &forget, retry);
    unlocking["UnlockStale"] = json!(true);
    env.write_job("unlocking", &unlocking);
    let daemon = env.start();
    for name in ["plain", "unlocking"] {
        assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
        // A lock conflict is a failure like any other: it is retried.
        let job = daemon.wait_for(&format!("{name}: a run and its retry"), |d| {
            let job = d.job(name);
            (job["consecutiveFailures"] == 2 && job["status"] == "waiting").then_some(job)
        });
        assert_eq!(job["lastRun"]["outcome"], "locked", "{job}");
        assert_eq!(
            job["lastRun"]["exitCode"],
            restic.locked_exit_code(),
            "{job}"
        );
        assert_eq!(job["CurrentRetry"], 0, "retries are used up: {job}");
        let output = last_output(&daemon, name);
        assert!(output.contains("repository is already locked"), "{output}");
    }
    // `restic unlock` removes stale locks only: the live one stays, and the
    // outside backup goes on to write its snapshot.
    assert!(!repo.locks().trim().is_empty(), "a live lock was broken");
    assert!(outside.try_wait().unwrap().is_none());
    let mut stdin = outside.stdin.take().unwrap();
    stdin.write_all(b"-- a database dump\n").unwrap();
    drop(stdin);
    let output = outside.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the outside backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(repo.snapshots().len(), 1);
    // With the repository free, the same job succeeds.
    daemon.get("/trigger?name=plain");
    let job = daemon.wait_outcome("plain", "success");
    assert_eq!(job["consecutiveFailures"], 0, "{job}");
    assert_eq!(repo.locks().trim(), "");
}

fn a_wrong_password_spends_no_retries_and_a_missing_repository_is_retried(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    let retrying = json!({"retryTimer": "50ms", "maxFailedRetries": 2});
    let wrong_password = env.dir.path().join("wrong-password");
    std::fs::write(&wrong_password, "Tr0ub4dor&3\n").unwrap();
    let mut wrong = repo.job("wrong", &["snapshots"], retrying.clone());
    wrong["Env"]["RESTIC_PASSWORD_FILE"] = json!(wrong_password);
    env.write_job("wrong", &wrong);
    let mut missing = repo.job("missing", &["snapshots"], retrying);
    let nowhere = env.dir.path().join("nowhere").display().to_string();
    missing["ResticArguments"][1] = json!(nowhere);
    env.write_job("missing", &missing);
    let daemon = env.start();
    for name in ["wrong", "missing"] {
        assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
    }
    // A missing repository is a failure with restic's exit code, retried.
    let job = daemon.wait_for("missing: a run and two retries", |d| {
        let job = d.job("missing");
        (job["consecutiveFailures"] == 3 && job["status"] == "waiting").then_some(job)
    });
    assert_eq!(job["lastRun"]["outcome"], "failure", "{job}");
    assert_eq!(
        job["lastRun"]["exitCode"],
        restic.missing_repository_exit_code(),
        "{job}"
    );
    let output = last_output(&daemon, "missing");
    assert!(output.contains("unable to open config file"), "{output}");
    // The reason is one line, the same on both versions.
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("repository does not exist: unable to open config file: stat "),
        "{error}"
    );
    assert!(!error.contains('\n') && !error.contains("Fatal"), "{error}");
    assert_eq!(job["error"], job["lastRun"]["error"]);
    daemon.wait_stderr(&format!(
        "run ended: failure (exit code {}) after",
        restic.missing_repository_exit_code()
    ));
    daemon.wait_stderr("s: repository does not exist: unable to open config file");
    // A wrong password fails as well, but no retry can fix it: by the time
    // the other job has spent its retries, this one ran once and gave up.
    let job = daemon.wait_outcome("wrong", "failure");
    assert_eq!(
        job["lastRun"]["exitCode"],
        restic.wrong_password_exit_code(),
        "{job}"
    );
    assert_eq!(job["consecutiveFailures"], 1, "{job}");
    assert_eq!(job["CurrentRetry"], 0, "{job}");
    assert!(job["nextRun"].is_null(), "a retry is scheduled: {job}");
    assert_eq!(daemon.run_starts("wrong").len(), 1, "{job}");
    let output = last_output(&daemon, "wrong");
    assert!(
        output.contains("wrong password or no key found"),
        "{output}"
    );
    assert_eq!(
        job["lastRun"]["error"], "wrong password or no key found",
        "{job}"
    );
}
