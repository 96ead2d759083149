//! End-to-end tests of `refpoint serve` driven by refpoint's own client:
//! the CLI routed through the service, jobs outliving their request, the
//! host lock (32777 naming the pid), the owner-only socket, HTTP Basic on
//! TCP, DSP0200 error headers and a clean SIGTERM shutdown.
#![allow(clippy::tests_outside_test_module)]

mod common;
mod serve_support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{host_with_fixture, refpoint};
use refpoint::client::{ServiceClient, job_state, wait_for_job};
use refpoint::serve::ParamValue;
use refpoint_cim::ObjectPath;
use serde_json::Value;
use serve_support::{PASSWORD, Service, USER, entries};

/// Sends raw HTTP bytes and returns (status code, headers lower-cased, body).
fn raw_http(mut stream: impl Read + Write, request: &str) -> (u16, Vec<(String, String)>, String) {
    stream.write_all(request.as_bytes()).expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const ENUM_NAMES_BODY: &str = r#"<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="EnumerateInstanceNames"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="Msvm_ComputerSystem"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;

fn cim_post(body: &str, authorization: Option<&str>) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /cimom HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/xml; charset=\"utf-8\"\r\nCIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root/virtualization/v2\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn export_args<'a>(rp: &'a str, to: &'a Path) -> Vec<&'a str> {
    vec![
        "export",
        "--reference-point",
        rp,
        "--to",
        to.to_str().expect("utf8"),
    ]
}

fn sha256sum_check(vm_folder: &Path) {
    let out = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(vm_folder)
        .output()
        .expect("sha256sum");
    assert!(
        out.status.success(),
        "sha256sum -c failed in {}: {}",
        vm_folder.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn cli_export_through_the_service_completes_and_sha256sum_verifies() {
    // Arrange
    let (temp, host, fixture) = host_with_fixture("served", "2", "64M", "31");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    let service = Service::start(&host, false);

    // Act: the CLI finds the socket and goes through the service.
    let (code, out, err) = refpoint(&host, &export_args(rp, &target));

    // Assert
    assert_eq!(code, 0, "export through the service: {out} {err}");
    assert_eq!(out["ReturnValue"], 4096);
    assert_eq!(out["Job"]["JobState"], 7, "{out}");
    assert!(out["Job"]["InstanceID"].is_string());
    sha256sum_check(&target.join("served"));
    let stopped = service.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn detached_export_returns_4096_and_its_job_outlives_the_request() {
    // Arrange
    let (temp, host, fixture) = host_with_fixture("detached", "1", "64M", "32");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    let service = Service::start(&host, false);
    let mut args = export_args(rp, &target);
    args.push("--detach");

    // Act: the CLI process ends at once; the job keeps running in the service.
    let (code, out, err) = refpoint(&host, &args);
    let client = ServiceClient::connect(&host)
        .expect("connect")
        .expect("service");
    let job_path: ObjectPath = out["Job"]
        .as_str()
        .expect("Job path")
        .parse()
        .expect("Job is an object path");
    let job = wait_for_job(&client, &job_path, |_| {}).expect("job");

    // Assert
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(out["ReturnValue"], 4096);
    assert_eq!(
        job_path.class_name,
        "Msvm_VirtualSystemReferencePointExportJob"
    );
    assert_eq!(job_path.key("InstanceID"), out["InstanceID"].as_str());
    assert_eq!(job_state(&job), 7, "{job:?}");
    let (code, report, err) = refpoint(&host, &["verify", target.to_str().expect("utf8")]);
    assert_eq!(code, 0, "verify: {report} {err}");
    drop(service);
}

#[test]
fn detach_without_a_running_service_fails_32777() {
    let (temp, host, fixture) = host_with_fixture("nodetach", "1", "32M", "33");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    let mut args = export_args(rp, &target);
    args.push("--detach");

    let (code, out, err) = refpoint(&host, &args);

    assert_eq!(code, 1);
    assert_eq!(out["ReturnValue"], 32777, "{out} {err}");
    assert!(err.contains("refpoint serve"), "{err}");
    assert!(entries(&target).is_empty());
}

#[test]
fn second_serve_on_the_same_host_fails_32777_naming_the_first_pid() {
    // Arrange
    let (_temp, host, _) = host_with_fixture("twice", "1", "32M", "34");
    let first = Service::start(&host, false);

    // Act
    let out = refpoint_bin()
        .arg("--host")
        .arg(&host)
        .arg("serve")
        .output()
        .expect("second serve");

    // Assert
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("32777"), "{stderr}");
    assert!(
        stderr.contains(&first.pid.to_string()),
        "pid {} not named: {stderr}",
        first.pid
    );
    assert!(
        first.socket.exists(),
        "the first service's socket must survive"
    );
    let stopped = first.terminate();
    assert!(stopped.status.success());
}

/// `refpoint` without the `--json` the common helper adds.
fn refpoint_bin() -> Command {
    use assert_cmd::cargo::CommandCargoExt;
    Command::cargo_bin("refpoint").expect("refpoint binary")
}

#[test]
fn command_that_does_not_go_through_the_service_fails_32777_naming_its_pid() {
    let (_temp, host, fixture) = host_with_fixture("held", "1", "32M", "35");
    let service = Service::start(&host, false);

    let (code, out, err) = refpoint(
        &host,
        &[
            "vm",
            "show",
            fixture["element_name"].as_str().expect("name"),
        ],
    );

    assert_eq!(code, 1);
    assert_eq!(out["ReturnValue"], 32777, "{out}");
    assert!(
        err.contains(&service.pid.to_string()),
        "pid not named: {err}"
    );
    assert!(err.contains("vm show"), "{err}");
    drop(service);
}

#[test]
fn vm_list_and_rp_list_through_the_service_name_the_same_objects_as_in_process() {
    // Arrange: what the in-process CLI reports before the service holds the host.
    let (_temp, host, _) = host_with_fixture("listed", "1", "32M", "36");
    let (_, local_vms, _) = refpoint(&host, &["vm", "list"]);
    let (_, local_rps, _) = refpoint(&host, &["rp", "list"]);
    let names = |v: &Value, key: &str| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x[key].as_str().expect(key).to_ascii_uppercase())
            .collect();
        n.sort();
        n
    };
    let service = Service::start(&host, false);

    // Act
    let (c1, remote_vms, e1) = refpoint(&host, &["vm", "list"]);
    let (c2, remote_rps, e2) = refpoint(&host, &["rp", "list", "listed"]);

    // Assert
    assert_eq!((c1, c2), (0, 0), "{e1} {e2}");
    assert_eq!(
        names(&remote_vms, "ElementName"),
        names(&local_vms, "ElementName")
    );
    assert_eq!(
        names(&remote_rps, "InstanceID"),
        names(&local_rps, "InstanceID")
    );
    drop(service);
}

