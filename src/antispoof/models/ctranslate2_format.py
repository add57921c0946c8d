"""Reading CTranslate2's model.bin into numpy arrays, quantised weights de-quantised.

Split from whisper_weights (which maps the arrays onto transformers names) because the binary
format, its quantisation and the reporting of damaged files are a concern of their own.

model.bin, little-endian: u32 version, string spec name, u32 revision, u32 count, then per
variable: string name, u8 rank, u32 dims[rank], u8 dtype, u32 bytes, raw data; then u32 count of
aliases (string alias, string target). Strings are u16 length (NUL included), the bytes and the
NUL. CTranslate2 writes the variables sorted by name, so all decoder/* come before encoder/*.

Quantised models (`--quantization int8`, `int8_float16`, `int16`, ...) store a weight `X/weight`
as integers next to a float32 `X/weight_scale`; the float weight is `integers / scale`. For int8
the scale has one value per output row (CTranslate2 quantises as round(w * 127 / max|row|), conv
weights flattened per output channel); for int16 it is one scalar (2**10 / max|w|).
`read_ctranslate2` divides them out, so a caller sees float arrays and no `*_scale` variables.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}  # 5 = bf16
_STACKS = ("decoder", "encoder")  # in file order (sorted by name)


class WeightsError(RuntimeError):
    """A checkpoint that cannot be found, read or converted (one line, naming the file)."""


class _Reader:
    """Reads a stream, counting bytes, so that a short file can say how far it got."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.offset = stream, 0

    def read(self, n: int) -> bytes:
        raw = self.stream.read(n)
        self.offset += len(raw)
        if len(raw) != n:
            raise EOFError
        return raw

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        return self.read(n)[:-1].decode("utf-8")


def _array(raw: bytes, dtype_id: int, dims: tuple[int, ...]) -> np.ndarray:
    if dtype_id == 5:  # bfloat16: the top half of a float32
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(dims)
    return np.frombuffer(raw, _DTYPES[dtype_id]).reshape(dims)


def read_ctranslate2(stream: BinaryIO, source: str = "model.bin") -> tuple[str, dict[str, np.ndarray]]:
    """-> (spec name, {variable name: array}), de-quantised, aliases resolved to their targets.

    A file that ends early is refused in one line saying where it ended and what is missing:
    every use here (a full transformers checkpoint) needs every variable.
    """
    reader, count, names = _Reader(stream), None, []
    place: tuple = ("header",)
    try:
        (version,) = reader.unpack("I")
        if version < 5:
            raise WeightsError(f"{source}: CTranslate2 format version {version} is too old (need >= 5)")
        spec = reader.string()
        reader.unpack("I")  # spec revision
        (count,) = reader.unpack("I")
        variables = {}
        for i in range(count):
            place = ("name", i)
            name = reader.string()
            place = ("variable", i, name, reader.offset, None)
            (rank,) = reader.unpack("B")
            dims = reader.unpack("I" * rank)
            dtype_id, nbytes = reader.unpack("BI")
            if dtype_id not in _DTYPES:
                raise WeightsError(f"{source}: variable {name} has unknown dtype id {dtype_id}")
            place = ("variable", i, name, reader.offset, nbytes)
            variables[name] = _array(reader.read(nbytes), dtype_id, dims)
            names.append(name)
        place = ("aliases",)
        (n_aliases,) = reader.unpack("I")
        aliases = [(reader.string(), reader.string()) for _ in range(n_aliases)]
    except EOFError:
        raise WeightsError(_truncation(source, reader.offset, count, names, place)) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise WeightsError(f"{source}: not a CTranslate2 model.bin ({error})") from None
    variables = dequantize(variables, source)
    for alias, target in aliases:
        if target not in variables:
            raise WeightsError(f"{source}: alias {alias} names {target}, which the file does not hold")
        variables[alias] = variables[target]
    return spec, variables


def _truncation(source: str, offset: int, count: int | None, names: list[str], place: tuple) -> str:
    """One line: where a short model.bin ended, how many variables it lacks, per stack what is there."""
    head = f"{source}: truncated at byte {offset:,}"
    if count is None:
        return f"{head}, inside the header; no tensors present"
    if place[0] == "aliases":
        return f"{head}: all {count} variables present, the alias table after them cut short"
    if place[0] == "name":
        ended = f"inside the name of variable {place[1] + 1} of {count}" + (f" (after {names[-1]})" if names else "")
        current = names[-1].split("/")[0] if names else None  # unknown whether its stack goes on
    else:
        _, i, name, start, nbytes = place
        got = f", {offset - start:,} of its {nbytes:,} bytes" if nbytes is not None else ""
        ended = f"inside variable {i + 1} of {count} ({name}{got})"
        current = name.split("/")[0]
    parts = []
    for stack in _STACKS:
        read = sum(n.startswith(stack + "/") for n in names)
        if stack == current:
            parts.append(f"{stack} incomplete ({read} {stack} variables read)")
        elif read == 0:
            parts.append(f"no {stack} tensors present")
        else:
            parts.append(f"{stack} complete ({read} variables)")
    return (f"{head}: declares {count} variables, ends {ended}; {count - len(names)} of {count} missing: "
            + ", ".join(parts))


def dequantize(variables: dict[str, np.ndarray], source: str = "model.bin") -> dict[str, np.ndarray]:
    """int8 / int16 weights and their `<name>_scale` -> float32 `integers / scale`; scales consumed."""
    zero = next((n for n in variables if n.endswith("_zero")), None)
    if zero is not None:  # AWQ 4-bit: packed int32 weights with zero points, not a plain scale
        raise WeightsError(f"{source}: {zero}: AWQ-quantised weights are not supported "
                           "(use an int8, int16 or float CTranslate2 model)")
    out = dict(variables)
    for name in [n for n in variables if n.endswith("_scale")]:
        base = name[: -len("_scale")]
        weight = variables.get(base)
        if weight is None or weight.dtype not in (np.int8, np.int16):
            continue  # not a quantisation scale; left for the caller to map or report
        scale = np.asarray(variables[name], dtype=np.float32)
        if scale.ndim == 1 and scale.shape[0] == weight.shape[0]:  # int8: one per output row / channel
            scale = scale.reshape(-1, *[1] * (weight.ndim - 1))
        elif scale.size != 1:
            raise WeightsError(f"{source}: {name} has shape {scale.shape}, which does not fit "
                               f"{base} of shape {weight.shape}")
        out[base] = weight.astype(np.float32) / scale
        del out[name]
    return out
