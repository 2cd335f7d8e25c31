//! Repository passwords from the keyring: `rckeyutil` and the daemon against
//! a private D-Bus session bus with a real gnome-keyring (started here and
//! torn down after each test), and against the kernel keyring; the real
//! restic with a password from both; and that the password shows up nowhere
//! but in restic's environment.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{Daemon, PATIENCE, RCKEYUTIL, TestEnv};

/// A session bus that only knows what we start on it: no service files, so
/// nothing is activated behind our back.
const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=SOCKET</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

/// The password of the test's gnome-keyring ("login") keyring.
const KEYRING_PASSWORD: &str = "keyring-unlock-pw";

/// A private D-Bus session bus, optionally with gnome-keyring on it. Both
/// are our children, stopped and reaped on drop; gnome-keyring keeps its
/// files under the temp dir, never in the real home.
struct SecretService {
    dir: TempDir,
    address: String,
    bus: Child,
    keyring: Option<Child>,
}

impl SecretService {
    /// A bus with an unlocked gnome-keyring that has a default collection.
    fn start() -> SecretService {
        let mut service = SecretService::bus_only();
        service.start_keyring(true);
        service
    }

    /// A bus with nothing on it.
    fn bus_only() -> SecretService {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["home", "data", "config", "cache", "run"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        // gnome-keyring insists on a private runtime directory.
        fs::set_permissions(dir.path().join("run"), fs::Permissions::from_mode(0o700)).unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        fs::write(
            &config,
            BUS_CONFIG.replace("SOCKET", socket.to_str().unwrap()),
        )
        .unwrap();
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(dir.path().join("bus.err")).unwrap())
            .spawn()
            .expect("dbus-daemon is installed (.ci/run installs dbus)");
        let stdout = bus.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let address = match receiver.recv_timeout(PATIENCE) {
            Ok(line) if !line.trim().is_empty() => line.trim().to_string(),
            _ => {
                let _ = bus.kill();
                let _ = bus.wait();
                panic!(
                    "dbus-daemon printed no address: {}",
                    fs::read_to_string(dir.path().join("bus.err")).unwrap_or_default()
                );
            }
        };
        SecretService {
            dir,
            address,
            bus,
            keyring: None,
        }
    }