#[test]
fn snapshot_and_rp_create_through_the_service_return_the_created_objects() {
    let (_temp, host, _) = host_with_fixture("created", "1", "32M", "37");
    let service = Service::start(&host, false);

    let (c1, snap, e1) = refpoint(&host, &["snapshot", "created"]);
    let (c2, rp, e2) = refpoint(&host, &["rp", "create", "created"]);
    let (_, rps, _) = refpoint(&host, &["rp", "list", "created"]);

    assert_eq!(c1, 0, "{snap} {e1}");
    assert_eq!(c2, 0, "{rp} {e2}");
    assert!(
        snap["ResultingSnapshot"]["InstanceID"].is_string(),
        "{snap}"
    );
    let created = rp["ResultingReferencePoint"]["InstanceID"]
        .as_str()
        .expect("rp id");
    assert!(
        rps.as_array()
            .expect("list")
            .iter()
            .any(|r| r["InstanceID"] == created),
        "{created} not listed in {rps}"
    );
    drop(service);
}

#[test]
fn socket_is_owner_only_and_removed_with_exit_0_on_sigterm() {
    let (_temp, host, _) = host_with_fixture("sock", "1", "32M", "38");
    let service = Service::start(&host, false);
    let socket = service.socket.clone();

    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    let stopped = service.terminate();

    assert_eq!(socket, host.join("refpoint.sock"));
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        stopped.status.success(),
        "exit {:?}: {}",
        stopped.status,
        stopped.stderr
    );
    assert!(!socket.exists(), "socket left behind");
    let (code, _, err) = refpoint(&host, &["vm", "list"]);
    assert_eq!(code, 0, "host released after shutdown: {err}");
}

