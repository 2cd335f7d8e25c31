//! Preconditions (SPEC §3.1): checks that must hold before a run, such as
//! a backup source on a USB disk that must be mounted. One round runs every
//! check (no short-circuit) and reports each failing one.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// A job's preconditions, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preconditions {
    /// `PathesMust` / `PathsMust`: each a directory with at least one entry.
    pub paths: Vec<PathBuf>,
    /// `HostsMustRoute`: each name resolves.
    pub hosts_route: Vec<String>,
    /// `HostsMustConnect`: each accepts a TCP connection.
    pub hosts_connect: Vec<(String, u16)>,
    /// `CheckPrecondsEvery`: the wait between two rounds.
    pub every: Duration,
    /// `CheckPrecondsMaxTimes`: rounds before the run is skipped (≥ 1).
    pub rounds: u32,
}

/// How long one DNS lookup or TCP connection may take.
pub const CHECK_LIMIT: Duration = Duration::from_secs(10);

/// The stack of the threads a round starts. They only wait, call
/// getaddrinfo or connect, so the default 2 MiB would be waste; glibc's
/// resolver and NSS modules keep their buffers on the heap, and 256 KiB
/// leaves them a wide margin.
const CHECK_THREAD_STACK: usize = 256 * 1024;

/// Runs every check once; returns what failed, one line each
/// (`/mnt/usb: empty directory`, `nas.local: no such host`,
/// `nas.local:22: connection refused`), paths first, then `HostsMustRoute`,
/// then `HostsMustConnect`, each in the order the job file gives them.
///
/// Host checks run in parallel, one thread each, all against one deadline
/// [`CHECK_LIMIT`] after the round starts, so a round with many hosts takes
/// about `CHECK_LIMIT` at most, not one limit per host. Paths are checked
/// on the calling thread meanwhile: a `stat` and one directory entry each.
/// (A path on a hung NFS mount can still block that thread, which is why
/// the caller runs rounds off any thread that must stay responsive.)
pub fn check_round(preconditions: &Preconditions) -> Vec<String> {
    let deadline = Instant::now() + CHECK_LIMIT;
    // Start the host checks first so that they run while the paths are
    // looked at.
    let route_checks: Vec<(String, HostCheck)> = preconditions
        .hosts_route
        .iter()
        .map(|host| {
            let owned = host.clone();
            let check = HostCheck::start(move || check_route(&owned, deadline));
            (host.clone(), check)
        })
        .collect();
    let connect_checks: Vec<(String, HostCheck)> = preconditions
        .hosts_connect
        .iter()
        .map(|(host, port)| {
            let owned = host.clone();
            let port = *port;
            let check = HostCheck::start(move || check_connect(&owned, port, deadline));
            (host_and_port(host, port), check)
        })
        .collect();
    let mut failures: Vec<String> = preconditions
        .paths
        .iter()
        .filter_map(|path| check_path(path).map(|why| format!("{}: {why}", path.display())))
        .collect();
    for (label, check) in route_checks.into_iter().chain(connect_checks) {
        if let Some(why) = check.finish() {
            failures.push(format!("{label}: {why}"));
        }
    }
    failures
}

/// Why `path` is not (after following symlinks) a directory with at least
/// one entry, if it is not. A mount point whose disk is not mounted is an
/// empty directory, and backing it up would replace real snapshots with
/// empty ones.
fn check_path(path: &Path) -> Option<String> {
    // `metadata` never opens the file, so a FIFO cannot make this wait for
    // a writer: it is "not a directory", and only directories are opened.
    match fs::metadata(path) {
        Err(e) if is_missing(&e) => Some("no such directory".into()),
        Err(e) => Some(format!("cannot read: {e}")),
        Ok(meta) if !meta.is_dir() => Some("not a directory".into()),
        Ok(_) => match fs::read_dir(path) {
            Err(e) => Some(format!("cannot read: {e}")),
            // std leaves out `.` and `..`.
            Ok(mut entries) => match entries.next() {
                None => Some("empty directory".into()),
                Some(Err(e)) => Some(format!("cannot read: {e}")),
                Some(Ok(_)) => None,
            },
        },
    }
}

