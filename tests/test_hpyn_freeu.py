"""FreeU: sites of both mappings (spec D.2), exact off-state, agreement with diffusers' enable_freeu."""

import pytest
import torch

from conftest import tiny_unet
from hpyn.freeu import FreeU, fourier_filter, freeu_sites


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 4, 8, 8, generator=g), torch.tensor([500.0, 500.0]),
            torch.randn(2, 7, 32, generator=g))


def run(unet, inputs):
    x, t, ctx = inputs
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=ctx).sample


def table(sites):
    return {(s.block, s.resnet): s.stage for s in sites}


def test_reference_sites_match_spec_table_for_sd15_layout(unet):
    # spec D.2, SD1.5 reference: up0 r0-2 b1/s1; up1 r0-2 b1/s1; up2 r0 b1/s1, r1-2 b2/s2; up3 r0 b2/s2
    expect = {(0, 0): 1, (0, 1): 1, (0, 2): 1, (1, 0): 1, (1, 1): 1, (1, 2): 1,
              (2, 0): 1, (2, 1): 2, (2, 2): 2, (3, 0): 2}
    assert table(freeu_sites(unet, "reference")) == expect


def test_diffusers_sites_match_spec_table(unet):
    # spec D.2, SD1.5 diffusers enable_freeu: up0 r0-2 b1/s1; up1 r0-2 b2/s2; nothing else
    expect = {(0, 0): 1, (0, 1): 1, (0, 2): 1, (1, 0): 2, (1, 1): 2, (1, 2): 2}
    assert table(freeu_sites(unet, "diffusers")) == expect


def test_unknown_mapping_is_rejected(unet):
    with pytest.raises(ValueError, match="'by_block'"):
        freeu_sites(unet, "by_block")


def test_off_is_bit_exact_and_on_changes_output(unet, inputs):
    plain = run(unet, inputs)
    fu = FreeU(unet, "reference")
    try:
        assert torch.equal(run(unet, inputs), plain)  # installed but off
        fu.set((1.1, 1.1, 0.9, 0.2))
        on = run(unet, inputs)
        assert (on - plain).abs().max() > 1e-3
        fu.set(None)
        assert torch.equal(run(unet, inputs), plain)  # switched off again
    finally:
        fu.remove()
    assert torch.equal(run(unet, inputs), plain)  # removed


def test_identity_factors_change_only_by_fft_rounding(unet, inputs):
    plain = run(unet, inputs)
    with FreeU(unet) as fu:
        fu.set((1.0, 1.0, 1.0, 1.0))
        assert torch.allclose(run(unet, inputs), plain, atol=1e-5)


def test_diffusers_mapping_equals_diffusers_enable_freeu(unet, inputs):
    b1, b2, s1, s2 = 1.3, 1.4, 0.9, 0.2
    unet.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)
    try:
        theirs = run(unet, inputs)
    finally:
        unet.disable_freeu()
    with FreeU(unet, "diffusers") as fu:
        fu.set((b1, b2, s1, s2))
        ours = run(unet, inputs)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert (ours - run(unet, inputs)).abs().max() > 1e-3


def test_reference_and_diffusers_mappings_differ(unet, inputs):
    outs = []
    for mapping in ("reference", "diffusers"):
        with FreeU(unet, mapping) as fu:
            fu.set((1.1, 1.1, 0.9, 0.2))
            outs.append(run(unet, inputs))
    assert (outs[0] - outs[1]).abs().max() > 1e-3


def test_given_sites_are_the_only_ones_hooked(unet, inputs):
    # an adapter passes its own sites: with the diffusers mapping's sites, "reference" factors act as "diffusers"
    with FreeU(unet, "diffusers") as fu:
        fu.set((1.1, 1.1, 0.9, 0.2))
        want = run(unet, inputs)
    with FreeU(unet, "reference", sites=freeu_sites(unet, "diffusers")) as fu:
        assert len(fu._handles) == len(fu.sites) == 6
        fu.set((1.1, 1.1, 0.9, 0.2))
        assert torch.equal(run(unet, inputs), want)
    plain = run(unet, inputs)
    with FreeU(unet, sites=[]) as fu:       # a family without FreeU sites: switching it on changes nothing
        fu.set((1.1, 1.1, 0.9, 0.2))
        assert torch.equal(run(unet, inputs), plain) and fu.sites == []


def test_fourier_filter_scales_only_the_lowest_frequencies():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 8, 8, generator=g)
    assert torch.allclose(fourier_filter(x, 1.0), x, atol=1e-6)
    # a constant image is pure DC: scaled by s
    c = torch.full((1, 1, 8, 8), 3.0)
    assert torch.allclose(fourier_filter(c, 0.5), c * 0.5, atol=1e-5)
    # the highest frequency (checkerboard) is untouched
    chk = (torch.arange(8)[:, None] + torch.arange(8)[None]).remainder(2).float()[None, None] * 2 - 1
    assert torch.allclose(fourier_filter(chk, 0.2), chk, atol=1e-5)
    assert fourier_filter(x.half(), 0.5).dtype == torch.float16
