"""Socket types that Atelier nodes pass between each other (defined once; import them from here).

``KontextGeometry`` carries an :class:`atelier_core.image.geometry.Geometry`: what the Kontext Aspect-Ratio Lock did to an
image (crop box, resize, padding, target size, fingerprint), so Kontext Restore Size and the diff-merge can undo
it exactly.
"""

from __future__ import annotations

from comfy_api.latest import io

KontextGeometry = io.Custom("KONTEXT_GEOMETRY")

__all__ = ["KontextGeometry"]
