"""vitship profile on the tiny ViT: each runtime's own profiler read, every op placed in its part, the report's section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vitship.bench.latency.roofline import model_gflop
from vitship.bench.profile import parts
from vitship.bench.profile.attribute import attribute
from vitship.bench.profile.ops import Kind
from vitship.bench.profile.parts import module_plan, part_gflop
from vitship.bench.profile.results import MS_DIGITS, PROFILE_SCHEMA_VERSION, ProfileReport, part_times
from vitship.bench.profile.worker import PROFILERS
from vitship.bench.rows import ResultsFileError
from vitship.exporters.pipeline import model_dir_for
from vitship.models import ModelSpec, tiny_spec
from vitship.models.export_form import TIMM_FORM, ExportForm
from vitship.models.status import Status

# target -> the tiny artifact its profiler is fed (torch profiles the PyTorch model itself)
ARTIFACTS = {"onnxruntime:cpu": ("onnx", "fp32"), "openvino:CPU": ("openvino", "fp32"),
             "executorch:cpu": ("executorch", "fp32"), "litert:cpu": ("litert", "fp32"), "torch:cpu": None}
PEAKS = {"device": "cpu", "fp32": {"precision": "fp32", "gflops": 50.0, "source": "test", "shape": [1, 1, 1], "threads": 1},
         "int8": {"precision": "int8", "gflops": 200.0, "source": "test", "shape": [1, 1, 1], "threads": 1}}


@pytest.fixture(scope="module")
def model_dir(tiny_exports, tiny_loaded) -> Path:
    return model_dir_for(tiny_exports([request for request in ARTIFACTS.values() if request]), tiny_loaded)


@pytest.fixture(scope="module")
def plan(tiny_loaded, tiny_photos):
    return module_plan(tiny_loaded.model, tiny_photos[0])


@pytest.fixture(scope="module")
def profiled(model_dir, tiny_loaded, tiny_photos):
    """``profiled(target)``: that runtime's own profile of its tiny artifact (run once per module), 1 thread."""
    import importlib

    from vitship.bench.profile.worker import artifact_file

    artifacts, done = _artifacts(model_dir), {}

    def run(target: str):
        if target not in done:
            profiler, batch = importlib.import_module(PROFILERS[target]), tiny_photos[:1].copy()
            if ARTIFACTS[target] is None:
                done[target] = profiler.profile(tiny_loaded.model, batch, 1, 3, 1)
            else:
                artifact = artifacts["-".join(ARTIFACTS[target])]
                done[target] = profiler.profile(artifact_file(artifact, model_dir), batch, 1, 3, 1)
        return done[target]

    return run


def _artifacts(model_dir) -> dict:
    from vitship.exporters.base import manifest_artifacts

    return {a.id: a for a in manifest_artifacts(model_dir)}


@pytest.fixture(scope="module")
def forms(model_dir) -> dict[str, ExportForm]:
    """target -> the export form of the artifact its profiler is fed (torch eager: timm's)."""
    artifacts = _artifacts(model_dir)
    return {target: artifacts["-".join(request)].details.form() if request else TIMM_FORM for target, request in ARTIFACTS.items()}


def test_every_profiler_has_a_test():
    assert set(ARTIFACTS) == set(PROFILERS)


@pytest.mark.parametrize("form", [TIMM_FORM, ExportForm(class_token_tail=True), ExportForm("qkv-op", class_token_tail=True),
                                  ExportForm("qkv-op")], ids=lambda f: f"{f.attention}-{'tail' if f.class_token_tail else 'all'}")
def test_the_parts_add_up_to_the_rooflines_work(form):
    """In every export form: the work of the artifact's parts is what the roofline counts for it."""
    for spec in (tiny_spec(), ModelSpec()):
        flops = part_gflop(spec, form)
        names = (parts.PATCH, *parts.LINEAR_PARTS, parts.QK, parts.AV, parts.REST)
        counted = sum(flops[name] for name in names) + (flops[parts.QKV_ATTENTION] if form.attention == "qkv-op" else 0)
        assert counted == pytest.approx(model_gflop(spec, class_token_tail=form.class_token_tail)["total"], rel=1e-12)
        if form.attention != "qkv-op":
            assert flops[parts.QKV_ATTENTION] == pytest.approx(flops[parts.QKV] + flops[parts.QK] + flops[parts.AV])
        else:  # a tail's last block keeps its qkv apart from the one-kernel attention of the other blocks
            assert (flops[parts.QKV] > 0) == form.class_token_tail and flops[parts.QKV_ATTENTION] > flops[parts.QKV]


def test_the_structure_twins_plan_is_the_models_own(plan):
    from vitship.bench.profile.parts import model_plan

    assert model_plan(tiny_spec()) == plan


@pytest.mark.parametrize("form", [ExportForm("explicit", "decomposed", True), ExportForm("qkv-op", class_token_tail=True)],
                         ids=["executorch", "onnx"])
