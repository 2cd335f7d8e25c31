//! `rckeyutil`: stores, prints and deletes the repository passwords that
//! the daemon reads for jobs with `Service` and `Username`, in the keyring
//! the daemon's config names; the binary only maps the outcome to an exit
//! code.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use crate::config::command_line;
use crate::config::{self, KeyringChoice};
use crate::secrets::keyring::{self, Backend, Keyring, KeyringError, Password};

pub const USAGE: &str = "\
Usage: rckeyutil [OPTIONS] set SERVICE USERNAME [PASSWORD]
       rckeyutil [OPTIONS] get SERVICE USERNAME
       rckeyutil [OPTIONS] del SERVICE USERNAME

Stores, prints or deletes the repository password that restic-cronned reads
for jobs with the same Service and Username.

Actions:
  set              store the password; without PASSWORD, read one line from
                   stdin (on a terminal: asked for twice, without echo).
                   Prefer that: every user can see arguments in ps
  get              print the password and a newline on stdout
  del              delete the password

Options (before the action):
  --backend B      secret-service (D-Bus Secret Service, e.g. gnome-keyring)
                   or keyutils (the Linux kernel keyring); default: the
                   config's Keyring, where auto means the Secret Service when
                   one answers on the session bus, else the kernel keyring
  --config FILE    read Keyring from FILE instead of
                   ~/.config/restic-cronned/config
  -h, --help       print this help
  -V, --version    print the version

Exit status: 0 done; 1 no such entry, or the keyring refused (the message
says which keyring was tried); 2 usage error.
";

/// What the command line asks for.
#[derive(Debug, Default)]
pub struct Args {
    pub config: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub help: bool,
    pub version: bool,
    pub action: Option<Action>,
}

/// One keyring operation.
#[derive(Debug)]
pub enum Action {
    /// `password` is `None` when it is to be read from stdin.
    Set {
        service: String,
        username: String,
        password: Option<Password>,
    },
    Get {
        service: String,
        username: String,
    },
    Del {
        service: String,
        username: String,
    },
}

/// Why `rckeyutil` failed; `main` maps it to an exit code.
#[derive(Debug)]
pub enum Error {
    /// Bad command line (exit 2, with a hint to `--help`).
    Usage(String),
    /// A password that cannot be stored, or an unusable config (exit 2).
    Input(String),
    /// The keyring has no such entry or refused (exit 1).
    Keyring(KeyringError),
    /// stdin or stdout failed (exit 1).
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Input(m) | Error::Io(m) => f.write_str(m),
            Error::Keyring(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Every long option, so that one written with a single dash is refused
/// with a hint rather than read as a group of short options.
const LONG_OPTIONS: &[&str] = &["backend", "config", "help", "version"];

/// Parses the command line (without the program name). Options come
/// before the action; everything after it is an operand, so a password
/// may start with `-`.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Args, Error> {
    parse_words(args).map_err(Error::Usage)
}

fn parse_words(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use command_line::Arg::{Long, Short, Value};
    let mut parsed = Args::default();
    let mut operands = Vec::new();
    let mut parser = command_line::Parser::new(args, LONG_OPTIONS);
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Short('h') | Long("help") => parsed.help = true,
            Short('V') | Long("version") => parsed.version = true,
            Long("config") => parsed.config = Some(parser.value("a value")?.into()),
            Long("backend") => {
                parsed.backend = Some(match parser.value("a value")?.to_str() {
                    Some("secret-service") => Backend::SecretService,
                    Some("keyutils") => Backend::Keyutils,
                    other => {
                        return Err(format!(
                            "unknown backend {:?}; use secret-service or keyutils",
                            other.unwrap_or("(not UTF-8)")
                        ));
                    }
                })
            }
            Value(action) => {
                operands.push(action);
                operands.extend(parser.rest()?);
            }
            _ => return Err(parser.unknown()),
        }
    }
    if parsed.help || parsed.version {
        return Ok(parsed);
    }
    let mut operands = operands.into_iter();
    let Some(action) = operands.next() else {
        return Err("missing action: set, get or del".into());
    };
    let action = command_line::text(action, "action")?;
    let wanted = match action.as_str() {
        "set" => "SERVICE USERNAME [PASSWORD]",
        "get" | "del" => "SERVICE USERNAME",
        _ => {
            return Err(format!("unknown action {action:?}; use set, get or del"));
        }
    };
    let (service, username, password) = match (
        operands.next(),
        operands.next(),
        operands.next(),
        operands.next(),
    ) {
        (Some(service), Some(username), password, None)
            if password.is_none() || action == "set" =>
        {
            (service, username, password)
        }
        _ => return Err(format!("{action} takes {wanted}")),
    };
    // Never echo an operand that is not UTF-8: it may be the password.
    let text = |value: OsString, what: &str| {
        value
            .into_string()
            .map_err(|_| format!("{what} is not valid UTF-8"))
    };
    let service = text(service, "SERVICE")?;
    let username = text(username, "USERNAME")?;
    let password = password.map(|p| text(p, "PASSWORD")).transpose()?;
    for (what, value) in [("SERVICE", &service), ("USERNAME", &username)] {
        if value.is_empty() {
            return Err(format!("{what} is empty"));
        }
    }
    parsed.action = Some(match action.as_str() {
        "set" => Action::Set {
            service,
            username,
            password: password.map(Password::new),
        },
        "get" => Action::Get { service, username },
        _ => Action::Del { service, username },
    });
    Ok(parsed)
}

