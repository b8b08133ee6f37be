"""The shipping decision per device family: every rule that chooses lives here (docs/DESIGN.md "Device families").

Rules, in order:
1. A candidate is an artifact of one of the family's formats on a target of that family (families.py).
2. It must pass parity (its own row, else a passing row of the same artifact in the family) and, with trained
   weights and an eval run, lose at most ``accuracy_threshold_points`` of accuracy.
3. An int8 that is not faster than its fp32 (same format, target, variant, machine and batch) is never recommended.
4. iOS: an fp32 CoreML program is never the pick (the Neural Engine computes in fp16), nor a CoreML artifact
   recorded as not eligible for the Neural Engine.
5. Latency ranks only rows measured on the family's hardware ('device' role); a 'proxy' row (XNNPACK on an x86
   host for ARM) ranks only while no device row exists; a reference executor's timing never ranks.
6. iOS without rows from an Apple device ranks by what this machine can know: Neural Engine eligibility,
   then fp16 before int8 (int8 weights mainly save size), image input first, then size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vitship.bench.report import android, input_form, phrases
from vitship.bench.report.cells import (
    PASSING,
    AppleDetails,
    Avoid,
    FamilyDecision,
    LatencyCell,
    NeuralEngine,
    ParityCell,
    ReportRow,
)
from vitship.bench.report.families import FAMILIES, MERGE_COMMAND, Family, Role, is_reference, roles
from vitship.bench.report.host import Host
from vitship.models.status import Status

_PRECISION_ORDER = {"fp16": 0, "int8": 1, "bf16": 2, "fp32": 3}
_ENGINE_ORDER = {NeuralEngine.ELIGIBLE: 0, NeuralEngine.NOT_RECORDED: 1, NeuralEngine.NOT_ELIGIBLE: 2}
_UNTESTED = ("parity not run", "parity unavailable", "accuracy not evaluated")  # not 'to avoid', only not verified


@dataclass(frozen=True)
class DecisionOptions:
    batch: int = 1  # the batch the latency is read at
    accuracy_threshold_points: float = 0.5  # largest accepted accuracy drop against the reference
    judge_accuracy: bool = False  # trained weights and an eval run


@dataclass
class Candidate:
    """One report row seen from one family."""

    row: ReportRow
    role: Role
    host: Host
    batch: int

    @property
    def artifact(self) -> str:
        return self.row.artifact

    @property
    def target(self) -> str:
        return self.row.target

    @property
    def variant(self) -> str:
        return self.row.variant

    @property
    def format(self) -> str:
        return self.row.format

    @property
    def precision(self) -> str:
        return self.row.precision

    @property
    def size_bytes(self) -> int | None:
        return self.row.size_bytes

    @property
    def machine(self) -> str:
        return self.row.machine

    @property
    def cell(self) -> LatencyCell:
        return self.row.latency_at(self.batch) or LatencyCell(self.batch)

    @property
    def p50(self) -> float | None:
        return self.row.p50(self.batch)

    @property
    def apple(self) -> AppleDetails:
        return self.row.apple or AppleDetails()

    @property
    def parity(self) -> ParityCell:
        return self.row.parity

    @property
    def ranks(self) -> bool:
        return self.p50 is not None and self.role in (Role.DEVICE, Role.PROXY) and not is_reference(self.target)


def candidates(rows: list[ReportRow], family: Family, hosts: dict[str, Host], batch: int) -> list[Candidate]:
    found = []
    for row in rows:  # image-input rows time the preprocessing too: input_form weighs them, they never rank here
        if row.format not in family.formats or not row.target or input_form.is_frame(row):
            continue
        host = hosts.get(row.machine) or Host()
        role = roles(row.target, host.kind).get(family.slug)
        if role:
            found.append(Candidate(row, role, host, batch))
    return found


def _parity(candidate: Candidate, family_rows: list[Candidate]) -> ParityCell:
    """The candidate's own parity cell if it ran; else a passing cell of the same artifact in this family."""
    own = candidate.parity
    if own.ran:
        return dataclasses.replace(own, target=candidate.target)
    other = next((c for c in family_rows if c.artifact == candidate.artifact and c.parity.status is Status.PASS), None)
    return dataclasses.replace(other.parity, target=other.target) if other else dataclasses.replace(own, target=candidate.target)


def _fp32_sibling(candidate: Candidate, family_rows: list[Candidate]) -> Candidate | None:
    return next((c for c in family_rows if c.format == candidate.format and c.precision == "fp32" and c.ranks
                 and (c.target, c.variant, c.machine) == (candidate.target, candidate.variant, candidate.machine)), None)


