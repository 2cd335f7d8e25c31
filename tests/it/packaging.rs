//! scripts/install.sh, run into a temp `--root`: the files it installs and
//! their modes, the systemd units' keys (and `systemd-analyze verify` where
//! systemd is installed), config and jobs surviving a reinstall, and
//! `--uninstall` keeping jobs, config and state. Nothing is started.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::DAEMON;

const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");

/// A temp root to install into and a build directory to install from,
/// holding the daemon and a stand-in `rckeyutil`, but no `rccommand`.
struct Setup {
    dir: TempDir,
    root: PathBuf,
    from: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let from = dir.path().join("build");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&from).unwrap();
        fs::copy(&*DAEMON, from.join("restic-cronned")).unwrap();
        fs::write(from.join("rckeyutil"), "#!/bin/sh\necho rckeyutil 0\n").unwrap();
        fs::set_permissions(from.join("rckeyutil"), fs::Permissions::from_mode(0o755)).unwrap();
        Setup { dir, root, from }
    }

    /// `$root/path` for an absolute `path`.
    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Runs install.sh with `--root` and `--from` and `args`; HOME is
    /// /home/pi. Returns the output; `expect_code` is checked.
    fn run(&self, args: &[&str], expect_code: i32) -> Output {
        let mut command = Command::new("bash");
        command
            .arg(INSTALL)
            .arg("--root")
            .arg(&self.root)
            .arg("--from")
            .arg(&self.from)
            .args(args)
            .env("HOME", "/home/pi")
            .env_remove("XDG_CONFIG_HOME");
        let output = command.output().expect("run bash");
        if output.status.code() != Some(expect_code) {
            panic!(
                "{command:?}: expected exit {expect_code}, got {:?}\n--- stdout\n{}--- stderr\n{}--- files\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                listing(&self.root)
            );
        }
        output
    }

    fn install(&self, args: &[&str]) -> String {
        String::from_utf8(self.run(args, 0).stdout).unwrap()
    }
}

/// Every path below `dir` with its mode, for failure messages.
fn listing(dir: &Path) -> String {
    let mut lines = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if let Ok(meta) = fs::symlink_metadata(&path) {
            lines.push(format!(
                "{:o} {}",
                meta.permissions().mode(),
                path.display()
            ));
            if meta.is_dir() {
                for entry in fs::read_dir(&path).unwrap() {
                    pending.push(entry.unwrap().path());
                }
            }
        }
    }
    lines.sort_by(|a, b| {
        a.split_once(' ')
            .unwrap()
            .1
            .cmp(b.split_once(' ').unwrap().1)
    });
    lines.join("\n") + "\n"
}

fn mode(path: &Path) -> u32 {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o7777
}

/// A unit file as `section -> key -> every value` (keys may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE in [{section}]: {line:?}"));
        assert!(!section.is_empty(), "{line:?} before any section");
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    unit
}

/// The one value of `key` in `[section]`.
fn value<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match unit
        .get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
    {
        Some([value]) => value,
        other => panic!("[{section}] {key}: expected one value, found {other:?}"),
    }
}

fn seconds(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn read_config(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).expect("the config is JSON")
}

/// The keys both units need: how the daemon is started, watched, reloaded
/// and stopped (SIGTERM to the daemon only, with time for its own stop
/// sequence: SIGINT, StopGrace, SIGTERM, 10 s, SIGKILL).
fn check_common_keys(unit: &Unit, exec_start: &str, config: &Value) {
    // The daemon says READY=1 and keeps the watchdog fed (tests/it/service.rs).
    assert_eq!(value(unit, "Service", "Type"), "notify");
    assert_eq!(value(unit, "Service", "WatchdogSec"), "60s");
    assert_eq!(value(unit, "Service", "ExecStart"), exec_start);
    assert_eq!(
        value(unit, "Service", "ExecReload"),
        "/bin/kill -HUP $MAINPID"
    );
    assert_eq!(value(unit, "Service", "Restart"), "on-failure");
    assert_eq!(value(unit, "Service", "KillMode"), "mixed");
    assert_eq!(value(unit, "Service", "KillSignal"), "SIGTERM");
    assert_eq!(value(unit, "Service", "NoNewPrivileges"), "yes");
    let stop_grace = seconds(config["StopGrace"].as_str().expect("StopGrace"));
    let timeout = seconds(value(unit, "Service", "TimeoutStopSec"));
    // StopGrace, 10 s to SIGKILL, up to 15 s of `restic unlock` and 10 s
    // for queued healthcheck pings.
    assert!(
        timeout > stop_grace + Duration::from_secs(35),
        "TimeoutStopSec {timeout:?} must exceed StopGrace {stop_grace:?} + 35 s"
    );
}