    /// Starts gnome-keyring on the bus and waits until its default
    /// collection is there (and, with `unlock`, unlocked: `--unlock` reads
    /// the keyring password on stdin and creates the login keyring the
    /// first time). Without `unlock`, an existing login keyring stays
    /// locked.
    fn start_keyring(&mut self, unlock: bool) {
        assert!(self.keyring.is_none(), "one gnome-keyring at a time");
        let root = self.dir.path();
        let mut command = Command::new("gnome-keyring-daemon");
        command.args(["--foreground", "--components=secrets"]);
        if unlock {
            command.arg("--unlock");
        }
        let mut keyring = command
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .env("HOME", root.join("home"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_CACHE_HOME", root.join("cache"))
            .env("XDG_RUNTIME_DIR", root.join("run"))
            .env_remove("GNOME_KEYRING_CONTROL")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(
                File::options()
                    .create(true)
                    .append(true)
                    .open(root.join("keyring.err"))
                    .unwrap(),
            )
            .spawn()
            .expect("gnome-keyring-daemon is installed (.ci/run installs gnome-keyring)");
        let mut stdin = keyring.stdin.take().unwrap();
        if unlock {
            stdin.write_all(KEYRING_PASSWORD.as_bytes()).unwrap();
        }
        drop(stdin);
        self.keyring = Some(keyring);
        let want_locked = if unlock { "false" } else { "true" };
        self.wait_for("gnome-keyring's default collection", |s| {
            let path = s.default_collection()?;
            let locked = s.dbus_send(&[
                &path,
                "org.freedesktop.DBus.Properties.Get",
                "string:org.freedesktop.Secret.Collection",
                "string:Locked",
            ])?;
            locked
                .contains(&format!("boolean {want_locked}"))
                .then_some(())
        });
    }

    /// Stops gnome-keyring (SIGTERM, so it cleans up its sockets) and reaps
    /// it; the bus stays.
    fn stop_keyring(&mut self) {
        let Some(mut keyring) = self.keyring.take() else {
            return;
        };
        // SAFETY: plain syscall on our own, unreaped child.
        unsafe {
            libc::kill(keyring.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + PATIENCE;
        while keyring.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = keyring.kill();
                let _ = keyring.wait();
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        // The bus drops the name when it sees the connection close.
        self.wait_for("org.freedesktop.secrets to go away", |s| {
            s.dbus_send_to(
                "org.freedesktop.DBus",
                &[
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ],
            )
            .filter(|reply| reply.contains("boolean false"))
            .map(|_| ())
        });
    }

    /// The default collection's object path, once there is one.
    fn default_collection(&self) -> Option<String> {
        let reply = self.dbus_send(&[
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.ReadAlias",
            "string:default",
        ])?;
        let path = reply.split('"').nth(1)?.to_string();
        (path != "/").then_some(path)
    }

    fn dbus_send(&self, args: &[&str]) -> Option<String> {
        self.dbus_send_to("org.freedesktop.secrets", args)
    }

    fn dbus_send_to(&self, destination: &str, args: &[&str]) -> Option<String> {
        let output = Command::new("dbus-send")
            .arg(format!("--bus={}", self.address))
            .arg("--print-reply")
            .arg(format!("--dest={destination}"))
            .args(args)
            .output()
            .expect("dbus-send is installed (.ci/run installs dbus)");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn wait_for(&self, what: &str, mut check: impl FnMut(&SecretService) -> Option<()>) {
        let deadline = Instant::now() + PATIENCE;
        while check(self).is_none() {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\ngnome-keyring stderr:\n{}\nbus stderr:\n{}",
                    fs::read_to_string(self.dir.path().join("keyring.err")).unwrap_or_default(),
                    fs::read_to_string(self.dir.path().join("bus.err")).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// `command` talking to this bus.
    fn on_bus(&self, mut command: Command) -> Command {
        command.env("DBUS_SESSION_BUS_ADDRESS", &self.address);
        command
    }

    /// `secret-tool ARGS` on this bus, with `stdin`.
    fn secret_tool(&self, args: &[&str], stdin: &str) -> Ran {
        let mut command = self.on_bus(Command::new("secret-tool"));
        command.args(args);
        run(command, stdin)
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        self.stop_keyring();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

/// How a finished command went.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn assert_code(&self, code: i32, what: &str) -> &Ran {
        assert_eq!(self.code, Some(code), "{what}: {self:#?}");
        self
    }
}

/// Runs `command` with `stdin`, bounded by [`PATIENCE`].
fn run(mut command: Command, stdin: &str) -> Ran {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    let pid = child.id();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(PATIENCE) {
        Ok(Ok(output)) => Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("{description}: {e}"),
        Err(_) => {
            // SAFETY: plain syscall on our own child, which the thread
            // above reaps once it dies.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("{description} did not finish");
        }
    }
}

/// `rckeyutil ARGS` with `stdin`, on `bus` when given (else with a bus
/// address that leads nowhere, so the developer's own keyring is never
/// touched).
fn rckeyutil(bus: Option<&SecretService>, args: &[&str], stdin: &str) -> Ran {
    let mut command = Command::new(&*RCKEYUTIL);
    command.args(args);
    match bus {
        Some(bus) => run(bus.on_bus(command), stdin),
        None => {
            command.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
            run(command, stdin)
        }
    }
}

/// A service name no other test (or test run, or worktree) uses: the
/// kernel keyring is shared by all processes of the user.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "rc-test-{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes a kernel keyring entry when the test ends, however it ends.
struct KernelEntry {
    service: String,
    username: String,
}

impl KernelEntry {
    fn new(prefix: &str) -> KernelEntry {
        KernelEntry {
            service: unique(prefix),
            username: "backup".into(),
        }
    }

    fn set(&self, password: &str) {
        let args = [
            "--backend",
            "keyutils",
            "set",
            &self.service,
            &self.username,
        ];
        rckeyutil(None, &args, &format!("{password}\n")).assert_code(0, "rckeyutil set");
    }
}

impl Drop for KernelEntry {
    fn drop(&mut self) {
        let args = [
            "--backend",
            "keyutils",
            "del",
            &self.service,
            &self.username,
        ];
        let _ = rckeyutil(None, &args, "");
    }
}

/// The attributes of the Secret Service items matching `service`, as
/// `secret-tool search` shows them: one list per item.
fn item_attributes(bus: &SecretService, service: &str) -> Vec<Vec<String>> {
    let found = bus.secret_tool(&["search", "--all", "service", service], "");
    let mut items: Vec<Vec<String>> = Vec::new();
    for line in found.stdout.lines().chain(found.stderr.lines()) {
        if line.starts_with('[') {
            items.push(Vec::new());
        } else if let Some(rest) = line.strip_prefix("attribute.") {
            let name = rest.split(" = ").next().unwrap().to_string();
            items
                .last_mut()
                .expect("attributes follow an item")
                .push(name);
        }
    }
    for item in &mut items {
        item.sort();
    }
    items
}

#[test]
fn rckeyutil_sets_gets_and_deletes_on_the_secret_service() {
    let bus = SecretService::start();
    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--backend", "secret-service"][..], args].concat()
    }

    rckeyutil(
        Some(&bus),
        &with(&["set", "repo1", "alice"]),
        "from stdin\n",
    )
    .assert_code(0, "set from stdin");
    let got = rckeyutil(Some(&bus), &with(&["get", "repo1", "alice"]), "");
    assert_eq!(got.assert_code(0, "get").stdout, "from stdin\n");
    // Stored as the Go tool stored it: found by service and username alone,
    // with no other attributes.
    let lookup = bus.secret_tool(&["lookup", "service", "repo1", "username", "alice"], "");
    assert_eq!(
        lookup.assert_code(0, "secret-tool lookup").stdout,
        "from stdin"
    );
    assert_eq!(item_attributes(&bus, "repo1"), [["service", "username"]]);

    rckeyutil(
        Some(&bus),
        &with(&["set", "repo1", "alice", "from argv"]),
        "",
    )
    .assert_code(0, "set from argv");
    let got = rckeyutil(Some(&bus), &with(&["get", "repo1", "alice"]), "");
    assert_eq!(got.assert_code(0, "get").stdout, "from argv\n");
    assert_eq!(
        item_attributes(&bus, "repo1").len(),
        1,
        "replaced, not added"
    );

    rckeyutil(Some(&bus), &with(&["del", "repo1", "alice"]), "").assert_code(0, "del");
    let gone = rckeyutil(Some(&bus), &with(&["get", "repo1", "alice"]), "");
    assert!(gone.assert_code(1, "get after del").stdout.is_empty());
    assert!(
        gone.stderr.contains(
            "no password for service \"repo1\", user \"alice\" in the Secret Service \
             (secret-service)"
        ),
        "{gone:#?}"
    );
    rckeyutil(Some(&bus), &with(&["del", "repo1", "alice"]), "").assert_code(1, "del again");
}

#[test]
fn rckeyutil_reads_what_secret_tool_stored_and_finds_it_with_auto() {
    let bus = SecretService::start();
    let env = TestEnv::new(); // its config has no Keyring: auto
    let config = env.config.to_str().unwrap();
    bus.secret_tool(
        &[
            "store",
            "--label",
            "go",
            "service",
            "restic-repo1",
            "username",
            "Apache",
        ],
        "stored by the Go tool",
    )
    .assert_code(0, "secret-tool store");
    let got = rckeyutil(
        Some(&bus),
        &["--config", config, "get", "restic-repo1", "Apache"],
        "",
    );
    assert_eq!(got.assert_code(0, "get").stdout, "stored by the Go tool\n");
}

#[test]
fn rckeyutil_sets_gets_and_deletes_on_the_kernel_keyring() {
    let entry = KernelEntry::new("kernel");
    let (service, user) = (entry.service.as_str(), entry.username.as_str());
    let env = TestEnv::with_config(json!({"Keyring": "keyutils"}));
    let config = env.config.to_str().unwrap();

    // Each rckeyutil is a process of its own: what one stores, the next one
    // finds (through the user's persistent keyring).
    rckeyutil(
        None,
        &["--backend", "keyutils", "set", service, user],
        "kernel pw\n",
    )
    .assert_code(0, "set from stdin");
    let got = rckeyutil(None, &["--config", config, "get", service, user], "");
    assert_eq!(
        got.assert_code(0, "get with Keyring: keyutils").stdout,
        "kernel pw\n"
    );

    rckeyutil(
        None,
        &["--backend", "keyutils", "set", service, user, "argv pw"],
        "",
    )
    .assert_code(0, "set from argv");
    let got = rckeyutil(None, &["--backend", "keyutils", "get", service, user], "");
    assert_eq!(got.assert_code(0, "get").stdout, "argv pw\n");

    rckeyutil(None, &["--backend", "keyutils", "del", service, user], "").assert_code(0, "del");
    let gone = rckeyutil(None, &["--backend", "keyutils", "get", service, user], "");
    assert!(
        gone.assert_code(1, "get after del").stderr.contains(
            "in the kernel keyring (keyutils); store it with: rckeyutil --backend keyutils set"
        ),
        "{gone:#?}"
    );
}

#[test]
fn rckeyutil_explains_a_missing_secret_service_and_its_usage() {
    let no_bus = rckeyutil(None, &["--backend", "secret-service", "get", "s", "u"], "");
    let message = &no_bus.assert_code(1, "no bus").stderr;
    assert!(message.contains("in the Secret Service (secret-service): no D-Bus session bus"));
    assert!(message.contains("--backend keyutils"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");

    let bus = SecretService::bus_only();
    let nobody = rckeyutil(
        Some(&bus),
        &["--backend", "secret-service", "get", "s", "u"],
        "",
    );
    let message = &nobody.assert_code(1, "no Secret Service").stderr;
    assert!(
        message.contains("no Secret Service on the session bus; start gnome-keyring-daemon"),
        "{message}"
    );

    let usage_errors: [&[&str]; 4] = [
        &[],
        &["get", "s"],
        &["--backend", "kwallet", "get", "s", "u"],
        &["frob", "s", "u"],
    ];
    for args in usage_errors {
        let usage = rckeyutil(None, args, "");
        usage.assert_code(2, "usage error");
        assert!(usage.stderr.ends_with("; try --help\n"), "{usage:#?}");
        assert_eq!(usage.stderr.lines().count(), 1, "{usage:#?}");
    }
    let empty = rckeyutil(None, &["--backend", "keyutils", "set", "s", "u"], "\n");
    assert_eq!(
        empty.assert_code(2, "empty password").stderr,
        "rckeyutil: no password on stdin\n"
    );

    let help = rckeyutil(None, &["--help"], "");
    assert!(
        help.assert_code(0, "--help")
            .stdout
            .starts_with("Usage: rckeyutil")
    );
    let version = rckeyutil(None, &["--version"], "");
    assert_eq!(
        version.assert_code(0, "--version").stdout,
        format!("rckeyutil {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn set_on_a_terminal_asks_twice_without_echo() {
    let entry = KernelEntry::new("tty");
    let (mut master, slave) = open_pty();
    let mut child = Command::new(&*RCKEYUTIL)
        .args([
            "--backend",
            "keyutils",
            "set",
            &entry.service,
            &entry.username,
        ])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, prompts) = mpsc::channel();
    let mut stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        let mut chunk = [0u8; 256];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            let _ = sender.send(String::from_utf8_lossy(&chunk[..n]).into_owned());
        }
    });
    let mut seen = String::new();
    let mut answer = |prompt: &str| {
        let deadline = Instant::now() + PATIENCE;
        while !seen.contains(prompt) {
            let left = deadline.saturating_duration_since(Instant::now());
            match prompts.recv_timeout(left) {
                Ok(text) => seen.push_str(&text),
                Err(_) => panic!("no prompt {prompt:?}; stderr so far: {seen:?}"),
            }
        }
        seen.clear();
        master.write_all(b"typed on a tty\n").unwrap();
    };
    answer("Password for service");
    answer("Again: ");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Whatever the terminal echoed is waiting on the master side.
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
    }
    let mut echoed = Vec::new();
    let _ = master.read_to_end(&mut echoed);
    let echoed = String::from_utf8_lossy(&echoed);
    assert!(!echoed.contains("typed"), "the terminal echoed {echoed:?}");
    let args = [
        "--backend",
        "keyutils",
        "get",
        &entry.service,
        &entry.username,
    ];
    assert_eq!(
        rckeyutil(None, &args, "").assert_code(0, "get").stdout,
        "typed on a tty\n"
    );
}

/// A pseudo-terminal: (master, slave).
fn open_pty() -> (File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills in two descriptors; the null pointers ask for
    // no name and default settings.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and ours alone.
    unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The daemon with `env` (and its test config), its inherited
/// `RESTIC_PASSWORD_FILE`/`RESTIC_PASSWORD_COMMAND` pointing at a password
/// that must never be used.
fn start_daemon(env: &TestEnv, extra_env: &[(&str, &OsStr)]) -> Daemon {
    let mut command = env.daemon_command(&[]);
    command
        .env(
            "RESTIC_PASSWORD_FILE",
            env.dir.path().join("wrong-password"),
        )
        .env("RESTIC_PASSWORD_COMMAND", "echo wrong password");
    for (key, value) in extra_env {
        command.env(key, value);
    }
    Daemon::spawn(command)
}

/// The `env` lines of the fake restic's record for `tag`.
fn recorded_env(env: &TestEnv, tag: &str) -> Vec<String> {
    env.record_lines(tag)
        .into_iter()
        .filter(|w| w[0] == "env")
        .map(|w| w[2..].join(" "))
        .collect()
}

const ENV_ARGS: &[&str] = &[
    "env=RESTIC_PASSWORD",
    "env=RESTIC_PASSWORD_FILE",
    "env=RESTIC_PASSWORD_COMMAND",
];

#[test]
fn a_job_reads_a_secret_tool_entry_at_every_run_and_restic_gets_it_by_env() {
    let bus = SecretService::start();
    bus.secret_tool(
        &[
            "store",
            "--label",
            "x",
            "service",
            "restic-repo1",
            "username",
            "Apache",
        ],
        "first password",
    )
    .assert_code(0, "secret-tool store");
    let env = TestEnv::new(); // Keyring: auto, and a bus that answers
    let keyring = json!({"Service": "restic-repo1", "Username": "Apache"});
    env.write_job("keyed", &env.fake_job("keyed", ENV_ARGS, keyring));
    let daemon = start_daemon(&env, &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_ref())]);

    daemon.get("/trigger?name=keyed");
    daemon.wait_outcome("keyed", "success");
    assert_eq!(
        recorded_env(&env, "keyed"),
        [
            "RESTIC_PASSWORD=first password",
            "RESTIC_PASSWORD_FILE=<unset>",
            "RESTIC_PASSWORD_COMMAND=<unset>"
        ]
    );

    // A new password is read by the next run, without a restart.
    rckeyutil(
        Some(&bus),
        &[
            "--backend",
            "secret-service",
            "set",
            "restic-repo1",
            "Apache",
        ],
        "second password\n",
    )
    .assert_code(0, "rckeyutil set");
    daemon.get("/trigger?name=keyed");
    daemon.wait_for("the second run", |d| {
        (d.job("keyed")["status"] != "working" && env.starts("keyed").len() == 2).then_some(())
    });
    daemon.wait_outcome("keyed", "success");
    assert_eq!(
        recorded_env(&env, "keyed")[3],
        "RESTIC_PASSWORD=second password"
    );
}

#[test]
fn a_locked_keyring_fails_the_run_until_it_is_unlocked() {
    let mut bus = SecretService::start();
    bus.secret_tool(
        &[
            "store",
            "--label",
            "x",
            "service",
            "locked-repo",
            "username",
            "u",
        ],
        "behind the lock",
    )
    .assert_code(0, "secret-tool store");
    bus.stop_keyring();
    bus.start_keyring(false);
    let env = TestEnv::with_config(json!({"Keyring": "secret-service"}));
    let keyring = json!({"Service": "locked-repo", "Username": "u"});
    env.write_job("locked", &env.fake_job("locked", ENV_ARGS, keyring));
    let daemon = start_daemon(&env, &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_ref())]);

    daemon.get("/trigger?name=locked");
    let job = daemon.wait_outcome("locked", "failure");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "cannot read the password for service \"locked-repo\", user \"u\" in the Secret \
             Service (secret-service): the keyring is locked; unlock it"
        ),
        "{error}"
    );
    assert!(error.ends_with("; restic was not started"), "{error}");
    assert!(
        env.starts("locked").is_empty(),
        "restic ran without its password"
    );

