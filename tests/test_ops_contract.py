"""The op contract (docs/ops.md) on every edge case, on every available backend.

Each case replays one of the bad or edge inputs of the reliability issue against the
public functions and names the behaviour every backend must show: the same error type
with the argument named, the same values, or the same warning. `judge` sorts an
outcome into clean / wrong (a result where an error or other values were due) /
unclear (an error, but of another type or not naming the argument); the test asks
for clean. `python tests/test_ops_contract.py` prints the counts per backend (run it
against an older checkout with PYTHONPATH to count before a change).

Backends: cpu, reference and triton (under TRITON_INTERPRET=1, as in
tests/test_triton_ops.py) on CPU tensors; cuda, triton and reference on CUDA tensors
where a GPU is present.
"""
import math
import re
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

# Triton decides at import whether to interpret: before cubecrop is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import cubecrop  # noqa: E402
from conftest import backends_override  # noqa: E402

F64 = torch.float64


@dataclass(frozen=True)
class Raises:
    error: type
    names: str  # a regex the message must match: the argument (and what was expected)


@dataclass(frozen=True)
class Returns:
    check: Callable  # result -> None, raising AssertionError when the values are wrong


@dataclass(frozen=True)
class Warns:
    text: str  # regex of the warning, which must be raised exactly once per call site


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable  # (backend, device) -> result
    expect: Callable  # (backend, device) -> Raises | Returns | Warns
    only: Optional[Callable] = None  # (backend, device) -> bool: where the case applies


def _video(device, shape=(2, 3, 4, 5, 6), dtype=torch.float32):
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(dtype=dtype, device=device)


def _centers(device, n=2, k=2, value=2.5):
    return torch.full((n, k, 3), value, dtype=torch.float32, device=device)


def _u8(device, shape=(2, 3, 4, 5, 6)):
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(1)).to(torch.uint8).to(device)


def _crop(b, d, video=None, centers=None, size=2, **kwargs):
    video = _video(d) if video is None else video
    centers = _centers(d, video.shape[0]) if centers is None else centers
    return cubecrop.crop_cubes(video, centers, size, backend=b, **kwargs)


def _crop_int(b, d, video=None, centers=None, size=2, **kwargs):
    video = _u8(d) if video is None else video
    centers = _centers(d, video.shape[0]) if centers is None else centers
    return cubecrop.crop_cubes_int(video, centers, size, backend=b, **kwargs)


def _raises(error, names):
    return lambda b, d: Raises(error, names)


def _returns(check):
    return lambda b, d: Returns(check)


def _shape(*shape, dtype=None):
    def check(out):
        assert tuple(out.shape) == shape, f"shape {tuple(out.shape)} != {shape}"
        if dtype is not None:
            assert out.dtype == dtype, f"dtype {out.dtype} != {dtype}"
    return check


# --- sizes -----------------------------------------------------------------------------

BAD_SIZES = {
    "size floats (2.7, 3.9, 3.2)": ((2.7, 3.9, 3.2), TypeError),
    "size scalar float 2.5": (2.5, TypeError),
    "size float tensor": (torch.tensor([2.0, 2.0, 2.0]), TypeError),
    "size string '234'": ("234", TypeError),
    "size (True, True, True)": ((True, True, True), TypeError),
    "size True": (True, TypeError),
    "size (2, None, 2)": ((2, None, 2), TypeError),
    "size (1, 1, 2**63)": ((1, 1, 2**63), ValueError),
    "size (1, 1, 2**31)": ((1, 1, 2**31), ValueError),
    "size 0": (0, ValueError),
    "size negative": ((2, -1, 2), ValueError),
}


