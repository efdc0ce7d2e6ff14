//! Role parsing and the authorization tables.

use std::path::Path;

use berth_auth::{
    authorize, read_credentials_file, read_credentials_profile, write_credentials_file, Role,
    VerifiedRequest,
};

const ECS: &str = "AmazonEC2ContainerServiceV20141113";

#[test]
fn role_strings() {
    for (s, r) in [
        ("admin", Role::Admin),
        ("agent", Role::Agent),
        ("readonly", Role::ReadOnly),
    ] {
        assert_eq!(s.parse::<Role>().unwrap(), r);
        assert_eq!(r.to_string(), s);
    }
    assert_eq!("ReadOnly".parse::<Role>().unwrap(), Role::ReadOnly);
    assert!("root".parse::<Role>().is_err());
}

#[test]
fn admin_may_do_anything() {
    for op in [
        "RunTask",
        "DeleteCluster",
        "DiscoverPollEndpoint",
        "Whatever",
    ] {
        authorize(Role::Admin, ECS, op).unwrap();
        authorize(Role::Admin, "ecr", op).unwrap();
    }
}

#[test]
fn readonly_reads_only() {
    for (svc, op) in [
        (ECS, "DescribeClusters"),
        ("ecs", "ListTasks"),
        ("ecs", "GetTaskProtection"),
        ("ecr", "BatchGetImage"),
        ("ecr", "GetAuthorizationToken"),
        ("logs", "GetLogEvents"),
        ("Logs_20140328", "DescribeLogGroups"),
        ("logs", "FilterLogEvents"),
        ("Logs_20140328", "StartLiveTail"),
    ] {
        authorize(Role::ReadOnly, svc, op).unwrap_or_else(|e| panic!("{svc} {op}: {e}"));
    }
    for (svc, op) in [
        (ECS, "RunTask"),
        (ECS, "DiscoverPollEndpoint"),
        (ECS, "RegisterContainerInstance"),
        (ECS, "SubmitTaskStateChange"),
        ("ecs", "TagResource"),
        ("ecs", "Listen"),
        ("ecs", "Get"),
        ("secretsmanager", "GetSecretValue"),
        ("ssm", "GetParameters"),
        ("logs", "PutLogEvents"),
        ("logs", "StartQuery"),
    ] {
        let err = authorize(Role::ReadOnly, svc, op).unwrap_err();
        assert_eq!(err.code(), "AccessDeniedException", "{svc} {op}");
    }
}

#[test]
fn agent_only_agent_operations() {
    for (svc, op) in [
        (ECS, "RegisterContainerInstance"),
        (ECS, "DeregisterContainerInstance"),
        (ECS, "SubmitTaskStateChange"),
        (ECS, "SubmitContainerStateChange"),
        (ECS, "SubmitAttachmentStateChanges"),
        (ECS, "DiscoverPollEndpoint"),
        (ECS, "UpdateContainerInstancesState"),
        (
            "AmazonEC2ContainerRegistry_V20150921",
            "GetAuthorizationToken",
        ),
        ("ecr", "BatchGetImage"),
        ("ecr", "GetDownloadUrlForLayer"),
        ("Logs_20140328", "CreateLogStream"),
        ("logs", "PutLogEvents"),
        ("logs", "CreateLogGroup"),
        ("secretsmanager", "GetSecretValue"),
        ("AmazonSSM", "GetParameters"),
        ("berth", "Heartbeat"),
    ] {
        authorize(Role::Agent, svc, op).unwrap_or_else(|e| panic!("{svc} {op}: {e}"));
    }
    for (svc, op) in [
        (ECS, "RunTask"),
        (ECS, "DescribeClusters"),
        (ECS, "UpdateContainerAgent"),
        (ECS, "DeleteCluster"),
        ("ecr", "PutImage"),
        ("logs", "DeleteLogGroup"),
        ("ssm", "PutParameter"),
    ] {
        assert!(authorize(Role::Agent, svc, op).is_err(), "{svc} {op}");
    }
}

#[test]
fn access_denied_wording() {
    let err = authorize(Role::ReadOnly, ECS, "RunTask").unwrap_err();
    assert_eq!(err.http_status(), 400);
    let v = VerifiedRequest {
        access_key_id: "AKIAREADONLYREADONLY".into(),
        role: Role::ReadOnly,
        region: "us-east-1".into(),
        service: "ecs".into(),
        signed_at: std::time::UNIX_EPOCH,
        presigned: false,
        payload_signed: true,
    };
    let err = v.authorize("123456789012", ECS, "ListTasks");
    assert!(err.is_ok());
    let err = v.authorize("123456789012", ECS, "RunTask").unwrap_err();
    assert_eq!(err.code(), "AccessDeniedException");
    assert_eq!(
        err.message(),
        "User: arn:aws:iam::123456789012:user/AKIAREADONLYREADONLY is not authorized to perform: ecs:RunTask on resource: * because no identity-based policy allows the ecs:RunTask action"
    );
}

#[test]
fn credentials_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/credentials");
    write_credentials_file(&path, "default", "AKIAONE", "secret1").unwrap();
    write_credentials_file(&path, "berth", "AKIATWO", "secret/2+x").unwrap();
    write_credentials_file(&path, "default", "AKIATHREE", "secret3").unwrap();
    assert_eq!(
        read_credentials_profile(&path, "default").unwrap(),
        Some(("AKIATHREE".into(), "secret3".into()))
    );
    assert_eq!(
        read_credentials_profile(&path, "berth").unwrap(),
        Some(("AKIATWO".into(), "secret/2+x".into()))
    );
    assert_eq!(read_credentials_profile(&path, "none").unwrap(), None);
    assert_eq!(read_credentials_file(&path).unwrap().len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(write_credentials_file(&path, "bad\nname", "A", "B").is_err());
    assert!(write_credentials_file(Path::new(""), "x", "A", "B").is_err());
}
