"""Resumable training phases: state saved as safetensors + JSON (no pickle), progress with an ETA.

A phase (autoencoder, UNet) is a loop of ``total`` steps over a set of modules, one Adam
optimiser and one random generator. Every ``every`` steps all of it is written to
``<work>/<name>.safetensors`` and ``<name>.json``; a restarted run loads it and carries on at
the next step with the same random stream, so an interrupted ``make train-model`` resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _optimiser_tensors(optimiser: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimiser.state_dict()
    tensors = {f"optim.{index}.{key}": value.detach().clone().contiguous()
               for index, entries in state["state"].items() for key, value in entries.items()}
    return tensors, {"param_groups": state["param_groups"], "indices": sorted(state["state"])}


def _load_optimiser(optimiser: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {index: {} for index in meta["indices"]}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state[int(index)][key] = value
    optimiser.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Phase:
    """One resumable training loop: ``run(step_fn)`` calls ``step_fn(step)`` for the steps left."""

    def __init__(self, name: str, work: Path, total: int, modules: dict[str, torch.nn.Module | torch.Tensor],
                 optimiser: torch.optim.Optimizer, generator: torch.Generator, log: Callable[[str], None],
                 every: int = 100, later_seconds_per_step: Callable[[], float] = lambda: 0.0) -> None:
        self.name, self.work, self.total, self.every = name, work, total, every
        self.modules, self.optimiser, self.generator, self.log = modules, optimiser, generator, log
        self.later = later_seconds_per_step  # estimated seconds of the phases after this one
        self.start_step = 0
        self.seconds_before = 0.0
        self._resume()

    @property
    def done_file(self) -> Path:
        return self.work / f"{self.name}.safetensors"

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for key, module in self.modules.items():
            items = module.state_dict().items() if isinstance(module, torch.nn.Module) else [("", module)]
            for name, value in items:
                tensors[f"{key}.{name}" if name else key] = value.detach().clone().contiguous()
        return tensors

    def save(self, next_step: int, seconds: float) -> None:
        tensors = self._tensors()
        optimiser_tensors, optimiser_meta = _optimiser_tensors(self.optimiser)
        tensors.update(optimiser_tensors)
        tensors["generator"] = self.generator.get_state()
        self.work.mkdir(parents=True, exist_ok=True)
        partial = self.work / f"{self.name}.partial.safetensors"
        save_file(tensors, str(partial))
        partial.replace(self.done_file)
        (self.work / f"{self.name}.json").write_text(json.dumps(
            {"next_step": next_step, "total": self.total, "seconds": seconds, "optimiser": optimiser_meta}))

    def _resume(self) -> None:
        meta_file = self.work / f"{self.name}.json"
        if not (meta_file.is_file() and self.done_file.is_file()):
            return
        meta = json.loads(meta_file.read_text())
        if meta["total"] != self.total:
            self.log(f"{self.name}: checkpoint is for {meta['total']} steps, not {self.total}; starting over")
            return
        tensors = load_file(str(self.done_file))
        for key, module in self.modules.items():
            if isinstance(module, torch.nn.Module):
                prefix = f"{key}."
                module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            else:
                with torch.no_grad():
                    module.copy_(tensors[key])
        _load_optimiser(self.optimiser, tensors, meta["optimiser"])
        self.generator.set_state(tensors["generator"])
        self.start_step, self.seconds_before = meta["next_step"], meta["seconds"]
        self.log(f"{self.name}: resumed at step {self.start_step}/{self.total}")

    @property
    def finished(self) -> bool:
        return self.start_step >= self.total

    def run(self, step_fn: Callable[[int], str]) -> float:
        """Run the remaining steps; returns this phase's training seconds (across resumes)."""
        started = time.time()
        for step in range(self.start_step, self.total):
            message = step_fn(step)
            done = step + 1
            if done % self.every == 0 or done == self.total:
                elapsed = time.time() - started
                per_step = elapsed / (done - self.start_step)
                left = per_step * (self.total - done) + self.later()
                self.save(done, self.seconds_before + elapsed)
                self.log(f"{self.name} {done}/{self.total}  {message}  {per_step:.2f} s/step  "
                         f"about {left / 60:.0f} min left in all")
        return self.seconds_before + (time.time() - started)
