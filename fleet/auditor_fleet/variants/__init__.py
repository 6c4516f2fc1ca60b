"""Other sets of weights for the demo fleet: the packaged GGUF requantized, or perturbed.

A provider that serves "the model" may serve a heavier quantization of it or a fine-tune.
The fleet plants both with real weight files built from the packaged GGUF:

- `requantize(src, qtype)`: llama.cpp's own quantizer (`llama_model_quantize`, with
  `allow_requantize`: the source is already Q4_1). The model's 576-wide tensors are not a
  multiple of the 256-wide K-quant blocks, so llama.cpp falls back to a 32-wide type for
  them: Q2_K and Q3_K_S give Q4_0 everywhere but `ffn_down` (1536 wide, Q3_K). Use
  `tensor_types` to see what a file really holds.
- `perturb(src, scale, seed)`: a stand-in for a fine-tune. Selected weight tensors are
  dequantized with the `gguf` package, given Gaussian noise of std `scale` times the
  tensor's RMS, and quantized back to their own type, in a copy of the file (the tensor
  sizes do not change, so the copy is patched in place).

Files go to `cache_dir()` (`$AUDITOR_CACHE_DIR/variants`, default
`~/.cache/auditor/variants`) under names that follow from the source's digest, the kind and
the parameters, so each is built once and reused; a build writes a temporary file and
renames it, so a half-written variant is never picked up.

`python -m auditor_fleet.variants` (`__main__.py`) measures how far the greedy answers of
each variant drift from those of the packaged weights. It runs them on the fleet's
`LlamaBackend`, which builds its members' weights here, so this module imports nothing else
of the fleet.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CACHE_ENV = "AUDITOR_CACHE_DIR"
#: `strength` of the `quantized` fault (bits per weight) -> the llama.cpp file type asked for.
QTYPE_FOR_BITS: dict[int, str] = {2: "Q2_K", 3: "Q3_K_S", 4: "Q4_0", 5: "Q5_0", 8: "Q8_0"}
#: The llama.cpp file types `requantize` builds from the packaged Q4_1 GGUF into weights that
#: differ from it (measured, see docs/fleet.md): its own Q4_1 rebuilds it bit for bit, F16
#: and BF16 hold its values exactly, Q2_K_S, NVFP4, Q1_0 and most IQ types fail without an
#: importance matrix, and the ternary TQ types and Q2_0 give noise.
QTYPES: tuple[str, ...] = (
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q4_0",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_0",
    "Q5_1",
    "Q5_K_S",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
    "IQ3_S",
    "IQ4_XS",
    "IQ4_NL",
)
#: The weight matrices a perturbation touches: every attention and feed-forward projection.
PERTURB_TENSORS = r"blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight"
#: Default relative noise of the perturbed variant (see docs/fleet.md for its drift).
DEFAULT_PERTURB_SCALE = 0.05


class VariantError(RuntimeError):
    """A variant that cannot be built."""


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or "~/.cache/auditor"
    return Path(root).expanduser() / "variants"


def qtype_for_bits(bits: float) -> str:
    """The quantization type for a `quantized` strength: the nearest listed bit width."""
    nearest = min(QTYPE_FOR_BITS, key=lambda b: (abs(b - bits), b))
    return QTYPE_FOR_BITS[nearest]


def source_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256 (names the variants built from it)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


def variant_path(src: Path, kind: str, params: str, cache: Path | None = None) -> Path:
    """Where the variant of `src` made by `kind` with `params` lives (built or not)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", src.stem)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", params)
    return (cache or cache_dir()) / f"{stem}-{source_digest(src)}-{kind}-{safe}.gguf"


def requantized_path(src: Path, qtype: str, cache: Path | None = None) -> Path:
    return variant_path(src, "quant", qtype, cache)


def perturbed_path(
    src: Path,
    scale: float = DEFAULT_PERTURB_SCALE,
    seed: int = 0,
    cache: Path | None = None,
    tensors: str = PERTURB_TENSORS,
) -> Path:
    pattern = hashlib.sha256(tensors.encode()).hexdigest()[:8]
    return variant_path(src, "perturb", f"s{scale:g}-seed{seed}-{pattern}", cache)


def requantize(src: Path, qtype: str, cache: Path | None = None) -> Path:
    """`src` requantized to llama.cpp file type `qtype` (e.g. "Q2_K", "Q4_0"); built once."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}", None)
    if ftype is None:
        raise VariantError(f"unknown llama.cpp quantization type {qtype!r}")
    out = requantized_path(src, qtype, cache)
    if out.is_file():
        return out
    with _building(out) as tmp:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.allow_requantize = True
        params.nthread = os.cpu_count() or 1
        with _quiet():
            rc = llama_cpp.llama_model_quantize(
                str(src).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if rc != 0:
            raise VariantError(f"llama.cpp could not quantize {src.name} to {qtype} (rc {rc})")
    return out


def perturb(
    src: Path,
    scale: float = DEFAULT_PERTURB_SCALE,
    seed: int = 0,
    cache: Path | None = None,
    tensors: str = PERTURB_TENSORS,
) -> Path:
    """A copy of `src` whose tensors matching `tensors` carry relative Gaussian noise.

    Each selected tensor W becomes W + scale * rms(W) * N(0, 1), quantized back to W's own
    type, so the file keeps its size and speed and differs only in the weights.
    """
    from gguf import GGUFReader
    from gguf.quants import dequantize, quantize

    if scale <= 0:
        raise VariantError("perturbation scale must be > 0")
    out = perturbed_path(src, scale, seed, cache, tensors)
    if out.is_file():
        return out
    selected = re.compile(tensors)
    with _building(out) as tmp:
        shutil.copyfile(src, tmp)
        reader = GGUFReader(tmp, "r+")
        rng = np.random.default_rng(seed)
        touched = 0
        for tensor in reader.tensors:
            if not selected.fullmatch(tensor.name):
                continue
            weights = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            rms = float(np.sqrt(np.mean(weights.astype(np.float64) ** 2)))
            noise = rng.standard_normal(weights.shape, dtype=np.float32)
            noisy = weights + np.float32(scale * rms) * noise
            tensor.data[...] = quantize(noisy, tensor.tensor_type).reshape(tensor.data.shape)
            touched += 1
        reader.data.flush()
        del reader
        if not touched:
            raise VariantError(f"no tensor of {src.name} matches {tensors!r}")
    return out


def tensor_types(path: Path) -> Counter[str]:
    """How many weight matrices of each type the file holds (norms and biases left out)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1)


@contextmanager
def _building(out: Path) -> Iterator[Path]:
    """A temporary path next to `out`, renamed to `out` if the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """llama.cpp logs every tensor it quantizes to stderr; keep that out of the fleet log."""
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):
        yield
