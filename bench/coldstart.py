"""Cold start: weights on local disk -> engine ready, each in a fresh process, per cache state.

States (a new interpreter each, with its own empty Inductor/Triton cache directories, as in a new
container; they share one weight-cache directory, whose contents each state sets up):

* `eager_uncached`   eager engine, empty cache: reads the official files, writes the weight cache
* `eager_cached`     eager engine, weight cache filled
* `compiled_first`   torch.compile (CUDA graphs), nothing compiled yet: compiles, saves mega-cache
* `compiled_cached`  torch.compile with the mega-cache artifacts `compiled_first` saved
* `aot_build`        AOT packages absent: built in this start (minutes), then loaded
* `aot`              AOT packages present (`python -m runtime.engine build-artifacts`)
* `aot_no_graphs`    the same without CUDA graphs around the packages

"Ready" = `MuseTalkEngine.load` returned and one batch went through the UNet and the decoder.
Each probe reports seconds from interpreter start (the parent's clock just before it spawns the
process) and from after `import torch`, which model libraries were imported by then, and the
first audio features after ready. `--imports` times the imports alone, optionally in a minimal
environment (`--minimal-env`: a venv that sees only torch and the engine's requirements, as the
worker image would) to compare with the machine's full image; `--probes-in-minimal-env` runs
the states there too, and `--importtime` runs each probe under `-X importtime` and reports its
slowest imports. `bench/coldstart_device.sh` chains the whole experiment for one device call.

    python bench/coldstart.py --models /tmp/models --out coldstart.json
    python bench/coldstart.py --models /tmp/tiny --device cpu --states eager_uncached,eager_cached
    python bench/coldstart.py --models /tmp/models --states eager_cached,aot --importtime \
        --minimal-env /tmp/minenv --probes-in-minimal-env
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*` when run as a script

from bench.coldstart_aot import COMPARE_VARIANTS, compare_with_eager, synchronize
from bench.no_faces import NoFaces

ROOT = Path(__file__).resolve().parents[1]
STATES = (
    "eager_uncached",
    "eager_cached",
    "compiled_first",
    "compiled_cached",
    "aot_build",
    "aot",
    "aot_no_graphs",
)
DEFAULT_STATES = "eager_uncached,eager_cached,aot,aot"
COMPILE_MODE = "reduce-overhead"
# The engine's own imports, then what the eager path adds (timed one by one, in this order).
IMPORT_STEPS = (
    ("torch", "import torch"),
    ("cuda_init", "torch.cuda.is_available() and torch.zeros(1, device='cuda').sum().item()"),
    ("engine", "import runtime.engine.engine"),
    ("aoti_loader", "torch._C._aoti.AOTIModelPackageLoader"),
    ("transformers_extractor", "from transformers import WhisperFeatureExtractor"),
    ("transformers_model", "from transformers import WhisperModel"),
    ("diffusers_models", "from diffusers import AutoencoderKL, UNet2DConditionModel"),
    ("inductor_package_api", "from torch._inductor.package import load_package"),
)
# Requirements of the worker image that the engine's import path touches (plus torch).
MINIMAL_REQUIREMENTS = (
    "torch",
    "numpy",
    "opencv-python",
    "opencv-python-headless",
    "av",
    "soxr",
    "safetensors",
    "diffusers",
    "transformers",
    "scipy",
    "pydantic",
)


# ------------------------------------------------------------------------------ in the probe


def probe(state: str, models: Path, device_name: str, cache_dir: Path, launched_at: float) -> None:
    """One cold start in this (fresh) process; prints one JSON line."""
    began = time.time()
    import torch

    torch_done = time.time()
    import numpy as np

    from runtime.engine.engine import MuseTalkEngine

    device = torch.device(device_name)
    compiled = state.startswith("compiled")
    aot = state.startswith("aot")
    engine = MuseTalkEngine.load(
        models,
        device,
        # the face models are not part of the ready path measured here (preparation loads them)
        locator=NoFaces("the cold-start probe"),
        parser=NoFaces("the cold-start probe"),
        compile_models=compiled or aot,
        compile_mode=COMPILE_MODE if device.type == "cuda" else None,
        aot_packages=aot,
        cache_dir=cache_dir,
    )
    synchronize(torch, device)
    loaded = time.time()
    batch = engine.pick_batch_size()
    with torch.inference_mode():  # as in speak (a compiled graph guards on it)
        latents = torch.zeros(batch, 8, 32, 32, device=device, dtype=engine.dtype)
        audio = torch.zeros(batch, 50, 384, device=device, dtype=engine.dtype)
        engine.codec.decode(engine.generator.step(latents, audio))
    synchronize(torch, device)
    ready = time.time()
    libraries_at_ready = _model_libraries()
    engine.audio_encoder.frame_tokens(np.zeros(16000, dtype=np.float32), 25)
    synchronize(torch, device)
    first_audio = time.time()
    report = {
        "state": state,
        "aot": engine.aot,
        "batch": batch,
        "interpreter_to_torch_s": round(torch_done - launched_at, 2),
        "from_interpreter_start": {
            "load_s": round(loaded - launched_at, 2),
            "ready_s": round(ready - launched_at, 2),
        },
        "from_after_import_torch": {
            "load_s": round(loaded - torch_done, 2),
            "ready_s": round(ready - torch_done, 2),
        },
        "python_start_s": round(began - launched_at, 3),
        "first_audio_tokens_after_ready_s": round(first_audio - ready, 2),
        "load_ms": {stage: round(ms, 1) for stage, ms in engine.load_timings_ms.items()},
        "model_libraries_imported_at_ready": libraries_at_ready,
        "model_libraries_imported_after_audio": _model_libraries(),
        "compile_artifacts_loaded": engine.compile_artifacts_loaded,
    }
    print(json.dumps(report), flush=True)


def _model_libraries() -> list[str]:
    return [name for name in ("diffusers", "transformers", "torch._dynamo") if name in sys.modules]


def time_imports() -> None:
    """Each of `IMPORT_STEPS` in order, in this fresh process; prints one JSON line."""
    seconds: dict[str, float] = {}
    scope: dict[str, Any] = {}
    for name, statement in IMPORT_STEPS:
        start = time.perf_counter()
        try:
            exec(statement, scope)  # noqa: S102  # nosec B102 (constant statements above)
        except Exception as error:  # report a missing library, keep timing the rest
            seconds[name] = -1.0
            scope.setdefault("errors", {})[name] = repr(error)[:200]
            continue
        seconds[name] = round(time.perf_counter() - start, 2)
    print(json.dumps({"import_s": seconds, "errors": scope.get("errors", {})}), flush=True)


# -------------------------------------------------------------------------------- the parent


def run_probe(
    state: str,
    models: Path,
    device: str,
    cache_dir: Path,
    inductor_dir: Path,
    *,
    python: str = sys.executable,
    inherit_path: bool = True,
    importtime: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """`probe` in a new interpreter with empty Inductor/Triton caches of its own; `python` and
    `inherit_path` as for `imports_in`; `importtime`: with `-X importtime`, whose slowest
    imports are reported (the tracing itself adds a little to the clock)."""
    extra = os.environ.get("PYTHONPATH", "") if inherit_path else ""
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": str(inductor_dir / "inductor"),
        "TRITON_CACHE_DIR": str(inductor_dir / "triton"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), extra]),
    }
    if state == "aot_no_graphs":
        env["MUSETALK_AOT_CUDA_GRAPHS"] = ""
    launched_at = time.time()
    command = [python, *(["-X", "importtime"] if importtime else []), __file__, "--probe", state]
    command += ["--models", str(models), "--device", device]
    command += ["--cache-dir", str(cache_dir), "--launched-at", repr(launched_at)]
    if timeout_s:
        command += ["--dump-after", repr(max(timeout_s - 5, 1))]
    try:
        done = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, check=False, env=env, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as expired:  # e.g. a fallback to torch.compile: minutes
        captured: str | bytes = expired.stderr or b""  # bytes even with text=True
        stderr = captured.decode(errors="replace") if isinstance(captured, bytes) else captured
        result: dict[str, Any] = {
            "state": state,
            "error": f"no result within {timeout_s} s",
            "stderr_tail": "\n".join(
                line for line in stderr.splitlines() if "import time" not in line
            )[-3000:],
        }
        print(json.dumps({"cold_start": result}), flush=True)
        return result
    result = _last_json(done.stdout) or {
        "state": state,
        "returncode": done.returncode,
        "error": done.stderr[-1500:],
    }
    if importtime:
        result["slowest_imports"] = slowest_imports(done.stderr)
    result["environment"] = "full image" if inherit_path else "minimal"
    result["loader"] = os.environ.get("MUSETALK_AOT_LOADER", "direct")
    result["process_wall_s"] = round(time.time() - launched_at, 2)
    print(json.dumps({"cold_start": result}), flush=True)
    return result


def slowest_imports(stderr: str, count: int = 12) -> dict[str, dict[str, float]]:
    """From `-X importtime` output: the top-level imports by cumulative seconds, and the
    modules that cost most themselves (self seconds)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(own), int(cumulative), name.rstrip()))
    top_level = [row for row in rows if not row[2].startswith("  ")]
    by_total = sorted(top_level, key=lambda row: -row[1])[:count]
    by_self = sorted(rows, key=lambda row: -row[0])[:count]
    return {
        "top_level_cumulative_s": {
            name.strip(): round(total / 1e6, 3) for _, total, name in by_total
        },
        "self_s": {name.strip(): round(own / 1e6, 3) for own, _, name in by_self},
    }


