//! The control API: a pure [`route`] from method and URL to a [`Route`], and
//! a thin server that answers reads from the board and the status page, and
//! hands commands to the daemon.
//!
//! The server is ours rather than tiny_http's: tiny_http 0.12 aborts the
//! whole process on one request with a large `Content-Length` (it allocates
//! the announced size when it drops an unread body), blocks its only
//! request thread on a client that announces a body and never sends it, has
//! no read timeouts, and stops serving for good after one failed `accept`.
//! [`wire`] reads one request per connection within size and time limits.

mod wire;

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, select};
use log::{debug, warn};

use crate::api::board::{Board, RUNS_KEPT};
use crate::api::metrics;

pub use wire::{MAX_BODY, Method};

/// How long a request waits for the daemon before answering 503.
const DAEMON_ANSWER: Duration = Duration::from_secs(10);
/// How long a client has to send its whole request (a slow client holds a
/// connection at most this long).
const REQUEST_TIME: Duration = Duration::from_secs(10);
/// How long a client has to take its answer.
const ANSWER_TIME: Duration = Duration::from_secs(10);
/// Connections served at once, so a flood of connections costs a bounded
/// number of threads and descriptors. When all are taken, the one that has
/// waited longest for its request is closed to make room; when every one is
/// busy answering, a new connection gets 503.
const MAX_CONNECTIONS: usize = 64;

/// A command for the daemon, with the job name where one is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Stop(String),
    StopAll,
    Restart(String),
    Reload(Option<String>),
    Trigger(String),
    Remove(String),
    /// Test builds only (debug, or the `test-hooks` feature): keeps the
    /// supervisor busy this long, so a test can see the systemd watchdog go
    /// quiet while the supervisor does not answer. The builds that ship
    /// have no such URL.
    #[cfg(any(debug_assertions, feature = "test-hooks"))]
    HangSupervisor(Duration),
}

/// The status page (SPEC §6.4): HTML, CSS and script in one file, with no
/// external assets.
const STATUS_PAGE: &str = include_str!("http/page.html");
/// The opening tag of the page's data block, which [`status_page`] fills
/// with `/queue`'s JSON.
const QUEUE_SLOT: &str = "<script type=\"application/json\" id=\"queue\">";

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// Sent with the status page only. The page loads nothing from elsewhere and
/// talks only to this server; it may not be framed (a framing page could
/// trick a visitor into clicking its buttons); and with Trusted Types the
/// browser itself refuses to parse strings as HTML, so job data can only
/// ever become text.
const PAGE_HEADERS: &str = "Content-Security-Policy: default-src 'none'; \
     script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
     img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'\r\n\
     X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n";

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Body,
    pub content_type: &'static str,
}

/// An answer's body: whole, or in pieces written one after the other
/// (`/queue`: each job's JSON as the board keeps it, never copied into one
/// buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Whole(String),
    Pieces(Vec<Arc<str>>),
}

