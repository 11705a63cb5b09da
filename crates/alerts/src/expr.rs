//! Netdata's health expression language: doubles, `$variables`, `+ - * / %`, comparisons,
//! `&& || !` (also `AND OR NOT`), `? :`, parentheses and `abs()`.
//!
//! Precedence follows Netdata's operator table: `&&` and `||` share the lowest level (so they
//! apply left to right), then comparisons, then `+ -`, then `* / %`, then the unary operators.
//! A `?` takes everything to its left in the same (sub)expression as its condition, and its
//! branches extend as far as they can. A result that is NaN or infinite is an error, which
//! makes a `calc` UNDEFINED; comparisons treat two NaNs (or two infinities) as equal, as
//! Netdata does.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Variable(String),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Conditional(Box<Expr>, Box<Expr>, Box<Expr>),
    /// A parenthesised group, kept so the expression prints back as written.
    Group(Box<Expr>),
}

/// Dropping a tree takes its children out onto a list instead of recursing, so no tree,
/// however it was built, can exhaust the stack on its way out.
impl Drop for Expr {
    fn drop(&mut self) {
        fn detach(e: &mut Expr, out: &mut Vec<Expr>) {
            let mut take = |b: &mut Box<Expr>| out.push(std::mem::replace(&mut **b, Expr::Number(0.0)));
            match e {
                Expr::Unary(_, a) | Expr::Group(a) => take(a),
                Expr::Binary(_, a, b) => {
                    take(a);
                    take(b);
                }
                Expr::Conditional(a, b, c) => {
                    take(a);
                    take(b);
                    take(c);
                }
                Expr::Number(_) | Expr::Variable(_) => {}
            }
        }
        let mut pending = Vec::new();
        detach(self, &mut pending);
        while let Some(mut e) = pending.pop() {
            detach(&mut e, &mut pending);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Plus,
    Minus,
    Abs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    And,
    Or,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
}

impl BinaryOp {
    /// Netdata's precedence numbers: higher binds tighter.
    fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            And | Or => 2,
            Less | LessEqual | Greater | GreaterEqual | Equal | NotEqual => 3,
            Add | Subtract => 4,
            Multiply | Divide | Modulo => 5,
        }
    }

    fn symbol(self) -> &'static str {
        use BinaryOp::*;
        match self {
            And => "&&",
            Or => "||",
            Less => "<",
            LessEqual => "<=",
            Greater => ">",
            GreaterEqual => ">=",
            Equal => "==",
            NotEqual => "!=",
            Add => "+",
            Subtract => "-",
            Multiply => "*",
            Divide => "/",
            Modulo => "%",
        }
    }
}

/// A syntax error with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at character {}", self.message, self.offset + 1)
    }
}

/// Why an evaluation produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    UnknownVariable(String),
    NotANumber,
    Infinite,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::UnknownVariable(v) => write!(f, "unknown variable `${v}`"),
            EvalError::NotANumber => f.write_str("the result is not a number"),
            EvalError::Infinite => f.write_str("the result is infinite"),
        }
    }
}

/// Where evaluation finds `$variables`.
pub trait Variables {
    fn get(&self, name: &str) -> Option<f64>;
}

impl<F: Fn(&str) -> Option<f64>> Variables for F {
    fn get(&self, name: &str) -> Option<f64> {
        self(name)
    }
}

/// The deepest expression tree accepted. Real rules nest a few levels; a limit keeps parsing,
/// evaluating, printing and dropping a hostile rule (`((((…` or `1+1+…` in the thousands) from
/// exhausting the stack.
pub const MAX_DEPTH: usize = 128;

/// An expression with the depth of its tree, as the parser builds it.
type Node = (Expr, usize);

pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let mut p = Parser { s: text.as_bytes(), pos: 0, nesting: 0 };
    let (e, _) = p.full()?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.error("unexpected text after the expression"));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// How deep the parser's own recursion is now.
    nesting: usize,
}

