//! Bytes for people: keys and values as quoted text when they are UTF-8, as hex when not.
//!
//! Text output quotes strings (Rust escaping), so a key with a space or a quote in it cannot be
//! mistaken for two fields, and prints anything else as `0x…` hex. JSON output puts a UTF-8
//! field under its own name and anything else under `<name>_hex`, so no string is ambiguous.

use serde_json::{Map, Value};

/// Lowercase hex of all of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Hex of the first `max` bytes, with `…` when there are more.
pub fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let mut s = hex(&bytes[..bytes.len().min(max)]);
    if bytes.len() > max {
        s.push('…');
    }
    s
}

/// `bytes` as one text field: a quoted string if UTF-8, else `0x` hex; cut after `max` bytes
/// with a note of the full length.
pub fn text(bytes: &[u8], max: usize) -> String {
    let (mut s, shown) = match std::str::from_utf8(bytes) {
        Ok(full) => {
            let mut end = max.min(full.len());
            while !full.is_char_boundary(end) {
                end -= 1;
            }
            (format!("{:?}", &full[..end]), end)
        }
        Err(_) => {
            let end = max.min(bytes.len());
            (format!("0x{}", hex(&bytes[..end])), end)
        }
    };
    if shown < bytes.len() {
        s.push_str(&format!("…({} bytes)", bytes.len()));
    }
    s
}

/// `bytes` as they are if UTF-8 (unquoted, for a value printed alone), else `0x` hex.
pub fn plain(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("0x{}", hex(bytes)),
    }
}

/// Inserts `bytes` into `map` as `name` (a UTF-8 string) or `<name>_hex`.
pub fn put_bytes(map: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => map.insert(name.to_string(), Value::from(s)),
        Err(_) => map.insert(format!("{name}_hex"), Value::from(hex(bytes))),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_hex() {
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
        assert_eq!(hex_prefix(b"abcdef", 2), "6162…");
        assert_eq!(text(b"a b", 10), "\"a b\"");
        assert_eq!(text(&[0xff, 0x01], 10), "0xff01");
        assert_eq!(text(b"abcdef", 3), "\"abc\"…(6 bytes)");
        // "é" is two bytes: a cut through it keeps the text before it.
        assert_eq!(text("aé".as_bytes(), 2), "\"a\"…(3 bytes)");
        assert_eq!(plain(b"a b"), "a b");
        assert_eq!(plain(&[0xff, 0x01]), "0xff01");
    }

    #[test]
    fn json_fields() {
        let mut m = Map::new();
        put_bytes(&mut m, "key", b"k");
        put_bytes(&mut m, "value", &[0xff]);
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"key": "k", "value_hex": "ff"})
        );
    }
}
