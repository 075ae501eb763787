"""Every bad workflow is refused with the field named, before anything is stored."""

from __future__ import annotations

import os

import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.api.slidelane.v1 import types_pb2
from services.common.errors import InvalidArgument, NotFound, ResourceExhausted, SlidelaneError
from services.scheduler.validation import find_cycle, validate_workflow


def _ok(_path: str) -> None:
    return None


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "slides"
    root.mkdir()
    (root / "a.svs").write_bytes(b"x")
    (tmp_path / "secret.svs").write_bytes(b"x")
    return (root,)


def job(job_id, deps=(), job_type="tissue_mask", image="a.svs", branch="main", **params):
    spec = types_pb2.JobSpec(job_id=job_id, job_type=job_type, image_path=image, branch=branch, depends_on=list(deps))
    if params:
        spec.params.CopyFrom(struct_pb2.Struct())
        spec.params.update(params)
    return spec


def refuse(jobs, roots, error=InvalidArgument, slide_check=_ok) -> SlidelaneError:
    with pytest.raises(error) as caught:
        validate_workflow("wf", jobs, roots, slide_check)
    return caught.value


def test_a_valid_workflow_resolves_paths_and_defaults_the_branch(roots):
    plan = validate_workflow("wf", [job("a"), job("b", deps=["a"], branch="")], roots, _ok)
    assert [p.job_id for p in plan] == ["a", "b"]
    assert plan[1].branch == "main"
    assert plan[0].image_path == str((roots[0] / "a.svs").resolve())


@pytest.mark.parametrize(
    ("jobs", "field", "words"),
    [
        ([], "jobs", "at least one job"),
        ([job("a"), job("a")], "jobs[1].job_id", "duplicate"),
        ([job("a", deps=["ghost"])], "jobs[0].depends_on", "unknown job 'ghost'"),
        ([job("a", deps=["a"])], "jobs[0].depends_on", "depends on itself"),
        ([job("a", job_type="segment_everything")], "jobs[0].job_type", "unknown"),
        ([job("a", image="")], "jobs[0].image_path", "required"),
        ([job("a", image="../secret.svs")], "jobs[0].image_path", "outside the slide roots"),
        ([job("a", branch="feature.x")], "jobs[0].branch", "not a valid branch"),
        ([job("a b")], "jobs[0].job_id", "not a valid job id"),
        ([job("a", job_type="cell_segmentation", zoom=3)], "jobs[0].params.zoom", "not a cell_segmentation parameter"),
        ([job("a", job_type="cell_segmentation", mpp=-1)], "jobs[0].params.mpp", "out of range"),
    ],
)
def test_each_bad_input_names_its_field(roots, jobs, field, words):
    error = refuse(jobs, roots)
    assert error.field == field
    assert words in error.message


def test_a_cycle_is_named_by_its_members(roots):
    error = refuse([job("a", deps=["c"]), job("b", deps=["a"]), job("c", deps=["b"])], roots)
    assert "a -> c -> b -> a" in error.message


def test_a_symlink_out_of_the_roots_is_refused(roots, tmp_path):
    os.symlink(tmp_path / "secret.svs", roots[0] / "link.svs")
    assert "outside the slide roots" in refuse([job("a", image="link.svs")], roots).message


def test_missing_and_unreadable_slides(roots):
    assert refuse([job("a", image="nope.svs")], roots, NotFound).field == "jobs[0].image_path"

    def broken(path: str) -> None:
        raise ValueError("Bogus marker length")

    error = refuse([job("a")], roots, slide_check=broken)
    assert "not a readable slide: Bogus marker length" in error.message


def test_oversized_workflows_are_refused(roots):
    error = refuse([job(f"j{i}") for i in range(1001)], roots, ResourceExhausted)
    assert "at most 1000" in error.message and error.field == "jobs"
    hub = [job(f"j{i}", deps=[f"j{k}" for k in range(i)]) for i in range(150)]  # 11175 edges
    assert "dependencies" in refuse(hub, roots, ResourceExhausted).message


def test_a_long_chain_is_accepted_with_dependencies_first(roots):
    # j0 waits for j1, ..., j998 for j999: submitted last-first, 1000 deep.
    chain = [job(f"j{i}", deps=[f"j{i + 1}"] if i < 999 else []) for i in range(1000)]
    plan = validate_workflow("wf", chain, roots, _ok)
    assert [p.job_id for p in plan] == [f"j{i}" for i in reversed(range(1000))]


def test_a_long_cycle_is_named_in_full(roots):
    ring = [job(f"j{i}", deps=[f"j{(i + 1) % 1000}"]) for i in range(1000)]
    message = refuse(ring, roots).message
    assert message.endswith(" -> ".join([f"j{i}" for i in range(1000)] + ["j0"]))


def test_errors_name_the_job_as_submitted_even_when_dependencies_come_first(roots):
    # "late" is listed first but runs second; its bad path must still be called jobs[0].
    error = refuse([job("late", deps=["early"], image="nope.svs"), job("early")], roots, NotFound)
    assert error.field == "jobs[0].image_path"


def test_a_boolean_is_not_a_pixel_size(roots):
    error = refuse([job("a", job_type="cell_segmentation", mpp=True)], roots)
    assert error.field == "jobs[0].params.mpp"


def test_validation_touches_nothing_but_the_slide_check(roots):
    """Refusals happen before storage: validation has no repository to write to, and
    a refused workflow never reaches the slide check either when its rules fail first."""
    checked: list[str] = []
    refuse([job("a"), job("b", deps=["ghost"])], roots, slide_check=checked.append)
    assert checked == []


@st.composite
def dags(draw):
    size = draw(st.integers(1, 12))
    names = [f"j{i}" for i in range(size)]
    deps = {n: draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else [] for i, n in enumerate(names)}
    order = draw(st.permutations(names))
    return [(n, deps[n]) for n in order]


@settings(max_examples=40, deadline=None)
@given(spec=dags())
def test_random_dags_are_accepted_with_dependencies_first(spec, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "dag-slides"
    root.mkdir(exist_ok=True)
    (root / "a.svs").write_bytes(b"x")
    edges = dict(spec)
    plan = validate_workflow("wf", [job(n, deps=d) for n, d in spec], (root,), _ok)
    assert sorted(p.job_id for p in plan) == sorted(edges)
    seen: set[str] = set()
    for planned in plan:
        assert set(edges[planned.job_id]) <= seen
        seen.add(planned.job_id)


@settings(max_examples=40, deadline=None)
@given(dags(), st.data())
def test_a_back_edge_makes_a_cycle_whose_members_really_cycle(spec, data):
    edges = {n: list(d) for n, d in spec}
    with_deps = [n for n, d in spec if d]
    if not with_deps:
        return
    child = data.draw(st.sampled_from(with_deps))
    parent = data.draw(st.sampled_from(edges[child]))
    edges[parent].append(child)  # parent now waits for child, which waits for parent
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1]
    for a, b in zip(cycle, cycle[1:], strict=False):
        assert b in edges[a]
