"""Batched early exit = offline simulation; compaction; frame de-duplication of frame-wise cubes."""
import pytest
import torch

import cubecrop
from adafocus.inference import early_exit, frame_dedup
from adafocus.model import AdaFocusV3
from adafocus.model.config import ModelConfig
from adafocus.evaluation.calibration import solve_thresholds
from adafocus.inference import EarlyExitRunner, gmacs_per_exit


def spread_model(**overrides) -> AdaFocusV3:
    """An untrained tiny model whose exit heads are scaled up, so entropies differ a lot between videos."""
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", num_cubes=3, policy_channels=16, local=dict(tiny_channels=(8, 16, 16)), **overrides)
    model = AdaFocusV3(config).eval()
    with torch.no_grad():
        for head in model.classifier.heads:
            head.weight.mul_(40)
    return model


def test_batched_early_exit_matches_offline_simulation():
    model = spread_model()
    video = torch.randn(16, 3, 8, 48, 48)
    labels = torch.randint(0, 10, (16,))
    full = EarlyExitRunner(model)(video, return_all_exits=True)
    cost = gmacs_per_exit(model, video.shape)
    thresholds = solve_thresholds(full.all_logits, labels, cost, budget=(cost[0] + cost[-1]) / 2)
    expected_logits, expected_exit, expected_gflops = early_exit.simulate(full.all_logits, thresholds, cost)
    assert len(set(expected_exit.tolist())) >= 2, "the thresholds should split the videos over several exits"

    batched = EarlyExitRunner(model)(video, thresholds=thresholds)
    assert torch.equal(batched.exit_index, expected_exit)
    torch.testing.assert_close(batched.logits, expected_logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(batched.logits.argmax(1), expected_logits.argmax(1))
    torch.testing.assert_close(batched.gflops, expected_gflops)
    # return_all_exits applies the same thresholds offline.
    again = EarlyExitRunner(model)(video, thresholds=thresholds, return_all_exits=True)
    assert torch.equal(again.exit_index, expected_exit)
    # Thresholds stored in the model are the default.
    model.set_thresholds(thresholds)
    assert torch.equal(EarlyExitRunner(model)(video).exit_index, expected_exit)


def test_each_stage_runs_only_on_the_videos_still_running():
    model = spread_model()
    video = torch.randn(16, 3, 8, 48, 48)
    full = EarlyExitRunner(model)(video, return_all_exits=True)
    entropies = torch.stack([early_exit.entropy(l) for l in full.all_logits])
    thresholds = entropies.median(dim=1).values  # about half of the running videos stop at each exit
    thresholds[-1] = float("inf")
    batch_sizes = []
    hook = model.local.encoder.register_forward_hook(lambda module, args, out: batch_sizes.append(args[0].shape[0]))
    result = EarlyExitRunner(model)(video, thresholds=thresholds)
    hook.remove()
    running = [int((result.exit_index >= t).sum()) for t in range(1, model.num_exits)]
    assert batch_sizes == [n for n in running if n > 0]
    assert running[0] < 16 and batch_sizes[-1] < batch_sizes[0]


def test_cubes_before_the_next_possible_exit_go_through_fL_in_one_batch():
    model = spread_model()  # 3 cubes: exits 0..3
    video = torch.randn(6, 3, 8, 48, 48)
    full = EarlyExitRunner(model)(video, return_all_exits=True)
    entropies = torch.stack([early_exit.entropy(l) for l in full.all_logits])
    cases = {  # thresholds -> the fL batch sizes expected (exit 0 stops nobody in each)
        "no exit": ([float("-inf")] * 3 + [float("inf")], [18]),
        "only exit 2": ([float("-inf"), float("-inf"), float(entropies[2].median()), float("inf")], None),
        "every exit, nobody stops": ([-1e30] * 3 + [float("inf")], [6, 6, 6]),
    }
    for name, (thresholds, expected_sizes) in cases.items():
        sizes = []
        hook = model.local.encoder.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
        got = EarlyExitRunner(model)(video, thresholds=thresholds)
        hook.remove()
        want_logits, want_exit, _ = early_exit.simulate(full.all_logits, torch.tensor(thresholds), [0.0] * 4)
        assert torch.equal(got.exit_index, want_exit), name
        torch.testing.assert_close(got.logits, want_logits, rtol=1e-5, atol=1e-5, msg=name)
        if expected_sizes is None:  # cubes 1-2 together, then cube 3 for those exit 2 left running
            stopped_at_2 = int((want_exit == 2).sum())
            assert 0 < stopped_at_2 < 6
            expected_sizes = [12, 6 - stopped_at_2]
        assert sizes == expected_sizes, name
    # a forced exit plan groups the same way
    sizes = []
    hook = model.local.encoder.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    plan = torch.tensor([0, 0, 3, 3, 3, 3])
    assert torch.equal(EarlyExitRunner(model)(video, exit_plan=plan).exit_index, plan)
    hook.remove()
    assert sizes == [12]


def test_deduplicate_frames_never_repeats_and_moves_to_the_nearest_free_frame():
    generator = torch.Generator().manual_seed(0)
    for num_frames, cubes in [(8, 8), (16, 5), (5, 3), (18, 18)]:
        frames = torch.randint(0, num_frames, (200, cubes), generator=generator)
        frames[:50] = frames[:50, :1]  # many rows with every cube on one frame
        out = frame_dedup.deduplicate_frames(frames, num_frames)
        for row_in, row_out in zip(frames.tolist(), out.tolist()):
            assert len(set(row_out)) == cubes
            used = set()
            for wanted, got in zip(row_in, row_out):
                free = [f for f in range(num_frames) if f not in used]
                best = min(abs(f - wanted) for f in free)
                assert abs(got - wanted) == best and got in free
                if wanted not in used:
                    assert got == wanted
                used.add(got)


def test_frame_of_center_matches_the_integer_crop():
    video = torch.arange(10, dtype=torch.float32).view(1, 1, 10, 1, 1).expand(1, 1, 10, 2, 2).contiguous()
    centers_t = torch.tensor([0.0, 0.49, 0.5, 3.99, 4.5, 9.99, 10.0])
    for dt in (1, 3):
        centers = torch.stack((centers_t, torch.ones(7), torch.ones(7)), dim=1).unsqueeze(0)
        cubes = cubecrop.crop_cubes_int(video, centers, (dt, 2, 2))
        first = cubes[0, :, 0, 0, 0, 0].long()
        assert torch.equal(first, frame_dedup.frame_of_center(centers_t, dt, 10))


def test_inference_never_processes_a_frame_twice():
    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", num_cubes=6, cube_size=(1, 16, 16), policy_channels=8)
    model = AdaFocusV3(config).eval()
    with torch.no_grad():  # uniform heat maps: the policy puts every cube on the same frame
        model.policy.head.weight.zero_()
        model.policy.head.bias.zero_()
    video = torch.randn(3, 3, 8, 32, 32)
    cubes = []
    hook = model.local.encoder.register_forward_hook(lambda module, args, out: cubes.append(args[0].clone()))
    result = EarlyExitRunner(model)(video)
    hook.remove()
    raw = model.policy(model.glance(video), (8, 32, 32))
    assert len(set(frame_dedup.frame_of_center(raw[..., 0], 1, 8).flatten().tolist())) == 1
    frames = frame_dedup.frame_of_center(result.centers[..., 0], 1, 8)
    assert torch.equal(result.exit_index, torch.full((3,), 6))  # nobody stops early: fL saw 6 cubes x 3 videos
    seen_rows = torch.cat(cubes)  # cube-major, whether the cubes came in one batch or several
    assert seen_rows.shape[0] == 18
    for b in range(3):
        assert len(set(frames[b].tolist())) == 6
        for t in range(6):
            # The cube fL saw is frame `frames[b, t]` of video b: matched by content against every frame.
            seen = seen_rows[t * 3 + b, :, 0]
            matches = [f for f in range(8) if torch.equal(seen, video[b, :, f, 8:24, 8:24])]
            assert matches == [int(frames[b, t])]


def test_simulate_by_hand():
    confident = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    unsure = torch.tensor([[0.1, 0.0], [0.0, 0.1]])
    # Video 0 is confident at exit 0; video 1 only at exit 2.
    exit_logits = torch.stack([torch.stack([confident[0], unsure[1]]), torch.stack([unsure[0], unsure[1]]),
                               torch.stack([unsure[0], confident[1]])])
    picked, exit_index, gflops = early_exit.simulate(exit_logits, [0.1, 0.1, 0.0], [1.0, 2.0, 4.0])
    assert exit_index.tolist() == [0, 2]
    assert gflops.tolist() == [1.0, 4.0]
    torch.testing.assert_close(picked, torch.stack([confident[0], confident[1]]))
    with pytest.raises(ValueError, match="one value per exit"):
        early_exit.simulate(exit_logits, [0.1, 0.1], [1.0, 2.0, 4.0])
