"""The test-time protocols of Sec. 3.2 / 4 (vggrepro.protocols) on a narrow net A, 32-pixel crops."""

import pytest
import torch

from vggrepro import protocols
from vggrepro.data.images import rescale
from vggrepro.data.normalise import channels, to_input
from vggrepro.model import VGG, ModelSpec, init_weights
from vggrepro.protocols import (
    BadPosteriors,
    check_posteriors,
    crop_grid,
    dense_at_q,
    dense_posteriors,
    evaluate,
    multi_crop_at_q,
    multi_crop_posteriors,
    posteriors,
)
from vggrepro.runtime.device import Compute
from vggrepro.runtime.errors import Error

CROP = 32
MEAN, STD = channels([122.0, 116.0, 104.0]), channels([60.0, 60.0, 60.0])
NORM = {"mean": MEAN, "std": STD}
# Mixed sizes, some shapes repeated and interleaved (a dense forward pass takes images 0 and 2
# together, ahead of 1), one portrait, one square.
SHAPES = [(40, 50), (50, 40), (40, 50), (36, 36), (64, 33), (50, 40), (40, 50)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = VGG(ModelSpec(config="A", num_classes=5, width=0.125, head_width=16, crop=CROP))
    init_weights(net, "kaiming", torch.Generator().manual_seed(0))
    # Hundreds of tiny forward passes: one thread avoids OpenMP spinning on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield net.eval()
    torch.set_num_threads(threads)


def make_images(shapes, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in shapes]


def softmax_of_crops(model: VGG, crops: list[torch.Tensor]) -> torch.Tensor:
    """The reference: each crop through the ordinary forward pass, soft-max, one row a crop."""
    with torch.no_grad():
        return torch.softmax(model(to_input(torch.stack(crops), **NORM)), dim=1)


class Forwards:
    """Records the input shape of every forward pass (dense ones call score_map, so the hook is
    on the conv layers), and calls on_forward before each."""

    def __init__(self, model: VGG, on_forward=lambda: None):
        self.shapes: list[tuple[int, ...]] = []

        def hook(_module, args):
            on_forward()
            self.shapes.append(tuple(args[0].shape))

        self.handle = model.features.register_forward_pre_hook(hook)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_dense_at_the_crop_size_is_the_single_crop_forward(model):
    images = make_images([(CROP, CROP)] * 3)
    got = dense_posteriors(model, images, qs=[CROP], **NORM)
    want = torch.stack([softmax_of_crops(model, [img, img.flip(-1)]).mean(dim=0) for img in images])
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_multi_crop_grid_is_150_distinct_crops_over_3_scales_with_the_corners(model):
    (image,) = make_images([(40, 50)])
    qs = [40, 48, 56]  # all above the crop, so no position repeats
    plan = []
    for q in qs:
        _, h, w = rescale(image, q).shape
        grid = crop_grid(h, w, CROP)
        corners = {(0, 0), (0, w - CROP), (h - CROP, 0), (h - CROP, w - CROP)}
        assert corners <= set(grid), (q, grid)
        plan += [(q, y, x, flip) for y, x in grid for flip in (False, True)]
    assert len(plan) == len(set(plan)) == 150
    assert all(sum(1 for p in plan if p[0] == q) == 50 for q in qs)
    # The protocol runs exactly these crops (150 crop-sized inputs) and averages their posteriors.
    with Forwards(model) as seen:
        got = multi_crop_posteriors(model, [image], qs=qs, batch=64, **NORM)
    assert sum(s[0] for s in seen.shapes) == 150 and {s[2:] for s in seen.shapes} == {(CROP, CROP)}
    crops = []
    for q, y, x, flip in plan:
        c = rescale(image, q)[:, y : y + CROP, x : x + CROP]
        crops.append(c.flip(-1) if flip else c)
    torch.testing.assert_close(got[0], softmax_of_crops(model, crops).mean(dim=0), atol=1e-5, rtol=0)


def test_crop_grid_repeats_positions_only_along_a_side_equal_to_the_crop():
    assert len(set(crop_grid(CROP, 48, CROP))) == 5  # y is 0 five times
    assert len(set(crop_grid(40, 48, CROP))) == 25
    assert crop_grid(40, 48, CROP, n=2) == [(0, 0), (0, 16), (8, 0), (8, 16)]


def test_multi_scale_with_one_scale_is_single_scale_exactly(model):
    images = make_images(SHAPES[:4])
    assert torch.equal(dense_posteriors(model, images, qs=[40], **NORM), dense_at_q(model, images, 40, **NORM))
    assert torch.equal(
        multi_crop_posteriors(model, images, qs=[40], **NORM), multi_crop_at_q(model, images, 40, **NORM)
    )
    # and several scales are the mean of the single scales
    two = dense_posteriors(model, images, qs=[32, 48], **NORM)
    torch.testing.assert_close(two, (dense_at_q(model, images, 32, **NORM) + dense_at_q(model, images, 48, **NORM)) / 2)


@pytest.mark.parametrize("protocol", protocols.PROTOCOLS)
def test_batched_evaluation_equals_one_image_at_a_time(model, protocol):
    images = make_images(SHAPES, seed=1)
    with Forwards(model) as batched:
        together = evaluate(model, images, protocol=protocol, qs=[32, 48], chunk=4, batch=16, **NORM)
    with Forwards(model) as single:
        alone = evaluate(model, images, protocol=protocol, qs=[32, 48], chunk=1, batch=2, max_pixels=1, **NORM)
    assert len(batched.shapes) < len(single.shapes)  # batching did happen
    assert together.shape == (len(images), 5)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_pooling_scores_or_posteriors_differ_on_a_map_and_agree_on_one_position(model):
    big, small = make_images([(64, 64), (CROP, CROP)], seed=2)
    with torch.no_grad():
        assert model.score_map(to_input(big[None], **NORM)).shape[2:] == (2, 2)
    scores, posts = (dense_at_q(model, [big], 64, pool=pool, **NORM) for pool in ("scores", "posteriors"))
    assert (scores - posts).abs().max() > 1e-3
    scores, posts = (dense_at_q(model, [small], CROP, pool=pool, **NORM) for pool in ("scores", "posteriors"))
    torch.testing.assert_close(scores, posts, atol=1e-6, rtol=0)
    # the default is the paper's sum-pooled score map
    assert torch.equal(dense_at_q(model, [big], 64, **NORM), dense_at_q(model, [big], 64, pool="scores", **NORM))


def test_multi_crop_and_dense_is_the_mean_of_the_two(model):
    images = make_images(SHAPES[:3], seed=3)
    both = posteriors(model, images, protocol="multi-crop & dense", qs=[32, 40], **NORM)
    dense = posteriors(model, images, protocol="dense", qs=[32, 40], **NORM)
    crops = posteriors(model, images, protocol="multi-crop", qs=[32, 40], **NORM)
    assert not torch.allclose(dense, crops, atol=1e-4)
    torch.testing.assert_close(both, (dense + crops) / 2, atol=1e-7, rtol=0)


def test_check_posteriors_rejects_nan_inf_and_rows_off_one(model):
    good = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(4)), dim=1)
    check_posteriors(good, run="D-256", protocol="dense")
    for bad_value in (float("nan"), float("inf")):
        bad = good.clone()
        bad[2, 1] = bad_value
        with pytest.raises(BadPosteriors, match=r"^D-256 \(multi-crop\): .*not finite") as err:
            check_posteriors(bad, run="D-256", protocol="multi-crop")
        assert "\n" not in str(err.value)
    off = good.clone()
    off[3] *= 1.01
    with pytest.raises(BadPosteriors, match=r"^E-jitter \(dense\): .*do not sum to 1") as err:
        check_posteriors(off, run="E-jitter", protocol="dense")
    assert "\n" not in str(err.value) and isinstance(err.value, Error)  # the CLI prints it as one line


