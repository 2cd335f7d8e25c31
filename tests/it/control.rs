//! The control URLs and signals against the real daemon: stop, restart,
//! trigger, remove, reload, error statuses, SIGTERM and SIGHUP.

use serde_json::json;

use crate::support::{TestEnv, http, process_alive};

#[test]
fn stop_interrupts_a_hung_restic_within_the_grace_period() {
    let env = TestEnv::new();
    // The fake ignores SIGINT, so the ladder must go on to SIGTERM after the
    // 300 ms grace.
    env.write_job(
        "hung",
        &env.fake_job("hung", &["ignore-int", "sleep=60"], json!({})),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=hung");
    daemon.wait_status("hung", "working");
    let pid: u32 = daemon.wait_for("the fake to start", |_| {
        env.record_lines("hung")
            .first()
            .map(|w| w[2].parse().unwrap())
    });
    let asked = std::time::Instant::now();
    assert_eq!(daemon.get("/stop?name=hung"), (200, "Done\n".into()));
    let job = daemon.wait_status("hung", "stopped");
    let took = asked.elapsed();
    assert!(
        took.as_millis() >= 300 && took.as_secs() < 5,
        "stopped after {took:?}"
    );
    assert_eq!(job["lastRun"]["outcome"], "stopped");
    daemon.wait_stderr("sending SIGTERM");
    assert!(!process_alive(pid), "restic {pid} is still there");
    // A stopped job refuses triggers, and /stop again is fine.
    assert_eq!(daemon.get("/trigger?name=hung").0, 409);
    assert_eq!(daemon.get("/stop?name=hung").0, 200);
}

#[test]
fn restart_applies_the_start_rules_again() {
    let env = TestEnv::new();
    env.write_job("r", &env.fake_job("r", &[], json!({"regularTimer": "1h"})));
    let daemon = env.start();
    daemon.wait_outcome("r", "success");
    assert_eq!(daemon.get("/stop?name=r").0, 200);
    let stopped = daemon.wait_status("r", "stopped");
    assert!(stopped["nextRun"].is_null());
    assert_eq!(daemon.get("/restart?name=r").0, 200);
    let job = daemon.wait_status("r", "waiting");
    // The state file says the next slot is an hour away: no new run.
    assert!(job["nextRun"].is_string(), "{job}");
    assert_eq!(env.starts("r").len(), 1);
    assert_eq!(daemon.get("/trigger?name=r").0, 200);
    daemon.wait_for("a second run", |_| {
        (env.starts("r").len() == 2).then_some(())
    });
}

#[test]
fn unknown_jobs_missing_names_and_unknown_paths_get_clear_statuses() {
    let env = TestEnv::new();
    env.write_job("a", &env.fake_job("a", &[], json!({})));
    let daemon = env.start();
    for path in ["/stop", "/restart", "/trigger", "/remove"] {
        assert_eq!(
            daemon.get(path),
            (400, "missing parameter: name\n".into()),
            "{path}"
        );
        assert_eq!(
            daemon.get(&format!("{path}?name=nope")),
            (404, "No such Job\n".into())
        );
    }
    assert_eq!(daemon.get("/reload?name=nope").0, 404);
    assert_eq!(daemon.get("/nothing-here").0, 404);
    assert_eq!(daemon.get("/stop?name=%zz").0, 400);
    assert_eq!(daemon.request("DELETE", "/queue").0, 405);
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    // POST works like GET, and the daemon still serves.
    assert_eq!(
        daemon.request("POST", "/trigger?name=a"),
        (200, "Done\n".into())
    );
    daemon.wait_outcome("a", "success");
}

#[test]
fn remove_drops_a_job_until_the_next_reload() {
    let env = TestEnv::new();
    env.write_job("gone", &env.fake_job("gone", &[], json!({})));
    env.write_job("kept", &env.fake_job("kept", &[], json!({})));
    let daemon = env.start();
    assert_eq!(daemon.get("/remove?name=gone"), (200, "Done\n".into()));
    let names: Vec<String> = daemon.queue()["Jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["JobName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(daemon.get("/trigger?name=gone").0, 404);
    let (status, body) = daemon.get("/reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 added"), "{body}");
    assert_eq!(daemon.job("gone")["status"], "waiting");
}

#[test]
fn reload_of_one_job_applies_a_valid_file_and_keeps_the_old_one_otherwise() {
    let env = TestEnv::new();
    env.write_job("j", &env.fake_job("j", &["out=first"], json!({})));
    let daemon = env.start();
    // Broken file: 422 with file, line and column; the old definition stays.
    env.write_job_text("j", "{\n  \"JobName\": \"j\",\n  \"ResticArguments\": [\n}");
    let (status, body) = daemon.get("/reload?name=j");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("j.json:4:1: not valid JSON"), "{body}");
    daemon.get("/trigger?name=j");
    daemon.wait_outcome("j", "success");
    assert!(env.record_lines("j")[0].contains(&"out=first".to_string()));
    // A fixed file is applied.
    env.write_job(
        "j",
        &env.fake_job("j", &["out=second"], json!({"regularTimer": "2h"})),
    );
    assert_eq!(daemon.get("/reload?name=j"), (200, "Done\n".into()));
    let job = daemon.wait_for("the new definition", |d| {
        let job = d.job("j");
        (job["regularTimer"] == 7_200_000_000_000_i64).then_some(job)
    });
    assert_eq!(job["ResticArguments"][1], "out=second");
}

