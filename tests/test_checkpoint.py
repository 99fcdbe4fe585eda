"""Checkpoints: round trips and every way a checkpoint can be wrong."""

import pytest

from tests.conftest import TEST_WIDTH, needs_export

pytestmark = needs_export
torch = pytest.importorskip("torch")

from overfeat.errors import InputError, ModelError  # noqa: E402


def _model(**kwargs):
    from overfeat.export import build_model

    args = dict(arch="accurate", num_classes=4, heads=("cls", "loc"), width=TEST_WIDTH, seed=7)
    args.update(kwargs)
    return build_model(**args)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    from overfeat.export import load_checkpoint

    source = _model()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    target = load_checkpoint(_model(seed=8), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_wrapped_and_half_precision_state_dict(tmp_path):
    from overfeat.export import load_checkpoint

    source = _model()
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {k: v.half() for k, v in source.state_dict().items()}}, path)
    target = load_checkpoint(_model(seed=9), path)
    weight = "classifier.0.weight"
    assert target.state_dict()[weight].dtype == torch.float32
    assert torch.allclose(target.state_dict()[weight], source.state_dict()[weight], rtol=1e-3, atol=1e-4)


def test_errors(tmp_path):
    from overfeat.export import load_checkpoint

    good = tmp_path / "good.pt"
    torch.save(_model().state_dict(), good)

    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(_model(), tmp_path / "missing.pt")
    with pytest.raises(InputError, match="unknown file type '.ckpt'"):
        (tmp_path / "w.ckpt").write_bytes(b"x")
        load_checkpoint(_model(), tmp_path / "w.ckpt")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="could not be read"):
        load_checkpoint(_model(), truncated)

    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_dict)
    with pytest.raises(ModelError, match="holds a list, expected a non-empty state_dict"):
        load_checkpoint(_model(), not_dict)

    nested = tmp_path / "nested.pt"
    torch.save({"model": {"a": 1}, "epoch": 3}, nested)
    with pytest.raises(ModelError, match="entry 'model' is not a named tensor"):
        load_checkpoint(_model(), nested)

    # A pickled module is code, not weights: weights_only loading refuses it.
    code = tmp_path / "module.pt"
    torch.save(_model(), code)
    with pytest.raises(ModelError, match="could not be read"):
        load_checkpoint(_model(), code)

    with pytest.raises(
        ModelError,
        match=r"'classifier.4.weight' has shape \[4, 256, 1, 1\], the model expects \[9, 256, 1, 1\]; check `num_classes`",
    ):
        load_checkpoint(_model(num_classes=9), good)
    with pytest.raises(ModelError, match="lacks tensor 'detector.0.weight'"):
        load_checkpoint(_model(heads=("cls", "loc", "det")), good)
    with pytest.raises(ModelError, match="has tensor 'regressor.0.weight' the model does not"):
        load_checkpoint(_model(heads=("cls",)), good)

    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelError, match="could not be read"):
        load_checkpoint(_model(), corrupt)
