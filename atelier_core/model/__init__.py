"""Model support without ComfyUI: FLUX tensor layout and architecture checks, model files, the loader's choice of operations, model families, fp8 matmul, text-encoder layouts."""