def test_output_order_is_input_order_and_the_stream_is_read_lazily(model):
    images = make_images(SHAPES, seed=5)
    one_by_one = torch.cat([dense_posteriors(model, [img], qs=[40], **NORM) for img in images])
    pulled = []

    def stream(items):
        for item in items:
            pulled.append(1)
            yield item

    pulled_at_forward = []
    with Forwards(model, on_forward=lambda: pulled_at_forward.append(len(pulled))):
        got = evaluate(model, stream(images), protocol="dense", qs=[40], chunk=3, **NORM)
    assert pulled_at_forward[0] == 3 and pulled_at_forward[-1] == 7  # one chunk read at a time
    torch.testing.assert_close(got, one_by_one, atol=1e-5, rtol=0)
    order = [6, 2, 0, 5, 3, 1, 4]
    shuffled = evaluate(model, (images[i] for i in order), protocol="dense", qs=[40], chunk=3, **NORM)
    torch.testing.assert_close(shuffled, got[order], atol=1e-5, rtol=0)


def test_scales_below_the_crop_are_refused_in_one_line(model):
    with pytest.raises(ValueError, match=r"^test scale Q=24 is below the crop size 32") as err:
        evaluate(model, make_images([(40, 40)]), protocol="multi-crop", qs=[24, 32], **NORM)
    assert "\n" not in str(err.value)