    // Unlocked later (here: a gnome-keyring started with --unlock), the
    // next run works without restarting the daemon.
    bus.stop_keyring();
    bus.start_keyring(true);
    daemon.get("/trigger?name=locked");
    daemon.wait_outcome("locked", "success");
    assert_eq!(
        recorded_env(&env, "locked")[0],
        "RESTIC_PASSWORD=behind the lock"
    );
}

#[test]
fn a_missing_entry_or_keyring_fails_the_run_and_restic_never_starts() {
    let env = TestEnv::with_config(json!({"Keyring": "keyutils"}));
    let missing = unique("missing");
    let keyring = json!({"Service": missing, "Username": "nobody"});
    env.write_job("nokey", &env.fake_job("nokey", &[], keyring.clone()));
    let daemon = start_daemon(&env, &[]);
    daemon.get("/trigger?name=nokey");
    let job = daemon.wait_outcome("nokey", "failure");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "no password for service \"{missing}\", user \"nobody\" in the kernel keyring \
             (keyutils); store it with: rckeyutil --backend keyutils set {missing} nobody"
        )),
        "{error}"
    );
    assert!(error.ends_with("; restic was not started"), "{error}");
    assert_eq!(job["error"], job["lastRun"]["error"], "{job}");
    drop(daemon);

    // Secret Service configured, but no bus at all.
    let env = TestEnv::with_config(json!({"Keyring": "secret-service"}));
    env.write_job("nobus", &env.fake_job("nobus", &[], keyring.clone()));
    let nowhere = env.dir.path().join("no-bus");
    let address = format!("unix:path={}", nowhere.display());
    let daemon = start_daemon(&env, &[("DBUS_SESSION_BUS_ADDRESS", address.as_ref())]);
    daemon.get("/trigger?name=nobus");
    let job = daemon.wait_outcome("nobus", "failure");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.contains("in the Secret Service (secret-service): no D-Bus session bus"),
        "{error}"
    );
    assert!(error.contains("\"Keyring\": \"keyutils\""), "{error}");
    drop(daemon);

    // A bus, but no Secret Service on it.
    let bus = SecretService::bus_only();
    env.write_job("nobody", &env.fake_job("nobody", &[], keyring));
    let daemon = start_daemon(&env, &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_ref())]);
    daemon.get("/trigger?name=nobody");
    let job = daemon.wait_outcome("nobody", "failure");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert!(
        error.contains("no Secret Service on the session bus"),
        "{error}"
    );

    let record = fs::read_to_string(&env.record).unwrap();
    assert!(record.is_empty(), "restic started: {record}");
}

