"""GPU benchmark of the engine's per-frame stages on FULL-SIZE random weights.

Writes a full-size random models directory (make-weights), loads the UNet, VAE and Whisper
encoder the way the engine does, and measures per batch size: UNet step, VAE decode, blend (on
704x1216 frames, the sample's size) and the peak GPU memory per batch item, which sets
`GPU_BYTES_PER_ITEM` in `runtime/engine/engine.py`. Needs torch with CUDA, diffusers and
transformers; not the media stack.

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
from runtime.engine.latents import Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.weights import make_weights

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
    layout = (
        make_weights(args.models, tiny=False)
        if not args.models.exists()
        else ModelsLayout(args.models)
    )
    report["make_weights_s"] = round(time.perf_counter() - start, 1)
    report["unet_file_mb"] = round(layout.unet_weights.stat().st_size / 1e6)

    start = time.perf_counter()
    generator = Generator(layout.unet_config, layout.unet_weights, device, dtype)
    codec = LatentCodec(layout.vae_dir, device, dtype)
    report["load_s"] = round(time.perf_counter() - start, 1)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    report["weights_gpu_mb"] = round(base / 1e6)

    from transformers import WhisperModel

    encoder = WhisperModel.from_pretrained(layout.whisper_dir).get_encoder().to(device, dtype)
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
