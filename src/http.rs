//! The control API: a pure [`route`] from method and URL to a [`Route`], and
//! a thin tiny_http loop that answers reads from the board and hands
//! commands to the daemon.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use log::{debug, warn};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::board::Board;

/// Request bodies are never needed; larger ones are refused.
const MAX_BODY: usize = 64 * 1024;
/// How long a request waits for the daemon before answering 503.
const DAEMON_ANSWER: Duration = Duration::from_secs(10);

/// A command for the daemon, with the job name where one is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Stop(String),
    StopAll,
    Restart(String),
    Reload(Option<String>),
    Trigger(String),
    Remove(String),
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub json: bool,
}

impl Reply {
    /// A plain-text answer; the body gets its final newline here.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Reply {
            status,
            body,
            json: false,
        }
    }

    pub fn done() -> Reply {
        Reply::text(200, "Done")
    }

    /// The original's answer for an unknown job (404 here, 200 there).
    pub fn no_such_job() -> Reply {
        Reply::text(404, "No such Job")
    }
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Queue,
    Healthz,
    Command(Command),
    /// Answered at once without the daemon.
    Refuse(Reply),
}

/// Maps a request to its route. Pure, so it is tested without sockets.
pub fn route(method: &Method, url: &str) -> Route {
    if !matches!(method, Method::Get | Method::Post | Method::Head) {
        return Route::Refuse(Reply::text(
            405,
            format!("method {method} not allowed; use GET or POST"),
        ));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let name = match query_param(query, "name") {
        Ok(name) => name,
        Err(e) => return Route::Refuse(Reply::text(400, e)),
    };
    let named = |make: fn(String) -> Command| match &name {
        Some(n) => Route::Command(make(n.clone())),
        None => Route::Refuse(Reply::text(400, "missing parameter: name")),
    };
    match path {
        "/queue" => Route::Queue,
        "/healthz" => Route::Healthz,
        "/stop" => named(Command::Stop),
        "/stopall" => Route::Command(Command::StopAll),
        "/restart" => named(Command::Restart),
        "/reload" => Route::Command(Command::Reload(name)),
        "/trigger" => named(Command::Trigger),
        "/remove" => named(Command::Remove),
        _ => Route::Refuse(Reply::text(404, "404 page not found")),
    }
}

/// The first value of `key` in a query string, percent-decoded (`+` is a
/// space, as in forms). An empty value counts as missing.
fn query_param(query: &str, key: &str) -> Result<Option<String>, String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k)? == key {
            let value = percent_decode(v)?;
            return Ok(Some(value).filter(|v| !v.is_empty()));
        }
    }
    Ok(None)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(byte) = byte else {
                    return Err(format!("bad percent-encoding in {s:?}"));
                };
                out.push(byte);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Who may use the API: with a token, only requests that carry it (but
/// `/healthz`), and never a request a browser marks as cross-site, so a web
/// page cannot drive the API through a visitor's browser.
#[derive(Clone, Default)]
pub struct Access {
    token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_some() {
            "<set>"
        } else {
            "<none>"
        };
        f.debug_struct("Access").field("token", &token).finish()
    }
}

impl Access {
    pub fn new(token: Option<String>) -> Access {
        Access { token }
    }

    /// Checks a request to `route` with headers looked up by `header`
    /// (case-insensitive names); `Err` is the answer to a refused one.
    pub fn check<'h>(
        &self,
        route: &Route,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<(), Reply> {
        if route == &Route::Healthz {
            return Ok(());
        }
        if header("Sec-Fetch-Site").is_some_and(|v| v.eq_ignore_ascii_case("cross-site")) {
            return Err(Reply::text(403, "cross-site requests are refused"));
        }
        if let Some(origin) = header("Origin") {
            let origin_host = origin
                .split_once("://")
                .map(|(_, host)| host.trim_end_matches('/'));
            if origin_host.is_none() || origin_host != header("Host") {
                return Err(Reply::text(403, "requests from another origin are refused"));
            }
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = header("Authorization").and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes())) {
            Ok(())
        } else {
            Err(Reply::text(
                401,
                "missing or wrong token: send Authorization: Bearer TOKEN",
            ))
        }
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A command and where to send its answer.
pub type Envelope = (Command, Sender<Reply>);

/// The HTTP thread and its server, so the daemon can stop it.
pub struct HttpServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `server` on a new thread.
    pub fn spawn(
        server: Server,
        access: Access,
        board: Board,
        commands: Sender<Envelope>,
    ) -> HttpServer {
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    handle(request, &access, &board, &commands);
                }
            })
            .expect("the system can start the HTTP thread");
        HttpServer {
            server,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(request: Request, access: &Access, board: &Board, commands: &Sender<Envelope>) {
    debug!("{} {}", request.method(), request.url());
    let route = route(request.method(), request.url());
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    };
    let reply = if let Err(refusal) = access.check(&route, header) {
        refusal
    } else if request.body_length().is_some_and(|n| n > MAX_BODY) {
        Reply::text(413, format!("request body over {} KiB", MAX_BODY / 1024))
    } else {
        match route {
            Route::Queue => Reply {
                status: 200,
                body: board.queue_json(),
                json: true,
            },
            Route::Healthz => Reply::text(200, "ok"),
            Route::Refuse(reply) => reply,
            Route::Command(command) => ask_daemon(command, commands),
        }
    };
    let content_type = if reply.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let header = Header::from_bytes("Content-Type", content_type).expect("a valid header");
    let response = Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    // A client that went away is not our problem.
    if let Err(e) = request.respond(response) {
        debug!("could not answer a request: {e}");
    }
}

