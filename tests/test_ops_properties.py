"""Property tests (hypothesis) of crop_cubes and crop_cubes_int on every backend.

Kept apart from the example-based op tests so those collect and run where
hypothesis is not installed (the GPU machine may lack it): this module alone is
skipped then. Example counts come from Backend.examples (conftest.py): few under
the Triton interpreter and on GPU backends, where every new cube shape is a new
Triton autotune key (CUBECROP_TRITON_ONE_CONFIG=1 cuts each key to one config).
"""
import pytest
import torch

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import cubecrop  # noqa: E402
from conftest import check_against_reference  # noqa: E402
from op_inputs import LAYOUTS, PLACEMENTS, make_centers, make_video, overlapping_centers  # noqa: E402
from test_ops_crop_cubes_int import _centers, _video, sliced_cubes  # noqa: E402

PADDING_MODES = ["zeros", "border"]


def _settings(backend, count: int):
    return settings(max_examples=backend.examples(count), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def crop_cases(draw):
    extents = [draw(st.integers(1, 7)) for _ in range(3)]
    size = [draw(st.integers(1, 5)) for _ in range(3)]
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), *extents),
        k=draw(st.integers(1, 4)),
        size=size,
        placement=[draw(st.sampled_from(PLACEMENTS)) for _ in range(3)],
        layout=draw(st.sampled_from(LAYOUTS)),
        padding_mode=draw(st.sampled_from(PADDING_MODES)),
        dtype=draw(st.sampled_from([torch.float64, torch.float64, torch.float32])),
        overlap=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def test_property_matches_reference(backend):
    @_settings(backend, 60)
    @given(case=crop_cases())
    def check(case):
        gen = torch.Generator().manual_seed(case["seed"])
        (shape, k), size = backend.budget(case["shape"], case["k"]), case["size"]
        video = make_video(shape, case["dtype"], backend.device, case["layout"], gen)
        if case["overlap"]:
            centers = overlapping_centers(shape[0], k, shape[2:], size, case["dtype"], backend.device, gen)
        else:
            centers = make_centers(shape[0], k, shape[2:], size, case["placement"], case["dtype"], backend.device, gen)
        # Nudge float32 starts off integers: float32 and float64 may round c - D/2 to
        # different sides of one, where the centre gradient jumps.
        if case["dtype"] == torch.float32:
            sizes = torch.tensor(size, dtype=torch.float64, device=backend.device)
            starts = centers.double() - sizes / 2
            near = (starts - starts.round()).abs() < 1e-3
            centers = torch.where(near, centers + 2e-3, centers)
        check_against_reference(backend, video, centers, size, case["padding_mode"], seed=case["seed"])

    check()


@st.composite
def int_cases(draw):
    extents = [draw(st.integers(1, 8)) for _ in range(3)]
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), *extents),
        size=[draw(st.integers(1, e)) for e in extents],
        k=draw(st.integers(1, 4)),
        dtype=draw(st.sampled_from([torch.uint8, torch.int32, torch.float16, torch.float32, torch.float64])),
        layout=draw(st.sampled_from(LAYOUTS)),
        channels_last=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def test_property_equals_slicing(backend):
    @_settings(backend, 50)
    @given(case=int_cases())
    def check(case):
        (shape, k), size = backend.budget(case["shape"], case["k"]), case["size"]
        video = _video(backend, shape, case["dtype"], case["layout"], case["seed"])
        centers = _centers(backend, shape[0], k, shape[2:], size, case["seed"])
        source = video.permute(0, 2, 3, 4, 1) if case["channels_last"] else video  # a strided view either way
        out = cubecrop.crop_cubes_int(source, centers, size, channels_last=case["channels_last"], backend=backend.name)
        torch.testing.assert_close(out.cpu(), sliced_cubes(video, centers, size), rtol=0, atol=0)

    check()
