//! The HTTP API as a client sees it: `/job`, every error status with and
//! without a token, HEAD, bodies the server refuses, and who may send
//! commands (browsers' other sites, foreign Host names, the token).

use serde_json::{Value, json};

use crate::support::{Daemon, TestEnv, http, raw_http, rfc3339_ms, status_of};

#[test]
fn job_shows_the_full_status_and_the_runs_newest_first() {
    let env = TestEnv::new();
    env.write_job(
        "j",
        &env.fake_job(
            "j",
            &["out=hello from restic", "err=a warning", "fail-times=1"],
            json!({"retryTimer": "1h", "maxFailedRetries": 2}),
        ),
    );
    // Triggered 25 times below, so it has more runs than /job keeps.
    env.write_job("busy", &env.fake_job("busy", &["out=busy"], json!({})));
    let daemon = env.start();
    daemon.get("/trigger?name=j");
    daemon.wait_outcome("j", "failure");
    daemon.get("/trigger?name=j");
    daemon.wait_outcome("j", "success");

    let (status, body) = daemon.get("/job?name=j");
    assert_eq!(status, 200, "{body}");
    let job: Value = serde_json::from_str(&body).expect("/job is JSON");
    // Everything /queue says about the job is there too.
    let queued = daemon.job("j");
    for key in [
        "JobName",
        "status",
        "retryTimer",
        "maxFailedRetries",
        "ResticArguments",
    ] {
        assert_eq!(job[key], queued[key], "{key}");
    }
    assert_eq!(job["lastRun"]["outcome"], "success");
    assert_eq!(job["consecutiveFailures"], 0);
    let runs = job["runs"].as_array().expect("runs is a list");
    assert_eq!(runs.len(), 2, "{job}");
    let (newest, oldest) = (&runs[0], &runs[1]);
    assert_eq!(newest["outcome"], "success");
    assert_eq!(newest["exitCode"], 0);
    assert!(newest["error"].is_null(), "{newest}");
    assert_eq!(oldest["outcome"], "failure");
    assert_eq!(oldest["exitCode"], 1);
    assert!(
        oldest["error"].as_str().unwrap().contains("exit"),
        "{oldest}"
    );
    for run in runs {
        let tail = run["outputTail"].as_str().expect("an output tail");
        assert!(
            tail.contains("hello from restic") && tail.contains("a warning"),
            "{tail:?}"
        );
        assert!(rfc3339_ms(&run["start"]) <= rfc3339_ms(&run["end"]));
    }
    assert!(rfc3339_ms(&oldest["end"]) <= rfc3339_ms(&newest["start"]));

    for n in 1..=25 {
        daemon.get("/trigger?name=busy");
        daemon.wait_for(&format!("run {n} of busy"), |_| {
            (env.spans("busy").len() >= n).then_some(())
        });
    }
    daemon.wait_for("25 runs of busy", |_| {
        (env.spans("busy").len() >= 25).then_some(())
    });
    let job: Value = serde_json::from_str(&daemon.get("/job?name=busy").1).unwrap();
    let runs = job["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 20, "at most 20 runs are listed");
    let starts: Vec<i64> = runs.iter().map(|r| rfc3339_ms(&r["start"])).collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    assert_eq!(runs[0]["outputTail"], "busy\n");
}

/// A daemon with a job `ok`, an invalid job `bad` and a stopped job `idle`.
fn daemon_with_three_jobs(env: &TestEnv, token: Option<&str>) -> Daemon {
    env.write_job("ok", &env.fake_job("ok", &[], json!({})));
    env.write_job("idle", &env.fake_job("idle", &[], json!({})));
    env.write_job_text("bad", r#"{"ResticArguments": 5}"#);
    let daemon = env.start();
    let stop = match token {
        Some(token) => {
            format!("GET /stop?name=idle HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n")
        }
        None => "GET /stop?name=idle HTTP/1.1\r\n\r\n".to_string(),
    };
    assert_eq!(
        status_of(&raw_http(&daemon.addr, stop.as_bytes()).unwrap()),
        200
    );
    daemon
}

/// The error cases of SPEC §5: a request line, header lines, a body, and
/// the status a client with the right token (or none needed) gets.
fn error_cases() -> Vec<(&'static str, String, &'static str, u16)> {
    let plain = |line, status| (line, String::new(), "", status);
    vec![
        plain("GET /job", 400),
        plain("GET /job?name=", 400),
        plain("GET /stop?name=%zz", 400),
        plain("GET /job?name=%ff%fe", 400),
        plain("GET /job?name=nope", 404),
        plain("POST /trigger?name=nope", 404),
        plain("GET /reload?name=nope", 404),
        plain("GET /job?name=..%2F..%2Fetc%2Fpasswd", 404),
        plain("GET /no-such-path", 404),
        plain("GET /queue/", 404),
        plain("DELETE /queue", 405),
        plain("PUT /trigger?name=ok", 405),
        plain("GET /trigger?name=idle", 409),
        plain("POST /trigger?name=bad", 409),
        plain("GET /restart?name=bad", 409),
        plain("GET /reload?name=bad", 422),
        plain("GET /reload", 422),
        // Refused before anything else is looked at, token or not.
        ("POST /queue", "Content-Length: 65537\r\n".into(), "", 413),
        (
            "POST /queue",
            "Content-Length: 1000000000000\r\n".into(),
            "abc",
            413,
        ),
        (
            "POST /queue",
            "Transfer-Encoding: chunked\r\n".into(),
            "10001\r\n",
            413,
        ),
        (
            "GET /queue",
            format!("X-Big: {}\r\n", "a".repeat(20 * 1024)),
            "",
            431,
        ),
        (
            "GET /queue",
            (0..100).map(|i| format!("X-{i}: 1\r\n")).collect(),
            "",
            431,
        ),
    ]
}

/// Sends every error case with `auth` as the Authorization header.
fn statuses(daemon: &Daemon, auth: Option<&str>) -> Vec<(&'static str, u16)> {
    error_cases()
        .into_iter()
        .map(|(line, headers, body, _)| {
            let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
            let request = format!(
                "{line} HTTP/1.1\r\nHost: {}\r\n{auth}{headers}\r\n{body}",
                daemon.addr
            );
            let answer = raw_http(&daemon.addr, request.as_bytes())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            (line, status_of(&answer))
        })
        .collect()
}

#[test]
fn every_error_status_without_a_token() {
    let env = TestEnv::new();
    let daemon = daemon_with_three_jobs(&env, None);
    let expected: Vec<u16> = error_cases().iter().map(|c| c.3).collect();
    let got = statuses(&daemon, None);
    let got_codes: Vec<u16> = got.iter().map(|g| g.1).collect();
    assert_eq!(got_codes, expected, "{got:?}");
    assert!(env.starts("ok").is_empty(), "no refused request ran a job");
    assert_eq!(daemon.get("/healthz").0, 200);
}

#[test]
fn every_error_status_with_a_token() {
    let env = TestEnv::with_config(json!({"SrvConf": {"Token": "tok-456"}}));
    let daemon = daemon_with_three_jobs(&env, Some("tok-456"));
    let cases = error_cases();
    // With the token: the same answers as a daemon without one.
    let expected: Vec<u16> = cases.iter().map(|c| c.3).collect();
    let got = statuses(&daemon, Some("Bearer tok-456"));
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        expected,
        "{got:?}"
    );
    // Without it, or with a wrong one: 401 for everything the server reads,
    // so a stranger learns nothing about the jobs.
    let refused: Vec<u16> = cases
        .iter()
        .map(|c| if [413, 431].contains(&c.3) { c.3 } else { 401 })
        .collect();
    for auth in [
        None,
        Some("Bearer tok-45"),
        Some("tok-456"),
        Some("Basic tok-456"),
    ] {
        let got = statuses(&daemon, auth);
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            refused,
            "{auth:?}: {got:?}"
        );
    }
    let answer = raw_http(&daemon.addr, b"GET /job?name=ok HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(status_of(&answer), 401);
    assert!(!answer.contains("fake-restic"), "{answer}");
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    assert!(env.starts("ok").is_empty(), "no refused request ran a job");
}

#[test]
fn head_answers_like_get_without_a_body() {
    let env = TestEnv::new();
    env.write_job("ok", &env.fake_job("ok", &[], json!({})));
    let daemon = env.start();
    for path in ["/queue", "/job?name=ok", "/healthz"] {
        let get = raw_http(
            &daemon.addr,
            format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let head = raw_http(
            &daemon.addr,
            format!("HEAD {path} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        assert_eq!(status_of(&head), 200, "{head}");
        assert!(!get_body.is_empty());
        assert!(head.ends_with("\r\n\r\n"), "no body after HEAD: {head:?}");
        let length = format!("Content-Length: {}\r\n", get_body.len());
        assert!(
            get_head.contains(&length) && head.contains(&length),
            "{head}"
        );
    }
    let job = raw_http(&daemon.addr, b"GET /job?name=ok HTTP/1.0\r\n\r\n").unwrap();
    assert!(job.contains("Content-Type: application/json\r\n"), "{job}");
    let done = raw_http(&daemon.addr, b"POST /stop?name=ok HTTP/1.0\r\n\r\n").unwrap();
    assert!(
        done.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{done}"
    );
    assert!(done.ends_with("\r\n\r\nDone\n"), "{done}");
}

#[test]
fn small_bodies_are_read_and_ignored_and_curl_style_continue_works() {
    let env = TestEnv::new();
    env.write_job("ok", &env.fake_job("ok", &[], json!({})));
    let daemon = env.start();
    let body = "x".repeat(60 * 1024);
    let request = format!(
        "POST /trigger?name=ok HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(
        status_of(&raw_http(&daemon.addr, request.as_bytes()).unwrap()),
        200
    );
    daemon.wait_outcome("ok", "success");
    let chunked = "POST /queue HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(
        status_of(&raw_http(&daemon.addr, chunked.as_bytes()).unwrap()),
        200
    );
    // A client that asks before sending its body hears "100 Continue" first.
    let expect = "POST /healthz HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let mut stream = std::net::TcpStream::connect(&daemon.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    use std::io::{Read, Write};
    stream.write_all(expect.as_bytes()).unwrap();
    let mut first = [0; 25];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"abc").unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
}

/// The status of a request for `path` with a `Host` header of our choice
/// (the support client always sends the daemon's address).
fn status_with_host(daemon: &Daemon, path: &str, host: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    status_of(&raw_http(&daemon.addr, request.as_bytes()).unwrap())
}

#[test]
fn pages_on_other_sites_and_ports_cannot_send_commands() {
    let env = TestEnv::new();
    env.write_job("j", &env.fake_job("j", &[], json!({})));
    let daemon = env.start();
    let port: u16 = daemon.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // What a browser sends for <img src=http://ADDR/stop?name=j> on a page
    // served from another port of 127.0.0.1, or from anywhere else.
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    let refused: [&[(&str, &str)]; 6] = [
        &[("Sec-Fetch-Site", "same-site")],
        &[("Sec-Fetch-Site", "same-site"), ("Origin", &other_port)],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Origin", &other_port)],
        &[("Origin", "null")],
        &[
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", "http://evil.example"),
        ],
    ];
    for headers in refused {
        for method in ["GET", "POST"] {
            let (status, body) = http(&daemon.addr, method, "/stop?name=j", headers).unwrap();
            assert_eq!(status, 403, "{method} {headers:?}: {body}");
        }
    }
    // Had any of them stopped j, triggering it would be refused (409).
    assert_eq!(daemon.get("/trigger?name=j").0, 200);
    daemon.wait_outcome("j", "success");
    assert_eq!(daemon.job("j")["status"], "waiting");

    // The user (address bar, bookmark), the status page's own POST, and
    // clients that are not browsers still get through.
    let here = format!("http://{}", daemon.addr);
    let user: &[(&str, &str)] = &[("Sec-Fetch-Site", "none")];
    let page: &[(&str, &str)] = &[("Sec-Fetch-Site", "same-origin"), ("Origin", &here)];
    for headers in [user, page, &[]] {
        assert_eq!(
            http(&daemon.addr, "POST", "/stop?name=j", headers).unwrap(),
            (200, "Done\n".into()),
            "{headers:?}"
        );
        daemon.wait_status("j", "stopped");
        assert_eq!(daemon.get("/restart?name=j").0, 200);
        daemon.wait_status("j", "waiting");
    }
    let (status, body) = http(&daemon.addr, "GET", "/queue", user).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_host_name_that_merely_starts_like_an_address_is_refused_without_a_token() {
    let env = TestEnv::new();
    env.write_job("j", &env.fake_job("j", &[], json!({})));
    let daemon = env.start();
    let port = daemon.addr.rsplit_once(':').unwrap().1;
    // A DNS rebinding page: its name now points at 127.0.0.1.
    for host in [
        "[::1].evil.com".to_string(),
        format!("[::1].evil.com:{port}"),
        format!("[::1]:{port}.evil.com"),
        format!("127.0.0.1:{port}.evil.com"),
        "localhost.evil.com".to_string(),
    ] {
        assert_eq!(
            status_with_host(&daemon, "/stop?name=j", &host),
            403,
            "{host}"
        );
    }
    // Had any of them stopped j, triggering it would be refused (409).
    assert_eq!(daemon.get("/trigger?name=j").0, 200);
    daemon.wait_outcome("j", "success");
    for host in [
        format!("[::1]:{port}"),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "127.0.0.1".to_string(),
    ] {
        assert_eq!(status_with_host(&daemon, "/queue", &host), 200, "{host}");
    }
}

#[test]
fn the_bearer_scheme_name_is_case_insensitive() {
    let env = TestEnv::with_config(json!({"SrvConf": {"Token": "tok-789"}}));
    let daemon = env.start();
    for auth in ["Bearer tok-789", "bearer tok-789", "BEARER tok-789"] {
        let (status, body) =
            http(&daemon.addr, "GET", "/queue", &[("Authorization", auth)]).unwrap();
        assert_eq!(status, 200, "{auth}: {body}");
    }
    for auth in [
        "bearer tok-78",
        "bearer TOK-789",
        "bearertok-789",
        "Basic tok-789",
    ] {
        let (status, _) = http(&daemon.addr, "GET", "/queue", &[("Authorization", auth)]).unwrap();
        assert_eq!(status, 401, "{auth}");
    }
}