def test_bf16_autocast_still_gives_fp32_posteriors_summing_to_one(model):
    bf16 = Compute(torch.device("cpu"), "bf16", False)
    got = evaluate(model, make_images(SHAPES[:3]), protocol="multi-crop & dense", qs=[32], compute=bf16, **NORM)
    assert got.dtype == torch.float32
    check_posteriors(got, run="A-256", protocol="multi-crop & dense")


def _bottom_over_top(score_map, q: int, w: int) -> float:
    """How much the bottom tenth of the rows moves the pooled scores, over the top tenth's:
    summed |d score / d pixel| over 32 random images of Q x w, on random weights."""
    torch.manual_seed(1)
    net = VGG(ModelSpec(config="A", num_classes=50, width=0.125, head_width=256, crop=64)).eval()
    init_weights(net, "kaiming", torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, q, w, generator=g).requires_grad_()
    scores = score_map(net, x).mean(dim=(2, 3))
    (scores * torch.randn(scores.shape, generator=g)).sum().backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3))
    k = q // 10
    return (rows[-k:].sum() / rows[:k].sum()).item()


@pytest.mark.parametrize("q", [73, 82, 101, 110, 119, 146])  # the default's scaled Q (64/224 of the paper's)
def test_dense_weighs_the_bottom_rows_as_the_top_ones_at_any_q(q):
    """The pooling grid is centred on the image (the paper's Q, multiples of 32, need no
    centring): the bottom strip moves the scores as much as the top one does at 64 x 96, a
    size the five pools tile exactly. Without the centring the bottom counted 0.3 to 0.9."""
    w = round(q * 4 / 3)  # landscape, as most photographs
    tiled = _bottom_over_top(protocols.dense_score_map, 64, 96)
    centred = _bottom_over_top(protocols.dense_score_map, q, w)
    assert abs(centred / tiled - 1) < 0.1, (q, centred, tiled)


def test_the_bottom_rows_test_sees_an_uncentred_grid():
    """The check above can fail: the bare score map at Q = 119 (119 = 3 x 32 + 23) leaves the
    bottom 23 rows to the conv margins."""
    assert _bottom_over_top(VGG.score_map, 119, 159) < 0.6 * _bottom_over_top(VGG.score_map, 64, 96)


def test_evaluation_chunks_hold_at_most_128_images_and_cut_short_at_the_pixel_budget():
    from vggrepro.stages import evaluate

    small = [torch.zeros(3, 100, 100, dtype=torch.uint8)] * 300
    assert [len(b) for b in evaluate.chunks(small)] == [128, 128, 44]
    big = torch.zeros(3, 4000, 4000, dtype=torch.uint8)  # 16 M pixels: two reach the 24 M budget
    assert [len(b) for b in evaluate.chunks([big] * 5)] == [2, 2, 1]
    huge = torch.zeros(3, 1, 30_000_000, dtype=torch.uint8).expand(3, 1, 30_000_000)
    assert [len(b) for b in evaluate.chunks([huge, *small[:3]])] == [1, 3]  # one over the budget: alone
