"""Quick inference throughput of VideoMamba on one backend: `python benchmarks/quick_throughput.py BACKEND FRAMES BATCH`."""

import sys
import time

import torch

from videomamba import VideoMambaConfig, VideoMambaModel


def main():
    backend, frames, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    preset = sys.argv[4] if len(sys.argv) > 4 else "tiny"
    config = VideoMambaConfig.from_preset(preset, num_frames=frames, scan_backend=backend)
    model = VideoMambaModel(config).cuda().to(torch.bfloat16).eval()
    x = torch.randn(batch, frames, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        torch.cuda.synchronize()
        start, n = time.perf_counter(), 5
        for _ in range(n):
            model(x)
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / n
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"{preset} {backend} frames={frames} batch={batch}: {batch / seconds:.1f} videos/s, peak {peak:.2f} GiB")


if __name__ == "__main__":
    main()