#[test]
fn an_empty_secret_service_entry_fails_the_run_like_a_missing_one() {
    let bus = SecretService::start();
    // secret-tool stores an empty password (rckeyutil refuses to).
    let store = [
        "store",
        "--label",
        "x",
        "service",
        "blank-repo",
        "username",
        "u",
    ];
    bus.secret_tool(&store, "")
        .assert_code(0, "secret-tool store");
    let lookup = bus.secret_tool(&["lookup", "service", "blank-repo", "username", "u"], "");
    assert_eq!(lookup.assert_code(0, "the entry is there").stdout, "");
    let env = TestEnv::with_config(json!({"Keyring": "secret-service"}));
    let keyring = json!({"Service": "blank-repo", "Username": "u"});
    env.write_job("blank", &env.fake_job("blank", ENV_ARGS, keyring));
    let daemon = start_daemon(&env, &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_ref())]);

    daemon.get("/trigger?name=blank");
    // Whatever the outcome: a run with an empty password would be a success.
    let job = daemon.wait_for("a run of blank", |d| {
        let job = d.job("blank");
        (job["lastRun"]["outcome"].is_string() && job["status"] != "working").then_some(job)
    });
    assert!(
        env.starts("blank").is_empty(),
        "restic ran with an empty password: {:?}",
        recorded_env(&env, "blank")
    );
    assert_eq!(job["lastRun"]["outcome"], "failure", "{job}");
    let error = job["lastRun"]["error"].as_str().unwrap();
    assert_eq!(
        error,
        "the keyring entry for service \"blank-repo\", user \"u\" in the Secret Service \
         (secret-service) is empty, and an empty password is no password; store it with: \
         rckeyutil --backend secret-service set blank-repo u; restic was not started"
    );
    // rckeyutil reads it the same way.
    let got = rckeyutil(
        Some(&bus),
        &["--backend", "secret-service", "get", "blank-repo", "u"],
        "",
    );
    assert!(got.assert_code(1, "get an empty entry").stdout.is_empty());
    assert!(got.stderr.contains("is empty"), "{got:#?}");

    // Set as the error says, the next run has its password.
    rckeyutil(
        Some(&bus),
        &["--backend", "secret-service", "set", "blank-repo", "u"],
        "now a password\n",
    )
    .assert_code(0, "rckeyutil set");
    daemon.get("/trigger?name=blank");
    daemon.wait_outcome("blank", "success");
    assert_eq!(
        recorded_env(&env, "blank")[0],
        "RESTIC_PASSWORD=now a password"
    );
}

