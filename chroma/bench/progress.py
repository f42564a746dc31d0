"""Progress bars for long phases: tqdm when installed, else one line rewritten on stderr."""

from __future__ import annotations

import sys


class Bar:
    def __init__(self, total: int, unit: str) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        # on a terminal a bar; in a log (CI) one line per step instead of carriage returns
        self._tqdm = tqdm(total=total, unit=unit, file=sys.stderr, leave=False) if tqdm and sys.stderr.isatty() else None
        self._total, self._done, self._text = total, 0, ""

    def describe(self, text: str) -> None:
        if self._tqdm is not None:
            self._tqdm.set_description_str(text)
        else:
            self._text = text
            self._draw()

    def advance(self) -> None:
        self._done += 1
        if self._tqdm is not None:
            self._tqdm.update(1)
        else:
            self._draw()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif sys.stderr.isatty():
            sys.stderr.write("\n")

    def _draw(self) -> None:
        line = f"[{self._done}/{self._total}] {self._text}"
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line[:120].ljust(120))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
