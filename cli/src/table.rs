//! `-w table`: aligned columns under a header, sized to their widest cell.
//!
//! Numbers read best right-aligned, so a column is right-aligned when its header says so.
//! A row may be shorter than the header (an unreachable node has no columns to fill): its last
//! cell then runs on past the columns it does not fill and does not widen them.

use std::io::{self, Write};

/// A table being filled; [`Table::write`] prints it.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named by `header`; a name ending in `>` (dropped when printed) is
    /// right-aligned.
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.iter().map(|h| h.trim_end_matches('>')).collect(),
            right: header.iter().map(|h| h.ends_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            let sized = if row.len() < columns {
                row.len().saturating_sub(1)
            } else {
                row.len()
            };
            for (i, cell) in row.iter().take(sized.min(columns)).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        self.line(out, &header, &widths)?;
        for row in &self.rows {
            self.line(out, row, &widths)?;
        }
        Ok(())
    }

    fn line(&self, out: &mut impl Write, cells: &[String], widths: &[usize]) -> io::Result<()> {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let last = i + 1 == cells.len();
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count());
            if self.right.get(i).copied().unwrap_or(false) && !(last && cells.len() < widths.len())
            {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if !last {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(out, "{}", line.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["NAME", "COUNT>", "NOTE"]);
        t.row(vec!["a".into(), "1".into(), "x".into()]);
        t.row(vec!["long name".into(), "12345".into(), "".into()]);
        t.row(vec!["b".into(), "this short row runs on".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME       COUNT  NOTE\n\
             a              1  x\n\
             long name  12345\n\
             b          this short row runs on\n"
        );
    }
}
