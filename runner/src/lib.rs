//! antcode-runner
