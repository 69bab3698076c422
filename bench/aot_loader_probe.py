"""Which AOTInductor build and load variants work on this machine, and where a crash is.

Session 3 saw every CUDA package crash its process (SIGSEGV) inside torch's package loader on
the H100 image (torch 2.11.0+cu130). This script builds small packages several ways and loads
each in a fresh interpreter that has a native crash handler preloaded (a tiny C shim compiled
here with the C++ compiler: `backtrace_symbols_fd` on SIGSEGV/SIGBUS/SIGABRT) and Python's
faulthandler on, so a crash leaves both stacks in the report instead of a bare exit code.

Variants (each one step = one fresh process unless it says "same"):

* model  `small` (a conv/GroupNorm/upsample module, seconds to build) or `whisper` (the
  full-size Whisper encoder of `--models`, as the engine packages it)
* build  `inside`  Inductor's default: the weights compiled into the shared library
         `outside` `aot_inductor.package_constants_in_so=False`; weights in a safetensors file,
                   handed to the loader with `load_constants` (what the engine does now)
         `legacy`  `torch._export.aot_compile` to a bare .so, loaded with `torch._export.aot_load`
* load   `fresh` (a new process) or `same` (in the process that built it)
* flags  optional, `+`-joined: extra compiler/linker flags for the generated library, through a
         `g++` wrapper (`FLAG_SETS`): `hidden` (-fvisibility-inlines-hidden: its inline template
         code, e.g. std::regex, cannot be bound to another library's copy), `symbolic`
         (-Wl,-Bsymbolic: its references bind to its own definitions), `noasneeded`
         (-Wl,--no-as-needed: libstdc++ stays a dependency under Ubuntu's default --as-needed),
         `isolated` (-static-libstdc++ with its symbols kept local: the library carries its own
         C++ runtime and binds to no other copy)

    python bench/aot_loader_probe.py --out probe.json [--models /tmp/models] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLAG_SETS = {
    "hidden": ["-fvisibility-inlines-hidden"],
    "symbolic": ["-Wl,-Bsymbolic"],
    "noasneeded": ["-Wl,--no-as-needed"],
    "isolated": ["-static-libstdc++", "-Wl,--exclude-libs,ALL"],
}
# (model, device, build, load[, flags]); device "cuda" is replaced by --device
DEFAULT_MATRIX = (
    ("small", "cuda", "inside", "fresh"),
    ("small", "cuda", "inside", "same"),
    ("small", "cuda", "outside", "fresh"),
    ("small", "cuda", "outside", "same"),
    ("small", "cpu", "inside", "fresh"),
    ("small", "cuda", "legacy", "fresh"),
    ("whisper", "cuda", "outside", "fresh"),
    ("whisper", "cuda", "inside", "fresh"),
)
SHIM_SOURCE = r"""
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void report(int sig, siginfo_t *info, void *context) {
    (void)context;
    char line[160];
    int n = snprintf(line, sizeof line, "\n*** native signal %d (code %d) at address %p ***\n",
                     sig, info->si_code, info->si_addr);
    if (n > 0) write(2, line, (size_t)n);
    void *frames[96];
    int count = backtrace(frames, 96);
    backtrace_symbols_fd(frames, count, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void install(void) {
    static char stack[1 << 16];
    stack_t alternate = {.ss_sp = stack, .ss_size = sizeof stack, .ss_flags = 0};
    sigaltstack(&alternate, NULL);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = report;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    int signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE};
    for (unsigned i = 0; i < sizeof signals / sizeof *signals; i++)
        sigaction(signals[i], &action, NULL);
}
"""


def build_shim(directory: Path) -> Path | None:
    """The crash-handler library, or None where no C++ compiler is found."""
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("gcc")
    if compiler is None:
        return None
    source, library = directory / "segv_backtrace.c", directory / "segv_backtrace.so"
    source.write_text(SHIM_SOURCE)
    command = [compiler, "-x", "c", "-shared", "-fPIC", "-O1", str(source), "-o", str(library)]
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603
    return library


# ------------------------------------------------------------------------ in the step process


class SmallModel:
    """Built lazily so that importing this script needs no torch."""

    @staticmethod
    def make() -> Any:
        import torch

        class Small(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = torch.nn.Conv2d(4, 64, 3, padding=1)
                self.norm = torch.nn.GroupNorm(8, 64)
                self.out = torch.nn.Conv2d(64, 3, 3, padding=1)

            def forward(self, latents: torch.Tensor) -> torch.Tensor:
                hidden = torch.nn.functional.silu(self.norm(self.conv(latents)))
                hidden = torch.nn.functional.interpolate(hidden, scale_factor=2.0, mode="nearest")
                return self.out(hidden)

        return Small()


def _model_and_inputs(name: str, device: Any, dtype: Any, models: Path | None) -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    if name == "small":
        module = SmallModel.make().to(device=device, dtype=dtype).eval()
        return module, (torch.randn(4, 4, 32, 32, device=device, dtype=dtype),)
    from runtime.engine import aot, aot_build
    from runtime.engine.audio import AudioEncoder
    from runtime.engine.layout import ModelsLayout

    assert models is not None, "--models is needed for the whisper step"  # nosec B101
    encoder = AudioEncoder(ModelsLayout(models).whisper_dir, device, dtype)
    module = aot_build.WhisperStates(encoder.encoder).eval()
    mel = torch.randn(1, encoder.extractor.feature_size, aot.MEL_FRAMES, device=device)
    return module, (mel.to(dtype),)


def step_build(args: argparse.Namespace) -> dict[str, Any]:
    """Build one package into args.dir (inputs and expected output beside it); with load
    `same`, load and run it here too."""
    import torch
    from safetensors.torch import save_file

    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    module, inputs = _model_and_inputs(args.model, device, dtype, args.models)
    directory = Path(args.dir)
    with torch.no_grad():
        expected = module(*inputs)
    torch.save([tensor.cpu() for tensor in inputs], directory / "inputs.pt")
    torch.save(expected.cpu(), directory / "expected.pt")
    report: dict[str, Any] = {}
    if args.flags:
        extra = [flag for name in args.flags.split("+") for flag in FLAG_SETS[name]]
        from runtime.engine.aot_build import compiler_wrapper

        # torch types `cxx` as (None, str), its default's shape, though inductor tries each
        # compiler in any tuple (torch's own default needs the same ignore)
        torch._inductor.config.cpp.cxx = (  # type: ignore[assignment]
            str(compiler_wrapper(directory / "bin", extra)),
        )
    start = time.perf_counter()
    if args.build == "legacy":
        with torch.no_grad():
            library = torch._export.aot_compile(module, inputs)
        if not isinstance(library, str):  # a list only with the aot_inductor.package option
            raise TypeError(f"aot_compile returned {type(library).__name__}, not a library path")
        shutil.copy(library, directory / "model.so")
    else:
        with torch.no_grad():
            exported = torch.export.export(module, inputs)
        configs = {"aot_inductor.package_constants_in_so": args.build == "inside"}
        torch._inductor.aoti_compile_and_package(
            exported, package_path=str(directory / "model.pt2"), inductor_configs=configs
        )
        if args.build == "outside":
            from runtime.engine.aot_build import exported_constants

            save_file(exported_constants(exported), str(directory / "constants.safetensors"))
        report["package_files"] = _package_listing(directory / "model.pt2")
    report["build_s"] = round(time.perf_counter() - start, 2)
    print(json.dumps({"built": report}), flush=True)
    if args.load == "same":
        report.update(step_load(args))
    return report


def step_load(args: argparse.Namespace) -> dict[str, Any]:
    """Load the package in args.dir, run it on the saved inputs, compare with eager."""
    import torch

    device = torch.device(args.device)
    directory = Path(args.dir)
    inputs = [tensor.to(device) for tensor in torch.load(directory / "inputs.pt")]
    expected = torch.load(directory / "expected.pt")
    index = device.index if device.index is not None else (0 if device.type == "cuda" else -1)
    print(json.dumps({"loading": args.build}), flush=True)
    start = time.perf_counter()
    if args.build == "legacy":
        runner = torch._export.aot_load(str(directory / "model.so"), args.device)
        loaded = time.perf_counter()
        output = runner(*inputs)
    else:
        loader = torch._C._aoti.AOTIModelPackageLoader(
            str(directory / "model.pt2"), "model", False, 1, index
        )
        print(json.dumps({"constructed": True}), flush=True)
        if args.build == "outside":
            from safetensors.torch import load_file

            constants = load_file(str(directory / "constants.safetensors"), device=str(device))
            names = loader.get_constant_fqns()
            loader.load_constants({name: constants[name] for name in names}, False, True, True)
        loaded = time.perf_counter()
        (output,) = loader.boxed_run(inputs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    ran = time.perf_counter()
    difference = (output.float().cpu() - expected.float()).abs().max().item()
    return {
        "load_s": round(loaded - start, 3),
        "first_run_s": round(ran - loaded, 3),
        "max_abs_diff": difference,
        "ok": bool(difference < (0.05 if output.dtype == torch.float16 else 1e-3)),
    }


def _package_listing(package: Path) -> dict[str, int]:
    """Largest members of a .pt2 (name tail: bytes)."""
    with zipfile.ZipFile(package) as archive:
        members = sorted(archive.infolist(), key=lambda info: -info.file_size)
        return {info.filename.rsplit("/", 1)[-1][-40:]: info.file_size for info in members[:6]}


# ------------------------------------------------------------------------------- the parent


def run_step(
    step: str,
    variant: Sequence[str],
    directory: Path,
    shim: Path | None,
    models: Path | None,
) -> dict[str, Any]:
    model, device, build, load, *flags = variant
    command = [sys.executable, "-X", "faulthandler", __file__, "--step", step, "--dir"]
    command += [str(directory), "--model", model, "--device", device, "--build", build]
    command += ["--load", load] + (["--models", str(models)] if models else [])
    command += ["--flags", flags[0]] if flags else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    if shim is not None:
        env["LD_PRELOAD"] = str(shim)
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = {
        "returncode": done.returncode,
        "wall_s": round(time.time() - start, 1),
    }
    for line in lines:
        result.update(line)
    if done.returncode != 0:
        result["stderr_tail"] = _crash_excerpt(done.stderr)
    return result


def _crash_excerpt(stderr: str, frames: int = 28) -> str:
    """The Python stack and the innermost native frames (demangled where c++filt exists, each
    line shortened to the library's file name and 240 characters), or the last lines of an
    ordinary error."""
    marker = stderr.find("Fatal Python error")
    if marker < 0:
        return stderr[-3000:]
    text = stderr[marker:]
    demangler = shutil.which("c++filt")
    if demangler:
        text = subprocess.run(  # noqa: S603
            [demangler], input=text, capture_output=True, text=True, check=False
        ).stdout
    python_stack, _, native = text.partition("*** native signal")
    lines = native.splitlines()
    shortened = [lines[0], *(_short_frame(line) for line in lines[1 : frames + 1])]
    return python_stack[:2500] + "*** native signal" + "\n".join(shortened)


def _short_frame(line: str) -> str:
    """`/long/path/lib.so(symbol+0x1)[0x2]` -> `lib.so(symbol+0x1)`, at most 240 characters."""
    library, _, rest = line.partition("(")
    short = f"{library.rsplit('/', 1)[-1]}({rest.rsplit('[', 1)[0]}" if rest else line
    return short[:240]


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    from torch.utils.cpp_extension import CUDA_HOME

    info["CUDA_HOME"] = CUDA_HOME
    for tool in ("nvcc", "g++", "c++filt", "cuda-gdb"):
        info[f"which_{tool}"] = shutil.which(tool)
    for tool, argument in (("nvcc", "--version"), ("g++", "--version")):
        if path := shutil.which(tool):
            lines = _output([path, argument]).strip().splitlines()
            info[f"{tool}_version"] = lines[-1] if tool == "nvcc" else lines[0]
    libtorch = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    if libtorch.is_file():
        info["libtorch_cpu"] = _symbol_facts(libtorch)
    mounts = Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").exists() else []
    info["tmp_mount"] = [line for line in mounts if " /tmp " in line]
    return info


def _output(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    return done.stdout


def library_facts(package: Path, work: Path) -> dict[str, Any]:
    """What the package's shared library links (`ldd`, its NEEDED entries) and how many
    std::regex/std::locale symbols it defines and exports (which another library's copy could
    take the place of, or which could take the place of another's)."""
    with zipfile.ZipFile(package) as archive:
        names = [name for name in archive.namelist() if name.endswith(".so")]
        if not names:
            return {}
        library = Path(archive.extract(names[0], work / "extracted"))
    return {"ldd": _lines(["ldd", str(library)]), **_symbol_facts(library)}


def _symbol_facts(library: Path) -> dict[str, Any]:
    needed = [line.split("[")[-1].rstrip("]") for line in _lines(["readelf", "-d", str(library)])]
    exported = _lines(["nm", "-D", "--defined-only", "-C", str(library)])
    return {
        "needed": [name for name in needed if name.endswith((".so", ".so.6", ".so.1", ".so.2"))],
        "exports_regex_symbols": sum("regex_traits<char>" in line for line in exported),
        "exports_locale_symbols": sum("std::locale" in line for line in exported),
    }


def _lines(command: list[str]) -> list[str]:
    if shutil.which(command[0]) is None:
        return []
    return [line.strip() for line in _output(command).splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", type=Path, help="models directory (for the whisper steps)")
    parser.add_argument("--only", help="comma-separated variants model/device/build/load")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--step", choices=["build", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--flags", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step == "build":
        print(json.dumps(step_build(args)), flush=True)
        return {}
    if args.step == "load":
        print(json.dumps(step_load(args)), flush=True)
        return {}
    work = Path(tempfile.mkdtemp(prefix="aot-probe-"))
    shim = build_shim(work)
    report: dict[str, Any] = {"environment": environment(), "shim": bool(shim), "variants": []}
    matrix = (
        [tuple(item.split("/")) for item in args.only.split(",")]
        if args.only
        else list(DEFAULT_MATRIX)
    )
    for model, device, build, load, *flags in matrix:
        if model == "whisper" and args.models is None:
            continue
        variant = (model, args.device if device == "cuda" else device, build, load, *flags)
        directory = work / "-".join(variant)
        directory.mkdir()
        entry: dict[str, Any] = {"variant": "/".join(variant)}
        entry["build"] = run_step("build", variant, directory, shim, args.models)
        if load == "fresh" and entry["build"]["returncode"] == 0:
            entry["load"] = run_step("load", variant, directory, shim, args.models)
            if build != "legacy":
                entry["library"] = library_facts(directory / "model.pt2", directory)
        report["variants"].append(entry)
        print(json.dumps(entry), flush=True)
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    summary = {
        entry["variant"]: (entry.get("load") or entry["build"]).get("ok", "crash/error")
        for entry in report["variants"]
    }
    report["summary"] = summary
    print(json.dumps({"summary": summary}, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
