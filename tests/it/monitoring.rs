//! Monitoring: healthcheck pings to a local stand-in for healthchecks.io.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::json;

use crate::support::TestEnv;

/// One request the stand-in received: method, path and body.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A healthchecks.io stand-in on a free loopback port that answers 200 and
/// records every request. With `silent`, it accepts and never answers.
fn ping_server(silent: bool) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if silent {
                held.push(stream);
                continue;
            }
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split(' ');
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            record.lock().unwrap().push((
                method,
                path,
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (addr, seen)
}

#[test]
fn healthcheck_pings_mark_start_and_end_with_the_exit_code_and_output() {
    let (addr, seen) = ping_server(false);
    let env = TestEnv::new();
    let url = format!("http://{addr}/ping/abc");
    env.write_job(
        "good",
        &env.fake_job("good", &["out=all-fine"], json!({"Healthcheck": url})),
    );
    env.write_job(
        "bad",
        &env.fake_job(
            "bad",
            &["err=it-broke", "exit=1"],
            json!({"Healthcheck": format!("{url}/")}),
        ),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=good");
    daemon.wait_outcome("good", "success");
    daemon.wait_for("two pings", |_| {
        (seen.lock().unwrap().len() == 2).then_some(())
    });
    daemon.get("/trigger?name=bad");
    daemon.wait_outcome("bad", "failure");
    daemon.wait_for("four pings", |_| {
        (seen.lock().unwrap().len() == 4).then_some(())
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("GET", "/ping/abc/start")
    );
    assert_eq!(
        (seen[1].0.as_str(), seen[1].1.as_str()),
        ("POST", "/ping/abc/0")
    );
    assert!(seen[1].2.contains("all-fine"), "{seen:?}");
    assert_eq!(seen[2].1, "/ping/abc/start");
    assert_eq!(seen[3].1, "/ping/abc/1");
    assert!(seen[3].2.contains("it-broke"), "{seen:?}");
}

#[test]
fn an_unreachable_ping_url_delays_nothing() {
    // A server that accepts and never answers: every ping waits for its
    // 10 s timeout, on the ping thread, not on the job's.
    let (addr, _) = ping_server(true);
    let env = TestEnv::new();
    env.write_job(
        "steady",
        &env.fake_job(
            "steady",
            &[],
            json!({"Healthcheck": format!("http://{addr}/x")}),
        ),
    );
    let daemon = env.start();
    for n in 1..=5 {
        daemon.get("/trigger?name=steady");
        daemon.wait_for(&format!("run {n}"), |_| {
            (env.spans("steady").len() >= n).then_some(())
        });
    }
    let starts = env.starts("steady");
    let span = starts[4] - starts[0];
    assert!(
        span < 2_000,
        "five runs took {span} ms: the pings held the job up"
    );
}

#[test]
fn a_bad_healthcheck_url_makes_the_job_invalid() {
    let env = TestEnv::new();
    env.write_job(
        "ftp",
        &env.fake_job("ftp", &[], json!({"Healthcheck": "ftp://example.org/x"})),
    );
    let daemon = env.start();
    let job = daemon.job("ftp");
    assert_eq!(job["status"], "invalid");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("not an http:// or https:// URL"),
        "{job}"
    );
}

/// A small parser of the Prometheus text format: every sample line is
/// `name{labels} value`, and its family had HELP and TYPE lines before it.
fn parse_exposition(text: &str) -> Vec<(String, String, f64)> {
    let mut described = std::collections::HashSet::new();
    let mut typed = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            described.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let name = words.next().unwrap().to_string();
            let kind = words.next().unwrap();
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            typed.insert(name);
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                assert!(labels.ends_with('}'), "{line}");
                (name, labels.trim_end_matches('}'))
            }
            None => (series, ""),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(
            described.contains(name) && typed.contains(name),
            "{name} has no HELP/TYPE"
        );
        samples.push((name.to_string(), labels.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| *v)
}

#[test]
fn metrics_count_successes_warnings_and_failures() {
    let env = TestEnv::new();
    env.write_job(
        "ok",
        &env.fake_job("ok", &[], json!({"regularTimer": "1h"})),
    );
    env.write_job("partial", &env.fake_job("partial", &["exit=3"], json!({})));
    env.write_job("broken", &env.fake_job("broken", &["exit=1"], json!({})));
    env.write_job_text("bad", "{not json");
    let daemon = env.start();
    daemon.wait_outcome("ok", "success");
    for name in ["partial", "broken"] {
        daemon.get(&format!("/trigger?name={name}"));
    }
    daemon.wait_outcome("partial", "warning");
    daemon.wait_outcome("broken", "failure");
    let (status, text) = daemon.get("/metrics");
    assert_eq!(status, 200, "{text}");
    let samples = parse_exposition(&text);
    let get = |name: &str, labels: &str| sample(&samples, name, labels);
    assert_eq!(get("restic_cronned_up", ""), Some(1.0));
    let runs = "restic_cronned_job_runs_total";
    assert_eq!(get(runs, r#"job="ok",outcome="success""#), Some(1.0));
    assert_eq!(get(runs, r#"job="partial",outcome="warning""#), Some(1.0));
    assert_eq!(get(runs, r#"job="broken",outcome="failure""#), Some(1.0));
    assert_eq!(get(runs, r#"job="broken",outcome="success""#), Some(0.0));
    assert_eq!(
        get("restic_cronned_job_last_exit_code", r#"job="partial""#),
        Some(3.0)
    );
    assert_eq!(
        get("restic_cronned_job_last_exit_code", r#"job="broken""#),
        Some(1.0)
    );
    assert_eq!(
        get("restic_cronned_job_consecutive_failures", r#"job="broken""#),
        Some(1.0)
    );
    assert_eq!(
        get(
            "restic_cronned_job_consecutive_failures",
            r#"job="partial""#
        ),
        Some(0.0)
    );
    assert_eq!(get("restic_cronned_job_invalid", r#"job="bad""#), Some(1.0));
    assert_eq!(get("restic_cronned_job_invalid", r#"job="ok""#), Some(0.0));
    assert_eq!(get("restic_cronned_job_running", r#"job="ok""#), Some(0.0));
    let next = get(
        "restic_cronned_job_next_run_timestamp_seconds",
        r#"job="ok""#,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (next - now - 3600.0).abs() < 60.0,
        "next run {next} is not an hour from {now}"
    );
    assert!(
        get(
            "restic_cronned_job_last_success_timestamp_seconds",
            r#"job="broken""#
        )
        .is_none()
    );
    assert!(
        get(
            "restic_cronned_job_last_success_timestamp_seconds",
            r#"job="partial""#
        )
        .is_some()
    );
}
