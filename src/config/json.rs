//! Case-insensitive JSON objects that remember where each key stands, so that
//! job and config files can say "file:line:column: key: what is wrong".

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

/// A 1-based line and column in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A JSON syntax error with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub position: Position,
    pub message: String,
}

/// Parses one JSON document (nothing may follow it).
pub fn parse(text: &str) -> Result<Value, SyntaxError> {
    serde_json::from_str(text).map_err(|e| SyntaxError {
        position: Position {
            line: e.line(),
            column: e.column(),
        },
        message: strip_position(&e.to_string()),
    })
}

/// serde_json appends " at line L column C"; we print the position first.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// What an error message may say about a value it did not expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// Its type and the value itself: `number 1.5`, `string "soon"`.
    Value,
    /// Its type alone (`a number`), for keys that hold secrets: an S3 key
    /// typed as a number must not reach the log, `/queue` or `--check`.
    TypeOnly,
}

impl Echo {
    /// [`Echo::TypeOnly`] for a key of `secret` (any case), else
    /// [`Echo::Value`].
    pub fn for_key(key: &str, secret: &[&str]) -> Echo {
        if secret.iter().any(|s| s.eq_ignore_ascii_case(key)) {
            Echo::TypeOnly
        } else {
            Echo::Value
        }
    }

    /// `v` for "expected …, found {}".
    pub fn found(self, v: &Value) -> String {
        match self {
            Echo::Value => describe(v),
            Echo::TypeOnly => describe_type(v).into(),
        }
    }
}

/// A JSON value's type and content, for error messages: `number 1.5`,
/// `string "soon"`, `an array`.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A JSON value's type alone: `a number`, `a string`.
pub fn describe_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The members of a JSON object, looked up without regard to case (as the Go
/// original's decoder did). With keys that differ only in case, the last one
/// wins, as with duplicate keys in the original.
pub struct Object<'a> {
    entries: Vec<(&'a str, &'a Value, Option<Position>)>,
}

impl<'a> Object<'a> {
    /// Wraps `map`; `text` is the document it came from when `map` is the
    /// top-level object (for positions), `None` for nested objects.
    pub fn new(map: &'a Map<String, Value>, text: Option<&str>) -> Object<'a> {
        // With duplicate keys the last one's position counts, as its value
        // does in `map`.
        let positions: HashMap<String, Position> = text
            .map(top_level_key_positions)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let entries = map
            .iter()
            .map(|(key, value)| (key.as_str(), value, positions.get(key).copied()))
            .collect();
        Object { entries }
    }

    /// The value of `key` (any case) and where it stands.
    pub fn get(&self, key: &str) -> Option<(&'a Value, Option<Position>)> {
        self.entry(key).map(|(_, v, p)| (v, p))
    }

    /// `key` (any case) as the file spells it, its value and where it
    /// stands.
    pub fn entry(&self, key: &str) -> Option<(&'a str, &'a Value, Option<Position>)> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _, _)| k.eq_ignore_ascii_case(key))
            .copied()
    }

    /// Keys that are not in `known`, each with a "did you mean" suggestion
    /// when a known key is close.
    pub fn unknown_keys(&self, known: &[&'static str]) -> Vec<UnknownKey> {
        self.entries
            .iter()
            .filter(|(k, _, _)| !known.iter().any(|n| n.eq_ignore_ascii_case(k)))
            .map(|(k, _, p)| UnknownKey {
                key: k.to_string(),
                position: *p,
                suggestion: did_you_mean(k, known),
            })
            .collect()
    }
}

/// A key a file has but we don't know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKey {
    pub key: String,
    pub position: Option<Position>,
    pub suggestion: Option<&'static str>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown key {:?}", self.key)?;
        if let Some(s) = self.suggestion {
            write!(f, " (did you mean {s:?}?)")?;
        }
        Ok(())
    }
}

