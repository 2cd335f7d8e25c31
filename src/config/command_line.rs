//! The command-line grammar the three programs share, on `lexopt`, with the
//! usage messages it produces.
//!
//! `--name`, `--name VALUE` and `--name=VALUE`; `-x`, `-x VALUE`, `-xVALUE`
//! and `-x=VALUE`; short flags may be grouped (`-hV`); `--` ends the
//! options and `-` alone is an argument. A value is taken as it comes, even
//! when it starts with `-`, and stays an `OsString` until the program asks
//! for text. Each program says which options it knows and what its
//! positional arguments mean; this module only reads words.

use std::ffi::OsString;

pub use lexopt::Arg;

/// Reads one command line, word by word, with messages that name the
/// argument as the user typed it.
pub struct Parser {
    lexer: lexopt::Parser,
    /// The program's long options without their dashes, so that one
    /// written with a single dash is caught rather than read as a group of
    /// short options: `-check` would otherwise be `-c heck`.
    long_options: &'static [&'static str],
    /// `--` was seen: what follows are arguments, whatever they look like.
    options_ended: bool,
    /// The argument the last option came from, as typed (lossily, for
    /// messages only).
    current: String,
}

impl Parser {
    /// A parser for `args`, the command line without the program name.
    pub fn new(
        args: impl IntoIterator<Item = OsString>,
        long_options: &'static [&'static str],
    ) -> Parser {
        Parser {
            lexer: lexopt::Parser::from_args(args),
            long_options,
            options_ended: false,
            current: String::new(),
        }
    }

    /// The next option or argument; `None` at the end.
    pub fn next_arg(&mut self) -> Result<Option<Arg<'_>>, String> {
        // Between two arguments (not inside `-abc` or `--name=value`),
        // look at the next one as typed before lexopt splits it up.
        if let Some(raw) = self.lexer.try_raw_args() {
            if let Some(next) = raw.peek().filter(|_| !self.options_ended) {
                if next == "--" {
                    self.options_ended = true;
                } else {
                    self.current = next.to_string_lossy().into_owned();
                    if let Some(message) =
                        long_option_with_one_dash(&self.current, self.long_options)
                    {
                        return Err(message);
                    }
                }
            }
        }
        self.lexer.next().map_err(|error| match error {
            lexopt::Error::UnexpectedValue { option, .. } => format!("{option} takes no value"),
            other => other.to_string(),
        })
    }

    /// The value of the option just read: attached (`--name=VALUE`,
    /// `-xVALUE`, `-x=VALUE`) or the next argument. Without one, the
    /// message is `OPTION needs WHAT`, with the option as typed.
    pub fn value(&mut self, what: &str) -> Result<OsString, String> {
        self.lexer.value().map_err(|error| match error {
            lexopt::Error::MissingValue {
                option: Some(option),
            } => format!("{option} needs {what}"),
            other => other.to_string(),
        })
    }

    /// Every argument left, untouched: after the first positional argument
    /// of a program whose operands may start with `-`.
    pub fn rest(&mut self) -> Result<Vec<OsString>, String> {
        match self.lexer.raw_args() {
            Ok(rest) => Ok(rest.collect()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The message for an option the program does not know, naming the
    /// argument as typed.
    pub fn unknown(&self) -> String {
        format!("unknown option {:?}", self.current)
    }
}

/// The message for `-name` or `-name=VALUE` when `name` is a long option.
fn long_option_with_one_dash(arg: &str, long_options: &[&str]) -> Option<String> {
    let word = arg
        .strip_prefix('-')
        .filter(|word| !word.starts_with('-'))?;
    let name = word.split_once('=').map_or(word, |(name, _)| name);
    long_options
        .contains(&name)
        .then(|| format!("unknown option {arg:?} (did you mean \"-{arg}\"?)"))
}

/// `value` as text, or `WHAT "VALUE" is not UTF-8`.
pub fn text(value: OsString, what: &str) -> Result<String, String> {
    value
        .into_string()
        .map_err(|value| format!("{what} {value:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    /// Reads `args` with the options `--flag`, `-f`, `--name VALUE` and
    /// `-n VALUE`, as `(option, value)` pairs; an argument is `("", it)`.
    fn read(args: &[&str]) -> Result<Vec<(String, String)>, String> {
        let mut parser = Parser::new(args.iter().map(OsString::from), &["flag", "name"]);
        let mut seen = Vec::new();
        while let Some(arg) = parser.next_arg()? {
            let (option, value) = match arg {
                Arg::Short('f') | Arg::Long("flag") => ("flag", None),
                Arg::Short('n') | Arg::Long("name") => ("name", Some(parser.value("a name")?)),
                Arg::Value(value) => ("", Some(value)),
                _ => return Err(parser.unknown()),
            };
            let value = value.map_or(String::new(), |v| v.to_string_lossy().into_owned());
            seen.push((option.to_string(), value));
        }
        Ok(seen)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|&(option, value)| (option.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_value_is_attached_or_the_next_argument_whatever_it_looks_like() {
        let want = pairs(&[("name", "x"), ("", "arg")]);
        for line in [
            &["--name", "x", "arg"][..],
            &["--name=x", "arg"],
            &["-n", "x", "arg"],
            &["-nx", "arg"],
            &["-n=x", "arg"],
        ] {
            assert_eq!(read(line).unwrap(), want, "{line:?}");
        }
        // Options and arguments mix.
        assert_eq!(
            read(&["arg", "--name", "x"]).unwrap(),
            pairs(&[("", "arg"), ("name", "x")])
        );
        assert_eq!(
            read(&["--name", "--flag"]).unwrap(),
            pairs(&[("name", "--flag")])
        );
        assert_eq!(read(&["--name="]).unwrap(), pairs(&[("name", "")]));
        assert_eq!(
            read(&["-fn", "x"]).unwrap(),
            pairs(&[("flag", ""), ("name", "x")])
        );
    }

    #[test]
    fn a_double_dash_ends_the_options_and_a_single_dash_is_an_argument() {
        assert_eq!(
            read(&["--", "--flag", "-n", "--"]).unwrap(),
            pairs(&[("", "--flag"), ("", "-n"), ("", "--")])
        );
        assert_eq!(
            read(&["-", "-f"]).unwrap(),
            pairs(&[("", "-"), ("flag", "")])
        );
    }

    #[test]
    fn mistakes_are_named_as_typed() {
        assert_eq!(read(&["--name"]).unwrap_err(), "--name needs a name");
        assert_eq!(read(&["-n"]).unwrap_err(), "-n needs a name");
        assert_eq!(read(&["--flag=1"]).unwrap_err(), "--flag takes no value");
        assert_eq!(
            read(&["--bogus=1"]).unwrap_err(),
            "unknown option \"--bogus=1\""
        );
        assert_eq!(read(&["-x"]).unwrap_err(), "unknown option \"-x\"");
        assert_eq!(read(&["-fx"]).unwrap_err(), "unknown option \"-fx\"");
        // A long option with one dash would otherwise be `-n ame`.
        assert_eq!(
            read(&["-name=x"]).unwrap_err(),
            "unknown option \"-name=x\" (did you mean \"--name=x\"?)"
        );
        // After `--`, or as a value, it is no mistake.
        assert_eq!(read(&["--", "-name"]).unwrap(), pairs(&[("", "-name")]));
        assert_eq!(read(&["-n", "-name"]).unwrap(), pairs(&[("name", "-name")]));
    }

    #[test]
    fn values_and_arguments_need_not_be_utf8() {
        let odd = || OsString::from_vec(b"dir\xff".to_vec());
        let mut parser = Parser::new([OsString::from("--name"), odd(), odd()], &["name"]);
        assert_eq!(parser.next_arg().unwrap(), Some(Arg::Long("name")));
        assert_eq!(parser.value("a name").unwrap(), odd());
        assert_eq!(parser.next_arg().unwrap(), Some(Arg::Value(odd())));
        assert_eq!(
            text(odd(), "job name").unwrap_err(),
            "job name \"dir\\xFF\" is not UTF-8"
        );
    }
}
