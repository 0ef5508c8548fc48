"""The pieces of Sec. 3.1's training: device choice, the plateau schedule, the held-out slice,
the global batch split over processes and micro-batches, and the non-finite loss check."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
import yaml

from conftest import tiny_params
from vggrepro import schedule, training
from vggrepro.data import holdout, train_batches
from vggrepro.data.ingest import Entry
from vggrepro.data.normalise import channels
from vggrepro.model import VGG, ModelSpec, init_weights
from vggrepro.params import ParamsError
from vggrepro.runtime import device
from vggrepro.training import EpochSums, Loop, NonFiniteLoss, check_finite, holdout_error


def test_device_auto_takes_a_gpu_only_when_there_is_one():
    assert device.resolve_device("auto", cuda_available=False) == torch.device("cpu")
    assert device.resolve_device("auto", cuda_available=True) == torch.device("cuda", 0)
    assert device.resolve_device("cuda", cuda_available=True, local_rank=3) == torch.device("cuda", 3)
    assert device.resolve_device("cpu", cuda_available=True) == torch.device("cpu")


def test_cuda_without_a_gpu_is_one_line_naming_the_key():
    with pytest.raises(device.DeviceError) as err:
        device.resolve_device("cuda", cuda_available=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("train.device: cuda") and "auto or cpu" in message


@pytest.mark.parametrize("features, expected", [
    ({"avx2": True, "avx512_f": True}, "fp32"),  # AVX-512 without its BF16 extension: emulated
    ({"avx2": True, "avx512_bf16": True}, "bf16"),
    ({"avx2": True, "amx_tile": True, "amx_bf16": True}, "bf16"),
    ({"neon": True, "bf16": True}, "bf16"),  # ARM
    ({"avx2": True, "cpu_name": "AMD EPYC"}, "fp32"),
])
def test_precision_auto_is_bf16_only_on_a_cpu_with_bf16_arithmetic(monkeypatch, features, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: features)
    cpu = torch.device("cpu")
    assert device.resolve_precision("auto", cpu) == expected
    assert device.resolve_precision("bf16", cpu) == "bf16" and device.resolve_precision("fp32", cpu) == "fp32"
    chosen = device.compute({"device": "cpu", "precision": "auto", "deterministic": False})
    assert chosen.precision == expected and f"), {expected}, channels_last" in chosen.describe()


def test_precision_auto_on_a_gpu_asks_that_gpu_for_bf16_in_hardware_not_emulated(monkeypatch):
    asked, current = [], []

    @contextmanager
    def on(gpu):  # torch.cuda.device: is_bf16_supported asks the current GPU
        current.append(gpu)
        yield
        current.pop()

    monkeypatch.setattr(torch.cuda, "device", on)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: asked.append((current[-1], including_emulation)) or False)
    assert device.resolve_precision("auto", torch.device("cuda", 1)) == "fp32"  # e.g. a V100
    assert asked == [(torch.device("cuda", 1), False)] and current == []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert device.resolve_precision("auto", torch.device("cuda", 0)) == "bf16"


def test_a_precision_outside_the_list_is_one_line_naming_the_key():
    with pytest.raises(device.DeviceError, match=r"^train.precision: 'fp16' is not one of auto, bf16, fp32$"):
        device.resolve_precision("fp16", torch.device("cpu"))


def test_the_cpu_is_named_by_its_model_and_kernel_instruction_set(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "AMD EPYC"})
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert device.CPU.describe() == "cpu (AMD EPYC AVX2), fp32, channels_last"


def test_bf16_autocasts_the_forward_only_and_fp32_does_not():
    bf16 = device.Compute(torch.device("cpu"), "bf16", False)
    layer = torch.nn.Linear(4, 4)
    with bf16.autocast():
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # master weights stay fp32
    with device.CPU.autocast():
        assert layer(torch.ones(1, 4)).dtype == torch.float32


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_plateau_divides_the_rate_after_patience_and_stops_after_the_last_decrease():
    opt = _optimizer(0.1)
    plan = schedule.PlateauSchedule(opt, patience=1, factor=0.1, max_decreases=2)
    rates, stops = [], []
    for error in [50, 40, 40, 40, 30, 30, 30, 30, 30]:
        stops.append(plan.step(error))
        rates.append(plan.lr)
    # A repeated error is no improvement; the second epoch without one (patience 1) decreases.
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001])
    # The plateau after the last allowed decrease stops the run, at the rate it trained with.
    assert stops == [False] * 8 + [True] and plan.decreases == 3


def test_lr_steps_divide_the_rate_after_their_epochs_and_never_stop_a_run():
    opt = _optimizer(0.1)
    plan = schedule.for_run(opt, {"lr_factor": 0.1}, (2, 4))
    rates, stops = [], []
    for error in [50, 40, 40, 40, 40, 40]:  # the held-out error plays no part
        stops.append(plan.step(error))
        rates.append(plan.lr)
    # after epoch 2, epoch 3 trains at a tenth; after epoch 4, at a hundredth
    assert rates == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001, 0.001])
    assert stops == [False] * 6


def test_lr_steps_state_round_trips_with_the_optimizer():
    opt = _optimizer(0.1)
    plan = schedule.for_run(opt, {"lr_factor": 0.1}, (2, 4))
    for _ in range(3):
        plan.step(0)
    again_opt = _optimizer(0.1)
    again = schedule.for_run(again_opt, {"lr_factor": 0.1}, (2, 4))
    again_opt.load_state_dict(opt.state_dict())  # as a resume loads both (vggrepro.stages.train)
    again.load_state_dict(plan.state_dict())
    assert [[p.step(0), p.lr] for p in (plan, again)] == [[False, pytest.approx(0.001)]] * 2


def test_without_lr_steps_a_run_keeps_the_papers_plateau_rule():
    plan = schedule.for_run(_optimizer(), {"lr_factor": 0.1, "lr_patience": 2, "lr_decreases": 3}, ())
    assert isinstance(plan, schedule.PlateauSchedule) and plan.max_decreases == 3


def test_plateau_state_round_trips():
    opt = _optimizer()
    plan = schedule.PlateauSchedule(opt, patience=0, factor=0.5, max_decreases=3)
    for error in [3, 3, 3]:
        plan.step(error)
    again = schedule.PlateauSchedule(_optimizer(plan.lr), patience=0, factor=0.5, max_decreases=3)
    again.load_state_dict(plan.state_dict())
    assert (again.decreases, again.plateau.best, again.plateau.num_bad_epochs) == (
        plan.decreases, plan.plateau.best, plan.plateau.num_bad_epochs,
    )
    assert [plan.step(3), plan.lr] == [again.step(3), again.lr]


def _entries(per_class: dict[int, int]) -> list[Entry]:
    return [Entry("train", f"c{c}/{k}.jpg", f"c{c}", c) for c, n in per_class.items() for k in range(n)]


def test_holdout_is_stratified_seeded_and_disjoint():
    entries = _entries({0: 40, 1: 20, 2: 1})
    fit, held = holdout.split(entries, fraction=0.1, seed=0)
    assert {e.path for e in fit}.isdisjoint(e.path for e in held)
    assert len(fit) + len(held) == len(entries)
    assert [sum(e.label == c for e in held) for c in range(3)] == [4, 2, 0]  # a lone image stays in training
    assert holdout.split(entries, fraction=0.1, seed=0) == (fit, held)
    assert holdout.split(entries, fraction=0.1, seed=1)[1] != held


def test_each_process_takes_its_share_of_every_global_batch_and_a_resume_starts_mid_epoch():
    whole = train_batches.EpochBatches(50, 8, seed=3)
    parts = [train_batches.EpochBatches(50, 8, seed=3, rank=r, world=2) for r in range(2)]
    for sampler in (whole, *parts):
        sampler.set_epoch(2)
    assert len(whole) == whole.steps == 6  # the short last batch is dropped
    for batch, first, second in zip(whole, *parts):
        assert batch == first + second and len(first) == 4
    resumed = train_batches.EpochBatches(50, 8, seed=3)
    resumed.set_epoch(2, start=4)
    assert list(resumed) == list(whole)[4:]


def _spec() -> ModelSpec:
    return ModelSpec("A", num_classes=5, width=0.0625, head_width=16, crop=32, dropout=0.0)


def _loop(accumulation: int) -> Loop:
    model = VGG(_spec())
    init_weights(model, "glorot", torch.Generator().manual_seed(0))
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    zero, one = channels([100.0] * 3), channels([50.0] * 3)
    return Loop(model, opt, device.CPU, zero, one, accumulation=accumulation, global_batch=16)


def _batch():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.randn(16, 3, generator=g), torch.randint(0, 5, (16,), generator=g)


def test_micro_batches_give_the_whole_batch_step():
    results = []
    for accumulation in (1, 4):
        loop = _loop(accumulation)
        sums = EpochSums.zeros(torch.device("cpu"))
        bad, count = torch.full((), -1), torch.zeros((), dtype=torch.int64)
        for _ in range(2):
            loop.step(*_batch(), sums, bad, count)
        results.append((torch.cat([p.detach().flatten() for p in loop.model.parameters()]), sums))
    (whole, s1), (parts, s4) = results
    assert (whole - parts).abs().max() < 1e-5
    assert s1.seen == s4.seen == 32 and int(s1.wrong) == int(s4.wrong)
    assert float(s1.loss) == pytest.approx(float(s4.loss), rel=1e-5)


def test_a_non_finite_loss_is_named_by_its_first_step():
    loop = _loop(1)
    for group in loop.optimizer.param_groups:
        group["lr"] = 1e30  # the first step is finite, the weights then overflow
    sums = EpochSums.zeros(torch.device("cpu"))
    bad, count = torch.full((), -1), torch.zeros((), dtype=torch.int64)
    for _ in range(4):
        loop.step(*_batch(), sums, bad, count)
    assert int(bad) >= 1
    with pytest.raises(NonFiniteLoss) as err:
        check_finite(bad, run="A_256", epoch=3, steps_per_epoch=10)
    message = str(err.value)
    assert "\n" not in message and f"A_256: the training loss became NaN or infinite at epoch 3, step {int(bad) + 1} of 10" in message
    check_finite(torch.full((), -1), run="A_256", epoch=1, steps_per_epoch=10)  # nothing to report


class _Scores(torch.nn.Module):
    def __init__(self, row):
        super().__init__()
        self.row = torch.tensor(row)

    def forward(self, x):
        return self.row.expand(len(x), -1)


def test_holdout_error_counts_ties_and_non_finite_scores_as_wrong():
    batches = [(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 0]))]
    zero, one = channels([0.0] * 3), channels([1.0] * 3)
    err = lambda row: holdout_error(_Scores(row), batches, device.CPU, mean=zero, std=one)  # noqa: E731
    assert err([1.0, 1.0, 1.0]) == 100.0  # every class tied: never right
    assert err([float("nan"), 0.0, 0.0]) == 100.0  # NaN must not score as right
    assert err([2.0, 1.0, 0.0]) == 50.0  # label 0 right twice of four


def test_the_held_out_loss_is_the_mean_cross_entropy_and_infinite_on_non_finite_scores():
    """What train.plateau_on: loss watches."""
    batches = [(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 0]))] * 2
    zero, one = channels([0.0] * 3), channels([1.0] * 3)
    held = lambda row: training.holdout(_Scores(row), batches, device.CPU, mean=zero, std=one)  # noqa: E731
    err, loss = held([2.0, 1.0, 0.0])
    want = torch.nn.functional.cross_entropy(torch.tensor([[2.0, 1.0, 0.0]] * 4), torch.tensor([0, 1, 2, 0])).item()
    assert err == 50.0 and loss == pytest.approx(want, rel=1e-6)
    assert held([float("nan"), 0.0, 0.0]) == (100.0, float("inf"))


def test_every_class_of_two_images_holds_one_out_and_prepare_refuses_a_split_with_none():
    """A fraction that rounds to nothing still holds one image of each class out (the tiny
    params do this with 4 images a class); a split where no class has two is refused by
    prepare's check, before any training output is deleted, and by the split itself."""
    fit, held = holdout.split(_entries({0: 20, 1: 4, 2: 2, 3: 1}), fraction=0.0003, seed=0)
    assert [sum(e.label == c for e in held) for c in range(4)] == [1, 1, 1, 0] and len(fit) == 27 - 3
    holdout.check_classes(_entries({0: 1, 1: 2}))
    lone = _entries({0: 1, 1: 1, 2: 1})
    for check in (lambda: holdout.check_classes(lone), lambda: holdout.split(lone, fraction=0.5, seed=0)):
        with pytest.raises(holdout.DataError, match=r"^data: no class of the 3 training images in 3 classes has two"):
            check()