/// A restic repository in `dir`, made with `password`, and data to back up.
fn init_repository(dir: &Path, password: &str) -> (PathBuf, PathBuf) {
    let repo = dir.join("repo");
    let data = dir.join("data");
    fs::create_dir(&data).unwrap();
    for i in 0..3 {
        fs::write(data.join(format!("file{i}")), format!("data {i}\n")).unwrap();
    }
    let mut init = Command::new("restic");
    init.arg("-r")
        .arg(&repo)
        .arg("init")
        .env("RESTIC_PASSWORD", password)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND");
    run(init, "").assert_code(0, "restic init");
    (repo, data)
}

fn snapshot_count(repo: &Path, password: &str) -> usize {
    let mut snapshots = Command::new("restic");
    snapshots
        .arg("-r")
        .arg(repo)
        .args(["snapshots", "--json"])
        .env("RESTIC_PASSWORD", password)
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND");
    let listed = run(snapshots, "");
    let snapshots: Vec<Value> =
        serde_json::from_str(&listed.assert_code(0, "restic snapshots").stdout).unwrap();
    snapshots.len()
}

/// A backup job with only `Username`/`Service` for its password, run by the
/// real restic.
fn backup_job(repo: &Path, data: &Path, service: &str, username: &str) -> Value {
    json!({
        "JobName": "backup",
        "ResticArguments": ["-r", repo, "backup", data],
        "Service": service,
        "Username": username,
    })
}