/// A node one level above its deepest child, refused beyond [`MAX_DEPTH`].
fn node(parser: &Parser<'_>, expr: Expr, children: &[usize]) -> Result<Node, SyntaxError> {
    let depth = 1 + children.iter().copied().max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(parser.error(&format!("expression nested deeper than {MAX_DEPTH} levels")));
    }
    Ok((expr, depth))
}

impl Parser<'_> {
    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError { offset: self.pos, message: message.to_string() }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    /// Consumes `token` if it comes next; words (AND, OR, NOT) must end at a word boundary.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        let t = token.as_bytes();
        let end = self.pos + t.len();
        if end > self.s.len() || !self.s[self.pos..end].eq_ignore_ascii_case(t) {
            return false;
        }
        let word = t[t.len() - 1].is_ascii_alphabetic();
        if word && self.s.get(end).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            return false;
        }
        self.pos = end;
        true
    }

    /// A full expression: binary operators, then an optional `? :` over all of it.
    fn full(&mut self) -> Result<Node, SyntaxError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(self.error(&format!("expression nested deeper than {MAX_DEPTH} levels")));
        }
        let result = self.conditional();
        self.nesting -= 1;
        result
    }

    fn conditional(&mut self) -> Result<Node, SyntaxError> {
        let (condition, dc) = self.binary(0)?;
        if self.eat("?") {
            let (then, dt) = self.full()?;
            if !self.eat(":") {
                return Err(self.error("expected `:` of `? :`"));
            }
            let (otherwise, do_) = self.full()?;
            let e = Expr::Conditional(Box::new(condition), Box::new(then), Box::new(otherwise));
            return node(self, e, &[dc, dt, do_]);
        }
        Ok((condition, dc))
    }

    fn binary_op(&mut self) -> Option<BinaryOp> {
        use BinaryOp::*;
        // Longest tokens first.
        const TOKENS: &[(&str, BinaryOp)] = &[
            ("&&", And),
            ("||", Or),
            ("AND", And),
            ("OR", Or),
            (">=", GreaterEqual),
            ("<=", LessEqual),
            ("<>", NotEqual),
            ("!=", NotEqual),
            ("==", Equal),
            ("=", Equal),
            ("<", Less),
            (">", Greater),
            ("+", Add),
            ("-", Subtract),
            ("*", Multiply),
            ("/", Divide),
            ("%", Modulo),
        ];
        let save = self.pos;
        for (t, op) in TOKENS {
            if self.eat(t) {
                return Some(*op);
            }
        }
        self.pos = save;
        None
    }

    /// Precedence climbing over Netdata's levels; all binary operators are left-associative.
    fn binary(&mut self, min: u8) -> Result<Node, SyntaxError> {
        let (mut lhs, mut depth) = self.unary()?;
        loop {
            let save = self.pos;
            let Some(op) = self.binary_op() else { break };
            if op.precedence() < min {
                self.pos = save;
                break;
            }
            let (rhs, dr) = self.binary(op.precedence() + 1)?;
            (lhs, depth) = node(self, Expr::Binary(op, Box::new(lhs), Box::new(rhs)), &[depth, dr])?;
        }
        Ok((lhs, depth))
    }

    fn unary(&mut self) -> Result<Node, SyntaxError> {
        let op = if self.eat("abs(") {
            let (inner, d) = self.full()?;
            if !self.eat(")") {
                return Err(self.error("expected `)` closing abs("));
            }
            return node(self, Expr::Unary(UnaryOp::Abs, Box::new(inner)), &[d]);
        } else if self.peek() == Some(b'!') && self.s.get(self.pos + 1) != Some(&b'=') {
            self.pos += 1;
            UnaryOp::Not
        } else if self.eat("NOT") {
            UnaryOp::Not
        } else if self.eat("-") {
            UnaryOp::Minus
        } else if self.eat("+") {
            UnaryOp::Plus
        } else {
            return self.operand();
        };
        // `- - - 1` recurses here too.
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(self.error(&format!("expression nested deeper than {MAX_DEPTH} levels")));
        }
        let inner = self.unary();
        self.nesting -= 1;
        let (inner, d) = inner?;
        node(self, Expr::Unary(op, Box::new(inner)), &[d])
    }

    fn operand(&mut self) -> Result<Node, SyntaxError> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let (inner, d) = self.full()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            return node(self, Expr::Group(Box::new(inner)), &[d]);
        }
        self.leaf().map(|e| (e, 1))
    }

    /// A number or a variable.
    fn leaf(&mut self) -> Result<Expr, SyntaxError> {
        match self.peek() {
            Some(b'$') => {
                self.pos += 1;
                if self.s.get(self.pos) == Some(&b'{') {
                    let start = self.pos + 1;
                    let len = self.s[start..]
                        .iter()
                        .position(|c| *c == b'}')
                        .ok_or_else(|| self.error("expected `}`"))?;
                    let name = String::from_utf8_lossy(&self.s[start..start + len]).trim().to_string();
                    self.pos = start + len + 1;
                    if name.is_empty() {
                        return Err(self.error("empty variable name"));
                    }
                    return Ok(Expr::Variable(name));
                }
                let start = self.pos;
                while self
                    .s
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                {
                    self.pos += 1;
                }
                if start == self.pos {
                    return Err(self.error("expected a variable name after `$`"));
                }
                Ok(Expr::Variable(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()))
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.pos;
                while self.s.get(self.pos).is_some_and(|c| c.is_ascii_digit() || *c == b'.') {
                    self.pos += 1;
                }
                // An exponent (1e6, 2.5E-3).
                if self.s.get(self.pos).is_some_and(|c| *c == b'e' || *c == b'E') {
                    let mut end = self.pos + 1;
                    if self.s.get(end).is_some_and(|c| *c == b'+' || *c == b'-') {
                        end += 1;
                    }
                    if self.s.get(end).is_some_and(u8::is_ascii_digit) {
                        self.pos = end;
                        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                            self.pos += 1;
                        }
                    }
                }
                let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                text.parse()
                    .map(Expr::Number)
                    .map_err(|_| SyntaxError { offset: start, message: format!("bad number `{text}`") })
            }
            _ if self.eat("nan") => Ok(Expr::Number(f64::NAN)),
            _ if self.eat("inf") => Ok(Expr::Number(f64::INFINITY)),
            None => Err(self.error("unexpected end of expression")),
            Some(_) => Err(self.error("expected a number, a $variable or `(`")),
        }
    }
}

