//! Debian's chromium, headless, for the status page tests: a bounded run of
//! the command line (`--dump-dom`, `--screenshot`), and a browser driven over
//! the DevTools protocol on a pipe.
//!
//! `--remote-debugging-pipe` speaks the same JSON messages as the DevTools
//! websocket, each ended by a NUL byte, on descriptors 3 (to chromium) and
//! 4 (from chromium): no websocket client, no port, nothing but std and
//! libc.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::PATIENCE;

/// A chromium command line with a fresh profile, in a process group of its
/// own so that every process it starts can be killed with it.
///
/// `--no-sandbox` because CI runs as root, where chromium refuses to start
/// with its sandbox; the only page it loads is ours. The rest keep a
/// headless chromium from reaching for the network (closed here but for
/// loopback) or a GPU.
fn command(profile: &TempDir) -> Command {
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=900,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .process_group(0);
    command
}

fn spawn(command: &mut Command) -> Child {
    command.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start chromium ({e}); install it with `apt-get install chromium` \
             (.ci/run and scripts/test do)"
        )
    })
}

/// Kills chromium's whole process group (it starts a zygote, renderers and
/// a GPU process) and reaps the browser.
fn kill(child: &mut Child) {
    // SAFETY: plain syscall; the group is the one `command` made for this
    // child, whose id is the group's.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Runs chromium with `args` and `url`, and returns what it printed on
/// stdout. Fails the test when it takes longer than [`PATIENCE`] or fails.
pub fn run(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = command(&profile);
    command
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut command);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Also ends what the browser left behind, which would hold the pipes.
    kill(&mut child);
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) if status.success() => out,
        _ => panic!("chromium {args:?} {url}: {status:?}\nstderr:\n{err}"),
    }
}

/// A headless chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    child: Child,
    /// Descriptor 3 in chromium.
    commands: File,
    /// Messages chromium sent, parsed by a reader thread, so that every wait
    /// has a timeout.
    messages: Receiver<Value>,
    /// Events that arrived while waiting for answers.
    pub events: Vec<Value>,
    next_id: u64,
    /// The page's session; commands without one go to the browser.
    session: Option<String>,
    _profile: TempDir,
}

/// A pipe whose ends are closed on exec, so that no other test's child
/// inherits them (a copy of the write end would keep our reader from ever
/// seeing the end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let result = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(result, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both descriptors are open and only ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts chromium on a blank page, attached to that page with the
    /// runtime and the console log reporting.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (chromium_reads, we_write) = pipe();
        let (we_read, chromium_writes) = pipe();
        let (read_end, write_end) = (chromium_reads.as_raw_fd(), chromium_writes.as_raw_fd());
        let mut command = command(&profile);
        command
            .args(["--remote-debugging-pipe", "about:blank"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between
        // fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Copy both ends above 4 first, so that putting one on 3 or 4
                // cannot close the other. dup2's copies are not closed on exec.
                let read_copy = libc::fcntl(read_end, libc::F_DUPFD, 10);
                let write_copy = libc::fcntl(write_end, libc::F_DUPFD, 10);
                if read_copy < 0
                    || write_copy < 0
                    || libc::dup2(read_copy, 3) < 0
                    || libc::dup2(write_copy, 4) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                libc::close(read_copy);
                libc::close(write_copy);
                Ok(())
            });
        }
        let child = spawn(&mut command);
        drop((chromium_reads, chromium_writes));
        let (sender, messages) = mpsc::channel();
        let from_chromium = File::from(we_read);
        thread::spawn(move || {
            let mut reader = BufReader::new(from_chromium);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                let Ok(message) = serde_json::from_slice(&message) else {
                    continue;
                };
                if sender.send(message).is_err() {
                    return;
                }
            }
        });
        let mut browser = Browser {
            child,
            commands: File::from(we_write),
            messages,
            events: Vec::new(),
            next_id: 0,
            session: None,
            _profile: profile,
        };
        let targets = browser.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .unwrap_or_else(|| panic!("chromium has no page: {targets}"))["targetId"]
            .clone();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().map(str::to_string);
        assert!(browser.session.is_some(), "not attached: {attached}");
        for domain in ["Page", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}));
        }
        browser
    }

    /// Sends `method` and waits (bounded) for its answer.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = session.as_str().into();
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("cannot send {method} to chromium: {e}"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("chromium did not answer {method}: {e}"));
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    /// Lays the page out as on a screen `width` × `height` CSS pixels, a
    /// phone's (a touch screen at twice the density, and the page's
    /// `viewport` meta tag honoured) when `phone`.
    pub fn set_screen(&mut self, width: u32, height: u32, phone: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "mobile": phone,
                   "deviceScaleFactor": if phone { 2 } else { 1 }}),
        );
    }

    /// Makes every request whose URL matches one of `patterns` (`*` for
    /// any text) fail, as a server that does not answer would.
    pub fn block_requests(&mut self, patterns: &[&str]) {
        self.call("Network.enable", json!({}));
        self.call("Network.setBlockedURLs", json!({"urls": patterns}));
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({"url": url}));
        assert!(result.get("errorText").is_none(), "{url}: {result}");
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it gives something other than `null`,
    /// `false` or `undefined`, and returns that; fails after [`PATIENCE`].
    pub fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.evaluate(expression);
            if !(value.is_null() || value == false) {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.evaluate("document.body.innerText");
                panic!("timed out waiting for {what}\npage text:\n{text}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the middle of the element `selector` finds, as a mouse does:
    /// pressed and released there, through the browser's input handling.
    pub fn click(&mut self, selector: &str) {
        let selector_json = serde_json::to_string(selector).unwrap();
        let point = self.evaluate(&format!(
            "(() => {{ const e = document.querySelector({selector_json}); if (!e) return null;
               e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
               return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()"
        ));
        assert!(point.is_object(), "nothing to click at {selector}");
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": point["x"], "y": point["y"],
                       "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Errors the page reported: uncaught exceptions, `console.error`, and
    /// the browser's own error log (refused loads, CSP violations).
    pub fn errors(&mut self) -> Vec<&Value> {
        while let Ok(message) = self.messages.try_recv() {
            self.events.push(message);
        }
        self.events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => e["params"]["type"] == "error",
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
