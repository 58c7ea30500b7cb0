"""The memory guard's estimate (``dwgf/memory.py``) and its use in the DWGF Sampler."""

from __future__ import annotations

import pytest
import torch

from dwgf import memory


def squares(z: torch.Tensor) -> torch.Tensor:
    return z.pow(2).sum()  # autograd keeps z: 4 bytes per element


def attention_like(z: torch.Tensor) -> torch.Tensor:
    """Keeps a P × P matrix per image, like a VAE's mid-block attention done naively."""
    tokens = z.flatten(2).transpose(1, 2)  # (1, P, C)
    weights = torch.softmax(tokens @ tokens.transpose(1, 2), dim=-1)  # softmax keeps its (P, P) output
    return (weights @ tokens).sum()


def test_saved_bytes_count_what_autograd_keeps_and_skip_the_weights() -> None:
    z = torch.zeros(1, 4, 8, 8)
    assert memory.saved_bytes_of(squares, z) == 4 * z.numel()
    weight = torch.randn(4, 4, 3, 3)
    conv = lambda x: torch.nn.functional.conv2d(x, weight, padding=1).sum()  # noqa: E731 - keeps x and weight
    assert memory.saved_bytes_of(conv, z, excluded=[weight]) == 4 * z.numel()
    assert memory.saved_bytes_of(conv, z) == 4 * (z.numel() + weight.numel())


def test_the_probe_frees_the_graph_it_measures() -> None:
    """A node that saves its own output (exp, sigmoid, …) must not keep the probe's graph alive: the pack hook
    once returned the tensor itself, a cycle through autograd's C++ nodes that Python's collector
    cannot break, and every probed VAE leaked its probe graphs (0.5 GB per SD 1.5 VAE, issue 29)."""
    import gc
    import weakref

    outputs: list[weakref.ref] = []

    def network(x: torch.Tensor) -> torch.Tensor:
        y = torch.exp(x * 2.0)
        outputs.append(weakref.ref(y))
        return y.sum(dim=1)

    assert memory.saved_bytes_of(network, torch.ones(1, 4, 64, 64)) > 0
    gc.collect()
    assert outputs and outputs[0]() is None


def test_the_probe_fit_extrapolates_a_quadratic_footprint() -> None:
    footprint = memory.probe_decoder(attention_like, channels=4, device=torch.device("cpu"))
    assert footprint.quadratic == pytest.approx(4.0, rel=1e-6)  # float32 P × P softmax output
    side = 40
    measured = memory.saved_bytes_of(attention_like, torch.zeros(1, 4, side, side))
    assert footprint.saved_bytes(side * side) == pytest.approx(measured, rel=1e-6)


