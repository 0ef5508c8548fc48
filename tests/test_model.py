import json

import pytest
import torch

from vggrepro.cli import main
from vggrepro.model import CONFIGS, VGG, ModelSpec, count_params, init_weights, transfer_from, weight_layers

# Exact counts at full width with 1000 classes: torchvision's for A, B, D, E; C and A-LRN from Table 1.
PARAMS = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952, "D": 138_357_544, "E": 143_667_240}
WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}


@pytest.mark.parametrize("config", CONFIGS)
def test_full_width_counts_match_the_paper(config):
    spec = ModelSpec(config, num_classes=1000)
    assert (count_params(spec), weight_layers(spec)) == (PARAMS[config], WEIGHT_LAYERS[config])


@pytest.mark.parametrize("config", ["A", "E"])
def test_model_command_prints_one_json_object(config, capsys):
    assert main(["model", "--config", config, "--num-classes", "1000", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["config"], info["params"], info["weight_layers"]) == (config, PARAMS[config], WEIGHT_LAYERS[config])


def small(config: str, seed: int = 0) -> VGG:
    model = VGG(ModelSpec(config, num_classes=7, width=0.0625, head_width=16, crop=64, dropout=0.0))
    init_weights(model, "glorot", torch.Generator().manual_seed(seed))
    return model.eval()


@pytest.mark.parametrize("config", CONFIGS)
def test_conv_head_equals_fully_connected_head_on_a_crop(config):
    """FC1 as a k x k conv on a crop-sized input is the paper's FC1 on the flattened features."""
    model = small(config)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(x).flatten(1)
        h = model.head
        fc = lambda conv, v: v @ conv.weight.flatten(1).T + conv.bias  # noqa: E731
        expected = fc(h.fc8, fc(h.fc7, fc(h.fc6, feats).relu()).relu())
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_crop_forward_runs_the_head_as_matmuls_equal_to_the_conv_head(memory_format):
    """Training runs FC1-FC3 as matmuls over the conv weights; values and gradients equal the
    conv head's, in either memory format, and larger inputs still take the conv head."""
    model = small("E").to(memory_format=memory_format)
    calls = []
    model.head.fc6.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(3, 3, 64, 64).contiguous(memory_format=memory_format)
    got = model(x)
    assert not calls  # the matmul path
    weights = torch.randn_like(got)
    (got * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    expected = model.head(model.features(x)).mean(dim=(2, 3))
    (expected * weights).sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    model(torch.randn(1, 3, 96, 64).contiguous(memory_format=memory_format))
    assert calls  # a 2 x 1 score map: the convolutional head


def test_deeper_net_copies_the_first_four_convs_and_the_head_of_a():
    source = small("A", seed=1)
    target = small("D", seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    copied = transfer_from(target, source.state_dict(), "A")
    assert copied == ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8"]
    after = target.state_dict()
    for key, value in after.items():
        layer = key.split(".")[1]
        expected = source.state_dict()[key] if layer in copied else before[key]
        assert torch.equal(value, expected), key


def test_same_config_copies_every_layer():
    source, target = small("C", seed=1), small("C", seed=2)
    transfer_from(target, source.state_dict(), "C")
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_a_lrn_is_alexnets_formula():
    """b = a / (k + alpha * sum_{window of 5 channels} a^2)^beta, alpha 1e-4, k 2, beta 0.75:
    no division by the window size (torch's and Caffe's convention divide alpha by it)."""
    from vggrepro.model import VGG, ModelSpec

    net = VGG(ModelSpec("A-LRN", num_classes=10, width=0.125, head_width=16, crop=32))
    lrn = next(m for m in net.modules() if isinstance(m, torch.nn.LocalResponseNorm))
    a = torch.randn(2, 8, 5, 5, dtype=torch.float64) * 30  # large enough that alpha matters
    squares = torch.nn.functional.pad(a * a, (0, 0, 0, 0, 2, 2))  # channels c-2 .. c+2
    window = sum(squares[:, i : i + 8] for i in range(5))
    expected = a / (2.0 + 1e-4 * window) ** 0.75
    torch.testing.assert_close(lrn(a), expected, rtol=1e-12, atol=0)


def test_class_scores_are_fp32_under_bf16_autocast_in_both_heads():
    """bf16 scores tie often and a tie counts as an error: FC3 runs in fp32."""
    model = small("A")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 3, 64, 64)).dtype == torch.float32  # crop: the matmul head
        assert model.score_map(torch.randn(1, 3, 96, 80)).dtype == torch.float32  # dense: the conv head


def test_glorot_gives_the_head_a_fully_connected_layers_bound():
    """FC1 of E at 224 is a 25088 -> 4096 layer: Glorot's bound sqrt(6 / (25088 + 4096)), not a
    conv's with fan_out 4096 x 49."""
    model = VGG(ModelSpec("A", num_classes=1000, width=0.25, head_width=1024, crop=224))
    init_weights(model, "glorot", torch.Generator().manual_seed(0))
    fc6 = model.head.fc6.weight.detach()
    bound = (6 / (fc6[0].numel() + fc6.shape[0])) ** 0.5
    assert 0.99 * bound < float(fc6.abs().max()) <= bound
    conv = model.features.conv2_1.weight.detach()  # a conv keeps torch's conv fans
    fan_in, fan_out = conv[0].numel(), conv.shape[0] * conv[0, 0].numel()
    assert float(conv.abs().max()) <= (6 / (fan_in + fan_out)) ** 0.5
