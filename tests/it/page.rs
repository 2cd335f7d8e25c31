//! The status page at `/`: what the server sends and who gets it, then the
//! page itself in Debian's headless chromium: rendered from `/queue`, and
//! its buttons driving the API.

use std::fs;

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

/// The `/queue` entry of `name` from a daemon that wants [`TOKEN`].
fn job(daemon: &Daemon, name: &str) -> Value {
    let bearer = format!("Bearer {TOKEN}");
    let body = http(&daemon.addr, "GET", "/queue", &[("Authorization", &bearer)])
        .unwrap()
        .1;
    let queue: Value = serde_json::from_str(&body).unwrap();
    let jobs = queue["Jobs"].as_array().unwrap();
    let job = jobs.iter().find(|j| j["JobName"] == name);
    job.unwrap_or_else(|| panic!("no {name} in {queue}"))
        .clone()
}

/// The part of the dumped DOM that shows job `name`.
fn card<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-job=\"{name}\""))
        .unwrap_or_else(|| panic!("no card for {name} in\n{dom}"));
    let end = dom[start..].find("</li>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[test]
fn chromium_renders_every_job_from_the_queue() {
    let env = with_token();
    let daemon = varied_jobs(&env);
    let url = format!("http://{}/?token={TOKEN_IN_URL}", daemon.addr);
    // The page fetches /queue after it loaded; the virtual time budget lets
    // its script run (and fetch) before the DOM is printed.
    let dom = chromium::run(&["--virtual-time-budget=5000", "--dump-dom"], &url);
    assert!(
        dom.contains("6 jobs · 1 working · 1 stopped · 1 invalid"),
        "{dom}"
    );

    let home = card(&dom, "home");
    assert!(home.contains("data-status=\"waiting\""), "{home}");
    assert!(home.contains("30 3 * * *"), "{home}");
    assert!(
        home.contains("data-outcome=\"success\">success, exit 0<"),
        "{home}"
    );
    assert!(home.contains(">in "), "next run as a relative time: {home}");
    assert!(home.contains("<div class=\"progress\" hidden"), "{home}");

    let laptop = card(&dom, "laptop");
    assert!(laptop.contains(">warning, exit 3<"), "{laptop}");
    assert!(laptop.contains(">every 1d<"), "{laptop}");

    let offsite = card(&dom, "offsite");
    assert!(offsite.contains(">failure, exit 1<"), "{offsite}");
    assert!(offsite.contains("s ago"), "when the run ended: {offsite}");
    let error = job(&daemon, "offsite")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(offsite.contains(&escape(&error)), "{error:?} in {offsite}");

    let photos = card(&dom, "photos");
    assert!(photos.contains("data-status=\"working\""), "{photos}");
    assert!(
        photos.contains("<div class=\"progress\"><progress"),
        "a progress bar: {photos}"
    );
    assert!(photos.contains(">only when triggered<"), "{photos}");

    let prune = card(&dom, "prune");
    assert!(prune.contains("data-status=\"stopped\""), "{prune}");
    assert!(prune.contains(">@weekly<"), "{prune}");

    let old = card(&dom, "zz-old");
    assert!(old.contains("data-status=\"invalid\""), "{old}");
    assert!(old.contains("every tuesday"), "the validation error: {old}");
    for name in ["home", "laptop", "offsite", "photos", "prune", "zz-old"] {
        let buttons = card(&dom, name).matches("<button").count();
        assert_eq!(buttons, 3, "trigger, stop and restart for {name}");
    }

    // For the README: RC_STATUS_PAGE_SCREENSHOT=$PWD/scripts/status-page.png
    if let Ok(path) = std::env::var("RC_STATUS_PAGE_SCREENSHOT") {
        let screenshot = format!("--screenshot={path}");
        chromium::run(
            &[
                "--virtual-time-budget=5000",
                "--hide-scrollbars",
                "--window-size=820,1340",
                &screenshot,
            ],
            &url,
        );
    }
    daemon.terminate();
}

/// `text` as HTML text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A job name no HTML may be built from: the page must show it as text.
const HOSTILE: &str = "<img src=x onerror=document.title='pwned'>";

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
    browser.navigate(&format!("http://{}/?token={TOKEN_IN_URL}", daemon.addr));
    let card_text = |name: &str| property(&in_card(name, ""), "innerText");
    browser.wait_for(
        "the jobs",
        "document.querySelectorAll('li.job').length === 3",
    );
    // The hostile name is text in the page, and nothing was built from it.
    let shown = browser.evaluate(&property(&in_card(HOSTILE, "h2"), "textContent"));
    assert_eq!(shown, HOSTILE);
    assert_eq!(browser.evaluate("document.images.length"), 0);
    assert_eq!(browser.evaluate("document.title"), "restic-cronned");
    // No progress bar but while a job is working.
    let bar_display = format!(
        "getComputedStyle(document.querySelector({})).display",
        serde_json::to_string(&in_card("ok", ".progress")).unwrap()
    );
    assert_eq!(browser.evaluate(&bar_display), "none");

    // trigger: the job runs, the page says Done and then shows the run.
    assert!(env.starts("ok").is_empty());
    browser.click(&in_card("ok", "button[data-action=trigger]"));
    daemon.wait_for("the click to run ok", |_| {
        (!env.starts("ok").is_empty()).then_some(())
    });
    let message_text = property(&in_card("ok", ".message"), "textContent");
    browser.wait_for(
        "the answer to trigger",
        &format!("{message_text} === 'trigger: Done'"),
    );
    browser.wait_for(
        "the run on the page",
        &format!("{}?.includes('success, exit 0')", card_text("ok")),
    );

    // stop and restart, and the page shows the new status at once.
    browser.click(&in_card("ok", "button[data-action=stop]"));
    browser.wait_for(
        "ok stopped",
        &format!("{}?.includes('\\nstopped\\n')", card_text("ok")),
    );
    browser.click(&in_card("ok", "button[data-action=restart]"));
    browser.wait_for(
        "the answer to restart",
        &format!("{message_text} === 'restart: Done'"),
    );
    browser.wait_for(
        "ok waiting",
        &format!("{}?.includes('\\nwaiting\\n')", card_text("ok")),
    );

    // A refusal is shown with its status and the daemon's reason.
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
            const item = show({JobName: "ok", status: "working", progress: 0.425}, Date.now());
            const bar = item.querySelector(".progress");
            return [getComputedStyle(bar).display, bar.querySelector("progress").value,
                    bar.textContent];
        })()"#,
    );
    assert_eq!(progress, json!(["flex", 0.425, "42 %"]));

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
