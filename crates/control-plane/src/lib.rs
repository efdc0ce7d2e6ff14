//! berth-control-plane
