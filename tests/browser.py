"""A real headless browser (Debian's `chromium`) for tests of rendered pages: the DOM after
the browser parsed a page, and a screenshot decoded to pixels."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from tests.ops.promtools import require_tool

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]


def rendered_dom(page: Path, timeout: float = 60.0) -> str:
    """The page's DOM as serialised by chromium after loading `page`."""
    binary = require_tool("chromium")
    done = subprocess.run(
        [binary, *FLAGS, "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=timeout, check=True,
    )  # fmt: skip
    return done.stdout


def screenshot(page: Path, png: Path, width: int, height: int, timeout: float = 60.0) -> np.ndarray:
    """Screenshot `page` at `width` x `height` into `png`; return its pixels (rows, cols, RGB)."""
    from PIL import Image

    binary = require_tool("chromium")
    subprocess.run(
        [binary, *FLAGS, f"--screenshot={png}", f"--window-size={width},{height}",
         page.resolve().as_uri()],
        capture_output=True, timeout=timeout, check=True,
    )  # fmt: skip
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))


def count_kind(dom: str, kind: str) -> int:
    """How many elements of the DOM carry data-kind="<kind>"."""
    return len(re.findall(rf'data-kind="{re.escape(kind)}"', dom))


def has_colour(pixels: np.ndarray, hex_colour: str, tolerance: int = 12) -> int:
    """How many pixels are within `tolerance` (per channel) of `hex_colour` ("#rrggbb")."""
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - target).max(axis=2) <= tolerance).sum())