def _size_cases():
    cases = []
    for name, (size, error) in BAD_SIZES.items():
        names = "size.*(too|most|2\\*\\*31)" if name.startswith("size (1, 1, 2**") else "size"
        cases.append(Case(f"crop_cubes {name}", lambda b, d, s=size: _crop(b, d, size=s), _raises(error, names)))
        cases.append(Case(f"crop_cubes_int {name}", lambda b, d, s=size: _crop_int(b, d, size=s), _raises(error, names)))

    def same_as_ints(b, d):
        video, centers = _video(d), _centers(d)
        want = cubecrop.crop_cubes(video, centers, (2, 3, 1), backend=b)
        return Returns(lambda out: torch.testing.assert_close(out, want, rtol=0, atol=0))

    cases.append(Case("crop_cubes integer tensor size", lambda b, d: _crop(b, d, size=torch.tensor([2, 3, 1])),
                      same_as_ints))
    cases.append(Case("crop_cubes_int integer tensor size", lambda b, d: _crop_int(b, d, size=torch.tensor([2, 3, 1])),
                      _returns(_shape(2, 2, 3, 2, 3, 1, dtype=torch.uint8))))
    return cases


# --- empty and zero-length extents -----------------------------------------------------


def _empty_crop(b, d, shape, k, padding_mode):
    video = _video(d, shape, F64).requires_grad_()
    centers = _centers(d, shape[0], k).double().requires_grad_()
    out = cubecrop.crop_cubes(video, centers, 2, padding_mode, backend=b)
    grad_video, grad_centers = torch.autograd.grad(out.sum(), (video, centers), allow_unused=True)
    return out, grad_video, grad_centers, video, centers


def _empty_crop_check(shape, k):
    def check(result):
        out, grad_video, grad_centers, video, centers = result
        assert tuple(out.shape) == (shape[0], k, shape[1], 2, 2, 2), f"shape {tuple(out.shape)}"
        for grad, like in ((grad_video, video), (grad_centers, centers)):
            assert grad is None or (grad.shape == like.shape and not grad.abs().sum()), "empty output, non-zero gradient"
    return check


EMPTY = {"K=0": ((2, 3, 4, 5, 6), 0), "N=0": ((0, 3, 4, 5, 6), 2), "C=0": ((2, 0, 4, 5, 6), 2)}
ZERO_EXTENT = {"T=0": (2, 3, 0, 5, 6), "H=0": (2, 3, 4, 0, 6), "W=0": (2, 3, 4, 5, 0)}
EXTENT_MESSAGE = r"video must have T, H, W >= 1, got shape"


def _empty_cases():
    cases = []
    for name, (shape, k) in EMPTY.items():
        for mode in ("zeros", "border"):
            cases.append(Case(f"crop_cubes {name} ({mode})", lambda b, d, s=shape, k=k, m=mode: _empty_crop(b, d, s, k, m),
                              _returns(_empty_crop_check(shape, k))))
        normalise = {"mean": [10.0] * shape[1], "std": [3.0] * shape[1]}
        cases.append(Case(f"crop_cubes_int {name}",
                          lambda b, d, s=shape, k=k: _crop_int(b, d, _u8(d, s), _centers(d, s[0], k), 1),
                          _returns(_shape(shape[0], k, shape[1], 1, 1, 1, dtype=torch.uint8))))
        cases.append(Case(f"crop_cubes_int {name} normalised",
                          lambda b, d, s=shape, k=k, kw=normalise: _crop_int(b, d, _u8(d, s), _centers(d, s[0], k), 1, **kw),
                          _returns(_shape(shape[0], k, shape[1], 1, 1, 1, dtype=torch.float32))))
    for name, shape in ZERO_EXTENT.items():
        for mode in ("zeros", "border"):
            cases.append(Case(f"crop_cubes {name} ({mode})",
                              lambda b, d, s=shape, m=mode: _crop(b, d, _video(d, s), padding_mode=m),
                              _raises(ValueError, EXTENT_MESSAGE)))
        cases.append(Case(f"crop_cubes_int {name}", lambda b, d, s=shape: _crop_int(b, d, _u8(d, s), size=1),
                          _raises(ValueError, EXTENT_MESSAGE)))
        frames = tuple(shape[i] for i in (0, 2, 3, 4, 1))
        cases.append(Case(f"crop_cubes_int {name} channels_last",
                          lambda b, d, s=frames: _crop_int(b, d, _u8(d, s), size=1, channels_last=True),
                          _raises(ValueError, EXTENT_MESSAGE)))

    def no_history(out):
        assert not out.requires_grad and out.grad_fn is None, "crop_cubes_int output keeps autograd history"

    cases.append(Case("crop_cubes_int requires_grad video",
                      lambda b, d: _crop_int(b, d, _video(d).requires_grad_(), size=2), _returns(no_history)))
    return cases