#[test]
fn reload_all_is_all_or_nothing() {
    let env = TestEnv::new();
    env.write_job("stay", &env.fake_job("stay", &[], json!({})));
    env.write_job("change", &env.fake_job("change", &[], json!({})));
    env.write_job("drop", &env.fake_job("drop", &[], json!({})));
    let daemon = env.start();
    env.write_job("change", &env.fake_job("change", &["out=new"], json!({})));
    std::fs::remove_file(env.jobs.join("drop.json")).unwrap();
    env.write_job("new", &env.fake_job("new", &[], json!({})));
    env.write_job_text("broken", "{\"ResticArguments\": 5}");
    let (status, body) = daemon.get("/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("broken.json") && body.contains("ResticArguments"),
        "{body}"
    );
    // Nothing changed.
    assert_eq!(daemon.queue()["Jobs"].as_array().unwrap().len(), 3);
    assert_eq!(
        daemon.job("change")["ResticArguments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    std::fs::remove_file(env.jobs.join("broken.json")).unwrap();
    let (status, body) = daemon.get("/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("1 added, 1 changed, 1 removed, 1 unchanged"),
        "{body}"
    );
    let names: Vec<String> = daemon.queue()["Jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["JobName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["change", "new", "stay"]);
    assert_eq!(daemon.job("change")["ResticArguments"][1], "out=new");
}

#[test]
fn sighup_reloads_the_job_directory() {
    let env = TestEnv::new();
    env.write_job("first", &env.fake_job("first", &[], json!({})));
    let daemon = env.start();
    env.write_job("second", &env.fake_job("second", &[], json!({})));
    daemon.signal(libc::SIGHUP);
    daemon.wait_for("the new job", |d| {
        (d.queue()["Jobs"].as_array().unwrap().len() == 2).then_some(())
    });
}

#[test]
fn sigterm_stops_restic_persists_and_exits_cleanly() {
    let env = TestEnv::new();
    env.write_job(
        "busy",
        &env.fake_job("busy", &["sleep=60"], json!({"regularTimer": "1h"})),
    );
    let daemon = env.start();
    daemon.wait_status("busy", "working");
    let pid: u32 = daemon.wait_for("the fake to start", |_| {
        env.record_lines("busy")
            .first()
            .map(|w| w[2].parse().unwrap())
    });
    let stderr = daemon.stderr();
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!process_alive(pid), "restic {pid} outlived the daemon");
    // The interrupted run did not count, so the next start runs it again.
    let daemon = env.start();
    daemon.wait_for("the run to start again", |_| {
        (env.starts("busy").len() == 2).then_some(())
    });
}

#[test]
fn stopall_stops_every_job_and_the_daemon_keeps_serving() {
    let env = TestEnv::new();
    env.write_job("a", &env.fake_job("a", &["sleep=60"], json!({})));
    env.write_job("b", &env.fake_job("b", &[], json!({"regularTimer": "1h"})));
    let daemon = env.start();
    daemon.get("/trigger?name=a");
    daemon.wait_status("a", "working");
    assert_eq!(daemon.get("/stopall"), (200, "Done\n".into()));
    daemon.wait_status("a", "stopped");
    daemon.wait_status("b", "stopped");
    assert_eq!(daemon.get("/healthz").0, 200);
    assert_eq!(daemon.get("/restart?name=b").0, 200);
    daemon.wait_status("b", "waiting");
}

#[test]
fn a_token_guards_the_api_and_cross_site_requests_are_refused() {
    let env = TestEnv::new();
    let token_file = env.dir.path().join("token");
    std::fs::write(&token_file, "  tok-123\n").unwrap();
    let config = json!({
        "StateDir": env.state, "LogConf": {"LogDir": env.logs},
        "SrvConf": {"TokenFile": token_file},
    });
    std::fs::write(&env.config, config.to_string()).unwrap();
    env.write_job("a", &env.fake_job("a", &[], json!({})));
    let daemon = env.start();
    let get =
        |path: &str, headers: &[(&str, &str)]| http(&daemon.addr, "GET", path, headers).unwrap().0;
    assert_eq!(get("/queue", &[]), 401);
    assert_eq!(
        get("/trigger?name=a", &[("Authorization", "Bearer tok-12")]),
        401
    );
    assert_eq!(get("/healthz", &[]), 200);
    let auth = ("Authorization", "Bearer tok-123");
    assert_eq!(get("/queue", &[auth]), 200);
    assert_eq!(
        get("/trigger?name=a", &[auth, ("Sec-Fetch-Site", "cross-site")]),
        403
    );
    assert_eq!(
        get(
            "/trigger?name=a",
            &[auth, ("Origin", "http://evil.example")]
        ),
        403
    );
    assert!(env.starts("a").is_empty(), "refused requests ran nothing");
    let origin = format!("http://{}", daemon.addr);
    assert_eq!(get("/trigger?name=a", &[auth, ("Origin", &origin)]), 200);
    daemon.wait_for("the run", |_| (env.starts("a").len() == 1).then_some(()));
    assert!(
        !daemon.stderr().contains("tok-123"),
        "the token is never logged"
    );
}

#[test]
fn a_daemon_killed_with_sigkill_takes_its_restic_with_it() {
    let env = TestEnv::new();
    env.write_job(
        "orphan",
        &env.fake_job("orphan", &["exec-sleep=60"], json!({})),
    );
    let mut daemon = env.start();
    daemon.get("/trigger?name=orphan");
    let pid: u32 = daemon.wait_for("the fake to start", |_| {
        env.record_lines("orphan")
            .first()
            .map(|w| w[2].parse().unwrap())
    });
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit();
    daemon.wait_for("restic to end", |_| (!process_alive(pid)).then_some(()));
}

#[test]
fn without_an_http_server_the_daemon_sleeps() {
    let env = TestEnv::new();
    env.write_job("a", &env.fake_job("a", &[], json!({"regularTimer": "1h"})));
    let mut daemon = std::process::Command::new(&*crate::support::DAEMON)
        .arg("--config")
        .arg(&env.config)
        .arg(&env.jobs)
        .arg("")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The job's first run shows that the daemon is up.
    let started = std::time::Instant::now();
    while env.spans("a").is_empty() && started.elapsed() < crate::support::PATIENCE {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // utime and stime, in clock ticks (1/100 s).
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let used = cpu() - before;
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = daemon.wait().unwrap();
    assert!(used <= 5, "{used} ticks of CPU in 0.5 s of idling");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_daemonized_grandchild_holding_the_output_does_not_hang_the_job() {
    let env = TestEnv::new();
    // The fake exits at once but leaves a `sleep` outside its process
    // group with the pipes open: the run must end anyway.
    env.write_job(
        "leaky",
        &env.fake_job("leaky", &["setsid-sleep=30"], json!({})),
    );
    let daemon = env.start();
    daemon.get("/trigger?name=leaky");
    let job = daemon.wait_outcome("leaky", "success");
    assert_eq!(job["lastRun"]["exitCode"], 0);
    daemon.wait_stderr("keeps its output open");
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn reloading_a_stopped_job_keeps_it_stopped_and_a_new_schedule_counts_at_once() {
    let env = TestEnv::new();
    env.write_job("s", &env.fake_job("s", &[], json!({"regularTimer": "24h"})));
    env.write_job("t", &env.fake_job("t", &[], json!({"regularTimer": "24h"})));
    let daemon = env.start();
    daemon.wait_outcome("s", "success");
    daemon.wait_outcome("t", "success");
    assert_eq!(daemon.get("/stop?name=s").0, 200);
    daemon.wait_status("s", "stopped");
    env.write_job(
        "s",
        &env.fake_job("s", &["out=v2"], json!({"regularTimer": "24h"})),
    );
    assert_eq!(daemon.get("/reload?name=s").0, 200);
    let job = daemon.wait_for("the new definition", |d| {
        let job = d.job("s");
        (job["ResticArguments"][1] == "out=v2").then_some(job)
    });
    assert_eq!(job["status"], "stopped", "{job}");
    // A shorter interval counts from now, not from the old day-long slot.
    env.write_job("t", &env.fake_job("t", &[], json!({"regularTimer": "1h"})));
    let before = crate::support::now_ms();
    assert_eq!(daemon.get("/reload?name=t").0, 200);
    daemon.wait_for("the next run within the new hour", |d| {
        let job = d.job("t");
        let next = job["nextRun"]
            .as_str()
            .map(|_| crate::support::rfc3339_ms(&job["nextRun"]));
        next.filter(|next| *next <= before + 3_600_000 + 5_000)
    });
}

#[test]
fn a_foreign_host_name_is_refused_without_a_token() {
    // DNS rebinding: a page whose name now points at 127.0.0.1 sends a
    // same-origin request that names its own host.
    let env = TestEnv::new();
    env.write_job("a", &env.fake_job("a", &[], json!({})));
    let daemon = env.start();
    let port = daemon.addr.rsplit(':').next().unwrap().to_string();
    let evil = format!("attacker.example:{port}");
    let origin = format!("http://{evil}");
    let headers = [
        ("Host", evil.as_str()),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let (status, body) = raw_request(&daemon.addr, "POST", "/stopall", &headers);
    assert_eq!(status, 403, "{body}");
    assert_eq!(daemon.job("a")["status"], "waiting");
    let local = format!("localhost:{port}");
    assert_eq!(
        raw_request(&daemon.addr, "GET", "/queue", &[("Host", local.as_str())]).0,
        200
    );
    assert_eq!(daemon.request("HEAD", "/stopall").0, 405, "HEAD never acts");
    assert_eq!(daemon.job("a")["status"], "waiting");
}

/// A request with exactly these headers (no default Host).
fn raw_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[test]
fn a_renamed_job_is_a_new_job_whichever_reload_finds_it() {
    let env = TestEnv::new();
    env.write_job(
        "file",
        &env.fake_job("old-name", &[], json!({"regularTimer": "1h"})),
    );
    let daemon = env.start();
    daemon.wait_outcome("old-name", "success");
    env.write_job(
        "file",
        &env.fake_job("new-name", &[], json!({"regularTimer": "1h"})),
    );
    assert_eq!(daemon.get("/reload?name=old-name").0, 200);
    // A new job: it has no state file of its own, so it runs at once, and
    // the old name is gone.
    daemon.wait_outcome("new-name", "success");
    assert_eq!(daemon.get("/trigger?name=old-name").0, 404);
    assert!(env.state_file("new-name").exists() && env.state_file("old-name").exists());
}
