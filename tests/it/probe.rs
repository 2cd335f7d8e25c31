//! `restic-cronned --check --probe` with the real restic: the shipped
//! example jobs against a real repository, and each way a probe fails —
//! wrong password, missing repository, missing keyring entry, missing
//! `ResticPath`, a precondition that does not hold, a hook's missing
//! program — with no lock taken, nothing written and no hook run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::json;

use crate::real_restic::{Repo, Restic};
use crate::support::{DAEMON, TestEnv};

/// `restic-cronned --check --probe` on the job directory: exit code and
/// stdout, bounded so that a probe that hangs fails the test.
fn check_probe(env: &TestEnv) -> (i32, String) {
    env.check_with(&["--probe"])
}

/// The probe's lines about `job`: its `ok` line or its `error` lines.
fn lines_of<'a>(stdout: &'a str, job: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter(|line| {
            *line == format!("ok: {job} (probe)") || line.starts_with(&format!("error: {job}: "))
        })
        .collect()
}

/// Nothing was locked in `repo`, and the daemon made neither its state nor
/// its log directory (they are created at start, never by `--check`).
fn assert_nothing_left_behind(env: &TestEnv, repos: &[&Repo], stdout: &str) {
    for repo in repos {
        assert_eq!(repo.locks().trim(), "", "a lock in {}", repo.path.display());
    }
    assert!(
        !env.state.exists(),
        "{} was created\n{stdout}",
        env.state.display()
    );
    assert!(
        !env.logs.exists(),
        "{} was created\n{stdout}",
        env.logs.display()
    );
}

#[test]
fn the_shipped_example_jobs_probe_ok_against_a_real_repository() {
    let env = TestEnv::new();
    let repo = Repo::init(&env, &Restic::debian_12());
    // As scripts/demo.sh points them at a throwaway repository; the longer
    // /tmp/backup-password goes first since /tmp/backup is a prefix of it.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs.example");
    let mut names = Vec::new();
    for example in fs::read_dir(examples).unwrap() {
        let path = example.unwrap().path();
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("/tmp/backup-password", repo.password_file.to_str().unwrap())
            .replace("/tmp/backup", repo.path.to_str().unwrap())
            .replace("/var/www/my-site", repo.data.to_str().unwrap());
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        env.write_job_text(&stem, &text);
        names.push(stem);
    }
    assert!(names.len() >= 2, "{names:?}");
    let (code, stdout) = check_probe(&env);
    for name in &names {
        assert_eq!(
            lines_of(&stdout, name),
            [format!("ok: {name} (probe)")],
            "{stdout}"
        );
    }
    assert!(
        !stdout.lines().any(|line| line.starts_with("error:")),
        "{stdout}"
    );
    assert_eq!(code, 0, "{stdout}");
    assert_nothing_left_behind(&env, &[&repo], &stdout);
}

