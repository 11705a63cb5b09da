//! Parsers for the text the kernel writes in `/proc/sysvipc/{sem,msg,shm}` and
//! `/proc/sys/kernel/*`: the fallback for kernels older than 4.17 (no `*_STAT_ANY`) and the
//! only source of per-segment resident/swapped bytes.
//!
//! Columns are found by header name, never by position or width: widths overflow (negative
//! keys, big uids) and kernels before 2.6.37 have no `rss`/`swap` columns.

use crate::snapshot::{Key, MessageQueue, Segment, SemaphoreArray};

/// What is wrong with a file, or with one line of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("file is empty (no header line)")]
    Empty,
    #[error("unexpected header `{0}`")]
    UnexpectedHeader(String),
    #[error("header has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("{fields} fields, but `{column}` is column {position}")]
    ShortRow { fields: usize, column: String, position: usize },
    #[error("`{text}` is not a valid {column} value")]
    BadValue { text: String, column: String },
    #[error("`{text}` is not an octal {column} value")]
    BadOctal { text: String, column: String },
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}` has fewer than 4 fields")]
    TooFewFields(String),
}

/// A line that could not be parsed: reported, not fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: ParseError,
}

/// The rows that parsed, and the lines that did not.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub items: Vec<T>,
    pub malformed: Vec<Malformed>,
}

/// Maps header names to column positions.
struct Columns<'a> {
    names: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }

    /// Positions of the `required` columns, or the name of the first one missing.
    fn require<const N: usize>(&self, required: [&'static str; N]) -> Result<[usize; N], ParseError> {
        let mut out = [0; N];
        for (slot, name) in out.iter_mut().zip(required) {
            *slot = self.index(name).ok_or(ParseError::MissingColumn(name))?;
        }
        Ok(out)
    }
}

/// Splits a file into its header and numbered data lines.
fn split(text: &str) -> Result<(Columns<'_>, impl Iterator<Item = (usize, &str)>), ParseError> {
    let mut lines = text.lines().enumerate();
    let header = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l,
            None => return Err(ParseError::Empty),
        }
    };
    let columns = Columns { names: header.split_whitespace().collect() };
    let rows = lines.map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    Ok((columns, rows))
}

/// One data row split into fields, with typed accessors that name the column on error.
struct Row<'a> {
    fields: Vec<&'a str>,
    names: &'a Columns<'a>,
}

impl Row<'_> {
    fn raw(&self, col: usize) -> Result<&str, ParseError> {
        self.fields.get(col).copied().ok_or_else(|| ParseError::ShortRow {
            fields: self.fields.len(),
            column: self.names.names[col].to_string(),
            position: col + 1,
        })
    }

    fn num<T: std::str::FromStr>(&self, col: usize) -> Result<T, ParseError> {
        let s = self.raw(col)?;
        s.parse().map_err(|_| ParseError::BadValue {
            text: s.to_string(),
            column: self.names.names[col].to_string(),
        })
    }

    fn octal(&self, col: usize) -> Result<u32, ParseError> {
        let s = self.raw(col)?;
        u32::from_str_radix(s, 8).map_err(|_| ParseError::BadOctal {
            text: s.to_string(),
            column: self.names.names[col].to_string(),
        })
    }

    fn optional(&self, col: Option<usize>) -> Result<Option<u64>, ParseError> {
        col.map(|c| self.num(c)).transpose()
    }
}

/// Parses a header-led table: `make` looks up the columns it needs and returns the row parser.
fn parse_table<T, F>(
    text: &str,
    make: impl FnOnce(&Columns<'_>) -> Result<F, ParseError>,
) -> Result<Parsed<T>, ParseError>
where
    F: FnMut(&Row<'_>) -> Result<T, ParseError>,
{
    let (columns, rows) = split(text)?;
    if columns.names.first() != Some(&"key") {
        return Err(ParseError::UnexpectedHeader(columns.names.join(" ")));
    }
    let mut parse = make(&columns)?;
    let mut items = Vec::new();
    let mut malformed = Vec::new();
    for (line, text) in rows {
        let row = Row { fields: text.split_whitespace().collect(), names: &columns };
        match parse(&row) {
            Ok(item) => items.push(item),
            Err(reason) => malformed.push(Malformed { line, reason }),
        }
    }
    Ok(Parsed { items, malformed })
}

/// Parses `/proc/sysvipc/sem`.
pub fn parse_sem(text: &str) -> Result<Parsed<SemaphoreArray>, ParseError> {
    parse_table(text, |columns| {
        let [key, id, perms, nsems, uid, cuid, otime, ctime] =
            columns.require(["key", "semid", "perms", "nsems", "uid", "cuid", "otime", "ctime"])?;
        Ok(move |r: &Row<'_>| {
            Ok(SemaphoreArray {
                key: Key(r.num(key)?),
                id: r.num(id)?,
                owner: r.num(uid)?,
                creator: r.num(cuid)?,
                mode: r.octal(perms)? & 0o777,
                semaphores: r.num(nsems)?,
                last_op_time: r.num(otime)?,
                changed_time: r.num(ctime)?,
            })
        })
    })
}

/// Parses `/proc/sysvipc/msg`. The text has no capacity (`msg_qbytes`): it is `None`.
pub fn parse_msg(text: &str) -> Result<Parsed<MessageQueue>, ParseError> {
    parse_table(text, |columns| {
        let [key, id, perms, cbytes, qnum, lspid, lrpid, uid, cuid, stime, rtime, ctime] =
            columns.require([
                "key", "msqid", "perms", "cbytes", "qnum", "lspid", "lrpid", "uid", "cuid", "stime", "rtime",
                "ctime",
            ])?;
        Ok(move |r: &Row<'_>| {
            Ok(MessageQueue {
                key: Key(r.num(key)?),
                id: r.num(id)?,
                owner: r.num(uid)?,
                creator: r.num(cuid)?,
                mode: r.octal(perms)? & 0o777,
                messages: r.num(qnum)?,
                bytes: r.num(cbytes)?,
                capacity_bytes: None,
                last_send_pid: r.num(lspid)?,
                last_recv_pid: r.num(lrpid)?,
                last_send_time: r.num(stime)?,
                last_recv_time: r.num(rtime)?,
                changed_time: r.num(ctime)?,
            })
        })
    })
}

/// Parses `/proc/sysvipc/shm`; `rss`/`swap` are optional (kernels before 2.6.37 lack them).
pub fn parse_shm(text: &str) -> Result<Parsed<Segment>, ParseError> {
    parse_table(text, |columns| {
        let [key, id, perms, size, cpid, lpid, nattch, uid] =
            columns.require(["key", "shmid", "perms", "size", "cpid", "lpid", "nattch", "uid"])?;
        let (rss, swap) = (columns.index("rss"), columns.index("swap"));
        let [atime, dtime, ctime] = columns.require(["atime", "dtime", "ctime"])?;
        Ok(move |r: &Row<'_>| {
            let mut seg = Segment::new(
                Key(r.num(key)?),
                r.num(id)?,
                r.num(uid)?,
                r.octal(perms)?,
                r.num(size)?,
                r.num(nattch)?,
                r.num(cpid)?,
                r.num(lpid)?,
            );
            seg.resident_bytes = r.optional(rss)?;
            seg.swapped_bytes = r.optional(swap)?;
            seg.attach_time = r.num(atime)?;
            seg.detach_time = r.num(dtime)?;
            seg.changed_time = r.num(ctime)?;
            Ok(seg)
        })
    })
}

/// Parses a one-number sysctl file such as `/proc/sys/kernel/msgmni`.
pub fn parse_number(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    t.parse().map_err(|_| ParseError::NotANumber(t.to_string()))
}

/// Parses `/proc/sys/kernel/sem`: `SEMMSL SEMMNS SEMOPM SEMMNI`.
pub fn parse_sem_limits(text: &str) -> Result<[u64; 4], ParseError> {
    let mut out = [0u64; 4];
    let mut fields = text.split_whitespace();
    for slot in out.iter_mut() {
        let f = fields.next().ok_or_else(|| ParseError::TooFewFields(text.trim().to_string()))?;
        *slot = f.parse().map_err(|_| ParseError::NotANumber(f.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