#[test]
fn real_restic_backs_up_with_the_password_from_the_secret_service() {
    let bus = SecretService::start();
    let env = TestEnv::with_config(json!({"Keyring": "secret-service"}));
    let password = "correct horse from the keyring";
    let (repo, data) = init_repository(env.dir.path(), password);
    rckeyutil(
        Some(&bus),
        &["--backend", "secret-service", "set", "restic-repo", "root"],
        &format!("{password}\n"),
    )
    .assert_code(0, "rckeyutil set");
    env.write_job("backup", &backup_job(&repo, &data, "restic-repo", "root"));
    let daemon = start_daemon(&env, &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_ref())]);
    daemon.get("/trigger?name=backup");
    daemon.wait_outcome("backup", "success");
    assert_eq!(snapshot_count(&repo, password), 1);
}

#[test]
fn real_restic_backs_up_with_the_password_from_the_kernel_keyring() {
    let entry = KernelEntry::new("restic");
    let env = TestEnv::with_config(json!({"Keyring": "keyutils"}));
    let password = "correct horse from the kernel";
    let (repo, data) = init_repository(env.dir.path(), password);
    entry.set(password);
    env.write_job(
        "backup",
        &backup_job(&repo, &data, &entry.service, &entry.username),
    );
    // Started outside any login session, the daemon joins a session keyring
    // of its own and finds the key that rckeyutil (another process) stored.
    let daemon = start_daemon(&env, &[]);
    daemon.get("/trigger?name=backup");
    daemon.wait_outcome("backup", "success");
    assert_eq!(snapshot_count(&repo, password), 1);
}

