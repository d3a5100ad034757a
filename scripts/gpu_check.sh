#!/usr/bin/env bash
# GPU check (docs/gpu_check.md): one command for a machine with a GPU, torch, triton,
# nvcc, ninja and pytest, offline. Phases, each under its own `timeout`:
#   1. build: removes any old cubecrop/_C*.so, builds the extension in place with the
#      CUDA kernels for this GPU's arch only, then asserts the CUDA kernels are
#      registered (a CPU-only build would otherwise "pass" with every CUDA test skipped);
#   2. tests: only the GPU tests (CUDA kernels, the op tests on the cuda and triton
#      backends, the Triton package); the CPU suites run in CI;
#   3. bench: the kernel benchmark on CUDA (atomic video gradient);
#   4. bench_deterministic: the TSM workload in deterministic mode, fewer repeats;
#   5. bench_inference: `adafocus bench` for paper_tsm at batch 128 in bf16 (Table 3's
#      setting: early exit 0.3 / 0.7 / 0, all cubes, the fair baseline);
#   6. summary: gpu_check_<gpu>.{json,md}.
# Everything is written into $OUT when it is set (on a lent GPU machine only $OUT comes
# back, at most 8 files), else into benchmarks/results: the summary, the JUnit XML, the
# three benchmark JSONs and one log holding every phase's log (the phases write theirs
# into build/gpu_check_logs first). The default limits add up to 8 min 15 s (a sm_90-only
# build takes under 2 minutes on 2 cores, so 150 s is ample on the GPU machine's 16).
#
# GPU_CHECK_DRY_RUN=1 runs it where there is no GPU (CI tests the script this way):
# builds the CPU extension into build/gpu_check_dry (the in-place build is left alone),
# collects the GPU test selection (--collect-only), skips the GPU phases and writes the
# summary.
#
# Knobs: PYTHON (interpreter), TORCH_CUDA_ARCH_LIST (default: this GPU's), SKIP_BUILD=1,
# GPU_CHECK_TIMEOUT_{BUILD,TESTS,BENCH,DET,INFER} (seconds), MAX_JOBS (default: all cores).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY_RUN=${GPU_CHECK_DRY_RUN:-0}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "gpu_check: cannot create OUT=$OUT" >&2; exit 2; }
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
# The dry run builds on CI's CPUs (2 cores): minutes, not the GPU machine's seconds.
if [[ $DRY_RUN == 1 ]]; then T_BUILD=${GPU_CHECK_TIMEOUT_BUILD:-900}; else T_BUILD=${GPU_CHECK_TIMEOUT_BUILD:-150}; fi
T_TESTS=${GPU_CHECK_TIMEOUT_TESTS:-150}
T_BENCH=${GPU_CHECK_TIMEOUT_BENCH:-75}
T_DET=${GPU_CHECK_TIMEOUT_DET:-30}
T_INFER=${GPU_CHECK_TIMEOUT_INFER:-60}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
if [[ -z "${CUDA_HOME:-}" ]]; then
  # The toolkit's root (headers beside bin/nvcc): /usr/local/cuda where it exists, since an
  # nvcc on PATH may be a copy outside the toolkit (as /usr/local/bin/nvcc can be).
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then
    CUDA_HOME=/usr/local/cuda
  else
    nvcc_path=$(readlink -f "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")
    CUDA_HOME=$(dirname "$(dirname "$nvcc_path")")
  fi
fi
export CUDA_HOME
LOGS=$ROOT/build/gpu_check_logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
PHASES="$LOGS/phases.tsv"
: >"$PHASES"
START=$(date +%s)