def test_an_empty_held_out_slice_is_an_error_never_zero_percent():
    zero, one = channels([0.0] * 3), channels([1.0] * 3)
    with pytest.raises(ParamsError, match="the held-out slice is empty"):
        holdout_error(_Scores([1.0, 0.0]), [], device.CPU, mean=zero, std=one)


class _TiedScores(torch.nn.Module):
    """Classes 0 and 1 tie on every image: argmax would call label 0 right."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.tensor([1.0, 1.0, 0.0]).expand(len(x), -1) + 0 * self.p


def test_training_error_counts_ties_as_the_held_out_error_does():
    net = _TiedScores()
    loop = Loop(net, torch.optim.SGD(net.parameters(), lr=0.0), device.CPU, channels([0.0] * 3), channels([1.0] * 3),
                accumulation=1, global_batch=2)
    sums = EpochSums.zeros(torch.device("cpu"))
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    loop.step(images, torch.zeros(2, 3), torch.tensor([0, 1]), sums, torch.full((), -1), torch.zeros((), dtype=torch.int64))
    assert int(sums.wrong) == 2 and sums.seen == 2


def test_a_device_the_machine_lacks_is_one_line_from_the_command(tmp_path, monkeypatch, capsys):
    from vggrepro import cli

    raw = tiny_params()
    raw["train"]["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["train", "--run", "A_256"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vggrepro train: error: train.device: cuda, but torch") and err.count("\n") == 1, err


@pytest.mark.parametrize("patience", [0, 2])
def test_the_plateau_rule_cannot_cut_within_patience_plus_one_epochs_as_the_report_says(patience):
    """The report calls a run of at most lr_patience + 1 epochs under the plateau rule a constant
    rate: the first epoch always improves on ReduceLROnPlateau's start (inf), so even a held-out
    loss that only rises cuts the rate no sooner than epoch lr_patience + 2."""
    plan = schedule.PlateauSchedule(_optimizer(), patience=patience, factor=0.1, max_decreases=3)
    rates = []
    for epoch in range(patience + 2):
        plan.step(1.0 + epoch)  # worse every epoch
        rates.append(plan.lr)
    assert rates[: patience + 1] == [pytest.approx(0.1)] * (patience + 1), rates
    assert rates[patience + 1] == pytest.approx(0.01), rates