def prepare_state(state: str, cache_dir: Path) -> None:
    """Leave in `cache_dir` exactly what `state` starts from."""
    if state == "eager_uncached":
        shutil.rmtree(cache_dir, ignore_errors=True)
    elif state == "compiled_first":
        for artifacts in cache_dir.glob("compiled-*.bin"):
            artifacts.unlink()
    elif state == "aot_build":
        shutil.rmtree(cache_dir / "aot", ignore_errors=True)


def cold_starts(
    models: Path,
    device: str,
    states: Sequence[str],
    work: Path,
    *,
    cache_dir: Path | None = None,
    python: str = sys.executable,
    inherit_path: bool = True,
    importtime: bool = False,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """Every state in order (repeats allowed) in fresh processes sharing `cache_dir`."""
    cache = cache_dir or work / "cache"
    results = []
    for number, state in enumerate(states):
        if state not in STATES:
            raise ValueError(f"unknown cold-start state {state!r} (one of {', '.join(STATES)})")
        prepare_state(state, cache)
        inductor = work / f"inductor-{number}"
        results.append(
            run_probe(
                state,
                models,
                device,
                cache,
                inductor,
                python=python,
                inherit_path=inherit_path,
                importtime=importtime,
                timeout_s=timeout_s,
            )
        )
    return results


def imports_in(python: str, *, inherit_path: bool) -> dict[str, Any]:
    """`time_imports` in a fresh `python`; `inherit_path`: keep this process's PYTHONPATH (the
    full image's extra wheels), else only the repository (a minimal venv sees nothing else)."""
    extra = os.environ.get("PYTHONPATH", "") if inherit_path else ""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), extra])}
    start = time.time()
    done = subprocess.run(  # noqa: S603
        [python, __file__, "--time-imports"], capture_output=True, text=True, check=False, env=env
    )
    result = _last_json(done.stdout) or {"error": done.stderr[-1500:]}
    result["process_wall_s"] = round(time.time() - start, 2)
    return result


