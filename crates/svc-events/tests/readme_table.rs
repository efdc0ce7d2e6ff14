//! The README's EventBridge table tells the truth: every operation is listed in its section, and
//! it says "not yet" exactly for the operations the dispatcher does not implement.

use berth_wire::events::Operation;

#[test]
fn readme_compatibility_table_matches_the_dispatcher() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("### EventBridge (`AWSEvents`)")
        .expect("README has an EventBridge section");
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n### ").map_or(section.len(), |i| i + 4)];
    for op in Operation::ALL {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", op.as_str())))
            .unwrap_or_else(|| panic!("README has no EventBridge row for {}", op.as_str()));
        let status = row.split('|').nth(2).unwrap_or("").trim();
        let implemented = berth_svc_events::implemented(*op);
        match status {
            "supported" | "partial" => {
                assert!(implemented, "{} is listed but not implemented", op.as_str())
            }
            "not yet" => assert!(
                !implemented,
                "{} is implemented but listed as not yet",
                op.as_str()
            ),
            other => panic!("unknown status {other:?} for {}", op.as_str()),
        }
    }
}

#[test]
fn readme_scheduler_table_lists_every_operation_and_what_is_served() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme
        .find("### EventBridge Scheduler (`scheduler`, REST)")
        .expect("README has a Scheduler section");
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n### ").map_or(section.len(), |i| i + 4)];
    for op in berth_wire::scheduler::Operation::ALL {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", op.as_str())))
            .unwrap_or_else(|| panic!("README has no Scheduler row for {}", op.as_str()));
        let status = row.split('|').nth(2).unwrap_or("").trim();
        assert!(
            berth_svc_events::scheduler::SERVED.contains(&op.as_str()) == (status != "not yet"),
            "{}: README says {status}",
            op.as_str()
        );
    }
}
