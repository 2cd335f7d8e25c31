//! HTTP/1.x on the wire: reads one request from a client within size and
//! time limits, and writes one answer.
//!
//! Every connection carries exactly one request and is closed after the
//! answer, so there is no keep-alive state to get wrong. Nothing here trusts
//! the client: the head is capped at [`MAX_HEAD`] bytes, a body is read (and
//! dropped) only up to [`MAX_BODY`] bytes whatever `Content-Length` claims,
//! and every read stops at the caller's deadline.

use std::fmt;
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The request line and headers together may not be larger than this.
pub const MAX_HEAD: usize = 16 * 1024;
/// Request bodies are never needed; larger ones are refused.
pub const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
/// How much is read from the socket at a time.
const CHUNK: usize = 4096;

/// A request's method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other(String),
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Get => f.write_str("GET"),
            Method::Head => f.write_str("HEAD"),
            Method::Post => f.write_str("POST"),
            Method::Other(name) => f.write_str(name),
        }
    }
}

/// A request read completely; its body, if any, was read and dropped.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The client went away or the socket failed: there is no one to answer.
    Gone,
    /// The deadline passed before the request was complete (408).
    TimedOut,
    /// Not HTTP we can read (400).
    Malformed(String),
    /// The request line and headers are over [`MAX_HEAD`] (431).
    HeadTooLarge,
    /// The body is over [`MAX_BODY`] (413).
    BodyTooLarge,
}

impl ReadError {
    /// The status to answer with; `None` for [`ReadError::Gone`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ReadError::Gone => None,
            ReadError::TimedOut => Some(408),
            ReadError::Malformed(_) => Some(400),
            ReadError::HeadTooLarge => Some(431),
            ReadError::BodyTooLarge => Some(413),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Gone => f.write_str("the client went away"),
            ReadError::TimedOut => f.write_str("the request did not arrive in time"),
            ReadError::Malformed(why) => write!(f, "malformed request: {why}"),
            ReadError::HeadTooLarge => {
                write!(f, "request line and headers over {} KiB", MAX_HEAD / 1024)
            }
            ReadError::BodyTooLarge => write!(f, "request body over {} KiB", MAX_BODY / 1024),
        }
    }
}

/// Reads one request from `stream`, giving up at `deadline`.
pub fn read_request(stream: &TcpStream, deadline: Instant) -> Result<Request, ReadError> {
    let mut incoming = Incoming {
        stream,
        buffer: Vec::with_capacity(1024),
        position: 0,
        deadline,
    };
    let (request, head_length) = loop {
        if let Some(parsed) = parse_head(&incoming.buffer)? {
            break parsed;
        }
        if incoming.buffer.len() >= MAX_HEAD {
            return Err(ReadError::HeadTooLarge);
        }
        incoming.fill(MAX_HEAD - incoming.buffer.len())?;
    };
    incoming.position = head_length;
    read_body(&request, &mut incoming)?;
    Ok(request)
}

/// Parses a complete head; `Ok(None)` while it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<(Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let length = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    let method = match parsed.method.expect("a complete head has a method") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    let url = parsed.path.expect("a complete head has a path").to_string();
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let Ok(value) = std::str::from_utf8(header.value) else {
            return Err(ReadError::Malformed(format!(
                "header {} is not UTF-8",
                header.name
            )));
        };
        headers.push((header.name.to_string(), value.trim().to_string()));
    }
    let request = Request {
        method,
        url,
        headers,
    };
    Ok(Some((request, length)))
}

/// Reads and drops the body, refusing one over [`MAX_BODY`] before reading
/// it. With both `Transfer-Encoding` and `Content-Length` the length is
/// ambiguous (the classic request-smuggling setup), so that is refused too.
fn read_body(request: &Request, incoming: &mut Incoming) -> Result<(), ReadError> {
    let lengths: Vec<&str> = request.headers_named("Content-Length").collect();
    let transfer_encoding = request.header("Transfer-Encoding");
    let wants_continue = request
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if let Some(encoding) = transfer_encoding {
        if !lengths.is_empty() {
            return Err(ReadError::Malformed(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        if !encoding.eq_ignore_ascii_case("chunked") {
            return Err(ReadError::Malformed(format!(
                "unsupported Transfer-Encoding {encoding:?}"
            )));
        }
        if wants_continue {
            incoming.send_continue()?;
        }
        return incoming.skip_chunked_body();
    }
    let Some(first) = lengths.first() else {
        return Ok(());
    };
    if lengths.iter().any(|l| l != first) || first.is_empty() {
        return Err(ReadError::Malformed("conflicting Content-Length".into()));
    }
    if !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReadError::Malformed(format!("Content-Length {first:?}")));
    }
    // Digits only, so a parse error can only mean a number too large.
    let length: usize = first.parse().map_err(|_| ReadError::BodyTooLarge)?;
    if length > MAX_BODY {
        return Err(ReadError::BodyTooLarge);
    }
    if wants_continue && incoming.available() < length {
        incoming.send_continue()?;
    }
    incoming.skip(length)
}

/// Bytes from the client: what has been read and not used yet, and the
/// socket for more.
struct Incoming<'s> {
    // `Read` and `Write` are implemented for `&TcpStream`, so a shared
    // reference is enough and the socket can be shared with shutdown.
    stream: &'s TcpStream,
    buffer: Vec<u8>,
    /// Where the unused part of `buffer` starts.
    position: usize,
    deadline: Instant,
}

