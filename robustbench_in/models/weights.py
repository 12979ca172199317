"""Reading weight files: safetensors or torch files (``weights_only=True``), and fitting them to a module."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from robustbench_in.models.registry import ModelError


def torch_load(path: Path, what: str):
    """``torch.load(weights_only=True)`` on the CPU; a torn, foreign or malicious file is a one-line ModelError
    that says what it held (the unpickler's own line, when it names a forbidden global)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 — pickle, zip and unpickler errors all mean "not readable"
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0])
        raise ModelError(f"{path} is not a readable {what} ({type(err).__name__}: {reason[:200]})") from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from .safetensors or a torch file (``weights_only=True``; unwraps {'state_dict': ...})."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model.weights_file={path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch_load(path, "weights file")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Strict load with a one-line error naming the first mismatch."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).split("\n")[1].strip() if "\n" in str(err) else str(err)
        raise ModelError(f"weights in {origin} do not fit the architecture: {first}") from None


def weights_fingerprint(module: nn.Module) -> str:
    """A short content hash of a module's weights and buffers: two checkpoints that share a file name (every
    run writes ``last.pt``) are still two models to the results store."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_in_order(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load a state dict whose tensors match the module's one-to-one *in order* but under other names (ports
    of the same network from another code base), checking every shape."""
    target = module.state_dict()
    if len(state) != len(target):
        raise ModelError(f"{origin}: {len(state)} tensors, the architecture has {len(target)}")
    mapped = {}
    for (k_src, v_src), (k_dst, v_dst) in zip(state.items(), target.items()):
        if v_src.shape != v_dst.shape:
            raise ModelError(f"{origin}: {k_src} {tuple(v_src.shape)} does not fit {k_dst} {tuple(v_dst.shape)}")
        mapped[k_dst] = v_src
    load_into(module, mapped, origin)