def exclusion(candidate: Candidate, family: Family, family_rows: list[Candidate], options: DecisionOptions) -> str | None:
    """Why ``candidate`` may never be this family's pick (None: it may)."""
    parity = _parity(candidate, family_rows)
    if parity.status not in PASSING:
        detail = f": {parity.reason}" if parity.reason else ""
        return f"parity {parity.status} on {parity.target}{detail}"
    delta = candidate.row.accuracy.delta_points
    if options.judge_accuracy and (delta is None or delta < -options.accuracy_threshold_points):
        return ("accuracy not evaluated" if delta is None else
                f"loses {-delta:.2f} accuracy points (more than {options.accuracy_threshold_points:g})")
    if candidate.precision == "int8" and candidate.ranks:
        fp32 = _fp32_sibling(candidate, family_rows)
        if fp32 is not None and candidate.p50 >= fp32.p50:
            return (f"int8 not faster than its fp32 on {candidate.target}: {phrases.ms(candidate.p50)} vs "
                    f"{phrases.ms(fp32.p50)} ({fp32.artifact})")
    if family.slug == "ios" and candidate.format == "coreml":
        if candidate.precision == "fp32":
            return "fp32 ML Program: never runs on the Neural Engine (it computes in fp16); keep it as the exact reference"
        if candidate.apple.neural_engine is NeuralEngine.NOT_ELIGIBLE:
            return f"not eligible for the Neural Engine: {candidate.apple.neural_engine_reason or 'see the manifest'}"
    return None


def _ios_static_key(candidate: Candidate) -> tuple:
    """iOS without Apple-device rows: Neural Engine eligible first, fp16 before int8, image input, then size."""
    apple = candidate.apple
    return (_ENGINE_ORDER[apple.neural_engine], _PRECISION_ORDER.get(candidate.precision, 9), apple.input != "image",
            candidate.size_bytes or float("inf"), candidate.artifact, candidate.parity.status is not Status.PASS)


def rank(family: Family, family_rows: list[Candidate], allowed: list[Candidate]) -> tuple[list[Candidate], str]:
    """The allowed candidates, best first, and the basis of the order."""
    device = [c for c in allowed if c.ranks and c.role is Role.DEVICE]
    proxy = [c for c in allowed if c.ranks and c.role is Role.PROXY]
    timed = device or proxy
    if timed:
        basis = "latency measured on the device" if device else "latency of the same kernels on this host (a proxy)"
        return sorted(timed, key=lambda c: (c.p50, c.artifact)), basis
    if family.slug == "ios":
        return sorted(allowed, key=_ios_static_key), ("parity, Neural Engine eligibility, size and minimum iOS version "
                                                      "(no rows from an Apple device)")
    return [], "nothing of this family ran on this machine"


def _unique_artifacts(ordered: list[Candidate]) -> list[Candidate]:
    seen, unique = set(), []
    for candidate in ordered:
        if candidate.artifact not in seen:
            seen.add(candidate.artifact)
            unique.append(candidate)
    return unique


def decide_family(family: Family, rows: list[ReportRow], hosts: dict[str, Host], options: DecisionOptions) -> FamilyDecision:
    family_rows = candidates(rows, family, hosts, options.batch)
    reasons = {id(c): exclusion(c, family, family_rows, options) for c in family_rows}
    allowed = [c for c in family_rows if reasons[id(c)] is None]
    ordered, basis = rank(family, family_rows, allowed)
    best = _unique_artifacts(ordered)
    decision = FamilyDecision(family.slug, family.title, basis)
    if best:
        decision.pick = phrases.summary(best[0], _parity(best[0], family_rows), options.judge_accuracy)
        decision.sentence = phrases.pick_sentence(best[0], decision.pick, basis)
    if len(best) > 1:
        decision.runner_up = phrases.summary(best[1], _parity(best[1], family_rows), options.judge_accuracy)
        decision.runner_up_sentence = phrases.runner_up_sentence(best[1], decision.runner_up, best[0])
    if not best:
        decision.sentence = phrases.no_pick_sentence(family, family_rows)
    if family.slug == "android" and ordered:  # the two runtimes Android apps ship, weighed side by side
        decision.sentence += " " + android.weigh_runtimes(ordered, ordered[0].role is Role.DEVICE)
    decision.input_form = input_form.sentence(family, rows, best[0] if best else None, options.batch)
    decision.avoid = _avoid(family_rows, reasons)
    decision.not_verified = not_verified(family, family_rows, bool(ordered and ordered[0].role is Role.DEVICE))
    if decision.not_verified:
        decision.verify_command, decision.merge_command = family.verify, MERGE_COMMAND
    return decision


