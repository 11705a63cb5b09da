//! End-to-end tests: the real `ipcwatch` binary against real kernel objects, made by
//! `ipcwatch-testkit` inside throw-away IPC namespaces (no root needed, host untouched).

mod alerts;
mod cli;
mod daemon;
mod dense;
mod grafana;
mod holders;
mod http;
mod image;
mod kubernetes;
mod namespaces;
mod netdata;
mod ns;
mod package;
mod posix;
mod probes;
mod snapshot;
mod tenant;
mod tls;
