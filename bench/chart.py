"""The chart of ``docs/performance.png``: matplotlib when installed, else a small pure-Python PNG writer.

The fallback draws grouped bar charts with a built-in 5x7 pixel font (capitals, digits and a few
signs) and writes the PNG with ``zlib`` alone, so the harness needs nothing beyond the standard
library to produce its chart.
"""

from __future__ import annotations

import importlib
import importlib.util
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RGB = tuple[int, int, int]

# 5x7 glyphs, one string of five '#'/'.' per row.
_FONT_ROWS = {
    "A": ".###.#...##...#######...##...##...#", "B": "####.#...##...#####.#...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.", "D": "####.#...##...##...##...##...#####.",
    "E": "######....#....####.#....#....#####", "F": "######....#....####.#....#....#....",
    "G": ".###.#...##....#.####...##...#.####", "H": "#...##...##...#######...##...##...#",
    "I": ".###...#....#....#....#....#...###.", "J": "..###...#....#....#....#.#..#..##..",
    "K": "#...##..#.#.#..##...#.#..#..#.#...#", "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##...##...##...##...#", "N": "#...###..##.#.##..###...##...##...#",
    "O": ".###.#...##...##...##...##...#.###.", "P": "####.#...##...#####.#....#....#....",
    "Q": ".###.#...##...##...##.#.##..#..##.#", "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".#####....#.....###.....#....#####.", "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.", "V": "#...##...##...##...##...#.#.#...#..",
    "W": "#...##...##...##.#.##.#.##.#.#.#.#.", "X": "#...##...#.#.#...#...#.#.#...##...#",
    "Y": "#...##...#.#.#...#....#....#....#..", "Z": "#####....#...#...#...#...#....#####",
    "0": ".###.#...##..###.#.###..##...#.###.", "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####", "3": "#####...#...#.....#.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.", "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.", "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.", "9": ".###.#...##...#.####....#...#..##..",
    " ": "...................................", ".": "..............................##...",
    ",": "......................##....#...#..", "-": "...............###.................",
    "/": ".........#...#...#...#...#.........", "%": "##...##..#...#...#...#...#..##...##",
    "(": "...#...#...#....#....#.....#.....#.", ")": ".#.....#.....#....#....#...#...#...",
    ":": ".......#....#.........#....#.......", "+": ".......#....#..#####..#....#.......",
    "=": "..........#####.....#####..........", "_": "..............................#####",
}  # fmt: skip
_FONT = {ch: [rows[i * 5 : i * 5 + 5] for i in range(7)] for ch, rows in _FONT_ROWS.items()}
assert all(len(rows) == 35 for rows in _FONT_ROWS.values())

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (30, 30, 30)
GRID: RGB = (225, 225, 225)
SERIES_COLORS: tuple[RGB, ...] = ((120, 144, 156), (33, 150, 243), (229, 57, 53), (67, 160, 71))


