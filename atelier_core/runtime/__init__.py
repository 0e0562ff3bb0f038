"""The only code that finds or boots a ComfyUI (``hosts`` finds one; nothing here imports ComfyUI at import time)."""
