"""The report's Android / ARM block weighs LiteRT against ExecuTorch (bench/report/android.py, families.py, decide.py).

Handmade rows through the report's own source joiner (tests.test_decide's helpers): on x86 both runtimes are
labelled proxies; a merged phone report ranks by the phone's rows.
"""

from __future__ import annotations

from tests.test_decide import X86, artifact, bench_row, decide, family, parity_row, rows_for

IDS = ("litert-fp32", "litert-fp16", "litert-int8", "executorch-fp32", "executorch-int8")
ARM = {**X86, "hostname": "pixel", "cpu": {"arch": "aarch64", "model": "Cortex-A76"}, "key": "p"}


def android_rows(times: dict[str, float], env: dict, machine: str = ""):
    artifacts = [artifact(aid, {"fp32": 87, "fp16": 44, "int8": 23}[aid.rsplit("-", 1)[1]]) for aid in IDS]
    parity = [parity_row(aid, f"{aid.split('-')[0]}:cpu", cosine=0.9996) for aid in IDS]
    bench = [bench_row(aid, f"{aid.split('-')[0]}:cpu", ms) for aid, ms in times.items()]
    return rows_for(artifacts, parity, bench, env=env, machine=machine)


X86_TIMES = {"litert-fp32": 700.0, "litert-fp16": 640.0, "litert-int8": 340.0, "executorch-fp32": 690.0, "executorch-int8": 480.0}


def test_x86_proxies_weigh_litert_against_executorch_and_name_the_phone_delegates():
    android = family(decide(android_rows(X86_TIMES, X86), {"": X86}), "android")
    assert android.pick.artifact == "litert-int8" and android.pick.role == "proxy"
    assert "LiteRT vs ExecuTorch (on this host's XNNPACK build, a labelled x86 proxy" in android.sentence
    assert "LiteRT litert-int8 340" in android.sentence and "ExecuTorch executorch-int8 480" in android.sentence
    assert "LiteRT is picked: 1.41x faster" in android.sentence
    whats = " | ".join(android.not_verified)
    assert "try litert-fp16 first, LiteRT's GPU accelerator computes in fp16" in whats
    assert "try litert-int8 first, phone NPUs are built for int8" in whats
    assert "litert:gpu,litert:npu" in android.verify_command and "--merge" in android.merge_command


def test_a_merged_phone_report_ranks_by_the_phones_rows():
    phone = {"litert-fp32": 400.0, "litert-fp16": 390.0, "litert-int8": 260.0, "executorch-fp32": 380.0, "executorch-int8": 180.0}
    rows = android_rows(X86_TIMES, X86, "here") + android_rows(phone, ARM, "pixel")
    android = family(decide(rows, {"here": X86, "pixel": ARM}), "android")
    assert android.pick.artifact == "executorch-int8" and android.basis == "latency measured on the device"
    assert "(on the ARM device)" in android.sentence and "ExecuTorch is picked: 1.44x faster" in android.sentence
    assert not any("ARM device" in what for what in android.not_verified)