fn truth(v: f64) -> bool {
    v != 0.0 // NaN is "true" here, as in C
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Netdata's equality: two NaNs or two same-signed infinities are equal; otherwise NaN never is.
fn equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()).max(1.0)
}

impl Expr {
    /// Evaluates to a finite number, or says why not.
    pub fn evaluate(&self, vars: &dyn Variables) -> Result<f64, EvalError> {
        let v = self.value(vars)?;
        if v.is_nan() {
            Err(EvalError::NotANumber)
        } else if v.is_infinite() {
            Err(EvalError::Infinite)
        } else {
            Ok(v)
        }
    }

    fn value(&self, vars: &dyn Variables) -> Result<f64, EvalError> {
        use BinaryOp::*;
        Ok(match self {
            Expr::Number(n) => *n,
            Expr::Variable(name) => vars.get(name).ok_or_else(|| EvalError::UnknownVariable(name.clone()))?,
            Expr::Group(e) => e.value(vars)?,
            Expr::Unary(op, e) => {
                let v = e.value(vars)?;
                match op {
                    UnaryOp::Not => bool_value(!truth(v)),
                    UnaryOp::Plus => v,
                    UnaryOp::Minus => -v,
                    UnaryOp::Abs => v.abs(),
                }
            }
            Expr::Conditional(c, t, e) => {
                if truth(c.value(vars)?) {
                    t.value(vars)?
                } else {
                    e.value(vars)?
                }
            }
            Expr::Binary(op, a, b) => {
                let x = a.value(vars)?;
                // && and || short-circuit like C.
                match op {
                    And if !truth(x) => return Ok(0.0),
                    Or if truth(x) => return Ok(1.0),
                    _ => {}
                }
                let y = b.value(vars)?;
                match op {
                    And | Or => bool_value(truth(y)),
                    Less => bool_value(x < y),
                    LessEqual => bool_value(x < y || equal(x, y)),
                    Greater => bool_value(x > y),
                    GreaterEqual => bool_value(x > y || equal(x, y)),
                    Equal => bool_value(equal(x, y)),
                    NotEqual => bool_value(!equal(x, y)),
                    Add => x + y,
                    Subtract => x - y,
                    Multiply => x * y,
                    Divide => x / y,
                    Modulo => x % y,
                }
            }
        })
    }