# --- mean / std ------------------------------------------------------------------------

BAD_STATISTICS = {
    "mean NaN": ({"mean": [0.0, math.nan, 0.0]}, "mean"),
    "mean inf": ({"mean": [0.0, 0.0, math.inf]}, "mean"),
    "std NaN": ({"std": [1.0, math.nan, 1.0]}, "std"),
    "std inf": ({"std": [1.0, math.inf, 1.0]}, "std"),
    "std negative": ({"std": [1.0, -2.0, 1.0]}, "std"),
    "std zero": ({"std": [1.0, 0.0, 1.0]}, "std"),
    "std NaN tensor": ({"std": torch.tensor([1.0, math.nan, 1.0])}, "std"),
    "mean on the meta device": ({"mean": torch.zeros(3, device="meta")}, "mean.*meta"),
    "mean strings": ({"mean": ["0", "1", "2"]}, "mean"),
}


def _statistic_cases():
    cases = []
    for name, (kwargs, names) in BAD_STATISTICS.items():
        error = TypeError if name == "mean strings" else ValueError
        cases.append(Case(f"crop_cubes_int {name}", lambda b, d, kw=kwargs: _crop_int(b, d, **kw), _raises(error, names),
                          only=(lambda b, d: d != "meta") if "meta" in name else None))

    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]

    def every_byte(d):
        # All 256 values in every channel: (1, 3, 1, 16, 16), one value per pixel.
        return torch.arange(256).view(1, 1, 1, 16, 16).expand(1, 3, 1, 16, 16).to(torch.uint8).to(d)

    def normalised(out_dtype):
        def run(b, d):
            return _crop_int(b, d, every_byte(d), _centers(d, 1, 1, 8.0), (1, 16, 16), mean=mean, std=std, out_dtype=out_dtype)

        def expect(b, d):
            # (x - mean) / std, true division, in float32 (float64 for a float64 output), rounded once.
            compute = torch.float64 if out_dtype == torch.float64 else torch.float32
            m = torch.tensor(mean, dtype=torch.float32).to(compute).view(1, 1, 3, 1, 1, 1)
            s = torch.tensor(std, dtype=torch.float32).to(compute).view(1, 1, 3, 1, 1, 1)
            want = ((every_byte("cpu").unsqueeze(1).to(compute) - m) / s).to(out_dtype)
            return Returns(lambda out: torch.testing.assert_close(out.cpu(), want, rtol=0, atol=0))

        return run, expect

    for out_dtype in (torch.float32, torch.float16, torch.float64):
        run, expect = normalised(out_dtype)
        cases.append(Case(f"crop_cubes_int normalise uint8 -> {out_dtype}", run, expect))
    return cases


# --- centres, strides, windows ----------------------------------------------------------


def _nan_centers(d, shape=(2, 2, 3)):
    centers = torch.full(shape, 2.5, dtype=torch.float64)
    centers.view(-1)[1] = math.nan
    return centers.to(d)


def _feature_args(d):
    features = _video(d, (2, 4, 3, 3, 3), F64)
    centers = torch.full((2, 3), 5.0, dtype=F64, device=d)
    return features, centers, torch.zeros(2, 3, dtype=F64, device=d)


def _offset_crop(b, d, stride):
    features, centers, origin = _feature_args(d)
    return cubecrop.feature_offset_crop(features, centers, origin, stride, backend=b)


