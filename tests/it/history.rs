//! Run history (SPEC §6.6) with the real daemon: what every view shows after
//! a restart, the history file itself (modes, one line per run, bounded
//! tail), `HistoryRuns`, a torn last line, a planted link; and what the log
//! tells a person at each level (SPEC §6.1).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Daemon, RCCOMMAND, TestEnv, metric, rfc3339_ms};

/// `rccommand --addr ADDR ARGS…` with a home of its own; its stdout, which
/// must be a success.
fn rccommand(env: &TestEnv, daemon: &Daemon, args: &[&str]) -> String {
    let output = Command::new(&*RCCOMMAND)
        .arg("--addr")
        .arg(&daemon.addr)
        .args(args)
        .env_remove("RC_ADDR")
        .env_remove("RC_TOKEN")
        .env("HOME", env.dir.path())
        .env("XDG_CONFIG_HOME", env.dir.path().join("xdg"))
        .output()
        .expect("run rccommand");
    assert!(
        output.status.success(),
        "rccommand {args:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The lines of a history file, each parsed.
fn history_lines(env: &TestEnv, job: &str) -> Vec<Value> {
    let text = fs::read_to_string(env.state.join(format!("history/{job}.jsonl"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

fn trigger(daemon: &Daemon, name: &str) {
    let (status, body) = daemon.get(&format!("/trigger?name={name}"));
    assert_eq!(status, 200, "{body}");
}

/// Triggers `name` and waits until `/job` lists `n` runs.
fn run(daemon: &Daemon, name: &str, n: usize) -> Value {
    trigger(daemon, name);
    daemon.wait_runs(name, n)
}

/// Waits, after a restart, until the job's thread has loaded its history
/// (`/queue` shows a last run).
fn wait_loaded(daemon: &Daemon, name: &str) -> Value {
    daemon.wait_for(&format!("{name}'s history after the restart"), |d| {
        let job = d.job(name);
        (!job["lastRun"].is_null()).then_some(job)
    })
}

fn outcomes_and_reasons(runs: &Value) -> Vec<(String, String)> {
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or("?").to_string(),
                r["reason"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[test]
fn after_a_restart_every_view_shows_the_runs_from_before_it() {
    let env = TestEnv::new();
    let src = env.dir.path().join("usb");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("photo.jpg"), "x").unwrap();
    let flag = env.dir.path().join("broken");
    let why = "unable to open repository at /mnt/nas: permission denied";
    // About 8 KiB of output in 2 KiB lines, then a last line to find.
    let chunk = "o".repeat(2000);
    let mut args: Vec<String> = vec![format!("fail-if={}", flag.display())];
    for i in 0..4 {
        args.push(format!("out={chunk}{i}"));
    }
    args.push("out=END-OF-OUTPUT".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.write_job(
        "h",
        &env.fake_job(
            "h",
            &args,
            json!({
                "regularTimer": "1h", "retryTimer": "1ms", "maxFailedRetries": 1,
                "Preconditions": {"PathsMust": [src]}, "CheckPrecondsMaxTimes": 1,
            }),
        ),
    );
    let daemon = env.start();
    // 1: no state file, so it runs at once: success.
    daemon.wait_runs("h", 1);
    // 2, 3: a failure and its retry's failure; then it gives up.
    fs::write(&flag, why).unwrap();
    run(&daemon, "h", 3);
    // 4: the disk is away: skipped.
    fs::remove_file(&flag).unwrap();
    fs::remove_file(src.join("photo.jpg")).unwrap();
    run(&daemon, "h", 4);
    // 5: back: success.
    fs::write(src.join("photo.jpg"), "x").unwrap();
    let before = run(&daemon, "h", 5);
    let runs = &before["runs"];
    let seen = outcomes_and_reasons(runs);
    let expected_outcomes = ["success", "skipped", "failure", "failure", "success"];
    assert_eq!(
        seen.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(),
        expected_outcomes,
        "{runs:#}"
    );
    let queue_before = daemon.job("h");
    let metrics_before = daemon.metrics();

    // The history file: private, one line per run, tails bounded.
    let dir = env.state.join("history");
    let file = dir.join("h.jsonl");
    assert_eq!(mode(&dir), 0o700, "history directory mode");
    assert_eq!(mode(&file), 0o600, "history file mode");
    let lines = history_lines(&env, "h");
    assert_eq!(lines.len(), 5, "{lines:#?}");
    for (line, (outcome, _)) in lines.iter().zip(seen.iter().rev()) {
        for key in [
            "start",
            "end",
            "reason",
            "outcome",
            "exitCode",
            "error",
            "outputTail",
        ] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
        assert_eq!(&line["outcome"], outcome.as_str());
        let tail = line["outputTail"].as_str().unwrap();
        assert!(tail.len() <= 4096, "outputTail of {} bytes", tail.len());
        if outcome != "skipped" {
            assert!(
                tail.contains("END-OF-OUTPUT"),
                "the tail is not the end: {tail:?}"
            );
        }
    }
    assert!(
        lines[1]["error"].as_str().unwrap_or_default().contains(why),
        "{}",
        lines[1]
    );
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("usb"),
        "{}",
        lines[3]
    );

    daemon.terminate();
    let daemon = env.start();
    let queue = wait_loaded(&daemon, "h");
    // /queue: the last run and the last success, not "never ran".
    assert_eq!(queue["lastRun"]["outcome"], "success", "{queue}");
    assert_eq!(
        rfc3339_ms(&queue["lastRun"]["start"]),
        rfc3339_ms(&queue_before["lastRun"]["start"])
    );
    assert_eq!(
        rfc3339_ms(&queue["lastSuccess"]),
        rfc3339_ms(&queue_before["lastSuccess"]),
        "{queue}"
    );
    assert_eq!(queue["consecutiveFailures"], 0, "{queue}");
    // /job: the five runs, newest first, with their reasons.
    let after = daemon.job_details("h");
    assert_eq!(
        outcomes_and_reasons(&after["runs"]),
        seen,
        "{:#}",
        after["runs"]
    );
    let reasons: Vec<&str> = seen.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        reasons[..4],
        ["trigger", "trigger", "retry", "trigger"],
        "{seen:?}"
    );
    assert!(["schedule", "catch-up"].contains(&reasons[4]), "{seen:?}");
    assert!(
        after["runs"][2]["error"]
            .as_str()
            .unwrap_or_default()
            .contains(why),
        "{}",
        after["runs"][2]
    );
    // /metrics: the timestamps come back.
    let metrics = daemon.metrics();
    let last_run = metric(
        &metrics,
        "restic_cronned_job_last_run_timestamp_seconds{job=\"h\"}",
    );
    let start = rfc3339_ms(&runs[0]["start"]) as f64 / 1000.0;
    assert!(
        last_run.is_some_and(|t| (t - start).abs() < 1.5),
        "last run {last_run:?}, the run started at {start}\n{metrics}"
    );
    for name in [
        "restic_cronned_job_last_run_timestamp_seconds{job=\"h\"}",
        "restic_cronned_job_last_success_timestamp_seconds{job=\"h\"}",
    ] {
        let (was, is) = (metric(&metrics_before, name), metric(&metrics, name));
        assert!(
            was.zip(is).is_some_and(|(a, b)| (a - b).abs() < 1.0),
            "{name}: {was:?} before the restart, {is:?} after"
        );
    }
    // rccommand: the table and the job's details.
    let table = rccommand(&env, &daemon, &["queue"]);
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some("h"))
        .unwrap_or_else(|| panic!("no row for h:\n{table}"));
    assert!(!row.contains("never"), "{table}");
    assert!(row.contains("success"), "{table}");
    let details = rccommand(&env, &daemon, &["job", "h"]);
    assert!(!details.contains("never ran"), "{details}");
    for word in ["skipped", "failure", "success"] {
        assert!(
            details.contains(word),
            "rccommand job h does not show a {word} run:\n{details}"
        );
    }
}

#[test]
fn history_runs_bounds_the_file_and_what_is_shown() {
    let env = TestEnv::with_config(json!({"HistoryRuns": 3}));
    env.write_job("r", &env.fake_job("r", &[], json!({})));
    let daemon = env.start();
    let successes = |d: &Daemon| {
        metric(
            &d.metrics(),
            "restic_cronned_job_runs_total{job=\"r\",outcome=\"success\"}",
        )
        .unwrap_or(0.0) as usize
    };
    // Every view after each run: the file's lines, /job, /job?runs=10.
    let mut seen = Vec::new();
    for n in 1..=7 {
        trigger(&daemon, "r");
        daemon.wait_for(&format!("run {n}"), |d| {
            (successes(d) == n && d.job("r")["status"] != "working").then_some(())
        });
        let lines = history_lines(&env, "r").len();
        let shown = daemon.job_details("r")["runs"].as_array().unwrap().len();
        let (_, body) = daemon.get("/job?name=r&runs=10");
        let asked: Value = serde_json::from_str(&body).unwrap();
        let asked = asked["runs"].as_array().unwrap().len();
        seen.push((n, lines, shown, asked));
    }
    let wanted: Vec<_> = seen
        .iter()
        .map(|&(n, lines, _, _)| (n, lines, n.min(3), n.min(3)))
        .collect();
    assert!(
        seen.iter().all(|&(_, lines, _, _)| lines <= 6),
        "the file held more than 6 lines with HistoryRuns 3: (run, lines, /job, /job?runs=10) {seen:?}"
    );
    let newest = rfc3339_ms(&daemon.job_details("r")["runs"][0]["start"]);

    // After a restart /job shows the newest 3, newest first.
    daemon.terminate();
    let daemon = env.start();
    wait_loaded(&daemon, "r");
    let runs = daemon.job_details("r")["runs"].clone();
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs:#}");
    assert_eq!(
        rfc3339_ms(&runs[0]["start"]),
        newest,
        "newest first: {runs:#}"
    );
    let starts: Vec<i64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| rfc3339_ms(&r["start"]))
        .collect();
    assert!(starts.windows(2).all(|w| w[0] > w[1]), "{starts:?}");

    // Before it too (SPEC §8: never more than HistoryRuns, also when the
    // file holds more before its next rewrite).
    assert_eq!(
        seen, wanted,
        "(run, file lines, /job runs, /job?runs=10 runs) with HistoryRuns 3"
    );
}

#[test]
fn a_torn_last_line_is_ignored_and_the_next_run_appends_a_valid_line() {
    let env = TestEnv::new();
    env.write_job("t", &env.fake_job("t", &["out=first"], json!({})));
    let daemon = env.start();
    let first = run(&daemon, "t", 1)["runs"][0].clone();
    daemon.terminate();
    // A power cut in the middle of the next append.
    let file = env.state.join("history/t.jsonl");
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str(r#"{"start":"2026-12-01T03:00:00+01:00","end":"2026-12-01T03:0"#);
    fs::write(&file, text).unwrap();

    let daemon = env.start();
    let job = wait_loaded(&daemon, "t");
    assert_eq!(
        rfc3339_ms(&job["lastRun"]["start"]),
        rfc3339_ms(&first["start"]),
        "{job}"
    );
    let runs = daemon.job_details("t")["runs"].clone();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs:#}");
    let second = run(&daemon, "t", 2)["runs"][0].clone();
    daemon.terminate();
    // The new run is a line of its own that reads back.
    let text = fs::read_to_string(&file).unwrap();
    let last = text.lines().last().unwrap();
    let last: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is not JSON ({e}):\n{text}"));
    assert_eq!(
        rfc3339_ms(&last["start"]),
        rfc3339_ms(&second["start"]),
        "{text}"
    );
    // And after one more restart both runs are there.
    let daemon = env.start();
    daemon.wait_for("both runs after the restart", |d| {
        let job = d.job("t");
        (!job["lastRun"].is_null()).then_some(())
    });
    let runs = daemon.job_details("t")["runs"].clone();
    let starts: Vec<i64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| rfc3339_ms(&r["start"]))
        .collect();
    assert_eq!(
        starts,
        [rfc3339_ms(&second["start"]), rfc3339_ms(&first["start"])],
        "{runs:#}\nfile:\n{text}"
    );
}

#[test]
fn a_link_planted_at_the_history_file_is_not_written_through() {
    let env = TestEnv::new();
    let history = env.state.join("history");
    fs::create_dir_all(&history).unwrap();
    fs::set_permissions(&env.state, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&history, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = env.dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, history.join("s.jsonl")).unwrap();
    env.write_job("s", &env.fake_job("s", &[], json!({})));
    let daemon = env.start();
    trigger(&daemon, "s");
    daemon.wait_outcome("s", "success");
    daemon.wait_for("a warning about the history file", |_| {
        env.log_text()
            .lines()
            .any(|l| l.contains("[WARN]") && l.contains("[s]") && l.contains("history"))
            .then_some(())
    });
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "written through the link"
    );
    assert!(
        fs::symlink_metadata(history.join("s.jsonl"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    // The daemon goes on: the run is shown and the next one runs.
    trigger(&daemon, "s");
    daemon.wait_runs("s", 2);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn at_level_warn_a_failure_leaves_its_reason_and_giving_up_is_an_error() {
    let env = TestEnv::new();
    // LogConf whole: the test's log dir and the level.
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(&env.config).unwrap()).unwrap();
    config["LogConf"] = json!({"LogDir": env.logs, "Level": "warn"});
    fs::write(&env.config, config.to_string()).unwrap();
    let flag = env.dir.path().join("broken");
    let why = "unable to open repository at b2:bucket: 401 unauthorized";
    fs::write(&flag, why).unwrap();
    env.write_job(
        "bad",
        &env.fake_job("bad", &[&format!("fail-if={}", flag.display())], json!({})),
    );
    env.write_job("good", &env.fake_job("good", &["out=all fine"], json!({})));
    // `listening on` is an INFO line: the port is chosen here.
    let daemon = env.start_quiet();
    trigger(&daemon, "good");
    daemon.wait_outcome("good", "success");
    trigger(&daemon, "bad");
    daemon.wait_outcome("bad", "failure");
    daemon.wait_for("the giveup in the log", |_| {
        env.log_text().contains("[ERROR]").then_some(())
    });
    let log = env.log_text();
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[bad] run ended"))
        .collect();
    assert_eq!(ended.len(), 1, "{log}");
    assert!(
        ended[0].contains("[WARN]") && ended[0].contains("failure") && ended[0].contains(why),
        "the failure's line does not say why at WARN: {:?}",
        ended[0]
    );
    let gave_up: Vec<&str> = log.lines().filter(|l| l.contains("[ERROR]")).collect();
    assert!(
        gave_up.len() == 1 && gave_up[0].contains("[bad]"),
        "giving up is not one ERROR line for bad:\n{log}"
    );
    assert!(
        !log.contains("[good]"),
        "a success is logged at level warn:\n{log}"
    );
    assert!(!log.contains("[INFO]"), "INFO lines at level warn:\n{log}");

    // A failed reload: one WARN line per problem.
    env.write_job_text("broken1", "{\"ResticArguments\": [\"snapshots\"],");
    env.write_job_text("broken2", "{\"ResticArguments\": \"snapshots\"}");
    let (status, body) = daemon.get("/reload");
    assert_eq!(status, 422, "{body}");
    daemon.wait_for("the reload's problems in the log", |_| {
        let log = env.log_text();
        (log.contains("broken1.json") && log.contains("broken2.json")).then_some(())
    });
    let log = env.log_text();
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("broken1.json") || l.contains("broken2.json"))
        .collect();
    assert!(
        problems.iter().all(|l| l.contains("[WARN]")),
        "not at WARN: {problems:#?}"
    );
    assert!(
        !problems
            .iter()
            .any(|l| l.contains("broken1.json") && l.contains("broken2.json")),
        "two problems on one line: {problems:#?}"
    );
    assert!(
        !log.contains("[INFO]"),
        "INFO lines at level warn after the reload:\n{log}"
    );
    // Nothing else changed: good still runs (and stays quiet).
    trigger(&daemon, "good");
    daemon.wait_runs("good", 2);
}

#[test]
fn every_control_action_is_logged_with_what_it_changed() {
    let env = TestEnv::new();
    env.write_job("a", &env.fake_job("a", &[], json!({})));
    env.write_job("b", &env.fake_job("b", &[], json!({})));
    let daemon = env.start();
    let logged = |what: &str, needle: &[&str]| {
        daemon.wait_for(&format!("{what} in the log"), |_| {
            env.log_text()
                .lines()
                .any(|l| needle.iter().all(|n| l.contains(n)))
                .then_some(())
        });
    };
    trigger(&daemon, "a");
    logged("/trigger", &["[a]", "/trigger"]);
    daemon.wait_outcome("a", "success");
    assert_eq!(daemon.get("/stop?name=a").0, 200);
    logged("/stop", &["[a]", "/stop"]);
    assert_eq!(daemon.get("/restart?name=a").0, 200);
    logged("/restart", &["[a]", "/restart"]);
    assert_eq!(daemon.get("/stopall").0, 200);
    logged("/stopall", &["/stopall"]);
    assert_eq!(daemon.get("/remove?name=b").0, 200);
    logged("/remove", &["[b]", "/remove"]);
    assert_eq!(daemon.get("/reload").0, 200);
    logged("/reload", &["/reload"]);
    assert_eq!(daemon.get("/reload?name=a").0, 200);
    logged("/reload of a", &["[a]", "/reload"]);
}