fn ask_daemon(command: Command, commands: &Sender<Envelope>) -> Reply {
    let (reply_sender, reply) = bounded(1);
    if commands.send((command, reply_sender)).is_err() {
        return Reply::text(503, "the daemon is shutting down");
    }
    reply.recv_timeout(DAEMON_ANSWER).unwrap_or_else(|_| {
        warn!("the daemon did not answer a request in time");
        Reply::text(503, "the daemon did not answer in time")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(list: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| {
            list.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn the_token_guards_everything_but_healthz() {
        let access = Access::new(Some("s3cret".into()));
        let status = |route: Route, h: &[(&str, &str)]| {
            access.check(&route, headers(h)).err().map(|r| r.status)
        };
        assert_eq!(status(Route::Queue, &[]), Some(401));
        assert_eq!(
            status(Route::Queue, &[("authorization", "Bearer wrong!")]),
            Some(401)
        );
        assert_eq!(
            status(Route::Queue, &[("Authorization", "Bearer s3cret")]),
            None
        );
        assert_eq!(status(Route::Healthz, &[]), None);
        assert!(!format!("{access:?}").contains("s3cret"));
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let access = Access::default();
        let status = |h: &[(&str, &str)]| {
            access
                .check(&Route::Queue, headers(h))
                .err()
                .map(|r| r.status)
        };
        assert_eq!(status(&[("Sec-Fetch-Site", "cross-site")]), Some(403));
        assert_eq!(
            status(&[("Origin", "null"), ("Host", "127.0.0.1:8080")]),
            Some(403)
        );
        assert_eq!(
            status(&[
                ("Origin", "http://evil.example"),
                ("Host", "127.0.0.1:8080")
            ]),
            Some(403)
        );
        assert_eq!(
            status(&[
                ("Origin", "http://127.0.0.1:8080"),
                ("Host", "127.0.0.1:8080")
            ]),
            None
        );
        assert_eq!(status(&[("Sec-Fetch-Site", "same-origin")]), None);
        assert_eq!(status(&[]), None);
    }

    fn cmd(url: &str) -> Route {
        route(&Method::Get, url)
    }

    #[test]
    fn routes_the_originals_urls() {
        assert_eq!(cmd("/queue"), Route::Queue);
        assert_eq!(
            cmd("/stop?name=a"),
            Route::Command(Command::Stop("a".into()))
        );
        assert_eq!(cmd("/stopall"), Route::Command(Command::StopAll));
        assert_eq!(cmd("/reload"), Route::Command(Command::Reload(None)));
        assert_eq!(
            cmd("/reload?name=x"),
            Route::Command(Command::Reload(Some("x".into())))
        );
        assert_eq!(
            route(&Method::Post, "/trigger?x=1&name=My%20Job+1"),
            Route::Command(Command::Trigger("My Job 1".into()))
        );
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let status = |r: Route| match r {
            Route::Refuse(reply) => reply.status,
            _ => 0,
        };
        assert_eq!(status(cmd("/stop")), 400);
        assert_eq!(status(cmd("/stop?name=")), 400);
        assert_eq!(status(cmd("/stop?name=%zz")), 400);
        assert_eq!(status(cmd("/stop?name=%ff")), 400);
        assert_eq!(status(cmd("/stop/")), 404);
        assert_eq!(status(cmd("/../etc/passwd")), 404);
        assert_eq!(status(route(&Method::Delete, "/queue")), 405);
    }
}
