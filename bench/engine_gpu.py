"""GPU benchmark of the engine's per-frame stages on FULL-SIZE random weights.

Writes full-size random UNet, VAE and Whisper files (the official formats, as make-weights
does), loads them the way the engine does, and measures per batch size: UNet step, VAE decode,
blend (on 704x1216 frames, the sample's size) and the peak GPU memory per batch item, which sets
`GPU_BYTES_PER_ITEM` in `runtime/engine/engine.py`. Needs torch with CUDA, diffusers and
transformers only (no media stack, no pydantic), so it runs on a bare GPU box.

    python bench/engine_gpu.py --out bench.json --models DIR [--dtype fp16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from runtime.engine.blend import PasteBox, paste_faces
from runtime.engine.configs import VAE_CONFIG, WHISPER_CONFIG, unet_config
from runtime.engine.latents import Generator, LatentCodec

BATCH_SIZES = [1, 4, 8, 16, 32, 48, 64]
FRAME_HEIGHT, FRAME_WIDTH = 1216, 704
BOX = (200, 420, 520, 800)  # a 320x380 face box, about the sample's


def timed(fn, repeats: int = 5) -> tuple[float, object]:
    result = fn()  # warm-up (kernel selection)
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), result


def write_models(root: Path) -> None:
    """musetalkV15/, sd-vae/ and whisper/ with random full-size weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperModel

    (root / "musetalkV15").mkdir(parents=True)
    config = unet_config(tiny=False)
    unet = UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    torch.save(unet.state_dict(), root / "musetalkV15" / "unet.pth")
    (root / "musetalkV15" / "musetalk.json").write_text(json.dumps(config))
    AutoencoderKL(**VAE_CONFIG).save_pretrained(root / "sd-vae", safe_serialization=False)
    whisper_config = WhisperConfig(**WHISPER_CONFIG)
    whisper_config.save_pretrained(root / "whisper")
    torch.save(WhisperModel(whisper_config).state_dict(), root / "whisper" / "pytorch_model.bin")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="written if missing")
    parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16")
    args = parser.parse_args()
    device = torch.device("cuda")
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    report: dict[str, object] = {"gpu": torch.cuda.get_device_name(), "dtype": args.dtype}

    start = time.perf_counter()
    root = args.models
    if not root.exists():
        write_models(root)
    report["write_models_s"] = round(time.perf_counter() - start, 1)
    report["unet_file_mb"] = round((root / "musetalkV15" / "unet.pth").stat().st_size / 1e6)

    start = time.perf_counter()
    generator = Generator(
        root / "musetalkV15" / "musetalk.json", root / "musetalkV15" / "unet.pth", device, dtype
    )
    codec = LatentCodec(root / "sd-vae", device, dtype)
    report["load_s"] = round(time.perf_counter() - start, 1)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    report["weights_gpu_mb"] = round(base / 1e6)

    from transformers import WhisperModel

    encoder = WhisperModel.from_pretrained(root / "whisper").get_encoder().to(device, dtype)
    mels = torch.randn(2, 80, 3000, device=device, dtype=dtype)  # 60 s of audio
    with torch.inference_mode():
        whisper_ms, _ = timed(lambda e=encoder: e(mels, output_hidden_states=True))
    report["whisper_60s_ms"] = round(whisper_ms, 1)
    del encoder
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()

    frame = torch.randint(0, 256, (FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=torch.uint8)
    x1, y1, x2, y2 = BOX
    box = PasteBox(x1, y1, x2, y2, FRAME_WIDTH, FRAME_HEIGHT)
    mask = torch.randint(0, 256, (y2 - y1, x2 - x1), dtype=torch.uint8, device=device)
    rows = []
    for batch in BATCH_SIZES:
        latents = torch.randn(batch, 8, 32, 32, device=device)
        audio = torch.randn(batch, 50, 384, device=device)
        crops = np.random.default_rng(0).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
        torch.cuda.reset_peak_memory_stats()
        unet_ms, predicted = timed(
            lambda latents=latents, audio=audio: generator.step(latents, audio)
        )
        decode_ms, faces = timed(lambda predicted=predicted: codec.decode(predicted))
        peak = torch.cuda.max_memory_allocated() - base

        def blend(faces=faces):
            regions = [frame[y1:y2, x1:x2].to(device, non_blocking=True) for _ in range(len(faces))]
            out = paste_faces(faces.flip(1), regions, [mask] * len(faces), [box] * len(faces))
            return [region.cpu() for region in out]

        blend_ms, _ = timed(blend)
        encode_ms, _ = timed(lambda crops=crops: codec.encode_crops(crops))
        row = {
            "batch": batch,
            "unet_ms_per_frame": round(unet_ms / batch, 2),
            "decode_ms_per_frame": round(decode_ms / batch, 2),
            "blend_ms_per_frame": round(blend_ms / batch, 2),
            "vae_encode_ms_per_frame": round(encode_ms / batch, 2),
            "generate_fps": round(1000 * batch / (unet_ms + decode_ms + blend_ms), 1),
            "peak_mb": round(peak / 1e6),
            "peak_mb_per_item": round(peak / batch / 1e6, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del latents, audio, predicted, faces
        torch.cuda.empty_cache()
    report["batches"] = rows
    free, _total = torch.cuda.mem_get_info()
    report["free_mb_after"] = round(free / 1e6)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "batches"}, indent=2))


if __name__ == "__main__":
    main()
