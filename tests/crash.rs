//! Crash test placeholder.