/// Runs the action: `get` prints to stdout, `set` and `del` say what they
/// did on stderr.
pub fn run(args: Args) -> Result<(), Error> {
    let Some(action) = args.action else {
        return Err(Error::Usage("missing action: set, get or del".into()));
    };
    let choice = match args.backend {
        Some(Backend::SecretService) => KeyringChoice::SecretService,
        Some(Backend::Keyutils) => KeyringChoice::Keyutils,
        None => {
            let env = |name: &str| std::env::var(name).ok();
            let (config, _, _) = config::load(args.config.as_deref(), &env)
                .map_err(|e| Error::Input(e.to_string()))?;
            config.keyring
        }
    };
    if choice != KeyringChoice::SecretService {
        // A failure here shows up as the kernel keyring's own error.
        let _ = keyring::join_session_keyring();
    }
    let keyring = Keyring::interactive(choice);
    match action {
        Action::Set {
            service,
            username,
            password,
        } => {
            let password = match password {
                Some(password) => password,
                None => read_password(&service, &username)?,
            };
            if password.expose().is_empty() {
                return Err(Error::Input("the password is empty".into()));
            }
            let backend = keyring
                .store(&service, &username, &password)
                .map_err(Error::Keyring)?;
            eprintln!(
                "rckeyutil: stored the password for service {service:?}, user {username:?} in \
                 the {backend}{}",
                if backend == Backend::Keyutils {
                    ", kept until reboot"
                } else {
                    ""
                }
            );
        }
        Action::Get { service, username } => {
            let password = keyring
                .lookup(&service, &username)
                .map_err(Error::Keyring)?;
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{}", password.expose())
                .and_then(|()| stdout.flush())
                .map_err(|e| Error::Io(format!("cannot write to stdout: {e}")))?;
        }
        Action::Del { service, username } => {
            let backend = keyring
                .delete(&service, &username)
                .map_err(Error::Keyring)?;
            eprintln!(
                "rckeyutil: deleted the password for service {service:?}, user {username:?} \
                 from the {backend}"
            );
        }
    }
    Ok(())
}

/// Reads the password: one line from stdin, or on a terminal a prompt
/// without echo, asked twice so a typo is not stored.
fn read_password(service: &str, username: &str) -> Result<Password, Error> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        let password = read_line(&mut stdin.lock())?;
        if password.expose().is_empty() {
            return Err(Error::Input("no password on stdin".into()));
        }
        return Ok(password);
    }
    let echo_off = EchoOff::new(libc::STDIN_FILENO)
        .map_err(|e| Error::Io(format!("cannot turn off echo on the terminal: {e}")))?;
    eprint!("Password for service {service:?}, user {username:?}: ");
    let first = read_line(&mut stdin.lock())?;
    eprint!("Again: ");
    let second = read_line(&mut stdin.lock())?;
    drop(echo_off);
    if first.expose() != second.expose() {
        return Err(Error::Input(
            "the two passwords differ; nothing stored".into(),
        ));
    }
    Ok(first)
}

/// One line without its line ending.
fn read_line(input: &mut impl BufRead) -> Result<Password, Error> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| Error::Io(format!("cannot read the password from stdin: {e}")))?;
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(Password::new(line))
}

