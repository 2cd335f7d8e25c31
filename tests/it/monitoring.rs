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
            json!({"regularTimer": "200ms", "Healthcheck": format!("http://{addr}/x")}),
        ),
    );
    let daemon = env.start();
    daemon.wait_for("five runs", |_| {
        (env.starts("steady").len() >= 5).then_some(())
    });
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