#[test]
fn each_failing_probe_is_named_on_its_own_line_and_the_check_fails() {
    // No Secret Service here: the kernel keyring, where nobody stored the
    // entry the job names.
    let env = TestEnv::with_config(json!({"Keyring": "keyutils"}));
    let old = Repo::init_named(&env, &Restic::debian_12(), "old");
    let new = Repo::init_named(&env, &Restic::v0_18(), "new");
    let wrong = env.dir.path().join("wrong-password");
    fs::write(&wrong, "not the password at all\n").unwrap();
    let with_wrong_password = json!({"Env": {"RESTIC_PASSWORD_FILE": wrong}});
    for (tag, repo) in [("old", &old), ("new", &new)] {
        env.write_job(
            &format!("good-{tag}"),
            &repo.job(&format!("good-{tag}"), &["backup", "."], json!({})),
        );
        env.write_job(
            &format!("wrongpw-{tag}"),
            &repo.job(
                &format!("wrongpw-{tag}"),
                &["snapshots"],
                with_wrong_password.clone(),
            ),
        );
    }
    let elsewhere = env.dir.path().join("no-repository-here");
    let mut no_repository = old.job("norepo", &["snapshots"], json!({}));
    no_repository["ResticArguments"] = json!(["-r", elsewhere, "snapshots"]);
    env.write_job("norepo", &no_repository);
    let service = format!("restic-cronned-probe-{}", std::process::id());
    env.write_job(
        "nokey",
        &old.job(
            "nokey",
            &["snapshots"],
            json!({"Service": service, "Username": "nobody", "Env": {}}),
        ),
    );
    env.write_job(
        "norestic",
        &old.job(
            "norestic",
            &["snapshots"],
            json!({"ResticPath": "/nope/restic"}),
        ),
    );
    let unmounted = env.dir.path().join("usb");
    fs::create_dir(&unmounted).unwrap();
    env.write_job(
        "unmounted",
        &old.job(
            "unmounted",
            &["backup", "."],
            json!({"Preconditions": {"PathsMust": [unmounted]}}),
        ),
    );

    let (code, stdout) = check_probe(&env);
    assert_eq!(code, 1, "{stdout}");
    for good in ["good-old", "good-new"] {
        assert_eq!(
            lines_of(&stdout, good),
            [format!("ok: {good} (probe)")],
            "{stdout}"
        );
    }
    // 0.14 says it with exit 1, 0.18 with exit 12: the same words.
    for wrong in ["wrongpw-old", "wrongpw-new"] {
        assert_eq!(
            lines_of(&stdout, wrong),
            [format!("error: {wrong}: wrong password or no key found")],
            "{stdout}"
        );
    }
    let norepo = lines_of(&stdout, "norepo");
    assert_eq!(norepo.len(), 1, "{stdout}");
    assert!(
        norepo[0].starts_with("error: norepo: repository does not exist: "),
        "{stdout}"
    );
    let nokey = lines_of(&stdout, "nokey");
    assert_eq!(nokey.len(), 1, "{stdout}");
    assert!(
        nokey[0].starts_with(&format!(
            "error: nokey: no password for service \"{service}\", user \"nobody\" in the \
             kernel keyring (keyutils)"
        )),
        "{stdout}"
    );
    assert_eq!(
        lines_of(&stdout, "norestic"),
        ["error: norestic: ResticPath /nope/restic: no such file"],
        "{stdout}"
    );
    assert_eq!(
        lines_of(&stdout, "unmounted"),
        [format!(
            "error: unmounted: precondition failed: {}: empty directory",
            unmounted.display()
        )],
        "{stdout}"
    );
    assert!(stdout.contains("8 job(s) probed, 6 failed"), "{stdout}");
    // Passwords are never printed, right or wrong.
    assert!(!stdout.contains("not the password"), "{stdout}");
    assert!(!stdout.contains("correct horse"), "{stdout}");
    assert_nothing_left_behind(&env, &[&old, &new], &stdout);
}

#[test]
fn a_hook_whose_program_is_missing_fails_the_probe_and_no_hook_is_run() {
    let env = TestEnv::new();
    let repo = Repo::init(&env, &Restic::debian_12());
    let ran = env.dir.path().join("a hook ran");
    // In the job directory, where hooks run and relative programs are found.
    let dump = env.jobs.join("dump.sh");
    fs::write(&dump, format!("#!/bin/sh\ntouch '{}'\n", ran.display())).unwrap();
    fs::set_permissions(&dump, fs::Permissions::from_mode(0o755)).unwrap();
    env.write_job(
        "hooked",
        &repo.job(
            "hooked",
            &["backup", "."],
            json!({
                "Before": ["./dump.sh"],
                "OnSuccess": format!("touch '{}'", ran.display()),
                "OnFailure": ["touch", ran],
                "After": [dump],
            }),
        ),
    );
    env.write_job(
        "unhooked",
        &repo.job(
            "unhooked",
            &["backup", "."],
            json!({
                "Before": ["/nope/dump.sh", "--all"],
                "OnSuccess": "true",
                "After": ["no-such-hook-program"],
            }),
        ),
    );

    let (code, stdout) = check_probe(&env);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        lines_of(&stdout, "hooked"),
        ["ok: hooked (probe)"],
        "{stdout}"
    );
    assert_eq!(
        lines_of(&stdout, "unhooked"),
        [
            "error: unhooked: Before hook /nope/dump.sh: no such file",
            "error: unhooked: After hook no-such-hook-program: not found on PATH",
        ],
        "{stdout}"
    );
    assert!(!ran.exists(), "a probe ran a hook\n{stdout}");
    assert_nothing_left_behind(&env, &[&repo], &stdout);
}

#[test]
fn probe_without_check_is_a_usage_error() {
    let output = Command::new(&*DAEMON).arg("--probe").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "restic-cronned: --probe works only with --check; try --help\n"
    );
}