/// Terminal echo turned off until dropped (`ECHONL` keeps the newline, so
/// the next prompt starts on its own line). Not `rpassword`: it would add two
/// crates (rpassword and rtoolbox) for these few calls, each of them argued
/// below, and it too leaves echo off when Ctrl-C ends the prompt.
struct EchoOff {
    fd: libc::c_int,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: libc::c_int) -> io::Result<EchoOff> {
        // SAFETY: termios is plain data that tcgetattr fills in.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: plain calls on a descriptor we were given.
        unsafe {
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(fd, libc::TCSANOW, &quiet) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, Error> {
        parse_args(args.iter().map(OsString::from))
    }

    fn usage_error(args: &[&str]) -> String {
        match parse(args) {
            Err(Error::Usage(message)) => message,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_actions_options_and_operands_that_look_like_options() {
        let args = parse(&[
            "--backend",
            "keyutils",
            "--config=/c",
            "set",
            "s",
            "u",
            "-pw",
        ])
        .unwrap();
        assert_eq!(args.backend, Some(Backend::Keyutils));
        assert_eq!(args.config, Some(PathBuf::from("/c")));
        match args.action {
            Some(Action::Set {
                service,
                username,
                password: Some(password),
            }) => {
                assert_eq!((service.as_str(), username.as_str()), ("s", "u"));
                assert_eq!(password.expose(), "-pw");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["--backend=secret-service", "get", "s", "u"])
                .unwrap()
                .action,
            Some(Action::Get { .. })
        ));
        assert!(matches!(
            parse(&["set", "s", "u"]).unwrap().action,
            Some(Action::Set { password: None, .. })
        ));
        assert!(parse(&["--help"]).unwrap().help);
        assert!(parse(&["-V"]).unwrap().version);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        assert_eq!(usage_error(&[]), "missing action: set, get or del");
        assert_eq!(
            usage_error(&["--backend", "kwallet", "get", "s", "u"]),
            "unknown backend \"kwallet\"; use secret-service or keyutils"
        );
        assert_eq!(usage_error(&["--backend"]), "--backend needs a value");
        assert_eq!(
            usage_error(&["put", "s", "u"]),
            "unknown action \"put\"; use set, get or del"
        );
        assert_eq!(usage_error(&["get", "s"]), "get takes SERVICE USERNAME");
        assert_eq!(
            usage_error(&["del", "s", "u", "x"]),
            "del takes SERVICE USERNAME"
        );
        assert_eq!(
            usage_error(&["set", "s", "u", "p", "q"]),
            "set takes SERVICE USERNAME [PASSWORD]"
        );
        assert_eq!(usage_error(&["get", "", "u"]), "SERVICE is empty");
        assert_eq!(
            usage_error(&["--frobnicate", "get"]),
            "unknown option \"--frobnicate\""
        );
        assert_eq!(
            usage_error(&["-backend", "keyutils", "get", "s", "u"]),
            "unknown option \"-backend\" (did you mean \"--backend\"?)"
        );
        assert_eq!(usage_error(&["--help=1"]), "--help takes no value");
    }

    #[test]
    fn operands_that_are_not_utf8_are_refused_without_echoing_them() {
        use std::os::unix::ffi::OsStringExt;
        let args = ["set", "s", "u"].map(OsString::from);
        let odd = OsString::from_vec(b"secret\xff".to_vec());
        match parse_args(args.into_iter().chain([odd])) {
            Err(Error::Usage(message)) => assert_eq!(message, "PASSWORD is not valid UTF-8"),
            other => panic!("{other:?}"),
        }
        // The config file may be named anything.
        let config = OsString::from_vec(b"/c\xff".to_vec());
        let args = [OsString::from("--config"), config.clone()]
            .into_iter()
            .chain(["get", "s", "u"].map(OsString::from));
        assert_eq!(
            parse_args(args).unwrap().config,
            Some(PathBuf::from(config))
        );
    }

    #[test]
    fn a_password_line_loses_its_line_ending_only() {
        let mut input = io::Cursor::new(" spaced pass \r\nnext\n");
        assert_eq!(read_line(&mut input).unwrap().expose(), " spaced pass ");
        assert_eq!(read_line(&mut input).unwrap().expose(), "next");
        assert_eq!(read_line(&mut input).unwrap().expose(), "");
    }
}
