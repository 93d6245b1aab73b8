//! The `chaingate` binary as a user runs it: signals, exit codes, the demo.

mod crate_graph;
mod demo;
mod floods;
mod lifecycle;
mod process;
mod tracing;
