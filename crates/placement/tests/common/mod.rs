#![allow(dead_code)]
use berth_placement::*;

pub fn arn(i: usize) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:container-instance/test/ci{i:04}")
}

/// An ACTIVE, connected instance with AZ and instance type attributes.
pub fn inst(i: usize, az: &str, cpu: i64, mem: i64) -> ContainerInstance {
    let mut c = ContainerInstance::new(arn(i), cpu, mem);
    c.attributes
        .push(Attribute::new("ecs.availability-zone", az));
    c.attributes
        .push(Attribute::new("ecs.instance-type", "t2.small"));
    c.ec2_instance_id = Some(format!("i-{i:08x}"));
    c.agent_version = Some("1.14.5".into());
    c
}

pub fn with_tasks(mut c: ContainerInstance, group: &str, n: usize) -> ContainerInstance {
    for _ in 0..n {
        c.tasks.push(TaskInfo::new(group));
    }
    c.running_tasks_count += n as u32;
    c
}

pub fn req(cpu: i64, mem: i64, count: u32) -> PlacementRequest {
    PlacementRequest::new(TaskRequirements::new("web", cpu, mem), count)
}

pub fn run(instances: Vec<ContainerInstance>, r: &PlacementRequest) -> PlacementOutcome {
    let snap = ClusterSnapshot::new(instances);
    let idx = ClusterIndex::build(&snap);
    place(&idx, r).expect("placement")
}

pub fn placed_ids(o: &PlacementOutcome) -> Vec<usize> {
    o.placements.iter().map(|p| p.instance_index).collect()
}
