"""`CUDAGraphRunner`: clear errors everywhere, and on the GPU replays that equal the eager forward, see in-place weight
changes, and capture again when the weights move."""

import pytest
import torch

from videomamba import CUDAGraphRunner, VideoMambaForVideoClassification

from .conftest import tiny_config


def test_runner_rejects_bad_use_on_cpu():
    model = VideoMambaForVideoClassification(tiny_config()).eval()
    runner = CUDAGraphRunner(model)
    with pytest.raises(ValueError, match="CUDA graphs need CUDA tensors"):
        runner(torch.randn(1, 4, 3, 32, 32))
    with pytest.raises(TypeError, match="pixel_values must be a tensor"):
        runner([[1.0]])
    with pytest.raises(ValueError, match="max_graphs"):
        CUDAGraphRunner(model, max_graphs=0)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_gpu_runner_matches_eager_and_follows_weights(backend):
    torch.manual_seed(0)
    # 257 tokens: at batch 1 and 2 the Triton forward splits the sequence into groups
    config = tiny_config(image_size=64, num_frames=16, hidden_size=64, scan_backend=backend)
    model = VideoMambaForVideoClassification(config).cuda().eval()
    runner = CUDAGraphRunner(model, max_graphs=2)
    x1, x2 = torch.randn(2, 2, 16, 3, 64, 64, device="cuda")

    def eager(x):
        with torch.inference_mode():
            return model(x).logits

    # replays equal the eager forward bit for bit (the same kernels), for new inputs too
    first = runner(x1).logits
    assert torch.equal(first, eager(x1))
    assert torch.equal(runner(x2).logits, eager(x2))
    assert torch.equal(first, runner(x1).logits)  # outputs are copies: the next replay did not overwrite them
    # another batch size: a second graph; a third shape drops the least recently used one
    assert torch.equal(runner(x1[:1]).logits, eager(x1[:1]))
    assert len(runner._graphs) == 2
    x3 = torch.cat([x1, x2[:1]])
    assert torch.equal(runner(x3).logits, eager(x3))
    assert len(runner._graphs) == 2 and tuple(x1.shape) not in [k[0] for k in runner._graphs]
    assert torch.equal(runner(x1).logits, eager(x1))
    # in-place weight changes are seen without capturing again
    graphs = dict(runner._graphs)
    with torch.no_grad():
        for p in model.parameters():
            p.data.mul_(1.1)
    assert torch.equal(runner(x1).logits, eager(x1))
    assert all(runner._graphs[k] is graphs[k] for k in graphs)
    # replaced weights (new memory): captured again, still equal
    model.classifier.weight = torch.nn.Parameter(torch.randn_like(model.classifier.weight))
    assert torch.equal(runner(x1).logits, eager(x1))
    assert all(runner._graphs[k] is not graphs[k] for k in runner._graphs if k in graphs)
    # training mode is refused
    model.train()
    with pytest.raises(ValueError, match="model.eval"):
        runner(x1)
