"""The op tests collect and run where hypothesis is not installed (as on some GPU machines).

A child pytest runs with hypothesis hidden: a sitecustomize on its PYTHONPATH makes
`import hypothesis` fail, and pytest loads no plugin (hypothesis ships one). Only the
property module (test_ops_properties.py) may be skipped for it.
"""
import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
OP_MODULES = ["tests/test_ops_crop_cubes.py", "tests/test_ops_crop_cubes_int.py"]

# None in sys.modules makes every `import hypothesis` raise ImportError, before any
# finder is asked (pytest's assertion-rewriting finder would otherwise find it first).
HIDE_HYPOTHESIS = textwrap.dedent(
    """
    import sys

    sys.modules["hypothesis"] = None
    """
)


def _pytest_without_hypothesis(tmp_path, *args):
    (tmp_path / "sitecustomize.py").write_text(HIDE_HYPOTHESIS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # No plugin autoloading: pytest would load (and mark for rewriting) hypothesis's plugin.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_hiding_works(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(HIDE_HYPOTHESIS)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "import hypothesis"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "import of hypothesis halted" in probe.stderr, probe.stderr


def test_op_tests_collect_and_run_without_hypothesis(tmp_path):
    collected = _pytest_without_hypothesis(tmp_path, "--collect-only", *OP_MODULES, "tests/test_ops_properties.py")
    output = collected.stdout + collected.stderr
    assert collected.returncode == 0, output
    assert "error" not in output.lower().split("collected")[-1], output
    for module in OP_MODULES:
        assert f"{module}::" in output, f"{module} collected nothing without hypothesis:\n{output}"
    assert "tests/test_ops_properties.py::" not in output  # skipped whole, by importorskip

    ran = _pytest_without_hypothesis(
        tmp_path, "-rs", "tests/test_ops_crop_cubes.py::test_tolerances_cover_every_float_dtype",
        "tests/test_ops_properties.py",
    )
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    assert "1 passed, 1 skipped" in output and "hypothesis" in output, output
