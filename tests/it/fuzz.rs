//! Property tests with generated input, bounded so CI runs them every time:
//! the job-file parser, the config parser, the cron parser, the HTTP
//! router and the three command lines never panic, and every rejection says
//! what is wrong.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;

use restic_cronned::api::client;
use restic_cronned::api::http::{Method, Route, route};
use restic_cronned::config;
use restic_cronned::config::job_file;
use restic_cronned::schedule::cron::Calendar;
use restic_cronned::{daemon, rckeyutil};

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
            let body = reply.body.pieces().concat();
            assert!(body.trim().len() > 3, "case {case}: {method} {url:?}");
        }
    }
}

/// Words the three command lines are made of: every option in every
/// spelling, values, the action and command words, and bytes that are not
/// UTF-8.
#[rustfmt::skip]
const WORDS: &[&[u8]] = &[
    // All three.
    b"--", b"-", b"=", b"", b"-h", b"-V", b"-hV", b"-x", b"--help", b"--version",
    b"--config", b"--config=", b"-config",
    // The daemon.
    b"-c", b"-j", b"-p", b"--configpath", b"--jobpath=j", b"--port", b"-port=1",
    b"--check", b"--check=1", b"--probe", b"--run", b"--run=", b"jobs", b":0", b"8080",
    // rccommand.
    b"--addr", b"--addr=h:1", b"--token", b"--json", b"--json=1", b"queue", b"trigger",
    b"reload", b"h:1", b"name",
    // rckeyutil.
    b"--backend", b"--backend=keyutils", b"keyutils", b"set", b"get", b"del",
    // Not UTF-8, alone, in options and in values.
    b"\xff", b"--\xff", b"-\xff", b"-c\xff", b"--config=\xff", b"\xc3", b"-\xc3\xa9",
];

#[test]
fn the_command_lines_never_panic_and_every_usage_error_is_one_line() {
    let mut rng = Rng(0x5eed_0005);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..20_000 {
        let line: Vec<OsString> = (0..rng.below(6))
            .map(|_| OsString::from_vec(WORDS[rng.below(WORDS.len())].to_vec()))
            .collect();
        let one_line = |message: String| {
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "case {case}: {line:?}: {message:?}"
            );
        };
        let messages = [
            daemon::parse_args(line.clone())
                .err()
                .map(|e| e.to_string()),
            client::parse_args(line.clone())
                .err()
                .map(|e| e.to_string()),
            rckeyutil::parse_args(line.clone())
                .err()
                .map(|e| e.to_string()),
        ];
        for message in messages {
            match message {
                Some(message) => {
                    rejected += 1;
                    one_line(message);
                }
                None => accepted += 1,
            }
        }
    }
    // Both paths must be exercised, not only the refusals.
    assert!(
        accepted > 2000 && rejected > 20_000,
        "{accepted} accepted, {rejected} rejected"
    );
}