class Canvas:
    """An RGB raster with the few drawing operations a bar chart needs."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = [bytearray(bytes(WHITE) * width) for _ in range(height)]

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        span = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            self.pixels[y][x0 * 3 : x1 * 3] = span

    def text(self, x: int, y: int, text: str, color: RGB = BLACK, scale: int = 2) -> None:
        """Draw ``text`` with its top-left corner at (x, y); unknown characters are drawn as spaces."""
        for i, ch in enumerate(text.upper()):
            glyph = _FONT.get(ch, _FONT[" "])
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "#":
                        gx, gy = x + (i * 6 + col) * scale, y + row * scale
                        self.rect(gx, gy, gx + scale, gy + scale, color)

    @staticmethod
    def text_width(text: str, scale: int = 2) -> int:
        return len(text) * 6 * scale - scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self.pixels)

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        )


@dataclass(frozen=True)
class Panel:
    """One grouped bar chart: ``values[g][s]`` is series ``s`` of group ``g`` (``None``: no bar)."""

    title: str
    groups: Sequence[str]
    series: Sequence[str]
    values: Sequence[Sequence[float | None]]


def _nice_step(top: float) -> float:
    raw = top / 5 if top > 0 else 1.0
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _draw_panel(canvas: Canvas, panel: Panel, top_y: int, height: int) -> None:
    left, right = 90, canvas.width - 20
    canvas.text(left, top_y, panel.title, scale=2)
    plot_top, plot_bottom = top_y + 60, top_y + height - 40
    vmax = max((v for row in panel.values for v in row if v is not None), default=1.0) or 1.0
    step = _nice_step(vmax)
    ymax = step * (int(vmax / step) + 1)
    tick = 0.0
    while tick <= ymax + 1e-9:
        y = plot_bottom - round((plot_bottom - plot_top) * tick / ymax)
        canvas.rect(left, y, right, y + 1, GRID)
        label = f"{tick:.0f}"
        canvas.text(left - 8 - Canvas.text_width(label, 1), y - 3, label, scale=1)
        tick += step
    canvas.rect(left, plot_bottom, right, plot_bottom + 2, BLACK)
    # Legend, top right.
    lx = right
    for s in reversed(range(len(panel.series))):
        name = panel.series[s]
        lx -= Canvas.text_width(name, 1) + 22
        canvas.rect(lx, top_y + 30, lx + 10, top_y + 40, SERIES_COLORS[s % len(SERIES_COLORS)])
        canvas.text(lx + 14, top_y + 32, name, scale=1)
    group_w = (right - left) / max(1, len(panel.groups))
    bar_w = int(group_w * 0.8 / max(1, len(panel.series)))
    for g, group in enumerate(panel.groups):
        gx = left + int(g * group_w + group_w * 0.1)
        for s, value in enumerate(panel.values[g]):
            if value is None:
                continue
            x0 = gx + s * bar_w
            y = plot_bottom - round((plot_bottom - plot_top) * value / ymax)
            canvas.rect(x0 + 1, y, x0 + bar_w - 1, plot_bottom, SERIES_COLORS[s % len(SERIES_COLORS)])
            label = f"{value:.0f}"
            canvas.text(x0 + (bar_w - Canvas.text_width(label, 1)) // 2, y - 10, label, scale=1)
        name_x = left + int(g * group_w + (group_w - Canvas.text_width(group, 1)) / 2)
        canvas.text(name_x, plot_bottom + 10, group, scale=1)


def png_bar_charts(path: Path, panels: Sequence[Panel], width: int = 1000, panel_height: int = 330) -> None:
    """Write ``panels`` stacked vertically as one PNG, with no third-party library."""
    canvas = Canvas(width, panel_height * len(panels) + 20)
    for i, panel in enumerate(panels):
        _draw_panel(canvas, panel, 20 + i * panel_height, panel_height)
    path.write_bytes(canvas.png())


def matplotlib_bar_charts(path: Path, panels: Sequence[Panel]) -> None:
    """The same charts drawn by matplotlib (when it is installed)."""
    # Imported by name: matplotlib is optional and ships no type information we could rely on here.
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.4 * len(panels)), squeeze=False)
    for ax, panel in zip((row[0] for row in axes), panels, strict=True):
        n = max(1, len(panel.series))
        width = 0.8 / n
        for s, name in enumerate(panel.series):
            xs = [g + (s - (n - 1) / 2) * width for g in range(len(panel.groups))]
            ys = [row[s] if row[s] is not None else 0.0 for row in panel.values]
            bars = ax.bar(xs, ys, width, label=name)
            ax.bar_label(bars, fmt="{:,.0f}", fontsize=7)
        ax.set_xticks(range(len(panel.groups)), list(panel.groups), fontsize=8)
        ax.set_title(panel.title, fontsize=10, loc="left")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def bar_charts(path: Path, panels: Sequence[Panel], *, engine: str = "auto") -> str:
    """Write the chart with ``engine`` (``auto``: matplotlib if importable); returns the engine used."""
    if engine == "matplotlib" or (engine == "auto" and has_matplotlib()):
        matplotlib_bar_charts(path, panels)
        return "matplotlib"
    png_bar_charts(path, panels)
    return "built-in PNG writer"
