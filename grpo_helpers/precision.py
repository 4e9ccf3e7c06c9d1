"""Mixed precision for training: bf16 or fp16, decided from what the model was really loaded in.

A T4 (compute capability 7.5) has no bfloat16 units, so Unsloth loads models there in float16. But
``torch.cuda.is_bf16_supported()`` answers True on a T4 (it counts emulation), and a config that trusts it asks for
``bf16=True``; Unsloth's ``GRPOTrainer`` then stops with "Model is in float16 precision but you want to use bfloat16
precision". So this module never asks ``is_bf16_supported()``: it reads the model's dtype the way Unsloth does
(``model.config.dtype``, else the input embeddings), and without a model it goes by the compute capability
(bfloat16 needs Ampere, capability 8.0, or newer).

The notebooks write it inside their config call::

    GRPOConfig(..., **training_precision(model))

Example:
    >>> import torch
    >>> training_precision(torch.nn.Embedding(4, 2).half())
    {'bf16': False, 'fp16': True}
"""

from __future__ import annotations

from typing import Any

AMPERE = (8, 0)  # first compute capability with native bfloat16


def cuda_capability() -> tuple[int, int] | None:
    """(major, minor) compute capability of the current CUDA GPU, or None without one.

    Example:
        >>> cuda_capability() is None or len(cuda_capability()) == 2
        True
    """
    import torch

    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability())


def gpu_dtype_name(capability: tuple[int, int] | None = None) -> str | None:
    """The 16-bit dtype a GPU trains in: ``"bfloat16"`` from Ampere (8.0) on, ``"float16"`` before; None on a CPU.

    Example:
        >>> gpu_dtype_name((7, 5)), gpu_dtype_name((9, 0))
        ('float16', 'bfloat16')
    """
    capability = cuda_capability() if capability is None else capability
    if capability is None:
        return None
    return "bfloat16" if tuple(capability) >= AMPERE else "float16"


def model_dtype(model) -> Any:
    """The dtype ``model`` was loaded in, read as Unsloth's trainer reads it (config first, then the embeddings).

    A 4-bit model's packed weights are uint8; its config and embeddings carry the compute dtype, which is what counts.

    Example:
        >>> import torch
        >>> model_dtype(torch.nn.Linear(2, 2))
        torch.float32
    """
    import torch

    config = getattr(model, "config", None)
    dtype = (getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)) if config is not None else None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.replace("torch.", ""), None)
    if isinstance(dtype, torch.dtype):
        return dtype
    embeddings = getattr(model, "get_input_embeddings", None)
    if callable(embeddings) and embeddings() is not None:
        return embeddings().weight.dtype
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.float32


def _flags(dtype_name: str | None) -> dict[str, bool]:
    return {"bf16": dtype_name == "bfloat16", "fp16": dtype_name == "float16"}


def training_precision(model=None, *, dtype: str | None = None) -> dict[str, bool]:
    """``{"bf16": ..., "fp16": ...}`` for ``GRPOConfig``: the precision that matches the model.

    * ``model`` given: follows the dtype it was loaded in (bfloat16 -> bf16, float16 -> fp16, float32 -> neither).
    * else ``dtype`` given (``"float16"``/``"bfloat16"``, e.g. ``cfg.dtype``): follows it on a GPU.
    * else the GPU: capability >= 8.0 -> bf16, older (a T4 is 7.5) -> fp16; no GPU -> neither.

    Example:
        >>> import torch
        >>> training_precision(torch.nn.Linear(2, 2).to(torch.bfloat16))
        {'bf16': True, 'fp16': False}
    """
    if model is not None:
        import torch

        found = model_dtype(model)
        return _flags({torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(found))
    gpu = gpu_dtype_name()
    if gpu is None:
        return _flags(None)
    return _flags(dtype or gpu)
