//! Parser for Netdata's health-configuration files: `alarm:`/`template:` blocks of
//! `key: value` lines. A line it does not understand is reported with file and line, and the
//! rule it belongs to is skipped; the other rules still load.

use std::fmt;
use std::path::{Path, PathBuf};

use ipcwatch_charts::Reduce;

use crate::expr::{self, Expr};

/// A parsed expression and the text it came from.
#[derive(Debug, Clone)]
pub struct Expression {
    pub text: String,
    pub expr: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `alarm:` — one chart, named by id.
    Alarm,
    /// `template:` — every chart of a context.
    Template,
}

#[derive(Debug, Clone)]
pub struct Lookup {
    pub method: Reduce,
    /// Seconds relative to now (negative): the window is `(now + after, now + before]`.
    pub after: f64,
    pub before: f64,
    pub every: Option<f64>,
    pub absolute: bool,
    pub percentage: bool,
    /// Dimensions to include (ids or names); all when `None`.
    pub of: Option<Vec<String>>,
}

/// `delay:` — postpones notifications, not the status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delay {
    pub up: f64,
    pub down: f64,
    pub multiplier: f64,
    pub max: f64,
}

impl Default for Delay {
    fn default() -> Self {
        Delay { up: 0.0, down: 0.0, multiplier: 1.0, max: 0.0 }
    }
}

/// `repeat:` — re-notify while raised; 0 = never.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Repeat {
    pub warning: f64,
    pub critical: f64,
}

/// Netdata's simple patterns: globs with `*`, `!` negates, the first match decides (a negated
/// one excludes); nothing matching excludes. `*` is everything, `!a* *` everything but `a...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(Vec<(bool, String)>);

impl Pattern {
    /// Words separated by white space, as health configuration writes them.
    pub fn parse(text: &str) -> Pattern {
        Pattern::split_by(text, char::is_whitespace)
    }

    /// Words separated wherever `separator` says, as Netdata's API takes them (`,`, `|`),
    /// at most 256 of them: a pattern is outside input.
    pub fn split_by(text: &str, separator: impl Fn(char) -> bool) -> Pattern {
        Pattern(
            text.split(separator)
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .take(256)
                .map(|w| match w.strip_prefix('!') {
                    Some(rest) => (false, rest.to_string()),
                    None => (true, w.to_string()),
                })
                .collect(),
        )
    }

    pub fn matches(&self, value: &str) -> bool {
        self.0.iter().find(|(_, g)| glob(g, value)).is_some_and(|(positive, _)| *positive)
    }
}

fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first)
        || !value[first.len()..].ends_with(last)
        || value.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    /// Chart id (alarm) or context (template).
    pub on: String,
    pub file: PathBuf,
    pub line: usize,
    pub class: Option<String>,
    pub type_: Option<String>,
    pub component: Option<String>,
    pub os: Option<Pattern>,
    pub hosts: Option<Pattern>,
    pub host_labels: Option<Pattern>,
    pub chart_labels: Option<Pattern>,
    pub lookup: Option<Lookup>,
    pub calc: Option<Expression>,
    pub warn: Option<Expression>,
    pub crit: Option<Expression>,
    /// Seconds between evaluations.
    pub every: Option<f64>,
    pub green: Option<f64>,
    pub red: Option<f64>,
    pub delay: Delay,
    pub repeat: Repeat,
    pub units: Option<String>,
    pub summary: Option<String>,
    pub info: Option<String>,
    pub to: Option<String>,
    pub exec: Option<String>,
    pub no_clear_notification: bool,
}

impl Rule {
    /// Whether the rule finds again what it found while its chart's rows repeat: it reads no
    /// clock (`$now`, `$after`, `$before`, `$last_collected_t`) and its lookup does not sum
    /// (a window may hold one row more or fewer).
    pub fn steady(&self) -> bool {
        if self.lookup.as_ref().is_some_and(|l| l.method == Reduce::Sum) {
            return false;
        }
        let mut names = Vec::new();
        for e in [&self.calc, &self.warn, &self.crit].into_iter().flatten() {
            e.expr.variables(&mut names);
        }
        !names.iter().any(|n| matches!(n.as_str(), "now" | "after" | "before" | "last_collected_t"))
    }

    fn new(kind: RuleKind, name: String, file: &Path, line: usize) -> Rule {
        Rule {
            name,
            kind,
            on: String::new(),
            file: file.to_path_buf(),
            line,
            class: None,
            type_: None,
            component: None,
            os: None,
            hosts: None,
            host_labels: None,
            chart_labels: None,
            lookup: None,
            calc: None,
            warn: None,
            crit: None,
            every: None,
            green: None,
            red: None,
            delay: Delay::default(),
            repeat: Repeat::default(),
            units: None,
            summary: None,
            info: None,
            to: None,
            exec: None,
            no_clear_notification: false,
        }
    }

    /// `line@file`, as Netdata's `source` field.
    pub fn source(&self) -> String {
        format!("{}@{}", self.line, self.file.display())
    }
}

