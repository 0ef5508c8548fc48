"""Where and in what precision a stage computes: params.yaml `train.device`, `train.precision`
and `train.deterministic`, used alike by training and evaluation.

- device auto takes the first visible GPU when torch sees one, else the CPU;
- precision bf16 runs the forward pass (and so the backward) under bf16 autocast, with fp32
  master weights, optimizer state, loss, posteriors and metrics; fp32 runs everything in fp32;
  auto takes bf16 where the device has bf16 arithmetic, else fp32 (see `has_bf16_arithmetic`).
  The tensors keep channels_last, the faster layout for convolutions on both devices;
- deterministic true turns cuDNN's autotuner off and asks torch for deterministic kernels
  (bitwise repeatable GPU runs, at some speed); false lets cuDNN pick the fastest kernels.
  On the CPU every run is bitwise repeatable for a fixed thread count either way.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from vggrepro.runtime.errors import Error

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
# x86 and ARM CPU features of bf16 arithmetic, as torch.cpu.get_capabilities() names them
CPU_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


class DeviceError(Error):
    """A device the params ask for that this machine cannot give; one line."""


@dataclass(frozen=True)
class Compute:
    device: torch.device
    precision: str  # "bf16" or "fp32"
    deterministic: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """The forward pass's precision context; outside it everything is fp32."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host batch on the device: without waiting for the copy on CUDA (the loader pins its
        batches), as is on the CPU."""
        return tensor.to(self.device, non_blocking=self.is_cuda)

    def describe(self) -> str:
        """One line for logs and the report."""
        name = torch.cuda.get_device_name(self.device) if self.is_cuda else cpu_name()
        kernels = "deterministic kernels" if self.deterministic else "fastest kernels (cudnn.benchmark)"
        return f"{self.device.type} ({name}), {self.precision}, channels_last" + (f", {kernels}" if self.is_cuda else "")


CPU = Compute(torch.device("cpu"), "fp32", False)  # plain fp32 on the CPU: library calls and tests


def cpu_name() -> str:
    """The CPU model and the instruction set torch's kernels dispatch to, e.g. "AMD EPYC AVX2":
    both decide a CPU run's last bits, so the reports name them."""
    return f"{torch.cpu.get_capabilities().get('cpu_name') or 'CPU'} {torch.backends.cpu.get_cpu_capability()}"


def has_bf16_arithmetic(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively: an NVIDIA GPU from Ampere (compute
    capability 8.0) on, a CPU with AVX512_BF16 or AMX (x86) or BF16 (ARM) instructions.
    Elsewhere torch emulates bf16 through fp32, slower than fp32 itself: on a 2-core AMD EPYC
    with AVX2 only, a bf16 training step of the default's A ran at 92 images/s against fp32's
    798, and VGG-19's forward pass at 224 at 15 against 108-140 GFLOP/s."""
    if device.type == "cuda":
        with torch.cuda.device(device):  # torch asks the current GPU: make it the one meant
            return torch.cuda.is_bf16_supported(including_emulation=False)
    capabilities = torch.cpu.get_capabilities()
    return any(capabilities.get(feature, False) for feature in CPU_BF16_FEATURES)


def resolve_precision(setting: str, device: torch.device) -> str:
    """train.precision as computed on the device: auto is bf16 where it has bf16 arithmetic."""
    if setting not in PRECISIONS:
        raise DeviceError(f"train.precision: {setting!r} is not one of {', '.join(PRECISIONS)}")
    if setting != "auto":
        return setting
    return "bf16" if has_bf16_arithmetic(device) else "fp32"


def resolve_device(setting: str, *, cuda_available: bool, local_rank: int = 0) -> torch.device:
    """train.device as a torch.device. Under torchrun each process takes GPU LOCAL_RANK."""
    if setting not in DEVICES:
        raise DeviceError(f"train.device: {setting!r} is not one of {', '.join(DEVICES)}")
    if setting == "cpu" or (setting == "auto" and not cuda_available):
        return torch.device("cpu")
    if not cuda_available:
        raise DeviceError(
            f"train.device: cuda, but torch {torch.__version__} sees no CUDA device "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
            "expected a GPU, or train.device: auto or cpu"
        )
    return torch.device("cuda", local_rank)


def set_determinism(device: torch.device, deterministic: bool) -> None:
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        # cuBLAS needs a fixed workspace for repeatable matmuls (torch's reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # fp32 means fp32: cuDNN would otherwise run fp32 convolutions in TF32 (torch's default).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def compute(train: dict, *, local_rank: int = 0, cuda_available: bool | None = None) -> Compute:
    """The Compute of params.yaml's train section (its defaults filled in: vggrepro.params); sets
    the device's determinism flags."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    device = resolve_device(train["device"], cuda_available=cuda_available, local_rank=local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    chosen = Compute(device, resolve_precision(train["precision"], device), bool(train["deterministic"]))
    set_determinism(device, chosen.deterministic)
    return chosen
