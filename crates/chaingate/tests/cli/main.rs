//! The `chaingate` binary as a user runs it: signals, exit codes, the demo.

mod demo;
mod lifecycle;