def _window_cases():
    cases = [
        Case("crop_cubes centres NaN", lambda b, d: _crop(b, d, centers=_nan_centers(d)), _raises(ValueError, "centers")),
        Case("crop_cubes centres inf", lambda b, d: _crop(b, d, centers=_nan_centers(d).nan_to_num(nan=math.inf)),
             _raises(ValueError, "centers")),
        Case("crop_cubes_int centres NaN", lambda b, d: _crop_int(b, d, centers=_nan_centers(d)),
             _raises(ValueError, "centers")),
    ]
    for name, stride in {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "(1, nan, 4)": (1, math.nan, 4),
                         "0": 0, "True": True, "'4'": "4"}.items():
        error = TypeError if name in ("True", "'4'") else ValueError
        cases.append(Case(f"feature_offset_crop stride={name}", lambda b, d, s=stride: _offset_crop(b, d, s),
                          _raises(error, "stride")))
    cases.append(Case("feature_offset_crop origin NaN",
                      lambda b, d: cubecrop.feature_offset_crop(*_feature_args(d)[:2], _nan_centers(d, (2, 3)), 4, backend=b),
                      _raises(ValueError, "origin")))

    def window(centers, video_size=(8, 32, 32), cube=(2, 8, 8), stride=(1, 4, 4)):
        return cubecrop.enlarged_window(centers, cube, stride, video_size)

    cases += [
        Case("enlarged_window NaN centre", lambda b, d: window(_nan_centers(d, (3, 3))), _raises(ValueError, "centers")),
        Case("enlarged_window inf centre", lambda b, d: window(_nan_centers(d, (3, 3)).nan_to_num(nan=-math.inf)),
             _raises(ValueError, "centers")),
        Case("enlarged_window video_size (8, 32.7, 32)", lambda b, d: window(torch.full((3, 3), 4.0, device=d), (8, 32.7, 32)),
             _raises(TypeError, "video_size")),
        Case("enlarged_window video_size '8'", lambda b, d: window(torch.full((3, 3), 4.0, device=d), "8"),
             _raises(TypeError, "video_size")),
        Case("enlarged_window cube_size (2.5, 8, 8)",
             lambda b, d: window(torch.full((3, 3), 4.0, device=d), cube=(2.5, 8, 8)), _raises(TypeError, "cube_size")),
        Case("enlarged_window stride (True, 4, 4)",
             lambda b, d: window(torch.full((3, 3), 4.0, device=d), stride=(True, 4, 4)), _raises(TypeError, "stride")),
    ]

    def other_batch(b, d):
        win = window(torch.full((3, 3), 4.0, dtype=F64, device=d))  # M = 3 windows ...
        return cubecrop.crop_enlarged(_video(d, (2, 3, 8, 32, 32)), win, backend=b)  # ... for N = 2 clips

    cases.append(Case("crop_enlarged window of another batch", other_batch, _raises(ValueError, "window.*M=3.*N=2")))
    return cases


# --- meta tensors, warnings, double backward -------------------------------------------


def _meta_cases():
    def meta_crop(b, d):
        return cubecrop.crop_cubes(_video("meta"), _centers("meta"), (2, 3, 4), backend=b)

    def meta_int(b, d):
        return cubecrop.crop_cubes_int(_u8("meta"), _centers("meta"), (2, 3, 4), mean=[1.0] * 3, std=[2.0] * 3, backend=b)

    def meta_offset(b, d):
        features, centers, origin = _feature_args("meta")
        return cubecrop.feature_offset_crop(features, centers, origin, 4, backend=b)

    def on_meta(*shape, dtype):
        def check(out):
            _shape(*shape, dtype=dtype)(out)
            assert out.device.type == "meta"
        return _returns(check)

    return [
        Case("crop_cubes meta tensors", meta_crop, on_meta(2, 2, 3, 2, 3, 4, dtype=torch.float32)),
        Case("crop_cubes_int meta tensors", meta_int, on_meta(2, 2, 3, 2, 3, 4, dtype=torch.float32)),
        Case("feature_offset_crop meta tensors", meta_offset, on_meta(2, 4, 2, 2, 2, dtype=F64)),
    ]


OUTSIDE_WARNING = r"entirely outside the video.*\[0, 1\].*\(t, y, x\).*\(N, T, C, H, W\)"


