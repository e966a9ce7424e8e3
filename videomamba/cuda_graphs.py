# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Low-latency inference: a model's forward captured once as a CUDA graph per input shape, then replayed.

At small batches the forward of VideoMamba is bound by the host, not the GPU: each of the 24-32 blocks launches a
dozen kernels and builds its parameter tables, which on the H100 test machine takes about 20 ms of Python and driver
work per forward at batch 1 against 2.5 ms of GPU work (`benchmarks/RESULTS.md`, "Latency"). A CUDA graph replays
the recorded launches with no host work per kernel.

    runner = CUDAGraphRunner(model)           # a model in eval mode on a CUDA device
    logits = runner(pixel_values).logits      # first call per input shape: warm-up and capture; then replays

Every replay runs the whole recorded forward, including the construction of the scan's parameter tables from the
parameters' memory, so in-place changes to the weights (`param.data.copy_`, an optimizer step) are seen. Parameters
or buffers replaced by new tensors (`load_state_dict(..., assign=True)`, `model.to(...)`) move to new memory: the
runner notices (it compares their addresses on every call) and captures again.
"""

from collections import OrderedDict

import torch


class CUDAGraphRunner:
    """Calls `model(pixel_values, **forward_kwargs)` through CUDA graphs, one per input shape and dtype.

    Args:
        model: a VideoMamba model (any `nn.Module` whose forward takes `pixel_values` and returns tensors, a tuple or
            a `ModelOutput`) on a CUDA device, in eval mode.
        max_graphs: how many input shapes to keep captured (least recently used dropped first); each graph holds the
            activation memory of one forward at its shape.
        clone_outputs: return copies of the outputs (default). With False the outputs are the graph's own buffers,
            overwritten by the next call of the same shape.
        **forward_kwargs: fixed keyword arguments of every forward (e.g. `output_hidden_states=True`).

    Calling it with `pixel_values` `(batch, frames, channels, height, width)` (or the model's image layout) on the
    model's device runs the forward under `torch.inference_mode()` and returns what the model returns.
    """

    def __init__(self, model: torch.nn.Module, max_graphs: int = 8, clone_outputs: bool = True, **forward_kwargs):
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}.")
        self.model = model
        self.max_graphs = max_graphs
        self.clone_outputs = clone_outputs
        self.forward_kwargs = forward_kwargs
        self._graphs = OrderedDict()  # (shape, dtype, device) -> (graph, static input, static output)
        self._addresses = None

    def _tensor_addresses(self):
        return tuple(t.data_ptr() for t in self.model.parameters()) + tuple(t.data_ptr() for t in self.model.buffers())

    def _check(self, pixel_values: torch.Tensor):
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a tensor, got {type(pixel_values).__name__}.")
        if pixel_values.device.type != "cuda":
            raise ValueError(
                f"CUDA graphs need CUDA tensors; pixel_values is on {pixel_values.device}. Move the model and the "
                "inputs to a CUDA device, or call the model directly on the CPU."
            )
        if self.model.training:
            raise ValueError("CUDAGraphRunner is for inference: call model.eval() first (dropout and drop path would be "
                             "frozen into the graph).")
        device = next(self.model.parameters()).device
        if device != pixel_values.device:
            raise ValueError(f"The model is on {device} but pixel_values is on {pixel_values.device}.")

    def _capture(self, pixel_values: torch.Tensor):
        static_input = pixel_values.clone()
        stream = torch.cuda.Stream(device=pixel_values.device)
        stream.wait_stream(torch.cuda.current_stream(pixel_values.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(2):  # compiles the kernels, fills the caches that the capture must not touch
                self.model(static_input, **self.forward_kwargs)
        torch.cuda.current_stream(pixel_values.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_output = self.model(static_input, **self.forward_kwargs)
        return graph, static_input, static_output

    def __call__(self, pixel_values: torch.Tensor):
        self._check(pixel_values)
        addresses = self._tensor_addresses()
        if addresses != self._addresses:  # weights moved (new tensors): the recorded launches read stale memory
            self._graphs.clear()
            self._addresses = addresses
        key = (tuple(pixel_values.shape), pixel_values.dtype, pixel_values.device)
        if key not in self._graphs:
            self._graphs[key] = self._capture(pixel_values)
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        graph, static_input, static_output = self._graphs[key]
        with torch.inference_mode():
            static_input.copy_(pixel_values)
            graph.replay()
            return _map_tensors(static_output, torch.clone) if self.clone_outputs else static_output

    def reset(self):
        """Drop every captured graph (and its memory)."""
        self._graphs.clear()
        self._addresses = None


def _map_tensors(output, fn):
    """`output` with `fn` applied to every tensor in it (tensors, tuples, lists, dicts and `ModelOutput`s)."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, dict):  # ModelOutput is an OrderedDict: keep its class
        mapped = output.__class__(**{k: _map_tensors(v, fn) for k, v in output.items()})
        return mapped
    if isinstance(output, (tuple, list)):
        return type(output)(_map_tensors(v, fn) for v in output)
    return output


__all__ = ["CUDAGraphRunner"]
