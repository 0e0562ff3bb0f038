"""Pictures of the shipped workflows: a small diagram of the graph (step groups, node boxes and links, as on the
canvas) under the workflow's title.

``png_with_workflow`` embeds the UI workflow (``workflow`` chunk) and the API prompt (``prompt`` chunk) the way
ComfyUI's SaveImage does, so dropping the PNG on the canvas opens the workflow. ``jpeg`` encodes the template
browser's ``<name>.jpg`` (the before/after picture of ``before_after.py``).
"""

from __future__ import annotations

import io
import json

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

WIDTH, HEIGHT = 960, 600
HEADER = 92
MARGIN = 24
TITLE_BAR = 30  # LiteGraph draws the title above a node's pos
SLOT_START, SLOT_STEP = 14, 20  # first slot's offset below pos, distance between slots
BACKGROUND = (32, 32, 32)
HEADER_BG = (24, 24, 24)
NODE_BG, NODE_TITLE = (53, 53, 53), (34, 34, 34)
OURS_TITLE = (44, 64, 96)  # this pack's nodes stand out
NOTE_TYPES = {"MarkdownNote", "Note"}
# The frontend's link colours by type.
LINK_COLORS = {
    "IMAGE": (100, 181, 246),
    "LATENT": (255, 156, 249),
    "CONDITIONING": (255, 169, 49),
    "MODEL": (179, 157, 219),
    "CLIP": (255, 213, 0),
    "VAE": (255, 110, 110),
    "MASK": (129, 199, 132),
}
DEFAULT_LINK = (170, 170, 170)


def _hex(color: str | None, fallback: tuple[int, int, int]) -> tuple[int, int, int]:
    if not color:
        return fallback
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))


def _font(size: int) -> ImageFont.ImageFont:
    # Pillow's built-in font: the same on every machine, no system font needed.
    return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…" if text else ""


def diagram(ui: dict, title: str, summary: str) -> Image.Image:
    """The workflow's graph drawn to fit under a header with its title and one-line summary."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, WIDTH, HEADER], fill=HEADER_BG)
    draw.text((MARGIN, 16), title, font=_font(30), fill=(240, 240, 240))
    draw.text((MARGIN, 56), _fit(draw, summary, _font(17), WIDTH - 2 * MARGIN), font=_font(17), fill=(175, 175, 175))

    nodes = {n["id"]: n for n in ui["nodes"]}
    groups = ui.get("groups", [])
    left = min([n["pos"][0] for n in nodes.values()] + [g["bounding"][0] for g in groups])
    top = min([n["pos"][1] - TITLE_BAR for n in nodes.values()] + [g["bounding"][1] for g in groups])
    right = max(
        [n["pos"][0] + n["size"][0] for n in nodes.values()] + [g["bounding"][0] + g["bounding"][2] for g in groups]
    )
    bottom = max(
        [n["pos"][1] + n["size"][1] for n in nodes.values()] + [g["bounding"][1] + g["bounding"][3] for g in groups]
    )
    area_w, area_h = WIDTH - 2 * MARGIN, HEIGHT - HEADER - 2 * MARGIN
    scale = min(area_w / (right - left), area_h / (bottom - top))
    x0 = MARGIN + (area_w - (right - left) * scale) / 2
    y0 = HEADER + MARGIN + (area_h - (bottom - top) * scale) / 2

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + (x - left) * scale, y0 + (y - top) * scale

    label = _font(max(9, min(18, round(20 * scale))))
    for group in groups:  # the step groups, as the canvas draws them: a tinted box with its title
        x, y, w, h = group["bounding"]
        x1, y1 = at(x, y)
        x2, y2 = at(x + w, y + h)
        tint = tuple(
            int(c * 0.45 + b * 0.55) for c, b in zip(_hex(group.get("color"), NODE_BG), BACKGROUND, strict=True)
        )
        draw.rectangle([x1, y1, x2, y2], fill=tint, outline=_hex(group.get("color"), NODE_BG))
        draw.text((x1 + 4, y1 + 2), _fit(draw, group["title"], label, x2 - x1 - 8), font=label, fill=(225, 225, 225))

    for _link_id, origin, origin_slot, target, target_slot, link_type in ui["links"]:
        source, sink = nodes[origin], nodes[target]
        start = at(source["pos"][0] + source["size"][0], source["pos"][1] + SLOT_START + SLOT_STEP * origin_slot)
        end = at(sink["pos"][0], sink["pos"][1] + SLOT_START + SLOT_STEP * target_slot)
        _curve(draw, start, end, LINK_COLORS.get(link_type, DEFAULT_LINK), max(1, round(3 * scale)))

    radius = max(2, round(8 * scale))
    for node in nodes.values():
        x1, y1 = at(node["pos"][0], node["pos"][1] - TITLE_BAR)
        x2, y2 = at(node["pos"][0] + node["size"][0], node["pos"][1] + node["size"][1])
        note = node["type"] in NOTE_TYPES
        body = _hex(node.get("bgcolor"), NODE_BG)
        bar = _hex(node.get("color"), OURS_TITLE if node["type"].startswith("Atelier") else NODE_TITLE)
        draw.rounded_rectangle([x1, y1, x2, y2], radius=radius, fill=body, outline=(20, 20, 20))
        bar_bottom = y1 + TITLE_BAR * scale
        draw.rounded_rectangle([x1, y1, x2, bar_bottom], radius=radius, fill=bar)
        text = _fit(draw, node.get("title") or node["type"], label, x2 - x1 - 8)
        draw.text((x1 + 5, (y1 + bar_bottom) / 2), text, font=label, fill=(230, 230, 230), anchor="lm")
        if note:  # a hint of the note's text lines
            for row in range(int((y2 - bar_bottom - 8) // max(6, 14 * scale))):
                y = bar_bottom + 8 + row * max(6, 14 * scale)
                draw.line(
                    [x1 + 6, y, x1 + 6 + (x2 - x1 - 12) * (0.55 + 0.4 * ((row * 7) % 5) / 4), y],
                    fill=(150, 130, 100),
                    width=max(1, round(3 * scale)),
                )
    return image


def _curve(draw: ImageDraw.ImageDraw, start, end, color, width: int) -> None:
    """A cubic Bezier from an output to an input, with horizontal tangents as LiteGraph draws links."""
    (sx, sy), (ex, ey) = start, end
    pull = max(abs(ex - sx) * 0.5, 20)
    c1, c2 = (sx + pull, sy), (ex - pull, ey)
    points = []
    for i in range(33):
        t = i / 32
        u = 1 - t
        points.append(
            (
                u**3 * sx + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * ex,
                u**3 * sy + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * ey,
            )
        )
    draw.line(points, fill=color, width=width, joint="curve")


def png_with_workflow(picture: Image.Image, ui: dict, api: dict) -> bytes:
    """PNG bytes with the ``workflow`` and ``prompt`` text chunks ComfyUI reads on drag-and-drop."""
    info = PngInfo()
    # json.dumps escapes non-ASCII, so the chunks stay plain tEXt (Latin-1), as ComfyUI's SaveImage writes them.
    info.add_text("workflow", json.dumps(ui))
    info.add_text("prompt", json.dumps(api))
    out = io.BytesIO()
    picture.save(out, format="PNG", pnginfo=info, optimize=True)
    return out.getvalue()


def jpeg(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=88)
    return out.getvalue()