#[test]
fn the_password_shows_up_nowhere_but_in_restics_environment() {
    let entry = KernelEntry::new("secret");
    let password = format!("Zq7-{}-never-print-me", std::process::id());
    entry.set(&password);
    let env = TestEnv::with_config(json!({"Keyring": "keyutils"}));
    let keyring = json!({"Service": entry.service, "Username": entry.username});
    let missing = json!({"Service": unique("absent"), "Username": entry.username});
    env.write_job(
        "good",
        &env.fake_job(
            "good",
            &["sleep=0.5", "out=hello-out", "err=hello-err"],
            json!({"Service": entry.service, "Username": entry.username, "regularTimer": "1h"}),
        ),
    );
    env.write_job(
        "bad",
        &env.fake_job("bad", &["exit=1", "err=boom"], keyring),
    );
    env.write_job("lost", &env.fake_job("lost", &[], missing));
    let daemon = start_daemon(&env, &[]);

    // "good" runs at once (no state file); look at it while it sleeps.
    let pid = daemon.wait_for("good to start", |_| {
        let lines = env.record_lines("good");
        lines.iter().find(|w| w[0] == "start").map(|w| w[2].clone())
    });
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    assert!(
        environ.contains(&format!("RESTIC_PASSWORD={password}").as_bytes()),
        "restic has its password in its environment"
    );
    assert!(
        !environ
            .iter()
            .any(|v| v.starts_with(b"RESTIC_PASSWORD_FILE=")),
        "the inherited password file is removed"
    );
    daemon.wait_outcome("good", "success");
    daemon.get("/trigger?name=bad");
    daemon.wait_outcome("bad", "failure");
    daemon.get("/trigger?name=lost");
    let lost = daemon.wait_outcome("lost", "failure");
    assert!(
        lost["error"]
            .as_str()
            .unwrap()
            .contains("restic was not started")
    );

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("restic's argv (/proc)".into(), cmdline),
        ("daemon stderr".into(), daemon.stderr().into_bytes()),
    ];
    for path in [
        "/queue",
        "/job?name=good",
        "/job?name=bad",
        "/job?name=lost",
        "/metrics",
        "/",
    ] {
        // `/job`, `/metrics` and `/` answer 404 until they are built; their
        // bodies are checked whatever they are.
        let (status, body) = daemon.get(path);
        assert!(status == 200 || path != "/queue", "{path}: {status} {body}");
        places.push((path.into(), body.into_bytes()));
    }
    let daemon_pid = daemon.pid();
    for file in ["cmdline", "environ"] {
        let text = fs::read(format!("/proc/{daemon_pid}/{file}")).unwrap();
        places.push((format!("the daemon's /proc {file}"), text));
    }
    let argv: Vec<String> = fs::read_to_string(&env.record)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("start "))
        .map(str::to_string)
        .collect();
    assert_eq!(argv.len(), 2, "good and bad ran: {argv:?}");
    places.push((
        "restic's argv (record)".into(),
        argv.join("\n").into_bytes(),
    ));
    drop(daemon);
    let log = fs::read_to_string(env.logs.join("restic-cronned.log")).unwrap();
    assert!(
        log.contains("[good] hello-out") && log.contains("[bad] stderr: boom"),
        "{log}"
    );
    places.push(("the log file".into(), log.into_bytes()));
    // The state files, and the history files in their own folder.
    let history = env.state.join("history");
    for dir in [&env.state, &history] {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                places.push((path.display().to_string(), fs::read(&path).unwrap()));
            }
        }
    }
    assert!(places.len() > 12, "the state files are there");

    for (place, content) in &places {
        assert!(
            !content
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the password is in {place}:\n{}",
            String::from_utf8_lossy(content)
        );
    }
}
