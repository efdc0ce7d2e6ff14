//! Property test of the request path: whatever body arrives for whatever ECS operation, the
//! handler answers (success or a 4xx AWS error), never panics, never answers 500, and bad input
//! changes nothing already stored.

use berth_auth::Role;
use berth_core::Scope;
use berth_service::Principal;
use berth_store::MemoryStore;
use berth_svc_ecs::{ecs, Ctx, Ecs, EcsConfig};
use berth_wire::ecs::Operation;
use proptest::prelude::*;
use std::sync::Arc;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[a-zA-Z0-9:/_ .*-]{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("default")),
        Just(serde_json::Value::from(
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        )),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("cluster".to_string()),
            Just("clusters".to_string()),
            Just("clusterName".to_string()),
            Just("family".to_string()),
            Just("taskDefinition".to_string()),
            Just("containerDefinitions".to_string()),
            Just("name".to_string()),
            Just("image".to_string()),
            Just("memory".to_string()),
            Just("portMappings".to_string()),
            Just("tags".to_string()),
            Just("resourceArn".to_string()),
            Just("maxResults".to_string()),
            Just("nextToken".to_string()),
            Just("include".to_string()),
            "[a-zA-Z]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// The ECS service by itself, as the server builds it (watch cache with ECS's indexes), with no
/// background tasks running.
async fn ecs_alone() -> Arc<Ecs> {
    let cache = berth_store::CachedStore::start_indexed(
        Arc::new(MemoryStore::new()),
        berth_svc_ecs::indexes::all(),
    );
    cache.ready().await.unwrap();
    let store: Arc<dyn berth_store::StateStore> = Arc::new(cache.clone());
    let leader = Arc::new(berth_service::leader::Leader::default());
    let mut driver = berth_tasks::Driver::new(|| true);
    Ecs::new(
        EcsConfig {
            store,
            repo: berth_service::repo::Repo::cached(cache.clone()),
            keys_repo: berth_service::repo::Repo::cached(cache),
            scope: Scope::new("us-east-1", "000000000000"),
            keys: Default::default(),
            endpoint: "http://127.0.0.1:7601".into(),
            metrics: Arc::new(berth_service::metrics::Metrics::default()),
            leader,
            task_roles: Default::default(),
            events: Default::default(),
        },
        &mut driver,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]
    #[test]
    fn any_body_any_operation_is_a_clean_answer(op_index in 0usize..Operation::ALL.len(), body in body()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let app = ecs_alone().await;
            let ctx = Ctx { app, principal: Principal { access_key_id: "AKIATEST".into(), role: Role::Admin, arn: "arn:aws:iam::000000000000:user/AKIATEST".into(), temporary: false } };
            // Something stored that bad input must not change.
            ecs::dispatch(&ctx, Operation::CreateCluster, br#"{"clusterName":"keep","tags":[{"key":"k","value":"v"}]}"#).await.unwrap();
            let before = ecs::dispatch(&ctx, Operation::DescribeClusters, br#"{"clusters":["keep"],"include":["TAGS","SETTINGS"]}"#).await.unwrap();
            let op = Operation::ALL[op_index];
            match ecs::dispatch(&ctx, op, &body).await {
                Ok(out) => { serde_json::from_slice::<serde_json::Value>(&out).expect("responses are JSON"); }
                Err(e) => {
                    assert!(!e.status.is_server_error(), "{op:?} answered {} {}: {}", e.status, e.code, e.message);
                    let after = ecs::dispatch(&ctx, Operation::DescribeClusters, br#"{"clusters":["keep"],"include":["TAGS","SETTINGS"]}"#).await.unwrap();
                    assert_eq!(before, after, "a rejected {op:?} changed stored state");
                }
            }
        });
    }
}
