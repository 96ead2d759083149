#!/usr/bin/env python3
"""A Hyper-V backup client's sequence, run with pywbem (unmodified, from PyPI)
against `refpoint serve` on loopback TCP.

Steps (each asserted; the first failure exits 1 with a message):
  1. wrong password -> pywbem.AuthError (HTTP 401);
  2. EnumerateInstances Msvm_ComputerSystem (the VMs named on the command
     line are there) and Msvm_VirtualSystemReferencePoint (both RPs are there,
     VirtualDiskIdentifiers[i] paired with ResilientChangeTrackingIdentifiers[i]);
     IterEnumerateInstances (pull operations refused, pywbem falls back),
     EnumerateInstanceNames, GetInstance with a PropertyList, CIM_ERR_NOT_FOUND
     and CIM_ERR_INVALID_NAMESPACE as pywbem.CIMError;
  3. ExportReferencePoint(good RP, ExportDirectory, ExportSettingData = a
     hand-built CIM-XML string, as Hyper-V clients pass it) -> 4096 + Job REF;
     poll GetInstance(Job) until JobState is final -> 7 Completed;
  4. follow Msvm_AffectedJobElement from the job with References,
     ReferenceNames, Associators and AssociatorNames -> the exported reference point;
  5. CreateReferencePoint (class-path target) on the good VM -> 0 with ResultingReferencePoint, or
     4096 and the job's Msvm_AffectedJobElement with ElementEffects 5;
  6. ExportReferencePoint(bad RP whose source was destroyed, settings as a
     pywbem CIMInstance) -> 4096; the job ends 10 Exception with ErrorCode
     32768; GetErrorEx -> Errors[] of Msvm_Error CIM-XML naming the file.
Prints a JSON summary on success.
"""

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET

import pywbem

NAMESPACE = "root/virtualization/v2"
FINAL_STATES = (7, 8, 9, 10, 32768)