impl Incoming<'_> {
    fn available(&self) -> usize {
        self.buffer.len() - self.position
    }

    /// Reads at most `limit` more bytes (and at least one) into the buffer.
    fn fill(&mut self, limit: usize) -> Result<(), ReadError> {
        if self.position > 0 && self.position == self.buffer.len() {
            self.buffer.clear();
            self.position = 0;
        }
        let mut chunk = [0; CHUNK];
        let want = limit.clamp(1, CHUNK);
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::TimedOut);
            }
            // A client that trickles one byte at a time still meets the
            // deadline: the timeout is what is left, not a fresh period.
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return Err(ReadError::Gone);
            }
            match (&mut self.stream).read(&mut chunk[..want]) {
                Ok(0) => return Err(ReadError::Gone),
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(ReadError::TimedOut);
                }
                Err(_) => return Err(ReadError::Gone),
            }
        }
    }

    /// Drops the next `count` bytes.
    fn skip(&mut self, mut count: usize) -> Result<(), ReadError> {
        loop {
            let here = count.min(self.available());
            self.position += here;
            count -= here;
            if count == 0 {
                return Ok(());
            }
            self.fill(count)?;
        }
    }

    /// The next line without its line ending.
    fn line(&mut self) -> Result<String, ReadError> {
        loop {
            let unused = &self.buffer[self.position..];
            if let Some(end) = unused.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&unused[..end])
                    .trim_end_matches('\r')
                    .to_string();
                self.position += end + 1;
                return Ok(line);
            }
            if unused.len() > 1024 {
                return Err(ReadError::Malformed("a chunk line over 1 KiB".into()));
            }
            // Keep the buffer small: move the unused part to the front.
            self.buffer.drain(..self.position);
            self.position = 0;
            self.fill(CHUNK)?;
        }
    }

    /// Reads and drops a chunked body, counting its size as it goes.
    fn skip_chunked_body(&mut self) -> Result<(), ReadError> {
        let mut total = 0usize;
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ReadError::Malformed(format!("chunk size {size:?}")));
            }
            let size = usize::from_str_radix(size, 16).map_err(|_| ReadError::BodyTooLarge)?;
            total = total.saturating_add(size);
            if total > MAX_BODY {
                return Err(ReadError::BodyTooLarge);
            }
            if size == 0 {
                break;
            }
            self.skip(size)?;
            if !self.line()?.is_empty() {
                return Err(ReadError::Malformed("no line end after a chunk".into()));
            }
        }
        // Trailer fields, up to the empty line; bounded like the head.
        let mut trailer = 0;
        loop {
            let line = self.line()?;
            if line.is_empty() {
                return Ok(());
            }
            trailer += line.len();
            if trailer > MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
        }
    }

    /// Tells a client that waits for it (`Expect: 100-continue`, as curl
    /// sends with larger bodies) to send the body.
    fn send_continue(&mut self) -> Result<(), ReadError> {
        (&mut self.stream)
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Gone)
    }
}

/// What an answer says.
pub struct Answer<'a> {
    pub status: u16,
    pub content_type: &'a str,
    /// Header lines to add, each ending in `\r\n`.
    pub extra_headers: &'a str,
    /// The body, in pieces written one after the other.
    pub body: &'a [&'a str],
    /// `false` for HEAD: the headers announce the body but it is not sent.
    pub send_body: bool,
}

