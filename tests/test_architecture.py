"""The package's layering, its public API, and the compatibility promises of the config split.

Layers: adafocus.utils under everything, adafocus.model and adafocus.data above it (neither imports the other), then
inference -> evaluation -> training -> apps. A module may import its own layer and those below.
"""
import ast
import pathlib
import warnings

import pytest
import torch

import adafocus

ROOT = pathlib.Path(adafocus.__file__).parent
RANK = {"utils": -1, "model": 0, "data": 0, "inference": 1, "evaluation": 2, "training": 3, "apps": 4}


def package_of(path: pathlib.Path) -> str:
    return ".".join(("adafocus",) + path.relative_to(ROOT).with_suffix("").parts[:-1])


def imported_adafocus_modules(path: pathlib.Path, package: str):
    """Every adafocus.<...> module `path` (a module of `package`) imports: absolute, relative, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            for alias in node.names:  # `from adafocus import training` imports a layer too
                yield f"{module}.{alias.name}", node.lineno


def layer_of(module: str):
    parts = module.split(".")
    if parts[0] != "adafocus" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def test_no_module_imports_a_layer_above_it():
    violations = []
    files = [p for p in ROOT.rglob("*.py") if p.parent != ROOT]
    assert len(files) > 25, "the walk found too few modules"
    for path in files:
        own = path.relative_to(ROOT).parts[0]
        for module, line in imported_adafocus_modules(path, package_of(path)):
            other = layer_of(module)
            if other is None or other == own:
                continue
            if RANK[other] > RANK[own] or RANK[other] == RANK[own]:  # same rank, other package: model <-> data
                violations.append(f"{path.relative_to(ROOT.parent)}:{line} ({own}) imports {module} ({other})")
    assert not violations, "\n".join(violations)


def test_the_layer_walk_catches_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from adafocus.training import checkpoint\nfrom ..apps import cli\nimport adafocus.data\n")
    found = [layer_of(m) for m, _ in imported_adafocus_modules(probe, "adafocus.model")]
    assert {"training", "apps", "data"} <= set(found)


def test_public_api_is_re_exported():
    for name in ("AdaFocusV3", "FullVideoBaseline", "ModelConfig", "EncoderConfig", "load_model", "EarlyExitRunner"):
        assert getattr(adafocus, name) is not None
    with pytest.raises(AttributeError):
        adafocus.no_such_thing  # noqa: B018


def test_the_network_holds_no_inference_loop_and_no_cost_cache():
    model = adafocus.AdaFocusV3(adafocus.ModelConfig())
    for name in ("infer", "gflops_per_exit", "component_gflops", "_gflops_cache", "inference_centers"):
        assert not hasattr(model, name), name
    assert not hasattr(adafocus.FullVideoBaseline(adafocus.ModelConfig()), "gflops")


def test_a_runner_with_another_policy_leaves_the_model_alone():
    from adafocus.evaluation import collect
    from adafocus.data.synthetic import SyntheticConfig, SyntheticVideos

    torch.manual_seed(0)
    model = adafocus.AdaFocusV3(adafocus.ModelConfig(num_cubes=2)).eval()
    before = adafocus.ModelConfig.from_dict(model.config.to_dict())
    data = SyntheticVideos(SyntheticConfig(num_frames=8, height=48, width=48, train_size=4, val_size=4, test_size=4), "test")
    learned = collect(adafocus.EarlyExitRunner(model), data, 4, torch.device("cpu"))
    random = collect(adafocus.EarlyExitRunner(model, policy="random"), data, 4, torch.device("cpu"))
    assert model.config == before
    assert not torch.equal(learned["centers"], random["centers"])
    with pytest.raises(ValueError, match="policy must be one of"):
        adafocus.EarlyExitRunner(model, policy="pixel")


LEGACY = {
    "preset": "tiny", "glance_tiny_channels": [4, 8], "glance_tiny_stride": 1, "local_tiny_channels": [4, 8],
    "local_tiny_stride": 4, "local_tsm": True, "mode": "pixel", "multi_label": True,
}


def test_old_flat_fields_and_mode_are_read_with_a_deprecation_message():
    from adafocus.model.config import ModelConfig

    values = dict(LEGACY)
    values.pop("preset")
    with pytest.warns(FutureWarning, match="mode=pixel -> policy=learned, crop_gradient=pixel"):
        config = ModelConfig.from_dict(values)
    assert (config.policy, config.crop_gradient, config.loss) == ("learned", "pixel", "bce")
    assert config.local.tiny_channels == (4, 8) and config.local.tiny_stride == 4 and config.local.tsm
    assert config.glance.tiny_stride == 1
    for mode, expected in [("random", "random"), ("learned_t", "learned_t"), ("deep_feature", "learned")]:
        with pytest.warns(FutureWarning):
            assert ModelConfig.from_dict({"mode": mode}).policy == expected
    # The current spelling wins over an old one given beside it (a command-line override of an old file).
    with pytest.warns(FutureWarning):
        assert ModelConfig.from_dict({"mode": "random", "policy": "learned_xy"}).policy == "learned_xy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ModelConfig.from_dict(config.to_dict()) == config  # what is written back is current


def test_an_old_config_file_trains_and_an_old_checkpoint_loads(tmp_path):
    import yaml

    from adafocus.training.checkpoint import load_model, save_atomic
    from adafocus.training.config import RunConfig
    from adafocus.training.trainer import Trainer
    from train_helpers import TINY

    values = {**TINY, "model": {**LEGACY, "multi_label": False, "cube_size": [1, 16, 16], "glance_frames": 4,
                                "glance_resolution": 8, "policy_channels": 4},
              "train": {**TINY["train"], "epochs": 1, "random_policy_epochs": 0, "output_dir": str(tmp_path)}}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(values))
    with pytest.warns(FutureWarning):
        config = RunConfig.from_dict(yaml.safe_load((tmp_path / "old.yaml").read_text()))
        trainer = Trainer(config)
        trainer.fit()
    # A checkpoint written before the split stores the flat model_config.
    state = torch.load(trainer.checkpoint_path, weights_only=False)
    model_config = dict(state["model_config"])
    for encoder in ("glance", "local"):
        for key, value in model_config.pop(encoder).items():
            model_config[f"{encoder}_{key}"] = value
    model_config["mode"] = "pixel"
    state["model_config"] = model_config
    save_atomic(state, str(tmp_path / "old.pt"))
    with pytest.warns(FutureWarning):
        model, _ = load_model(str(tmp_path / "old.pt"))
    assert model.config.crop_gradient == "pixel" and model.config.local.tsm


def test_building_a_model_reads_no_weights_file(tmp_path):
    missing = str(tmp_path / "nowhere.pt")
    config = adafocus.ModelConfig(local=dict(weights=missing), glance=dict(weights=missing))
    model = adafocus.AdaFocusV3(config)  # no error: weights load only when training starts from scratch
    from adafocus.model import load_pretrained_encoders

    with pytest.raises(FileNotFoundError):
        load_pretrained_encoders(model)
