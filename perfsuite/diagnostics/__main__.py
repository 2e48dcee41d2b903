"""``python -m perfsuite.diagnostics``: stage times, syncs, FLOPs and throughput of catalog models.

Builds each model in the given dtype on the device, makes ``--warmup`` untimed calls, then collects
the diagnostics (two more calls) and writes them as JSON, one entry per model.

    python -m perfsuite.diagnostics --model sd15,sdxl --device cuda --dtype bf16 --steps 10 -o diag.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def _size(value: str) -> tuple[int, int]:
    height, sep, width = value.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH in pixels, e.g. 768x768, got {value!r}")
    return int(height), int(width)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m perfsuite.diagnostics",
        description="Stage times, host-device syncs, FLOPs and throughput of one pipeline call per model.",
    )
    parser.add_argument("--model", default="tiny-sd", help="comma-separated models (default: tiny-sd)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="default: fp32")
    parser.add_argument("--steps", type=_positive, default=None, help="denoising steps (default: model's)")
    parser.add_argument("--size", type=_size, default=None, help="image size HxW (default: the model's)")
    parser.add_argument(
        "--warmup",
        type=_positive,
        default=1,
        help="untimed calls first; the last one's latency is used for throughput (default: 1)",
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help="JSON file to write")
    return parser


def _one(name: str, device: Any, dtype: str, overrides: dict[str, Any], warmup: int) -> dict[str, Any]:
    from perfsuite.catalog import get_model
    from perfsuite.diagnostics import collect
    from perfsuite.measure import time_call
    from perfsuite.optimizations import torch_dtype

    spec = get_model(name)
    start_s = time.perf_counter()
    pipe: Any = spec.build(device, torch_dtype(dtype))
    build_s = time.perf_counter() - start_s
    latency_s = None
    for _ in range(warmup):
        latency_s, _ = time_call(lambda: pipe(**spec.call_arguments(**overrides)), device)
    result = collect(pipe, spec.call_arguments(**overrides), device, latency_s=latency_s)
    return {"model": name, "dtype": dtype, "device": str(device), "build_s": build_s, **result.to_dict()}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    overrides: dict[str, Any] = {}
    if args.steps is not None:
        overrides["num_inference_steps"] = args.steps
    if args.size is not None:
        overrides["height"], overrides["width"] = args.size
    entries = []
    for name in [m.strip() for m in args.model.split(",") if m.strip()]:
        entry = _one(name, device, args.dtype, overrides, args.warmup)
        entries.append(entry)
        stages, flops = entry["stage_times"], entry["flops"]
        syncs = entry["host_syncs"]["denoise_syncs"]
        rate = entry["throughput"]["achieved_tflop_per_s"]
        fraction = entry["throughput"]["peak_fraction"]
        print(
            f"{name} {args.dtype} on {device}: total {stages['total_s'] * 1e3:.1f} ms "
            f"(text {stages['text_encoding_s'] * 1e3:.1f}, denoise {stages['denoise_s'] * 1e3:.1f} "
            f"in {len(stages['per_step_s'])} steps, vae {stages['vae_decode_s'] * 1e3:.1f}); "
            f"{flops['total_flop'] or 0:.3e} FLOP; "
            f"{'-' if rate is None else f'{rate:.3g}'} TFLOP/s"
            f"{'' if fraction is None else f' ({fraction:.1%} of peak)'}; "
            f"syncs in denoising: {'-' if syncs is None else syncs}"
        )
    document = {"diagnostics": entries}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
