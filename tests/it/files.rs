//! Job files, the config file and the command line, as users meet them:
//! `--check`, invalid files listed in `/queue`, exit codes and messages.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::{DAEMON, TestEnv};

fn daemon(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(&*DAEMON)
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
    let output = Command::new(&*DAEMON).arg(odd).arg("").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    let output = Command::new(&*DAEMON)
        .arg("/tmp")
        .arg(odd)
        .output()
        .unwrap();
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
    let output = Command::new(&*DAEMON)
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
    let output = Command::new(&*DAEMON)
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

/// The one line of `out` that mentions `file`.
fn line_about<'a>(out: &'a str, file: &Path) -> &'a str {
    let name = file.display().to_string();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(&name)).collect();
    assert_eq!(lines.len(), 1, "one line about {name}:\n{out}");
    lines[0]
}

/// The `error` of job `name` in `/queue`, which must be invalid.
fn invalid_error(daemon: &crate::support::Daemon, name: &str) -> String {
    let job = daemon.job(name);
    assert_eq!(job["status"], "invalid", "{job}");
    job["error"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_secret_of_the_wrong_type_is_named_by_its_key_never_shown() {
    let env = TestEnv::new();
    let secret = "918273645";
    let s3 = env.write_job_text(
        "s3",
        &format!(
            "{{\n  \"ResticArguments\": [\"snapshots\"],\n  \"Env\": {{\"AWS_SECRET_ACCESS_KEY\": {secret}}}\n}}\n"
        ),
    );
    let ping = env.write_job_text(
        "ping",
        &format!(
            "{{\n  \"ResticArguments\": [\"snapshots\"],\n  \"Healthcheck\": \"ftp://hc-ping.com/{secret}\"\n}}\n"
        ),
    );
    let want_s3 = format!(
        "{}:3:11: Env.AWS_SECRET_ACCESS_KEY: expected a string, found a number",
        s3.display()
    );
    let want_ping = format!(
        "{}:3:3: Healthcheck: the URL is not an http:// or https:// URL",
        ping.display()
    );

    let (code, out) = env.check();
    assert_eq!(code, 1, "{out}");
    assert_eq!(line_about(&out, &s3), format!("error: {want_s3}"));
    assert_eq!(line_about(&out, &ping), format!("error: {want_ping}"));

    let daemon = env.start();
    assert_eq!(invalid_error(&daemon, "s3"), want_s3);
    assert_eq!(invalid_error(&daemon, "ping"), want_ping);
    let (_, queue) = daemon.get("/queue");
    daemon.wait_stderr(&want_s3);
    daemon.wait_stderr(&want_ping);
    let stderr = daemon.stderr();
    drop(daemon);
    let log = fs::read_to_string(env.logs.join("restic-cronned.log")).unwrap();
    assert!(log.contains(&want_s3) && log.contains(&want_ping), "{log}");
    for (place, text) in [
        ("--check", &out),
        ("/queue", &queue),
        ("stderr", &stderr),
        ("the log file", &log),
    ] {
        assert!(!text.contains(secret), "the secret is in {place}:\n{text}");
    }
}

#[test]
fn an_interval_under_a_second_is_refused_naming_the_file_and_the_value() {
    let env = TestEnv::new();
    let fast = env.write_job(
        "fast",
        &env.fake_job("fast", &[], json!({"regularTimer": "1ms"})),
    );
    let every = env.write_job(
        "every",
        &env.fake_job("every", &[], json!({"regularTimer": "@every 500ms"})),
    );
    // A second is enough, and a retry timer may be shorter: retries are
    // spaced a second apart by the scheduler.
    env.write_job(
        "second",
        &env.fake_job(
            "second",
            &[],
            json!({"regularTimer": "@every 1s", "retryTimer": "1ms"}),
        ),
    );
    let (code, out) = env.check();
    assert_eq!(code, 1, "{out}");
    for (file, value) in [(&fast, r#""1ms""#), (&every, r#""@every 500ms""#)] {
        let line = line_about(&out, file);
        let want =
            format!("regularTimer: {value} is shorter than 1 s, the shortest interval allowed");
        assert!(
            line.starts_with(&format!("error: {}:", file.display())) && line.ends_with(&want),
            "{line}"
        );
    }
    assert!(out.contains("ok: second"), "{out}");

    let daemon = env.start();
    assert!(
        invalid_error(&daemon, "fast")
            .ends_with(r#"regularTimer: "1ms" is shorter than 1 s, the shortest interval allowed"#)
    );
    assert!(invalid_error(&daemon, "every").contains(r#""@every 500ms" is shorter than 1 s"#));
    assert!(env.starts("fast").is_empty() && env.starts("every").is_empty());
}

/// A copy of the fake restic at `path` with `mode`.
fn copy_fake(env: &TestEnv, path: &Path, mode: u32) {
    fs::copy(&env.fake, path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_restic_path_other_users_may_change_makes_a_root_daemons_job_invalid() {
    let env = TestEnv::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let open = env.dir.path().join("open-restic");
    copy_fake(&env, &open, 0o777);
    let shared = env.dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let in_shared = shared.join("restic");
    copy_fake(&env, &in_shared, 0o755);
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    // Relative to the job directory, where restic runs.
    let bin = env.jobs.join("bin");
    fs::create_dir(&bin).unwrap();
    copy_fake(&env, &bin.join("restic"), 0o775);
    for (name, restic) in [
        ("open", json!(open)),
        ("shared", json!(in_shared)),
        ("relative", json!("bin/restic")),
    ] {
        let mut job = env.fake_job(name, &[], json!({}));
        job["ResticPath"] = restic;
        env.write_job(name, &job);
    }
    env.write_job("safe", &env.fake_job("safe", &[], json!({})));

    let (code, out) = env.check();
    if !root {
        // The rule is a root daemon's; anyone else's may run what it owns.
        assert_eq!(code, 0, "{out}");
        return;
    }
    let relative = env.jobs.join("bin/restic");
    let wants = [
        (
            "open",
            format!(
                "ResticPath: {0} is writable by other users (mode 0777), and a root daemon runs \
                 it; run chmod go-w {0}",
                open.display()
            ),
        ),
        (
            "shared",
            format!(
                "ResticPath: {} is in {1}, which everyone may write to (mode 0777), and a root \
                 daemon runs it; run chmod o-w {1}, or move the program",
                in_shared.display(),
                shared.display()
            ),
        ),
        (
            "relative",
            format!(
                "ResticPath: {0} is writable by other users (mode 0775), and a root daemon runs \
                 it; run chmod go-w {0}",
                relative.display()
            ),
        ),
    ];
    assert_eq!(code, 1, "{out}");
    for (name, want) in &wants {
        let line = line_about(&out, &env.jobs.join(format!("{name}.json")));
        assert!(line.ends_with(want.as_str()), "{line}\nwanted: {want}");
    }
    assert!(out.contains("ok: safe"), "{out}");

    let daemon = env.start();
    for (name, want) in &wants {
        let error = invalid_error(&daemon, name);
        assert!(error.ends_with(want.as_str()), "{error}");
    }
    daemon.get("/trigger?name=safe");
    daemon.wait_outcome("safe", "success");
    assert!(env.starts("open").is_empty() && env.starts("relative").is_empty());
}

#[test]
fn a_fifo_a_device_or_a_huge_file_is_named_and_hangs_nothing() {
    let env = TestEnv::new();
    env.write_job("fine", &env.fake_job("fine", &[], json!({})));
    let fifo = env.jobs.join("fifo.json");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
    let zero = env.jobs.join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let huge = env.write_job_text(
        "huge",
        &format!("{{\"ResticArguments\": [\"x\"]{}}}", " ".repeat(1 << 20)),
    );
    let wants = [
        (
            &fifo,
            "this is a FIFO, not a regular file; a job file must be a regular file",
        ),
        (
            &zero,
            "this is a character device, not a regular file; a job file must be a regular file",
        ),
        (
            &huge,
            "the file is larger than 1 MiB, the most a job file may hold",
        ),
    ];

    let (code, out) = env.check();
    assert_eq!(code, 1, "{out}");
    for (file, want) in wants {
        assert_eq!(
            line_about(&out, file),
            format!("error: {}: {want}", file.display())
        );
    }
    assert!(out.contains("ok: fine"), "{out}");

    // Starting means answering /healthz (`start` waits for it).
    let daemon = env.start();
    for (file, want) in wants {
        let name = file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            invalid_error(&daemon, name),
            format!("{}: {want}", file.display())
        );
    }
    let (status, body) = daemon.get("/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains(&format!("{}: this is a FIFO", fifo.display())),
        "{body}"
    );
    assert_eq!(daemon.get("/reload?name=fine").0, 200);
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".to_string()));
}

#[test]
fn a_bad_hook_value_is_named_by_file_position_and_key() {
    let env = TestEnv::new();
    let number = env.write_job_text(
        "number",
        "{\n  \"ResticArguments\": [\"x\"],\n  \"before\": 5\n}\n",
    );
    let empty = env.write_job_text(
        "empty",
        "{\n  \"ResticArguments\": [\"x\"],\n    \"OnFailure\": []\n}\n",
    );
    let unlimited = env.write_job_text(
        "unlimited",
        "{\"ResticArguments\": [\"x\"], \"After\": \"umount /mnt/usb\", \"HookTimeout\": 0}",
    );
    env.write_job(
        "hooked",
        &env.fake_job(
            "hooked",
            &[],
            json!({"Before": "true", "After": ["true", "done"], "HookTimeout": "5min"}),
        ),
    );
    let (code, out) = env.check();
    assert_eq!(code, 1, "{out}");
    for (file, want) in [
        (
            &number,
            "3:3: Before: expected a command: a string for /bin/sh -c, or a list of strings, \
             found number 5",
        ),
        (
            &empty,
            "3:5: OnFailure: the list is empty; it needs at least the program to run",
        ),
        (
            &unlimited,
            "1:56: HookTimeout: expected a positive duration, found number 0; a hook with no \
             limit could hold the repository forever",
        ),
    ] {
        assert_eq!(
            line_about(&out, file),
            format!("error: {}:{want}", file.display())
        );
    }
    assert!(out.contains("ok: hooked"), "{out}");
}

#[test]
fn a_hook_program_other_users_may_change_makes_a_root_daemons_job_invalid() {
    let env = TestEnv::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // Relative to the job directory, where hooks run.
    let bin = env.jobs.join("bin");
    fs::create_dir(&bin).unwrap();
    copy_fake(&env, &bin.join("open-hook"), 0o777);
    copy_fake(&env, &bin.join("safe-hook"), 0o755);
    let open = env.write_job(
        "open",
        &env.fake_job("open", &[], json!({"OnSuccess": ["bin/open-hook", "ok"]})),
    );
    env.write_job(
        "safe",
        &env.fake_job(
            "safe",
            &[],
            json!({"Before": ["bin/safe-hook"], "After": "echo done"}),
        ),
    );

    let (code, out) = env.check();
    assert!(out.contains("ok: safe"), "{out}");
    if !root {
        // The rule is a root daemon's; anyone else's may run what it owns.
        assert_eq!(code, 0, "{out}");
        return;
    }
    assert_eq!(code, 1, "{out}");
    let program = bin.join("open-hook");
    let want = format!(
        "OnSuccess: {0} is writable by other users (mode 0777), and a root daemon runs it; \
         run chmod go-w {0}",
        program.display()
    );
    let line = line_about(&out, &open);
    assert!(
        line.starts_with(&format!("error: {}:", open.display())) && line.ends_with(&want),
        "{line}\nwanted: {want}"
    );
}

#[test]
fn a_bad_notify_is_named_by_file_position_and_key_never_by_its_url() {
    let env = TestEnv::new();
    let secret = "tk_246813579";
    let list = env.write_job_text(
        "list",
        &format!(
            "{{\n  \"ResticArguments\": [\"snapshots\"],\n  \"Notify\": [{{\"Url\": \
             \"https://ntfy.sh/{secret}\", \"Format\": \"text\"}},\n    {{\"Url\": \
             \"ftp://ntfy.sh/{secret}\", \"Headers\": {{\"Authorization\": 1}}}}]\n}}\n"
        ),
    );
    let typed = env.write_job_text(
        "typed",
        &format!(r#"{{"ResticArguments": ["snapshots"], "Notify": "https://ntfy.sh/{secret}"}}"#),
    );
    env.write_job(
        "fine",
        &env.fake_job(
            "fine",
            &[],
            json!({"Notify": {"Url": format!("https://ntfy.sh/{secret}"), "On": ["failure"]},
                   "StaleAfter": "2d"}),
        ),
    );
    let want_list = [
        format!(
            "{}:4:6: Notify: item 1: Url: the URL is not an http:// or https:// URL",
            list.display()
        ),
        format!(
            "{}:4:55: Notify: item 1: Headers.Authorization: expected a string, found a number",
            list.display()
        ),
    ];
    let want_typed = format!(
        "{}:1:36: Notify: expected a target such as {{\"Url\": \"https://ntfy.sh/…\"}} or a \
         list of them, found a string",
        typed.display()
    );

    let (code, out) = env.check();
    assert_eq!(code, 1, "{out}");
    let about_list: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&list.display().to_string()))
        .collect();
    assert_eq!(
        about_list,
        want_list
            .iter()
            .map(|w| format!("error: {w}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(line_about(&out, &typed), format!("error: {want_typed}"));
    assert!(out.contains("ok: fine"), "{out}");
    assert!(!out.contains(secret), "the secret is in --check:\n{out}");

    let running = env.start();
    assert_eq!(invalid_error(&running, "typed"), want_typed);
    let (_, queue) = running.get("/queue");
    running.wait_stderr(&want_typed);
    let stderr = running.stderr();
    drop(running);
    for (place, text) in [("/queue", &queue), ("stderr", &stderr)] {
        assert!(!text.contains(secret), "the secret is in {place}:\n{text}");
    }

    // The config's `Notify` is checked as strictly, and as discreetly.
    let config = env.config.to_str().unwrap();
    fs::write(
        &env.config,
        format!(r#"{{"Notify": [{{"Url": "https:///{secret}"}}], "HistoryRuns": 0}}"#),
    )
    .unwrap();
    let (code, _, err) = daemon(&["--config", config, "--check", env.jobs.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "config file {config}: Notify: item 0: Url: the URL has no host; HistoryRuns: \
             expected a whole number from 1 to 1000, found number 0"
        )),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
}

#[test]
fn a_job_may_not_be_called_history_where_every_jobs_runs_are_kept() {
    let env = TestEnv::new();
    env.write_job("history", &env.fake_job("history", &[], json!({})));
    env.write_job("other", &env.fake_job("other", &[], json!({})));
    let (code, out) = env.check();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("JobName \"history\" is reserved: the StateDir keeps every job's runs"),
        "{out}"
    );
    assert!(out.contains("ok: other"), "{out}");
}
