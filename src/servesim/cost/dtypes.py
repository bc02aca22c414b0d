"""Storage size and tensor-core dtype of the number formats the cost model knows."""

from __future__ import annotations

from servesim.errors import ServesimError

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
    "mxfp4": 0.53125,
    "nvfp4": 0.5625,
}
"""Bytes one element occupies, block scales included where they are a visible share: MXFP4 (OCP
Microscaling spec v1.0) stores one 8-bit E8M0 scale per 32 FP4 values (4.25 bits), NVFP4 one FP8
E4M3 scale per 16 (4.5 bits; its per-tensor FP32 scale is negligible). NOTE: DeepSeek's fp8 block
scales (one FP32 per 128 × 128 weights) and int4 group scales (one FP16 per 128 for AWQ/GPTQ's
default group size, ~4%) are left out."""

# NOTE: which tensor-core peak a weight format runs at. fp8/int8/fp4 checkpoints are served as
# W8A8/W4A4 where the GPU has that peak (vLLM's fp8 and Blackwell fp4 paths); int4 (AWQ/GPTQ) is
# weight-only: dequantised into bf16 GEMMs, so it saves bytes but not FLOP time.
_TENSOR_CORE_DTYPE: dict[str, str] = {
    "fp32": "tf32",
    "tf32": "tf32",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp8": "fp8",
    "int8": "int8",
    "int4": "bf16",
    "fp4": "fp4",
    "mxfp4": "fp4",
    "nvfp4": "fp4",
}

_ALIASES: dict[str, str] = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "float8": "fp8",
    "e4m3": "fp8",
}


def normalize_dtype(name: str, *, field: str) -> str:
    """Canonical short name of a dtype (``bfloat16`` -> ``bf16``); raises on an unknown one."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in BYTES_PER_ELEMENT:
        raise ServesimError(
            f"unknown dtype {name!r}",
            field=field,
            fix="use one of: " + ", ".join(BYTES_PER_ELEMENT),
        )
    return key


def dtype_bytes(name: str, *, field: str = "dtype") -> float:
    """Bytes per element of ``name`` (bf16 2, fp8/int8 1, int4/fp4 0.5, mxfp4 0.53125)."""
    return BYTES_PER_ELEMENT[normalize_dtype(name, field=field)]


def activation_dtype(model_dtype: str) -> str:
    """The dtype activations, embeddings and the LM head stay in: fp16 for fp16 checkpoints,
    bf16 for everything else (quantised checkpoints keep bf16 activations)."""
    return "fp16" if normalize_dtype(model_dtype, field="dtype") == "fp16" else "bf16"


def tensor_core_peak(peak_flops: dict[str, float], weight_dtype: str, act_dtype: str) -> float:
    """Dense peak FLOP/s a GEMM with ``weight_dtype`` weights runs at on a GPU with ``peak_flops``.

    Falls back to the activation dtype's peak (weight-only dequantisation) when the GPU has no
    tensor-core path for the weight format (fp8 on A100, fp4 on H100).
    """
    return peak_flops[tensor_core_dtype(peak_flops, weight_dtype, act_dtype)]


def tensor_core_dtype(peak_flops: dict[str, float], weight_dtype: str, act_dtype: str) -> str:
    """The tensor-core format (a ``peak_flops`` key) a GEMM with ``weight_dtype`` weights runs
    in: the weights' own, else the activations' (weight-only), else bf16/fp16."""
    wanted = _TENSOR_CORE_DTYPE[normalize_dtype(weight_dtype, field="weight_dtype")]
    for key in (wanted, act_dtype, "bf16", "fp16"):
        if key in peak_flops:
            return key
    raise ServesimError(
        "the hardware lists no bf16/fp16 peak FLOP/s",
        field="peak_flops",
        fix="add a bf16 entry to the hardware spec",
    )


def vector_peak(peak_flops: dict[str, float], act_dtype: str) -> float:
    """FLOP/s for elementwise work (norms, rope, activations, softmax): the fp32 CUDA-core rate
    when the spec lists it, else the activation dtype's tensor-core peak (an optimistic bound;
    these operators are memory-bound either way)."""
    for key in ("fp32", act_dtype, "bf16", "fp16"):
        if key in peak_flops:
            return peak_flops[key]
    return tensor_core_peak(peak_flops, act_dtype, act_dtype)


KV_DTYPES = ("fp32", "bf16", "fp16", "fp8")
"""Formats a KV cache can be stored in (vLLM ``--kv-cache-dtype`` auto/fp8). fp8 KV is a
storage format: kernels dequantise it, so it runs on GPUs without fp8 tensor cores too."""

_WEIGHT_CHOICES = ("bf16", "fp16", "fp8", "int8", "fp4")


def check_weight_dtype(hw_name: str, peak_flops: dict[str, float], weight_dtype: str) -> None:
    """Raise ServesimError when ``weight_dtype``, asked for explicitly, needs tensor cores the
    GPU lacks (fp8 on A100, fp4 before Blackwell).

    W8A8 / W4A4 formats compute at their own tensor-core rate, so they need it; int4 is
    weight-only (dequantised into bf16 GEMMs) and runs anywhere. A checkpoint's own format is
    not checked here: vLLM runs it weight-only where the GPU has no matching tensor cores.
    """
    dtype = normalize_dtype(weight_dtype, field="weight_dtype")
    wanted = _TENSOR_CORE_DTYPE[dtype]
    if wanted in peak_flops:
        return
    runnable = [d for d in _WEIGHT_CHOICES if _TENSOR_CORE_DTYPE[d] in peak_flops]
    raise ServesimError(
        f"{hw_name} has no {wanted} tensor cores for {dtype} weights; use "
        + " or ".join([*runnable, "int4"]),
        field="weight_dtype",
        fix="use --weight-dtype " + ", ".join(runnable) + " or int4 (weight-only, runs anywhere)",
    )


def check_kv_dtype(kv_dtype: str) -> None:
    """Raise ServesimError when ``kv_dtype`` is not a KV-cache format (bf16, fp16, fp8)."""
    dtype = normalize_dtype(kv_dtype, field="kv_dtype")
    if dtype not in KV_DTYPES:
        raise ServesimError(
            f"{dtype} is not a KV-cache format", field="kv_dtype", fix="use --kv-dtype bf16 or fp8"
        )