/// Writes `answer` and closes the connection gracefully.
pub fn write_answer(mut stream: &TcpStream, answer: &Answer) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.iter().map(|piece| piece.len()).sum::<usize>()
    );
    if answer.status == 405 {
        head.push_str("Allow: GET, POST, HEAD\r\n");
    }
    head.push_str(answer.extra_headers);
    head.push_str("\r\n");
    let body = if answer.send_body { answer.body } else { &[] };
    // Head and body by writev, without copying the body behind the head
    // (std passes at most IOV_MAX pieces a call).
    let mut slices: Vec<IoSlice> = std::iter::once(head.as_str())
        .chain(body.iter().copied())
        .map(|piece| IoSlice::new(piece.as_bytes()))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()?;
    close_gently(stream, Duration::from_millis(500));
    Ok(())
}

/// Half-closes, then reads (briefly, boundedly) what the client still
/// sends. Closing a socket with unread input makes the kernel send a reset,
/// which can destroy an answer the client has not read yet — for example a
/// 413 sent before the body it refuses. Gives up after `linger`.
pub fn close_gently(mut stream: &TcpStream, linger: Duration) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + linger;
    let mut drained = 0;
    let mut chunk = [0; CHUNK];
    while drained < 4 * MAX_BODY {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Sends `bytes` from a client (which then waits, holding the
    /// connection open) and reads one request with a deadline of `patience`.
    fn read_from(bytes: &[u8], patience: Duration) -> Result<Request, ReadError> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(bytes).unwrap();
        let (server, _) = listener.accept().unwrap();
        let result = read_request(&server, Instant::now() + patience);
        drop(client);
        result
    }

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        read_from(bytes, Duration::from_secs(5))
    }

    #[test]
    fn reads_a_request_and_drops_its_body() {
        let request =
            read(b"POST /stop?name=a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.url, "/stop?name=a");
        assert_eq!(request.header("host"), Some("x"));
        let chunked = b"POST /queue HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                        5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(read(chunked).unwrap().url, "/queue");
        // Bare line feeds are tolerated, as most servers do.
        assert_eq!(
            read(b"GET /queue HTTP/1.0\n\n").unwrap().method,
            Method::Get
        );
    }

    #[test]
    fn refuses_large_bodies_before_reading_them() {
        let lying = b"POST /queue HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\nabc";
        assert_eq!(read(lying).unwrap_err(), ReadError::BodyTooLarge);
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
        assert_eq!(read(huge).unwrap_err(), ReadError::BodyTooLarge);
        let just_over = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            read(just_over.as_bytes()).unwrap_err(),
            ReadError::BodyTooLarge
        );
        let big_chunk = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n";
        assert_eq!(read(big_chunk).unwrap_err(), ReadError::BodyTooLarge);
        let endless =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n";
        assert_eq!(read(endless).unwrap_err(), ReadError::BodyTooLarge);
        // Many small chunks add up.
        let mut many = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..=MAX_BODY / 1024 {
            many.extend_from_slice(b"400\r\n");
            many.extend_from_slice(&[b'x'; 1024]);
            many.extend_from_slice(b"\r\n");
        }
        assert_eq!(read(&many).unwrap_err(), ReadError::BodyTooLarge);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let status = |bytes: &[u8]| read(bytes).unwrap_err().status();
        assert_eq!(status(b"GARBAGE\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET /\x01 HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Some(400)
        );
        let mut long_header = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long_header.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(status(&long_header), Some(431));
        let mut many_headers = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many_headers.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many_headers.extend_from_slice(b"\r\n");
        assert_eq!(status(&many_headers), Some(431));
    }

    #[test]
    fn a_stalled_client_times_out_at_the_deadline() {
        let patience = Duration::from_millis(100);
        let started = Instant::now();
        let half = read_from(b"GET /queue HTTP/1.1\r\nHost:", patience);
        assert_eq!(half.unwrap_err(), ReadError::TimedOut);
        let short_body = read_from(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", patience);
        assert_eq!(short_body.unwrap_err(), ReadError::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_client_that_goes_away_gets_no_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"GET /queue HT").unwrap();
        drop(client);
        let (server, _) = listener.accept().unwrap();
        let result = read_request(&server, Instant::now() + Duration::from_secs(5));
        assert_eq!(result.unwrap_err(), ReadError::Gone);
    }

    #[test]
    fn head_answers_announce_the_body_without_sending_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = thread::spawn(move || {
            let mut client = TcpStream::connect(addr).unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).unwrap();
            answer
        });
        let (server, _) = listener.accept().unwrap();
        let answer = Answer {
            status: 405,
            content_type: "text/plain",
            extra_headers: "",
            body: &["no\n"],
            send_body: false,
        };
        write_answer(&server, &answer).unwrap();
        drop(server);
        let text = client.join().unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(text.contains("Allow: GET, POST, HEAD\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