def fail(message):
    print(f"flow.py: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(cond, message):
    if not cond:
        fail(message)


def connect(url, user, password):
    return pywbem.WBEMConnection(
        url, (user, password), default_namespace=NAMESPACE, timeout=60, no_verification=True
    )


def wait_job(conn, job_path, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while True:
        job = conn.GetInstance(job_path)
        if int(job["JobState"]) in FINAL_STATES:
            return job
        check(time.monotonic() < deadline, f"job {job_path} not finished after {timeout_s} s")
        time.sleep(0.1)


def instance_id(path):
    return path.keybindings["InstanceID"]


def follow_affected(conn, job_path):
    refs = conn.References(job_path, ResultClass="Msvm_AffectedJobElement")
    assocs = conn.Associators(job_path, AssocClass="Msvm_AffectedJobElement")
    check(len(refs) == len(assocs) and refs, f"References {refs} / Associators {assocs} of {job_path}")
    return refs, assocs


def element_of(ref):
    """AffectedElement of a Msvm_AffectedJobElement instance, as a path."""
    value = ref["AffectedElement"]
    if isinstance(value, str):
        return pywbem.CIMInstanceName.from_wbem_uri(value.replace("\\", "/"))
    return value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--good-vm", required=True)
    ap.add_argument("--good-rp", required=True)
    ap.add_argument("--bad-rp", required=True)
    ap.add_argument("--bad-file", required=True, help="name of the destroyed source file")
    ap.add_argument("--export-dir", required=True)
    a = ap.parse_args()

    # 1. Wrong credentials.
    try:
        connect(a.url, a.user, a.password + "x").EnumerateInstanceNames("Msvm_ComputerSystem")
        fail("a wrong password was accepted")
    except pywbem.AuthError:
        pass

    conn = connect(a.url, a.user, a.password)

    # 2. Enumerations.
    vms = conn.EnumerateInstances("Msvm_ComputerSystem")
    good_vm = [vm for vm in vms if vm["ElementName"] == a.good_vm]
    check(len(good_vm) == 1, f"VM {a.good_vm} not enumerated: {[vm['ElementName'] for vm in vms]}")
    good_vm = good_vm[0]
    rps = conn.EnumerateInstances("Msvm_VirtualSystemReferencePoint")
    by_id = {rp["InstanceID"]: rp for rp in rps}
    for wanted in (a.good_rp, a.bad_rp):
        check(wanted in by_id, f"reference point {wanted} not enumerated: {list(by_id)}")
    good = by_id[a.good_rp]
    disks = list(good["VirtualDiskIdentifiers"] or [])
    rcts = list(good["ResilientChangeTrackingIdentifiers"] or [])
    check(disks and len(disks) == len(rcts), f"VirtualDiskIdentifiers {disks} vs RCT IDs {rcts}")
    check(good["VirtualSystemIdentifier"].upper() == good_vm["Name"].upper(), "RP of another VM")
    # pywbem's pull-first iterator falls back on CIM_ERR_NOT_SUPPORTED.
    iterated = list(conn.IterEnumerateInstances("Msvm_ComputerSystem"))
    check(
        sorted(vm["Name"] for vm in iterated) == sorted(vm["Name"] for vm in vms),
        "IterEnumerateInstances differs from EnumerateInstances",
    )
    names = conn.EnumerateInstanceNames("Msvm_VirtualSystemReferencePoint")
    check(len(names) == len(rps), f"{len(names)} names for {len(rps)} reference points")
    narrow = conn.GetInstance(good.path, PropertyList=["InstanceID", "HasAssociatedData"])
    check(
        sorted(narrow.keys()) == ["HasAssociatedData", "InstanceID"],
        f"PropertyList not honoured: {list(narrow.keys())}",
    )
    try:
        conn.GetInstance(pywbem.CIMInstanceName("Msvm_ConcreteJob", {"InstanceID": "no-such-job"}))
        fail("GetInstance of an unknown job succeeded")
    except pywbem.CIMError as e:
        check(e.status_code == pywbem.CIM_ERR_NOT_FOUND, f"unknown job: {e}")
    try:
        conn.EnumerateInstances("Msvm_ComputerSystem", namespace="root/cimv2")
        fail("another namespace was served")
    except pywbem.CIMError as e:
        check(e.status_code == pywbem.CIM_ERR_INVALID_NAMESPACE, f"other namespace: {e}")
    services = conn.EnumerateInstanceNames("Msvm_VirtualSystemReferencePointService")
    check(len(services) == 1, f"reference point services: {services}")
    service = services[0]

    # 3. Export with a hand-built embedded ExportSettingData.
    values = "".join(f"<VALUE>{d}</VALUE>" for d in disks)
    esd = (
        '<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData">'
        '<PROPERTY NAME="BaseReferencePoint" TYPE="string"></PROPERTY>'
        f'<PROPERTY.ARRAY NAME="DisksToExport" TYPE="string"><VALUE.ARRAY>{values}</VALUE.ARRAY></PROPERTY.ARRAY>'
        "</INSTANCE>"
    )
    rv, out = conn.InvokeMethod(
        "ExportReferencePoint",
        service,
        ReferencePoint=good.path,
        ExportDirectory=a.export_dir,
        ExportSettingData=esd,
    )
    check(int(rv) == 4096, f"ExportReferencePoint returned {rv}: {dict(out)}")
    job_path = out["Job"]
    check(isinstance(job_path, pywbem.CIMInstanceName), f"Job is not a REF: {job_path!r}")
    job = wait_job(conn, job_path)
    check(int(job["JobState"]) == 7, f"export job ended {job['JobState']}: {job['ErrorDescription']}")
    check(int(job["PercentComplete"]) == 100, f"PercentComplete {job['PercentComplete']}")

    # 4. Msvm_AffectedJobElement from the job to the reference point.
    refs, assocs = follow_affected(conn, job_path)
    ref_names = conn.ReferenceNames(job_path, ResultClass="Msvm_AffectedJobElement")
    assoc_names = conn.AssociatorNames(job_path, AssocClass="Msvm_AffectedJobElement", Role="AffectingElement")
    check(len(ref_names) == len(refs), f"ReferenceNames {ref_names} vs References {len(refs)}")
    check(
        sorted(str(n) for n in assoc_names) == sorted(str(x.path) for x in assocs),
        f"AssociatorNames {assoc_names} vs Associators {[x.path for x in assocs]}",
    )
    affected_ids = {instance_id(element_of(r)) for r in refs if "InstanceID" in element_of(r).keybindings}
    check(a.good_rp in affected_ids, f"export job does not affect {a.good_rp}: {affected_ids}")
    check(
        any(x.classname == "Msvm_VirtualSystemReferencePoint" and x["InstanceID"] == a.good_rp for x in assocs),
        f"Associators of the job lack the reference point: {[x.path for x in assocs]}",
    )

    # 5. The resulting object of CreateReferencePoint (sync REF or job association).
    # The target is the class name: pywbem sends a LOCALCLASSPATH.
    rv, out = conn.InvokeMethod(
        "CreateReferencePoint",
        "Msvm_VirtualSystemReferencePointService",
        AffectedSystem=good_vm.path,
        ReferencePointSettings="",
        ReferencePointType=pywbem.Uint16(2),
    )
    if int(rv) == 0:
        created = out["ResultingReferencePoint"]
        check(created is not None, "CreateReferencePoint returned 0 without ResultingReferencePoint")
        created_id = instance_id(created)
    else:
        check(int(rv) == 4096, f"CreateReferencePoint returned {rv}: {dict(out)}")
        cjob = wait_job(conn, out["Job"])
        check(int(cjob["JobState"]) == 7, f"CreateReferencePoint job ended {cjob['JobState']}")
        refs, _ = follow_affected(conn, out["Job"])
        made = [element_of(r) for r in refs if 5 in [int(e) for e in (r["ElementEffects"] or [])]]
        check(len(made) == 1, f"no element with ElementEffects 5: {refs}")
        created_id = instance_id(made[0])
    check(
        created_id in {rp["InstanceID"] for rp in conn.EnumerateInstances("Msvm_VirtualSystemReferencePoint")},
        f"created reference point {created_id} not enumerated",
    )

    # 6. A failed job and GetErrorEx.
    settings = pywbem.CIMInstance(
        "Msvm_VirtualSystemReferencePointExportSettingData",
        properties=[pywbem.CIMProperty("DisksToExport", [], type="string", is_array=True)],
    )
    rv, out = conn.InvokeMethod(
        "ExportReferencePoint",
        service,
        ReferencePoint=by_id[a.bad_rp].path,
        ExportDirectory=a.export_dir + "-failed",
        ExportSettingData=settings,
    )
    check(int(rv) == 4096, f"export of the destroyed source returned {rv}: {dict(out)}")
    failed = wait_job(conn, out["Job"])
    check(int(failed["JobState"]) == 10, f"failed job ended in {failed['JobState']}")
    check(int(failed["ErrorCode"]) == 32768, f"ErrorCode {failed['ErrorCode']}")
    rv, eout = conn.InvokeMethod("GetErrorEx", out["Job"])
    check(int(rv) == 0, f"GetErrorEx returned {rv}")
    errors = list(eout["Errors"] or [])
    check(errors, "GetErrorEx returned no Errors")
    messages = []
    for text in errors:
        root = ET.fromstring(text)
        check(root.tag == "INSTANCE" and root.get("CLASSNAME") == "Msvm_Error", f"not a Msvm_Error: {text[:200]}")
        props = {p.get("NAME"): p.findtext("VALUE") for p in root.findall("PROPERTY")}
        check(props.get("CIMStatusCode") is not None, f"Msvm_Error without CIMStatusCode: {props}")
        messages.append(props.get("Message") or "")
    check(any(a.bad_file in m for m in messages), f"no error message names {a.bad_file}: {messages}")

    print(json.dumps({
        "export_job": instance_id(job_path),
        "affected": sorted(affected_ids),
        "created_reference_point": created_id,
        "failed_job": instance_id(out["Job"]),
        "error_messages": messages,
    }))


if __name__ == "__main__":
    main()