def _outside(b, d, centers, padding_mode="zeros", calls=2):
    video = _video(d, (1, 2, 4, 20, 30))
    for _ in range(calls):  # one call site: the warning shows once
        out = cubecrop.crop_cubes(video, centers.to(d), 2, padding_mode, backend=b)
    return out


def _warning_cases():
    xyt = torch.tensor([[[25.0, 10.0, 2.0], [28.0, 12.0, 1.5]]])  # (x, y, t) for a (T, H, W) = (4, 20, 30) video
    inside = torch.tensor([[[25.0, 10.0, 2.0], [2.0, 10.0, 25.0]]])

    def silent(out):
        pass

    return [
        Case("crop_cubes every cube outside (x, y, t order)", lambda b, d: _outside(b, d, xyt),
             lambda b, d: Warns(OUTSIDE_WARNING) if d == "cpu" else Returns(silent)),
        Case("crop_cubes every cube outside, border mode", lambda b, d: _outside(b, d, xyt, "border"), _returns(silent)),
        Case("crop_cubes one cube inside", lambda b, d: _outside(b, d, inside), _returns(silent)),
    ]


def _double_backward(b, d):
    video = _video(d, (1, 2, 4, 5, 6), F64).requires_grad_()
    centers = torch.tensor([[[1.7, 2.4, 3.3]]], dtype=F64, device=d).requires_grad_()
    out = cubecrop.crop_cubes(video, centers, 2, backend=b)
    (grad_centers,) = torch.autograd.grad((out * out).sum(), centers, create_graph=True)
    return torch.autograd.grad(grad_centers.sum(), (video, centers))


def _double_backward_cases():
    def expect(b, d):
        if b == "reference":
            return Returns(lambda grads: None)
        return Raises(RuntimeError, f"double backward is not supported by backend '{b}'.*backend='reference'")

    return [Case("crop_cubes double backward", _double_backward, expect)]


CASES = {
    case.name: case
    for case in (
        _size_cases() + _empty_cases() + _statistic_cases() + _window_cases() + _meta_cases()
        + _warning_cases() + _double_backward_cases()
    )
}


