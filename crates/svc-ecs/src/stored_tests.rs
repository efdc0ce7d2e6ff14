//! The stored shapes (`stored.rs`, generated from the frozen `stored-shapes.json`) against the wire
//! shapes: for every shape a record keeps, a value with every member set (and, across rounds, every enum
//! value) reads as the wire type, converts to the stored type and back without loss, and the stored type
//! writes exactly the JSON the wire type writes — so records written before the stored types existed, when
//! records embedded the wire types, read and write unchanged.

use crate::stored;
use berth_wire::ecs;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

const SNAPSHOT: &str = include_str!("../stored-shapes.json");

/// A JSON value of `shape` with every member present; enum members take their `round`-th value.
fn full_value(shapes: &Map<String, Value>, shape: &str, round: usize, depth: usize) -> Value {
    let s = &shapes[shape];
    match s["type"].as_str().unwrap() {
        "structure" if s.get("document").is_some() => json!({"any": ["json", 1, true]}),
        "structure" => {
            let mut out = Map::new();
            if depth < 8 {
                for (name, m) in s["members"].as_object().unwrap() {
                    let member_shape = m["shape"].as_str().unwrap();
                    out.insert(
                        name.clone(),
                        full_value(shapes, member_shape, round, depth + 1),
                    );
                }
            }
            Value::Object(out)
        }
        "list" => {
            let member = s["member"]["shape"].as_str().unwrap();
            json!([
                full_value(shapes, member, round, depth + 1),
                full_value(shapes, member, round + 1, depth + 1)
            ])
        }
        "map" => {
            let value = s["value"]["shape"].as_str().unwrap();
            json!({"k": full_value(shapes, value, round, depth + 1)})
        }
        "string" => match s.get("enum") {
            Some(values) => {
                let values = values.as_array().unwrap();
                values[round % values.len()].clone()
            }
            None => json!(format!("{shape}-{round}")),
        },
        "integer" | "long" => json!(7 + round as i64),
        "boolean" => json!(round.is_multiple_of(2)),
        "double" | "float" | "timestamp" => json!(1_700_000_000.5 + round as f64),
        other => panic!("shape type {other} of {shape} has no test value"),
    }
}

fn check<W, S>(shapes: &Map<String, Value>, root: &str, rounds: usize)
where
    W: DeserializeOwned + Serialize + Clone + PartialEq + std::fmt::Debug + From<S>,
    S: Serialize + From<W>,
{
    for round in 0..rounds {
        let value = full_value(shapes, root, round, 0);
        let wire: W = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{root} round {round}: the wire type rejects {value}: {e}"));
        // Nothing in the value is unknown to the wire type (so the comparison below covers every member).
        assert_eq!(
            serde_json::to_value(&wire).unwrap(),
            value,
            "{root}: wire round trip"
        );
        let kept = S::from(wire.clone());
        assert_eq!(
            serde_json::to_string(&kept).unwrap(),
            serde_json::to_string(&wire).unwrap(),
            "{root} round {round}: the stored form writes other JSON than the wire form"
        );
        assert_eq!(
            W::from(kept),
            wire,
            "{root} round {round}: stored -> wire loses something"
        );
    }
}

#[test]
fn every_stored_shape_matches_its_wire_twin_member_for_member() {
    let snapshot: Value = serde_json::from_str(SNAPSHOT).unwrap();
    let shapes = snapshot["shapes"].as_object().unwrap();
    // Enough rounds to visit every value of the longest enum.
    let rounds = shapes
        .values()
        .filter_map(|s| s.get("enum").and_then(Value::as_array).map(Vec::len))
        .max()
        .unwrap();
    let roots: Vec<&str> = snapshot["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    macro_rules! roots {
        ($($name:ident),* $(,)?) => {{
            let checked = [$(stringify!($name)),*];
            assert_eq!(checked.as_slice(), roots.as_slice(), "every root of the snapshot is checked");
            $(check::<ecs::$name, stored::$name>(shapes, stringify!($name), rounds);)*
        }};
    }
    roots!(
        Attachment,
        CapacityProviderStrategyItem,
        ClusterConfiguration,
        ClusterSetting,
        DeploymentCircuitBreaker,
        DeploymentConfiguration,
        LoadBalancer,
        NetworkBinding,
        NetworkConfiguration,
        NetworkInterface,
        PlacementConstraint,
        PlacementStrategy,
        ServiceRegistry,
        TaskDefinition,
        TaskOverride,
        VersionInfo,
    );
}

#[test]
fn a_record_of_an_older_berth_reads_and_writes_unchanged() {
    // How berth wrote a task definition record when records held the wire type.
    #[derive(Serialize)]
    struct Old {
        definition: ecs::TaskDefinition,
        tags: Vec<crate::records::Tag>,
        delete_requested_at: Option<f64>,
    }
    // Sparse, with explicit nulls where clients send them.
    let definition = r#"{"taskDefinitionArn":"arn:aws:ecs:us-east-1:000000000000:task-definition/web:3",
        "containerDefinitions":[{"name":"web","image":"busybox","cpu":null,"memory":128,
        "portMappings":[{"containerPort":80,"hostPort":0,"protocol":"tcp"}],"essential":true,
        "environment":[{"name":"A","value":"1"}],"healthCheck":{"command":["CMD","true"],"interval":null},
        "logConfiguration":{"logDriver":"awslogs","options":{"awslogs-group":"g"}}}],
        "family":"web","networkMode":"bridge","revision":3,"volumes":[],"status":"ACTIVE",
        "compatibilities":["EC2","EXTERNAL"],"registeredAt":1700000000.25}"#;
    let old = serde_json::to_string(&Old {
        definition: serde_json::from_str(definition).unwrap(),
        tags: vec![],
        delete_requested_at: Some(1.5),
    })
    .unwrap();
    let rec: crate::records::TaskDefinitionRecord = serde_json::from_str(&old).unwrap();
    assert_eq!(
        rec.definition.status,
        Some(stored::TaskDefinitionStatus::Active)
    );
    assert_eq!(rec.definition.revision, 3);
    assert_eq!(serde_json::to_string(&rec).unwrap(), old);
}
