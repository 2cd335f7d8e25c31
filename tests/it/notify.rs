//! Notifications (SPEC §6.5, §8) with the real daemon and local stand-ins
//! for ntfy, Gotify, Discord, Slack and plain webhooks: which events reach
//! a person, in which shape, what a dead receiver does to the schedule,
//! secrets in URLs and headers, and `stale`.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Answer, Daemon, Received, Receiver, TestEnv, closed_port, metric, now_ms, rfc3339_ms,
};

/// Time for a notification that should not come to show up anyway, after
/// a later one has already arrived: deliveries to a local receiver take
/// milliseconds.
const SETTLE: Duration = Duration::from_millis(300);

/// A flag file that makes the fake restic fail with `Fatal: <why>` while it
/// exists, and the job argument that reads it.
fn fault(env: &TestEnv, name: &str, why: &str) -> (PathBuf, String) {
    let flag = env.dir.path().join(format!("{name}.broken"));
    fs::write(&flag, why).unwrap();
    let arg = format!("fail-if={}", flag.display());
    (flag, arg)
}

/// The `event` of each JSON notification, in arrival order.
fn events(requests: &[Received]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Triggers `name` and waits until it has `n` runs in `/job`.
fn run(daemon: &Daemon, name: &str, n: usize) -> Value {
    let (status, body) = daemon.get(&format!("/trigger?name={name}"));
    assert_eq!(status, 200, "{body}");
    daemon.wait_runs(name, n)
}

#[test]
fn a_giveup_then_one_recovery_and_successes_stay_quiet() {
    let rx = Receiver::start();
    // The config's Notify, json, default On (giveup, recovery, stale).
    let env = TestEnv::with_config(json!({
        "Notify": {"Url": rx.url("/hook"), "Format": "json"},
    }));
    let why = "unable to open repository at /mnt/nas/restic: no such file or directory";
    let (flag, fail_if) = fault(&env, "nightly", why);
    env.write_job("nightly", &env.fake_job("nightly", &[&fail_if], json!({})));
    let daemon = env.start();

    // A failure with no retry configured: a giveup.
    let job = run(&daemon, "nightly", 1);
    let failed_run = &job["runs"][0];
    assert_eq!(failed_run["outcome"], "failure", "{job}");
    let got = rx.wait_on(&daemon, "/hook", 1);
    let giveup = got[0].json();
    assert_eq!(got[0].method, "POST");
    assert_eq!(giveup["job"], "nightly", "{giveup}");
    assert_eq!(giveup["event"], "giveup", "{giveup}");
    assert_eq!(giveup["outcome"], "failure", "{giveup}");
    assert_eq!(giveup["exitCode"], 1, "{giveup}");
    assert_eq!(giveup["consecutiveFailures"], 1, "{giveup}");
    let error = giveup["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "the giveup does not say why: {giveup}");
    assert!(
        giveup["host"].as_str().is_some_and(|h| !h.is_empty()),
        "no host: {giveup}"
    );
    // The times are the run's, the duration a number of seconds.
    assert_eq!(
        rfc3339_ms(&giveup["start"]),
        rfc3339_ms(&failed_run["start"]),
        "{giveup} vs {failed_run}"
    );
    assert_eq!(rfc3339_ms(&giveup["end"]), rfc3339_ms(&failed_run["end"]));
    let duration = giveup["duration"].as_f64().expect("duration is a number");
    assert!((0.0..5.0).contains(&duration), "{giveup}");
    assert!(
        giveup.get("snapshot").is_some(),
        "no snapshot key in {giveup}"
    );

    // Fixed: the next success is a recovery.
    fs::remove_file(&flag).unwrap();
    run(&daemon, "nightly", 2);
    let got = rx.wait_on(&daemon, "/hook", 2);
    let recovery = got[1].json();
    assert_eq!(recovery["event"], "recovery", "{recovery}");
    assert_eq!(recovery["outcome"], "success", "{recovery}");
    assert_eq!(recovery["consecutiveFailures"], 0, "{recovery}");
    assert!(recovery["error"].is_null(), "{recovery}");

    // Three more successes: nothing.
    for n in 3..=5 {
        let job = run(&daemon, "nightly", n);
        assert_eq!(job["runs"][0]["outcome"], "success", "{job}");
    }
    // A fence: it fails again, and that giveup is the next thing a person
    // hears. A notification for any of the successes would come before it.
    fs::write(&flag, why).unwrap();
    run(&daemon, "nightly", 6);
    rx.wait_on(&daemon, "/hook", 3);
    thread::sleep(SETTLE);
    let got = rx.on("/hook");
    assert_eq!(
        events(&got),
        ["giveup", "recovery", "giveup"],
        "what reached a person: {got:#?}"
    );
}

#[test]
fn each_format_is_what_its_service_accepts() {
    let rx = Receiver::start();
    let env = TestEnv::new();
    // `<` and `&` are markup to Slack.
    let why = "unable to open config file: sftp <nas> & co: connection refused";
    let (_flag, fail_if) = fault(&env, "photos", why);
    let formats = ["json", "text", "gotify", "discord", "slack"];
    let targets: Vec<Value> = formats
        .iter()
        .map(|f| {
            json!({
                "Url": rx.url(&format!("/{f}")),
                "Format": f,
                "Headers": {"X-Test": format!("hdr-{f}"), "Priority": "high"},
            })
        })
        .collect();
    env.write_job(
        "photos",
        &env.fake_job("photos", &[&fail_if], json!({"Notify": targets})),
    );
    let daemon = env.start();
    run(&daemon, "photos", 1);
    for f in formats {
        rx.wait_on(&daemon, &format!("/{f}"), 1);
    }
    thread::sleep(SETTLE);

    for f in formats {
        let got = rx.on(&format!("/{f}"));
        assert_eq!(got.len(), 1, "{f}: one giveup, got {got:#?}");
        let r = &got[0];
        assert_eq!(r.method, "POST", "{f}");
        assert_eq!(
            r.header("X-Test"),
            Some(format!("hdr-{f}").as_str()),
            "{f}: {r:?}"
        );
        assert_eq!(r.header("Priority"), Some("high"), "{f}: {r:?}");
        let content_type = r
            .header("Content-Type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let expected = if f == "text" {
            "text/plain"
        } else {
            "application/json"
        };
        assert!(
            content_type.starts_with(expected),
            "{f}: Content-Type {content_type:?}, want {expected}"
        );
        // What the service shows a person names the job and says why.
        let shown: String = match f {
            "json" => {
                let body = r.json();
                let keys = [
                    "job",
                    "event",
                    "outcome",
                    "error",
                    "exitCode",
                    "start",
                    "end",
                    "duration",
                    "snapshot",
                    "host",
                    "consecutiveFailures",
                ];
                for key in keys {
                    assert!(body.get(key).is_some(), "json: no {key}: {body}");
                }
                assert_eq!(body["event"], "giveup");
                format!("{} {}", body["job"], body["error"])
            }
            "text" => {
                let line = r.body.trim_end_matches('\n');
                assert!(
                    !line.contains('\n'),
                    "text: more than one line: {:?}",
                    r.body
                );
                let title = r.header("Title").expect("text: a Title header");
                assert!(!title.is_empty(), "text: empty Title");
                assert!(
                    line.starts_with(&format!("{title}: ")),
                    "text: the line is not `TITLE: message`: title {title:?}, line {line:?}"
                );
                line.to_string()
            }
            "gotify" => {
                let body = r.json();
                let title = body["title"].as_str().expect("gotify: title is a string");
                let message = body["message"]
                    .as_str()
                    .expect("gotify: message is a string");
                let priority = body["priority"]
                    .as_u64()
                    .expect("gotify: priority is an integer");
                assert!(priority <= 10, "gotify: priority {priority}");
                assert!(title.contains("photos"), "gotify: title {title:?}");
                format!("{title} {message}")
            }
            "discord" => {
                let body = r.json();
                let content = body["content"]
                    .as_str()
                    .expect("discord: content is a string");
                assert!(
                    !content.is_empty() && content.chars().count() <= 2000,
                    "{content:?}"
                );
                content.to_string()
            }
            "slack" => {
                let body = r.json();
                let text = body["text"].as_str().expect("slack: text is a string");
                // Slack's escaping: & < > are its markup.
                assert!(
                    text.contains("sftp &lt;nas&gt; &amp; co"),
                    "slack: not escaped: {text:?}"
                );
                text.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            }
            _ => unreachable!(),
        };
        assert!(shown.contains("photos"), "{f}: no job name in {shown:?}");
        assert!(shown.contains(why), "{f}: no error in {shown:?}");
    }
}

#[test]
fn a_receiver_that_never_answers_delays_neither_the_schedule_nor_the_api() {
    let silent = Receiver::answering(Answer::Silent);
    let env = TestEnv::new();
    let on = json!(["success", "failure"]);
    env.write_job(
        "tick",
        &env.fake_job(
            "tick",
            &[],
            json!({
                "regularTimer": "1s",
                "Notify": [
                    {"Url": silent.url("/a"), "On": on},
                    {"Url": silent.url("/b"), "On": on, "Format": "text"},
                ],
            }),
        ),
    );
    let daemon = env.start();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    // Four runs: each sends two notifications that wait 10 s for an answer.
    // A job that waited for them would stall 10 s (20 s) after its first run.
    let starts = loop {
        let asked = Instant::now();
        daemon.queue();
        slowest = slowest.max(asked.elapsed());
        let starts = daemon.run_starts("tick");
        if starts.len() >= 4 {
            break starts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the job did not keep its 1 s schedule while its receiver hangs: runs at {starts:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| (500..2500).contains(g)),
        "runs not 1 s apart: gaps {gaps:?} ms"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "/queue took {slowest:?}"
    );
    // The receiver did get requests (they are hanging, not missing).
    assert!(!silent.requests().is_empty(), "nothing was sent");
    // Stopping and shutting down do not wait on them beyond 10 s (SPEC
    // §6.5); a stop is at once.
    let asked = Instant::now();
    assert_eq!(daemon.get("/stop?name=tick").0, 200);
    daemon.wait_status("tick", "stopped");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "/stop took {:?}",
        asked.elapsed()
    );
    let asked = Instant::now();
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_millis(10_500),
        "the shutdown waited {:?} for notifications",
        asked.elapsed()
    );
}

/// One dead receiver (a Gotify that hangs) must not keep a person from
/// hearing through the receivers that work: the same job's other target,
/// and other jobs' targets.
#[test]
fn a_receiver_that_never_answers_does_not_hold_up_the_others() {
    let silent = Receiver::answering(Answer::Silent);
    let live = Receiver::start();
    let env = TestEnv::new();
    let (_flag, fail_if) = fault(&env, "all", "the disk is gone");
    env.write_job(
        "both",
        &env.fake_job(
            "both",
            &[&fail_if],
            json!({"Notify": [{"Url": silent.url("/dead")}, {"Url": live.url("/both")}]}),
        ),
    );
    // Enough other jobs that some share whatever the dead one holds up.
    let others = ["other1", "other2", "other3", "other4"];
    for name in others {
        env.write_job(
            name,
            &env.fake_job(
                name,
                &[&fail_if],
                json!({"Notify": {"Url": live.url(&format!("/{name}"))}}),
            ),
        );
    }
    let daemon = env.start();
    run(&daemon, "both", 1);
    silent.wait_on(&daemon, "/dead", 1);
    let mut late = Vec::new();
    for (i, name) in ["both"].iter().chain(others.iter()).enumerate() {
        if i > 0 {
            run(&daemon, name, 1);
        }
        let ended = Instant::now();
        let heard = loop {
            if !live.on(&format!("/{name}")).is_empty() {
                break true;
            }
            if ended.elapsed() > Duration::from_secs(3) {
                break false;
            }
            thread::sleep(Duration::from_millis(10));
        };
        if !heard {
            late.push(*name);
        }
    }
    assert!(
        late.is_empty(),
        "no giveup within 3 s on a working receiver for {late:?} while another receiver hangs \
         (got {:?})",
        live.requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_closed_port_is_tried_three_times_then_counted_and_logged_by_host_only() {
    let busy = Receiver::answering(Answer::Status(503));
    let port = closed_port();
    let env = TestEnv::new();
    let secret = "PathSecret-8f3a91";
    env.write_job(
        "once",
        &env.fake_job(
            "once",
            &[],
            json!({"Notify": [
                {"Url": format!("http://127.0.0.1:{port}/{secret}"), "On": ["success"]},
                {"Url": busy.url("/busy"), "On": ["success"]},
            ]}),
        ),
    );
    let daemon = env.start();
    let failed = |d: &Daemon| metric(&d.metrics(), "restic_cronned_notifications_failed_total");
    assert_eq!(failed(&daemon), Some(0.0), "{}", daemon.metrics());
    let job = run(&daemon, "once", 1);
    let ended = rfc3339_ms(&job["runs"][0]["end"]);
    // Poll until both deliveries are given up; note when the count first
    // moved.
    let mut first_counted = None;
    daemon.wait_for("two failed notifications counted", |d| {
        let n = failed(d).unwrap_or(0.0);
        if n > 0.0 && first_counted.is_none() {
            first_counted = Some(now_ms());
        }
        (n >= 2.0).then_some(())
    });
    let counted_after = first_counted.unwrap() - ended;
    assert!(
        counted_after >= 4_500,
        "counted as failed {counted_after} ms after the run: before the 1 s and 5 s retries"
    );
    // The 503 receiver saw the three attempts: at once, after 1 s, after 5 s.
    let attempts = busy.on("/busy");
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    let gap = |a: &Received, b: &Received| b.at.duration_since(a.at).as_millis();
    let (first, second) = (
        gap(&attempts[0], &attempts[1]),
        gap(&attempts[1], &attempts[2]),
    );
    assert!(
        (700..2_500).contains(&first),
        "second attempt {first} ms after the first"
    );
    assert!(
        (3_500..6_500).contains(&second),
        "third attempt {second} ms after the second"
    );
    assert_eq!(
        attempts[0].body, attempts[2].body,
        "a retry is the same message"
    );
    // Logged, naming the host, never the URL's path.
    let host = format!("127.0.0.1:{port}");
    daemon.wait_for("the failed notification logged", |_| {
        env.log_text()
            .lines()
            .any(|l| l.contains(&host) && (l.contains("WARN") || l.contains("ERROR")))
            .then_some(())
    });
    let log = env.log_text();
    assert!(!log.contains(secret), "the log shows the URL path:\n{log}");
    assert!(
        !daemon.stderr().contains(secret),
        "stderr shows the URL path"
    );
    // No fourth attempt.
    thread::sleep(SETTLE);
    assert_eq!(busy.on("/busy").len(), 3);
}

#[test]
fn an_empty_job_notify_silences_the_default_and_on_filters_events() {
    let rx = Receiver::start();
    let env = TestEnv::with_config(json!({"Notify": {"Url": rx.url("/default")}}));
    let (_flag, fail_if) = fault(&env, "all", "the disk is gone");
    // `quiet` opts out of the default; `picky` hears every failure (a retry
    // too), never a giveup; `plain` has the default.
    env.write_job(
        "quiet",
        &env.fake_job("quiet", &[&fail_if], json!({"Notify": []})),
    );
    env.write_job(
        "picky",
        &env.fake_job(
            "picky",
            &[&fail_if],
            json!({
                "retryTimer": "1ms", "maxFailedRetries": 1,
                "Notify": {"Url": rx.url("/picky"), "On": ["failure"]},
            }),
        ),
    );
    env.write_job("plain", &env.fake_job("plain", &[&fail_if], json!({})));
    let daemon = env.start();

    run(&daemon, "quiet", 1);
    // picky: the failure, the retry's failure, then it gives up.
    daemon.get("/trigger?name=picky");
    let picky = daemon.wait_for("picky to give up", |d| {
        let job = d.job("picky");
        (job["consecutiveFailures"] == 2 && job["status"] == "waiting").then_some(job)
    });
    assert_eq!(picky["CurrentRetry"], 0, "{picky}");
    // The fence: plain's giveup on the default target.
    run(&daemon, "plain", 1);
    rx.wait_on(&daemon, "/default", 1);
    rx.wait_on(&daemon, "/picky", 2);
    thread::sleep(SETTLE);

    let default = rx.on("/default");
    let jobs: Vec<String> = default
        .iter()
        .map(|r| r.json()["job"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(jobs, ["plain"], "the default target heard: {default:#?}");
    assert_eq!(events(&default), ["giveup"]);
    let picky = rx.on("/picky");
    assert_eq!(events(&picky), ["failure", "failure"], "{picky:#?}");
    let failures: Vec<i64> = picky
        .iter()
        .map(|r| r.json()["consecutiveFailures"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(failures, [1, 2], "{picky:#?}");
}

#[test]
fn secrets_in_notify_urls_and_headers_stay_out_of_logs_and_answers() {
    secrets_stay_secret_at("info");
}

/// `trace` (a level SPEC §8 lists) is what a person turns on to find out
/// why a notification does not arrive, and then pastes into a bug report.
#[test]
fn secrets_in_notify_urls_and_headers_stay_out_of_a_trace_log() {
    secrets_stay_secret_at("trace");
}

/// The bytes of hex-dump lines (`[TRACE] 504f 5354 …  POST…`), joined: a
/// header value cut across two lines of a dump is whole again here.
fn hex_dumps(log: &str) -> String {
    let mut bytes = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("] ") else {
            continue;
        };
        let groups: Vec<&str> = rest.split(' ').take_while(|g| !g.is_empty()).collect();
        let is_dump = groups.len() >= 2
            && groups
                .iter()
                .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        if !is_dump {
            continue;
        }
        for group in groups {
            for pair in [&group[..2], &group[2..]] {
                if let Ok(b) = u8::from_str_radix(pair, 16) {
                    bytes.push(b);
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn secrets_stay_secret_at(level: &str) {
    let rx = Receiver::start();
    let secrets = [
        "CfgPathSecret-1a2b",
        "CfgQuerySecret-3c4d",
        "CfgHeaderSecret-5e6f",
        "CfgKeySecret-7a8b",
        "JobPathSecret-9c0d",
        "JobHeaderSecret-e1f2",
    ];
    let env = TestEnv::with_config(json!({
        "LogConf": {"Level": level},
        "Notify": {
            "Url": rx.url(&format!("/hook/{}?token={}", secrets[0], secrets[1])),
            "Headers": {"Authorization": format!("Bearer {}", secrets[2]), "X-Api-Key": secrets[3]},
            "On": ["failure", "giveup", "success"],
        },
    }));
    // LogConf was replaced whole: put the log dir back.
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(&env.config).unwrap()).unwrap();
    config["LogConf"]["LogDir"] = json!(env.logs);
    fs::write(&env.config, config.to_string()).unwrap();
    let (_flag, fail_if) = fault(&env, "mine", "repository is gone");
    env.write_job(
        "mine",
        &env.fake_job(
            "mine",
            &[&fail_if],
            json!({"Notify": {
                "Url": rx.url(&format!("/job/{}", secrets[4])),
                "Headers": {"Authorization": format!("Basic {}", secrets[5])},
                "On": ["failure", "giveup", "success"],
            }}),
        ),
    );
    env.write_job("theirs", &env.fake_job("theirs", &[], json!({})));
    let (code, check) = env.check();
    assert_eq!(code, 0, "{check}");
    let daemon = env.start();
    run(&daemon, "mine", 1);
    run(&daemon, "theirs", 1);
    // The secrets do reach the receiver: the masking is only in what we show.
    let mine = rx.wait_on(&daemon, &format!("/job/{}", secrets[4]), 2);
    assert_eq!(
        mine[0].header("Authorization"),
        Some(format!("Basic {}", secrets[5]).as_str())
    );
    let theirs = rx.wait_on(
        &daemon,
        &format!("/hook/{}?token={}", secrets[0], secrets[1]),
        1,
    );
    assert_eq!(
        theirs[0].header("Authorization"),
        Some(format!("Bearer {}", secrets[2]).as_str())
    );
    assert_eq!(theirs[0].header("X-Api-Key"), Some(secrets[3]));

    let mut shown = vec![
        ("--check", check),
        ("/queue", daemon.get("/queue").1),
        ("/job mine", daemon.get("/job?name=mine").1),
        ("/job theirs", daemon.get("/job?name=theirs").1),
        ("/metrics", daemon.get("/metrics").1),
        ("/", daemon.get("/").1),
    ];
    daemon.get("/reload");
    let stderr = daemon.stderr();
    daemon.terminate();
    let log = env.log_text();
    assert!(log.contains("[mine]"), "the log is empty: {log}");
    shown.push(("hex dumps in the log file", hex_dumps(&log)));
    shown.push(("stderr", stderr));
    shown.push(("the log file", log));
    // Every leak, each with the first line that shows it.
    let mut leaks = Vec::new();
    for (place, text) in &shown {
        for secret in secrets {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                let line: String = line.chars().take(300).collect();
                leaks.push(format!("{place} shows {secret}: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "at Level {level}:\n{}", leaks.join("\n"));
}

#[test]
fn stale_once_until_the_next_success_across_a_restart() {
    let rx = Receiver::start();
    let env = TestEnv::new();
    let why = "unable to open repository at sftp:nas:/srv/restic";
    let (flag, fail_if) = fault(&env, "docs", why);
    fs::remove_file(&flag).unwrap();
    env.write_job(
        "docs",
        &env.fake_job(
            "docs",
            &[&fail_if],
            // Default On: giveup, recovery, stale.
            json!({"regularTimer": "1h", "StaleAfter": "1s", "Notify": {"Url": rx.url("/n")}}),
        ),
    );
    let stale_metric = "restic_cronned_job_stale{job=\"docs\"}";
    let stale_sent = || {
        rx.on("/n")
            .into_iter()
            .filter(|r| r.json()["event"] == "stale")
            .collect::<Vec<_>>()
    };
    let daemon = env.start();
    // No state file: it runs at once, and succeeds.
    let job = daemon.wait_outcome("docs", "success");
    let success_end = rfc3339_ms(&job["lastRun"]["end"]);
    if now_ms() - success_end < 700 {
        assert_eq!(job["stale"], false, "stale right after a success: {job}");
    }
    // Then it fails.
    fs::write(&flag, why).unwrap();
    run(&daemon, "docs", 2);
    // A second after the success it is stale: flag, metric, one message.
    let job = daemon.wait_for("docs to be stale", |d| {
        let job = d.job("docs");
        (job["stale"] == true).then_some(job)
    });
    assert!(now_ms() - success_end >= 1000, "stale too early: {job}");
    assert_eq!(
        metric(&daemon.metrics(), stale_metric),
        Some(1.0),
        "{}",
        daemon.metrics()
    );
    daemon.wait_for("a stale notification", |_| {
        (!stale_sent().is_empty()).then_some(())
    });
    let stale = stale_sent()[0].json();
    assert_eq!(stale["job"], "docs", "{stale}");
    // Another failure: still one stale message.
    run(&daemon, "docs", 3);
    thread::sleep(SETTLE);
    assert_eq!(stale_sent().len(), 1, "{:#?}", rx.on("/n"));

    // A restart while stale: still stale, and no second message.
    daemon.terminate();
    let daemon = env.start();
    let job = daemon.wait_for("docs stale after the restart", |d| {
        let job = d.job("docs");
        (job["stale"] == true).then_some(job)
    });
    assert_eq!(rfc3339_ms(&job["lastSuccess"]), success_end, "{job}");
    assert_eq!(metric(&daemon.metrics(), stale_metric), Some(1.0));
    // A fence: the next failure's giveup arrives after anything the restart
    // would have sent.
    let before = rx.on("/n").len();
    run(&daemon, "docs", 4);
    rx.wait_on(&daemon, "/n", before + 1);
    thread::sleep(SETTLE);
    assert_eq!(
        stale_sent().len(),
        1,
        "a second stale message after the restart: {:#?}",
        rx.on("/n")
    );

    // Fixed: a success clears it (and is a recovery).
    fs::remove_file(&flag).unwrap();
    run(&daemon, "docs", 5);
    let job = daemon.job("docs");
    let success_end = rfc3339_ms(&job["lastSuccess"]);
    if now_ms() - success_end < 700 {
        assert_eq!(job["stale"], false, "still stale after a success: {job}");
        assert_eq!(metric(&daemon.metrics(), stale_metric), Some(0.0));
    }
    // …until it is a second old again: then one more stale message.
    daemon.wait_for("a second stale notification", |_| {
        (stale_sent().len() == 2).then_some(())
    });
    let all = events(&rx.on("/n"));
    assert!(all.contains(&"recovery".to_string()), "{all:?}");
}
