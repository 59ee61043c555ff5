//! What the argument groups share: value parsers for durations and address maps, and the
//! exit-status text shown at the end of `--help`.

use std::time::Duration;

/// The exit statuses every command shares, shown at the end of `--help`.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  success (for the inspection commands: no damage found)
  1  error: bad arguments, a missing or unreadable file, a failed request, an unreachable node
  2  damage found: a corrupt or torn WAL record, a bad segment header, a corrupt checkpoint";

/// One `advertised=host:port` entry of `--address-map`.
pub fn parse_mapping(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
            Ok((from.trim().to_string(), to.trim().to_string()))
        }
        _ => Err(format!(
            "invalid address mapping {text:?}: expected advertised=host:port, e.g. node2:7379=127.0.0.1:7380"
        )),
    }
}

/// A duration such as `1500ms`, `10s`, `5m`, `2h`, `1d` or `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d), e.g. 10s"
        )
    };
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(number * scale).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = next;
    }
    if text.is_empty() {
        return Err(bad());
    }
    Ok(total)
}
