//! The status page at `/`: what the server sends and who gets it, with the
//! first state inlined; then the page itself in Debian's headless chromium:
//! twenty jobs on a laptop and a phone, a row opened on its runs, and its
//! buttons driving the API.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::chromium::{self, Browser};
use crate::support::{Daemon, TestEnv, http, raw_http, status_of};

const TOKEN: &str = "page+token/=1";
/// [`TOKEN`] percent-encoded for a URL.
const TOKEN_IN_URL: &str = "page%2Btoken%2F%3D1";

fn with_token() -> TestEnv {
    TestEnv::with_config(json!({"SrvConf": {"Token": TOKEN}}))
}

/// The head (lowercase) and the body of a raw answer.
fn split(answer: &str) -> (String, &str) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    (head.to_ascii_lowercase(), body)
}

#[test]
fn the_page_is_one_html_document_that_loads_nothing_else() {
    let env = TestEnv::new();
    let daemon = env.start();
    let answer = raw_http(&daemon.addr, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(status_of(&answer), 200, "{answer}");
    let (head, page) = split(&answer);
    assert!(
        head.contains("\r\ncontent-type: text/html; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("connect-src 'self'"), "{head}");
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.trim_end().ends_with("</html>"));
    let lowercase = page.to_ascii_lowercase();
    // No external assets: no absolute URL, nothing loaded from anywhere;
    // the one link is the empty icon, so the browser asks for no favicon.
    for external in ["http://", "https://", "src=", "@import", "url("] {
        assert!(!lowercase.contains(external), "{external} in the page");
    }
    assert_eq!(lowercase.matches("href=").count(), 1);
    assert!(lowercase.contains("<link rel=\"icon\" href=\"data:,\">"));
    assert!(lowercase.contains("<script>") && lowercase.contains("<style>"));

    let head_answer = raw_http(&daemon.addr, b"HEAD / HTTP/1.1\r\n\r\n").unwrap();
    let length = format!("content-length: {}\r\n", page.len());
    assert!(split(&head_answer).0.contains(&length), "{head_answer}");
    assert!(head_answer.ends_with("\r\n\r\n"), "no body after HEAD");
    // Other answers keep their types and get none of the page's headers.
    let queue = raw_http(&daemon.addr, b"GET /queue HTTP/1.1\r\n\r\n").unwrap();
    assert!(
        split(&queue)
            .0
            .contains("content-type: application/json\r\n")
    );
    assert!(!split(&queue).0.contains("content-security-policy"));
    assert_eq!(daemon.get("/index.html").0, 404);
}

#[test]
fn the_page_takes_the_token_from_its_url_and_nothing_else_does() {
    let env = with_token();
    env.write_job("ok", &env.fake_job("ok", &[], json!({})));
    let daemon = env.start();
    let status =
        |path: &str, headers: &[(&str, &str)]| http(&daemon.addr, "GET", path, headers).unwrap().0;
    let (refused, message) = daemon.get("/");
    assert_eq!(refused, 401);
    assert!(message.contains("/?token="), "{message}");
    assert_eq!(status("/?token=wrong", &[]), 401);
    assert_eq!(status("/?token=page+token/=1", &[]), 401, "+ means a space");
    let url = format!("/?token={TOKEN_IN_URL}");
    assert_eq!(status(&url, &[]), 200);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(status("/", &[("Authorization", &bearer)]), 200);
    // Only the page: the API still wants the header.
    assert_eq!(status(&format!("/queue?token={TOKEN_IN_URL}"), &[]), 401);
    assert_eq!(
        status(&format!("/trigger?name=ok&token={TOKEN_IN_URL}"), &[]),
        401
    );
    // A page elsewhere that links or frames this one is refused, token or not.
    assert_eq!(status(&url, &[("Sec-Fetch-Site", "cross-site")]), 403);
    assert!(env.starts("ok").is_empty());

    // What the page's own buttons send: a POST with the header, the
    // browser's Origin (this server) and Sec-Fetch-Site.
    let origin = format!("http://{}", daemon.addr);
    let same_origin = [
        ("Authorization", bearer.as_str()),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let (code, body) = http(&daemon.addr, "POST", "/trigger?name=ok", &same_origin).unwrap();
    assert_eq!((code, body.as_str()), (200, "Done\n"));
    daemon.wait_for("the run", |_| (env.spans("ok").len() == 1).then_some(()));
}

#[test]
fn the_token_in_the_page_url_is_not_logged() {
    let env = with_token();
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(&env.config).unwrap()).unwrap();
    config["LogConf"]["Level"] = "debug".into();
    fs::write(&env.config, config.to_string()).unwrap();
    let daemon = env.start();
    assert_eq!(daemon.get(&format!("/?token={TOKEN_IN_URL}")).0, 200);
    assert_eq!(daemon.get(&format!("/?x=1&token={TOKEN_IN_URL}")).0, 200);
    let log_file = env.logs.join("restic-cronned.log");
    // The log file and stderr get the line at about the same time, but our
    // reader of the daemon's stderr may lag a little: wait for both.
    daemon.wait_for("the request in the log and on stderr", |d| {
        let log = fs::read_to_string(&log_file).unwrap_or_default();
        let line = "GET /?x=1&token=<hidden>";
        (log.contains(line) && d.stderr().contains(line)).then_some(())
    });
    let stderr = daemon.stderr();
    let log = fs::read_to_string(&log_file).unwrap();
    for text in [&stderr, &log] {
        assert!(text.contains("GET /?token=<hidden>"), "{text}");
        assert!(
            !text.contains(TOKEN_IN_URL) && !text.contains(TOKEN),
            "{text}"
        );
    }
}

/// Jobs in every state the page shows: calendar and interval schedules,
/// success, warning and failure, one running, one stopped, one invalid.
fn varied_jobs(env: &TestEnv) -> Daemon {
    env.write_job(
        "home",
        &env.fake_job("home", &[], json!({"regularTimer": "30 3 * * *"})),
    );
    env.write_job(
        "laptop",
        &env.fake_job(
            "laptop",
            &["exit=3", "err=could not read /home/me/.cache/lock"],
            json!({"regularTimer": "1d"}),
        ),
    );
    env.write_job(
        "offsite",
        &env.fake_job(
            "offsite",
            &["exit=1", "err=Fatal: unable to open repository"],
            json!({"regularTimer": "6h", "retryTimer": "1h", "maxFailedRetries": 3}),
        ),
    );
    // The status line feeds `progress` where restic's --json output is read.
    env.write_job(
        "photos",
        &env.fake_job(
            "photos",
            &[
                "--json",
                r#"out={"message_type":"status","percent_done":0.42}"#,
                "exec-sleep=60",
            ],
            json!({}),
        ),
    );
    env.write_job(
        "prune",
        &env.fake_job("prune", &[], json!({"regularTimer": "@weekly"})),
    );
    env.write_job_text(
        "zz-old",
        r#"{"regularTimer": "every tuesday", "ResticArguments": ["backup"]}"#,
    );
    let daemon = env.start();
    post(&daemon, "/trigger?name=photos");
    daemon.wait_for("the runs at start and the trigger", |d| {
        let ended = |name: &str, outcome: &str| {
            let job = job(d, name);
            job["lastRun"]["outcome"] == outcome && job["status"] == "waiting"
        };
        (ended("home", "success")
            && ended("laptop", "warning")
            && ended("offsite", "failure")
            && ended("prune", "success")
            && job(d, "photos")["status"] == "working")
            .then_some(())
    });
    post(&daemon, "/stop?name=prune");
    daemon.wait_for("prune to stop", |d| {
        (job(d, "prune")["status"] == "stopped").then_some(())
    });
    daemon
}

/// Sends `path` to a daemon that wants [`TOKEN`], which must answer 200.
fn post(daemon: &Daemon, path: &str) {
    let bearer = format!("Bearer {TOKEN}");
    let answer = http(&daemon.addr, "POST", path, &[("Authorization", &bearer)]);
    assert_eq!(answer.unwrap().0, 200, "{path}");
}

/// `/queue` from a daemon that wants [`TOKEN`].
fn queue(daemon: &Daemon) -> Value {
    let bearer = format!("Bearer {TOKEN}");
    let body = http(&daemon.addr, "GET", "/queue", &[("Authorization", &bearer)])
        .unwrap()
        .1;
    serde_json::from_str(&body).unwrap()
}

/// The `/queue` entry of `name` from a daemon that wants [`TOKEN`].
fn job(daemon: &Daemon, name: &str) -> Value {
    let queue = queue(daemon);
    let jobs = queue["Jobs"].as_array().unwrap();
    let job = jobs.iter().find(|j| j["JobName"] == name);
    job.unwrap_or_else(|| panic!("no {name} in {queue}"))
        .clone()
}

/// The part of the dumped DOM that shows job `name`: its row, and its
/// details, which hold no runs until the row is opened.
fn card<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-job=\"{name}\""))
        .unwrap_or_else(|| panic!("no card for {name} in\n{dom}"));
    let end = dom[start..].find("</li>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The element of `card` whose opening tag starts with `<span class="CLASS"`
/// (`cell next`, `error`, …): its attributes and its text.
fn span_in(card: &str, class: &str) -> (String, String) {
    let open = format!("<span class=\"{class}\"");
    let start = card
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in {card}"));
    let rest = &card[start..];
    let attributes = rest[..rest.find('>').unwrap()].to_string();
    // Cells hold at most one level of spans (the outcome and its time; the
    // progress bar and its percentage).
    let mut depth = 0;
    let mut end = 0;
    for (i, _) in rest.match_indices('<') {
        if rest[i..].starts_with("</span>") {
            depth -= 1;
            if depth == 0 {
                end = i;
                break;
            }
        } else if rest[i..].starts_with("<span") {
            depth += 1;
        }
    }
    (attributes, text_of(&rest[..end]))
}

/// The text of some HTML: tags left out, entities read.
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The summary line of a dumped page.
fn summary_of(dom: &str) -> String {
    let start = dom
        .find("<p id=\"summary\"")
        .unwrap_or_else(|| panic!("no summary in {dom}"));
    let end = start + dom[start..].find("</p>").unwrap();
    text_of(&dom[start..end])
}

#[test]
fn chromium_renders_every_job_from_the_queue() {
    let env = with_token();
    let daemon = varied_jobs(&env);
    let url = page_url(&daemon);
    // No virtual time budget: the first state comes with the page.
    let dom = chromium::run(&["--dump-dom"], &url);
    assert_eq!(
        summary_of(&dom),
        "6 jobs: 1 ok, 1 failing, 1 warning, 1 running, 1 stopped, 1 invalid"
    );

    let home = card(&dom, "home");
    assert!(home.contains("data-status=\"waiting\">waiting<"), "{home}");
    assert_eq!(span_in(home, "cell schedule").1, "30 3 * * *");
    let (last, said) = span_in(home, "cell last");
    assert!(last.contains("data-outcome=\"success\""), "{last}");
    assert!(last.contains("exit 0"), "the exit code on hover: {last}");
    assert!(
        said.starts_with("success ") && said.ends_with(" ago"),
        "{said}"
    );
    assert!(span_in(home, "cell next").1.starts_with("in "), "{home}");
    assert!(!home.contains("<progress"), "{home}");

    let laptop = card(&dom, "laptop");
    assert!(span_in(laptop, "cell last").1.starts_with("warning "));
    assert!(span_in(laptop, "cell last").0.contains("exit 3"));
    assert_eq!(span_in(laptop, "cell schedule").1, "every 1d");

    let offsite = card(&dom, "offsite");
    assert!(span_in(offsite, "cell last").1.starts_with("failure "));
    assert_eq!(span_in(offsite, "cell fails").1, "1");
    let error = job(&daemon, "offsite")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(span_in(offsite, "error").1, error);

    let photos = card(&dom, "photos");
    assert!(photos.contains("data-status=\"working\""), "{photos}");
    let (_, next) = span_in(photos, "cell next");
    assert!(photos.contains("<progress"), "a progress bar: {photos}");
    assert_eq!(next, " 42 %");
    assert_eq!(span_in(photos, "cell schedule").1, "only when triggered");

    let prune = card(&dom, "prune");
    assert!(prune.contains("data-status=\"stopped\""), "{prune}");
    assert_eq!(span_in(prune, "cell schedule").1, "@weekly");
    assert_eq!(span_in(prune, "cell next").1, "—");

    let old = card(&dom, "zz-old");
    assert!(old.contains("data-status=\"invalid\""), "{old}");
    assert!(
        span_in(old, "error").1.contains("every tuesday"),
        "the validation error: {old}"
    );
    for name in ["home", "laptop", "offsite", "photos", "prune", "zz-old"] {
        let buttons = card(&dom, name).matches("<button").count();
        assert_eq!(buttons, 3, "trigger, stop and restart for {name}");
    }

    // For the README: RC_STATUS_PAGE_SCREENSHOT=$PWD/scripts/status-page.png
    // (scripts/screenshots/take makes the v2 ones).
    if let Ok(path) = std::env::var("RC_STATUS_PAGE_SCREENSHOT") {
        let screenshot = format!("--screenshot={path}");
        chromium::run(
            &["--hide-scrollbars", "--window-size=1280,400", &screenshot],
            &url,
        );
    }
    daemon.terminate();
}

/// A job name no HTML may be built from: the page must show it as text.
const HOSTILE: &str = "<img src=x onerror=document.title='pwned'>";

/// A job error that tries to end the data block that carries it into the
/// page, and to run a script of its own.
const BREAKOUT: &str = "</script><script>alert(1);document.title='pwned'</script><!--<script>-->";

/// The error of `c-failing` in [`twenty_jobs`]: long enough to wrap on any
/// screen, and shown in full.
const LONG_ERROR: &str = "restic exited with 1: Fatal: unable to open config file: \
     Stat: b2_download_file_by_name: 401: The B2 application key was revoked or has \
     expired; create a new key and update Env.B2_ACCOUNT_KEY in c-failing.json (the \
     key that ends in 7f3a was last used three days ago, from this host)";

/// What the page says about [`twenty_jobs`].
const TWENTY_SUMMARY: &str =
    "20 jobs: 12 ok, 3 failing, 1 warning, 1 running, 1 stopped, 1 invalid, 1 not run yet";

/// A finished run as the history keeps it (SPEC §6.6): it started `ago`
/// seconds before now and took `took` seconds; `more` adds keys.
fn past_run(ago: i64, took: i64, outcome: &str, error: Option<&str>, more: Value) -> Value {
    let now = jiff::Timestamp::now();
    let at = |seconds: i64| {
        now.checked_sub(jiff::SignedDuration::from_secs(seconds))
            .unwrap()
            .to_string()
    };
    let exit_code = match outcome {
        "success" => Some(0),
        "warning" => Some(3),
        _ => Some(1),
    };
    let mut run = json!({
        "start": at(ago), "end": at(ago - took), "reason": "schedule",
        "outcome": outcome, "exitCode": exit_code, "error": error, "outputTail": "",
    });
    for (k, v) in more.as_object().unwrap() {
        run[k] = v.clone();
    }
    run
}

/// A hook of a run, as its record keeps it.
fn hook(name: &str, exit_code: i32, seconds: f64, error: Option<&str>) -> Value {
    json!({"hook": name, "exitCode": exit_code, "duration": seconds, "error": error})
}

/// Writes `runs` (oldest first) as the history of `name`, as if the daemon
/// had run them before a restart.
fn write_history(env: &TestEnv, name: &str, runs: &[Value]) {
    let dir = env.state.join("history");
    fs::create_dir_all(&dir).unwrap();
    for private in [&env.state, &dir] {
        fs::set_permissions(private, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let path = dir.join(format!("{name}.jsonl"));
    let lines: String = runs.iter().map(|run| format!("{run}\n")).collect();
    fs::write(&path, lines).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A state file that makes `name` wait a day, with `failures` failed runs in
/// a row.
fn wait_a_day(env: &TestEnv, name: &str, failures: u32) {
    let tomorrow = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap();
    let state = json!({"NextTrigger": tomorrow.to_string(), "ConsecutiveFailures": failures});
    env.write_state(name, &state.to_string());
}

/// Twenty jobs, most of them with a past read from their history and a
/// deadline tomorrow, so that nothing runs but `a-working` (due at start:
/// it has no state file; 50 % done and going on) and `b-waits` (triggered,
/// waiting for a-working's repository). Three fail (`c-failing` with
/// [`LONG_ERROR`] and hooks, `d-hostile` with [`BREAKOUT`], `e-locked`), one
/// warns, one is stopped, one invalid, one has never run, eleven are fine.
fn twenty_jobs(env: &TestEnv) -> Daemon {
    let every_day = json!({"regularTimer": "1d"});
    let fine = |ago| past_run(ago, 30, "success", None, json!({}));
    let progress = r#"out={"message_type":"status","percent_done":0.5}"#;
    let args = ["-r", "/srv/repo-a", "--json", progress, "exec-sleep=60"];
    env.write_job(
        "a-working",
        &env.fake_job("a-working", &args, every_day.clone()),
    );
    env.write_job(
        "b-waits",
        &env.fake_job("b-waits", &["-r", "/srv/repo-a"], every_day.clone()),
    );
    write_history(env, "b-waits", &[fine(5000)]);
    wait_a_day(env, "b-waits", 0);

    env.write_job(
        "c-failing",
        &env.fake_job("c-failing", &["exit=1"], every_day.clone()),
    );
    let failed_hooks = json!([
        hook("Before", 0, 0.3, None),
        hook(
            "OnFailure",
            2,
            0.1,
            Some("exited with 2: mail: cannot send")
        ),
    ]);
    write_history(
        env,
        "c-failing",
        &[
            past_run(
                7200,
                95,
                "success",
                None,
                json!({"hooks": [hook("Before", 0, 0.3, None)],
                       "outputTail": "snapshot 1f2e3d4c saved\n"}),
            ),
            past_run(
                3600,
                12,
                "failure",
                Some(LONG_ERROR),
                json!({"hooks": failed_hooks,
                       "outputTail": "open repository\nFatal: unable to open config file\n"}),
            ),
        ],
    );
    wait_a_day(env, "c-failing", 2);
    for (name, outcome, error) in [
        ("d-hostile", "failure", BREAKOUT),
        (
            "e-locked",
            "locked",
            "repository is locked by PID 7 on nas by backup",
        ),
        (
            "f-warning",
            "warning",
            "some files could not be read: /home/f/lock",
        ),
    ] {
        env.write_job(name, &env.fake_job(name, &[], every_day.clone()));
        write_history(
            env,
            name,
            &[
                fine(9000),
                past_run(4000, 20, outcome, Some(error), json!({})),
            ],
        );
        wait_a_day(env, name, (outcome != "warning").into());
    }
    env.write_job(
        "g-stopped",
        &env.fake_job("g-stopped", &[], every_day.clone()),
    );
    write_history(env, "g-stopped", &[fine(3000)]);
    wait_a_day(env, "g-stopped", 0);
    env.write_job_text(
        "h-invalid",
        r#"{"regularTimer": "every tuesday", "ResticArguments": ["backup"]}"#,
    );
    env.write_job("i-new", &env.fake_job("i-new", &[], every_day.clone()));
    wait_a_day(env, "i-new", 0);
    for i in 1..=11 {
        let name = format!("ok-{i:02}");
        env.write_job(&name, &env.fake_job(&name, &[], every_day.clone()));
        write_history(env, &name, &[fine(90_000), fine(3000 + 100 * i)]);
        wait_a_day(env, &name, 0);
    }

    let daemon = env.start();
    daemon.wait_for("a-working to run", |d| {
        let working = job(d, "a-working");
        (working["status"] == "working" && working["progress"] == 0.5).then_some(())
    });
    post(&daemon, "/trigger?name=b-waits");
    post(&daemon, "/stop?name=g-stopped");
    daemon.wait_for("b-waits to wait and g-stopped to stop", |d| {
        (job(d, "b-waits")["WaitingFor"] == "a-working"
            && job(d, "g-stopped")["status"] == "stopped")
            .then_some(())
    });
    // Each job's thread reads its history right after the start.
    daemon.wait_for("every history to be read", |d| {
        (1..=11)
            .all(|i| !job(d, &format!("ok-{i:02}"))["lastRun"].is_null())
            .then_some(())
    });
    daemon
}

/// The page's URL on `daemon`, which wants [`TOKEN`].
fn page_url(daemon: &Daemon) -> String {
    format!("http://{}/?token={TOKEN_IN_URL}", daemon.addr)
}

#[test]
fn the_first_state_is_inlined_and_job_data_cannot_end_its_script() {
    let env = with_token();
    env.write_job(
        "hostile",
        &env.fake_job("hostile", &[], json!({"regularTimer": "1d"})),
    );
    write_history(
        &env,
        "hostile",
        &[past_run(600, 5, "failure", Some(BREAKOUT), json!({}))],
    );
    wait_a_day(&env, "hostile", 1);
    env.write_job_text(HOSTILE, r#"{"ResticArguments": ["backup"]}"#);
    let daemon = env.start();
    // Each job's thread reads its history right after the start.
    daemon.wait_for("the history to be read", |d| {
        (job(d, "hostile")["error"] == BREAKOUT).then_some(())
    });
    let bearer = format!("Bearer {TOKEN}");
    let (status, page) = http(&daemon.addr, "GET", "/", &[("Authorization", &bearer)]).unwrap();
    assert_eq!(status, 200, "{page}");

    // The HTML parser ends a script at the first `</script`, whatever JSON
    // says: that must be the data block's own end.
    let slot = "<script type=\"application/json\" id=\"queue\">";
    assert_eq!(page.matches(slot).count(), 1, "{page}");
    let start = page.find(slot).unwrap() + slot.len();
    let length = page[start..].to_ascii_lowercase().find("</script").unwrap();
    let data = &page[start..start + length];
    assert!(!data.contains('<'), "{data}");
    assert!(!data.is_empty(), "no data in the page");
    let inlined: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
    assert_eq!(inlined, queue(&daemon), "the page has /queue's data");
    let names: Vec<&Value> = inlined["Jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["JobName"])
        .collect();
    assert_eq!(names, [HOSTILE, "hostile"]);
    assert_eq!(job(&daemon, "hostile")["error"], BREAKOUT);
    // The data block and the page's script, and nothing else.
    assert_eq!(page.to_ascii_lowercase().matches("<script").count(), 2);
    daemon.terminate();
}

#[test]
fn chromium_draws_twenty_jobs_with_the_page_before_any_request() {
    let env = with_token();
    let daemon = twenty_jobs(&env);
    // No virtual time budget: chromium prints the DOM once the page has
    // loaded, before the page's own first request could be answered.
    let dom = chromium::run(
        &["--window-size=1280,800", "--dump-dom"],
        &page_url(&daemon),
    );
    assert_eq!(summary_of(&dom), TWENTY_SUMMARY);
    assert_eq!(dom.matches("<li class=\"job\"").count(), 20);

    // Errors in full, as text.
    let failing = card(&dom, "c-failing");
    let (error, text) = span_in(failing, "error");
    assert_eq!(text, LONG_ERROR);
    assert!(!error.contains("hidden"), "{error}");
    assert_eq!(span_in(failing, "cell fails").1, "2");
    assert!(span_in(failing, "cell last").1.starts_with("failure "));
    assert!(span_in(failing, "cell success").1.ends_with(" ago"));
    assert_eq!(span_in(card(&dom, "d-hostile"), "error").1, BREAKOUT);
    assert!(dom.contains("<title>restic-cronned</title>"), "{dom}");
    assert_eq!(dom.matches("<script").count(), 2, "{dom}");
    assert!(
        span_in(card(&dom, "e-locked"), "cell last")
            .1
            .starts_with("locked ")
    );
    assert!(
        span_in(card(&dom, "f-warning"), "cell last")
            .1
            .starts_with("warning ")
    );

    // Busy jobs say what they do; the deadline a run serves is no next
    // run, in /queue either.
    let working = job(&daemon, "a-working");
    assert!(working["nextRun"].is_null(), "{working}");
    let a = card(&dom, "a-working");
    assert!(a.contains("data-status=\"working\""), "{a}");
    let (_, next) = span_in(a, "cell next");
    assert!(a.contains("<progress"), "{a}");
    assert_eq!(next, " 50 %");
    let b = card(&dom, "b-waits");
    assert_eq!(span_in(b, "cell next").1, "waiting for a-working");

    assert!(card(&dom, "g-stopped").contains("data-status=\"stopped\""));
    assert!(card(&dom, "h-invalid").contains("data-status=\"invalid\""));
    assert_eq!(span_in(card(&dom, "i-new"), "cell last").1, "never");
    for i in 1..=11 {
        let ok = card(&dom, &format!("ok-{i:02}"));
        assert!(span_in(ok, "cell next").1.starts_with("in 23h "), "{ok}");
        assert!(span_in(ok, "cell last").1.starts_with("success "), "{ok}");
    }
    daemon.terminate();
}

/// JavaScript for where the rows are, and whether anything is cut off or
/// sticks out sideways.
const LAYOUT: &str = r#"(() => {
    const rows = [...document.querySelectorAll("li.job")];
    const box = (e) => e.getBoundingClientRect();
    const error = document.querySelector('li.job[data-job="c-failing"] .error');
    return {
        width: innerWidth, height: innerHeight,
        pageWidth: document.documentElement.scrollWidth,
        rows: rows.length,
        lowestRow: Math.max(...rows.map((row) => box(row).bottom)),
        summaryBottom: box(document.getElementById("summary")).bottom,
        firstRowTop: box(rows[0]).top,
        overlapping: rows.filter((row) =>
            box(row.querySelector(".name")).right > box(row.querySelector(".status")).left + 1
            && box(row.querySelector(".name")).bottom > box(row.querySelector(".status")).top).length,
        outside: rows.filter((row) => box(row.querySelector(".badge")).right > innerWidth).length,
        shortestRow: Math.min(...rows.map((row) => box(row).height)),
        errorText: error.textContent,
        errorLines: Math.round(box(error).height / parseFloat(getComputedStyle(error).lineHeight)),
        errorCut: error.scrollWidth > error.clientWidth,
    };
})()"#;

#[test]
fn twenty_jobs_fit_a_laptop_screen_and_a_phone_screen() {
    let env = with_token();
    let daemon = twenty_jobs(&env);
    let mut browser = Browser::start();
    // The page must not need /queue to show its first state.
    browser.block_requests(&["*/queue*"]);
    browser.set_screen(1280, 800, false);
    browser.navigate(&page_url(&daemon));
    browser.wait_for(
        "the rows",
        "document.querySelectorAll('li.job').length === 20",
    );
    let laptop = browser.evaluate(LAYOUT);
    assert_eq!(laptop["width"], 1280, "{laptop}");
    assert!(
        laptop["lowestRow"].as_f64() <= laptop["height"].as_f64(),
        "all 20 rows on the screen: {laptop}"
    );
    assert!(laptop["summaryBottom"].as_f64() <= laptop["firstRowTop"].as_f64());
    assert_eq!(laptop["pageWidth"], 1280, "{laptop}");
    assert_eq!(laptop["errorText"], LONG_ERROR);
    assert_eq!(laptop["errorCut"], false, "{laptop}");
    assert_eq!(laptop["overlapping"], 0, "{laptop}");

    browser.set_screen(360, 740, true);
    browser.wait_for("the phone's layout", "innerWidth === 360");
    let phone = browser.evaluate(LAYOUT);
    assert_eq!(
        phone["pageWidth"], 360,
        "nothing sticks out sideways: {phone}"
    );
    assert_eq!(phone["overlapping"], 0, "{phone}");
    assert_eq!(phone["outside"], 0, "{phone}");
    assert!(
        phone["shortestRow"].as_f64() >= Some(44.0),
        "rows a thumb can hit: {phone}"
    );
    assert_eq!(phone["errorText"], LONG_ERROR);
    assert_eq!(phone["errorCut"], false, "{phone}");
    assert!(
        phone["errorLines"].as_u64() >= Some(4),
        "the error wraps: {phone}"
    );

    // An opened row's buttons are on the screen and big enough to tap.
    browser.click("li.job[data-job=\"c-failing\"] summary");
    let buttons = browser.wait_for(
        "the buttons",
        r#"(() => {
            const buttons = [...document.querySelectorAll('li.job[data-job="c-failing"] .actions button')];
            const boxes = buttons.map((b) => b.getBoundingClientRect());
            return boxes.length === 3 && boxes.every((b) => b.height > 0)
                && boxes.map((b) => [Math.round(b.left), Math.round(b.right), Math.round(b.height)]);
        })()"#,
    );
    for button in buttons.as_array().unwrap() {
        assert!(
            button[0].as_i64() >= Some(0) && button[1].as_i64() <= Some(360),
            "{buttons}"
        );
        assert!(button[2].as_i64() >= Some(40), "{buttons}");
    }
    drop(browser);
    daemon.terminate();
}

/// The text of the element `selector` finds.
fn text_at(browser: &mut Browser, selector: &str) -> Value {
    browser.evaluate(&property(selector, "textContent"))
}

#[test]
fn opening_a_row_in_chromium_shows_its_runs_hooks_and_output() {
    let env = with_token();
    let daemon = twenty_jobs(&env);
    let mut browser = Browser::start();
    browser.set_screen(1280, 800, false);
    browser.navigate(&page_url(&daemon));
    let runs = in_card("c-failing", ".runs > li");
    let count = |selector: &str| {
        format!(
            "document.querySelectorAll({}).length",
            serde_json::to_string(selector).unwrap()
        )
    };
    browser.wait_for(
        "the rows",
        "document.querySelectorAll('li.job').length === 20",
    );
    assert_eq!(browser.evaluate(&count(&runs)), 0, "runs load when opened");
    browser.click(&in_card("c-failing", "summary"));
    browser.wait_for("the runs", &format!("{} === 2", count(&runs)));

    // Newest first, with outcome, duration, exit code, error and hooks; the
    // newest is selected and shows its output.
    let newest = format!("{runs}:nth-child(1)");
    let line = text_at(&mut browser, &format!("{newest} .pick"));
    let line = line.as_str().unwrap();
    for part in ["failure", "12s", "exit 1", "schedule", "1h 0m ago"] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert_eq!(
        text_at(&mut browser, &format!("{newest} > .error")),
        LONG_ERROR
    );
    let hooks = browser.evaluate(&format!(
        "[...document.querySelectorAll({})].map((h) => h.textContent)",
        serde_json::to_string(&format!("{newest} .hooks li")).unwrap()
    ));
    assert_eq!(
        hooks,
        json!([
            "Before: exit 0, 0.3s",
            "OnFailure: exit 2, 0.1s — exited with 2: mail: cannot send"
        ])
    );
    assert_eq!(
        text_at(&mut browser, &format!("{newest} .output")),
        "open repository\nFatal: unable to open config file\n"
    );

    // Another run shows its own output instead.
    let older = format!("{runs}:nth-child(2)");
    assert!(
        text_at(&mut browser, &format!("{older} .pick"))
            .as_str()
            .unwrap()
            .contains("1m 35s")
    );
    browser.click(&format!("{older} .pick"));
    browser.wait_for(
        "the older run's output",
        &format!(
            "{} === 'snapshot 1f2e3d4c saved\\n'",
            property(&format!("{older} .output"), "textContent")
        ),
    );
    assert_eq!(browser.evaluate(&count(&format!("{runs} .output"))), 1);

    // A run started from the opened row appears in it.
    browser.click(&in_card("c-failing", "button[data-action=trigger]"));
    browser.wait_for("the new run", &format!("{} === 3", count(&runs)));
    let new_line = text_at(&mut browser, &format!("{newest} .pick"));
    assert!(new_line.as_str().unwrap().contains("trigger"), "{new_line}");
    let errors = browser.errors();
    assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
    drop(browser);
    daemon.terminate();
}

#[test]
fn the_page_says_what_a_busy_job_does_instead_of_a_past_deadline() {
    let env = with_token();
    let daemon = env.start();
    let mut browser = Browser::start();
    browser.navigate(&page_url(&daemon));
    browser.wait_for(
        "the empty page",
        "document.getElementById('summary')?.textContent === 'no jobs'",
    );
    // The page's own `render`, given jobs the way /queue has them (`stale`
    // too, which /queue is about to get).
    let shown = browser.evaluate(
        r#"(() => {
            const past = new Date(Date.now() - 3600000).toISOString();
            const later = new Date(Date.now() + 7230000).toISOString();
            const ok = {outcome: "success", start: past, end: past, exitCode: 0, error: null};
            const names = ["working", "checking", "queued", "due", "later", "stale"];
            render({Jobs: [
                {JobName: "working", status: "working", nextRun: past, progress: 0, lastRun: ok},
                {JobName: "checking", status: "checking", nextRun: past, lastRun: ok},
                {JobName: "queued", status: "waiting", nextRun: past, WaitingFor: "working", lastRun: ok},
                {JobName: "due", status: "waiting", nextRun: past, lastRun: ok},
                {JobName: "later", status: "waiting", nextRun: later, lastRun: ok},
                {JobName: "stale", status: "waiting", nextRun: later, lastRun: ok, stale: true},
            ]});
            const row = (name) => document.querySelector(`li.job[data-job="${name}"]`);
            return {
                summary: document.getElementById("summary").textContent,
                next: names.map((name) => row(name).querySelector(".next").textContent),
                stale: names.filter((name) => row(name).querySelector(".badge.stale").offsetParent !== null),
            };
        })()"#,
    );
    assert_eq!(
        shown,
        json!({
            "summary": "6 jobs: 3 ok, 1 stale, 2 running",
            "next": [" running", "checking", "waiting for working", "due now", "in 2h 0m", "in 2h 0m"],
            "stale": ["stale"],
        })
    );
    drop(browser);
    daemon.terminate();
}