/// A problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// Seconds from a duration as people and Netdata's health files write them: `10s`, `5m`,
/// `1h`, `2d`, `1w`, several at once (`1h30m`), with a sign (`-10s`, a lookup's window) or a
/// fraction (`0.5m`), or a plain number of seconds. The one duration parser of the workspace:
/// rules files, and the command line's `--older-than` (see [`parse_age`]).
pub fn parse_duration(text: &str) -> Result<f64, DurationError> {
    let t = text.trim();
    let bad = || DurationError::NotADuration(t.to_string());
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Ok(v) = rest.parse::<f64>() {
        // A plain number of seconds (not `inf`, `nan` or `1e400`).
        return if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') && v.is_finite() {
            Ok(sign * v)
        } else {
            Err(bad())
        };
    }
    let (mut total, mut number) = (0.0f64, String::new());
    for c in rest.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            'w' => 604_800.0,
            _ => return Err(bad()),
        };
        let n: f64 = std::mem::take(&mut number).parse().map_err(|_| bad())?;
        total += n * unit;
    }
    if !number.is_empty() || rest.is_empty() || !total.is_finite() {
        return Err(bad());
    }
    Ok(sign * total)
}

/// A duration that must be a whole, non-negative number of seconds (an age on the command
/// line: `--older-than 2d`).
pub fn parse_age(text: &str) -> Result<i64, DurationError> {
    let v = parse_duration(text)?;
    if v < 0.0 || v.fract() != 0.0 || v > i64::MAX as f64 {
        return Err(DurationError::NotAnAge(text.trim().to_string()));
    }
    Ok(v as i64)
}

/// Why [`parse_duration`] or [`parse_age`] refused a text (the text, trimmed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration such as 90s, 30m, 1h30m or 2d")]
    NotADuration(String),
    #[error("`{0}` is not a whole number of seconds from 0s up, such as 90s, 30m or 2d")]
    NotAnAge(String),
}

/// The rules parser's own helpers report in text, with the line they are on.
impl From<DurationError> for String {
    fn from(e: DurationError) -> String {
        e.to_string()
    }
}

fn parse_expression(text: &str) -> Result<Expression, String> {
    expr::parse(text)
        .map(|e| Expression { text: text.to_string(), expr: e })
        .map_err(|e| format!("{e} in `{text}`"))
}

fn parse_lookup(text: &str) -> Result<Lookup, String> {
    let mut words = text.split_whitespace().peekable();
    let method = match words.next() {
        Some("average" | "mean") => Reduce::Average,
        Some("min") => Reduce::Min,
        Some("max") => Reduce::Max,
        Some("sum") => Reduce::Sum,
        Some(m) => return Err(format!("lookup method `{m}` is not supported (average, min, max, sum)")),
        None => return Err("lookup needs a method and a time".into()),
    };
    let after = parse_duration(words.next().ok_or("lookup needs a time after the method")?)?;
    let mut lookup = Lookup {
        method,
        after: -after.abs(),
        before: 0.0,
        every: None,
        absolute: false,
        percentage: false,
        of: None,
    };
    while let Some(w) = words.next() {
        match w {
            "at" => lookup.before = -parse_duration(words.next().ok_or("`at` needs a time")?)?.abs(),
            "every" => lookup.every = Some(parse_duration(words.next().ok_or("`every` needs a time")?)?),
            "absolute" | "abs" => lookup.absolute = true,
            "percentage" => lookup.percentage = true,
            "unaligned" | "match-ids" | "match-names" | "null2zero" => {}
            "of" => {
                let rest: Vec<String> = words
                    .by_ref()
                    .flat_map(|w| w.split([',', '|']).map(str::to_string).collect::<Vec<_>>())
                    .filter(|s| !s.is_empty())
                    .collect();
                if rest.is_empty() {
                    return Err("`of` needs dimensions".into());
                }
                lookup.of = Some(rest);
            }
            other => return Err(format!("unknown lookup option `{other}`")),
        }
    }
    Ok(lookup)
}

fn parse_delay(text: &str) -> Result<Delay, String> {
    let mut d = Delay::default();
    let mut max = None;
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        let value = words.next().ok_or_else(|| format!("`{w}` needs a value"))?;
        match w {
            "up" => d.up = parse_duration(value)?,
            "down" => d.down = parse_duration(value)?,
            "multiplier" => {
                d.multiplier = value
                    .parse()
                    .ok()
                    .filter(|m: &f64| *m >= 1.0)
                    .ok_or(format!("multiplier `{value}` must be a number >= 1"))?
            }
            "max" => max = Some(parse_duration(value)?),
            other => return Err(format!("unknown delay option `{other}` (up, down, multiplier, max)")),
        }
    }
    d.max = max.unwrap_or(d.up.max(d.down));
    Ok(d)
}

