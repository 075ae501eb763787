"""The tissue mask's own steps against the scipy / scikit-image calls they replace.

    python -m bench.inference.tissue_steps [--repeat 200]

Side by side in this process, on the same low-resolution views: the mask (blur, Otsu,
closing, small pieces and holes: services.inference.tissue.mask_from_rgb against
tests/inference/tissue_reference.library_mask) and its GeoJSON (holes from one
labelling against ndi.binary_fill_holes and a second one), for a 64 px slide (the
scheduler benchmark's job) and the 2048 px masks of generated slides with smooth and
ragged tissue. Reported: CPU microseconds per call for each, and the ratio; the
results are equal (the test holds them to it).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.inference.outline import cpu_us, generated_slides
from services.common.slides import open_slide
from services.inference import tissue
from tests.inference.tissue_reference import library_geojson, library_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    tissue.warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        slides = generated_slides(Path(tmp))
        print(f"{'view':24s} {'step':8s} {'library us':>11s} {'ours us':>9s} {'speed-up':>9s}")
        for name, path in slides.items():
            with open_slide(path) as slide:
                rgb, downsample = tissue.read_low_resolution(slide)
                mpp = slide.mpp
            mask = tissue.mask_from_rgb(rgb, downsample, mpp)
            repeat = args.repeat if rgb.size < 100_000 else max(3, args.repeat // 40)
            steps = {
                "mask": (
                    lambda: library_mask(rgb, downsample, mpp),  # noqa: B023 (called in this iteration)
                    lambda: tissue.mask_from_rgb(rgb, downsample, mpp),  # noqa: B023
                ),
                "geojson": (lambda: library_geojson(mask), mask.geojson_text),  # noqa: B023
            }
            for step, (library, ours) in steps.items():
                theirs_us, ours_us = cpu_us(library, repeat), cpu_us(ours, repeat)
                print(f"{name:24s} {step:8s} {theirs_us:11.0f} {ours_us:9.0f} {theirs_us / ours_us:8.2f}x")


if __name__ == "__main__":
    main()