def make_minimal_env(directory: Path, requirements: Sequence[str] = MINIMAL_REQUIREMENTS) -> dict:
    """A venv without system site-packages that sees only `requirements` and what they need
    (symlinks to this interpreter's installed distributions): the worker image's view. torch's
    CUDA libraries (nvidia-*, cuda-*) and triton are linked whatever their markers and extras
    say (they vary by build)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    site = directory / "linked"
    site.mkdir(parents=True, exist_ok=True)
    runtime_libraries = [
        name
        for dist in metadata.distributions()
        if (name := (dist.metadata["Name"] or ""))
        .lower()
        .startswith(("nvidia-", "cuda-", "triton"))
    ]
    wanted: list[tuple[str, frozenset[str]]] = [
        (name, frozenset()) for name in [*requirements, *runtime_libraries]
    ]
    seen: set[str] = set()
    followed: set[tuple[str, frozenset[str]]] = set()
    missing: list[str] = []
    while wanted:
        name, extras = wanted.pop()
        name = name.lower().replace("_", "-")
        if (name, extras) in followed:
            continue
        followed.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        for requirement in dist.requires or []:
            parsed = Requirement(requirement)
            environments = [{"extra": extra} for extra in extras or {""}]
            if parsed.marker is None or any(map(parsed.marker.evaluate, environments)):
                wanted.append((parsed.name, frozenset(parsed.extras)))
        if name in seen:
            continue
        seen.add(name)
        for file in dist.files or []:
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            link = site / top
            if not link.exists() and not link.is_symlink():
                link.symlink_to(Path(str(dist.locate_file(top))))
    python = _venv_python(directory, site)
    return {
        "python": str(python),
        "distributions": len(seen),
        "not_installed": sorted(set(missing)),
    }


def _venv_python(directory: Path, site: Path) -> Path:
    """A venv's interpreter whose only site directory is `site`; where `venv` is unavailable,
    a wrapper that runs this interpreter without its site-packages (-S) and with `site`."""
    venv = directory / "venv"
    created = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=False
    )
    if created.returncode == 0:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        (venv / "lib" / version / "site-packages" / "linked.pth").write_text(f"{site}\n")
        return venv / "bin" / "python"
    wrapper = directory / "python"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="${{PYTHONPATH}}:{site}" exec {sys.executable} -S "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def _default_cache(models: Path) -> Path:
    from runtime.engine.weight_cache import default_cache_dir

    return default_cache_dir(models)


def _last_json(stdout: str) -> dict[str, Any] | None:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--states", default=DEFAULT_STATES, help=f"of {', '.join(STATES)}")
    parser.add_argument("--cache-dir", type=Path, help="weight/compile/AOT cache for the states")
    parser.add_argument("--imports", action="store_true", help="also time the imports alone")
    parser.add_argument("--minimal-env", type=Path, help="build a minimal venv here, time it too")
    parser.add_argument(
        "--probes-in-minimal-env",
        action="store_true",
        help="run the cold-start states in the --minimal-env venv (not the full image)",
    )
    parser.add_argument("--importtime", action="store_true", help="probes with -X importtime")
    parser.add_argument("--probe-timeout", type=float, help="seconds before a probe is given up")
    parser.add_argument(
        "--compare",
        metavar="VARIANTS",
        help=f"AOT vs eager in-process (ms/frame, PSNR), some of {','.join(COMPARE_VARIANTS)}",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--probe", choices=STATES, help=argparse.SUPPRESS)
    parser.add_argument("--launched-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--dump-after", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--time-imports", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.time_imports:
        time_imports()
        return {}
    if args.probe:
        if args.dump_after:  # every thread's stack on stderr, which a timed-out run reports
            faulthandler.dump_traceback_later(args.dump_after)
        probe(args.probe, args.models, args.device, args.cache_dir, args.launched_at)
        return {}
    report: dict[str, Any] = {"device": args.device}
    work = Path(tempfile.mkdtemp(prefix="coldstart-"))
    if args.imports:
        report["imports_full_image"] = imports_in(sys.executable, inherit_path=True)
    probe_python, inherit_path = sys.executable, True
    if args.minimal_env:
        env = make_minimal_env(args.minimal_env)
        report["minimal_env"] = env
        report["imports_minimal_env"] = imports_in(env["python"], inherit_path=False)
        if args.probes_in_minimal_env:
            probe_python, inherit_path = env["python"], False
    if args.compare:
        report["aot_vs_eager"] = compare_with_eager(
            args.models,
            args.device,
            args.cache_dir or _default_cache(args.models),
            args.compare.split(","),
        )
    if args.models and args.states:
        states = [state for state in args.states.split(",") if state]
        report["cold_starts"] = cold_starts(
            args.models,
            args.device,
            states,
            work,
            cache_dir=args.cache_dir,
            python=probe_python,
            inherit_path=inherit_path,
            importtime=args.importtime,
            timeout_s=args.probe_timeout,
        )
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
