"""A reader of dlib's binary serialization, with numpy alone.

dlib's model files (the face recognition ResNet, the shape predictors) are
written by ``dlib::serialize``. Reading them without dlib lets the runtime
convert them to torch/ONNX and lets tests prove the file was understood: a
reader that ends exactly on the last byte has accounted for every field.

The primitives (from dlib's ``serialize.h``, ``float_details.h``,
``matrix.h`` and ``dnn/tensor.h``):

* integers (any width, signed or not) are "compact": one control byte whose low
  4 bits give the number of payload bytes and whose bit 0x80 marks a negative
  value, then the absolute value in that many little-endian bytes;
* ``float``/``double`` are two compact integers, an int64 mantissa and an int16
  exponent, meaning ``mantissa * 2**exponent``; the exponents 32000, 32001 and
  32002 stand for +inf, -inf and NaN;
* ``bool`` is one byte;
* ``std::string`` is a compact length then the bytes; ``std::vector`` a compact
  length then the elements;
* ``dlib::matrix`` is ``-nr``, ``-nc`` (negated to mark the current format;
  older files wrote ``nc``, ``nr``) then each element in row-major order;
* a dnn ``tensor`` is version 2, ``num_samples``, ``k``, ``nr``, ``nc``, then
  raw little-endian float32 values (not the mantissa/exponent form);
* an ``alias_tensor`` (a view into a layer's parameter tensor) is version 1 and
  its four dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# float_details special exponents.
EXP_INF = 32000
EXP_NINF = 32001
EXP_NAN = 32002


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization where the reader expected them to."""