def test_one_plan_serves_every_export_form(form, plan, tiny_loaded, tiny_photos):
    """A form calls timm's own Linears in timm's order (the qkv-op form's kernel takes its block's qkv), and its
    LayerNorms where timm's are: the position rules place its ops with timm's plan."""
    formed = module_plan(tiny_loaded.model.with_form(form), tiny_photos[0])
    last = f"blocks.{tiny_loaded.spec.depth - 1}."
    folded = {c.module for c in plan.linears() if c.part == parts.QKV and not c.module.startswith(last)} if form.attention == "qkv-op" else set()
    assert [c.module for c in formed.linears()] == [c.module for c in plan.linears() if c.module not in folded]
    norms = [c.module for c in plan.calls if c.part == parts.LAYERNORM]
    assert [c.module for c in formed.calls if c.part == parts.LAYERNORM] == norms
    if form.layer_norm == "decomposed":  # rule 5 finds a decomposed LayerNorm by the Linear it feeds: the same Linears
        assert formed.after_norm() == plan.after_norm()


def test_the_plan_names_each_linear_by_its_place(plan, tiny_loaded):
    depth = tiny_loaded.spec.depth
    assert [c.part for c in plan.linears()] == [parts.QKV, parts.PROJ, parts.FC1, parts.FC2] * depth + [parts.REST]
    assert plan.after_norm() == {f"blocks.{b}.{n}" for b in range(depth) for n in ("attn.qkv", "mlp.fc1")} | {"head"}
    assert plan.module_part("blocks.1.attn.proj") == (parts.PROJ, "Linear")
    assert plan.module_part("blocks.1.attn") == ("", "Attention")  # a container: the op's kind decides
    assert plan.module_part("no.such.module") == (None, "")


@pytest.mark.parametrize("target", list(ARTIFACTS))
def test_each_profiler_places_every_op(target, profiled, plan, forms, tiny_loaded):
    """Each artifact in its shipped export form (onnx: qkv-op with the class-token tail; executorch: explicit attention,
    decomposed LayerNorm, one delegate call), placed with timm's one plan."""
    raw, form = profiled(target), forms[target]
    assert raw.ops and raw.wall_ms > 0 and raw.calls == 3
    assert attribute(raw.ops, plan) == []
    by_part = {name: [op for op in raw.ops if op.part == name] for name in parts.PART_ORDER}
    depth = tiny_loaded.spec.depth
    # blocks whose qkv projection and attention are one onnxruntime Attention kernel (a tail's last block is not)
    one_kernel = (depth - form.class_token_tail) if form.attention == "qkv-op" else 0
    assert not by_part[parts.UNATTRIBUTED], [(op.name, op.kind) for op in by_part[parts.UNATTRIBUTED]]
    assert [op.kind for op in by_part[parts.QKV_ATTENTION]] == [Kind.ATTENTION_QKV] * one_kernel
    for name in parts.LINEAR_PARTS:  # one linear kernel per block, matched by module path or by position
        expected = depth - one_kernel if name == parts.QKV else depth
        assert [op.kind for op in by_part[name]].count(Kind.LINEAR) == expected, (name, by_part[name])
    assert [op.kind for op in by_part[parts.PATCH]].count(Kind.CONV) == 1
    assert by_part[parts.LAYERNORM]
    fused = [op for op in by_part[parts.ATTENTION] if op.kind == Kind.ATTENTION]
    if fused:  # OpenVINO's attention Subgraph, torch's scaled_dot_product_attention
        assert len(fused) == depth
    else:
        assert len(by_part[parts.QK]) == len(by_part[parts.AV]) == len(by_part[parts.SOFTMAX]) == depth - one_kernel
    found, _ = part_times(raw, part_gflop(tiny_loaded.spec, form), 1, 50.0, raw.wall_ms)
    rounding = len(found) * 0.5 * 10.0 ** -MS_DIGITS  # each part's ms is rounded; the tiny model's call is ~0.1 ms
    assert sum(p.ms for p in found) == pytest.approx(max(raw.wall_ms, sum(op.ms for op in raw.ops)), rel=1e-9, abs=rounding)
    assert found[-1].part == parts.OUTSIDE


def test_executorch_keeps_its_portable_ops_apart(profiled, plan, tiny_dynamic_executorch, tiny_photos):
    """The shipped batch-1 program runs every op inside XNNPACK; a dynamic-batch one leaves its batch reshapes outside."""
    from vitship.bench.profile import et_profiler
    from vitship.bench.profile.worker import artifact_file

    raw = profiled("executorch:cpu")
    attribute(raw.ops, plan)
    assert raw.ops and not [op for op in raw.ops if op.outside]
    model_dir, artifact = tiny_dynamic_executorch
    raw = et_profiler.profile(artifact_file(artifact, model_dir), tiny_photos[:1].copy(), 1, 3, 1)
    attribute(raw.ops, plan)
    outside = [op for op in raw.ops if op.outside]
    assert outside and all(op.name.startswith("native_call_") for op in outside)
    assert all(not op.outside for op in raw.ops if op.kind == Kind.LINEAR)  # the linears run inside XNNPACK


