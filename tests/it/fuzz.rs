//! Property tests with generated input, bounded so CI runs them every time:
//! the job-file parser, the config parser, the cron parser and the HTTP
//! router never panic, and every rejection says what is wrong.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use restic_cronned::config;
use restic_cronned::cron::Calendar;
use restic_cronned::http::{Method, Route, route};
use restic_cronned::job_file;

/// A small deterministic generator (xorshift64*), so a failure is
/// reproducible from the seed in its message.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const VALID_JOB: &str = r#"{
    "regularTimer": 86400, "retryTimer": "1h", "maxFailedRetries": -1,
    "JobName": "ExampleBackup", "NextJob": ["ExampleBackup"], "Env": {"A": "b"},
    "Timeout": "2h", "StopAfterFailedRetries": true, "UnlockStale": false,
    "ResticArguments": ["-r", "/tmp/backup", "backup", "/var/www"]
}"#;

/// Pieces that make mutations interesting: JSON syntax, our keys, odd
/// numbers and strings.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "1.5",
    "18446744073709551616",
    "\"regularTimer\"",
    "\"NextJob\"",
    "\"JobName\"",
    "\"ResticArguments\"",
    "\"Env\"",
    "\"30 3 * * *\"",
    "\"@every 0s\"",
    "\"0 0 30 2 *\"",
    "\"1d 12h\"",
    "\"../x\"",
    "\u{fffd}",
    "\u{0}",
    "\"\\ud800\"",
    "é",
    "\n",
    " ",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut text: Vec<char> = base.chars().collect();
    for _ in 0..=rng.below(6) {
        let at = rng.below(text.len() + 1);
        match rng.below(3) {
            0 if !text.is_empty() => {
                let end = (at + rng.below(8)).min(text.len());
                text.drain(at.min(end)..end);
            }
            1 => {
                let token: Vec<char> = rng.pick(TOKENS).chars().collect();
                text.splice(at..at, token);
            }
            _ => {
                if at < text.len() {
                    text[at] = char::from(rng.below(128) as u8);
                }
            }
        }
    }
    text.into_iter().collect()
}

#[test]
fn the_job_file_parser_never_panics_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.json");
    let mut rng = Rng(0x5eed_0001);
    let mut rejected = 0;
    for case in 0..3000 {
        let text = mutate(&mut rng, VALID_JOB);
        fs::write(&path, &text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let entry = job_file::load_file(&path);
        if let Err(problems) = &entry.job {
            rejected += 1;
            assert!(
                !problems.is_empty(),
                "case {case}: rejected without a reason: {text:?}"
            );
            for problem in problems {
                assert!(!problem.message.is_empty(), "case {case}: {text:?}");
                assert!(
                    problem.to_string().contains("job.json"),
                    "case {case}: {problem}"
                );
            }
        }
    }
    // The mutations must exercise the error paths, not only valid files.
    assert!(
        rejected > 1000,
        "only {rejected} of 3000 mutations were rejected"
    );
}

#[test]
fn the_config_parser_never_panics_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    let base = r#"{"JobPath": "$HOME/jobs", "SrvConf": {"Port": ":8080", "Token": "x"},
        "LogConf": {"LogDir": "/tmp", "MaxAge": 30, "MaxSize": 10, "Level": "info"},
        "StateDir": "${HOME}/s", "StopGrace": "30s", "Keyring": "auto"}"#;
    let env = |name: &str| (name == "HOME").then(|| "/home/u".to_string());
    let mut rng = Rng(0x5eed_0002);
    for case in 0..2000 {
        let text = mutate(&mut rng, base);
        fs::write(&path, &text).unwrap();
        if let Err(e) = config::load(Some(&path), &env) {
            let message = e.to_string();
            assert!(
                message.contains(path.to_str().unwrap()),
                "case {case}: {message}"
            );
        }
    }
}

#[test]
fn the_cron_parser_never_panics_and_explains_rejections() {
    let parts = [
        "*",
        "*/5",
        "0",
        "59",
        "60",
        "1-5",
        "5-1",
        "1-5/2",
        "*/0",
        "mon",
        "MON-fri",
        "jan",
        "7",
        "?",
        ",",
        "-",
        "/",
        "L",
        "#",
        "@daily",
        "@every",
        "32",
        "-1",
        "99999999999999999999",
    ];
    let mut rng = Rng(0x5eed_0003);
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let start: jiff::Timestamp = "2026-03-29T00:30:00Z".parse().unwrap();
    for case in 0..5000 {
        let fields: Vec<&str> = (0..rng.below(8)).map(|_| rng.pick(&parts)).collect();
        let expression = fields.join(if rng.below(4) == 0 { "," } else { " " });
        match Calendar::parse(&expression) {
            Ok(calendar) => {
                // A schedule that parses fires, after any instant.
                let next = calendar.next_after(start, &tz);
                assert!(
                    next.is_some_and(|n| n > start),
                    "case {case}: {expression:?} never fires"
                );
            }
            Err(e) => assert!(!e.to_string().is_empty(), "case {case}: {expression:?}"),
        }
    }
}

#[test]
fn the_router_never_panics_and_every_refusal_says_why() {
    let methods = [
        Method::Get,
        Method::Post,
        Method::Head,
        Method::Other("PUT".into()),
        Method::Other("DELETE".into()),
        Method::Other(String::new()),
    ];
    let pieces = [
        "/", "queue", "stop", "trigger", "reload", "stopall", "?", "&", "=", "name", "%", "%2",
        "%zz", "%ff", "%00", "+", "..", "/../", "é", "%C3%A9", "#", "//", " ", "\u{0}",
    ];
    let mut rng = Rng(0x5eed_0004);
    for case in 0..20_000 {
        let method = &methods[rng.below(methods.len())];
        let url: String = (0..rng.below(10)).map(|_| rng.pick(&pieces)).collect();
        if let Route::Refuse(reply) = route(method, &url) {
            assert!(
                (400..500).contains(&reply.status),
                "case {case}: {method} {url:?}"
            );
            assert!(reply.body.trim().len() > 3, "case {case}: {method} {url:?}");
        }
    }
}