/// `systemd-analyze verify` on `unit_file`, where systemd-analyze exists.
/// The copy it checks starts the installed binary below the temp root, as
/// verify checks that ExecStart's program exists.
fn verify_with_systemd(setup: &Setup, unit_file: &Path, bin_dir: &str) {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-analyze not installed: checked the unit's keys only");
        return;
    }
    let text = fs::read_to_string(unit_file).unwrap();
    let installed_bin = setup.path(bin_dir);
    let text = text.replace(
        &format!("ExecStart={bin_dir}/"),
        &format!("ExecStart={}/", installed_bin.display()),
    );
    let check_dir = setup.dir.path().join("verify");
    fs::create_dir_all(&check_dir).unwrap();
    let copy = check_dir.join(unit_file.file_name().unwrap());
    fs::write(&copy, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    // verify exits 0 even for unknown keys and bad values; it prints them.
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}: {:?}\n{said}",
        copy.display(),
        output.status
    );
}

#[test]
fn system_install_lays_out_files_with_safe_modes_and_a_hardened_unit() {
    let setup = Setup::new();
    setup.install(&["--system"]);

    let bin = setup.path("/usr/local/bin/restic-cronned");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(fs::read(&bin).unwrap(), fs::read(&*DAEMON).unwrap());
    assert_eq!(mode(&setup.path("/usr/local/bin/rckeyutil")), 0o755);
    assert!(
        !setup.path("/usr/local/bin/rccommand").exists(),
        "rccommand was not built, so it is not installed"
    );

    let config_file = setup.path("/etc/restic-cronned/config");
    let job_dir = setup.path("/etc/restic-cronned/jobs");
    assert_eq!(mode(&config_file), 0o600);
    assert_eq!(mode(&job_dir), 0o700);
    for dir in [
        "/var/lib/restic-cronned",
        "/var/log/restic-cronned",
        "/var/cache/restic-cronned",
    ] {
        assert_eq!(mode(&setup.path(dir)), 0o700, "{dir}");
    }
    let config = read_config(&config_file);
    assert_eq!(config["JobPath"], "/etc/restic-cronned/jobs");
    assert_eq!(config["StateDir"], "/var/lib/restic-cronned");
    assert_eq!(config["LogConf"]["LogDir"], "/var/log/restic-cronned");

    // The daemon accepts the config and the (empty) job directory as made.
    let check = Command::new(&*DAEMON)
        .arg("--config")
        .arg(&config_file)
        .arg("--check")
        .arg(&job_dir)
        .output()
        .unwrap();
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "--check on the installed config: {:?}\n{}{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let unit_file = setup.path("/etc/systemd/system/restic-cronned.service");
    assert_eq!(mode(&unit_file), 0o644);
    let text = fs::read_to_string(&unit_file).unwrap();
    assert!(!text.contains('@'), "a placeholder is left:\n{text}");
    let unit = parse_unit(&text);
    check_common_keys(
        &unit,
        "/usr/local/bin/restic-cronned --config /etc/restic-cronned/config",
        &config,
    );
    assert_eq!(value(&unit, "Service", "User"), "restic-cronned");
    assert_eq!(value(&unit, "Service", "ProtectSystem"), "strict");
    assert_eq!(value(&unit, "Service", "ProtectHome"), "read-only");
    assert_eq!(value(&unit, "Service", "PrivateTmp"), "yes");
    let writable: Vec<&str> = value(&unit, "Service", "ReadWritePaths")
        .split_whitespace()
        .collect();
    for dir in [
        config["StateDir"].as_str().unwrap(),
        config["LogConf"]["LogDir"].as_str().unwrap(),
        "/var/cache/restic-cronned",
    ] {
        assert!(writable.contains(&dir), "{dir} not in {writable:?}");
    }
    assert_eq!(value(&unit, "Install", "WantedBy"), "multi-user.target");
    verify_with_systemd(&setup, &unit_file, "/usr/local/bin");
}

#[test]
fn user_install_follows_the_daemons_default_paths() {
    let setup = Setup::new();
    setup.install(&["--user"]);

    let bin = setup.path("/home/pi/.local/bin/restic-cronned");
    assert_eq!(mode(&bin), 0o755);
    let config_file = setup.path("/home/pi/.config/restic-cronned/config");
    assert_eq!(mode(&config_file), 0o600);
    assert_eq!(
        mode(&setup.path("/home/pi/.config/restic-cronned/jobs")),
        0o700
    );
    assert_eq!(
        mode(&setup.path("/home/pi/.local/share/restic-cronned")),
        0o700
    );
    let config = read_config(&config_file);
    // The same paths the daemon uses when it has no config file (SPEC 1.2).
    assert_eq!(config["JobPath"], "/home/pi/.config/restic-cronned/jobs");
    assert_eq!(config["StateDir"], "/home/pi/.local/share/restic-cronned");
    assert_eq!(
        config["LogConf"]["LogDir"],
        "/home/pi/.cache/restic-cronned"
    );

    let unit_file = setup.path("/home/pi/.config/systemd/user/restic-cronned.service");
    let text = fs::read_to_string(&unit_file).unwrap();
    assert!(!text.contains('@'), "a placeholder is left:\n{text}");
    let unit = parse_unit(&text);
    check_common_keys(
        &unit,
        "/home/pi/.local/bin/restic-cronned --config /home/pi/.config/restic-cronned/config",
        &config,
    );
    assert!(
        !unit["Service"].contains_key("User"),
        "a user unit runs as its user"
    );
    assert_eq!(value(&unit, "Install", "WantedBy"), "default.target");
    verify_with_systemd(&setup, &unit_file, "/home/pi/.local/bin");
}

