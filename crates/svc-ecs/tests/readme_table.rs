//! The README's compatibility table tells the truth: every ECS operation is listed, and it says
//! "not yet" exactly for the operations the dispatcher does not implement.

use berth_wire::ecs::Operation;

#[test]
fn readme_compatibility_table_matches_the_dispatcher() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for op in Operation::ALL {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", op.as_str())))
            .unwrap_or_else(|| panic!("README has no row for {}", op.as_str()));
        let status = row.split('|').nth(2).unwrap_or("").trim();
        let implemented = berth_svc_ecs::ecs::implemented(*op);
        match status {
            "supported" | "partial" => {
                assert!(
                    implemented,
                    "README says {status} for {}, but it is not implemented",
                    op.as_str()
                )
            }
            "not yet" => assert!(
                !implemented,
                "README says not yet for {}, but it is implemented",
                op.as_str()
            ),
            other => panic!("unknown status {other:?} for {}", op.as_str()),
        }
    }
}