/// A CSS selector for `inner` in the card of job `name`.
fn in_card(name: &str, inner: &str) -> String {
    format!(
        "li.job[data-job={}] {inner}",
        serde_json::to_string(name).unwrap()
    )
}

/// JavaScript for `property` of the element `selector` finds.
fn property(selector: &str, property: &str) -> String {
    let selector = serde_json::to_string(selector).unwrap();
    format!("document.querySelector({selector})?.{property}")
}

#[test]
fn clicking_the_buttons_in_chromium_drives_the_jobs() {
    let env = with_token();
    env.write_job("ok", &env.fake_job("ok", &[], json!({})));
    env.write_job("idle", &env.fake_job("idle", &[], json!({})));
    env.write_job_text(HOSTILE, r#"{"ResticArguments": ["backup"]}"#);
    let daemon = env.start();
    post(&daemon, "/stop?name=idle");

    let mut browser = Browser::start();
    browser.navigate(&page_url(&daemon));
    browser.wait_for(
        "the jobs",
        "document.querySelectorAll('li.job').length === 3",
    );
    // The hostile name is text in the page, and nothing was built from it.
    let shown = browser.evaluate(&property(&in_card(HOSTILE, ".name"), "textContent"));
    assert_eq!(shown, HOSTILE);
    assert_eq!(browser.evaluate("document.images.length"), 0);
    assert_eq!(browser.evaluate("document.title"), "restic-cronned");
    // No progress bar but while a job is working.
    assert_eq!(
        browser.evaluate(&format!(
            "{} === undefined",
            property(&in_card("ok", "progress"), "value")
        )),
        true
    );

    // The buttons are in the row's details.
    let trigger = in_card("ok", "button[data-action=trigger]");
    let visible = property(&trigger, "checkVisibility()");
    assert_eq!(browser.evaluate(&visible), false);
    browser.click(&in_card("ok", "summary"));
    browser.wait_for("the opened row", &visible);

    // trigger: the job runs, the page says Done and then shows the run.
    assert!(env.starts("ok").is_empty());
    browser.click(&trigger);
    daemon.wait_for("the click to run ok", |_| {
        (!env.starts("ok").is_empty()).then_some(())
    });
    let message_text = property(&in_card("ok", ".message"), "textContent");
    browser.wait_for(
        "the answer to trigger",
        &format!("{message_text} === 'trigger: Done'"),
    );
    let last = property(&in_card("ok", ".cell.last"), "textContent");
    browser.wait_for(
        "the run on the page",
        &format!("{last}?.startsWith('success ')"),
    );

    // stop and restart, and the page shows the new status at once.
    let badge = property(&in_card("ok", ".badge"), "textContent");
    browser.click(&in_card("ok", "button[data-action=stop]"));
    browser.wait_for("ok stopped", &format!("{badge} === 'stopped'"));
    browser.click(&in_card("ok", "button[data-action=restart]"));
    browser.wait_for(
        "the answer to restart",
        &format!("{message_text} === 'restart: Done'"),
    );
    browser.wait_for("ok waiting", &format!("{badge} === 'waiting'"));

    // A refusal is shown with its status and the daemon's reason.
    browser.click(&in_card("idle", "summary"));
    browser.click(&in_card("idle", "button[data-action=trigger]"));
    let idle_message = property(&in_card("idle", ".message"), "textContent");
    let refusal = browser.wait_for(
        "the answer to triggering a stopped job",
        &format!("{idle_message}?.includes('refused') && {idle_message}"),
    );
    let refusal = refusal.as_str().unwrap();
    assert!(refusal.starts_with("trigger refused (409): "), "{refusal}");
    assert!(refusal.contains("stopped"), "{refusal}");
    assert!(env.starts("idle").is_empty());
    assert_eq!(env.starts("ok").len(), 1);

    // restic's progress, as the daemon reports it for a backup with --json
    // (the page's own `show`, given a job the way /queue has it).
    let progress = browser.evaluate(
        r#"(() => {
            const next = show({JobName: "ok", status: "working", progress: 0.425}, Date.now())
                .querySelector(".next");
            const bar = next.querySelector("progress");
            return [getComputedStyle(bar).display, bar.value, next.textContent];
        })()"#,
    );
    assert_eq!(progress, json!(["inline-block", 0.425, " 42 %"]));

    // The one error expected: the browser logs the 409 it was answered.
    let errors: Vec<_> = browser
        .errors()
        .into_iter()
        .filter(|e| {
            !(e["params"]["entry"]["url"].as_str())
                .is_some_and(|u| u.ends_with("/trigger?name=idle"))
        })
        .collect();
    assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
    drop(browser);
    daemon.terminate();
}