/// Whether `error` says the path is not there: a component missing, or one
/// on the way being a file (`/mnt/usb/photos` when `/mnt/usb` is a file).
fn is_missing(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// `host:port`, with an IPv6 address in brackets so the port stands apart.
fn host_and_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One host check on a thread of its own.
enum HostCheck {
    Running(thread::JoinHandle<Option<String>>),
    /// The thread could not be started: the check failed for that reason.
    NotStarted(String),
}

impl HostCheck {
    fn start(check: impl FnOnce() -> Option<String> + Send + 'static) -> HostCheck {
        let spawned = thread::Builder::new()
            .name("precondition".into())
            .stack_size(CHECK_THREAD_STACK)
            .spawn(check);
        match spawned {
            Ok(handle) => HostCheck::Running(handle),
            Err(e) => HostCheck::NotStarted(format!("cannot start the check: {e}")),
        }
    }

    /// The check's failure, if it failed. Joining waits at most until the
    /// round's deadline: the check bounds its lookup and its connections by
    /// it.
    fn finish(self) -> Option<String> {
        match self {
            HostCheck::Running(handle) => handle
                .join()
                .unwrap_or_else(|_| Some("the check failed unexpectedly (a bug)".into())),
            HostCheck::NotStarted(why) => Some(why),
        }
    }
}

/// `HostsMustRoute`: the name resolves.
fn check_route(host: &str, deadline: Instant) -> Option<String> {
    resolve(host, deadline).err()
}

/// `HostsMustConnect`: the name resolves and one of its addresses accepts
/// a TCP connection, all before `deadline`. The connection is closed at
/// once: the check only asks whether the host answers.
fn check_connect(host: &str, port: u16, deadline: Instant) -> Option<String> {
    let addresses = match resolve(host, deadline) {
        Ok(addresses) => addresses,
        Err(why) => return Some(why),
    };
    let mut failures: Vec<String> = Vec::new();
    for address in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        let failure = if left.is_zero() {
            timed_out()
        } else {
            match TcpStream::connect_timeout(&SocketAddr::new(address, port), left) {
                // Dropping the stream closes the connection.
                Ok(_stream) => return None,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    "connection refused".into()
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => timed_out(),
                Err(e) => e.to_string(),
            }
        };
        // A name with an IPv6 and an IPv4 address that both refuse says
        // "connection refused" once.
        if !failures.contains(&failure) {
            failures.push(failure);
        }
        if left.is_zero() {
            break;
        }
    }
    Some(failures.join("; "))
}

fn timed_out() -> String {
    format!("timed out after {} s", CHECK_LIMIT.as_secs())
}