def test_linears_that_do_not_match_the_model_are_unattributed_not_guessed(profiled, plan):
    raw = profiled("litert:cpu")
    ops = [op for op in raw.ops]
    ops.remove(next(op for op in ops if op.kind == Kind.LINEAR))  # one fewer linear op than nn.Linear calls
    for op in ops:
        op.part = ""
    notes = attribute(ops, plan)
    assert notes and "cannot be matched" in notes[0]
    assert {op.part for op in ops if op.kind == Kind.LINEAR} == {parts.UNATTRIBUTED}
    assert parts.QKV not in {op.part for op in ops}


@pytest.fixture(scope="module")
def profile_run(model_dir, tmp_path_factory):
    """`vitship profile` on two targets of the tiny model (peaks fixed: measuring them takes seconds)."""
    root = tmp_path_factory.mktemp("profile-run")
    shutil.copytree(model_dir, root / model_dir.name)
    return root


def test_cli_profiles_each_row_in_a_worker_and_the_report_shows_it(profile_run, vitship_main, monkeypatch, tmp_path):
    from vitship.bench.latency import roofline
    from vitship.bench.report.document import read_report

    monkeypatch.setattr(roofline, "measure_peaks", lambda spec, threads: PEAKS)
    code, out, err = vitship_main("profile", "--artifacts", str(profile_run), "--arch", "tiny", "--target",
                                  "onnxruntime:cpu,litert:cpu", "--artifact", "onnx-fp32,litert-fp32",
                                  "--threads", "1", "--calls", "2", "--warmup", "1")
    assert code == 0, out + err
    model = profile_run / tiny_spec().name
    report = ProfileReport.load(model / "bench" / "profile.json")
    rows = {row.artifact: row for row in report.rows}
    assert set(rows) == {"onnx-fp32", "litert-fp32"} and all(row.status is Status.OK for row in rows.values())
    onnx = rows["onnx-fp32"]
    assert onnx.worker["exit_code"] == 0 and onnx.peak_precision == "fp32" and onnx.peak_gflops == 50.0
    onnx_form = _artifacts(model).get("onnx-fp32").details.form()  # qkv-op with the tail: the last block's qkv alone
    assert onnx.part(parts.QKV).gflop == pytest.approx(part_gflop(tiny_spec(), onnx_form)[parts.QKV], rel=1e-3)
    assert onnx.part(parts.QKV_ATTENTION).gflop == pytest.approx(part_gflop(tiny_spec(), onnx_form)[parts.QKV_ATTENTION], rel=1e-3)
    for part in onnx.parts:  # a rate only where the ops are long enough for the profiler's microsecond clock
        assert part.percent_of_peak is None or part.percent_of_peak == pytest.approx(100 * part.gflops / 50.0, abs=0.25)
    assert (model / "bench" / "profile_onnx-fp32_onnxruntime-cpu.png").is_file()
    assert (model / "bench" / "profile_overview.png").is_file()
    assert "attention q·k" in out and "onnx-fp32 on onnxruntime:cpu" in out

    code, out, err = vitship_main("report", "--artifacts", str(profile_run), "--arch", "tiny", "--reports", str(tmp_path))
    assert code == 0, out + err
    folder = Path(out.strip().splitlines()[-1])
    markdown, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()
    assert "## Where the time goes" in markdown and "| attention softmax |" in markdown
    assert "![profile_litert-fp32_litert-cpu.png](profile_litert-fp32_litert-cpu.png)" in markdown
    assert "![profile_overview.png](profile_overview.png)" in markdown  # the summary's plot: every row's shares
    assert "Where the time goes" in page and page.count('class="profile"') == 3 and "data:image/png;base64," in page
    document = read_report(folder)
    assert [row.status for row in document.profile.rows] == [Status.OK, Status.OK] and not document.profile.rows[0].ops

    code, out, err = vitship_main("report", "--merge", str(folder), str(folder), "--reports", str(tmp_path / "merged"))
    assert code == 0, out + err
    merged = Path(out.strip().splitlines()[-1])
    labels = list(read_report(merged).profiles)
    assert len(labels) == 2
    text = (merged / "report.md").read_text()
    assert all(f"**{label}: onnx-fp32 on onnxruntime:cpu" in text for label in labels)


def test_an_unknown_target_is_refused_before_any_work(profile_run, vitship_main):
    code, out, err = vitship_main("profile", "--artifacts", str(profile_run), "--arch", "tiny", "--target", "litert:cpux")
    assert code == 2 and "litert:cpux" in err and "litert:cpu" in err


def test_a_profile_of_another_schema_is_refused(tmp_path):
    data = ProfileReport("tiny-vit", {}, {}, {}).to_dict()
    data["schema_version"] = PROFILE_SCHEMA_VERSION + 1
    (tmp_path / "profile.json").write_text(json.dumps(data))
    with pytest.raises(ResultsFileError, match="rerun vitship profile"):
        ProfileReport.load(tmp_path / "profile.json")