# phase NAME LIMIT LOG CMD...: runs CMD under `timeout LIMIT`, output to LOG; records
# "name rc seconds status" (status ok / failed / timeout) in $PHASES, appends LOG to
# $JOINED_LOG (in $OUT) under a header; returns CMD's rc.
phase() {
  local name=$1 limit=$2 log=$3 start rc status
  shift 3
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  status=ok
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then status=timeout; elif [[ $rc -ne 0 ]]; then status=failed; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" "$status" >>"$PHASES"
  echo "# $name: $status (rc $rc) in $(( $(date +%s) - start ))s, log $log"
  { printf '\n===== %s: %s (rc %s) in %ss =====\n' "$name" "$status" "$rc" "$(( $(date +%s) - start ))"
    cat "$log"; } >>"$JOINED_LOG"
  if [[ $status != ok ]]; then tail -25 "$log"; fi
  return $rc
}
skip() { printf '%s\t\t0\tskipped (%s)\n' "$1" "$2" >>"$PHASES"; echo "# $1: skipped ($2)"; }

# --- the machine ---------------------------------------------------------------------
if [[ $DRY_RUN == 1 ]]; then
  gpu_name="dry run (no GPU)"
  arch=none
else
  gpu_info=$("$PYTHON" - <<'EOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device visible to torch: gpu_check needs a GPU (GPU_CHECK_DRY_RUN=1 tests the script without one)")
major, minor = torch.cuda.get_device_capability()
print(f"{major}.{minor}")
print(torch.cuda.get_device_name())
EOF
  ) || { echo "$gpu_info"; exit 1; }
  arch=$(sed -n 1p <<<"$gpu_info")
  gpu_name=$(sed -n 2p <<<"$gpu_info")
  # nvidia-smi, where present, has the final word on the arch torch builds for.
  smi_arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')
  [[ -n "$smi_arch" ]] && arch=$smi_arch
fi
tag=$(tr -c 'A-Za-z0-9\n' '_' <<<"$gpu_name" | tr -s '_' | sed 's/^_//; s/_$//')
JOINED_LOG="$OUT/gpu_check_$tag.log"
echo "# GPU: $gpu_name (arch $arch), python $PYTHON, CUDA_HOME=$CUDA_HOME, OUT=$OUT, dry run: $DRY_RUN" | tee "$JOINED_LOG"

# --- 1. build --------------------------------------------------------------------------
build_ok=1
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
  skip build "SKIP_BUILD=1"
elif [[ $DRY_RUN == 1 ]]; then
  # CPU only, out of place: the working tree's extension (CI's CUDA build) stays as it is.
  phase build "$T_BUILD" "$LOGS/build.log" env -u FORCE_CUDA "$PYTHON" setup.py build_ext \
    --build-lib build/gpu_check_dry/lib --build-temp build/gpu_check_dry/temp || build_ok=0
  if [[ $build_ok == 1 ]] && ! compgen -G "build/gpu_check_dry/lib/cubecrop/_C*.so" >/dev/null; then
    echo "gpu_check: the dry-run build produced no build/gpu_check_dry/lib/cubecrop/_C*.so" >&2
    build_ok=0
  fi
else
  rm -f cubecrop/_C*.so
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch}
  phase build "$T_BUILD" "$LOGS/build.log" env FORCE_CUDA=1 "$PYTHON" setup.py build_ext --inplace \
    --build-temp build/gpu_check_temp || build_ok=0
  grep -E "warning|error" "$LOGS/build.log" | grep -E "csrc/" | head -20
fi
if [[ $DRY_RUN != 1 && $build_ok == 1 ]]; then
  phase kernels_registered 30 "$LOGS/kernels_registered.log" "$PYTHON" - "$ROOT" <<'EOF' || build_ok=0
import os, sys
import cubecrop, cubecrop._C
so = os.path.realpath(cubecrop._C.__file__)
print(f"cubecrop._C: {so}")
if not so.startswith(os.path.realpath(sys.argv[1]) + os.sep):
    raise SystemExit(f"cubecrop._C was loaded from {so}, not from this checkout")
missing = [op for op in ("crop_cubes", "crop_cubes_backward", "crop_cubes_int")
           if not cubecrop._extension.has_kernel(op, "CUDA")]
if missing:
    raise SystemExit(f"the build registered no CUDA kernel for {missing}: every CUDA test would be skipped")
