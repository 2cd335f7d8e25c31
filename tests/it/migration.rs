//! Users of the later Go original (master) moving over: its `-c`/`-j`/`-p`
//! flags, its flat `config.json`, its example and test job files with cron
//! and `""` timers, and the errors that say how to fix what does not carry
//! over.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::{DAEMON, Daemon, RCCOMMAND, TestEnv, now_ms, rfc3339_ms};

/// The later original's own `config.json`, as it ships: flat keys, paths
/// under `$HOME`.
const ORIGINAL_CONFIG: &str = r#"{
    "JobPath": "$HOME/.config/restic-cronned/",
    "ServerPort": ":8080",
    "LogDir": "$HOME/.cache/restic-cronned",
    "LogMaxAge": 30,
    "LogMaxSize": 10
}
"#;

/// The later original's example and test job files (ORIGINAL-BEHAVIOUR
/// §3.3), as they ship.
const ORIGINAL_JOBS: &[(&str, &str)] = &[
    (
        "ExampleBackup",
        r#"{
    "regularTimer": "0 0 2 * * *",
    "retryTimer": "0 0 * * * *",
    "maxFailedRetries": 2,
    "JobName": "ExampleBackup",
    "NextJob": "ExampleForget",
    "Username":"Apache",
    "Service": "restic-repo1",
    "ResticArguments": ["-r", "/tmp/backup", "backup", "/var/www/my-site"],
    "CheckPrecondsEvery": 20,
    "CheckPrecondsMaxTimes": 100,
    "Preconditions": {
        "HostsMustRoute": ["localhost"],
        "PathesMust": ["/tmp/backup"],
        "HostsMustConnect": [{"Host": "google.com", "Port": 80}]
    }
}"#,
    ),
    (
        "ExampleForget",
        r#"{
    "retryTimer": "0 0 * * * *",
    "maxFailedRetries": 3,
    "JobName": "ExampleForget",
    "Username":"Apache",
    "Service": "restic-repo1",
    "ResticArguments": ["-r", "/tmp/backup", "forget", "--keep-last", "30"]
}"#,
    ),
    (
        "TestBackup",
        r#"{
    "regularTimer": "@every 4s",
    "retryTimer": "@every 1s",
    "maxFailedRetries": 2,
    "JobName": "TestBackup",
    "NextJob": "TestForget",
    "Username":"testuser",
    "Service": "test",
    "ResticArguments": ["-r", "./testrepo", "backup", "./TestJobs"]
}"#,
    ),
    (
        "TestForget",
        r#"{
    "retryTimer": "@every 3m",
    "maxFailedRetries": 3,
    "JobName": "TestForget",
    "Username":"testuser",
    "Service": "test",
    "ResticArguments": ["-r", "./testrepo", "forget", "--keep-last", "30"]
}"#,
    ),
];

/// `$HOME/.config/restic-cronned` of a home in `env`'s temp dir, holding
/// `config.json` with `text`: where the later original looked for it.
fn original_config_dir(env: &TestEnv, text: &str) -> PathBuf {
    let dir = home(env).join(".config/restic-cronned");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.json"), text).unwrap();
    dir
}

/// The home directory the daemon gets: the test's temp dir, so that the
/// `$HOME` paths of the original's config (and our default state
/// directory) stay in it.
fn home(env: &TestEnv) -> PathBuf {
    env.dir.path().to_path_buf()
}

/// The daemon with `args`, `HOME` in the temp dir.
fn daemon_command(env: &TestEnv, args: &[&Path]) -> Command {
    let mut command = Command::new(&*DAEMON);
    command.args(args).env("HOME", home(env));
    command
}

