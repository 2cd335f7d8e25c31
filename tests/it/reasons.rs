//! Why a run failed (SPEC §4), with the real restic: the one-line `error`
//! of a wrong password and of a server that is down, in `/queue` and on the
//! `run ended` log line, the same words on 0.14 and 0.18.

use std::net::TcpListener;

use serde_json::{Value, json};

use crate::real_restic::{Repo, Restic, test_with_each_restic};
use crate::support::{Daemon, TestEnv};

/// A job that runs once, when triggered, and never again by itself.
fn once() -> Value {
    json!({"regularTimer": -1, "maxFailedRetries": 0})
}

/// Triggers `name`, waits for its failure, and checks what every place
/// that shows its reason shows: `/queue`'s `lastRun.error` and `error`,
/// and the `run ended` log line. Returns the error.
fn failure_of(daemon: &Daemon, name: &str, exit_code: i64) -> String {
    assert_eq!(daemon.get(&format!("/trigger?name={name}")).0, 200);
    let job = daemon.wait_outcome(name, "failure");
    assert_eq!(job["lastRun"]["exitCode"], exit_code, "{job}");
    let error = job["lastRun"]["error"].as_str().unwrap().to_string();
    assert_eq!(job["error"], job["lastRun"]["error"], "{job}");
    assert!(
        !error.chars().any(char::is_control) && !error.contains("Fatal"),
        "{error:?}"
    );
    daemon.wait_stderr(&format!(
        "[{name}] run ended: failure (exit code {exit_code}) after "
    ));
    let logged = daemon.stderr();
    let line = logged
        .lines()
        .find(|l| l.contains(&format!("[{name}] run ended")))
        .unwrap();
    assert!(line.ends_with(&format!("s: {error}")), "{line}");
    error
}

test_with_each_restic!(a_wrong_password_says_so_and_leaves_no_lock);

fn a_wrong_password_says_so_and_leaves_no_lock(restic: &Restic) {
    let env = TestEnv::new();
    let repo = Repo::init(&env, restic);
    let wrong_password = env.dir.path().join("wrong-password");
    std::fs::write(&wrong_password, "Tr0ub4dor&3\n").unwrap();
    let data = repo.data.display().to_string();
    let mut job = repo.job("wrong", &["backup", &data], once());
    job["Env"]["RESTIC_PASSWORD_FILE"] = json!(wrong_password);
    env.write_job("wrong", &job);
    let daemon = env.start();
    let error = failure_of(&daemon, "wrong", restic.wrong_password_exit_code());
    assert_eq!(error, "wrong password or no key found");
    assert_eq!(repo.locks().trim(), "");
}

/// restic 0.14 gives up at once on a server that does not answer, and asks
/// whether there is a repository: the reason says the server is down, not
/// that the repository is missing. (restic 0.18 retries for 15 minutes
/// first, too long for a test: /work/evidence/reasons.sh shows it.)
#[test]
fn an_unreachable_rest_server_is_not_a_missing_repository() {
    let env = TestEnv::new();
    // A port that nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let location = format!("rest:http://backup:hunter2@127.0.0.1:{port}/repo");
    let password = env.dir.path().join("password");
    std::fs::write(&password, "correct horse battery staple\n").unwrap();
    let mut job = json!({
        "JobName": "down",
        "ResticPath": Restic::debian_12().path,
        "ResticArguments": ["-r", location, "backup", env.jobs],
        "Env": {"RESTIC_PASSWORD_FILE": password},
    });
    for (key, value) in once().as_object().unwrap() {
        job[key] = value.clone();
    }
    env.write_job("down", &job);
    let daemon = env.start();
    let error = failure_of(&daemon, "down", 1);
    assert!(
        error.starts_with("repository unreachable: unable to open config file: "),
        "{error}"
    );
    assert!(
        error.ends_with(&format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        )),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
}