def judge(case: Case, backend: str, device: str):
    """('clean' | 'wrong' | 'unclear', detail) for `case` on `backend`."""
    expect = case.expect(backend, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own filter: once per call site
        try:
            result = case.call(backend, device)
        except Exception as error:  # noqa: BLE001 - sorting every outcome is the point
            if isinstance(expect, Raises) and isinstance(error, expect.error) and re.search(
                expect.names, str(error), flags=re.S
            ):
                return "clean", ""
            return "unclear", f"{type(error).__name__}: {str(error)[:300]}"
    outside = [w for w in caught if "entirely outside" in str(w.message)]
    if isinstance(expect, Raises):
        return "wrong", f"returned instead of raising {expect.error.__name__} naming {expect.names!r}"
    if isinstance(expect, Warns):
        if len(outside) != 1 or not re.search(expect.text, str(outside[0].message), flags=re.S):
            return "wrong", f"expected one warning matching {expect.text!r}, got {[str(w.message) for w in outside]}"
        return "clean", ""
    if outside:
        return "wrong", f"unexpected warning: {outside[0].message}"
    try:
        expect.check(result)
    except AssertionError as error:
        return "wrong", str(error)[:300]
    return "clean", ""


def available_pairs():
    """(backend, device) pairs this machine can run: every backend of every device."""
    pairs = []
    for device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        pairs += [(name, device) for name in cubecrop.available_backends(device)]
    return pairs


def _declared_pairs():
    """Every backend of every device, or $CUBECROP_TEST_BACKENDS's pairs plus the reference on
    their devices (the GPU check runs the CUDA tensors' backends only)."""
    override = backends_override()
    if override is None:
        return [("cpu", "cpu"), ("cpu", "reference"), ("cpu", "triton"),
                ("cuda", "cuda"), ("cuda", "triton"), ("cuda", "reference")]
    devices = list(dict.fromkeys(device for device, _ in override))
    return list(dict.fromkeys(override + [(device, "reference") for device in devices]))


def _backend_params():
    params = []
    for device, name in _declared_pairs():
        ok = (name, device) in available_pairs()
        reason = "no CUDA device on this machine" if device == "cuda" and not torch.cuda.is_available() else (
            f"backend {name!r} not available on {device}")
        params.append(pytest.param((name, device), id=f"{device}-{name}",
                                   marks=[] if ok else [pytest.mark.skip(reason=reason)]))
    return params


@pytest.mark.parametrize("case_name", list(CASES))
@pytest.mark.parametrize("pair", _backend_params())
def test_contract(pair, case_name):
    backend, device = pair
    case = CASES[case_name]
    if case.only is not None and not case.only(backend, device):
        pytest.skip("does not apply here")
    verdict, detail = judge(case, backend, device)
    assert verdict == "clean", f"{case_name} on {device}-{backend}: {verdict}: {detail}"


def test_judge_catches_broken_behaviour():
    # The judge itself must fail a silently wrong result and an unclear error.
    wrong = Case("returns", lambda b, d: 1, _raises(ValueError, "size"))
    unclear = Case("other message", lambda b, d: (_ for _ in ()).throw(ValueError("nope")), _raises(ValueError, "size"))
    bad_values = Case("bad values", lambda b, d: torch.ones(2), _returns(_shape(3)))
    assert judge(wrong, "reference", "cpu")[0] == "wrong"
    assert judge(unclear, "reference", "cpu")[0] == "unclear"
    assert judge(bad_values, "reference", "cpu")[0] == "wrong"


def test_reference_gradgradcheck():
    video = _video("cpu", (1, 2, 4, 5, 6), F64).requires_grad_()
    centers = torch.tensor([[[1.7, 2.4, 3.3], [3.1, 0.6, 4.2]]], dtype=F64).requires_grad_()
    for mode in ("zeros", "border"):
        assert torch.autograd.gradgradcheck(
            lambda v, c: cubecrop.crop_cubes(v, c, (2, 3, 2), mode, backend="reference"), (video, centers)
        )


def test_tensor_size_under_compile_is_a_clear_error():
    video, centers = _video("cpu"), _centers("cpu")

    def crop(video, centers, size):
        return cubecrop.crop_cubes(video, centers, size, backend="reference")

    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"size must be Python ints under torch.compile"):
        torch.compile(crop, fullgraph=True)(video, centers, torch.tensor([2, 2, 2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_no_host_sync_on_cuda(backend):
    if backend not in cubecrop.available_backends("cuda"):
        pytest.skip(f"backend {backend!r} not available on cuda")
    video, centers = _video("cuda"), _centers("cuda")
    u8 = _u8("cuda")
    kwargs = dict(mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], backend=backend)
    cubecrop.crop_cubes(video, centers, 2, backend=backend)
    cubecrop.crop_cubes_int(u8, centers, 2, **kwargs)  # builds the cached mean/std
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        cubecrop.crop_cubes(video, centers, 2, backend=backend)
        cubecrop.crop_cubes_int(u8, centers, 2, **kwargs)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def main():
    """Counts per backend: inputs tried / clean / wrong / unclear."""
    import collections

    totals = collections.Counter()
    for backend, device in [p for p in available_pairs() if p[1] == "cpu" or torch.cuda.is_available()]:
        counts = collections.Counter()
        for case in CASES.values():
            if case.only is not None and not case.only(backend, device):
                continue
            try:
                verdict, detail = judge(case, backend, device)
            except Exception as error:  # noqa: BLE001 - an expectation that cannot even be built
                verdict, detail = "unclear", f"{type(error).__name__}: {error}"
            counts[verdict] += 1
            counts["tried"] += 1
            if verdict != "clean":
                print(f"  {device}-{backend} {verdict:7s} {case.name}: {detail[:160]}")
        totals.update(counts)
        print(f"{device}-{backend}: tried {counts['tried']} clean {counts['clean']} wrong {counts['wrong']} "
              f"unclear {counts['unclear']}")
    print(f"all: tried {totals['tried']} clean {totals['clean']} wrong {totals['wrong']} unclear {totals['unclear']}")


if __name__ == "__main__":
    main()
