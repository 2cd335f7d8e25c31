//! Job files, the config file and the command line, as users meet them:
//! `--check`, invalid files listed in `/queue`, exit codes and messages.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::json;

use crate::support::{DAEMON, TestEnv};

fn daemon(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(DAEMON)
        .args(args)
        .output()
        .expect("run the daemon");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_version_and_usage_errors() {
    let (code, out, _) = daemon(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Usage: restic-cronned [OPTIONS] [JOBDIR [ADDR]]"),
        "{out}"
    );
    let (code, out, _) = daemon(&["--version"]);
    assert_eq!(
        (code, out.trim()),
        (0, concat!("restic-cronned ", env!("CARGO_PKG_VERSION")))
    );
    let (code, _, err) = daemon(&["--bogus"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown option \"--bogus\"") && err.contains("--help"),
        "{err}"
    );
    let (code, _, err) = daemon(&["a", "b", "c"]);
    assert_eq!(code, 2, "{err}");
    // Arguments that are not UTF-8: a job directory may be named so; an
    // address may not. Neither panics.
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"/nonexistent/jobs\xff");
    let output = Command::new(DAEMON).arg(odd).arg("").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    let output = Command::new(DAEMON).arg("/tmp").arg(odd).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not UTF-8"));
}

#[test]
fn a_missing_job_directory_or_a_broken_config_exits_2_naming_it() {
    let env = TestEnv::new();
    let config = env.config.to_str().unwrap();
    let (code, _, err) = daemon(&["--config", config, "/nonexistent/jobs", ""]);
    assert_eq!(code, 2);
    assert!(
        err.contains("job directory /nonexistent/jobs does not exist"),
        "{err}"
    );
    let file = env.dir.path().join("file");
    fs::write(&file, "").unwrap();
    let (code, _, err) = daemon(&["--config", config, file.to_str().unwrap(), ""]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a directory"), "{err}");
    fs::write(&env.config, "{\n  \"StateDir\": \"/x\",\n  oops\n}").unwrap();
    let (code, _, err) = daemon(&["--config", config, env.jobs.to_str().unwrap(), ""]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("config file {config}:3:3: not valid JSON")),
        "{err}"
    );
    let (code, _, err) = daemon(&["--config", "/nonexistent/config"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/config"), "{err}");
}

#[test]
fn an_address_in_use_is_a_runtime_error() {
    let env = TestEnv::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = env.config.to_str().unwrap();
    let (code, _, err) = daemon(&["--config", config, env.jobs.to_str().unwrap(), &addr]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    let (code, _, err) = daemon(&["--config", config, env.jobs.to_str().unwrap(), "8080"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no port"), "{err}");
}

#[test]
fn check_validates_the_shipped_examples() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs.example");
    let env = TestEnv::new();
    let (code, out, err) = daemon(&[
        "--config",
        env.config.to_str().unwrap(),
        "--check",
        examples,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: ExampleBackup"), "{out}");
    assert!(out.contains("ok: ExampleForget"), "{out}");
}

#[test]
fn check_reports_every_problem_and_exits_1() {
    let env = TestEnv::new();
    env.write_job("good", &env.fake_job("good", &[], json!({})));
    env.write_job_text("syntax", "{\n  \"ResticArguments\": [\"x\"],,\n}");
    env.write_job_text(
        "types",
        "{\"maxFailedRetries\": \"3\", \"ResticArguments\": [\"x\"]}",
    );
    env.write_job_text(
        "typo",
        "{\"ResticArguments\": [\"x\"], \"regulerTimer\": 5}",
    );
    env.write_job_text(
        "huge",
        "{\"ResticArguments\": [\"x\"], \"Timeout\": 18446744073709551615}",
    );
    let (code, out, _) = daemon(&[
        "--config",
        env.config.to_str().unwrap(),
        "--check",
        env.jobs.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("syntax.json:2:28: not valid JSON"), "{out}");
    assert!(
        out.contains("types.json:1:2: maxFailedRetries: expected a whole number"),
        "{out}"
    );
    assert!(
        out.contains("warning:") && out.contains("did you mean \"regularTimer\""),
        "{out}"
    );
    assert!(out.contains("ok: good"), "{out}");
    assert!(
        out.contains("huge.json:1:28: Timeout:") && out.contains("longer than 100 years"),
        "{out}"
    );
}

#[test]
fn invalid_files_are_listed_and_never_stop_the_others() {
    let env = TestEnv::new();
    env.write_job(
        "fine",
        &env.fake_job("fine", &[], json!({"regularTimer": "1h"})),
    );
    env.write_job_text(
        "broken",
        "{\n  \"JobName\": \"broken\"\n  \"ResticArguments\": []\n}",
    );
    let unsafe_job = env.write_job("open", &env.fake_job("open", &[], json!({})));
    fs::set_permissions(&unsafe_job, fs::Permissions::from_mode(0o666)).unwrap();
    env.write_job("dup1", &env.fake_job("same", &[], json!({})));
    env.write_job("dup2", &env.fake_job("same", &[], json!({})));
    let daemon = env.start();
    daemon.wait_outcome("fine", "success");
    let jobs = daemon.queue()["Jobs"].as_array().unwrap().clone();
    let by_file: Vec<(String, String, String)> = jobs
        .iter()
        .map(|j| {
            (
                j["JobName"].as_str().unwrap().to_string(),
                j["status"].as_str().unwrap().to_string(),
                j["error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // File-name order: broken, dup1, dup2, fine, open.
    assert_eq!(by_file[0].0, "broken");
    assert_eq!(by_file[0].1, "invalid");
    assert!(
        by_file[0].2.contains("broken.json:3:3: not valid JSON"),
        "{by_file:?}"
    );
    assert_eq!(
        (by_file[1].1.as_str(), by_file[2].1.as_str()),
        ("invalid", "invalid")
    );
    assert!(
        by_file[1].2.contains("dup2.json") && by_file[2].2.contains("dup1.json"),
        "{by_file:?}"
    );
    assert_eq!(by_file[3].1, "waiting");
    assert_eq!(by_file[4].1, "invalid");
    assert!(
        by_file[4].2.contains("writable by other users"),
        "{by_file:?}"
    );
    daemon.wait_stderr("broken.json:3:3");
    assert_eq!(daemon.get("/trigger?name=broken").0, 409);
}

#[test]
fn restic_runs_in_the_job_directory_with_the_jobs_environment() {
    let env = TestEnv::new();
    env.write_job(
        "envy",
        &env.fake_job(
            "envy",
            &["env=EXTRA", "pwd"],
            json!({"Env": {"FAKE_RECORD": env.record, "EXTRA": "x y"}}),
        ),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=envy");
    daemon.wait_outcome("envy", "success");
    let record = fs::read_to_string(&env.record).unwrap();
    assert!(record.contains("env envy EXTRA=x y"), "{record}");
    let jobs = fs::canonicalize(&env.jobs).unwrap();
    assert!(
        record.contains(&format!("pwd envy {}", jobs.display())),
        "{record}"
    );
}

#[test]
fn a_missing_restic_fails_the_run_with_its_path() {
    let env = TestEnv::new();
    let mut job = env.fake_job("nobin", &[], json!({}));
    job["ResticPath"] = json!("/nonexistent/restic");
    env.write_job("nobin", &job);
    let daemon = env.start();
    daemon.get("/trigger?name=nobin");
    let job = daemon.wait_outcome("nobin", "failure");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.contains("cannot start /nonexistent/restic"),
        "{error}"
    );
}

#[test]
fn the_log_file_gets_every_run_with_the_job_name() {
    let env = TestEnv::new();
    env.write_job(
        "logged",
        &env.fake_job("logged", &["out=hello-from-restic"], json!({})),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=logged");
    daemon.wait_outcome("logged", "success");
    drop(daemon);
    let log = fs::read_to_string(env.logs.join("restic-cronned.log")).unwrap();
    assert!(log.contains("[logged] run started"), "{log}");
    assert!(log.contains("[logged] hello-from-restic"), "{log}");
    assert!(
        log.contains("[logged] run ended: success (exit code 0)"),
        "{log}"
    );
}

#[test]
fn without_home_the_defaults_are_errors_not_paths_under_the_root() {
    let env = TestEnv::new();
    let minimal = env.dir.path().join("minimal.json");
    fs::write(&minimal, "{}").unwrap();
    let output = Command::new(DAEMON)
        .env_remove("HOME")
        .env_remove("XDG_CONFIG_HOME")
        .args([
            "--config",
            minimal.to_str().unwrap(),
            "--check",
            env.jobs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("StateDir is not set, and HOME is not set"),
        "{err}"
    );
    assert!(err.contains("LogConf.LogDir is not set"), "{err}");
    // With the paths given, no HOME is needed.
    let output = Command::new(DAEMON)
        .env_remove("HOME")
        .args([
            "--config",
            env.config.to_str().unwrap(),
            "--check",
            env.jobs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
