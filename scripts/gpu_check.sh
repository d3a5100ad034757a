#!/usr/bin/env bash
# GPU check, for a machine with a GPU, torch, triton, nvcc, ninja and pytest (works offline):
#   1. builds the extension in place with the CUDA kernels (for this GPU's arch only),
#   2. runs the GPU tests (CUDA kernels, the op tests on every backend, Triton),
#   3. runs the kernel benchmark on CUDA, twice: default (atomic video gradient) and
#      deterministic (torch.use_deterministic_algorithms(True, warn_only=True)),
#   4. writes benchmarks/results/gpu_check_<gpu>.{json,md} with the GPU name, the build
#      time, the test counts and the benchmark tables, next to the raw logs.
# Usage: scripts/gpu_check.sh            (PYTHON=... to pick the interpreter,
#        TORCH_CUDA_ARCH_LIST=... to build other arches, SKIP_BUILD=1 to reuse a build)
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")}"
OUT=benchmarks/results
mkdir -p "$OUT"

gpu_info=$("$PYTHON" - <<'EOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device visible to torch: gpu_check needs a GPU")
major, minor = torch.cuda.get_device_capability()
print(f"{major}.{minor}")
print(torch.cuda.get_device_name())
EOF
) || { echo "$gpu_info"; exit 1; }
arch=$(sed -n 1p <<<"$gpu_info")
gpu_name=$(sed -n 2p <<<"$gpu_info")
tag=$(tr -c 'A-Za-z0-9\n' '_' <<<"$gpu_name" | tr -s '_' | sed 's/_$//')
echo "# GPU: $gpu_name (sm_${arch/./}), CUDA_HOME=$CUDA_HOME, python=$PYTHON"

build_s=null
build_rc=0
if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}"
  start=$(date +%s)
  FORCE_CUDA=1 "$PYTHON" setup.py build_ext --inplace >"$OUT/gpu_build_$tag.log" 2>&1
  build_rc=$?
  build_s=$(( $(date +%s) - start ))
  echo "# build: rc=$build_rc in ${build_s}s (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST), log $OUT/gpu_build_$tag.log"
  grep -E "warning|error" "$OUT/gpu_build_$tag.log" | grep -E "csrc/" | head -20
  if [[ $build_rc -ne 0 ]]; then tail -40 "$OUT/gpu_build_$tag.log"; exit $build_rc; fi
fi

tests=(tests/test_cuda_ops.py tests/test_cuda_emulation.py)
for f in tests/test_ops_*.py tests/test_triton_*.py; do [[ -e $f ]] && tests+=("$f"); done
"$PYTHON" -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT/gpu_tests_$tag.xml" "${tests[@]}" \
  2>&1 | tee "$OUT/gpu_tests_$tag.log"
tests_rc=${PIPESTATUS[0]}

"$PYTHON" benchmarks/bench_ops.py --device cuda --out "$OUT/bench_ops_cuda_$tag.json" \
  2>&1 | tee "$OUT/bench_ops_cuda_$tag.log"
bench_rc=${PIPESTATUS[0]}
"$PYTHON" - "$OUT/bench_ops_cuda_deterministic_$tag.json" <<'EOF' 2>&1 | tee "$OUT/bench_ops_cuda_deterministic_$tag.log"
import runpy, sys, torch
torch.use_deterministic_algorithms(True, warn_only=True)  # our kernels take the gather path; grid_sample warns
sys.argv = ["bench_ops.py", "--device", "cuda", "--out", sys.argv[1]]
runpy.run_path("benchmarks/bench_ops.py", run_name="__main__")
EOF
det_rc=${PIPESTATUS[0]}

"$PYTHON" - "$OUT" "$tag" "$gpu_name" "$arch" "$build_s" "$build_rc" "$tests_rc" "$bench_rc" "$det_rc" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET
import torch
out, tag, gpu, arch, build_s, build_rc, tests_rc, bench_rc, det_rc = sys.argv[1:]
summary = {
    "gpu": gpu, "compute_capability": arch, "torch": torch.__version__, "cuda": torch.version.cuda,
    "build_seconds": None if build_s == "null" else int(build_s), "build_rc": int(build_rc),
    "tests_rc": int(tests_rc), "bench_rc": int(bench_rc), "bench_deterministic_rc": int(det_rc),
}
junit = os.path.join(out, f"gpu_tests_{tag}.xml")
if os.path.exists(junit):
    suites = ET.parse(junit).getroot()
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    summary["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    summary["tests"]["seconds"] = float(suite.get("time", 0))
lines = [f"# GPU check: {gpu} (sm_{arch.replace('.', '')}), torch {torch.__version__}, CUDA {torch.version.cuda}", ""]
lines.append(f"- build: rc {build_rc}, {build_s} s")
if "tests" in summary:
    t = summary["tests"]
    lines.append(f"- tests: {t['tests']} run, {t['failures']} failed, {t['errors']} errors, {t['skipped']} skipped "
                 f"in {t['seconds']:.0f} s (rc {tests_rc})")
for label, name in (("default (atomic video gradient)", f"bench_ops_cuda_{tag}.json"),
                    ("deterministic mode", f"bench_ops_cuda_deterministic_{tag}.json")):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        lines += ["", f"## Benchmark, {label}: missing ({name})"]
        continue
    report = json.load(open(path))
    summary[name] = report.get("results")
    rows = report.get("results") or []
    lines += ["", f"## Benchmark, {label}", ""]
    if rows and isinstance(rows[0], dict):
        keys = list(rows[0].keys())
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for row in rows:
            cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (row.get(k) for k in keys)]
            lines.append("| " + " | ".join(cells) + " |")
with open(os.path.join(out, f"gpu_check_{tag}.json"), "w") as f:
    json.dump(summary, f, indent=2)
with open(os.path.join(out, f"gpu_check_{tag}.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines[:6]))
print(f"# wrote {out}/gpu_check_{tag}.json and .md")
EOF

[[ $tests_rc -eq 0 && $bench_rc -eq 0 ]]
