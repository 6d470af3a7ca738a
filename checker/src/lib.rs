//! zabkeeper-check: history checker.
