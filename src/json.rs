//! Case-insensitive JSON objects that remember where each key stands, so that
//! job and config files can say "file:line:column: key: what is wrong".

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
        let positions = text.map(top_level_key_positions).unwrap_or_default();
        let entries = map
            .iter()
            .map(|(key, value)| {
                let position = positions
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, p)| *p);
                (key.as_str(), value, position)
            })
            .collect();
        Object { entries }
    }

    /// The value of `key` (any case) and where it stands.
    pub fn get(&self, key: &str) -> Option<(&'a Value, Option<Position>)> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v, p)| (*v, *p))
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
/// positions, in order. Only called on text serde_json accepted, so the
/// scanner can be simple: it only has to skip strings and nested values.
fn top_level_key_positions(text: &str) -> Vec<(String, Position)> {
    let bytes = text.as_bytes();
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    // After `{` or `,` at depth 1 the next string is a key.
    let mut expecting_key = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expecting_key {
                    let raw = &text[start..=i.min(bytes.len() - 1)];
                    if let Ok(key) = serde_json::from_str::<String>(raw) {
                        keys.push((key, position_of(text, start)));
                    }
                    expecting_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expecting_key = depth == 1 && bytes[i] == b'{';
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting_key = true,
            _ => {}
        }
        i += 1;
    }
    keys
}

fn position_of(text: &str, offset: usize) -> Position {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line,
        column: before[line_start..].chars().count() + 1,
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