    /// Every variable the expression reads.
    pub fn variables(&self, out: &mut Vec<String>) {
        match self {
            Expr::Number(_) => {}
            Expr::Variable(v) => out.push(v.clone()),
            Expr::Group(e) | Expr::Unary(_, e) => e.variables(out),
            Expr::Binary(_, a, b) => {
                a.variables(out);
                b.variables(out);
            }
            Expr::Conditional(c, t, e) => {
                c.variables(out);
                t.variables(out);
                e.variables(out);
            }
        }
    }
}

/// Prints the parsed form the way Netdata's `*_parsed` fields do:
/// `(${this} > ((${status} >= ${WARNING}) ? 70 : 80))`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) if n.is_nan() => f.write_str("nan"),
            Expr::Number(n) if n.is_infinite() => f.write_str(if *n > 0.0 { "inf" } else { "-inf" }),
            Expr::Number(n) => write!(f, "{n}"),
            Expr::Variable(v) => write!(f, "${{{v}}}"),
            // Binary and conditional nodes print their own parentheses; `(70)` prints as `70`.
            Expr::Group(e) => write!(f, "{e}"),
            Expr::Unary(UnaryOp::Abs, e) => write!(f, "abs({e})"),
            Expr::Unary(op, e) => {
                let s = match op {
                    UnaryOp::Not => "!",
                    UnaryOp::Plus => "+",
                    _ => "-",
                };
                write!(f, "{s}{e}")
            }
            Expr::Binary(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            Expr::Conditional(c, t, e) => write!(f, "({c} ? {t} : {e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> Result<f64, EvalError> {
        let vars = |name: &str| match name {
            "this" => Some(85.0),
            "status" => Some(1.0),
            "WARNING" => Some(3.0),
            "CRITICAL" => Some(4.0),
            "nothing" => Some(f64::NAN),
            "with spaces" => Some(7.0),
            _ => None,
        };
        parse(text).unwrap().evaluate(&vars)
    }

    #[test]
    fn arithmetic_precedence() {
        assert_eq!(eval("1 + 2 * 3"), Ok(7.0));
        assert_eq!(eval("(1 + 2) * 3"), Ok(9.0));
        assert_eq!(eval("10 - 4 - 3"), Ok(3.0));
        assert_eq!(eval("100 / 10 / 5"), Ok(2.0));
        assert_eq!(eval("7 % 4 * 2"), Ok(6.0));
        assert_eq!(eval("-2 * -3"), Ok(6.0));
        assert_eq!(eval("1 < 2 + 3 * 4"), Ok(1.0));
        assert_eq!(eval("2 + 3 > 4"), Ok(1.0));
        assert_eq!(eval("1e2 + .5"), Ok(100.5));
    }

    #[test]
    fn logic_shares_one_level_left_to_right_like_netdata() {
        // Netdata gives && and || the same precedence: (1 || 0) && 0 = 0.
        assert_eq!(eval("1 || 0 && 0"), Ok(0.0));
        assert_eq!(eval("1 || (0 && 0)"), Ok(1.0));
        assert_eq!(eval("1 OR 0 AND 0"), Ok(0.0));
        assert_eq!(eval("NOT 0 and 1"), Ok(1.0));
        assert_eq!(eval("!1 || !0"), Ok(1.0));
        assert_eq!(eval("1 != 2 && 2 <> 3 && 3 = 3"), Ok(1.0));
        assert_eq!(eval("$this > 80 && $this < 90"), Ok(1.0));
    }

    #[test]
    fn conditional_takes_everything_to_its_left() {
        assert_eq!(eval("$this > 80 ? 1 : 2"), Ok(1.0));
        assert_eq!(eval("0 ? 1 : 0 ? 2 : 3"), Ok(3.0));
        assert_eq!(eval("1 ? 2 : 3 + 10"), Ok(2.0));
        assert_eq!(eval("0 ? 2 : 3 + 10"), Ok(13.0));
    }

    #[test]
    fn the_hysteresis_idiom() {
        let warn = parse("$this > (($status >= $WARNING) ? (70) : (80))").unwrap();
        assert_eq!(warn.to_string(), "(${this} > ((${status} >= ${WARNING}) ? 70 : 80))");
        let at = |this: f64, status: f64| {
            warn.evaluate(&|n: &str| match n {
                "this" => Some(this),
                "status" => Some(status),
                "WARNING" => Some(3.0),
                _ => None,
            })
        };
        assert_eq!(at(75.0, 1.0), Ok(0.0), "below 80 does not raise from CLEAR");
        assert_eq!(at(81.0, 1.0), Ok(1.0));
        assert_eq!(at(75.0, 3.0), Ok(1.0), "above 70 stays raised");
        assert_eq!(at(69.0, 3.0), Ok(0.0));
        assert_eq!(at(75.0, 4.0), Ok(1.0), "CRITICAL >= WARNING");
    }

    #[test]
    fn nan_and_infinity_rules() {
        assert_eq!(eval("1 / 0"), Err(EvalError::Infinite));
        assert_eq!(eval("0 / 0"), Err(EvalError::NotANumber));
        assert_eq!(eval("$nothing + 1"), Err(EvalError::NotANumber));
        assert_eq!(eval("$nothing > 1"), Ok(0.0));
        assert_eq!(eval("$nothing == nan"), Ok(1.0));
        assert_eq!(eval("inf == inf"), Ok(1.0));
        assert_eq!(eval("$nothing != 1"), Ok(1.0));
        assert_eq!(eval("abs(-3) + abs(2 - 5)"), Ok(6.0));
        assert_eq!(eval("$missing"), Err(EvalError::UnknownVariable("missing".into())));
        assert_eq!(eval("0 && $missing"), Ok(0.0), "short circuit, like C");
        assert_eq!(eval("${with spaces} * 2"), Ok(14.0));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("1 + * 2").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(parse("(1 + 2").unwrap_err().message.contains(")"));
        assert!(parse("1 ? 2").unwrap_err().message.contains(":"));
        assert!(parse("$").is_err());
        assert_eq!(parse("1 2").unwrap_err().offset, 2);
        assert!(parse("").is_err());
    }

    #[test]
    fn hostile_nesting_is_a_syntax_error_not_a_stack_overflow() {
        let parens = format!("{}1{}", "(".repeat(3_000), ")".repeat(3_000));
        let chain = vec!["1"; 20_000].join("+");
        let minus = format!("{}1", "-".repeat(30_000));
        let ternary = format!("{}1", "1 ? 1 : ".repeat(5_000));
        let mixed = format!("{}1{}", "(1+".repeat(2_000), ")".repeat(2_000));
        for text in [parens, chain, minus, ternary, mixed] {
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains("nested deeper than 128 levels"), "{}", e.message);
        }
        // Real rules stay far below the limit.
        assert!(parse(&format!("{}1{}", "(".repeat(100), ")".repeat(100))).is_ok());
        assert!(parse(&vec!["$x"; 100].join(" + ")).is_ok());
    }

    #[test]
    fn variables_are_listed() {
        let mut v = Vec::new();
        parse("$a * 100 / ${b c}").unwrap().variables(&mut v);
        assert_eq!(v, ["a", "b c"]);
    }
}
