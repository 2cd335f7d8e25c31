//! Thousands of malformed and hostile requests from several threads, with
//! slow clients holding connections open meanwhile; silent clients beyond
//! the connection limit; too few descriptors; a thread the system refuses.
//! Afterwards the daemon still answers and still runs its jobs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{TestEnv, http, process_alive, raw_http, status_of};

const THREADS: usize = 4;
const REQUESTS_PER_THREAD: usize = 1500;
const SLOW_CLIENTS: usize = 24;

/// The `i`-th hostile request: bytes to send, and whether to hang up right
/// after sending them instead of reading the answer.
fn hostile_request(i: usize) -> (Vec<u8>, bool) {
    let text = |s: &str| s.as_bytes().to_vec();
    let request = match i % 20 {
        0 => text("BREW /queue HTTP/1.1\r\n\r\n"),
        1 => text("GET\r\n\r\n"),
        2 => vec![0, 1, 2, 255, 254, b'\r', b'\n', b'\r', b'\n'],
        3 => text("GET /queue HTTP/9.9\r\n\r\n"),
        4 => text("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        5 => format!(
            "GET /queue HTTP/1.1\r\nX: {}\r\n\r\n",
            "h".repeat(40 * 1024)
        )
        .into_bytes(),
        6 => {
            let headers: String = (0..500).map(|n| format!("X-{n}: {n}\r\n")).collect();
            format!("GET /queue HTTP/1.1\r\n{headers}\r\n").into_bytes()
        }
        7 => format!(
            "POST /trigger?name=alive HTTP/1.1\r\nContent-Length: 200000\r\n\r\n{}",
            "b".repeat(100 * 1024)
        )
        .into_bytes(),
        8 => text("POST /queue HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\nab"),
        9 => text("POST /queue HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\nxx"),
        10 => text("POST /queue HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"),
        11 => text("GET /trigger?name=%E0%A4%A HTTP/1.1\r\n\r\n"),
        12 => text("GET /job?name=%ff%00 HTTP/1.1\r\n\r\n"),
        13 => text("GET /reload?name=../../../../etc/passwd HTTP/1.1\r\n\r\n"),
        14 => text("GET /job?name=..%2F..%2F..%2Fetc%2Fshadow HTTP/1.1\r\n\r\n"),
        15 => text("GET /../../etc/passwd HTTP/1.1\r\n\r\n"),
        16 => text("GET /queue HTTP/1.1\r\nBroken header line\r\n\r\n"),
        17 => text("GET /queue HTTP/1.1\r\nX: a\0b\r\n\r\n"),
        18 => format!("GET /{} HTTP/1.1\r\n\r\n", "q".repeat(15 * 1024)).into_bytes(),
        // Half a request, then hang up.
        _ => return (text("POST /stopall HTTP/1.1\r\nContent-Le"), true),
    };
    (request, false)
}

