//! antcode-edge