impl Body {
    pub fn pieces(&self) -> Vec<&str> {
        match self {
            Body::Whole(text) => vec![text],
            Body::Pieces(pieces) => pieces.iter().map(|p| &**p).collect(),
        }
    }
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
            body: Body::Whole(body),
            content_type: TEXT,
        }
    }

    /// A JSON answer.
    pub fn json(body: String) -> Reply {
        Reply {
            status: 200,
            body: Body::Whole(body),
            content_type: JSON,
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
    /// `/`, the status page, with the `token` query parameter if any.
    Page {
        token: Option<UrlToken>,
    },
    Queue,
    Metrics,
    /// `/job?name=N[&runs=K]`, answered from the board (and the job's
    /// history for more runs than the board keeps).
    Job {
        name: String,
        runs: usize,
    },
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
    // HEAD is for reading: monitors and link previews send it, and they
    // must not stop or start anything.
    if *method == Method::Head && !matches!(path, "/queue" | "/job" | "/metrics" | "/healthz" | "/")
    {
        return Route::Refuse(Reply::text(
            405,
            format!("HEAD is not allowed on {path}; use GET or POST"),
        ));
    }
    let named = |make: fn(String) -> Command| match &name {
        Some(n) => Route::Command(make(n.clone())),
        None => Route::Refuse(Reply::text(400, "missing parameter: name")),
    };
    match path {
        "/" => match query_param(query, "token") {
            Ok(token) => Route::Page {
                token: token.map(UrlToken),
            },
            Err(e) => Route::Refuse(Reply::text(400, e)),
        },
        "/queue" => Route::Queue,
        "/job" => match (name, query_param(query, "runs")) {
            (None, _) => Route::Refuse(Reply::text(400, "missing parameter: name")),
            (Some(name), Ok(None)) => Route::Job {
                name,
                runs: RUNS_KEPT,
            },
            (Some(name), Ok(Some(runs))) => match runs.parse() {
                Ok(runs) => Route::Job { name, runs },
                Err(_) => Route::Refuse(Reply::text(
                    400,
                    format!("runs: {runs:?} is not a number of runs"),
                )),
            },
            (Some(_), Err(e)) => Route::Refuse(Reply::text(400, e)),
        },
        "/healthz" => Route::Healthz,
        "/metrics" => Route::Metrics,
        "/stop" => named(Command::Stop),
        "/stopall" => Route::Command(Command::StopAll),
        "/restart" => named(Command::Restart),
        "/reload" => Route::Command(Command::Reload(name)),
        "/trigger" => named(Command::Trigger),
        "/remove" => named(Command::Remove),
        #[cfg(any(debug_assertions, feature = "test-hooks"))]
        "/debug/hang-supervisor" => match query_param(query, "ms").map(|ms| ms?.parse().ok()) {
            Ok(Some(ms)) => Route::Command(Command::HangSupervisor(Duration::from_millis(ms))),
            _ => Route::Refuse(Reply::text(400, "ms: a number of milliseconds")),
        },
        _ => Route::Refuse(Reply::text(404, "404 page not found")),
    }
}

/// A token given in a URL rather than a header; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlToken(String);

impl std::fmt::Debug for UrlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlToken(<hidden>)")
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
    // percent-encoding passes a malformed escape through as it is; the API
    // answers it with a 400, so it is looked for first.
    let malformed = s.split('%').skip(1).any(|after| {
        !after
            .get(..2)
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if malformed {
        return Err(format!("bad percent-encoding in {s:?}"));
    }
    // `+` is a space, as in forms; an encoded `+` (%2B) decodes after this.
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// Who may use the API: with a token, only requests that carry it (but
/// `/healthz`), and never a request a browser marks as cross-site, so a web
/// page cannot drive the API through a visitor's browser.
///
/// The status page alone also takes the token as its `token` query
/// parameter: a browser cannot add a header to a page it navigates to. The
/// page then sends the header on its own requests. The price is that the
/// token can end up in the browser's history and bookmarks.
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
        // A browser says where a request comes from. Only this server's own
        // pages (`same-origin`) and the user (`none`: the address bar, a
        // bookmark) may use the API; `same-site` is a page on another port
        // of this host, which is another server, and a value this code does
        // not know cannot be trusted either.
        if let Some(site) = header("Sec-Fetch-Site") {
            if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
                return Err(Reply::text(
                    403,
                    format!("requests from another site are refused (Sec-Fetch-Site: {site})"),
                ));
            }
        }
        if let Some(origin) = header("Origin") {
            if !origin_is_host(origin, header("Host")) {
                return Err(Reply::text(403, "requests from another origin are refused"));
            }
        }
        let Some(token) = &self.token else {
            // Without a token, a name that is not ours could be a DNS
            // rebinding attack: a web page whose host name now points at
            // 127.0.0.1 sends a same-origin request. Browsers always send
            // the name they used in Host.
            return match header("Host") {
                Some(host) if !host_is_local(host) => Err(Reply::text(
                    403,
                    format!(
                        "requests for host {host:?} are refused without a token; \
                         use an IP address or localhost, or set a token"
                    ),
                )),
                _ => Ok(()),
            };
        };
        let in_header = header("Authorization").and_then(bearer_token);
        let in_url = match route {
            Route::Page { token } => token.as_ref().map(|t| t.0.as_str()),
            _ => None,
        };
        let given = in_header.or(in_url);
        if given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())) {
            Ok(())
        } else if matches!(route, Route::Page { .. }) {
            Err(Reply::text(
                401,
                "missing or wrong token: open /?token=TOKEN",
            ))
        } else {
            Err(Reply::text(
                401,
                "missing or wrong token: send Authorization: Bearer TOKEN",
            ))
        }
    }
}