fn output_text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_daemon_started_the_later_originals_way_retries_on_its_calendar() {
    let env = TestEnv::new();
    let config_dir = original_config_dir(&env, ORIGINAL_CONFIG);
    // The later original's timers: "" for none, a 6-field cron retry (every
    // second, so that the test is quick). The first run fails, the retry
    // succeeds.
    let mut job = env.fake_job("Migrated", &["fail-times=1"], json!({}));
    job["regularTimer"] = json!("");
    job["retryTimer"] = json!("* * * * * *");
    job["maxFailedRetries"] = json!(2);
    env.write_job("Migrated", &job);
    // And one of its own test files as it ships: only triggered, a keyring
    // entry this machine does not have, a retry every 3 minutes.
    let (name, text) = ORIGINAL_JOBS[3];
    assert_eq!(name, "TestForget");
    env.write_job_text(name, text);
    let command = daemon_command(
        &env,
        &[
            Path::new("-c"),
            &config_dir,
            Path::new("-j"),
            &env.jobs,
            Path::new("-p"),
            Path::new("0"),
        ],
    );
    let daemon = Daemon::spawn(command);
    // -p 0: a free port on the loopback address, not the config's :8080.
    assert!(
        daemon.addr.starts_with("127.0.0.1:") && !daemon.addr.ends_with(":8080"),
        "{}",
        daemon.addr
    );
    let (_, body) = daemon.get("/queue");
    let queue: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(queue["Wg"], json!({}), "{body}");
    assert_eq!(queue["Directory"], env.jobs.to_str().unwrap(), "{body}");
    let entry = daemon.job("Migrated");
    assert_eq!(
        entry["regularTimer"], -1_000_000_000,
        "\"\" is none: {entry}"
    );
    assert_eq!(entry["retryTimer"], 0, "a calendar retry: {entry}");
    assert_eq!(entry["nextRun"], Value::Null, "{entry}");

    assert_eq!(daemon.request("POST", "/trigger?name=Migrated").0, 200);
    let failed = daemon.wait_for("the failed run, waiting for its retry", |d| {
        let job = d.job("Migrated");
        (job["lastRun"]["outcome"] == "failure" && job["status"] == "waiting").then_some(job)
    });
    let seen = now_ms();
    let next_run = rfc3339_ms(&failed["nextRun"]);
    let failed_at = rfc3339_ms(&failed["lastRun"]["end"]);
    assert_eq!(failed["CurrentRetry"], 1, "{failed}");
    assert_eq!(
        next_run % 1000,
        0,
        "a calendar slot is a whole second: {failed}"
    );
    assert!(
        next_run > failed_at && next_run <= failed_at + 2000 && next_run <= seen + 2000,
        "the retry is the calendar's next slot after the failure, within 2 s: {failed}"
    );
    let done = daemon.wait_outcome("Migrated", "success");
    let starts = daemon.run_starts("Migrated");
    assert_eq!(starts.len(), 2, "one failure, one retry: {done}");
    assert!(
        starts[1] >= next_run && starts[1] < next_run + 1000,
        "the retry ran at its slot {next_run}: {starts:?}"
    );
    assert_eq!(done["CurrentRetry"], 0, "{done}");
    assert_eq!(done["nextRun"], Value::Null, "no regular timer: {done}");

    // The original's own file runs as §3 and §4 say: no password, so no
    // restic, and a retry on its `@every 3m` calendar.
    assert_eq!(daemon.get("/trigger?name=TestForget").0, 200);
    let forget = daemon.wait_outcome("TestForget", "failure");
    let error = forget["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.contains("testuser") && error.contains("restic was not started"),
        "{forget}"
    );
    let retry_in = rfc3339_ms(&forget["nextRun"]) - rfc3339_ms(&forget["lastRun"]["end"]);
    assert!((179_000..=181_000).contains(&retry_in), "{forget}");

    // The flat LogDir is where the log goes.
    let log = home(&env).join(".cache/restic-cronned/restic-cronned.log");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert!(text.contains("[Migrated] retry 1 at "), "{text}");

    // rccommand reads the queue, Wg and all.
    let output = Command::new(&*RCCOMMAND)
        .args(["--addr", &daemon.addr, "queue"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && table.contains("Migrated"),
        "{}",
        output_text(&output)
    );
}

#[test]
fn a_server_port_number_is_that_port_on_loopback() {
    let env = TestEnv::new();
    let config_dir = original_config_dir(&env, r#"{"ServerPort": 0, "LogDir": "$HOME/logs"}"#);
    // -c with the file itself, -j with the job directory, no -p.
    let config = config_dir.join("config.json");
    let command = daemon_command(
        &env,
        &[Path::new("-c"), &config, Path::new("-j"), &env.jobs],
    );
    let daemon = Daemon::spawn(command);
    assert!(daemon.addr.starts_with("127.0.0.1:"), "{}", daemon.addr);
    assert!(home(&env).join("logs/restic-cronned.log").exists());
}

#[test]
fn check_passes_on_the_later_originals_example_and_test_jobs() {
    let env = TestEnv::new();
    let config_dir = original_config_dir(&env, ORIGINAL_CONFIG);
    for (name, text) in ORIGINAL_JOBS {
        env.write_job_text(name, text);
    }
    let output = daemon_command(
        &env,
        &[
            Path::new("--check"),
            Path::new("-c"),
            &config_dir,
            Path::new("-j"),
            &env.jobs,
        ],
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));
    assert!(
        out.contains(&format!(
            "4 job file(s) in {}, 4 valid, 0 error(s)",
            env.jobs.display()
        )),
        "{out}"
    );
    for line in [
        "ok: ExampleBackup (",
        "): 0 0 2 * * *",
        "ok: ExampleForget (",
        "ok: TestBackup (",
        "): every 4s",
        "ok: TestForget (",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    assert!(!out.lines().any(|l| l.starts_with("error")), "{out}");
}

#[test]
fn a_calendar_in_a_duration_field_is_refused_with_the_fix() {
    let env = TestEnv::new();
    env.write_job("ok", &env.fake_job("ok", &[], json!({})));
    let daemon = env.start();
    let text = "{\n  \"ResticArguments\": [\"snapshots\"],\n  \"Timeout\": \"0 0 * * *\"\n}";
    let file = env.write_job_text("nightly", text);
    // One un-migrated file makes the whole reload fail: the answer has to
    // say how to fix it.
    let (status, body) = daemon.request("POST", "/reload");
    assert_eq!(status, 422, "{body}");
    let want = format!(
        "{}:3:3: Timeout: \"0 0 * * *\" is a calendar expression, not a duration; calendar \
         expressions are accepted in regularTimer and retryTimer only (5 fields: minute hour \
         day-of-month month day-of-week, as in crontab; 6 fields: seconds first, as the later \
         Go original wrote them); here write a duration such as \"2h\" or whole seconds such \
         as 7200",
        file.display()
    );
    assert!(body.contains(&want), "{body}");
    let (code, stdout) = env.check();
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains(&format!("error: {want}")), "{stdout}");
}

#[test]
fn mixed_spellings_exit_2_naming_both() {
    let env = TestEnv::new();
    let run = |args: &[&Path]| daemon_command(&env, args).output().unwrap();
    // -j and JOBDIR together.
    let output = run(&[Path::new("-j"), &env.jobs, Path::new(":0")]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the job directory is given twice")
            && stderr.contains("give the address with -p"),
        "{stderr}"
    );
    // ServerPort and SrvConf.Port in one file.
    let config_dir = original_config_dir(
        &env,
        "{\n  \"ServerPort\": 8080,\n  \"SrvConf\": {\"Port\": \":9000\"}\n}",
    );
    let output = run(&[Path::new("-c"), &config_dir, Path::new("-j"), &env.jobs]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("config.json: ServerPort at 2:3 and SrvConf.Port at 3:15 both set the listen address; keep one of them"),
        "{stderr}"
    );
    // -c naming a directory with no config in it.
    let empty = env.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let output = run(&[Path::new("-c"), &empty, Path::new("-j"), &env.jobs]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "config directory {} holds neither config nor config.json",
            empty.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_later_originals_example_backup_checks_its_preconditions_first() {
    let env = TestEnv::new();
    let (name, text) = ORIGINAL_JOBS[0];
    assert_eq!(name, "ExampleBackup");
    env.write_job_text(name, text);
    // Its NextJob must exist for the file to be valid.
    env.write_job_text(ORIGINAL_JOBS[1].0, ORIGINAL_JOBS[1].1);
    let daemon = env.start();
    assert_eq!(daemon.get("/trigger?name=ExampleBackup").0, 200);
    // Its checks come first: on this machine /tmp/backup or google.com:80
    // may fail (checking, every 20 s, 100 rounds) or all hold (then the
    // run goes on and fails at its keyring entry, which no machine here has).
    let job = daemon.wait_for("the checks' first round", |d| {
        let job = d.job("ExampleBackup");
        let checked = job["status"] == "checking" && job["error"].is_string();
        (checked || job["lastRun"].is_object()).then_some(job)
    });
    let entry = &job["Preconditions"];
    assert_eq!(entry["PathesMust"], json!(["/tmp/backup"]), "{job}");
    assert_eq!(job["CheckPrecondsEvery"], 20, "{job}");
    assert_eq!(job["CheckPrecondsMaxTimes"], 100, "{job}");
    if job["status"] == "checking" {
        let error = job["error"].as_str().unwrap();
        assert!(error.starts_with("preconditions failed: "), "{job}");
        assert!(
            error.contains("/tmp/backup: ") || error.contains("google.com"),
            "{job}"
        );
        assert!(!error.contains("localhost"), "localhost resolves: {job}");
        assert_eq!(daemon.get("/stop?name=ExampleBackup").0, 200);
        daemon.wait_status("ExampleBackup", "stopped");
    } else {
        let error = job["lastRun"]["error"].as_str().unwrap();
        assert!(error.contains("Apache"), "{job}");
    }
}
