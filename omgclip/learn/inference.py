"""Batched inference: one forward + softmax shared by ``evaluate``, ``predict`` and ``export``.

Clips are ``(N, T, S, S)`` uint8 crops; the net sees ``(N, 1, T, S, S)`` float32 in [0, 1]
and returns ``(N, K)`` logits; these functions return ``(N, K)`` softmax probabilities.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def clips_to_input(clips: np.ndarray):
    """``(N, T, S, S)`` uint8 -> a ``(N, 1, T, S, S)`` float32 tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(clips)).unsqueeze(1).float().div_(255.0)


def net_device(net):
    """The device of ``net``'s parameters (None for a parameter-free net)."""
    try:
        return next(net.parameters()).device
    except (StopIteration, AttributeError):
        return None


def softmax_probabilities(net, x) -> np.ndarray:
    """``(N, K)`` float32 softmax probabilities of ``net`` on the input tensor ``x``
    ``(N, 1, T, S, S)`` (moved to the net's device)."""
    import torch

    device = net_device(net)
    if device is not None:
        x = x.to(device, non_blocking=True)
    with torch.inference_mode():
        logits = net(x)
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


def clip_probabilities(net, clips: np.ndarray) -> np.ndarray:
    """``(N, K)`` probabilities for ``(N, T, S, S)`` uint8 face clips."""
    return softmax_probabilities(net, clips_to_input(clips))


def predict_probabilities(net, dataset, batch_size: int = 64, num_workers: int = 0,
                          device="cpu") -> np.ndarray:
    """Softmax probabilities ``(len(dataset), K)`` of ``net`` over a dataset of
    ``(x (1, T, S, S) float, y)`` items, in order."""
    import torch
    from torch.utils.data import DataLoader

    device = torch.device(device)
    net = net.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    out = [softmax_probabilities(net, x) for x, _ in loader]
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def pad_clip(crops: np.ndarray, T: int) -> np.ndarray:
    """``(t, S, S)`` -> ``(T, S, S)``: a short clip repeats its last crop; a long one is cut."""
    t = len(crops)
    if t == T:
        return crops
    if t > T:
        return crops[:T]
    if t == 0:
        raise ValueError("empty clip")
    return np.concatenate([crops, np.repeat(crops[-1:], T - t, axis=0)])


class ClipBatcher:
    """Collect ``(item, crops)`` pairs and classify ``batch_size`` clips at a time.

    ``on_result(item, probs)`` is called for each item with its ``(K,)`` probabilities, in
    the order they were added. ``seconds`` accumulates the model time.
    """

    def __init__(self, net, T: int, batch_size: int, on_result: Callable[[object, np.ndarray], None]):
        self.net = net
        self.T = T
        self.batch_size = batch_size
        self.on_result = on_result
        self.pending: list[tuple[object, np.ndarray]] = []
        self.seconds = 0.0

    def add(self, item, crops: np.ndarray) -> None:
        self.pending.append((item, pad_clip(crops, self.T)))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        import time

        if not self.pending:
            return
        t0 = time.perf_counter()
        probs = clip_probabilities(self.net, np.stack([c for _, c in self.pending]))
        for (item, _), p in zip(self.pending, probs):
            self.on_result(item, p)
        self.pending.clear()
        self.seconds += time.perf_counter() - t0
