//! An alert engine that reads Netdata's health-configuration syntax, so a Netdata user's
//! rules port unchanged, and evaluates them against ipcwatch's charts with Netdata's
//! statuses, hysteresis idiom, delays and repeats.
//!
//! * [`rules`] parses rule files; [`expr`] is the expression language.
//! * [`Engine`] is the state machine, driven by the caller's clock.

#![forbid(unsafe_code)]

pub mod delivery;
pub mod engine;
pub mod expr;
pub mod rules;

pub use delivery::{AlertmanagerAuth, Delivery, DeliveryConfig, DeliveryStats};
pub use engine::{
    alarms_json, format_value, Alert, Board, Engine, Host, Notification, Outcome, Status, Transition,
};
pub use rules::{load, parse_age, parse_duration, DurationError, Pattern, Rule, RuleError};
