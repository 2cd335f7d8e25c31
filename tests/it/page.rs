//! The status page at `/`: what the server sends and who gets it.

use std::fs;

use serde_json::{Value, json};

use crate::support::{TestEnv, http, raw_http, status_of};

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
    daemon.wait_for("the request in the log", |_| {
        let log = fs::read_to_string(&log_file).unwrap_or_default();
        log.contains("GET /?x=1&token=<hidden>").then_some(())
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