fn parse_repeat(text: &str) -> Result<Repeat, String> {
    let mut r = Repeat::default();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "off" => r = Repeat::default(),
            "warning" => r.warning = parse_duration(words.next().ok_or("`warning` needs a time")?)?,
            "critical" => r.critical = parse_duration(words.next().ok_or("`critical` needs a time")?)?,
            other => return Err(format!("unknown repeat option `{other}` (off, warning, critical)")),
        }
    }
    Ok(r)
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.trim().parse().map_err(|_| format!("`{text}` is not a number"))
}

/// Parses the text of one file. Rules with an error are left out; every error is returned.
pub fn parse(text: &str, file: &Path) -> (Vec<Rule>, Vec<RuleError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut current: Option<(Rule, bool)> = None; // (rule, has_error)
    let err = |line: usize, message: String| RuleError { file: file.to_path_buf(), line, message };

    let finish = |current: Option<(Rule, bool)>, rules: &mut Vec<Rule>, errors: &mut Vec<RuleError>| {
        if let Some((rule, failed)) = current {
            if rule.on.is_empty() && !failed {
                errors.push(RuleError {
                    file: rule.file.clone(),
                    line: rule.line,
                    message: format!("`{}` has no `on:` line", rule.name),
                });
            } else if !failed {
                rules.push(rule);
            }
        }
    };

    // Join `\`-continued lines, remembering where each logical line started.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        match line.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                pending = Some((start, acc));
            }
            None => {
                acc.push_str(line);
                logical.push((start, acc));
            }
        }
    }
    if let Some(p) = pending {
        logical.push(p);
    }

    for (line_no, line) in logical {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            errors.push(err(line_no, format!("`{line}` is not a `key: value` line")));
            if let Some((_, failed)) = current.as_mut() {
                *failed = true;
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "alarm" || key == "template" {
            finish(current.take(), &mut rules, &mut errors);
            let kind = if key == "alarm" { RuleKind::Alarm } else { RuleKind::Template };
            let valid =
                !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                errors.push(err(line_no, format!("`{value}` is not a valid {key} name")));
            }
            current = Some((Rule::new(kind, value.to_string(), file, line_no), !valid));
            continue;
        }
        let Some((rule, failed)) = current.as_mut() else {
            errors.push(err(line_no, format!("`{key}:` outside an alarm or template block")));
            continue;
        };
        let result: Result<(), String> = (|| {
            match key {
                "on" => rule.on = value.to_string(),
                "class" => rule.class = Some(value.to_string()),
                "type" => rule.type_ = Some(value.to_string()),
                "component" => rule.component = Some(value.to_string()),
                "os" => rule.os = Some(Pattern::parse(value)),
                "hosts" => rule.hosts = Some(Pattern::parse(value)),
                "host labels" => rule.host_labels = Some(Pattern::parse(value)),
                "chart labels" => rule.chart_labels = Some(Pattern::parse(value)),
                "lookup" => rule.lookup = Some(parse_lookup(value)?),
                "calc" => rule.calc = Some(parse_expression(value)?),
                "warn" => rule.warn = Some(parse_expression(value)?),
                "crit" => rule.crit = Some(parse_expression(value)?),
                "every" => {
                    let e = parse_duration(value)?;
                    if e < 1.0 {
                        return Err(format!("every `{value}` must be at least 1s"));
                    }
                    rule.every = Some(e);
                }
                "green" => rule.green = Some(parse_number(value)?),
                "red" => rule.red = Some(parse_number(value)?),
                "delay" => rule.delay = parse_delay(value)?,
                "repeat" => rule.repeat = parse_repeat(value)?,
                "units" => rule.units = Some(value.to_string()),
                "summary" => rule.summary = Some(value.to_string()),
                "info" => rule.info = Some(value.to_string()),
                "to" => rule.to = Some(value.to_string()),
                "exec" => rule.exec = Some(value.to_string()),
                "options" => {
                    for o in value.split_whitespace() {
                        match o {
                            "no-clear-notification" => rule.no_clear_notification = true,
                            other => return Err(format!("unknown option `{other}`")),
                        }
                    }
                }
                other => return Err(format!("unknown key `{other}`")),
            }
            Ok(())
        })();
        if let Err(message) = result {
            errors.push(err(line_no, format!("{}: {message}", rule.name)));
            *failed = true;
        }
    }
    finish(current.take(), &mut rules, &mut errors);
    (rules, errors)
}

/// Loads a rule file, or every `*.conf` file of a folder (sorted by name).
pub fn load(path: &Path) -> (Vec<Rule>, Vec<RuleError>) {
    let io_error = |e: std::io::Error| RuleError {
        file: path.to_path_buf(),
        line: 0,
        message: format!("cannot read: {e}"),
    };
    let files = if path.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect();
                files.sort();
                files
            }
            Err(e) => return (Vec::new(), vec![io_error(e)]),
        }
    } else {
        vec![path.to_path_buf()]
    };
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let (r, e) = parse(&text, &file);
                rules.extend(r);
                errors.extend(e);
            }
            Err(e) => {
                errors.push(RuleError { file: file.clone(), line: 0, message: format!("cannot read: {e}") })
            }
        }
    }
    (rules, errors)
}

#[cfg(test)]
mod tests;
