"""Outline simplification for tissue GeoJSON: within tolerance, and as tight as skimage's."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from skimage import measure

from services.inference.tissue import simplify_polygon

TOLERANCE = 0.75


def distance_to_segment(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    direction = end - start
    length2 = float(direction @ direction)
    if length2 == 0:
        return np.hypot(*(points - start).T)
    t = np.clip((points - start) @ direction / length2, 0, 1)
    return np.hypot(*(points - (start + t[:, None] * direction)).T)


def outlines(mask: np.ndarray) -> list[np.ndarray]:
    return measure.find_contours(np.pad(mask, 1).astype(np.uint8), 0.5)


def assert_simplifies(contour: np.ndarray, simplified: np.ndarray) -> None:
    """Every vertex is an input point, in order, the ends kept, and every dropped point
    lies within the tolerance of the simplified segment that replaces it."""
    indices, position = [], 0
    for vertex in simplified:
        while not (contour[position] == vertex).all():  # runs off the end if a vertex is not an input point
            position += 1
        indices.append(position)
        position += 1
    assert indices[0] == 0 and indices[-1] == len(contour) - 1
    for first, last in zip(indices, indices[1:], strict=False):
        dropped = contour[first + 1 : last]
        if len(dropped):
            assert distance_to_segment(dropped, contour[first], contour[last]).max() <= TOLERANCE + 1e-9


def test_a_rectangle_keeps_its_corners_only() -> None:
    mask = np.zeros((40, 70), bool)
    mask[5:30, 10:60] = True
    (contour,) = outlines(mask)
    simplified = simplify_polygon(contour, TOLERANCE)
    assert len(contour) > 140
    assert len(simplified) == 5  # four corners (the outline cuts each by half a pixel) and the closing point
    assert (simplified[0] == simplified[-1]).all()
    assert_simplifies(contour, simplified)


def random_blob(height: int, width: int, roughness: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    blob = ((yy - height / 2) / (height / 2.5)) ** 2 + ((xx - width / 2) / (width / 2.5)) ** 2
    return blob + roughness * rng.random((height, width)) < 1


@settings(max_examples=60, deadline=None)
@given(st.integers(12, 120), st.integers(12, 120), st.floats(0.0, 0.9), st.integers(0, 2**32 - 1))
@example(12, 102, 0.5, 0)  # splits at other ties than skimage: 66 vertices against 60
def test_random_outlines_stay_within_tolerance(height: int, width: int, roughness: float, seed: int) -> None:
    for contour in outlines(random_blob(height, width, roughness, seed)):
        simplified = simplify_polygon(contour, TOLERANCE)
        assert_simplifies(contour, simplified)
        # Douglas-Peucker as skimage does it; where points are equally far, the two may split
        # at different ones, so one outline can keep up to ~20 % more or fewer vertices
        reference = measure.approximate_polygon(contour, TOLERANCE)
        assert len(simplified) <= 1.25 * len(reference) + 2


def test_as_few_vertices_as_skimage_over_many_outlines() -> None:
    """Tie-breaks even out: over 200 random shapes the vertex totals agree within 1 %."""
    rng = np.random.default_rng(1)
    ours = theirs = 0
    for seed in range(200):
        height, width = rng.integers(12, 121, 2)
        for contour in outlines(random_blob(int(height), int(width), float(rng.random() * 0.9), seed)):
            ours += len(simplify_polygon(contour, TOLERANCE))
            theirs += len(measure.approximate_polygon(contour, TOLERANCE))
    assert theirs > 10_000
    assert abs(ours - theirs) <= theirs // 100


def test_long_outlines_take_the_vectorised_path_and_agree() -> None:
    """A span longer than NUMPY_SPAN is measured with numpy: same rule, same result as the loop."""
    yy, xx = np.mgrid[:400, :600]
    mask = ((yy - 200) / 170) ** 2 + ((xx - 300) / 260) ** 2 < 1
    contour = max(outlines(mask), key=len)
    simplified = simplify_polygon(contour, TOLERANCE)
    assert len(contour) > 1500
    assert_simplifies(contour, simplified)
    assert len(simplified) <= len(measure.approximate_polygon(contour, TOLERANCE)) + 5