def test_run_footprints_follow_the_memory_modes() -> None:
    footprint = memory.DecoderFootprint(0.0, 1000.0, 0.0)
    fastest = memory.RunFootprint(64, 64, 8, particles=4, particles_at_once=4, checkpointed=False)
    one_at_a_time = memory.RunFootprint(64, 64, 8, particles=4, particles_at_once=1, checkpointed=False)
    least = memory.RunFootprint(64, 64, 8, particles=4, particles_at_once=1, checkpointed=True)
    assert fastest.working_bytes(footprint) == pytest.approx(4 * one_at_a_time.working_bytes(footprint))
    share = memory.CHECKPOINTED_SHARE
    assert least.working_bytes(footprint) == pytest.approx(share * one_at_a_time.working_bytes(footprint))
    free = one_at_a_time.working_bytes(footprint) * 2.5
    assert fastest.most_particles_at_once(footprint, free) == 2
    side = fastest.largest_fitting_side(footprint, free)
    assert side % 8 == 0
    smaller = memory.RunFootprint(side // 8, side // 8, 8, 4, 4, False)
    larger = memory.RunFootprint(side // 8 + 1, side // 8 + 1, 8, 4, 4, False)
    assert smaller.working_bytes(footprint) <= free < larger.working_bytes(footprint)


def test_attention_peaks_at_several_times_what_it_keeps_even_checkpointed() -> None:
    """The P² part (attention) is costed at ATTENTION_PEAK_OVER_SAVED and not shrunk by checkpointing;
    the rest at PEAK_OVER_SAVED (× CHECKPOINTED_SHARE when checkpointed)."""
    footprint = memory.DecoderFootprint(0.0, 1000.0, 4.0)
    pixels = 32 * 32
    attention, rest = 4.0 * pixels**2, 1000.0 * pixels
    plain = memory.RunFootprint(32, 32, 2, particles=2, particles_at_once=2, checkpointed=False)
    least = memory.RunFootprint(32, 32, 2, particles=2, particles_at_once=1, checkpointed=True)
    assert plain.working_bytes(footprint) == pytest.approx(
        2 * (memory.PEAK_OVER_SAVED * rest + memory.ATTENTION_PEAK_OVER_SAVED * attention))
    assert least.working_bytes(footprint) == pytest.approx(
        memory.CHECKPOINTED_SHARE * memory.PEAK_OVER_SAVED * rest + memory.ATTENTION_PEAK_OVER_SAVED * attention)


def test_the_sampler_refuses_what_does_not_fit_and_the_override_runs_it(comfy_nodes, monkeypatch) -> None:
    from comfyui_env import call_node, node_defaults, pack_submodule

    model, vae, _, unconditional, *_ = call_node("DWGF_DemoModel", prompt="unconditional", batch_size=1)
    degradation, measurement, _ = call_node("DWGF_DegradationOperator", **{
        **node_defaults("DWGF_DegradationOperator"), "image": torch.rand(1, 64, 64, 3),
        "image_is": "clean (simulate the measurement)", "operator": "inpaint box (centre)"})
    inputs = {**node_defaults("DWGF_Sampler"), "preset": "custom", "model": model, "positive": unconditional,
              "negative": unconditional,
              "vae": vae, "degradation": degradation, "measurement": measurement, "steps": 1, "particles": 4}
    monkeypatch.setattr(pack_submodule("nodes.comfy_adapter"), "free_memory_bytes", lambda device: 2**20)  # 1 MiB
    with pytest.raises(ValueError) as refused:
        call_node("DWGF_Sampler", **inputs)
    message = str(refused.value)
    assert "memory: restoring a 64x64 image with 4 particles in memory mode 'fastest" in message
    assert "1 MiB free" in message and "images up to about" in message and "memory_check" in message
    (ran,) = call_node("DWGF_Sampler", **{**inputs, "memory_check": False})
    assert torch.isfinite(ran["samples"]).all()


def test_with_a_fast_vae_the_guard_costs_both_decoders_and_names_the_way_out(comfy_nodes, monkeypatch) -> None:
    """Issue 25: the run decodes through the fast VAE, and through the full one in its last
    full_decoder_steps iterations; with room for the tiny decoder only, the guard refuses naming
    full_decoder_steps 0, and that run goes through."""
    from comfyui_env import call_node, node_defaults, pack_submodule

    guard = pack_submodule("nodes.memory_guard")
    adapter = pack_submodule("nodes.comfy_adapter")
    model, vae, _, unconditional, _, fast_vae = call_node("DWGF_DemoModel", prompt="unconditional", batch_size=1)
    degradation, measurement, _ = call_node("DWGF_DegradationOperator", **{
        **node_defaults("DWGF_DegradationOperator"), "image": torch.rand(1, 64, 64, 3),
        "image_is": "clean (simulate the measurement)", "operator": "inpaint box (centre)"})
    with torch.inference_mode(False):
        full = adapter.prepare_vae(vae, model)
        tiny = adapter.prepare_vae(fast_vae, model)
    run = memory.RunFootprint(32, 32, 2, particles=4, particles_at_once=4, checkpointed=False)
    needs = {name: run.working_bytes(guard.decoder_footprint(ae)) for name, ae in (("full", full), ("tiny", tiny))}
    assert needs["full"] > 4 * needs["tiny"]  # the demo decoder's attention and width against the tiny one's
    free = (needs["full"] * needs["tiny"]) ** 0.5
    monkeypatch.setattr(adapter, "free_memory_bytes", lambda device: int(free))
    inputs = {**node_defaults("DWGF_Sampler"), "preset": "custom", "model": model, "positive": unconditional,
              "negative": unconditional, "vae": vae, "degradation": degradation, "measurement": measurement,
              "steps": 2, "particles": 4, "fast_vae": fast_vae, "full_decoder_steps": 1}
    with pytest.raises(ValueError, match=r"for its last iterations \(the full VAE decoder\).*full_decoder_steps 0, "
                                         r"so only the fast VAE's decoder runs"):
        call_node("DWGF_Sampler", **inputs)
    (ran,) = call_node("DWGF_Sampler", **{**inputs, "full_decoder_steps": 0})
    assert torch.isfinite(ran["samples"]).all()
