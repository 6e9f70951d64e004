"""The rules of the recipe's automatic performance choices (``performance.plan_performance``).

Pure functions: no process, no GPU. The memory estimate is checked against the measured H200 baseline
(FACTS.md, GPU section); the decisions against the cases each rule is for.
"""

from __future__ import annotations

from trl_nats_agent.recipes.performance import GIB, ModelShape, estimate_memory, plan_performance

from trl_nats.messages import TrainingParams

# The measured baseline's model (FACTS.md, GPU section): hidden 2048, 16 layers, vocab 32000.
BASELINE_SHAPE = ModelShape(params=1_104_218_112, layers=16, hidden=2048, model_type="llama")
H100 = 80 * GIB


def _plan(params: TrainingParams, shape: ModelShape = BASELINE_SHAPE, **over):
    kwargs = dict(
        device="cuda", weight_bytes=2, activation_bytes=2, world_size=1, local_world_size=1, fsdp=False,
        rows=272, steps=30, device_memory=H100, liger_supported=True, uses_reference=True,
    )  # fmt: skip
    kwargs.update(over)
    return plan_performance(params, shape, **kwargs)


def test_memory_estimate_matches_the_measured_baseline():
    """FACTS.md: 11.3 GiB with checkpointing, 22.3 GiB without (live reference, bf16, 8 pairs x 512)."""
    est = estimate_memory(
        BASELINE_SHAPE, batch_pairs=8, max_length=512, weight_bytes=2, activation_bytes=2, shards=1,
        live_reference=True,
    )  # fmt: skip
    without = (est.states + est.reference + est.activations) / GIB
    with_ckpt = (est.states + est.reference + est.activations_checkpointed) / GIB
    assert abs(without - 22.3) / 22.3 < 0.10, without
    assert abs(with_ckpt - 11.3) / 11.3 < 0.15, with_ckpt


def test_checkpointing_is_on_only_when_the_estimate_does_not_fit():
    fits = _plan(TrainingParams(per_device_batch_size=8, max_length=520))
    assert not fits.activation_checkpointing.on and "fits" in fits.activation_checkpointing.reason
    big = _plan(TrainingParams(per_device_batch_size=16, max_length=4096))
    assert big.activation_checkpointing.on and "exceeds" in big.activation_checkpointing.reason
    small_gpu = _plan(TrainingParams(per_device_batch_size=8, max_length=520), device_memory=16 * GIB)
    assert small_gpu.activation_checkpointing.on
    # sharding the states over 8 ranks makes room again
    sharded = _plan(
        TrainingParams(per_device_batch_size=8, max_length=520), device_memory=16 * GIB, world_size=8,
        local_world_size=8, fsdp=True,
    )  # fmt: skip
    assert not sharded.activation_checkpointing.on
    unknown = _plan(TrainingParams(), ModelShape(params=10**9, layers=None, hidden=None, model_type="x"))
    assert unknown.activation_checkpointing.on  # no estimate on a GPU: the safe side


def test_explicit_spec_values_always_win():
    forced = _plan(TrainingParams(activation_checkpointing=True, precompute_ref=False, liger=False))
    assert forced.activation_checkpointing.on and not forced.precompute_ref.on and not forced.liger.on
    assert all("job spec" in c.reason for c in (forced.activation_checkpointing, forced.precompute_ref, forced.liger))
    off = _plan(TrainingParams(activation_checkpointing=False, per_device_batch_size=64, max_length=8192))
    assert not off.activation_checkpointing.on


def test_liger_where_the_family_has_kernels_and_only_on_cuda():
    assert _plan(TrainingParams()).liger.on
    assert not _plan(TrainingParams(), liger_supported=False).liger.on
    cpu = _plan(TrainingParams(liger=True), device="cpu", device_memory=32 * GIB)
    assert not cpu.liger.on and "CUDA" in cpu.liger.reason


def test_reference_is_precomputed_when_the_run_uses_most_of_the_dataset():
    assert _plan(TrainingParams(max_steps=30, per_device_batch_size=8), rows=272).precompute_ref.on  # 240 of 272
    assert not _plan(TrainingParams(max_steps=10, per_device_batch_size=8), rows=10_000).precompute_ref.on
    assert _plan(TrainingParams(epochs=1), rows=10_000, steps=5000).precompute_ref.on
    assert not _plan(TrainingParams(), uses_reference=False).precompute_ref.on  # SFT


def test_fsdp2_keeps_gathered_weights_only_on_one_gpu_node_with_room():
    params = TrainingParams(per_device_batch_size=8, max_length=520)
    one_node = _plan(params, world_size=8, local_world_size=8, fsdp=True)
    assert not one_node.reshard_after_forward.on
    two_nodes = _plan(params, world_size=16, local_world_size=8, fsdp=True)
    assert two_nodes.reshard_after_forward.on
    cpu = _plan(params, device="cpu", world_size=2, local_world_size=2, fsdp=True)
    assert cpu.reshard_after_forward.on
    tight = _plan(params, world_size=8, local_world_size=8, fsdp=True, device_memory=6 * GIB)
    assert tight.reshard_after_forward.on


def test_lora_counts_no_reference_copy_and_trains_only_the_adapter():
    """LoRA DPO: the base weights once (frozen), the adapter's weights, gradients and Adam states in float32,
    and no reference model: it is the base with the adapter switched off, whether or not it is precomputed."""
    # rank 16 on every linear layer of the baseline (intermediate size 7168): 16 x (4 x 4096 + 3 x 9216) per layer
    adapter = 16 * 16 * (4 * (2048 + 2048) + 3 * (2048 + 7168))
    common = dict(batch_pairs=8, max_length=512, weight_bytes=2, activation_bytes=2, shards=1, live_reference=True)
    full = estimate_memory(BASELINE_SHAPE, **common)
    lora = estimate_memory(BASELINE_SHAPE, adapter_params=adapter, **common)
    assert full.reference == BASELINE_SHAPE.params * 2 and full.states == BASELINE_SHAPE.params * 2 * 4
    assert lora.reference == 0
    assert lora.states == BASELINE_SHAPE.params * 2 + adapter * 4 * 4
    assert lora.activations == full.activations  # the backward still runs through every layer
    sharded = estimate_memory(BASELINE_SHAPE, adapter_params=adapter, **{**common, "shards": 4})
    assert sharded.states == lora.states // 4 and sharded.reference == 0
    # where full DPO must checkpoint activations, LoRA DPO on the same GPU does not have to
    params = TrainingParams(per_device_batch_size=4, max_length=520, precompute_ref=False)
    assert _plan(params, device_memory=16 * GIB).activation_checkpointing.on
    fits = _plan(params, device_memory=16 * GIB, adapter_params=adapter).activation_checkpointing
    assert not fits.on and "fits" in fits.reason, fits.reason
