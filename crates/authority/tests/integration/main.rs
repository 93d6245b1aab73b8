//! The reference authority over real HTTP on loopback: one test binary, a module per area.

mod consent;
mod reciprocal;
mod tokens;