class DlibReader:
    """A cursor over the bytes of one dlib-serialized object.

    Every ``read_*`` method consumes exactly what dlib's ``serialize`` wrote for
    that type and advances :attr:`pos`. Call :meth:`expect_end` when done: a
    reader that stops early or runs past the end has misread the format.

    Args:
        data: the whole serialized file or blob.
        name: used in error messages (usually the file name).
    """

    def __init__(self, data: bytes | bytearray | memoryview, name: str = "<bytes>"):
        self.data = bytes(data)
        self.pos = 0
        self.name = name

    @classmethod
    def from_file(cls, path) -> DlibReader:
        """Reader over a whole file (dlib model files are tens of MB at most)."""
        with open(path, "rb") as fh:
            return cls(fh.read(), name=str(path))

    # ------------------------------------------------------------------ basics

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} at byte {self.pos} of {len(self.data)}")

    def read_bytes(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._fail(f"wanted {n} bytes, only {self.remaining} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def expect_end(self) -> None:
        """Raise unless every byte has been consumed."""
        if self.remaining:
            raise self._fail(f"{self.remaining} bytes left unread")

    # ------------------------------------------------------------------ scalars

    def read_int(self, max_bytes: int = 8) -> int:
        """A compact integer; ``max_bytes`` is the C++ type's size (8 for long/int64, 4 for int)."""
        # Hot path (a shape predictor holds ~1M numbers): index the bytes directly.
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise self._fail("wanted an integer, no bytes left")
        control = data[pos]
        size = control & 0x0F
        if size > max_bytes or control & 0x70:
            raise self._fail(f"bad integer control byte 0x{control:02x} (at most {max_bytes} bytes)")
        end = pos + 1 + size
        if end > len(data):
            raise self._fail(f"integer needs {size} bytes, only {len(data) - pos - 1} left")
        value = int.from_bytes(data[pos + 1 : end], "little")
        self.pos = end
        return -value if control & 0x80 else value

    def read_uint(self, max_bytes: int = 8) -> int:
        value = self.read_int(max_bytes)
        if value < 0:
            raise self._fail(f"expected an unsigned integer, got {value}")
        return value

    def read_bool(self) -> bool:
        """One byte: dlib writes 0 or 1 (older releases the characters '0'/'1')."""
        b = self.read_bytes(1)[0]
        if b in (0, ord("0")):
            return False
        if b in (1, ord("1")):
            return True
        self.pos -= 1
        raise self._fail(f"bad bool byte 0x{b:02x}")

    def read_float(self) -> float:
        """A float/double in dlib's portable form: mantissa (int64) * 2**exponent (int16)."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self._fail("float in dlib's pre-2013 text format (not supported)")
        mantissa = self.read_int(8)
        exponent = self.read_int(2)
        if exponent == EXP_INF:
            return float("inf")
        if exponent == EXP_NINF:
            return float("-inf")
        if exponent == EXP_NAN:
            return float("nan")
        # ldexp is exact for every value a float or double can hold.
        return math.ldexp(float(mantissa), exponent)

    def read_string(self) -> str:
        n = self.read_uint()
        return self.read_bytes(n).decode("utf-8", errors="replace")

    def expect_string(self, *allowed: str) -> str:
        """Read a string (dlib's layer version tags) and check it is one of ``allowed``."""
        start = self.pos
        s = self.read_string()
        if s not in allowed:
            self.pos = start
            raise self._fail(f"expected {' or '.join(map(repr, allowed))}, found {s!r}")
        return s

    def expect_int(self, *allowed: int, what: str = "version") -> int:
        start = self.pos
        v = self.read_int()
        if v not in allowed:
            self.pos = start
            raise self._fail(f"unexpected {what} {v} (known: {', '.join(map(str, allowed))})")
        return v

    # ------------------------------------------------------------------ containers

    def read_vector(self, read_item: Callable[[DlibReader], T]) -> list[T]:
        """``std::vector<T>``: a compact size then each element."""
        n = self.read_uint()
        return [read_item(self) for _ in range(n)]

    def read_matrix(self, read_item: Callable[[DlibReader], float] | None = None) -> np.ndarray:
        """``dlib::matrix<T>`` as a 2-D array; elements use dlib's float form unless ``read_item`` says otherwise."""
        nr, nc = self.read_int(), self.read_int()
        if nr < 0 or nc < 0:
            nr, nc = -nr, -nc
        else:  # the old format wrote the dimensions the other way round
            nr, nc = nc, nr
        if read_item is None:
            return self.read_floats(nr * nc).reshape(nr, nc)
        values = [read_item(self) for _ in range(nr * nc)]
        return np.asarray(values, dtype=np.float64).reshape(nr, nc)

    def read_floats(self, n: int) -> np.ndarray:
        """``n`` consecutive dlib floats as float64; :meth:`read_float` inlined, since models hold millions."""
        out = np.empty(n, dtype=np.float64)
        data, pos, size_of = self.data, self.pos, len(self.data)
        ldexp, from_bytes = math.ldexp, int.from_bytes
        for i in range(n):
            parts = []
            for max_bytes in (8, 2):  # mantissa (int64), exponent (int16)
                if pos >= size_of:
                    self.pos = pos
                    raise self._fail("float truncated")
                control = data[pos]
                size = control & 0x0F
                if size > max_bytes or control & 0x70 or pos + 1 + size > size_of:
                    self.pos = pos
                    raise self._fail(f"bad float byte 0x{control:02x}")
                value = from_bytes(data[pos + 1 : pos + 1 + size], "little")
                parts.append(-value if control & 0x80 else value)
                pos += 1 + size
            mantissa, exponent = parts
            if exponent >= EXP_INF:
                out[i] = {EXP_INF: math.inf, EXP_NINF: -math.inf}.get(exponent, math.nan)
            else:
                out[i] = ldexp(mantissa, exponent)
        self.pos = pos
        return out

    def read_tensor(self) -> np.ndarray:
        """A dnn ``resizable_tensor``: shape (num_samples, k, nr, nc) of little-endian float32."""
        self.expect_int(2, what="tensor version")
        shape = tuple(self.read_uint() for _ in range(4))
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.read_bytes(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only its shape; the values live in the layer's params tensor."""
        self.expect_int(1, what="alias_tensor version")
        return tuple(self.read_uint() for _ in range(4))  # type: ignore[return-value]
