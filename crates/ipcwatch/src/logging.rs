//! Logs to stderr (the journal under systemd), with a level that SIGHUP can change.
//!
//! Clients, containers and users outside the daemon's control can make the same line happen
//! again and again (a TLS client per connection, a broken file per request, a namespace per
//! alert). So warnings and errors are limited per place in the code: at most
//! [`BURST`] in each [`WINDOW`], and what was dropped is summed up in one line per place and
//! window. rustls' own warnings (an IP address sent as SNI, say) show only at debug level.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::reload;

use ipcwatch_config::LogLevel;

/// Warnings and errors one place may log in a [`WINDOW`].
const BURST: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);

pub struct LogHandle {
    level: reload::Handle<LevelFilter, tracing_subscriber::Registry>,
    throttle: Arc<Throttle>,
}

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Per place in the code: when its window began, lines passed in it, lines dropped.
#[derive(Default)]
struct Throttle {
    /// 1 when the daemon logs at debug or trace (rustls' warnings then pass).
    verbose: AtomicU8,
    places: Mutex<HashMap<Identifier, Place>>,
    /// The thread that sums up dropped lines: it sleeps until a line is dropped.
    reporter: std::sync::OnceLock<std::thread::Thread>,
}

struct Place {
    since: Instant,
    passed: u32,
    dropped: u64,
    name: &'static str,
}

impl<S> Filter<S> for Throttle {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        // rustls logs through `log`: its warnings are about clients, not about us.
        !(meta.target().starts_with("rustls") && *meta.level() > Level::ERROR)
            || self.verbose.load(Ordering::Relaxed) == 1
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Decided per event: the level can change on SIGHUP, and each place has a budget.
        tracing::subscriber::Interest::sometimes()
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || meta.target() == module_path!() {
            return true;
        }
        let now = Instant::now();
        let mut places = self.places.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: one entry per place in the code that can warn, a few hundred at most.
        let place = places.entry(meta.callsite()).or_insert(Place {
            since: now,
            passed: 0,
            dropped: 0,
            name: meta.name(),
        });
        if now.duration_since(place.since) >= WINDOW && place.dropped == 0 {
            place.since = now;
            place.passed = 0;
        }
        place.passed += 1;
        if place.passed > BURST {
            place.dropped += 1;
            if place.dropped == 1 {
                if let Some(reporter) = self.reporter.get() {
                    reporter.unpark();
                }
            }
            return false;
        }
        true
    }
}

impl Throttle {
    /// Sums up what each place dropped in its ended window, and starts it anew. Whether any
    /// place still holds dropped lines (to be summed up when its window ends).
    fn report(&self) -> bool {
        let now = Instant::now();
        let (ended, waiting): (Vec<(&'static str, u64)>, bool) = {
            let mut places = self.places.lock().unwrap_or_else(|p| p.into_inner());
            let ended = places
                .values_mut()
                .filter(|p| p.dropped > 0 && now.duration_since(p.since) >= WINDOW)
                .map(|p| {
                    let dropped = std::mem::take(&mut p.dropped);
                    (p.since, p.passed) = (now, 0);
                    (p.name, dropped)
                })
                .collect();
            (ended, places.values().any(|p| p.dropped > 0))
        };
        for (place, dropped) in ended {
            tracing::warn!(
                place,
                dropped,
                "repeated log lines dropped (more than {BURST} a minute from one place)"
            );
        }
        waiting
    }
}

pub fn init(level: LogLevel) -> LogHandle {
    let (layer, handle) = reload::Layer::new(filter(level));
    let throttle = Arc::new(Throttle::default());
    throttle.verbose.store(u8::from(level >= LogLevel::Debug), Ordering::Relaxed);
    // systemd's journal stamps every line itself.
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi);
    let limited = ThrottleRef(throttle.clone());
    if under_systemd {
        tracing_subscriber::registry().with(layer).with(fmt.without_time().with_filter(limited)).init();
    } else {
        tracing_subscriber::registry().with(layer).with(fmt.with_filter(limited)).init();
    }
    let reporter = throttle.clone();
    let _ = std::thread::Builder::new().name("ipcwatch-log".into()).spawn(move || {
        // Started before the daemon sorts out its threads' capabilities: it needs none.
        let _ = ipcwatch_sampler::namespaces::keep_thread_capabilities(0);
        let _ = reporter.reporter.set(std::thread::current());
        // An idle daemon wakes this thread never: only a dropped line starts the clock.
        loop {
            while reporter.report() {
                std::thread::sleep(WINDOW / 6);
            }
            std::thread::park();
        }
    });
    LogHandle { level: handle, throttle }
}

/// The shared throttle as a per-layer filter.
struct ThrottleRef(Arc<Throttle>);

impl<S> Filter<S> for ThrottleRef {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::enabled(&*self.0, meta, cx)
    }
    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        Filter::<S>::callsite_enabled(&*self.0, meta)
    }
    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        Filter::<S>::event_enabled(&*self.0, event, cx)
    }
}

impl LogHandle {
    pub fn set(&self, level: LogLevel) {
        let _ = self.level.modify(|f| *f = filter(level));
        self.throttle.verbose.store(u8::from(level >= LogLevel::Debug), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(since: Instant, dropped: u64) -> Place {
        Place { since, passed: BURST + 1, dropped, name: "here" }
    }

    #[test]
    fn the_reporter_is_kept_awake_only_while_dropped_lines_wait_for_their_window() {
        let throttle = Throttle::default();
        assert!(!throttle.report(), "nothing dropped: the reporter sleeps");
        let now = Instant::now();
        let ended = now.checked_sub(WINDOW + Duration::from_secs(1)).expect("the clock runs long enough");
        let key = |m| Identifier(m);
        static A: tracing::callsite::DefaultCallsite = tracing::callsite::DefaultCallsite::new(&META);
        static META: Metadata<'static> = tracing::metadata!(
            name: "a",
            target: "t",
            level: Level::WARN,
            fields: &[],
            callsite: &A,
            kind: tracing::metadata::Kind::EVENT
        );
        throttle.places.lock().unwrap().insert(key(&A), place(now, 3));
        assert!(throttle.report(), "a window still open holds dropped lines");
        throttle.places.lock().unwrap().insert(key(&A), place(ended, 3));
        assert!(!throttle.report(), "the ended window is summed up and nothing is left");
        assert_eq!(throttle.places.lock().unwrap()[&key(&A)].dropped, 0);
    }
}
