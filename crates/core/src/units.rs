//! CPU units and memory sizes as ECS accepts them.
//!
//! Task-level `cpu` is "an integer using CPU units, for example 1024, or a string using vCPUs, for
//! example 1 vCPU or 1 vcpu"; `memory` is "an integer using MiB, for example 1024, or a string using
//! GB, for example 1GB or 1 GB" (ECS API reference, TaskDefinition). ECS returns both as unit strings.

/// 1 vCPU = 1024 CPU units.
pub const UNITS_PER_VCPU: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("Invalid 'cpu' setting for task. {0}")]
    Cpu(String),
    #[error("Invalid 'memory' setting for task. {0}")]
    Memory(String),
}

fn split_number(s: &str) -> Option<(f64, String)> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    if num.is_empty() {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() {
        return None;
    }
    Some((n, unit.trim().to_ascii_lowercase()))
}

/// Parses task-level cpu ("1024", "1 vCPU", "0.25 vcpu") into CPU units.
pub fn parse_task_cpu(s: &str) -> Result<u32, UnitError> {
    let bad = || {
        UnitError::Cpu(format!("'{s}' is not a valid CPU value. Use CPU units (for example 1024) or vCPUs (for example 1 vCPU)."))
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let units = match unit.as_str() {
        "" => n,
        "vcpu" | "vcpus" => n * UNITS_PER_VCPU as f64,
        _ => return Err(bad()),
    };
    if units.fract() != 0.0 || units < 1.0 || units > u32::MAX as f64 {
        return Err(bad());
    }
    Ok(units as u32)
}

/// Parses task-level memory ("2048", "2 GB", "2GB", "512 MiB") into MiB.
pub fn parse_task_memory(s: &str) -> Result<u32, UnitError> {
    let bad = || {
        UnitError::Memory(format!("'{s}' is not a valid memory value. Use MiB (for example 1024) or GB (for example 1 GB)."))
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let mib = match unit.as_str() {
        "" | "mib" | "mb" => n,
        "gb" | "gib" => n * 1024.0,
        _ => return Err(bad()),
    };
    if mib.fract() != 0.0 || mib < 1.0 || mib > u32::MAX as f64 {
        return Err(bad());
    }
    Ok(mib as u32)
}

/// The Fargate task size table: for each CPU value, the allowed memory values in MiB.
pub fn fargate_memory_options(cpu: u32) -> Option<Vec<u32>> {
    let range = |lo: u32, hi: u32, step: u32| (lo..=hi).step_by(step as usize).collect::<Vec<_>>();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => return None,
    })
}

/// Task-level CPU bounds for the EC2/EXTERNAL launch types: 128 to 196,608 units.
pub const EC2_TASK_CPU_RANGE: std::ops::RangeInclusive<u32> = 128..=196_608;

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cpu_forms() {
        assert_eq!(parse_task_cpu("1024"), Ok(1024));
        assert_eq!(parse_task_cpu("1 vCPU"), Ok(1024));
        assert_eq!(parse_task_cpu("1 vcpu"), Ok(1024));
        assert_eq!(parse_task_cpu("0.25 vCPU"), Ok(256));
        assert_eq!(parse_task_cpu(".5 vCPU"), Ok(512));
        assert!(parse_task_cpu("fast").is_err());
        assert!(parse_task_cpu("0.1 vCPU").is_err());
        assert!(parse_task_cpu("").is_err());
        assert!(parse_task_cpu("1e9999").is_err());
    }
    #[test]
    fn memory_forms() {
        assert_eq!(parse_task_memory("2048"), Ok(2048));
        assert_eq!(parse_task_memory("2 GB"), Ok(2048));
        assert_eq!(parse_task_memory("2GB"), Ok(2048));
        assert_eq!(parse_task_memory("0.5 GB"), Ok(512));
        assert!(parse_task_memory("2 TB").is_err());
    }
    #[test]
    fn fargate() {
        assert!(fargate_memory_options(256).unwrap().contains(&512));
        assert!(!fargate_memory_options(256).unwrap().contains(&4096));
        assert!(fargate_memory_options(8192).unwrap().contains(&20480));
        assert!(fargate_memory_options(300).is_none());
    }
}
