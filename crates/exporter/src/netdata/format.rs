//! What every /api/v1 answer is made of: its status, type and body, parameters, and
//! Netdata's way of printing strings and numbers.

pub(super) type Answer = (u16, &'static str, String);

pub(super) const JSON: &str = "application/json; charset=utf-8";

pub(super) const TEXT: &str = "text/plain; charset=utf-8";

pub(super) fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A JSON string literal.
pub(super) fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A number as Netdata prints it: integers bare, others with up to 7 decimals.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.7}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A number as Netdata prints it, `null` where there is none.
pub(super) fn num_or_null(v: Option<f64>) -> String {
    num(v.unwrap_or(f64::NAN))
}

/// A number as Netdata writes it, as a JSON value: integers as integers, others with at most
/// 7 decimals, `null` where it is not finite.
pub(super) fn number(v: f64) -> serde_json::Value {
    if !v.is_finite() {
        return serde_json::Value::Null;
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return (v as i64).into();
    }
    ((v * 1e7).round() / 1e7).into()
}

/// A JSON answer's body, indented as Netdata's are, with a final newline.
pub(super) fn pretty(v: &serde_json::Value) -> String {
    let mut out = serde_json::to_string_pretty(v).unwrap_or_default();
    out.push('\n');
    out
}
