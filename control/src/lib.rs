//! antcode-control
