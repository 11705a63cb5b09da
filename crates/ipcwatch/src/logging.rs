//! Logs to stderr (the journal under systemd), with a level that SIGHUP can change.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

use ipcwatch_config::LogLevel;

pub struct LogHandle(reload::Handle<LevelFilter, tracing_subscriber::Registry>);

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

pub fn init(level: LogLevel) -> LogHandle {
    let (layer, handle) = reload::Layer::new(filter(level));
    // systemd's journal stamps every line itself.
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    if under_systemd {
        tracing_subscriber::registry().with(layer).with(fmt.without_time()).init();
    } else {
        tracing_subscriber::registry().with(layer).with(fmt).init();
    }
    LogHandle(handle)
}

impl LogHandle {
    pub fn set(&self, level: LogLevel) {
        let _ = self.0.modify(|f| *f = filter(level));
    }
}
