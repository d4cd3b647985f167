//! Log values that cannot forge log lines.
//!
//! FC collects stdout and stderr line by line, and its `FC Invoke Start/End
//! RequestId:` markers are lines too (docs/fc-contract.md §11). A value that came
//! from outside — a Noslated error message a function chose, a
//! `grpc-message` (percent-decoded, so `%0A` is a newline), an error from a
//! plane — is written through [`Escaped`]: every control character becomes a
//! visible escape, so one value stays on one line and cannot start a forged
//! marker. Escaping is on the way out, through a `fmt::Write` adapter: no
//! allocation, and any `Display` value can be wrapped.

use std::fmt::{self, Display, Write};

/// `value`, displayed with control characters escaped: `\n`, `\r`, `\t`,
/// `\\` for a backslash (so an escape in the output is never ambiguous),
/// `\u{..}` for any other C0 or C1 control, DEL, and the Unicode line and
/// paragraph separators.
pub struct Escaped<T>(pub T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapeWriter(f), "{}", self.0)
    }
}

struct EscapeWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for EscapeWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escape = match c {
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                '\\' => Some("\\\\"),
                _ => None,
            };
            let other = escape.is_none() && (c.is_control() || c == '\u{2028}' || c == '\u{2029}');
            if escape.is_none() && !other {
                continue;
            }
            self.0.write_str(&s[plain..i])?;
            match escape {
                Some(e) => self.0.write_str(e)?,
                None => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("plain text", "plain text"),
            ("x\nFC Invoke End RequestId: other", "x\\nFC Invoke End RequestId: other"),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("back\\slash", "back\\\\slash"),
            ("\u{0}\u{1b}[31m\u{7f}\u{85}", "\\u{0}\\u{1b}[31m\\u{7f}\\u{85}"),
            ("line\u{2028}sep\u{2029}", "line\\u{2028}sep\\u{2029}"),
            ("ünïcode stays", "ünïcode stays"),
        ];
        for (raw, want) in cases {
            let got = Escaped(raw).to_string();
            assert_eq!(got, want, "{raw:?}");
            assert!(!got.chars().any(|c| c.is_control()), "{got:?}");
        }
        // Any Display value: an error whose text holds a newline.
        let err = std::io::Error::other("bad\nthing");
        assert_eq!(Escaped(&err).to_string(), "bad\\nthing");
    }
}