#[test]
fn hostile_clients_never_stop_the_server_or_the_jobs() {
    let env = TestEnv::new();
    env.write_job("alive", &env.fake_job("alive", &[], json!({})));
    let daemon = env.start();
    let addr = daemon.addr.clone();
    let started = Instant::now();

    // Slow clients: half a request each, then silence, for the whole flood.
    let slow: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|i| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            let half: &[u8] = if i % 2 == 0 {
                b"GET /queue HTTP/1.1\r\nHost: x"
            } else {
                b"POST /queue HTTP/1.1\r\nContent-Length: 1000\r\n\r\nonly-a-little"
            };
            stream.write_all(half).unwrap();
            stream
        })
        .collect();

    let sent = AtomicUsize::new(0);
    let answered_wrongly = std::sync::Mutex::new(Vec::new());
    thread::scope(|scope| {
        for t in 0..THREADS {
            let (addr, sent, wrong) = (&addr, &sent, &answered_wrongly);
            scope.spawn(move || {
                for n in 0..REQUESTS_PER_THREAD {
                    let i = t * REQUESTS_PER_THREAD + n;
                    let (request, hang_up) = hostile_request(i);
                    let mut stream = TcpStream::connect(addr).expect("the server accepts");
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    // The server may refuse before reading everything.
                    let _ = stream.write_all(&request);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if hang_up {
                        continue;
                    }
                    let _ = stream.shutdown(Shutdown::Write);
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                    let status = status_of(&String::from_utf8_lossy(&answer));
                    // A refusal (4xx) every time; never a success, never
                    // silence, never a server error.
                    if !(400..500).contains(&status) {
                        wrong.lock().unwrap().push((i % 20, status));
                    }
                }
            });
        }
        // Meanwhile, with the slow clients still holding their connections,
        // an honest client is served.
        scope.spawn(|| {
            for _ in 0..50 {
                assert_eq!(daemon.get("/queue").0, 200);
                thread::sleep(Duration::from_millis(20));
            }
        });
    });
    let flood = started.elapsed();
    let sent = sent.into_inner();
    eprintln!(
        "robustness: {sent} hostile requests from {THREADS} threads with {SLOW_CLIENTS} \
         slow clients in {flood:?}"
    );
    let wrong = answered_wrongly.into_inner().unwrap();
    assert!(
        wrong.is_empty(),
        "(kind, status) answered wrongly: {wrong:?}"
    );
    assert_eq!(sent, THREADS * REQUESTS_PER_THREAD);
    assert!(flood < Duration::from_secs(45), "the flood took {flood:?}");

    // The slow clients were not answered while they were silent (the server
    // gives up on them after 10 s, which a slow machine may have reached).
    for mut stream in slow.into_iter().filter(|_| flood < Duration::from_secs(9)) {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0; 1];
        assert!(
            stream.read(&mut byte).is_err(),
            "a slow client got an answer"
        );
    }

    assert!(process_alive(daemon.pid()), "{}", daemon.stderr());
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(daemon.queue()["Jobs"][0]["status"], "waiting");
    assert!(
        env.starts("alive").is_empty(),
        "a hostile request ran a job"
    );
    assert_eq!(daemon.get("/trigger?name=alive").0, 200);
    daemon.wait_outcome("alive", "success");
    // Every connection's thread is gone once its client is.
    daemon.wait_for("the connection threads to end", |d| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).ok()?;
        let threads: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))?
            .trim()
            .parse()
            .ok()?;
        (threads < 10).then_some(())
    });
    // Clients still connected do not hold up a shutdown.
    let _slow: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream.write_all(b"GET /queue HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();
    let asked = Instant::now();
    assert_eq!(daemon.terminate().code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn clients_that_send_nothing_cannot_lock_others_out() {
    let env = TestEnv::with_config(json!({"SrvConf": {"Token": "tok-idle"}}));
    let daemon = env.start();
    // More silent connections than the server has slots, all accepted
    // (in order) before the honest requests below.
    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(&daemon.addr).unwrap())
        .collect();
    let asked = Instant::now();
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    let (status, body) = http(
        &daemon.addr,
        "GET",
        "/queue",
        &[("Authorization", "Bearer tok-idle")],
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // Well within the 10 s a silent client may hold a connection.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // The connection that waited longest was closed to make room, without
    // an answer.
    let mut oldest = &idle[0];
    oldest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let closed = oldest.read_to_end(&mut answer);
    assert!(
        matches!(closed, Ok(0)),
        "{closed:?} {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(idle);
    assert!(process_alive(daemon.pid()), "{}", daemon.stderr());
}

#[test]
fn running_out_of_descriptors_only_pauses_the_server() {
    let env = TestEnv::new();
    env.write_job("alive", &env.fake_job("alive", &[], json!({})));
    let mut command = std::process::Command::new(&*crate::support::DAEMON);
    command
        .arg("--config")
        .arg(&env.config)
        .arg(&env.jobs)
        .arg("127.0.0.1:0");
    // SAFETY: setrlimit is async-signal-safe; this runs in the child
    // between fork and exec and touches nothing else.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 40,
                rlim_max: 40,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let daemon = crate::support::Daemon::spawn(command);
    // Idle clients until the daemon has no descriptor left to accept with.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&daemon.addr).unwrap())
        .collect();
    daemon.wait_for("the accept failures", |d| {
        d.stderr()
            .contains("cannot accept a connection")
            .then_some(())
    });
    drop(idle);
    // Once they are gone, the server answers and the job runs again.
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    daemon.wait_for("the descriptors to come back", |d| {
        let open = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .ok()?
            .count();
        (open < 20).then_some(())
    });
    assert_eq!(daemon.get("/trigger?name=alive").0, 200);
    daemon.wait_outcome("alive", "success");
}

/// Sets the soft address-space limit of process `pid` to `soft` bytes;
/// returns the limits it had.
fn limit_address_space(pid: u32, soft: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit only reads `new` and writes `old`, both valid here.
    let result = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_AS,
            std::ptr::null(),
            &mut old,
        );
        let new = libc::rlimit {
            rlim_cur: soft.min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_AS,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(result, 0, "prlimit: {}", std::io::Error::last_os_error());
    old
}

#[test]
fn a_connection_without_a_thread_gets_503_and_the_daemon_goes_on() {
    let env = TestEnv::new();
    env.write_job("alive", &env.fake_job("alive", &[], json!({})));
    let daemon = env.start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let mapped_kib: libc::rlim_t = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().strip_suffix(" kB")?.parse().ok())
        .expect("VmSize in /proc/PID/status");
    // 1 MiB more than the daemon has mapped: room for small allocations,
    // none for a thread's 2 MiB stack. (Idle clients take any stack the C
    // library kept from a finished thread before the request below.)
    let old = limit_address_space(daemon.pid(), (mapped_kib + 1024) * 1024);
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(&daemon.addr).unwrap())
        .collect();
    let answer = raw_http(&daemon.addr, b"GET /healthz HTTP/1.1\r\n\r\n");
    // SAFETY: as in `limit_address_space`.
    unsafe {
        libc::prlimit(
            daemon.pid() as libc::pid_t,
            libc::RLIMIT_AS,
            &old,
            std::ptr::null_mut(),
        );
    }
    let answer =
        answer.unwrap_or_else(|e| panic!("no answer ({e}) where 503 was due\n{}", daemon.stderr()));
    assert_eq!(status_of(&answer), 503, "{answer:?}\n{}", daemon.stderr());
    assert!(answer.contains("Retry-After: 1\r\n"), "{answer}");
    daemon.wait_stderr("[WARN] http: cannot start a thread for 127.0.0.1:");
    drop(idle);
    assert!(process_alive(daemon.pid()), "{}", daemon.stderr());
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(daemon.get("/trigger?name=alive").0, 200);
    daemon.wait_outcome("alive", "success");
}