#[test]
fn tcp_requires_the_configured_basic_credentials() {
    let (_temp, host, _) = host_with_fixture("tcp", "1", "32M", "39");
    let service = Service::start(&host, true);
    let addr = service.listen.clone().expect("listen address");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let connect = || std::net::TcpStream::connect(&addr).expect("connect");

    let (none, none_headers, _) = raw_http(connect(), &cim_post(ENUM_NAMES_BODY, None));
    let (wrong, _, _) = raw_http(
        connect(),
        &cim_post(ENUM_NAMES_BODY, Some(&basic(USER, "wrong"))),
    );
    let (right, right_headers, body) = raw_http(
        connect(),
        &cim_post(ENUM_NAMES_BODY, Some(&basic(USER, PASSWORD))),
    );

    assert_eq!(none, 401);
    assert!(header(&none_headers, "www-authenticate").is_some_and(|h| h.starts_with("Basic")));
    assert_eq!(wrong, 401);
    assert_eq!(right, 200, "{body}");
    assert_eq!(
        header(&right_headers, "cimoperation"),
        Some("MethodResponse")
    );
    assert!(
        body.contains(r#"<INSTANCENAME CLASSNAME="Msvm_ComputerSystem">"#),
        "{body}"
    );
    drop(service);
}

#[test]
fn malformed_requests_get_dsp0200_status_and_cimerror_headers() {
    let (_temp, host, _) = host_with_fixture("malformed", "1", "32M", "40");
    let service = Service::start(&host, false);
    let connect = || std::os::unix::net::UnixStream::connect(&service.socket).expect("connect");
    let truncated = &ENUM_NAMES_BODY[..ENUM_NAMES_BODY.len() - 20];
    let wrong_method = cim_post(ENUM_NAMES_BODY, None).replace(
        "CIMMethod: EnumerateInstanceNames",
        "CIMMethod: GetInstance",
    );
    let not_methodcall =
        cim_post(ENUM_NAMES_BODY, None).replace("CIMOperation: MethodCall", "CIMOperation: Bogus");
    let other_namespace = ENUM_NAMES_BODY.replace(
        r#"<NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/>"#,
        r#"<NAMESPACE NAME="cimv2"/>"#,
    );

    let cases = [
        (
            cim_post(truncated, None),
            400,
            Some("request-not-well-formed"),
        ),
        (wrong_method, 400, Some("header-mismatch")),
        (not_methodcall, 400, Some("unsupported-operation")),
        (
            "GET /cimom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
            405,
            None,
        ),
    ];
    for (request, status, cim_error) in cases {
        let (got, headers, body) = raw_http(connect(), &request);
        assert_eq!(got, status, "{request}: {body}");
        assert_eq!(header(&headers, "cimerror"), cim_error, "{request}");
    }
    let (got, _, body) = raw_http(
        connect(),
        &cim_post(&other_namespace, None).replace("root/virtualization/v2", "root/cimv2"),
    );
    assert_eq!(got, 200);
    assert!(body.contains(r#"<ERROR CODE="3""#), "{body}");
    drop(service);
}

#[test]
fn sigterm_during_a_running_export_terminates_the_job_and_leaves_no_staging() {
    // Arrange: a VM with enough data that the export is still running when
    // it is suspended right after the call returns.
    let (temp, host, _) = host_with_fixture("base", "1", "32M", "41");
    let (code, big, err) = refpoint(
        &host,
        &[
            "fixture",
            "--name",
            "big",
            "--disks",
            "2",
            "--size",
            "256M",
            "--fill-percent",
            "50",
            "--writes-after",
            "0",
        ],
    );
    assert_eq!(code, 0, "fixture: {err}");
    let rp = big["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    let service = Service::start(&host, false);
    let client = ServiceClient::connect(&host)
        .expect("connect")
        .expect("service");
    let svc = client
        .enumerate_names("Msvm_VirtualSystemReferencePointService")
        .expect("service path")
        .into_iter()
        .next()
        .expect("one service");
    let output = client
        .invoke(
            &svc,
            "ExportReferencePoint",
            &[
                (
                    "ReferencePoint".to_owned(),
                    ParamValue::Reference(refpoint::client::resolve_reference_point_path(rp)),
                ),
                (
                    "ExportDirectory".to_owned(),
                    ParamValue::Value(target.to_string_lossy().into_owned()),
                ),
                (
                    "ExportSettingData".to_owned(),
                    ParamValue::Value(String::new()),
                ),
            ],
        )
        .expect("invoke");
    assert_eq!(output.return_value, 4096, "{output:?}");
    let Some(ParamValue::Reference(job_path)) = output.out("Job").cloned() else {
        panic!("no Job in {output:?}")
    };
    let suspend = client
        .invoke(
            &job_path,
            "RequestStateChange",
            &[(
                "RequestedState".to_owned(),
                ParamValue::Value("3".to_owned()),
            )],
        )
        .expect("suspend");
    assert_eq!(suspend.return_value, 4096, "{suspend:?}");
    let mut state = 0;
    for _ in 0..100 {
        state = job_state(&client.get(&job_path).expect("job"));
        if state == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state, 5, "the export must be Suspended before SIGTERM");
    let job_id = job_path.key("InstanceID").expect("id").to_owned();

    // Act
    let stopped = service.terminate();

    // Assert
    assert!(
        stopped.status.success(),
        "exit {:?}: {}",
        stopped.status,
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("1 job(s) terminated"),
        "{}",
        stopped.stderr
    );
    assert!(!host.join("refpoint.sock").exists(), "socket left behind");
    assert!(
        entries(&target).is_empty(),
        "export or staging left: {:?}",
        entries(&target)
    );
    let (code, jobs, err) = refpoint(&host, &["jobs", "show", &job_id]);
    assert_eq!(code, 0, "jobs show after restart: {err}");
    assert_eq!(jobs["Job"]["JobState"], 8, "job must be Terminated: {jobs}");
}

#[test]
fn wmi_invoke_and_jobs_commands_go_through_the_service() {
    // Arrange
    let (temp, host, fixture) = host_with_fixture("wmi", "1", "64M", "42");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    let service = Service::start(&host, false);
    let rp_path = format!(
        r#"Msvm_VirtualSystemReferencePoint.InstanceID="{}""#,
        rp.replace('\\', "\\\\")
    );

    // Act: the method returns at once (the service runs the job), then the
    // jobs commands follow it through the service.
    let (c1, invoked, e1) = refpoint(
        &host,
        &[
            "wmi",
            "invoke",
            "Msvm_VirtualSystemReferencePointService.ExportReferencePoint",
            "--param",
            &format!("ReferencePoint={rp_path}"),
            "--param",
            &format!("ExportDirectory={}", target.display()),
            "--param",
            "ExportSettingData=",
        ],
    );
    let job: ObjectPath = invoked["Job"].as_str().expect("Job").parse().expect("path");
    let id = job.key("InstanceID").expect("InstanceID").to_owned();
    let (c2, _, e2) = refpoint(&host, &["jobs", "wait", &id]);
    let (c3, shown, e3) = refpoint(&host, &["jobs", "show", &id]);
    let (c4, listed, e4) = refpoint(&host, &["jobs", "list"]);
    let (c5, late, _) = refpoint(&host, &["jobs", "terminate", &id]);

    // Assert
    assert_eq!(c1, 0, "{invoked} {e1}");
    assert_eq!(invoked["ReturnValue"], 4096);
    assert_eq!((c2, c3, c4), (0, 0, 0), "{e2} {e3} {e4}");
    assert_eq!(shown["Job"]["JobState"], 7, "{shown}");
    assert!(
        shown["AffectedElements"]
            .as_array()
            .expect("affected")
            .iter()
            .any(|p| p
                .as_str()
                .is_some_and(|p| p.contains("Msvm_VirtualSystemReferencePoint"))),
        "{shown}"
    );
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .any(|j| j["InstanceID"] == id.as_str()),
        "{listed}"
    );
    assert_eq!(c5, 1, "terminate of a finished job is refused");
    assert_eq!(late["ReturnValue"], 4097, "{late}");
    sha256sum_check(&target.join("wmi"));
    drop(service);
}

#[test]
fn sigint_stops_the_service_like_sigterm() {
    let (_temp, host, _) = host_with_fixture("sigint", "1", "32M", "43");
    let service = Service::start(&host, false);
    let socket = service.socket.clone();

    let stopped = service.signal("-INT");

    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("SIGINT"), "{}", stopped.stderr);
    assert!(!socket.exists());
}

#[test]
fn killed_service_leaves_a_stale_socket_that_clients_and_a_new_service_get_past() {
    // Arrange: SIGKILL gives the service no chance to remove its socket.
    let (_temp, host, _) = host_with_fixture("stale", "1", "32M", "44");
    let mut first = Service::start(&host, false);
    first.kill();
    assert!(
        host.join("refpoint.sock").exists(),
        "SIGKILL leaves the socket"
    );

    // Act
    let (code, vms, err) = refpoint(&host, &["vm", "list"]);
    let second = Service::start(&host, false);
    let (code2, vms2, err2) = refpoint(&host, &["vm", "list"]);

    // Assert: in-process while nobody listens, then through the new service.
    assert_eq!(code, 0, "in-process after a dead service: {err}");
    assert_eq!(code2, 0, "through the new service: {err2}");
    assert_eq!(
        vms.as_array().map(Vec::len),
        vms2.as_array().map(Vec::len),
        "{vms} vs {vms2}"
    );
    let stopped = second.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}
