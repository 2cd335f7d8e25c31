//! `rccommand` against a live daemon: every command, the table, `--json`,
//! both argument orders, address and token discovery, every exit code.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::{Daemon, RCCOMMAND, TestEnv};

/// Runs rccommand with `args` and `env`, in an environment with no
/// RC_ADDR, RC_TOKEN or user config unless the test sets them.
fn rccommand(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(&*RCCOMMAND);
    command
        .args(args)
        .env_remove("RC_ADDR")
        .env_remove("RC_TOKEN")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run rccommand")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing everything when it is wrong.
fn expect_code(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

fn two_jobs(env: &TestEnv) -> Daemon {
    env.write_job(
        "backup",
        &env.fake_job(
            "backup",
            &["out=snapshot 1234 saved"],
            json!({"regularTimer": "1h", "NextJob": "forget"}),
        ),
    );
    env.write_job("forget", &env.fake_job("forget", &[], json!({})));
    env.start()
}

#[test]
fn every_command_against_a_live_daemon() {
    let env = TestEnv::new();
    let daemon = two_jobs(&env);
    let home = env.dir.path();
    let addr = daemon.addr.as_str();
    daemon.wait_outcome("forget", "success");

    // The table: every job, its status, next run and last result.
    let out = rccommand(home, &["--addr", addr, "queue"], &[]);
    expect_code(&out, 0, "queue");
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("JOB") && lines[0].contains("LAST RESULT"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("backup  ") && lines[1].contains(" waiting "),
        "{table}"
    );
    assert!(
        lines[1].contains("in 59m") || lines[1].contains("in 1h"),
        "{table}"
    );
    assert!(
        lines[1].ends_with("success now") || lines[1].contains("success 1s ago"),
        "{table}"
    );
    assert!(lines[2].contains("when triggered"), "{table}");

    // --json: the daemon's JSON as it is.
    let out = rccommand(home, &["--addr", addr, "--json", "queue"], &[]);
    expect_code(&out, 0, "--json queue");
    let queue: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(queue, daemon.queue());

    let out = rccommand(home, &["--addr", addr, "job", "backup"], &[]);
    expect_code(&out, 0, "job");
    let summary = stdout(&out);
    assert!(summary.starts_with("backup: waiting\n"), "{summary}");
    for part in [
        "every 1h",
        "then runs     forget",
        "runs, newest first:",
        "| snapshot 1234 saved",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary}");
    }
    let out = rccommand(home, &["--addr", addr, "job", "backup", "--json"], &[]);
    let job: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(job["runs"][0]["outputTail"], "snapshot 1234 saved\n");

    // The original's order: ADDR COMMAND NAME.
    let out = rccommand(home, &[addr, "trigger", "forget"], &[]);
    expect_code(&out, 0, "trigger");
    assert_eq!(stdout(&out), "Done\n");
    daemon.wait_for("a second forget", |_| {
        (env.spans("forget").len() == 2).then_some(())
    });

    for (args, answer) in [
        (vec!["stop", "backup"], "Done\n"),
        (vec!["restart", "backup"], "Done\n"),
        (vec!["reload", "backup"], "Done\n"),
        (vec!["stopall"], "Done\n"),
        (vec!["healthz"], "ok\n"),
        (
            vec!["reload"],
            "reloaded: 0 added, 0 changed, 0 removed, 2 unchanged\n",
        ),
        (vec!["remove", "forget"], "Done\n"),
    ] {
        let mut full = vec![addr];
        full.extend(&args);
        let out = rccommand(home, &full, &[]);
        expect_code(&out, 0, &format!("{args:?}"));
        assert_eq!(stdout(&out), answer, "{args:?}");
    }
    assert_eq!(daemon.queue()["Jobs"].as_array().unwrap().len(), 1);
}

#[test]
fn address_and_token_come_from_flags_environment_or_config() {
    let env = TestEnv::with_config(json!({"SrvConf": {"Token": "tok-789"}}));
    env.write_job("a", &env.fake_job("a", &[], json!({})));
    let daemon = env.start();
    let home = env.dir.path();
    let addr = daemon.addr.as_str();
    let port = addr.rsplit_once(':').unwrap().1;

    let out = rccommand(
        home,
        &["--addr", addr, "--token", "tok-789", "healthz"],
        &[],
    );
    expect_code(&out, 0, "flags");
    let out = rccommand(
        home,
        &["queue"],
        &[("RC_ADDR", addr), ("RC_TOKEN", "tok-789")],
    );
    expect_code(&out, 0, "RC_ADDR and RC_TOKEN");
    // :PORT means the loopback address, as for the daemon.
    let loopback = format!(":{port}");
    let out = rccommand(
        home,
        &["job", "a"],
        &[("RC_ADDR", &loopback), ("RC_TOKEN", "tok-789")],
    );
    expect_code(&out, 0, "RC_ADDR=:PORT");

    // The daemon's config: --config FILE, or the default location, with
    // the token straight in it or in a TokenFile.
    let config = home.join("client.json");
    fs::write(
        &config,
        json!({"SrvConf": {"Port": loopback, "Token": "tok-789"}}).to_string(),
    )
    .unwrap();
    let out = rccommand(home, &["--config", config.to_str().unwrap(), "queue"], &[]);
    expect_code(&out, 0, "--config");
    assert!(stdout(&out).starts_with("JOB"), "{}", stdout(&out));
    let token_file = home.join("token");
    fs::write(&token_file, "tok-789\n").unwrap();
    let default = home.join("xdg/restic-cronned/config");
    fs::create_dir_all(default.parent().unwrap()).unwrap();
    fs::write(
        &default,
        json!({"SrvConf": {"Port": addr, "TokenFile": token_file}}).to_string(),
    )
    .unwrap();
    let out = rccommand(home, &["trigger", "a"], &[]);
    expect_code(&out, 0, "the default config");
    daemon.wait_for("the triggered run", |_| {
        (env.spans("a").len() == 1).then_some(())
    });
    // A flag beats the environment, which beats the config.
    let out = rccommand(
        home,
        &["--token", "wrong", "queue"],
        &[("RC_TOKEN", "tok-789")],
    );
    expect_code(&out, 1, "--token over RC_TOKEN");
    let out = rccommand(home, &["queue"], &[("RC_TOKEN", "wrong")]);
    expect_code(&out, 1, "RC_TOKEN over the config");
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert!(stderr(&out).contains("RC_TOKEN"), "{}", stderr(&out));
    // Without any token: refused.
    let out = rccommand(
        home,
        &["--addr", addr, "queue"],
        &[("XDG_CONFIG_HOME", "/nonexistent")],
    );
    expect_code(&out, 1, "no token");
}

#[test]
fn exit_codes_and_messages() {
    let env = TestEnv::new();
    env.write_job("a", &env.fake_job("a", &[], json!({})));
    let daemon = env.start();
    let home = env.dir.path();
    let addr = daemon.addr.as_str();

    // 1: the daemon answered with an error; its message on stderr.
    let out = rccommand(home, &[addr, "trigger", "no such job"], &[]);
    expect_code(&out, 1, "unknown job");
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "rccommand: the daemon answered 404: No such Job\n"
    );
    let out = rccommand(home, &[addr, "stop", "a"], &[]);
    expect_code(&out, 0, "stop");
    let out = rccommand(home, &[addr, "trigger", "a"], &[]);
    expect_code(&out, 1, "trigger a stopped job");
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));

    // 2: usage, one line with a hint; nothing is sent.
    for args in [
        vec![],
        vec!["queu"],
        vec!["trigger"],
        vec!["queue", "extra"],
        vec!["--frobnicate", "queue"],
        vec!["--addr", "nowhere", "queue"],
    ] {
        let out = rccommand(home, &args, &[]);
        expect_code(&out, 2, &format!("{args:?}"));
        let message = stderr(&out);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.ends_with("; try --help\n"), "{message}");
    }
    let broken = home.join("broken.json");
    fs::write(&broken, "{\"SrvConf\": ").unwrap();
    let out = rccommand(home, &["--config", broken.to_str().unwrap(), "queue"], &[]);
    expect_code(&out, 2, "a broken config");
    assert!(stderr(&out).contains("broken.json"), "{}", stderr(&out));

    // 3: nobody listens; the message names the address tried.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = free.local_addr().unwrap().to_string();
    drop(free);
    let out = rccommand(home, &["--addr", &gone, "queue"], &[]);
    expect_code(&out, 3, "daemon down");
    assert!(stderr(&out).contains(&gone), "{}", stderr(&out));
    let config = home.join("down.json");
    let port = gone.rsplit_once(':').unwrap().1;
    fs::write(
        &config,
        json!({"SrvConf": {"Port": format!(":{port}")}}).to_string(),
    )
    .unwrap();
    let out = rccommand(home, &["--config", config.to_str().unwrap(), "queue"], &[]);
    expect_code(&out, 3, "daemon down, address from the config");
    assert!(
        stderr(&out).contains(&format!(
            "{gone} (from the config's SrvConf.Port or ServerPort)"
        )),
        "{}",
        stderr(&out)
    );

    // 0: help and version.
    let out = rccommand(home, &["--help"], &[]);
    expect_code(&out, 0, "--help");
    assert!(
        stdout(&out).starts_with("Usage: rccommand"),
        "{}",
        stdout(&out)
    );
    let out = rccommand(home, &["--version"], &[]);
    assert_eq!(
        stdout(&out),
        format!("rccommand {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn job_names_are_percent_encoded() {
    let env = TestEnv::new();
    let home = env.dir.path();
    // A server that records the request line it gets.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nDone\n")
            .unwrap();
        line
    });
    let out = rccommand(home, &[&addr, "trigger", "a b&c#d+e%"], &[]);
    expect_code(&out, 0, "trigger");
    assert_eq!(
        server.join().unwrap(),
        "POST /trigger?name=a%20b%26c%23d%2Be%25 HTTP/1.1\r\n"
    );
}