/// The known word closest to `word` when it is close enough to be a typo.
pub fn did_you_mean(word: &str, known: &[&'static str]) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&word, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The keys of the top-level object of a valid JSON document with their
/// positions, in order.
fn top_level_key_positions(text: &str) -> Vec<(String, Position)> {
    let mut keys = Vec::new();
    let mut cursor = Cursor::default();
    scan_keys(text, |path, key, offset| {
        if path.is_empty() {
            keys.push((key.to_string(), cursor.advance_to(text, offset)));
        }
    });
    keys
}

/// Where the key at `path` stands in a valid JSON document: `["Env",
/// "AWS_SECRET_ACCESS_KEY"]` is a key of the object under the top-level key
/// `Env`; an array's items are named by their index (`"0"`). Keys are
/// compared exactly; with duplicate keys the last one counts, as in
/// `serde_json`'s map.
pub fn key_position(text: &str, path: &[&str]) -> Option<Position> {
    let (last, parents) = path.split_last()?;
    let mut found = None;
    scan_keys(text, |at, key, offset| {
        if key == *last && at.len() == parents.len() && at.iter().zip(parents).all(|(a, b)| a == b)
        {
            found = Some(offset);
        }
    });
    found.map(|offset| Cursor::default().advance_to(text, offset))
}

/// Calls `visit(path, key, offset)` for every object key of a valid JSON
/// document, in order, where `path` leads from the top-level object to the
/// object that holds `key` and `offset` is where the key's `"` stands. Only called on text serde_json accepted, so the
/// scanner can be simple: it only has to tell keys from values.
fn scan_keys(text: &str, mut visit: impl FnMut(&[String], &str, usize)) {
    /// An open object (the key whose value we are in, and whether the next
    /// string is a key) or array (the index of the current item).
    enum Open {
        Object { key: String, expecting_key: bool },
        Array { index: usize },
    }
    let bytes = text.as_bytes();
    let mut open: Vec<Open> = Vec::new();
    // The names of the values we are in, one fewer than `open`.
    let mut path: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Open::Object { key, expecting_key }) = open.last_mut() {
                    if *expecting_key {
                        let raw = &text[start..=i.min(bytes.len() - 1)];
                        if let Ok(decoded) = serde_json::from_str::<String>(raw) {
                            visit(&path, &decoded, start);
                            *key = decoded;
                        }
                        *expecting_key = false;
                    }
                }
            }
            b'{' | b'[' => {
                match open.last() {
                    Some(Open::Object { key, .. }) => path.push(key.clone()),
                    Some(Open::Array { index }) => path.push(index.to_string()),
                    None => {}
                }
                open.push(if bytes[i] == b'{' {
                    Open::Object {
                        key: String::new(),
                        expecting_key: true,
                    }
                } else {
                    Open::Array { index: 0 }
                });
            }
            b'}' | b']' => {
                open.pop();
                path.pop();
            }
            b',' => match open.last_mut() {
                Some(Open::Object { expecting_key, .. }) => *expecting_key = true,
                Some(Open::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
}

/// A position in a text that moves forward only, so that positioning every
/// key of a document costs one pass over it, not one per key (a 1 MiB job
/// file may hold a hundred thousand keys).
#[derive(Default)]
struct Cursor {
    offset: usize,
    line: usize,
    column: usize,
}

impl Cursor {
    /// The position of byte `offset` (not before the last one asked for).
    fn advance_to(&mut self, text: &str, offset: usize) -> Position {
        for c in text[self.offset..offset].chars() {
            if c == '\n' {
                self.line += 1;
                self.column = 0;
            } else {
                self.column += 1;
            }
        }
        self.offset = offset;
        Position {
            line: self.line + 1,
            column: self.column + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_positioned() {
        let text = "{\n  \"jobname\": \"a\",\n  \"Nested\": {\"x\": [1, {\"y\": 2}]},\n  \"RETRYTIMER\": 5\n}";
        let value = parse(text).unwrap();
        let object = Object::new(value.as_object().unwrap(), Some(text));
        let (v, p) = object.get("JobName").unwrap();
        assert_eq!(
            (v.as_str(), p),
            (Some("a"), Some(Position { line: 2, column: 3 }))
        );
        assert_eq!(
            object.get("retryTimer").unwrap().1,
            Some(Position { line: 4, column: 3 })
        );
        let unknown = object.unknown_keys(&["JobName", "retryTimer"]);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].key, "Nested");
    }

    #[test]
    fn nested_keys_are_found_where_they_stand() {
        let text = "{\"Env\": {\"A\": \"x\",\n  \"B\": 1},\n \"Notify\": [{\"Url\": 1}, {\"Url\": 2,\n\"Headers\": {\"B\": 3}}],\n \"B\": 4}";
        parse(text).unwrap();
        let at = |line, column| Some(Position { line, column });
        assert_eq!(key_position(text, &["Env", "B"]), at(2, 3));
        assert_eq!(key_position(text, &["Notify", "1", "Url"]), at(3, 26));
        assert_eq!(
            key_position(text, &["Notify", "1", "Headers", "B"]),
            at(4, 13)
        );
        assert_eq!(key_position(text, &["B"]), at(5, 2));
        assert_eq!(key_position(text, &["Env", "C"]), None);
        assert_eq!(key_position(text, &["Notify", "0", "Headers", "B"]), None);
        // With duplicates, the last one counts, as its value does.
        let twice = "{\"Env\": {\"A\": 1, \"A\": 2}}";
        assert_eq!(key_position(twice, &["Env", "A"]), at(1, 18));
    }

    #[test]
    fn secret_keys_echo_the_type_only() {
        let value = serde_json::json!(12345);
        assert_eq!(Echo::for_key("env", &["Env"]).found(&value), "a number");
        assert_eq!(
            Echo::for_key("Timeout", &["Env"]).found(&value),
            "number 12345"
        );
    }

    #[test]
    fn suggests_close_keys_only() {
        let known = ["ResticArguments", "retryTimer", "JobName"];
        assert_eq!(did_you_mean("ResticArgs", &known), None);
        assert_eq!(
            did_you_mean("resticargument", &known),
            Some("ResticArguments")
        );
        assert_eq!(did_you_mean("retrytimr", &known), Some("retryTimer"));
        assert_eq!(did_you_mean("colour", &known), None);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = parse("{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!(err.position.line, 3);
        assert!(!err.message.contains("at line"), "{}", err.message);
    }
}