/// Whether `origin` (an Origin header) is the server the request was sent
/// to: the same host and port as `host` (the Host header, which the browser
/// fills in from the URL it requests). The scheme may be `https` behind a
/// TLS proxy that passes the Host on. `null`, sent by sandboxed pages and
/// `file:` URLs, is never this server.
fn origin_is_host(origin: &str, host: Option<&str>) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (authority, host) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value. The scheme
/// name is case-insensitive (RFC 7235 §2.1), so `bearer TOKEN` counts too;
/// the token itself is compared exactly.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Whether `host` (a Host header: an address or a name, perhaps followed by
/// `:PORT`) is an IP address or `localhost`, which no DNS rebinding can put
/// there. The parse is strict because anything left over makes it a name: a
/// resolver looks up `[::1].evil.com` like any other, and its owner decides
/// what it points at.
fn host_is_local(host: &str) -> bool {
    let (is_local_address, rest) = match host.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, rest)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), rest),
            None => return false,
        },
        None => {
            let (name, rest) = host.split_at(host.find(':').unwrap_or(host.len()));
            let is_local = name.eq_ignore_ascii_case("localhost")
                || name.parse::<std::net::Ipv4Addr>().is_ok();
            (is_local, rest)
        }
    };
    let port_is_valid = |port: &str| {
        // `u16::from_str` alone would take `+80`.
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
    };
    is_local_address && (rest.is_empty() || rest.strip_prefix(':').is_some_and(port_is_valid))
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

/// What every connection's thread needs.
struct Shared {
    access: Access,
    board: Board,
    commands: Sender<Envelope>,
    /// Disconnected when the server stops, so no connection keeps waiting
    /// for a daemon that is shutting down.
    stopping: Receiver<()>,
}

