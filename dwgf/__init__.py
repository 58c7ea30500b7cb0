"""The pure-PyTorch core of the pack: operators, DWGF, PSLD. Never imports ComfyUI."""
