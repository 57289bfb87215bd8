"""Training and encoding on CUDA where a GPU is present (skipped elsewhere; run on a GPU machine
with ``pytest tests/model/test_cuda.py``): every tensor a loss makes lives on the batch's device,
and the shipped model encodes the same on the GPU as on the CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from midivae.constants import PHRASE_SHAPE
from midivae.model.reference import ReferenceConfig, ReferenceVAE
from midivae.model.retrieval import RetrievalConfig, RetrievalVAE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _phrases(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((n, *PHRASE_SHAPE)) < 0.01).float()


#: small enough to train in seconds
TINY = RetrievalConfig(latent_dim=16, patch_dim=16, bar_dim=32, orch_dim=4)


@pytest.mark.parametrize("model", [RetrievalVAE(TINY), RetrievalVAE(dataclasses.replace(TINY, song_weight=0.5, song_dims=8)),
                                   ReferenceVAE(ReferenceConfig())], ids=["retrieval", "retrieval-song-dims", "reference"])
def test_a_training_step_runs_on_cuda(model) -> None:
    model = model.cuda().train()
    x = _phrases(8).cuda()
    kwargs = {"song_pairs": True} if isinstance(model, RetrievalVAE) else {}
    for bf16 in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model.loss(x, beta=0.5, **kwargs)
        out["loss"].backward()
        assert all(torch.isfinite(v) and v.device.type == "cuda" for v in out.values())


def test_the_shipped_model_encodes_alike_on_cuda_and_cpu(real_phrases) -> None:
    import midivae

    cpu = midivae.load_model(None).encode_search(real_phrases)
    gpu = midivae.load_model(None, device="cuda").encode_search(real_phrases)
    # TF32 and other kernels: close, not equal; the neighbours are the same
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)
    sim_c, sim_g = cpu[:, :192] @ cpu[:, :192].T, gpu[:, :192] @ gpu[:, :192].T
    np.testing.assert_array_equal(np.argsort(-sim_c, axis=1)[:, :3], np.argsort(-sim_g, axis=1)[:, :3])


def test_train_runs_on_cuda_and_its_checkpoint_loads_on_the_cpu(tiny_store, tmp_path) -> None:
    """The trainer end to end on the GPU (song pairs, bf16 where the GPU has it, the search head
    fitted after): the run's checkpoint then encodes on the CPU."""
    import midivae
    from midivae.model.train import TrainConfig, train

    cfg = TrainConfig(epochs=1, batch_size=16, seed=3, val_size=16, train_limit=64, patience=0, device="cuda")
    result = train(tiny_store, tmp_path / "run", arch="retrieval", model_config=dataclasses.replace(TINY, song_weight=0.5, song_dims=8), train_config=cfg, progress=False)
    assert np.isfinite(result.best_val_loss)
    model = midivae.load_model(tmp_path / "run")
    assert model.device.type == "cpu"
    v = model.encode_search(_phrases(4).numpy().astype(bool))
    assert v.shape == (4, model.search_dim) and np.isfinite(v).all()


def test_rows_unpack_alike_on_cuda_and_cpu() -> None:
    from midivae.data.store import pack
    from midivae.model.train import unpack_rows

    packed = pack(_phrases(6).bool().numpy())
    for dtype in (torch.uint8, torch.float32):
        gpu = unpack_rows(torch.from_numpy(packed).pin_memory(), torch.device("cuda"), dtype)
        assert gpu.device.type == "cuda" and gpu.dtype == dtype
        assert torch.equal(gpu.cpu(), unpack_rows(packed, torch.device("cpu"), dtype))