/// Why the HTTP server could not start.
#[derive(Debug)]
pub struct SpawnError {
    /// Where it was to listen, if the system could say.
    addr: Option<SocketAddr>,
    /// What went wrong, in words.
    what: &'static str,
    source: io::Error,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot start the HTTP server")?;
        if let Some(addr) = self.addr {
            write!(f, " on {addr}")?;
        }
        write!(f, " ({}): {}", self.what, self.source)
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The accepting thread, which owns the connections' threads.
pub struct HttpServer {
    // Drop order: the listener is shut down and the stop sender dropped in
    // `drop`, then the thread is joined; the listener clone stays valid until
    // the thread is gone.
    listener: TcpListener,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `listener` on a new thread. Both the descriptor the thread
    /// needs and the thread itself are resources the system may refuse
    /// (`ulimit -n`, systemd's `TasksMax`).
    pub fn spawn(
        listener: TcpListener,
        access: Access,
        board: Board,
        commands: Sender<Envelope>,
    ) -> Result<HttpServer, SpawnError> {
        let error = |what, source| SpawnError {
            addr: listener.local_addr().ok(),
            what,
            source,
        };
        let (stop, stopping) = bounded(0);
        let shared = Arc::new(Shared {
            access,
            board,
            commands,
            stopping,
        });
        let accepting = listener
            .try_clone()
            .map_err(|e| error("cannot duplicate the listening socket", e))?;
        let thread = thread::Builder::new()
            .name("http".into())
            .spawn(move || accept_loop(&accepting, &shared))
            .map_err(|e| error("cannot start its thread", e))?;
        Ok(HttpServer {
            listener,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        // Shutting a listening socket down wakes a thread blocked in
        // `accept` (which then fails) on Linux; std has no call for it.
        // SAFETY: `self.listener` owns the descriptor, open until after the
        // join below.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A connection's socket, shared by its thread and the accepting thread, and
/// how far it has got.
struct Client {
    stream: TcpStream,
    /// [`WAITING`], then either [`ANSWERING`] (set by the connection's
    /// thread) or [`EVICTED`] (set by the accepting thread). Each side
    /// changes it only from `WAITING`, with a compare-and-swap, so exactly
    /// one of them wins: a connection is never evicted while it is being
    /// answered, and an evicted one is never answered.
    phase: AtomicU8,
}

/// Waiting for the rest of its request: may be closed to make room.
const WAITING: u8 = 0;
/// Its request is read (or refused) and it is being answered.
const ANSWERING: u8 = 1;
/// Closed to make room for a newer connection.
const EVICTED: u8 = 2;

impl Client {
    fn new(stream: TcpStream) -> Client {
        Client {
            stream,
            phase: AtomicU8::new(WAITING),
        }
    }

    fn claim(&self, phase: u8) -> bool {
        self.phase
            .compare_exchange(WAITING, phase, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks the request as complete; `false` if the connection was evicted
    /// first, and there is no one left to answer.
    fn start_answering(&self) -> bool {
        self.claim(ANSWERING)
    }

    /// Closes a connection still waiting for its request; `false` if it is
    /// being answered. Shutting the socket down wakes its thread from its
    /// read, which then sees the client gone.
    fn evict(&self) -> bool {
        let evicted = self.claim(EVICTED);
        if evicted {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        evicted
    }
}

/// One connection's thread, and its socket so shutdown can interrupt it.
/// The socket is the thread's: it closes when the thread is done with it,
/// whether or not this thread has looked at the list since.
struct Connection {
    client: Weak<Client>,
    thread: JoinHandle<()>,
}

/// Accepts until the server stops, a thread per connection, at most
/// [`MAX_CONNECTIONS`] at once; then interrupts and joins them all.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut connections: Vec<Connection> = Vec::new();
    let mut last_warning: Option<Instant> = None;
    let mut last_thread_warning: Option<Instant> = None;
    loop {
        let accepted = listener.accept();
        if shared.stopping.try_recv() != Err(crossbeam_channel::TryRecvError::Empty) {
            break;
        }
        let (finished, live): (Vec<_>, Vec<_>) = connections
            .into_iter()
            .partition(|c| c.thread.is_finished());
        connections = live;
        for connection in finished {
            let _ = connection.thread.join();
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, or a client that reset before we
                // accepted it: never a reason to stop serving. Wait a little
                // so a full descriptor table does not make us spin, and say
                // so at most once a minute.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!("http: cannot accept a connection: {e}");
                    last_warning = Some(Instant::now());
                }
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if connections.len() >= MAX_CONNECTIONS && !evict_longest_waiting(&mut connections) {
            refuse_unavailable(&stream, "too many connections; try again");
            continue;
        }
        let client = Arc::new(Client::new(stream));
        let (served, serving) = (client.clone(), shared.clone());
        let thread = thread::Builder::new()
            .name("http-client".into())
            .spawn(move || serve(&served, peer, &serving));
        match thread {
            Ok(thread) => connections.push(Connection {
                client: Arc::downgrade(&client),
                thread,
            }),
            Err(e) => {
                // The system's limit on threads (systemd's TasksMax, `ulimit
                // -u`) is shared with the jobs; the client is told to come
                // back, and the log hears of it at most once a minute.
                if last_thread_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!("http: cannot start a thread for {peer}: {e}");
                    last_thread_warning = Some(Instant::now());
                }
                refuse_unavailable(&client.stream, "the server is short of threads; try again");
            }
        }
    }
    for connection in &connections {
        if let Some(client) = connection.client.upgrade() {
            let _ = client.stream.shutdown(Shutdown::Both);
        }
    }
    for connection in connections {
        let _ = connection.thread.join();
    }
}

/// Closes the connection that has waited longest without a complete
/// request, so a client that connects and sends nothing cannot lock others
/// out, and joins its thread. `false` when every connection is being
/// answered.
fn evict_longest_waiting(connections: &mut Vec<Connection>) -> bool {
    // The list is in the order of `accept`, so the first connection still
    // waiting is the one that has waited longest. One whose thread has let
    // go of its socket is on its way out and makes room as well.
    let evictable = connections.iter().position(|connection| {
        connection
            .client
            .upgrade()
            .is_none_or(|client| client.evict())
    });
    let Some(index) = evictable else {
        return false;
    };
    let evicted = connections.remove(index);
    // The join is short: an evicted connection's thread was at most reading
    // its request, which the shutdown ends at once, and it never goes on to
    // answer (or to wait for the daemon).
    let _ = evicted.thread.join();
    true
}

/// Answers 503 without reading the request: to a connection over the limit
/// when none can make room, or one whose thread cannot start. This runs on
/// the accepting thread, so the lingering close that keeps the answer from
/// being destroyed by a reset is short: an honest client has sent its
/// request and hangs up as soon as it has read the answer.
fn refuse_unavailable(stream: &TcpStream, why: &str) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{why}\n",
        why.len() + 1
    );
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    if (&*stream).write_all(answer.as_bytes()).is_ok() {
        wire::close_gently(stream, Duration::from_millis(100));
    }
}

/// Reads one request from `client`, answers it and closes the connection.
fn serve(client: &Client, peer: SocketAddr, shared: &Shared) {
    let stream = &client.stream;
    let _ = stream.set_write_timeout(Some(ANSWER_TIME));
    let read = wire::read_request(stream, Instant::now() + REQUEST_TIME);
    // From here on the connection is busy rather than idle, and may no
    // longer be closed to make room.
    if !client.start_answering() {
        debug!("{peer}: closed to make room for a newer connection");
        return;
    }
    let (reply, send_body) = match read {
        Ok(request) => {
            debug!("{peer}: {} {}", request.method, loggable_url(&request.url));
            (answer(&request, shared), request.method != Method::Head)
        }
        Err(e) => match e.status() {
            Some(status) => {
                debug!("{peer}: {e}");
                (Reply::text(status, e.to_string()), true)
            }
            None => return,
        },
    };
    let answer = wire::Answer {
        status: reply.status,
        content_type: reply.content_type,
        extra_headers: if reply.content_type == HTML {
            PAGE_HEADERS
        } else {
            ""
        },
        body: &reply.body.pieces(),
        send_body,
    };
    // A client that went away is not our problem.
    if let Err(e) = wire::write_answer(stream, &answer) {
        debug!("{peer}: could not answer: {e}");
    }
}

/// The URL as logged: the value of a `token` query parameter is left out.
fn loggable_url(url: &str) -> Cow<'_, str> {
    let is_token = |pair: &&str| {
        let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
        percent_decode(key).is_ok_and(|k| k == "token")
    };
    match url.split_once('?') {
        Some((path, query)) if query.split('&').any(|pair| is_token(&pair)) => {
            let pairs: Vec<&str> = query
                .split('&')
                .map(|pair| {
                    if is_token(&pair) {
                        "token=<hidden>"
                    } else {
                        pair
                    }
                })
                .collect();
            format!("{path}?{}", pairs.join("&")).into()
        }
        _ => url.into(),
    }
}

fn answer(request: &wire::Request, shared: &Shared) -> Reply {
    let route = route(&request.method, &request.url);
    if let Err(refusal) = shared.access.check(&route, |name| request.header(name)) {
        return refusal;
    }
    match route {
        Route::Page { .. } => Reply {
            status: 200,
            body: Body::Whole(status_page(&shared.board.queue_json())),
            content_type: HTML,
        },
        Route::Queue => Reply {
            status: 200,
            body: Body::Pieces(shared.board.queue_pieces()),
            content_type: JSON,
        },
        Route::Job { name, runs } => match shared.board.job_json(&name, runs) {
            Some(body) => Reply::json(body),
            None => Reply::no_such_job(),
        },
        Route::Metrics => Reply {
            status: 200,
            body: Body::Whole({
                let failed = shared.board.notifications_failed().load(Ordering::Relaxed);
                shared
                    .board
                    .read_all(|entries| metrics::render(entries, failed))
            }),
            content_type: metrics::CONTENT_TYPE,
        },
        Route::Healthz => Reply::text(200, "ok"),
        Route::Refuse(reply) => reply,
        Route::Command(command) => ask_daemon(command, shared),
    }
}

/// The status page with `queue` (the body of `/queue`) inlined, so the
/// page draws its first state as it loads rather than after a request a
/// screenshot or a slow link would wait for.
///
/// Inside a `<script>` element the HTML parser looks for `</script` and,
/// after `<!--`, for `<script`, whatever JSON says; job names, errors and
/// restic output are in there. In JSON text `<` occurs only inside strings,
/// where `\u003c` means the same to `JSON.parse`, so with no `<` left
/// nothing in the data can end the element or change how it is read.
fn status_page(queue: &str) -> String {
    let data = queue.trim_end().replace('<', "\\u003c");
    STATUS_PAGE.replacen(QUEUE_SLOT, &format!("{QUEUE_SLOT}{data}"), 1)
}

fn ask_daemon(command: Command, shared: &Shared) -> Reply {
    let (reply_sender, reply) = bounded(1);
    if shared.commands.send((command, reply_sender)).is_err() {
        return Reply::text(503, "the daemon is shutting down");
    }
    select! {
        recv(reply) -> answer => {
            answer.unwrap_or_else(|_| Reply::text(503, "the daemon is shutting down"))
        }
        recv(shared.stopping) -> _ => Reply::text(503, "the daemon is shutting down"),
        default(DAEMON_ANSWER) => {
            warn!("the daemon did not answer a request in time");
            Reply::text(503, "the daemon did not answer in time")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
    fn only_the_page_takes_the_token_from_its_url() {
        let access = Access::new(Some("s3cret".into()));
        let status = |url: &str, h: &[(&str, &str)]| {
            access
                .check(&route(&Method::Get, url), headers(h))
                .err()
                .map(|r| r.status)
        };
        assert_eq!(status("/", &[]), Some(401));
        assert_eq!(status("/?token=wrong", &[]), Some(401));
        assert_eq!(status("/?token=s3cre", &[]), Some(401));
        assert_eq!(status("/?token=s3cret", &[]), None);
        assert_eq!(status("/?x=1&token=s3cre%74", &[]), None);
        assert_eq!(status("/", &[("Authorization", "Bearer s3cret")]), None);
        // A header that is not a bearer token (a proxy's Basic, say) does
        // not hide the token in the URL.
        assert_eq!(
            status("/?token=s3cret", &[("Authorization", "Basic eDp5")]),
            None
        );
        assert_eq!(status("/queue?token=s3cret", &[]), Some(401));
        assert_eq!(status("/trigger?name=a&token=s3cret", &[]), Some(401));
        assert_eq!(
            status("/?token=s3cret", &[("Sec-Fetch-Site", "cross-site")]),
            Some(403)
        );
        let page = route(&Method::Get, "/?token=s3cret");
        assert!(!format!("{page:?}").contains("s3cret"), "{page:?}");
    }

    #[test]
    fn logged_urls_leave_the_token_out() {
        assert_eq!(loggable_url("/?token=s3cret"), "/?token=<hidden>");
        assert_eq!(
            loggable_url("/queue?a=1&%74oken=s3cret&b"),
            "/queue?a=1&token=<hidden>&b"
        );
        assert_eq!(loggable_url("/stop?name=a"), "/stop?name=a");
        assert_eq!(loggable_url("/"), "/");
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
        // What a browser sends with the status page's own POSTs.
        assert_eq!(
            status(&[
                ("Sec-Fetch-Site", "same-origin"),
                ("Origin", "http://[::1]:8080"),
                ("Host", "[::1]:8080")
            ]),
            None
        );
        assert_eq!(status(&[]), None);
    }

    #[test]
    fn only_same_origin_and_user_requests_pass_the_fetch_metadata_check() {
        let access = Access::default();
        let status = |h: &[(&str, &str)]| {
            access
                .check(&Route::Command(Command::StopAll), headers(h))
                .err()
                .map(|r| r.status)
        };
        // An <img> on a page served from another port of this host.
        assert_eq!(status(&[("Sec-Fetch-Site", "same-site")]), Some(403));
        assert_eq!(status(&[("Sec-Fetch-Site", "SAME-SITE")]), Some(403));
        assert_eq!(status(&[("Sec-Fetch-Site", "something-new")]), Some(403));
        assert_eq!(status(&[("Sec-Fetch-Site", "")]), Some(403));
        // The address bar or a bookmark, and the status page's own requests.
        assert_eq!(status(&[("Sec-Fetch-Site", "none")]), None);
        assert_eq!(status(&[("Sec-Fetch-Site", "same-origin")]), None);
        assert_eq!(status(&[("Sec-Fetch-Site", "Same-Origin")]), None);
        // /healthz tells nothing and changes nothing.
        assert_eq!(
            access
                .check(&Route::Healthz, headers(&[("Sec-Fetch-Site", "same-site")]))
                .err()
                .map(|r| r.status),
            None
        );
    }

    #[test]
    fn an_origin_passes_only_when_it_is_this_host_and_port() {
        let access = Access::default();
        let status = |origin: &str, host: Option<&str>| {
            let mut h = vec![("Origin", origin)];
            h.extend(host.map(|host| ("Host", host)));
            access
                .check(&Route::Queue, headers(&h))
                .err()
                .map(|r| r.status)
        };
        let here = Some("127.0.0.1:8080");
        assert_eq!(status("http://127.0.0.1:8080", here), None);
        // Behind a TLS proxy that passes the Host on.
        assert_eq!(status("https://127.0.0.1:8080", here), None);
        assert_eq!(
            status("http://localhost:8080", Some("LOCALHOST:8080")),
            None
        );
        assert_eq!(status("http://127.0.0.1:8081", here), Some(403));
        assert_eq!(status("http://127.0.0.1", here), Some(403));
        assert_eq!(status("http://127.0.0.1:8080.evil.com", here), Some(403));
        assert_eq!(status("null", here), Some(403));
        assert_eq!(status("", here), Some(403));
        assert_eq!(status("127.0.0.1:8080", here), Some(403));
        assert_eq!(status("file://127.0.0.1:8080", here), Some(403));
        assert_eq!(status("http://127.0.0.1:8080", None), Some(403));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let access = Access::new(Some("s3cret".into()));
        let status = |auth: &str| {
            access
                .check(&Route::Queue, headers(&[("Authorization", auth)]))
                .err()
                .map(|r| r.status)
        };
        assert_eq!(status("Bearer s3cret"), None);
        assert_eq!(status("bearer s3cret"), None);
        assert_eq!(status("BEARER s3cret"), None);
        assert_eq!(status("bEaReR  s3cret"), None);
        assert_eq!(status("bearer wrong!"), Some(401));
        assert_eq!(
            status("bearer S3CRET"),
            Some(401),
            "the token itself is exact"
        );
        assert_eq!(status("bearers3cret"), Some(401));
        assert_eq!(status("Basic s3cret"), Some(401));
        assert_eq!(status("s3cret"), Some(401));
        assert_eq!(status("bearer"), Some(401));
    }

    #[test]
    fn only_addresses_and_localhost_are_local_hosts() {
        for local in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1.2.3:1",
            "localhost",
            "LocalHost:8080",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
            "[0:0:0:0:0:0:0:1]:65535",
        ] {
            assert!(host_is_local(local), "{local}");
        }
        for name in [
            "[::1].evil.com",
            "[::1].evil.com:8080",
            "[::1]:8080.evil.com",
            "[::1]evil.com",
            "[::1]:",
            "[::1]:http",
            "[::1]:+80",
            "[::1]:65536",
            "[::1",
            "[evil.com]",
            "[]",
            "::1",
            "127.0.0.1:",
            "127.0.0.1:80:80",
            "127.0.0.1:8080.evil.com",
            "127.0.0.1:+80",
            "127.0.0.1.evil.com",
            "127.1",
            "localhost.",
            "localhost.evil.com",
            "localhost:80x",
            "evil.com",
            "",
        ] {
            assert!(!host_is_local(name), "{name}");
        }
    }

    /// A server on a free port, and the commands it sends, which nobody
    /// answers unless the test does.
    fn server() -> (HttpServer, SocketAddr, Receiver<Envelope>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (commands, received) = crossbeam_channel::unbounded();
        let board = Board::new("/jobs");
        let server = HttpServer::spawn(listener, Access::default(), board, commands).unwrap();
        (server, addr, received)
    }

    /// Connects and sends `request`, leaving the answer to be read.
    fn send(addr: SocketAddr, request: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream
    }

    /// Everything the server sends until it closes the connection.
    fn answer_on(mut stream: TcpStream) -> String {
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        answer
    }

    #[test]
    fn idle_connections_make_room_for_a_request() {
        let (_server, addr, _commands) = server();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 8).map(|_| send(addr, "")).collect();
        let started = Instant::now();
        let healthz = answer_on(send(addr, "GET /healthz HTTP/1.1\r\n\r\n"));
        assert!(healthz.starts_with("HTTP/1.1 200 OK\r\n"), "{healthz}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The connections that waited longest were closed, without an
        // answer; the newest still wait.
        for stream in &idle[..9] {
            assert_eq!(answer_on(stream.try_clone().unwrap()), "");
        }
        let newest = idle.last().unwrap();
        newest.set_nonblocking(true).unwrap();
        let mut byte = [0; 1];
        let still_open = (&*newest).read(&mut byte);
        assert_eq!(
            still_open.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock)
        );
    }

    #[test]
    fn connections_being_answered_are_never_closed_to_make_room() {
        let (_server, addr, commands) = server();
        let busy: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| send(addr, "GET /stopall HTTP/1.1\r\n\r\n"))
            .collect();
        // Every one of them waits for the daemon, which has not answered.
        let waiting: Vec<Envelope> = (0..MAX_CONNECTIONS)
            .map(|_| commands.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        let refused = answer_on(send(addr, "GET /healthz HTTP/1.1\r\n\r\n"));
        assert!(
            refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{refused}"
        );
        assert!(refused.contains("Retry-After: 1\r\n"), "{refused}");
        for (_, reply) in waiting {
            reply.send(Reply::done()).unwrap();
        }
        for stream in busy {
            let answer = answer_on(stream);
            assert!(answer.ends_with("\r\n\r\nDone\n"), "{answer}");
        }
        // Their threads end once the clients have read their answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = answer_on(send(addr, "GET /healthz HTTP/1.1\r\n\r\n"));
            if answer.starts_with("HTTP/1.1 200 OK\r\n") {
                break;
            }
            assert!(Instant::now() < deadline, "{answer}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn cmd(url: &str) -> Route {
        route(&Method::Get, url)
    }

    #[test]
    fn routes_the_originals_urls() {
        assert_eq!(cmd("/"), Route::Page { token: None });
        assert_eq!(cmd("/queue"), Route::Queue);
        assert_eq!(
            cmd("/stop?name=a"),
            Route::Command(Command::Stop("a".into()))
        );
        assert_eq!(cmd("/stopall"), Route::Command(Command::StopAll));
        assert_eq!(
            route(&Method::Get, "/job?name=a&runs=50"),
            Route::Job {
                name: "a".into(),
                runs: 50
            }
        );
        assert!(matches!(
            route(&Method::Get, "/job?name=a&runs=many"),
            Route::Refuse(Reply { status: 400, .. })
        ));
        assert_eq!(cmd("/reload"), Route::Command(Command::Reload(None)));
        assert_eq!(
            cmd("/reload?name=x"),
            Route::Command(Command::Reload(Some("x".into())))
        );
        assert_eq!(
            route(&Method::Post, "/trigger?x=1&name=My%20Job+1"),
            Route::Command(Command::Trigger("My Job 1".into()))
        );
        assert_eq!(
            cmd("/trigger?name=a%2Bb%C3%A9"),
            Route::Command(Command::Trigger("a+bé".into()))
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
        assert_eq!(status(cmd("/stop?name=a%4")), 400);
        assert_eq!(status(cmd("/stop?name=%%41")), 400);
        assert_eq!(status(cmd("/stop/")), 404);
        assert_eq!(status(cmd("/../etc/passwd")), 404);
        assert_eq!(status(cmd("/?token=%zz")), 400);
        assert_eq!(status(cmd("/index.html")), 404);
        assert_eq!(
            status(route(&Method::Other("DELETE".into()), "/queue")),
            405
        );
    }
}
