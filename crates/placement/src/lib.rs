//! berth-placement