def _avoid(family_rows: list[Candidate], reasons: dict[int, str | None]) -> list[Avoid]:
    """One entry per artifact with a real reason (untested rows are not 'to avoid', only not verified)."""
    out: dict[str, Avoid] = {}
    ran_first = sorted(family_rows, key=lambda c: (not c.parity.ran, c.p50 is None))
    for candidate in ran_first:
        reason = reasons[id(candidate)]
        if reason and not reason.startswith(_UNTESTED):
            out.setdefault(candidate.artifact, Avoid(candidate.artifact, candidate.target, reason))
    return list(out.values())


def not_verified(family: Family, family_rows: list[Candidate], device_ranked: bool) -> list[str]:
    """What this machine could not verify for the family (the family's verify command checks it on the device)."""
    items = []
    first_try = {t: _unavailable_reason(family_rows, t) for t in family.first_try} if not device_ranked else {}
    if not device_ranked and family.slug in ("ios", "android"):
        proxy_timed = any(c.role is Role.PROXY and c.p50 for c in family_rows)
        proxy = " (the XNNPACK timings here ran on this x86 host)" if proxy_timed else ""
        items.append("latency on an Apple device (the reference executor's time is not one)" if family.slug == "ios"
                     else f"latency on an ARM device{proxy}")
    items += [f"{target} ({reason}): try {family.first_try[target][0]} first, {family.first_try[target][1]}"
              for target, reason in first_try.items() if reason is not None
              and (family.slug not in ("ios", "android") or target in ("litert:gpu", "litert:npu"))]
    if family.slug == "intel-cpu" and device_ranked:
        models = {str(c.host.cpu.model or "") for c in family_rows if c.p50}
        if models and not any("intel" in m.lower() for m in models):
            items.append(f"an Intel CPU itself: these rows ran on {', '.join(sorted(models))}")
    if any(c.p50 is not None or c.parity.ran for c in family_rows):
        never_ran = _artifacts_that_never_ran(family_rows)
        items += [f"{artifact}: could not run here ({reason})" for artifact, reason in never_ran.items()]
    return items


def _unavailable_reason(family_rows: list[Candidate], target: str) -> str | None:
    mine = [c for c in family_rows if c.target.lower() == target.lower()]
    if any(c.p50 is not None for c in mine):
        return None
    reasons = [c.parity.reason for c in mine if c.parity.status is Status.UNAVAILABLE]
    reasons += [cell.reason for c in mine for cell in c.row.latency if cell.status is Status.UNAVAILABLE]
    return next((r for r in reasons if r), "not available on this machine")


def _artifacts_that_never_ran(family_rows: list[Candidate]) -> dict[str, str]:
    """Artifacts whose every row here is unavailable (e.g. a CoreML-delegated .pte on Linux), with the reason."""
    by_artifact: dict[str, list[Candidate]] = {}
    for candidate in family_rows:
        by_artifact.setdefault(candidate.artifact, []).append(candidate)
    out = {}
    for artifact, mine in by_artifact.items():
        if {c.parity.status for c in mine} == {Status.UNAVAILABLE} and not any(c.p50 for c in mine):
            out[artifact] = next((c.parity.reason for c in mine if c.parity.reason), str(Status.UNAVAILABLE))
    return out


def decide(rows: list[ReportRow], hosts: dict[str, Host], options: DecisionOptions = DecisionOptions()) -> list[FamilyDecision]:
    """One decision per device family (FAMILIES order).

    Args:
        rows: report rows (sources.build_rows); in a merged report each carries its ``machine`` label.
        hosts: machine label -> that machine ("" for a single-machine report).
    """
    return [decide_family(family, rows, hosts, options) for family in FAMILIES]


def target_picks(rows: list[ReportRow], environment: dict | None, options: DecisionOptions = DecisionOptions()) -> dict[str, str]:
    """target -> the artifact these rules would ship on it (vitship predict's default), by the families' rules.

    A target that some family ranks by latency takes its fastest allowed artifact; one that no family ranks
    (coreml:reference) takes the iOS order; a target with no allowed artifact has no pick.
    """
    timed: dict[str, list[Candidate]] = {}
    static: dict[str, list[Candidate]] = {}
    for family in FAMILIES:
        family_rows = candidates(rows, family, {"": Host.of(environment)}, options.batch)
        for candidate in family_rows:
            if exclusion(candidate, family, family_rows, options) is not None:
                continue
            if candidate.ranks:
                timed.setdefault(candidate.target, []).append(candidate)
            elif family.slug == "ios":
                static.setdefault(candidate.target, []).append(candidate)
    picks = {target: min(mine, key=lambda c: (c.p50, c.artifact)).artifact for target, mine in timed.items()}
    picks.update({target: min(mine, key=_ios_static_key).artifact for target, mine in static.items() if target not in picks})
    return picks


__all__ = ["Candidate", "DecisionOptions", "FamilyDecision", "decide", "decide_family", "exclusion", "target_picks"]