print("CUDA kernels registered for crop_cubes, crop_cubes_backward, crop_cubes_int")
EOF
fi

# --- 2. tests ---------------------------------------------------------------------------
# GPU tests only: the op tests on the cuda and triton backends (conftest.py's override),
# the CUDA kernel tests, the Triton package, trace safety on the real driver. Every new
# cube shape is a Triton autotune key: one config each keeps the phase in its limit.
tests=(tests/test_cuda_ops.py tests/test_trace_safety.py tests/test_triton_ops.py)
for f in tests/test_ops_*.py; do
  [[ $f == tests/test_ops_reference.py ]] && continue  # the float64 reference alone, on CPU
  tests+=("$f")
done
test_env=(env CUBECROP_TEST_BACKENDS=cuda:cuda,cuda:triton CUBECROP_TRITON_ONE_CONFIG=1)
pytest_args=(-q -rs -p no:cacheprovider)
if [[ $DRY_RUN == 1 ]]; then
  phase tests "$T_TESTS" "$LOGS/tests.log" "${test_env[@]}" "$PYTHON" -m pytest "${pytest_args[@]}" \
    --collect-only "${tests[@]}"
elif [[ $build_ok == 1 ]]; then
  phase tests "$T_TESTS" "$LOGS/tests.log" "${test_env[@]}" "$PYTHON" -m pytest "${pytest_args[@]}" \
    --junitxml="$OUT/gpu_tests_$tag.xml" "${tests[@]}"
else
  skip tests "the build failed"
fi

# --- 3, 4, 5. benchmarks ----------------------------------------------------------------
if [[ $DRY_RUN == 1 ]]; then
  skip bench "dry run"
  skip bench_deterministic "dry run"
  skip bench_inference "dry run"
elif [[ $build_ok == 1 ]]; then
  phase bench "$T_BENCH" "$LOGS/bench.log" "$PYTHON" benchmarks/bench_ops.py --device cuda \
    --out "$OUT/bench_ops_cuda_$tag.json"
  phase bench_deterministic "$T_DET" "$LOGS/bench_deterministic.log" "$PYTHON" benchmarks/bench_ops.py \
    --device cuda --deterministic --workloads tsm --repeats 10 --out "$OUT/bench_ops_cuda_deterministic_$tag.json"
  # Random weights and videos of the preset's size; stdout is the JSON, the rest goes to the log.
  phase bench_inference "$T_INFER" "$LOGS/bench_inference.log" bash -c '"$0" -m adafocus bench \
    --config configs/paper_tsm.yaml --train.device cuda --batch-size 128 --dtype bf16 --exit-mix 0.3,0.7,0 \
    --video-size 24,224,224 --iterations 2 --rounds 3 --json >"$1.tmp" && mv "$1.tmp" "$1"' \
    "$PYTHON" "$OUT/bench_inference_cuda_$tag.json"
else
  skip bench "the build failed"
  skip bench_deterministic "the build failed"
  skip bench_inference "the build failed"
fi

# --- 5. summary -------------------------------------------------------------------------
"$PYTHON" - "$OUT" "$LOGS" "$tag" "$gpu_name" "$arch" "$DRY_RUN" "$(( $(date +%s) - START ))" "${tests[@]}" <<'EOF'
import json, os, re, sys, xml.etree.ElementTree as ET

sys.path.insert(0, os.getcwd())
from adafocus.utils.files import atomic_write

out, logs, tag, gpu, arch, dry_run, seconds, *tests = sys.argv[1:]
phases = {}
with open(os.path.join(logs, "phases.tsv")) as f:
    for line in f:
        name, rc, took, status = line.rstrip("\n").split("\t")
        phases[name] = {"status": status, "rc": int(rc) if rc else None, "seconds": int(took)}
try:
    import torch
    versions = {"torch": torch.__version__, "cuda": torch.version.cuda}
except Exception as error:  # the summary is still written
    versions = {"torch": f"not importable: {error}", "cuda": None}
