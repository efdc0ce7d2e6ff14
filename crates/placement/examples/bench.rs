//! Placement throughput benchmark.
//!
//! `cargo run --release -p berth-placement --example bench`
//!
//! For 100 / 1,000 / 5,000 / 10,000 instances and three scenarios — binpack(memory),
//! spread(AZ)+spread(instanceId), and random with a memberOf constraint — it times RunTask-sized
//! calls (count = 10) against a prebuilt `ClusterIndex` and prints placements per second
//! (one placement = one instance chosen for one task), the one-off index build time, and the
//! approximate heap held by snapshot + index (measured with a counting allocator).
//!
//! The reference in the same run is `place_exhaustive`, which filters and scores every instance
//! for every task (the engine before the ordered walk): `place` should stay flat as the cluster
//! grows while the exhaustive walk falls off linearly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_placement::*;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const TYPES: [&str; 4] = ["t2.small", "t2.medium", "m5.large", "c5.xlarge"];

fn cluster(n: usize) -> ClusterSnapshot {
    let instances = (0..n)
        .map(|i| {
            let mut c = ContainerInstance::new(
                format!("arn:aws:ecs:us-east-1:123456789012:container-instance/bench/{i:032x}"),
                1_000_000,
                1_000_000,
            );
            c.attributes = vec![
                Attribute::new(AZ_ATTRIBUTE, AZS[i % 3]),
                Attribute::new("ecs.instance-type", TYPES[i % 4]),
                Attribute::new("ecs.os-type", "linux"),
                Attribute::new("ecs.cpu-architecture", "x86_64"),
                Attribute::new("ecs.ami-id", "ami-1234abcd"),
                Attribute::flag("ecs.capability.task-eni"),
                Attribute::flag("com.amazonaws.ecs.capability.logging-driver.awslogs"),
                Attribute::new("stack", if i % 2 == 0 { "prod" } else { "dev" }),
            ];
            c.ec2_instance_id = Some(format!("i-{i:017x}"));
            c.agent_version = Some("1.80.0".into());
            c.remaining.tcp_ports = vec![22, 2375, 2376, 51678, 51679];
            // Some existing tasks: a few services per instance.
            for s in 0..4 {
                c.tasks
                    .push(TaskInfo::new(format!("service:svc{}", (i + s) % 50)));
            }
            c.tasks.push(TaskInfo::new("service:web"));
            c.running_tasks_count = c.tasks.len() as u32;
            c
        })
        .collect();
    ClusterSnapshot::new(instances)
}

fn scenario(name: &str) -> PlacementRequest {
    let mut task = TaskRequirements::new("web", 16, 32);
    task.group = "service:web".into();
    task.required_attributes = vec![Attribute::flag(
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
    )];
    let mut r = PlacementRequest::new(task, 10);
    match name {
        "binpack(memory)" => r.strategies = vec![PlacementStrategy::binpack("memory")],
        "spread(AZ)+spread(instanceId)" => r.strategies = service_default(),
        _ => {
            r.strategies = vec![PlacementStrategy::random()];
            r.constraints = vec![PlacementConstraint::member_of(
                "attribute:ecs.instance-type =~ t2.* and attribute:stack == prod",
            )];
        }
    }
    r
}

type Placer = fn(&ClusterIndex<'_>, &PlacementRequest) -> Result<PlacementOutcome, PlacementError>;

/// Placements per second and µs per placement of `f` over ~0.6 s (after a warm-up call).
fn measure(idx: &ClusterIndex<'_>, r: &PlacementRequest, f: Placer) -> (f64, f64) {
    let mut r = r.clone();
    let _ = f(idx, &r).expect("bench request is valid");
    let budget = Duration::from_millis(600);
    let t = Instant::now();
    let mut placed = 0u64;
    let mut calls = 0u64;
    while t.elapsed() < budget {
        r.seed = calls;
        let o = f(idx, &r).expect("bench request is valid");
        assert_eq!(o.placements.len(), 10, "bench cluster must fit");
        placed += o.placements.len() as u64;
        calls += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    (placed as f64 / secs, secs * 1e6 / placed as f64)
}

fn main() {
    let scenarios = [
        "binpack(memory)",
        "spread(AZ)+spread(instanceId)",
        "memberOf+random",
    ];
    println!("| instances | scenario | placements/s | µs/placement | exhaustive walk (reference) placements/s | ratio | index build | snapshot+index heap |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for n in [100usize, 1_000, 5_000, 10_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let snap = cluster(n);
        let t = Instant::now();
        let idx = ClusterIndex::build(&snap);
        let build = t.elapsed();
        let heap = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        for s in scenarios {
            let r = scenario(s);
            let (rate, us) = measure(&idx, &r, place);
            let (reference, _) = measure(&idx, &r, place_exhaustive);
            println!(
                "| {n} | {s} | {rate:.0} | {us:.2} | {reference:.0} | {:.1}× | {:.1} ms | {:.1} MiB |",
                rate / reference,
                build.as_secs_f64() * 1e3,
                heap as f64 / (1024.0 * 1024.0)
            );
        }
    }
}
