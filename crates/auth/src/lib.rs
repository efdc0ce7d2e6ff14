//! berth-auth