summary = {"gpu": gpu, "compute_capability": arch, "dry_run": dry_run == "1", **versions,
           "seconds": int(seconds), "phases": phases, "test_files": tests}
log = os.path.join(logs, "tests.log")
if dry_run == "1" and os.path.exists(log):
    found = re.search(r"(\d+) tests? collected", open(log).read())
    summary["tests_selected"] = int(found.group(1)) if found else 0
junit = os.path.join(out, f"gpu_tests_{tag}.xml")
if os.path.exists(junit):
    suites = ET.parse(junit).getroot()
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    summary["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    summary["tests"]["seconds"] = float(suite.get("time", 0))

lines = [f"# GPU check: {gpu} (compute capability {arch}), torch {versions['torch']}, CUDA {versions['cuda']}", ""]
if dry_run == "1":
    lines += ["Dry run (GPU_CHECK_DRY_RUN=1): CPU build, test selection only, no GPU phase.", ""]
lines += ["| phase | status | seconds |", "|---|---|---|"]
lines += [f"| {name} | {p['status']} | {p['seconds']} |" for name, p in phases.items()]
lines += ["", f"Total: {seconds} s."]
if "tests_selected" in summary:
    lines.append(f"Tests selected: {summary['tests_selected']} ({', '.join(tests)}).")
if "tests" in summary:
    t = summary["tests"]
    lines.append(f"Tests: {t['tests']} run, {t['failures']} failed, {t['errors']} errors, {t['skipped']} skipped "
                 f"in {t['seconds']:.0f} s.")
for label, name in (("default (atomic video gradient)", f"bench_ops_cuda_{tag}.json"),
                    ("deterministic mode, TSM", f"bench_ops_cuda_deterministic_{tag}.json")):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        continue
    report = json.load(open(path))
    rows = report.get("results") or []
    summary[name] = {"copy_bandwidth_GBs": report.get("copy_bandwidth_GBs"), "results": rows}
    lines += ["", f"## Benchmark, {label}", ""]
    if report.get("copy_bandwidth_GBs"):
        lines += [f"Copy bandwidth (clone): {report['copy_bandwidth_GBs']:.0f} GB/s.", ""]
    if rows:
        keys = list(rows[0].keys())
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for row in rows:
            cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (row.get(k) for k in keys)]
            lines.append("| " + " | ".join(cells) + " |")
path = os.path.join(out, f"bench_inference_cuda_{tag}.json")
if os.path.exists(path):
    try:
        report = json.load(open(path))
        v = report["videos_per_s"]
        summary["bench_inference"] = {k: report.get(k) for k in ("batch_size", "dtype", "exit_fractions", "gmacs",
                                                                  "videos_per_s", "gmacs_per_s", "speedup_vs_baseline")}
        lines += ["", f"## Inference, paper_tsm, batch {report['batch_size']}, {report['dtype']} (adafocus bench)", "",
                  "| variant | GMACs/video | videos/s | vs baseline |", "|---|---|---|---|"]
        for key in ("early_exit", "all_cubes", "glance_only", "baseline"):
            lines.append(f"| {key} | {report['gmacs'][key]:.2f} | {v[key]:.1f} | {v[key] / v['baseline']:.2f}x |")
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as error:  # the summary is still written
        lines += ["", f"bench_inference_cuda_{tag}.json unreadable: {error}"]
with atomic_write(os.path.join(out, f"gpu_check_{tag}.json")) as f:
    json.dump(summary, f, indent=2)
with atomic_write(os.path.join(out, f"gpu_check_{tag}.md")) as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"# wrote {out}/gpu_check_{tag}.json and .md")
EOF
summary_rc=$?

# Fails when any phase that ran did not pass (skipped phases of a dry run do not count).
if grep -qE $'\t(failed|timeout)$' "$PHASES" || [[ $summary_rc -ne 0 ]]; then exit 1; fi
if [[ $DRY_RUN != 1 ]] && ! grep -qE $'^tests\t0\t' "$PHASES"; then exit 1; fi
exit 0