#[test]
fn reinstalling_updates_the_programs_and_never_overwrites_config_or_jobs() {
    let setup = Setup::new();
    setup.install(&["--system"]);
    let config_file = setup.path("/etc/restic-cronned/config");
    let job = setup.path("/etc/restic-cronned/jobs/Mine.json");
    fs::write(&config_file, "{\"StopGrace\": \"5s\"}\n").unwrap();
    fs::write(&job, "{\"ResticArguments\": [\"snapshots\"]}\n").unwrap();
    // A job directory someone opened up is made safe again.
    fs::set_permissions(
        setup.path("/etc/restic-cronned/jobs"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    fs::write(
        setup.from.join("rckeyutil"),
        "#!/bin/sh\necho rckeyutil 1\n",
    )
    .unwrap();

    let output = setup.install(&["--system"]);
    assert!(output.contains("keep"), "{output}");
    assert_eq!(
        fs::read_to_string(&config_file).unwrap(),
        "{\"StopGrace\": \"5s\"}\n"
    );
    assert_eq!(
        fs::read_to_string(&job).unwrap(),
        "{\"ResticArguments\": [\"snapshots\"]}\n"
    );
    assert_eq!(mode(&setup.path("/etc/restic-cronned/jobs")), 0o700);
    assert_eq!(
        fs::read_to_string(setup.path("/usr/local/bin/rckeyutil")).unwrap(),
        "#!/bin/sh\necho rckeyutil 1\n"
    );
    // No temp files left behind by the atomic replacements.
    for (dir, expected) in [
        ("/usr/local/bin", &["rckeyutil", "restic-cronned"][..]),
        ("/etc/restic-cronned", &["config", "jobs"]),
        ("/etc/systemd/system", &["restic-cronned.service"]),
    ] {
        let mut names: Vec<String> = fs::read_dir(setup.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, expected, "{dir}");
    }
}

#[test]
fn uninstall_removes_programs_and_unit_and_keeps_jobs_config_and_state() {
    let setup = Setup::new();
    setup.install(&["--system"]);
    let job = setup.path("/etc/restic-cronned/jobs/Mine.json");
    let state = setup.path("/var/lib/restic-cronned/Mine");
    let log = setup.path("/var/log/restic-cronned/restic-cronned.log");
    fs::write(&job, "{}\n").unwrap();
    fs::write(&state, "{\"NextTrigger\": null}\n").unwrap();
    fs::write(&log, "a line\n").unwrap();
    // As "systemctl enable" leaves it.
    let wants = setup.path("/etc/systemd/system/multi-user.target.wants");
    fs::create_dir(&wants).unwrap();
    symlink(
        "/etc/systemd/system/restic-cronned.service",
        wants.join("restic-cronned.service"),
    )
    .unwrap();

    let output = setup.install(&["--system", "--uninstall"]);
    for gone in [
        "/usr/local/bin/restic-cronned",
        "/usr/local/bin/rckeyutil",
        "/etc/systemd/system/restic-cronned.service",
        "/etc/systemd/system/multi-user.target.wants/restic-cronned.service",
    ] {
        assert!(
            fs::symlink_metadata(setup.path(gone)).is_err(),
            "{gone} is still there\n{output}"
        );
    }
    for kept in [
        &job,
        &state,
        &log,
        &setup.path("/etc/restic-cronned/config"),
    ] {
        assert!(kept.exists(), "{} was removed\n{output}", kept.display());
    }
    // Uninstalling again finds nothing to do and still succeeds.
    let again = setup.install(&["--system", "--uninstall"]);
    assert!(again.contains("nothing to remove"), "{again}");
}

#[test]
fn dry_run_changes_nothing() {
    let setup = Setup::new();
    let output = setup.install(&["--system", "--dry-run"]);
    assert!(
        output.contains("/etc/systemd/system/restic-cronned.service"),
        "{output}"
    );
    assert_eq!(fs::read_dir(&setup.root).unwrap().count(), 0, "{output}");

    setup.install(&["--system"]);
    let before = listing(&setup.root);
    setup.install(&["--system", "--uninstall", "--dry-run"]);
    assert_eq!(listing(&setup.root), before);
}

#[test]
fn usage_and_missing_programs_are_clear_errors() {
    let setup = Setup::new();
    let output = setup.run(&["--bogus"], 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--bogus") && stderr.contains("--help") && stderr.lines().count() == 1,
        "{stderr}"
    );

    let help = Command::new("bash")
        .arg(INSTALL)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("Usage: "));

    fs::remove_file(setup.from.join("restic-cronned")).unwrap();
    let output = setup.run(&["--system"], 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("restic-cronned is missing"), "{stderr}");
}
