//! berth-ecs-api