/// The addresses of `host` (DNS or `/etc/hosts`), or why there are none.
///
/// getaddrinfo cannot be interrupted, and a resolver that gets no answer
/// may retry for longer than [`CHECK_LIMIT`]. So the lookup runs on a
/// helper thread and we wait for it until `deadline` only. A helper that
/// is still waiting then is left to finish on its own (it ends when the
/// resolver gives up, and its send into the dropped channel is a no-op):
/// it cannot be stopped, and joining it would bring back the wait this
/// avoids.
fn resolve(host: &str, deadline: Instant) -> Result<Vec<std::net::IpAddr>, String> {
    // An address needs no lookup (and no thread).
    if let Ok(address) = host.parse() {
        return Ok(vec![address]);
    }
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let owned = host.to_string();
    let spawned = thread::Builder::new()
        .name("precondition-dns".into())
        .stack_size(CHECK_THREAD_STACK)
        .spawn(move || {
            let addresses = (owned.as_str(), 0)
                .to_socket_addrs()
                .map(|found| found.map(|a| a.ip()).collect::<Vec<_>>());
            // The round may have stopped waiting.
            let _ = sender.send(addresses);
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the DNS lookup: {e}"));
    }
    match receiver.recv_deadline(deadline) {
        Ok(Ok(addresses)) if addresses.is_empty() => Err("no such host".into()),
        Ok(Ok(addresses)) => Ok(addresses),
        Ok(Err(e)) => Err(lookup_failure(&e)),
        Err(_) => Err(format!(
            "no answer from DNS within {} s",
            CHECK_LIMIT.as_secs()
        )),
    }
}

/// What a failed lookup says: "no such host" when the resolver said the
/// name does not exist, otherwise what it said (a resolver that cannot be
/// reached is not a missing host).
fn lookup_failure(error: &io::Error) -> String {
    let message = error.to_string();
    // std's wording around gai_strerror's.
    let reason = message
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&message);
    match reason {
        // EAI_NONAME and EAI_NODATA in glibc's words.
        "Name or service not known" | "No address associated with hostname" => {
            "no such host".into()
        }
        other => format!("cannot resolve: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn preconditions() -> Preconditions {
        Preconditions {
            paths: Vec::new(),
            hosts_route: Vec::new(),
            hosts_connect: Vec::new(),
            every: Duration::from_secs(60),
            rounds: 1,
        }
    }

    fn mkfifo(path: &Path) {
        let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
    }

    /// Runs a round on a thread of its own and fails when it does not return
    /// within the check limit and a margin.
    fn check_round_bounded(p: &Preconditions) -> Vec<String> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let p = p.clone();
        std::thread::spawn(move || sender.send(check_round(&p)));
        receiver
            .recv_timeout(CHECK_LIMIT + Duration::from_secs(5))
            .expect("check_round returned")
    }

    #[test]
    fn paths_must_be_directories_with_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        fs::create_dir(&full).unwrap();
        fs::write(full.join("photo.jpg"), "x").unwrap();
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&full, &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();

        assert_eq!(check_path(&full), None);
        assert_eq!(check_path(&link), None, "links are followed");
        assert_eq!(check_path(&empty).as_deref(), Some("empty directory"));
        assert_eq!(check_path(&file).as_deref(), Some("not a directory"));
        assert_eq!(check_path(&fifo).as_deref(), Some("not a directory"));
        assert_eq!(
            check_path(&dir.path().join("missing")).as_deref(),
            Some("no such directory")
        );
        assert_eq!(check_path(&dangling).as_deref(), Some("no such directory"));
        assert_eq!(
            check_path(&file.join("below")).as_deref(),
            Some("no such directory")
        );
    }

    #[test]
    fn an_unreadable_directory_says_why() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // Root reads every directory; there is nothing to test.
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::write(locked.join("x"), "x").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let why = check_path(&locked);
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            why.as_deref()
                .is_some_and(|w| w.starts_with("cannot read: Permission denied")),
            "{why:?}"
        );
    }

    #[test]
    fn a_fifo_in_a_round_is_reported_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let p = Preconditions {
            paths: vec![fifo.clone()],
            ..preconditions()
        };
        assert_eq!(
            check_round_bounded(&p),
            [format!("{}: not a directory", fifo.display())]
        );
    }

    #[test]
    fn localhost_resolves_and_an_invalid_name_does_not() {
        let deadline = Instant::now() + CHECK_LIMIT;
        assert_eq!(check_route("localhost", deadline), None);
        // RFC 6761: no name under .invalid ever resolves.
        let why = check_route("nas.restic-cronned.invalid", deadline);
        assert!(
            why.as_deref()
                .is_some_and(|w| w == "no such host" || w.starts_with("cannot resolve: ")),
            "{why:?}"
        );
    }

    #[test]
    fn only_a_name_the_resolver_denies_is_no_such_host() {
        let error =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(lookup_failure(&error), "no such host");
        let error = io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert_eq!(
            lookup_failure(&error),
            "cannot resolve: Temporary failure in name resolution"
        );
    }

    #[test]
    fn a_listening_port_accepts_and_a_closed_one_refuses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let gone = TcpListener::bind("127.0.0.1:0").unwrap();
            gone.local_addr().unwrap().port()
        };
        let deadline = Instant::now() + CHECK_LIMIT;
        assert_eq!(check_connect("127.0.0.1", open, deadline), None);
        assert_eq!(
            check_connect("127.0.0.1", closed, deadline).as_deref(),
            Some("connection refused")
        );
        // The check closed its connection: the listener sees one that ends
        // at once.
        let (mut accepted, _) = listener.accept().unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 1];
        assert_eq!(io::Read::read(&mut accepted, &mut buffer).unwrap(), 0);
    }

    #[test]
    fn a_passed_deadline_times_out_instead_of_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let why = check_connect("127.0.0.1", port, Instant::now() - Duration::from_secs(1));
        // The literal address needs no DNS: the deadline stops the connect.
        assert_eq!(why.as_deref(), Some("timed out after 10 s"));
    }

    #[test]
    fn a_round_reports_every_failure_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        fs::create_dir(&full).unwrap();
        fs::write(full.join("a"), "a").unwrap();
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let missing = dir.path().join("missing");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let gone = TcpListener::bind("127.0.0.1:0").unwrap();
            gone.local_addr().unwrap().port()
        };
        let p = Preconditions {
            paths: vec![empty.clone(), full, missing.clone()],
            hosts_route: vec!["localhost".into(), "a.invalid".into(), "b.invalid".into()],
            hosts_connect: vec![
                ("127.0.0.1".into(), closed),
                ("localhost".into(), open),
                ("c.invalid".into(), 22),
            ],
            ..preconditions()
        };
        let failures = check_round_bounded(&p);
        let labels: Vec<&str> = failures
            .iter()
            .map(|f| f.split_once(": ").map_or(f.as_str(), |(l, _)| l))
            .collect();
        let empty_label = empty.display().to_string();
        let missing_label = missing.display().to_string();
        let closed_label = format!("127.0.0.1:{closed}");
        assert_eq!(
            labels,
            [
                empty_label.as_str(),
                missing_label.as_str(),
                "a.invalid",
                "b.invalid",
                closed_label.as_str(),
                "c.invalid:22",
            ],
            "{failures:#?}"
        );
        assert_eq!(failures[0], format!("{empty_label}: empty directory"));
        assert_eq!(failures[1], format!("{missing_label}: no such directory"));
        assert_eq!(failures[4], format!("{closed_label}: connection refused"));
    }

    #[test]
    fn nothing_to_check_is_nothing_failed() {
        assert_eq!(check_round(&preconditions()), [""; 0]);
    }

    #[test]
    fn ipv6_addresses_are_bracketed_before_the_port() {
        assert_eq!(host_and_port("::1", 22), "[::1]:22");
        assert_eq!(host_and_port("nas.local", 22), "nas.local:22");
    }
}
