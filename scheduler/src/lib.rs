//! antcode-scheduler
